"""``roadlens serve`` REST API over real HTTP: a uvicorn server on a loopback port, a lake
filled with synthetic detections and events, API keys from the environment and a hashed
key file."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from roadlens.lake import ParquetLake
from roadlens.ode.actions import media_paths
from roadlens.service import ServiceSettings, create_app
from roadlens.service.auth import KeyStore, Scope, hash_key, verify_key
from roadlens.service.catalog import MediaError, resolve_media
from roadlens.service.ratelimit import TokenBuckets
from roadlens.service.server import check_bind
from roadlens.service.state import ServiceState
from roadlens.service.testing import ServerThread
from roadlens.synth.tables import synthetic_detections, synthetic_events

READ, OPERATE, ADMIN, FILE_ADMIN = "r-key-1", "o-key-1", "a-key-1", "file-admin-key"
VIDEOS = [  # (video_id, source_id, date, start, seed)
    ("veh-01--a", "veh-01", "2026-05-04", "2026-05-04T10:00:00Z", 1),
    ("veh-01--b", "veh-01", "2026-05-05", "2026-05-05T08:30:00Z", 2),
    ("veh-02--a", "veh-02", "2026-05-04", "2026-05-04T10:20:00Z", 3),
    # runs past midnight: rows of 2026-05-07 in the date=2026-05-06 folder, interleaved
    # with those of the next video, which starts 5 s after midnight
    ("veh-02--night", "veh-02", "2026-05-06", "2026-05-06T23:59:45Z", 4),
    ("veh-01--c", "veh-01", "2026-05-07", "2026-05-07T00:00:05Z", 5),
]


def _events(video_id: str, source_id: str, start: str, seed: int) -> pa.Table:
    table = synthetic_events(
        240, video_id=video_id, source_id=source_id, start=pd.Timestamp(start), seed=seed
    )
    rules = np.where(np.arange(table.num_rows) % 3 == 0, "speeding", "stop-line")
    return table.set_column(table.schema.get_field_index("rule_id"), "rule_id", pa.array(rules))


def fill_lake(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the test videos' detections and events; return them as pandas frames."""
    lake = ParquetLake(root)
    dets, evs = [], []
    for video_id, source_id, date, start, seed in VIDEOS:
        d = synthetic_detections(
            3000, video_id=video_id, source_id=source_id, start=pd.Timestamp(start), seed=seed
        )
        e = _events(video_id, source_id, start, seed)
        lake.write_video("detections", d, date=date, source_id=source_id, video_id=video_id)
        lake.write_video("events", e, date=date, source_id=source_id, video_id=video_id)
        dets.append(d.to_pandas())
        evs.append(e.to_pandas())
    return pd.concat(dets, ignore_index=True), pd.concat(evs, ignore_index=True)


@pytest.fixture(scope="module")
def lake_data(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("serve-home")
    detections, events = fill_lake(home / "lake")
    return home, detections, events


def _settings(home: Path, **overrides) -> ServiceSettings:
    key_file = home / "keys.txt"
    if not key_file.exists():
        key_file.write_text(f"# hashed keys\nfile-admin admin {hash_key(FILE_ADMIN)}\n")
    values = dict(
        home=home,
        lake_root=home / "lake",
        landing=home / "landing",
        api_keys=f"{READ}:read,{OPERATE}:operate,{ADMIN}:admin",
        api_key_file=key_file,
        rate_per_s=1000.0,
        burst=1000.0,
        poll_s=0.2,
    )
    return ServiceSettings(**(values | overrides))


@pytest.fixture(scope="module")
def server(lake_data):
    home, _, _ = lake_data
    with ServerThread(create_app(_settings(home))) as running:
        yield running


@pytest.fixture
def client(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": ADMIN}, timeout=30) as c:
        yield c


def _all_pages(client: httpx.Client, path: str, params: dict, limit: int) -> tuple[list[dict], int]:
    items, pages, cursor = [], 0, None
    while True:
        r = client.get(
            path, params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert len(body["items"]) == limit


# --- auth, scopes, rate limits ----------------------------------------------------------------


def test_openapi_schema_lists_endpoints_and_security(server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    for path in (
        "/sources",
        "/sources/{source_id}/start",
        "/detections",
        "/events",
        "/stats",
        "/videos",
        "/media/{path}",
        "/heatmaps/{video_id}.png",
    ):
        assert path in spec["paths"], path
    assert {"APIKeyHeader", "HTTPBearer"} <= set(spec["components"]["securitySchemes"])


def test_missing_and_unknown_keys_get_401(server) -> None:
    assert httpx.get(f"{server.url}/detections").status_code == 401
    r = httpx.get(f"{server.url}/detections", headers={"X-API-Key": "nope"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/health").status_code == 200  # liveness needs no key


def test_scopes_are_ordered_read_operate_admin(server) -> None:
    body = {"name": "Scope cam", "url": "rtsp://cam/x"}
    for key, get_ok, post_status in ((READ, True, 403), (OPERATE, True, 403), (ADMIN, True, 201)):
        h = {"X-API-Key": key}
        assert (httpx.get(f"{server.url}/sources", headers=h).status_code == 200) is get_ok
        r = httpx.post(f"{server.url}/sources", json=body, headers=h)
        assert r.status_code == post_status, (key, r.text)
    r = httpx.post(f"{server.url}/sources/scope-cam/stop", headers={"X-API-Key": READ})
    assert r.status_code == 403 and "operate is needed" in r.json()["detail"]
    assert (
        httpx.post(
            f"{server.url}/sources/scope-cam/stop", headers={"X-API-Key": OPERATE}
        ).status_code
        == 200
    )
    # the bearer form and the hashed key file work too
    r = httpx.delete(
        f"{server.url}/sources/scope-cam", headers={"Authorization": f"Bearer {FILE_ADMIN}"}
    )
    assert r.status_code == 204


def test_rate_limit_returns_429_with_retry_after(lake_data) -> None:
    home, _, _ = lake_data
    settings = _settings(home, rate_per_s=1.0, burst=3.0)
    with ServerThread(create_app(settings)) as srv:
        h = {"X-API-Key": READ}
        codes = [httpx.get(f"{srv.url}/sources", headers=h).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = httpx.get(f"{srv.url}/sources", headers=h)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        # buckets are per key: another key is not limited by the first one's traffic
        assert httpx.get(f"{srv.url}/sources", headers={"X-API-Key": ADMIN}).status_code == 200
        time.sleep(int(r.headers["retry-after"]))
        assert httpx.get(f"{srv.url}/sources", headers=h).status_code == 200


def test_unknown_keys_are_rate_limited_per_client(lake_data) -> None:
    home, _, _ = lake_data
    with ServerThread(create_app(_settings(home, rate_per_s=0.5, burst=2.0))) as srv:
        codes = [
            httpx.get(f"{srv.url}/sources", headers={"X-API-Key": f"guess-{i}"}).status_code
            for i in range(3)
        ]
        assert codes == [401, 401, 429]


def test_open_mode_serves_loopback_only(lake_data) -> None:
    home, _, _ = lake_data
    settings = _settings(home, api_keys="", api_key_file=None)
    with pytest.raises(ValueError, match="refusing to listen"):
        check_bind("0.0.0.0", settings)
    check_bind("127.0.0.1", settings)
    check_bind("0.0.0.0", _settings(home))  # keys configured: any interface is allowed
    state = ServiceState(settings)
    assert state.authenticate(None, "127.0.0.1", Scope.ADMIN).scope == Scope.ADMIN
    with pytest.raises(Exception, match="loopback") as excinfo:
        state.authenticate(None, "10.1.2.3", Scope.READ)
    assert excinfo.value.status_code == 403
    with ServerThread(create_app(settings)) as srv:
        assert httpx.get(f"{srv.url}/detections", params={"limit": 1}).status_code == 200


def test_key_hashing_and_store() -> None:
    encoded = hash_key("s3cret")
    assert encoded.startswith("scrypt$") and "s3cret" not in encoded
    assert verify_key("s3cret", encoded) and not verify_key("s3cret!", encoded)
    store = KeyStore("a:read,b:admin")
    assert store.lookup("a").scope == Scope.READ and store.lookup("b").scope == Scope.ADMIN
    assert store.lookup("c") is None and not store.open_mode
    with pytest.raises(ValueError, match="unknown scope"):
        KeyStore("a:superuser")


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2.0, clock=lambda: now[0])
    assert [buckets.take("k"), buckets.take("k")] == [0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("k") == 0.0


# --- sources ------------------------------------------------------------------------------------


def test_source_crud_redacts_passwords_and_validates(client: httpx.Client, server) -> None:
    r = client.post(
        "/sources",
        json={
            "name": "Gate Cam",
            "url": "rtsp://admin:hunter2@10.0.0.5/live?token=abc",
            "fps": 10,
            "chunk_seconds": 5,
            "rules_path": "rules/gate.yaml",
        },
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["id"] == "gate-cam" and "hunter2" not in r.text and "abc" not in r.text
    assert created["url"].startswith("rtsp://admin:***@10.0.0.5/live")
    registry = server.app.state.roadlens.settings.registry_path
    assert stat.S_IMODE(registry.stat().st_mode) == 0o600
    assert client.post("/sources", json={"name": "Gate Cam"}).status_code == 409
    # sending the redacted URL back keeps the stored password
    r = client.patch(
        "/sources/gate-cam", json={"url": created["url"], "fps": 2.5, "detection_enabled": False}
    )
    assert (
        r.status_code == 200 and r.json()["fps"] == 2.5 and r.json()["detection_enabled"] is False
    )
    stored = {s["id"]: s for s in json.loads(registry.read_text())["sources"]}["gate-cam"]
    assert "hunter2" in stored["url"]
    assert [s["id"] for s in client.get("/sources").json()].count("gate-cam") == 1
    for bad in (
        {"fps": 0},
        {"fps": 61},
        {"chunk_seconds": 0.5},
        {"rules_path": "x.txt"},
        {"colour": "red"},
        {"url": "rtsp://a\nb"},
        {"name": None},
        {"fps": None},
    ):
        r = client.patch("/sources/gate-cam", json=bad)
        assert r.status_code == 422, (bad, r.text)
        assert next(iter(bad)) in json.dumps(r.json()["detail"])
    assert client.get("/sources/No_Such").status_code == 422  # not a slug
    assert client.get("/sources/no-such").status_code == 404
    assert client.delete("/sources/gate-cam").status_code == 204
    assert client.get("/sources/gate-cam").status_code == 404


@pytest.mark.slow
def test_start_and_stop_a_live_source(client: httpx.Client, server) -> None:
    r = client.post(
        "/sources",
        json={
            "name": "test pattern",
            "url": "testsrc2=size=160x120:rate=10",
            "input_format": "lavfi",
            "chunk_seconds": 1,
        },
    )
    assert r.status_code == 201, r.text
    r = client.post("/sources/test-pattern/start")
    assert r.status_code == 202, r.text
    assert r.json()["state"] in ("STARTING", "RUNNING")
    deadline = time.monotonic() + 90  # generous: ffmpeg must start and write its first chunk
    status = {}
    while time.monotonic() < deadline:
        status = client.get("/sources/test-pattern/status").json()
        if status["state"] == "RUNNING" and status["chunks_closed"] >= 1:
            break
        time.sleep(0.3)
    assert status["state"] == "RUNNING" and status["running_here"], status
    assert status["heartbeat_age_s"] is not None and status["heartbeat_age_s"] < 5
    assert client.post("/sources/test-pattern/start").status_code == 409
    assert any(s["source_id"] == "test-pattern" for s in client.get("/sources/status").json())
    r = client.post("/sources/test-pattern/stop")
    assert r.status_code == 200 and r.json()["state"] == "STOPPED" and not r.json()["running_here"]
    landing = server.app.state.roadlens.settings.landing / "test-pattern"
    assert list(landing.glob("test-pattern-*.mp4"))
    client.delete("/sources/test-pattern")


def test_start_without_url_is_400(client: httpx.Client) -> None:
    client.post("/sources", json={"name": "van 7", "kind": "vehicle"})
    r = client.post("/sources/van-7/start")
    assert r.status_code == 400 and "no url" in r.json()["detail"]
    client.delete("/sources/van-7")


# --- queries ------------------------------------------------------------------------------------


def test_detections_pagination_returns_every_row_once(client: httpx.Client, lake_data) -> None:
    _, detections, _ = lake_data
    items, pages = _all_pages(client, "/detections", {}, limit=997)
    ids = [i["detection_id"] for i in items]
    assert len(ids) == len(set(ids)) == len(detections)
    assert set(ids) == set(detections["detection_id"])
    keys = [(pd.Timestamp(i["captured_at"]), i["detection_id"]) for i in items]
    assert keys == sorted(keys) and pages == -(-len(detections) // 997)


T0 = pd.Timestamp("2026-05-04T10:05:00Z")
T1 = pd.Timestamp("2026-05-05T08:31:00Z")
DETECTION_FILTERS = [
    ({"source_id": "veh-02"}, lambda d: d.source_id == "veh-02"),
    (
        {"source_id": ["veh-01", "veh-02"], "class_name": ["car", "truck"]},
        lambda d: d.class_name.isin(["car", "truck"]),
    ),
    (
        {"since": T0.isoformat(), "until": T1.isoformat()},
        lambda d: (d.captured_at >= T0) & (d.captured_at < T1),
    ),
    ({"since": "2026-05-04T10:05:00"}, lambda d: d.captured_at >= T0),  # naive = UTC
    (
        {"since": "2026-05-07T00:00:00Z", "source_id": "veh-02"},
        lambda d: (
            (d.captured_at >= pd.Timestamp("2026-05-07", tz="UTC")) & (d.source_id == "veh-02")
        ),
    ),
    (
        {"until": "2026-05-07T00:00:03Z"},
        lambda d: d.captured_at < pd.Timestamp("2026-05-07T00:00:03Z"),
    ),
    (
        {"min_confidence": 0.8, "video_id": "veh-01--b"},
        lambda d: (d.confidence >= 0.8) & (d.video_id == "veh-01--b"),
    ),
    (
        {"bbox": "13.4,52.5,13.4005,52.5004"},
        lambda d: d.lon.between(13.4, 13.4005) & d.lat.between(52.5, 52.5004),
    ),
    (
        {"pixel_box": "100,200,600,400"},
        lambda d: d.anchor_u.between(100, 600) & d.anchor_v.between(200, 400),
    ),
]


@pytest.mark.parametrize(("params", "expected"), DETECTION_FILTERS)
def test_detection_filters_match_pandas(client: httpx.Client, lake_data, params, expected) -> None:
    _, detections, _ = lake_data
    want = set(detections.loc[expected(detections), "detection_id"])
    items, _ = _all_pages(client, "/detections", params, limit=5000)
    got = [i["detection_id"] for i in items]
    assert 0 < len(want) < len(detections)
    assert len(got) == len(set(got)) and set(got) == want


EVENT_FILTERS = [
    ({"rule_id": "speeding"}, lambda e: e.rule_id == "speeding"),
    (
        {"rule_id": "stop-line", "source_id": "veh-01", "until": "2026-05-05T00:00:00Z"},
        lambda e: (
            (e.rule_id == "stop-line")
            & (e.source_id == "veh-01")
            & (e.captured_at < pd.Timestamp("2026-05-05", tz="UTC"))
        ),
    ),
    (
        {"bbox": "13.4,52.5,13.40075,52.5005"},
        lambda e: e.lon.between(13.4, 13.40075) & e.lat.between(52.5, 52.5005),
    ),
]


@pytest.mark.parametrize(("params", "expected"), EVENT_FILTERS)
def test_event_filters_match_pandas(client: httpx.Client, lake_data, params, expected) -> None:
    _, _, events = lake_data
    want = set(events.loc[expected(events), "event_id"])
    items, pages = _all_pages(client, "/events", params, limit=50)
    got = [i["event_id"] for i in items]
    assert 0 < len(want) < len(events) and pages > 1
    assert len(got) == len(set(got)) and set(got) == want


def _binned(frame: pd.DataFrame, minutes: int, by: list[str]) -> dict:
    bins = frame.captured_at.dt.floor(f"{minutes}min")
    counts = frame.assign(bin=bins).groupby(["bin", *by]).size()
    return {(k[0].isoformat(), *k[1:]): int(v) for k, v in counts.items()}


@pytest.mark.parametrize(
    ("table", "minutes", "by"),
    [
        ("events", 5, ["rule_id", "direction"]),
        ("events", 60, ["class_name"]),
        ("detections", 15, ["class_name"]),
    ],
)
def test_stats_match_pandas(client: httpx.Client, lake_data, table, minutes, by) -> None:
    _, detections, events = lake_data
    frame = detections if table == "detections" else events
    r = client.get("/stats", params={"table": table, "bin_minutes": str(minutes), "group_by": by})
    assert r.status_code == 200, r.text
    got = {
        (pd.Timestamp(row["bin_start"]).isoformat(), *(row[g] for g in by)): row["count"]
        for row in r.json()["rows"]
    }
    assert got == _binned(frame, minutes, by)


def test_stats_refuse_a_grouping_the_table_lacks(client: httpx.Client) -> None:
    r = client.get("/stats", params={"table": "detections", "group_by": "rule_id"})
    assert r.status_code == 400 and "cannot be grouped" in r.json()["detail"]


def test_videos_report_processing_state(client: httpx.Client) -> None:
    videos = {v["video_id"]: v for v in client.get("/videos").json()}
    assert set(videos) == {v[0] for v in VIDEOS}
    v = videos["veh-01--b"]
    assert (v["detections"], v["events"], v["frames"], v["registered"]) == (
        True,
        True,
        False,
        False,
    )
    assert v["capture_date"] == "2026-05-05"
    assert [
        x["video_id"] for x in client.get("/videos", params={"source_id": "veh-02"}).json()
    ] == ["veh-02--a", "veh-02--night"]
    assert client.get("/videos/veh-01--a").json()["source_id"] == "veh-01"
    assert client.get("/videos/nope").status_code == 404


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"cursor": "garbage"}, "cursor"),
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "3,2,1,4"}, "min <= max"),
        ({"pixel_box": "nan,0,1,1"}, "finite"),
    ],
)
def test_bad_query_values_are_400_with_a_reason(client: httpx.Client, params, fragment) -> None:
    r = client.get("/detections", params=params)
    assert r.status_code == 400 and fragment in r.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 10_001},
        {"since": "yesterday"},
        {"min_confidence": 2},
        {"video_id": "../x"},
    ],
)
def test_invalid_parameters_are_422(client: httpx.Client, params) -> None:
    r = client.get("/detections", params=params)
    assert r.status_code == 422
    assert next(iter(params)) in json.dumps(r.json()["detail"])


# --- media --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(lake_data):
    """A frame JPEG (with its frames row), an event capture and clip, a heat map PNG, and a
    secret file outside the media folder."""
    home, _, events = lake_data
    root = home / "lake"
    lake = ParquetLake(root)
    frame_jpg = root / "media" / "frames" / "date=2026-05-04" / "veh-01--a" / "000006.jpg"
    frame_jpg.parent.mkdir(parents=True, exist_ok=True)
    frame_jpg.write_bytes(b"\xff\xd8frame-6\xff\xd9")
    frames = pa.table(
        {
            "video_id": ["veh-01--a"],
            "frame_number": [6],
            "pts_sec": [0.2],
            "captured_at": pa.array([pd.Timestamp("2026-05-04T10:00:00.2Z")]),
            "width": pa.array([1280], pa.int32()),
            "height": pa.array([720], pa.int32()),
            "image_path": [str(frame_jpg)],
        }
    )
    lake.write_video("frames", frames, date="2026-05-04", source_id="veh-01", video_id="veh-01--a")
    event_id = events.loc[events.video_id == "veh-02--a", "event_id"].iloc[0]
    paths = media_paths(root, "2026-05-04", "veh-02--a", event_id)
    paths.frame.parent.mkdir(parents=True, exist_ok=True)
    paths.frame.write_bytes(b"\xff\xd8capture\xff\xd9")
    paths.clip.write_bytes(b"\x00\x00\x00\x18ftypmp42clip")
    png = root / "media" / "heatmaps" / "date=2026-05-04" / "veh-01--a" / "dwell.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\nheat")
    (root / "secret.jpg").write_bytes(b"secret")
    (home / "outside.jpg").write_bytes(b"outside")
    (root / "media" / "link.jpg").symlink_to(home / "outside.jpg")
    (root / "media" / ".hidden.jpg").write_bytes(b"hidden")
    return {"event_id": event_id, "clip": paths.clip, "frame": paths.frame}


def test_media_endpoints_serve_lake_files(client: httpx.Client, media) -> None:
    r = client.get("/frames/veh-01--a/6.jpg")
    assert r.status_code == 200 and r.content == b"\xff\xd8frame-6\xff\xd9"
    assert r.headers["content-type"] == "image/jpeg"
    assert client.get("/frames/veh-01--a/7.jpg").status_code == 404
    r = client.get(f"/events/{media['event_id']}/capture")
    assert r.status_code == 200 and r.content == b"\xff\xd8capture\xff\xd9"
    assert (
        client.get(f"/events/{media['event_id']}/capture", params={"kind": "crop"}).status_code
        == 404
    )
    r = client.get(f"/events/{media['event_id']}/clip", headers={"Range": "bytes=4-7"})
    assert r.status_code == 206 and r.content == b"ftyp"
    r = client.get("/heatmaps/veh-01--a.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert client.get("/heatmaps/veh-02--a.png").status_code == 404
    rel = media["frame"].relative_to(media["frame"].parents[3]).as_posix()
    assert client.get(f"/media/{rel}").content == b"\xff\xd8capture\xff\xd9"


@pytest.mark.parametrize(
    "path",
    [
        "/media/../secret.jpg",
        "/media/%2e%2e/secret.jpg",
        "/media/..%2Fsecret.jpg",
        "/media/frames/..%2F..%2Fsecret.jpg",
        "/media/%2e%2e%2f%2e%2e%2foutside.jpg",
        "/media//etc/passwd.jpg",
        "/media/link.jpg",
        "/media/.hidden.jpg",
        "/media/frames/date=2026-05-04/veh-01--a/..%5C..%5Csecret.jpg",
        "/frames/..%2F..%2Fsecret/6.jpg",
        "/heatmaps/..%2Fsecret.png",
        "/media/../../detections/date=2026-05-04/source_id=veh-01/veh-01--a.parquet",
    ],
)
def test_path_traversal_is_refused(server, media, path: str) -> None:
    # raw paths, sent exactly as written (no client-side normalisation)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": ADMIN}) as c:
        r = c.send(
            c.build_request("GET", httpx.URL(server.url + "/").copy_with(raw_path=path.encode()))
        )
    assert r.status_code in (400, 404, 422), (path, r.status_code)
    assert b"secret" not in r.content and b"outside" not in r.content


def test_resolve_media_unit(tmp_path: Path) -> None:
    (tmp_path / "media" / "a").mkdir(parents=True)
    (tmp_path / "media" / "a" / "x.jpg").write_bytes(b"x")
    assert resolve_media(tmp_path, "a/x.jpg") == (tmp_path / "media" / "a" / "x.jpg").resolve()
    for bad in (
        "../media/a/x.jpg",
        "/etc/x.jpg",
        "a/../a/x.jpg",
        "a/x.parquet",
        "a\\x.jpg",
        "a/x.jpg\x00",
    ):
        with pytest.raises(MediaError):
            resolve_media(tmp_path, bad)


def test_settings_from_env(tmp_path: Path) -> None:
    s = ServiceSettings.from_env({"ROADLENS_HOME": str(tmp_path), "ROADLENS_API_RATE": "5"})
    assert s.lake_root == tmp_path / "lake" and s.rate_per_s == 5.0 and s.kafka_bootstrap == ""
    assert "ROADLENS" not in repr(s) and os.sep in str(s.registry_path)
    with pytest.raises(ValueError, match="ROADLENS_API_BURST"):
        ServiceSettings.from_env({"ROADLENS_API_BURST": "-1"})


@pytest.mark.parametrize(
    "params",
    [{"since": "0001-01-01T00:00:00+14:00"}, {"until": "9999-12-31T23:59:59-12:00"}],
)
def test_extreme_times_are_clamped_not_500(client: httpx.Client, params) -> None:
    r = client.get("/detections", params={**params, "limit": 1})
    assert r.status_code == 200 and len(r.json()["items"]) == 1
    assert client.get("/stats", params=params).status_code == 200


# --- PostgreSQL store ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_server(lake_data, postgres_url: str):
    """A server whose ``store=postgres`` reads the same rows, written by the PostgreSQL sink."""
    import uuid

    import psycopg

    from roadlens.sinks.postgres import PostgresSink

    home, _, _ = lake_data
    schema = f"t_{uuid.uuid4().hex[:12]}"
    lake = ParquetLake(home / "lake")
    try:
        with PostgresSink(postgres_url, schema=schema) as sink:
            for video_id, *_ in VIDEOS:
                for table in ("detections", "events"):
                    data = lake.read_video(table, video_id).drop_columns(["date"])
                    sink.write_video(table, video_id, data, export_id="t")
        settings = _settings(home, postgres_url=postgres_url, postgres_schema=schema)
        with ServerThread(create_app(settings)) as running:
            yield running
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/detections", {"source_id": "veh-01", "class_name": "car", "min_confidence": 0.5}),
        ("/detections", {"since": T0.isoformat(), "pixel_box": "0,0,700,500"}),
        ("/events", {"rule_id": "speeding", "bbox": "13.4,52.5,13.40075,52.5005"}),
    ],
)
def test_postgres_store_pages_match_the_lake(pg_server, path: str, params: dict) -> None:
    key = "detection_id" if path == "/detections" else "event_id"
    with httpx.Client(base_url=pg_server.url, headers={"X-API-Key": READ}, timeout=60) as c:
        limit = 400 if path == "/detections" else 25
        lake_rows, _ = _all_pages(c, path, params, limit=limit)
        pg_rows, pages = _all_pages(c, path, {**params, "store": "postgres"}, limit=limit)
    assert pages > 1 and len(pg_rows) == len(lake_rows) > 0
    assert [r[key] for r in pg_rows] == [r[key] for r in lake_rows]  # same order, same rows


@pytest.mark.postgres
def test_postgres_store_stats_match_the_lake(pg_server) -> None:
    params = {"table": "events", "bin_minutes": "5", "group_by": ["rule_id", "direction"]}
    with httpx.Client(base_url=pg_server.url, headers={"X-API-Key": READ}, timeout=60) as c:
        lake = c.get("/stats", params=params).json()["rows"]
        pg = c.get("/stats", params={**params, "store": "postgres"}).json()["rows"]
    norm = [{**r, "bin_start": pd.Timestamp(r["bin_start"])} for r in lake]
    assert [{**r, "bin_start": pd.Timestamp(r["bin_start"])} for r in pg] == norm


def test_postgres_store_needs_a_url(client: httpx.Client) -> None:
    r = client.get("/detections", params={"store": "postgres"})
    assert r.status_code == 400 and "ROADLENS_POSTGRES_URL" in r.json()["detail"]
