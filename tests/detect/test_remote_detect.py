"""Remote detection end to end: a real ``roadlens detect-server`` and real HTTP, no mocks.

The module starts ``roadlens detect-server`` in a subprocess with the demo weights (and an
API key), runs :class:`RemoteDetector` over sampled frames of a synthetic clip and compares
it with the local :class:`Detector` on the same frames. Faults (503/429/500, timeouts,
refusals) come from a tiny scripted HTTP server in this file; the spine runs end to end
with ``DetectorResource(remote_url=...)``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from roadlens import cli, pipeline
from roadlens.detect.detector import DetectionResult, Detector, DetectorConfig, file_sha256
from roadlens.detect.remote import (
    RemoteConfig,
    RemoteDetectionError,
    RemoteDetector,
    connectivity_test,
    encode_image,
)
from roadlens.lake import ParquetLake
from roadlens.registry import probe_video_record
from roadlens.synth import render_clip
from roadlens.video import iter_sampled_frames, probe
from roadlens.video.stream import FrameIndex, decode_sampled
from roadlens_dagster.assets.batch import SPINE_ASSETS, batch_run_config
from roadlens_dagster.assets.spine import SPINE
from roadlens_dagster.resources import (
    DetectorResource,
    LakeResource,
    SinksResource,
    SourcesResource,
)
from tests.conftest import CAPTURE_DATE, REPO, LandingClips

pytestmark = pytest.mark.slow

KEY_ENV = "ROADLENS_TEST_DETECT_KEY"
KEY = "test-key-0f9c"
MAX_BATCH = 8
MAX_INFLIGHT = 4
MAX_BODY_MB = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the real detect-server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def key_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        yield


@pytest.fixture(scope="module")
def server_url(
    detector_weights: Path, roadlens_home_dir: Path, key_env: None, tmp_path_factory
) -> Iterator[str]:
    """``roadlens detect-server`` on a free loopback port, requiring the test API key."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("detect-server") / "server.log"
    env = {
        **os.environ,
        "ROADLENS_HOME": str(roadlens_home_dir),
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(roadlens_home_dir / "ultralytics"),
        KEY_ENV: KEY,
    }
    command = [
        sys.executable, "-m", "roadlens.cli", "detect-server",
        "--port", str(port),
        "--weights", str(detector_weights),
        "--max-batch", str(MAX_BATCH),
        "--max-inflight", str(MAX_INFLIGHT),
        "--max-body-mb", str(MAX_BODY_MB),
        "--api-key-env", KEY_ENV,
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    pytest.fail(
                        f"detect-server exited with {proc.returncode}:\n{log_path.read_text()}"
                    )
                try:
                    if httpx.get(f"{url}/v1/health", timeout=1).json().get("status") == "ok":
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"detect-server did not come up:\n{log_path.read_text()}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class Clip:
    images: list[np.ndarray]
    frame_numbers: list[int]
    pts_sec: list[float]

    def detect(self, detector: Detector) -> DetectionResult:
        return detector.detect(
            self.images, frame_numbers=self.frame_numbers, pts_sec=self.pts_sec, video_id="clip"
        )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    rendered = render_clip(tmp_path_factory.mktemp("remote") / "clip.mp4", seconds=3.0, seed=5)
    frames = list(iter_sampled_frames(rendered.video_path, 5.0))
    return Clip(
        [f.image for f in frames], [f.frame_number for f in frames], [f.pts_sec for f in frames]
    )


@pytest.fixture(scope="module")
def local(clip: Clip, detector_weights: Path, roadlens_home_dir: Path) -> DetectionResult:
    config = DetectorConfig(weights=str(detector_weights), cache_dir=str(roadlens_home_dir))
    return clip.detect(Detector(config))


def _remote(url: str, **overrides) -> RemoteDetector:
    options = {"batch_size": 4, "max_in_flight": 2, "api_key_env": KEY_ENV, **overrides}
    return RemoteDetector(RemoteConfig(url=url, **options))


def _boxes(table: pa.Table) -> np.ndarray:
    return np.stack([table.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")], axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


# -- same boxes and tracks as the local detector -----------------------------------------


def test_png_multipart_matches_local_detector_exactly_with_track_ids(
    server_url: str, clip: Clip, local: DetectionResult, detector_weights: Path
) -> None:
    detector = _remote(server_url, image_format="png", request_format="multipart")
    result = clip.detect(detector)
    remote, mine = result.table, local.table
    assert mine.num_rows > 0 and local.tracks > 0
    assert remote.schema == mine.schema
    # Lossless frames through the same model: the same boxes, and the same tracker fed with
    # them here gives the same track ids. Not bit for bit: the server batches requests as
    # they arrive (up to --max-batch), and another batch size picks other CPU kernels, which
    # moved one box corner by 0.45 px in a loaded run.
    for name in ("frame_number", "pts_sec", "class_id", "class_name", "track_id"):
        assert remote.column(name).equals(mine.column(name)), name
    np.testing.assert_allclose(
        remote.column("confidence").to_numpy(), mine.column("confidence").to_numpy(), atol=1e-3
    )
    np.testing.assert_allclose(_boxes(remote), _boxes(mine), atol=1.0)
    assert result.tracks == local.tracks
    assert result.frames == len(clip.images)
    assert result.backend == f"remote:{local.backend}"
    assert result.model_name == "roadlens-det"
    assert result.model_sha256 == file_sha256(detector_weights)
    # 15 frames in batches of 4: 4 requests, no retries.
    assert result.timings["remote_requests"] == 4
    assert result.timings["remote_retries"] == 0
    assert detector.class_names == {
        0: "person",
        1: "car",
        2: "truck",
        3: "stop sign",
        4: "traffic light",
    }


def test_jpeg_json_matches_local_detector_within_tolerance(
    server_url: str, clip: Clip, local: DetectionResult
) -> None:
    result = clip.detect(_remote(server_url, image_format="jpeg", request_format="json"))
    remote, mine = result.table, local.table
    assert abs(remote.num_rows - mine.num_rows) <= max(2, mine.num_rows // 10)
    matched = 0
    for frame in sorted(set(mine.column("frame_number").to_pylist())):
        a = mine.filter(pc.equal(mine.column("frame_number"), frame))
        b = remote.filter(pc.equal(remote.column("frame_number"), frame))
        if not b.num_rows:
            continue
        iou = _iou(_boxes(a), _boxes(b))
        best = iou.argmax(axis=1)
        same_class = a.column("class_id").to_numpy() == b.column("class_id").to_numpy()[best]
        matched += int(((iou.max(axis=1) > 0.85) & same_class).sum())
    assert matched >= 0.9 * mine.num_rows
    # Track ids present as locally (ByteTrack leaves its low-score boxes untracked).
    untracked = [t.column("track_id").null_count / t.num_rows for t in (remote, mine)]
    assert untracked[0] < 0.6 and abs(untracked[0] - untracked[1]) < 0.1, untracked
    assert abs(result.tracks - local.tracks) <= 2 and result.tracks > 0


def test_conf_and_classes_apply_to_remote_boxes(server_url: str, clip: Clip) -> None:
    detector = RemoteDetector(
        RemoteConfig(url=server_url, api_key_env=KEY_ENV, image_format="png"),
        DetectorConfig(conf=0.5, classes=(1,), tracker=None),
    )
    table = clip.detect(detector).table
    assert table.num_rows > 0
    assert set(table.column("class_name").to_pylist()) == {"car"}
    assert min(table.column("confidence").to_pylist()) > 0.5
    assert table.column("track_id").null_count == table.num_rows


# -- the server's own contract -------------------------------------------------------------


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def test_info_health_and_openapi(server_url: str, detector_weights: Path) -> None:
    info = httpx.get(f"{server_url}/v1/info").json()
    assert info["model"]["sha256"] == file_sha256(detector_weights)
    assert info["classes"]["1"] == "car" and info["tracking"] is False
    assert info["limits"]["max_batch"] == MAX_BATCH and info["auth"] is True
    assert httpx.get(f"{server_url}/v1/health").json()["status"] == "ok"
    schema = httpx.get(f"{server_url}/openapi.json").json()
    body = schema["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}


def test_bad_input_gets_a_clear_4xx(server_url: str, clip: Clip) -> None:
    url = f"{server_url}/v1/detect"
    jpeg = encode_image(clip.images[0])

    def post(**kwargs) -> httpx.Response:
        return httpx.post(url, headers=kwargs.pop("headers", _auth()), timeout=30, **kwargs)

    r = post(headers={}, files=[("images", ("a.jpg", jpeg, "image/jpeg"))])
    assert r.status_code == 401 and "API key" in r.json()["detail"]
    r = post(headers={"Authorization": "Bearer wrong"}, json={"images": []})
    assert r.status_code == 401
    r = post(files=[("images", ("bad.jpg", b"not an image at all", "image/jpeg"))])
    assert r.status_code == 400
    assert r.json()["detail"].startswith("frame 0 (bad.jpg): not a decodable JPEG or PNG image")
    r = post(json={"images": ["@@@ not base64"]})
    assert r.status_code == 400 and "images[0] is not valid base64" in r.json()["detail"]
    r = post(json={"images": []})
    assert r.status_code == 400 and "no images" in r.json()["detail"]
    r = post(content=b"{nope", headers={**_auth(), "Content-Type": "application/json"})
    assert r.status_code == 400 and "invalid JSON" in r.json()["detail"]
    r = post(json={"images": [base64.b64encode(jpeg).decode()], "conf": 3})
    assert r.status_code == 422 and "conf" in r.json()["detail"]
    r = post(content=jpeg, headers={**_auth(), "Content-Type": "image/jpeg"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    files = [("images", (f"{i}.jpg", jpeg, "image/jpeg")) for i in range(MAX_BATCH + 1)]
    r = post(files=files)
    assert r.status_code == 413 and f"max batch of {MAX_BATCH}" in r.json()["detail"]
    big = os.urandom(MAX_BODY_MB * (1 << 20) + 1)
    r = post(files=[("images", ("big.jpg", big, "image/jpeg"))])
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
    # Still serving after all that.
    ok = post(files=[("images", ("a.jpg", jpeg, "image/jpeg"))], data={"conf": "0.25"})
    assert ok.status_code == 200
    frame = ok.json()["frames"][0]
    assert (frame["width"], frame["height"]) == (640, 360) and frame["name"] == "a.jpg"
    assert frame["boxes"] and all(b["confidence"] > 0.25 for b in frame["boxes"])


def test_busy_server_answers_503_with_retry_after_and_the_client_rides_it_out(
    server_url: str, clip: Clip
) -> None:
    files = [
        ("images", (f"{i}.png", encode_image(img, "png"), "image/png"))
        for i, img in enumerate(clip.images[:MAX_BATCH])
    ]
    url = f"{server_url}/v1/detect"
    with ThreadPoolExecutor(3 * MAX_INFLIGHT) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(url, files=files, headers=_auth(), timeout=60),
                range(3 * MAX_INFLIGHT),
            )
        )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= MAX_INFLIGHT and 503 in codes
    busy = next(a for a in answers if a.status_code == 503)
    assert busy.headers["Retry-After"] == "1" and "in flight" in busy.json()["detail"]
    health = httpx.get(f"{server_url}/v1/health").json()
    assert health["rejected"] >= 1 and health["peak_inflight"] <= MAX_INFLIGHT
    # Clients with more requests in flight than the server admits still finish, retrying.
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(
                lambda _: clip.detect(
                    _remote(server_url, batch_size=2, max_in_flight=4, retries=8)
                ),
                range(3),
            )
        )
    assert all(r.frames == len(clip.images) for r in results)
    assert len({r.table.num_rows for r in results}) == 1


# -- the connectivity test -----------------------------------------------------------------


def test_detect_test_cli_exit_codes(server_url: str, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["detect-test", "--url", server_url, "--api-key-env", KEY_ENV]) == 0
    out = capsys.readouterr().out
    assert "health   OK" in out and "info     OK" in out and "detect   OK" in out
    assert "model=roadlens-det" in out and "result: OK" in out
    assert cli.main(["detect-test", "--url", server_url, "--format", "json"]) == 1
    out = capsys.readouterr().out
    assert "detect   FAIL" in out and "HTTP 401" in out and "result: FAILED" in out
    dead = f"http://127.0.0.1:{_free_port()}"
    assert cli.main(["detect-test", "--url", dead, "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "health   FAIL" in out and "ConnectError" in out and "result: FAILED" in out


# -- faults, retries and bounded concurrency against a scripted server ------------------------


@dataclass
class Script:
    """Answers of the scripted server, in order; the last one repeats."""

    steps: list[tuple[int, dict[str, str], float]]
    delay_s: float = 0.0
    seen: list[float] = field(default_factory=list)
    inflight: int = 0
    peak: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _frames_in(body: bytes, ctype: str) -> int:
    if ctype.startswith("application/json"):
        return len(json.loads(body)["images"])
    return body.count(b'filename="')


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script(steps=[(200, {}, 0.0)])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # no health or info endpoints, like many providers
            self.send_error(404)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with script.lock:
                index = len(script.seen)
                script.seen.append(time.monotonic())
                script.inflight += 1
                script.peak = max(script.peak, script.inflight)
            status, headers, sleep = script.steps[min(index, len(script.steps) - 1)]
            try:
                time.sleep(sleep + script.delay_s)
                n = _frames_in(body, self.headers.get("Content-Type", ""))
                box = {"class_id": 1, "class_name": "car", "confidence": 0.9,
                       "x1": 10.0, "y1": 20.0, "x2": 110.0, "y2": 80.0}  # fmt: skip
                if status == 200:
                    payload = {"frames": [{"boxes": [box]} for _ in range(n)]}
                else:
                    payload = {"detail": f"scripted {status}"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with script.lock:
                    script.inflight -= 1

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def _gray(n: int) -> list[np.ndarray]:
    return [np.full((120, 160, 3), 90, np.uint8) for _ in range(n)]


def _run(url: str, n: int = 2, **overrides) -> DetectionResult:
    options = {"batch_size": 2, "max_in_flight": 1, "backoff_s": 0.05, **overrides}
    detector = RemoteDetector(RemoteConfig(url=url, **options))
    return detector.detect(
        _gray(n), frame_numbers=list(range(n)), pts_sec=[i / 5 for i in range(n)], video_id="v"
    )


def test_503_then_200_honours_retry_after(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(503, {"Retry-After": "1"}, 0.0), (200, {}, 0.0)]
    result = _run(url)
    assert len(script.seen) == 2
    assert script.seen[1] - script.seen[0] >= 0.95  # waited what Retry-After asked, not 0.05 s
    assert result.table.num_rows == 2
    assert result.table.column("class_name").to_pylist() == ["car", "car"]
    assert result.timings["remote_retries"] == 1
    # A provider without an info endpoint: the model is reported as unknown, not invented.
    assert result.model_name == "remote" and result.model_sha256 == "unknown"


def test_429_backs_off_exponentially_then_succeeds(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(429, {}, 0.0), (429, {}, 0.0), (200, {}, 0.0)]
    result = _run(url, backoff_s=0.2, request_format="json")
    gaps = np.diff(script.seen)
    assert len(script.seen) == 3 and result.table.num_rows == 2
    # 0.2 s, then 0.4 s (+<10 % jitter): doubling, not Retry-After (none was sent).
    assert 0.2 <= gaps[0] < 0.5 and 0.4 <= gaps[1] < 0.9 and gaps[1] > 1.5 * gaps[0]


def test_persistent_5xx_fails_after_the_retry_budget(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(500, {}, 0.0)]
    with pytest.raises(
        RemoteDetectionError,
        match=r"v: frames from 0: .*after 3 attempt\(s\): HTTP 500: scripted 500",
    ):
        _run(url, retries=2)
    assert len(script.seen) == 3


def test_4xx_is_not_retried(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(400, {}, 0.0)]
    with pytest.raises(RemoteDetectionError, match="HTTP 400: scripted 400"):
        _run(url, retries=3)
    assert len(script.seen) == 1


def test_timeout_is_retried(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(200, {}, 3.0), (200, {}, 0.0)]
    started = time.monotonic()
    result = _run(url, timeout_s=0.4, retries=1)
    assert len(script.seen) == 2 and result.table.num_rows == 2
    assert time.monotonic() - started < 2.5  # gave up on the slow answer instead of waiting
    script.seen.clear()
    script.steps = [(200, {}, 1.0)]
    with pytest.raises(RemoteDetectionError, match=r"after 1 attempt.*ReadTimeout"):
        _run(url, timeout_s=0.3, retries=0)


def test_connect_errors_are_retried_then_reported() -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(
        RemoteDetectionError, match=r"unreachable: .*after 3 attempt\(s\): ConnectError"
    ):
        _run(dead, retries=2, backoff_s=0.1)
    assert time.monotonic() - started >= 0.3  # 0.1 s + 0.2 s of backoff


def test_requests_in_flight_are_bounded(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.delay_s = 0.15
    result = _run(url, n=20, batch_size=2, max_in_flight=3)
    assert len(script.seen) == 10 and result.table.num_rows == 20
    assert script.peak == 3  # the limit is reached (parallel) and never exceeded
    script.peak = 0
    script.seen.clear()
    _run(url, n=8, batch_size=2, max_in_flight=1)
    assert script.peak == 1


def test_connectivity_test_skips_missing_info_endpoints(scripted: tuple[str, Script]) -> None:
    url, script = scripted  # a provider with a detect endpoint only: health/info are 404
    report = connectivity_test(RemoteConfig(url=url + "/v1/detect"), rounds=2)
    assert [(c.name, c.ok) for c in report.checks] == [
        ("health", None),
        ("info", None),
        ("detect", True),
    ]
    assert report.ok and len(script.seen) == 2
    assert "SKIP" in report.format() and report.format().endswith("result: OK")
    script.steps = [(500, {}, 0.0)]
    failed = connectivity_test(RemoteConfig(url=url), rounds=1)
    assert not failed.ok and failed.checks[-1].ok is False and "HTTP 500" in failed.format()


# -- the spine with the remote provider ----------------------------------------------------


def test_spine_detections_through_the_remote_provider(
    server_url: str,
    dashcam_clip_dir: LandingClips,
    detector_weights: Path,
    roadlens_home_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROADLENS_HOME", str(roadlens_home_dir))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    lake = ParquetLake(tmp_path / "lake")
    landing = dashcam_clip_dir.landing
    records = [probe_video_record(p, landing_root=landing) for p in dashcam_clip_dir.paths]
    detector = DetectorResource(
        weights="/nonexistent/weights.pt",  # never loaded: the provider has the model
        conf=0.01,
        remote_url=server_url,
        remote_image_format="png",
        remote_api_key_env=KEY_ENV,
    )
    result = dg.materialize(
        list(SPINE),
        partition_key=CAPTURE_DATE,
        resources={
            "lake": LakeResource(root=str(lake.root)),
            "sources": SourcesResource(landing_dir=str(landing)),
            "detector": detector,
            "sinks": SinksResource(),
        },
        run_config=batch_run_config(
            [r.video_id for r in records], [r.path for r in records], assets=SPINE_ASSETS
        ),
    )
    assert result.success
    meta = {
        k: v.value
        for k, v in result.asset_materializations_for_node("raw_detections")[0].metadata.items()
    }
    assert meta["backend"].startswith("remote:")
    assert meta["model_sha256"] == file_sha256(detector_weights)
    enriched = lake.read_date(pipeline.DETECTIONS_TABLE, CAPTURE_DATE)
    assert enriched is not None and enriched.num_rows > 0
    assert set(enriched.column("model_sha256").to_pylist()) == {file_sha256(detector_weights)}
    assert enriched.column("track_id").null_count < enriched.num_rows
    # The lake's raw detections of a video are what the local detector finds on its frames.
    video_id = records[0].video_id
    raw = lake.read_video(pipeline.RAW_DETECTIONS_TABLE, video_id)
    frames = lake.read_video(pipeline.FRAMES_TABLE, video_id)
    pts = frames.column("pts_sec").to_numpy()
    # No JPEGs are kept by default: decode the sampled frames as the spine does.
    index = FrameIndex(
        probe(records[0].path),
        frames.column("frame_number").to_numpy(),
        pts,
        frames.num_rows,
    )
    images = [f.image for f in decode_sampled(index)]
    assert len(images) == frames.num_rows
    local = Detector(
        DetectorConfig(weights=str(detector_weights), conf=0.01, cache_dir=str(roadlens_home_dir))
    ).detect(
        images,
        frame_numbers=frames.column("frame_number").to_pylist(),
        pts_sec=pts.tolist(),
        video_id=video_id,
        fps=1.0 / float(np.median(np.diff(pts))),
    )
    assert raw.num_rows == local.table.num_rows > 0
    # NMS may order two boxes of equal confidence either way: compare per frame, sorted.
    order = [("frame_number", "ascending")] + [(c, "ascending") for c in ("x1", "y1", "x2", "y2")]
    raw, mine = raw.sort_by(order), local.table.sort_by(order)
    np.testing.assert_array_equal(_boxes(raw), _boxes(mine))
    assert raw.column("track_id").equals(mine.column("track_id"))


def test_detector_resource_selects_the_remote_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROADLENS_DETECT_URL", raising=False)
    assert type(DetectorResource().get_detector()) is Detector
    monkeypatch.setenv("ROADLENS_DETECT_URL", "http://gpu-box:8766")
    detector = DetectorResource(remote_format="json", remote_max_in_flight=3).get_detector()
    assert isinstance(detector, RemoteDetector)
    assert detector.remote.request_format == "json" and detector.remote.max_in_flight == 3
    assert detector.remote.endpoint("/v1/detect") == "http://gpu-box:8766/v1/detect"
    # An explicit URL wins over the environment, and a detect URL is accepted as the base.
    explicit = DetectorResource(remote_url="http://other:9000/v1/detect").get_detector()
    assert explicit.remote.base_url == "http://other:9000"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="request_format 'xml'"):
        DetectorResource(remote_format="xml").get_detector()
