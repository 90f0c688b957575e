"""The web dashboard at ``/`` in a real browser: Debian's Chromium driven by Playwright,
against a real ``roadlens serve`` (uvicorn on a loopback port) over a synthetic lake.

The browser is the system's ``/usr/bin/chromium`` (``.ci/run`` installs it with apt;
Playwright's own browser downloads do not work here). Without it, or without the
``playwright`` package, the tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from roadlens.lake import ParquetLake
from roadlens.live.status import RecorderStatus, write_status
from roadlens.service import ServiceSettings, create_app
from roadlens.service.testing import ServerThread
from roadlens.synth.tables import synthetic_detections, synthetic_events
from tests.services import skip_or_fail

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
READ_KEY, ADMIN_KEY = "dash-read-key", "dash-admin-key"
DATE = "2026-05-04"
DRIVE, CAMERA = "veh-01--a", "cam-01--a"
TIMEOUT_MS = 20_000


@dataclass
class Dashboard:
    home: Path
    server: ServerThread
    lake: ParquetLake
    detections: pd.DataFrame
    events: pd.DataFrame
    heartbeat: datetime
    heatmap_size: tuple[int, int]  # width, height of the drive's heat map PNG


def _events(video_id: str, source_id: str, rows: int, start: str, seed: int) -> pa.Table:
    table = synthetic_events(
        rows, video_id=video_id, source_id=source_id, start=pd.Timestamp(start), seed=seed
    )
    rules = np.where(np.arange(rows) % 3 == 0, "speeding", "stop-line")
    return table.set_column(table.schema.get_field_index("rule_id"), "rule_id", pa.array(rules))


def _without_gps(table: pa.Table) -> pa.Table:
    """A fixed camera: no GPS fix on any row."""
    for name in ("lat", "lon"):
        i = table.schema.get_field_index(name)
        table = table.set_column(
            i, table.schema.field(i), pa.nulls(table.num_rows, table.schema.field(i).type)
        )
    return table


def _heatmap_png(path: Path, size: tuple[int, int]) -> None:
    """A colour-mapped gradient like the heat map renderer's output."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    intensity = ((np.sin(xx / 17.0) + np.cos(yy / 11.0) + 2) * 63).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.applyColorMap(intensity, cv2.COLORMAP_JET))


def _fill_lake(root: Path) -> tuple[ParquetLake, pd.DataFrame, pd.DataFrame]:
    lake = ParquetLake(root)
    drive_dets = synthetic_detections(
        1500, video_id=DRIVE, source_id="veh-01", start=pd.Timestamp(f"{DATE}T10:00:00Z"), seed=1
    )
    camera_dets = _without_gps(
        synthetic_detections(
            900,
            video_id=CAMERA,
            source_id="cam-01",
            start=pd.Timestamp(f"{DATE}T10:20:00Z"),
            seed=2,
        )
    )
    drive_evs = _events(DRIVE, "veh-01", 120, f"{DATE}T10:00:00Z", seed=1)
    camera_evs = _without_gps(_events(CAMERA, "cam-01", 60, f"{DATE}T10:20:00Z", seed=2))
    for video_id, source_id, dets, evs in (
        (DRIVE, "veh-01", drive_dets, drive_evs),
        (CAMERA, "cam-01", camera_dets, camera_evs),
    ):
        lake.write_video("detections", dets, date=DATE, source_id=source_id, video_id=video_id)
        lake.write_video("events", evs, date=DATE, source_id=source_id, video_id=video_id)
    detections = pd.concat([drive_dets.to_pandas(), camera_dets.to_pandas()], ignore_index=True)
    events = pd.concat([drive_evs.to_pandas(), camera_evs.to_pandas()], ignore_index=True)
    return lake, detections, events


def _register_sources(url: str, landing: Path, heartbeat: datetime) -> None:
    with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN_KEY}, timeout=10) as client:
        for body in (
            {"id": "veh-01", "name": "Van 1", "kind": "vehicle"},
            {"id": "cam-01", "name": "Main St camera", "kind": "camera"},
            {"id": "cam-02", "name": "Depot camera", "kind": "camera"},
        ):
            assert client.post("/sources", json=body).status_code == 201
    # Status files as a recorder (in this or another process) writes them.
    for source_id, state, error in (
        ("veh-01", "RUNNING", None),
        ("cam-01", "RECONNECTING", "connection refused"),
    ):
        (landing / source_id).mkdir(parents=True, exist_ok=True)
        write_status(
            landing / source_id,
            RecorderStatus(
                source_id=source_id,
                source="rtsp://camera.invalid/stream",
                state=state,
                started_at=heartbeat,
                last_heartbeat=heartbeat,
                chunks_closed=4,
                last_error=error,
            ),
        )


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing; install Debian's chromium (apt, see .ci/run)")
    if importlib.util.find_spec("playwright") is None:
        skip_or_fail("the playwright package is missing; pip install -e '.[dev]'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    lake, detections, events = _fill_lake(tmp_path / "lake")
    size = (320, 180)
    _heatmap_png(
        tmp_path / "lake" / "media" / "heatmaps" / f"date={DATE}" / DRIVE / "dwell.png", size
    )
    settings = ServiceSettings(
        home=tmp_path,
        lake_root=tmp_path / "lake",
        landing=tmp_path / "landing",
        api_keys=f"{READ_KEY}:read,{ADMIN_KEY}:admin",
        rate_per_s=1000.0,
        burst=1000.0,
        poll_s=0.2,
    )
    heartbeat = datetime.now(UTC).replace(microsecond=0)
    with ServerThread(create_app(settings)) as server:
        _register_sources(server.url, settings.landing, heartbeat)
        yield Dashboard(tmp_path, server, lake, detections, events, heartbeat, size)


@pytest.fixture
def page(browser):
    """A fresh browser context; afterwards: no JavaScript errors, no request off loopback."""
    context = browser.new_context(viewport={"width": 1280, "height": 1600})
    opened = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    opened.on("request", lambda request: requests.append(request.url))
    opened.on("websocket", lambda ws: requests.append(ws.url))
    opened.set_default_timeout(TIMEOUT_MS)
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    _assert_loopback_only(requests)


def _assert_loopback_only(urls: list[str]) -> None:
    assert urls, "the page made no requests at all"
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme == "data":
            continue
        if parts.scheme == "blob":  # blob:http://127.0.0.1:PORT/uuid, made by the page
            parts = urlsplit(parts.path)
        assert parts.hostname == "127.0.0.1", f"request left the machine: {url}"


def _log_in(page, dashboard: Dashboard) -> None:
    page.goto(dashboard.server.url + "/")
    banner = page.locator("#auth-banner")
    banner.wait_for(state="visible")  # no key yet: the API answered 401
    assert "API key" in banner.inner_text()
    page.fill("#api-key", READ_KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector('#sources-body tr[data-source-id="veh-01"]')
    assert page.evaluate("localStorage.getItem('roadlens.apiKey')") == READ_KEY
    assert banner.is_hidden()


def _write_live_events(dashboard: Dashboard, video_id: str, start: str, rows: int) -> list[str]:
    """A run finished: its events file lands in the lake for the same date."""
    table = _events(video_id, "veh-01", rows, start, seed=9)
    dashboard.lake.write_video("events", table, date=DATE, source_id="veh-01", video_id=video_id)
    return table.column("event_id").to_pylist()


def _track_points(detections: pd.DataFrame) -> int:
    fixes = detections.dropna(subset=["lat", "lon"]).sort_values("captured_at")
    moved = (fixes["lat"] != fixes["lat"].shift()) | (fixes["lon"] != fixes["lon"].shift())
    return int(moved.sum())


def _assert_not_blank(png: bytes) -> None:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 500 and image.shape[1] >= 1280
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert float(image.std()) > 20, "the screenshot is (nearly) one flat colour"
    assert len(colours) > 200, f"only {len(colours)} distinct colours in the screenshot"


def test_dashboard_shows_lake_data_and_a_live_event(page, dashboard: Dashboard) -> None:
    started = time.monotonic()
    _log_in(page, dashboard)

    # Sources with their recorder state and heartbeat.
    states = {
        row.get_attribute("data-source-id"): row.locator("[data-field=state]").inner_text()
        for row in page.locator("#sources-body tr").all()
    }
    assert states == {"veh-01": "RUNNING", "cam-01": "RECONNECTING", "cam-02": "STOPPED"}
    beat = page.locator('tr[data-source-id="veh-01"] [data-field=heartbeat]').inner_text()
    assert dashboard.heartbeat.strftime("%Y-%m-%d %H:%M:%SZ") in beat
    never = page.locator('tr[data-source-id="cam-02"] [data-field=heartbeat]').inner_text()
    assert never == "never"
    assert "connection refused" in page.locator('tr[data-source-id="cam-01"]').inner_text()

    # Charts: totals, legends and the drawn bars agree with the lake.
    events, detections = dashboard.events, dashboard.detections
    page.wait_for_selector(f'#chart-events[data-total="{len(events)}"]')
    page.wait_for_selector(f'#chart-detections[data-total="{len(detections)}"]')
    for rule, count in events["rule_id"].value_counts().items():
        item = page.locator(f'#chart-events li[data-series="{rule}"]')
        assert item.get_attribute("data-total") == str(count)
    for cls, count in detections["class_name"].value_counts().items():
        item = page.locator(f'#chart-detections li[data-series="{cls}"]')
        assert item.get_attribute("data-total") == str(count)
    drawn = page.eval_on_selector_all(
        "#chart-events rect[data-count]",
        "rs => rs.reduce((a, r) => a + Number(r.dataset.count), 0)",
    )
    assert drawn == len(events)
    assert page.locator("#chart-detections polyline").count() == detections["class_name"].nunique()

    # The latest heat map of the drive's source, fetched with the key and decoded.
    img = page.locator('#heatmap-grid figure[data-source-id="veh-01"] img')
    img.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    natural = img.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert tuple(natural) == dashboard.heatmap_size
    assert page.locator('#heatmap-grid figure[data-source-id="cam-01"]').count() == 0

    # The drive map: every geo-tagged event as a marker, the track through every fix.
    page.wait_for_selector(f'#map-figure[data-video-id="{DRIVE}"]')
    drive_events = events[(events.video_id == DRIVE) & events.lat.notna()]
    drive_dets = detections[detections.video_id == DRIVE]
    assert page.locator("#map-figure circle.event-marker").count() == len(drive_events)
    track = page.locator("#map-figure polyline.track")
    assert track.get_attribute("data-points") == str(_track_points(drive_dets))
    axis_labels = page.locator("#map-figure .axis text").all_text_contents()
    assert any(t.endswith("°N") for t in axis_labels) and any(t.endswith("°E") for t in axis_labels)
    assert page.locator("#map-figure .scale-bar text").text_content().endswith("m")
    # A fixed camera has no GPS: the map says so instead of drawing nothing.
    page.select_option("#map-video", CAMERA)
    page.wait_for_selector(f'#map-figure[data-video-id="{CAMERA}"]')
    assert "No GPS fixes" in page.locator("#map-figure").inner_text()
    page.select_option("#map-video", DRIVE)
    page.wait_for_selector(f'#map-figure[data-video-id="{DRIVE}"]')

    # The feed holds the latest events; then a run writes new ones and they arrive live.
    assert page.locator("#feed-list li").count() > 0
    page.wait_for_selector('#feed-state[data-state="live"]')
    live_ids = _write_live_events(dashboard, "veh-01--live-1", f"{DATE}T11:00:00Z", rows=3)
    written = time.monotonic()
    for event_id in live_ids:
        page.wait_for_selector(f'#feed-list li[data-event-id="{event_id}"]', timeout=15_000)
    latency = time.monotonic() - written
    assert page.locator("#feed-count").get_attribute("data-count") == str(len(live_ids))
    newest = page.locator("#feed-list li").first.get_attribute("data-event-id")
    assert newest == live_ids[-1]
    # ... and the charts are refreshed to count them.
    page.wait_for_selector(f'#chart-events[data-total="{len(events) + len(live_ids)}"]')

    shot = dashboard.home / "dashboard.png"  # kept with pytest's temporary folders
    _assert_not_blank(page.screenshot(path=shot, full_page=True))
    print(
        f"dashboard: live event after {latency:.2f} s, {time.monotonic() - started:.1f} s; {shot}"
    )


def test_feed_falls_back_to_polling_when_the_websocket_fails(page, dashboard: Dashboard) -> None:
    # Every WebSocket the page opens is closed at once, as by a proxy that refuses them.
    page.route_web_socket("**/ws*", lambda ws: ws.close(code=1011, reason="refused by test"))
    page.add_init_script(f"localStorage.setItem('roadlens.apiKey', {READ_KEY!r})")
    page.goto(dashboard.server.url + "/")
    page.wait_for_selector('body[data-ready="true"]')
    page.wait_for_selector('#feed-state[data-state="polling"]')
    live_ids = _write_live_events(dashboard, "veh-01--live-2", f"{DATE}T12:00:00Z", rows=2)
    for event_id in live_ids:
        page.wait_for_selector(f'#feed-list li[data-event-id="{event_id}"]', timeout=15_000)
    assert page.locator("#feed-count").get_attribute("data-count") == str(len(live_ids))
    assert page.locator("#feed-state").get_attribute("data-state") == "polling"


def test_empty_lake_in_open_mode(page, tmp_path: Path) -> None:
    """No key configured (loopback only), nothing in the lake: every panel says so."""
    settings = ServiceSettings(
        home=tmp_path, lake_root=tmp_path / "lake", landing=tmp_path / "landing", poll_s=0.2
    )
    with ServerThread(create_app(settings)) as server:
        page.goto(server.url + "/")
        page.wait_for_selector('body[data-ready="true"]')
        page.wait_for_selector('#feed-state[data-state="live"]')
        assert "open mode" in page.locator("#server-status").inner_text()
        assert page.locator("#auth-banner").is_hidden()
        assert page.locator("#sources-empty").is_visible()
        assert page.locator("#heatmaps-empty").is_visible()
        assert page.locator("#feed-empty").is_visible()
        for chart in ("#chart-events", "#chart-detections"):
            assert page.locator(chart).get_attribute("data-total") == "0"
            assert "No data yet" in page.locator(chart).inner_text()
        assert "No videos with detections" in page.locator("#map-figure").inner_text()
        assert page.locator(".error:visible").count() == 0
