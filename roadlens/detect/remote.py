"""A remote detection provider: boxes from an HTTP endpoint, tracking on this machine.

:class:`RemoteDetector` has :class:`~roadlens.detect.detector.Detector`'s interface and
returns the same :class:`~roadlens.detect.detector.DetectionResult` and ``RAW_DETECTIONS``
table, so the spine uses it transparently (``DetectorResource(remote_url=...)`` or
``$ROADLENS_DETECT_URL``). Frames go out in batches (multipart files or JSON with base64
images), at most ``max_in_flight`` requests at a time per video; boxes come back per frame
and are fed, in frame order, to the same tracker the local path uses, so ``track_id`` is
filled exactly as it is locally.

The provider is RoadLens's own ``roadlens detect-server`` (:mod:`roadlens.detect.server`) or
any endpoint that accepts the same requests and answers per frame with a list of boxes
(``x1, y1, x2, y2`` or ``bbox``/``xyxy``, ``confidence``/``conf``/``score``, ``class_id``
and/or ``class_name``).

Example:
    >>> det = RemoteDetector(RemoteConfig(url="http://gpu-box:8766"))  # doctest: +SKIP
    >>> det.detect(images, frame_numbers=[0, 6], pts_sec=[0.0, 0.2], video_id="v")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import logging
import os
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np

from roadlens.camera import DEFAULT_CAMERA
from roadlens.detect.detector import (
    Collected,
    DetectionResult,
    Detector,
    DetectorConfig,
    ProgressFn,
    batches,
    box_scale,
    throttled,
)
from roadlens.schema import RAW_DETECTIONS
from roadlens.video.sample import SampledFrame

log = logging.getLogger(__name__)

URL_ENV = "ROADLENS_DETECT_URL"
REQUEST_FORMATS = ("multipart", "json")
IMAGE_FORMATS = ("jpeg", "png")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class RemoteDetectionError(RuntimeError):
    """The provider could not be reached, refused the request or answered nonsense.

    ``status`` is the HTTP status of the provider's last answer, None when there was none.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RemoteConfig:
    """Where the provider is and how to talk to it.

    ``url`` is the provider's base URL (``http://host:8766``) or its detect endpoint (a URL
    ending in ``detect_path``). ``api_key_env`` names the environment variable holding the
    API key (never the key itself); it is sent as ``Authorization: Bearer <key>`` or, with
    another ``api_key_header``, as that header's raw value. Transport errors, timeouts, 429
    and 5xx answers are retried ``retries`` times with exponential backoff from
    ``backoff_s`` (capped at ``backoff_max_s``), waiting what ``Retry-After`` asks for when
    the provider sends it; other 4xx answers fail at once.
    """

    url: str
    request_format: str = "multipart"
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    batch_size: int = 8
    max_in_flight: int = 2
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    headers: tuple[tuple[str, str], ...] = ()
    api_key_env: str | None = None
    api_key_header: str = "Authorization"
    detect_path: str = "/v1/detect"
    info_path: str = "/v1/info"
    health_path: str = "/v1/health"
    file_field: str = "images"
    json_field: str = "images"

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"remote detector url must be http(s)://..., got {self.url!r}")
        if self.request_format not in REQUEST_FORMATS:
            raise ValueError(
                f"remote request_format {self.request_format!r}: use one of {REQUEST_FORMATS}"
            )
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(
                f"remote image_format {self.image_format!r}: use one of {IMAGE_FORMATS}"
            )
        for name in ("batch_size", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"remote {name} must be >= 1, got {getattr(self, name)}")
        if self.retries < 0 or self.timeout_s <= 0:
            raise ValueError("remote retries must be >= 0 and timeout_s > 0")

    @property
    def base_url(self) -> str:
        base = self.url.rstrip("/")
        if self.detect_path and base.endswith(self.detect_path.rstrip("/")):
            base = base[: -len(self.detect_path.rstrip("/"))]
        return base

    def endpoint(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def request_headers(self) -> dict[str, str]:
        """Configured headers plus the API key read from ``$api_key_env``."""
        headers = dict(self.headers)
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(
                    f"remote detector: API key variable ${self.api_key_env} is not set"
                )
            is_auth = self.api_key_header.lower() == "authorization"
            headers[self.api_key_header] = f"Bearer {key}" if is_auth else key
        return headers


@dataclass(frozen=True)
class ProviderInfo:
    """What the provider says about its model (``GET info_path``); defaults when it has none."""

    model_name: str = "remote"
    model_sha256: str = "unknown"
    backend: str = "unknown"
    class_names: dict[int, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ProviderInfo:
        """From an info answer: ``model: {name, sha256, backend}`` and ``classes`` (map or list)."""
        model = found if isinstance(found := body.get("model"), dict) else {}
        classes = body.get("classes") or {}
        if isinstance(classes, list):
            classes = dict(enumerate(classes))
        return cls(
            model_name=str(model.get("name") or "remote"),
            model_sha256=str(model.get("sha256") or "unknown"),
            backend=str(model.get("backend") or body.get("backend") or "unknown"),
            class_names={int(k): str(v) for k, v in classes.items()},
            raw=body,
        )


@dataclass
class RemoteFrame:
    """One frame's boxes from the provider: ``xyxy`` (n, 4), ``conf`` (n,), ``cls`` (n,)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray


@dataclass
class BatchReply:
    frames: list[RemoteFrame]
    model: dict[str, Any]
    server_ms: float
    attempts: int
    encode_s: float
    bytes_sent: int


# -- wire format --------------------------------------------------------------------------


def encode_image(image: np.ndarray, image_format: str = "jpeg", jpeg_quality: int = 95) -> bytes:
    """JPEG (lossy, small) or PNG (lossless, fast compression) bytes of a BGR frame."""
    if image_format == "png":
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError(f"could not encode a {image.shape} frame as {image_format}")
    return buf.tobytes()


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or bad.

    >>> retry_after_seconds("2"), retry_after_seconds(None), retry_after_seconds("soon")
    (2.0, None, None)
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if key in body:
                return str(body[key])[:300]
    return str(body)[:300]


def _first(box: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in box and box[key] is not None:
            return box[key]
    return None


def parse_frames(
    payload: Any, n: int, class_names: dict[int, str]
) -> tuple[list[RemoteFrame], dict[str, Any]]:
    """Per-frame boxes from a provider's answer; ``class_names`` learns names it meets.

    Accepts ``{"frames": [{"boxes": [...]}, ...]}`` (RoadLens), ``{"results": [...]}``, a
    bare list of frames, and frames that are bare lists of boxes.
    """
    model: dict[str, Any] = {}
    frames = payload
    if isinstance(payload, dict):
        model = found if isinstance(found := payload.get("model"), dict) else {}
        frames = _first(payload, "frames", "results", "predictions")
    if not isinstance(frames, list) or len(frames) != n:
        got = len(frames) if isinstance(frames, list) else type(frames).__name__
        raise RemoteDetectionError(f"provider answered {got} frames for {n} sent")
    by_name = {v: k for k, v in class_names.items()}
    out = []
    for i, frame in enumerate(frames):
        boxes = _first(frame, "boxes", "detections") if isinstance(frame, dict) else frame
        if not isinstance(boxes, list):
            raise RemoteDetectionError(f"provider frame {i} has no list of boxes")
        rows = np.zeros((len(boxes), 6), dtype=np.float64)
        for j, box in enumerate(boxes):
            try:
                xyxy = _first(box, "xyxy", "bbox")
                rows[j, :4] = (
                    xyxy if xyxy is not None else [box[k] for k in ("x1", "y1", "x2", "y2")]
                )
                rows[j, 4] = float(_first(box, "confidence", "conf", "score"))
                cls = _first(box, "class_id", "cls", "class")
                name = _first(box, "class_name", "label", "name")
                if cls is None:
                    if name is None:
                        raise KeyError("class_id or class_name")
                    cls = by_name.setdefault(str(name), max(class_names, default=-1) + 1)
                cls = int(cls)
                if name is not None and cls not in class_names:
                    class_names[cls] = str(name)
                    by_name[str(name)] = cls
                rows[j, 5] = cls
            except (KeyError, TypeError, ValueError) as exc:
                raise RemoteDetectionError(
                    f"provider frame {i} box {j} is malformed: {exc}"
                ) from None
        out.append(
            RemoteFrame(rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), rows[:, 5])
        )
    return out, model


# -- the HTTP client ----------------------------------------------------------------------


class RemoteClient:
    """Thread-safe HTTP client for one provider, with retries and backoff."""

    def __init__(
        self, config: RemoteConfig, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._client = httpx.Client(
            headers=config.request_headers(),
            timeout=httpx.Timeout(
                config.timeout_s, connect=min(config.connect_timeout_s, config.timeout_s)
            ),
            limits=httpx.Limits(max_connections=max(config.max_in_flight, 2)),
        )
        self.retried = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, retries: int | None = None, **kwargs: Any
    ) -> tuple[httpx.Response, int]:
        """``method`` on ``path`` with retries; returns the 2xx response and attempts made."""
        cfg = self.config
        url = cfg.endpoint(path)
        budget = cfg.retries if retries is None else retries
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            status: int | None = None
            try:
                response = self._client.request(method, url, **kwargs)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code < 400:
                    return response, attempt
                status = response.status_code
                error = f"HTTP {status}: {_error_detail(response)}"
                if status not in _RETRY_STATUS:
                    raise RemoteDetectionError(f"{method} {url} failed: {error}", status)
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
            if attempt > budget:
                raise RemoteDetectionError(
                    f"{method} {url} failed after {attempt} attempt(s): {error}",
                    status,
                )
            delay = cfg.backoff_s * 2 ** (attempt - 1) * (1.0 + 0.1 * random.random())
            if retry_after is not None:
                delay = retry_after
            delay = min(delay, cfg.backoff_max_s)
            with self._lock:
                self.retried += 1
            log.warning(
                "%s %s: %s; retry %d/%d in %.2f s", method, url, error, attempt, budget, delay
            )
            self._sleep(delay)

    def get_json(self, path: str, *, retries: int | None = None) -> dict[str, Any]:
        response, _ = self.request("GET", path, retries=retries)
        try:
            body = response.json()
        except ValueError:
            raise RemoteDetectionError(
                f"GET {self.config.endpoint(path)}: answer is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise RemoteDetectionError(
                f"GET {self.config.endpoint(path)}: answer is not a JSON object"
            )
        return body

    def info(self) -> ProviderInfo:
        """The provider's model and classes; defaults when it has no info endpoint (404)."""
        try:
            body = self.get_json(self.config.info_path)
        except RemoteDetectionError as exc:
            if exc.status in (404, 405):
                return ProviderInfo()
            raise
        return ProviderInfo.from_json(body)

    def detect(
        self,
        images: Sequence[np.ndarray],
        class_names: dict[int, str],
        *,
        conf: float | None = None,
        classes: Sequence[int] | None = None,
        retries: int | None = None,
    ) -> BatchReply:
        """Send one batch; boxes per frame in order, in the frames' own pixels."""
        cfg = self.config
        t0 = time.perf_counter()
        ext, mime = ("png", "image/png") if cfg.image_format == "png" else ("jpg", "image/jpeg")
        blobs = [encode_image(img, cfg.image_format, cfg.jpeg_quality) for img in images]
        encode_s = time.perf_counter() - t0
        sent = sum(len(b) for b in blobs)
        options: dict[str, Any] = {}
        if conf is not None:
            options["conf"] = conf
        if classes:
            options["classes"] = list(classes)
        if cfg.request_format == "multipart":
            files = [(cfg.file_field, (f"frame-{i}.{ext}", b, mime)) for i, b in enumerate(blobs)]
            data = {
                k: ",".join(map(str, v)) if isinstance(v, list) else str(v)
                for k, v in options.items()
            }
            kwargs: dict[str, Any] = {"files": files, "data": data}
        else:
            encoded = [base64.b64encode(b).decode("ascii") for b in blobs]
            kwargs = {"json": {cfg.json_field: encoded, **options}}
        response, attempts = self.request("POST", cfg.detect_path, retries=retries, **kwargs)
        try:
            payload = response.json()
        except ValueError:
            raise RemoteDetectionError(
                f"POST {cfg.endpoint(cfg.detect_path)}: answer is not JSON"
            ) from None
        with self._lock:
            frames, model = parse_frames(payload, len(images), class_names)
        timing = payload.get("timing") if isinstance(payload, dict) else None
        server_ms = float(timing.get("inference_ms", 0.0)) if isinstance(timing, dict) else 0.0
        return BatchReply(frames, model, server_ms, attempts, encode_s, sent)


_Pending = tuple[list[SampledFrame], Future[BatchReply]]


# -- the detector -------------------------------------------------------------------------


class RemoteDetector(Detector):
    """:class:`Detector`'s interface over a remote provider; tracking runs here.

    ``config`` supplies what stays on this side: ``conf`` and ``classes`` (sent to the
    provider and applied again to its answer) and ``tracker``. Its ``weights``, ``imgsz``,
    ``backend`` and ``batch_size`` are the provider's business and are ignored.
    """

    def __init__(self, remote: RemoteConfig, config: DetectorConfig | None = None) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_VERBOSE", "False")
        # The tracker runs on this CPU.
        self.config = replace(config or DetectorConfig(), device="cpu")
        self.remote = remote
        self.weights = Path("remote")  # no local weights: the provider has the model
        self.model_name = "remote"
        self.model_sha256 = "unknown"
        self.backend = "remote"
        self.batch_size = remote.batch_size
        self._models: dict[tuple[int, int], object] = {}
        self.class_names: dict[int, str] = {}
        self.export_seconds = 0.0
        self.load_seconds = 0.0
        self.provider: ProviderInfo | None = None
        self._client: RemoteClient | None = None

    @property
    def client(self) -> RemoteClient:
        if self._client is None:
            self._client = RemoteClient(self.remote)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _model_for(self, shape: tuple[int, int]) -> object:
        raise RemoteDetectionError("a remote detector has no local model")

    def connect(self) -> ProviderInfo:
        """Fetch the provider's model and classes (once); raises when it is unreachable."""
        if self.provider is None:
            started = time.perf_counter()
            info = self.client.info()
            self.provider = info
            self.model_name, self.model_sha256 = info.model_name, info.model_sha256
            self.backend = f"remote:{info.backend}"
            self.class_names.update(info.class_names)
            floor = info.raw.get("min_conf")
            if isinstance(floor, int | float) and floor > self.config.conf:
                log.warning(
                    "provider %s runs its model at conf %.3g: boxes between %.3g and that are lost",
                    self.remote.base_url,
                    floor,
                    self.config.conf,
                )
            self.load_seconds += time.perf_counter() - started
        return self.provider

    def warmup(self, height: int, width: int) -> None:
        """Connect and send one blank frame of this size."""
        self.connect()
        self.client.detect([np.zeros((height, width, 3), np.uint8)], self.class_names)

    def detect_stream(
        self,
        frames: Iterable[SampledFrame],
        *,
        video_id: str,
        expected: int | None = None,
        frame_size: tuple[int, int] | None = None,
        fps: float = 5.0,
        progress: ProgressFn | None = None,
        classes: Sequence[int] | None = None,
        camera_kind: str = DEFAULT_CAMERA,
    ) -> DetectionResult:
        """Detect remotely, a few batches in flight, and track here in frame order.

        At most ``2 * max_in_flight`` batches of frames are held at once, whatever the
        video's length; boxes are scaled from the frames' size to ``frame_size``.
        """
        load_started = time.perf_counter()
        stream = iter(frames)
        first = next(stream, None)
        if first is None:
            return self._result(RAW_DETECTIONS.empty_table(), 0, load_started, 0.0, 0.0)
        try:
            self.connect()
        except RemoteDetectionError as exc:
            raise RemoteDetectionError(f"{video_id}: remote detector unreachable: {exc}") from None
        started = time.perf_counter()
        cfg, remote = self.config, self.remote
        track = self.new_tracker(fps, camera_kind)
        keep = list(classes if classes is not None else cfg.classes or []) or None
        keep_ids = np.asarray(keep) if keep else None
        scale, (out_w, out_h) = box_scale(first.image, frame_size)
        collected = Collected()
        wait_s = tracking_s = encode_s = server_s = 0.0
        requests = sent = 0
        report = throttled(progress, expected, started)
        queue = batches(itertools.chain([first], stream), remote.batch_size)
        retried_before = self.client.retried

        def submit(pool: ThreadPoolExecutor, batch: list[SampledFrame]) -> _Pending:
            images = [f.image for f in batch]
            return batch, pool.submit(
                self.client.detect, images, self.class_names, conf=cfg.conf, classes=keep
            )

        # Workers bound the requests in flight; a queue twice as deep keeps them busy while
        # this thread tracks, without reading the whole video ahead.
        with ThreadPoolExecutor(remote.max_in_flight, thread_name_prefix="roadlens-remote") as pool:
            pending: deque[_Pending] = deque()
            try:
                while True:
                    while len(pending) < 2 * remote.max_in_flight:
                        batch = next(queue, None)
                        if batch is None:
                            break
                        pending.append(submit(pool, batch))
                    if not pending:
                        break
                    batch, future = pending.popleft()
                    t0 = time.perf_counter()
                    try:
                        reply = future.result()
                    except RemoteDetectionError as exc:
                        raise RemoteDetectionError(
                            f"{video_id}: frames from {batch[0].frame_number}: {exc}"
                        ) from None
                    t1 = time.perf_counter()
                    wait_s += t1 - t0
                    self._check_model(reply.model, video_id)
                    requests += reply.attempts
                    sent += reply.bytes_sent
                    encode_s += reply.encode_s
                    server_s += reply.server_ms / 1e3
                    for sampled, boxes in zip(batch, reply.frames, strict=True):
                        # The provider may ignore conf and classes: apply them again here.
                        mask = boxes.conf > np.float32(cfg.conf)
                        if keep_ids is not None:
                            mask &= np.isin(boxes.cls.astype(np.int64), keep_ids)
                        xyxy = boxes.xyxy[mask].astype(np.float32).reshape(-1, 4)
                        conf = boxes.conf[mask].astype(np.float32)
                        cls = boxes.cls[mask].astype(np.float32)
                        ids = (
                            track(xyxy, conf, cls, sampled.image)
                            if track is not None
                            else np.full(len(conf), -1, dtype=np.int64)
                        )
                        collected.add(sampled, xyxy * scale, conf, cls, ids)
                    del batch, reply  # hold no frame beyond its batch
                    tracking_s += time.perf_counter() - t1
                    report(collected.frames)
            finally:
                for _, future in pending:
                    future.cancel()
        report(collected.frames, final=True)
        table = self._to_table(collected, video_id, out_w, out_h)
        result = self._result(table, collected.frames, started, wait_s, tracking_s)
        result.timings.update(
            {
                "remote_requests": float(requests),
                "remote_retries": float(self.client.retried - retried_before),
                "remote_server_inference_s": server_s,
                "remote_encode_s": encode_s,
                "remote_bytes_sent": float(sent),
                "remote_max_in_flight": float(remote.max_in_flight),
            }
        )
        return result

    def _check_model(self, model: dict[str, Any], video_id: str) -> None:
        sha = model.get("sha256")
        if sha and self.model_sha256 not in ("unknown", sha):
            raise RemoteDetectionError(
                f"{video_id}: the provider's model changed mid-run ({self.model_sha256[:12]} -> "
                f"{str(sha)[:12]}); re-run the video once the provider is stable"
            )


# -- connectivity test --------------------------------------------------------------------


@dataclass
class Check:
    """One step of a connectivity test; ``ok=None`` means skipped (endpoint not offered)."""

    name: str
    ok: bool | None
    ms: float
    detail: str


@dataclass
class ConnectivityReport:
    url: str
    checks: list[Check]

    @property
    def ok(self) -> bool:
        detect = [c for c in self.checks if c.name == "detect"]
        return bool(detect) and all(c.ok is not False for c in self.checks)

    def format(self) -> str:
        lines = [f"roadlens detect-test {self.url}"]
        for c in self.checks:
            status = "SKIP" if c.ok is None else ("OK" if c.ok else "FAIL")
            lines.append(f"  {c.name:<8} {status:<5} {c.ms:9.1f} ms  {c.detail}")
        lines.append("result: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


def synthetic_frame(width: int = 640, height: int = 360, seed: int = 7) -> np.ndarray:
    """A rendered dashcam frame with road users, so a round trip has boxes to return."""
    from roadlens.synth import Scene

    frames = Scene.create(seed=seed, width=width, height=height).frames(seconds=0.2, fps=5.0)
    return next(iter(frames)).image


def connectivity_test(config: RemoteConfig, *, rounds: int = 3) -> ConnectivityReport:
    """Health, info and ``rounds`` synthetic-frame round trips, without retries."""
    config = replace(config, retries=0)
    checks: list[Check] = []
    report = ConnectivityReport(config.base_url, checks)

    def timed(name: str, fn: Callable[[], str]) -> bool:
        t0 = time.perf_counter()
        try:
            detail = fn()
        except RemoteDetectionError as exc:
            skipped = exc.status in (404, 405) and name in ("health", "info")
            checks.append(
                Check(name, None if skipped else False, (time.perf_counter() - t0) * 1e3, str(exc))
            )
            return skipped
        except ValueError as exc:  # bad configuration (missing API key variable, ...)
            checks.append(Check(name, False, (time.perf_counter() - t0) * 1e3, str(exc)))
            return False
        checks.append(Check(name, True, (time.perf_counter() - t0) * 1e3, detail))
        return True

    try:
        client = RemoteClient(config)
    except ValueError as exc:
        checks.append(Check("config", False, 0.0, str(exc)))
        return report
    with client:

        def health() -> str:
            body = client.get_json(config.health_path)
            return ", ".join(f"{k}={v}" for k, v in body.items())

        info_box: dict[str, ProviderInfo] = {}

        def info() -> str:
            got = ProviderInfo.from_json(client.get_json(config.info_path))
            info_box["info"] = got
            return (
                f"model={got.model_name} sha256={got.model_sha256[:12]} "
                f"backend={got.backend} classes={len(got.class_names)}"
            )

        if not timed("health", health):
            return report  # unreachable: the other steps would only repeat the error
        timed("info", info)
        image = synthetic_frame()
        names = dict(info_box["info"].class_names) if "info" in info_box else {}
        latencies: list[float] = []
        replies: list[BatchReply] = []

        def round_trip() -> str:
            for _ in range(max(1, rounds)):
                t0 = time.perf_counter()
                replies.append(client.detect([image], names, conf=0.25))
                latencies.append((time.perf_counter() - t0) * 1e3)
            boxes = len(replies[-1].frames[0].conf)
            return (
                f"{len(latencies)} x 1 frame {image.shape[1]}x{image.shape[0]} -> {boxes} boxes; "
                f"p50 {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms, "
                f"server inference {replies[-1].server_ms:.1f} ms"
            )

        timed("detect", round_trip)
    return report
