"""``roadlens detect-server``: RoadLens's own detector behind HTTP, detection only.

The server is stateless: it turns frames into boxes and never tracks, so one GPU box can
serve many CPU workers, each of which tracks its own videos (:mod:`roadlens.detect.remote`).

Endpoints (version 1):

- ``POST /v1/detect``: frames as ``multipart/form-data`` (one or many JPEG/PNG file parts,
  in order) or ``application/json`` ``{"images": ["<base64>", ...]}`` (data URLs allowed).
  Optional ``conf`` (drop boxes at or below it; never below the server's ``min_conf``) and
  ``classes`` (class ids to keep) as form fields or JSON keys. Returns, per frame in request
  order, ``{index, name, width, height, boxes: [{class_id, class_name, confidence, x1, y1,
  x2, y2}]}`` (pixels of the frame as sent), plus ``model`` (name, sha256, backend) and
  ``timing`` (queue, decode, inference and total milliseconds).
- ``GET /v1/health``: liveness, model loaded, requests in flight (now and peak).
- ``GET /v1/info``: model, classes, backend, device and the server's limits.

Admission is bounded: at most ``max_inflight`` detect requests are admitted at once (one
runs on the model, the others decode and wait); any beyond that get ``503`` with
``Retry-After``. Bad input is a ``4xx`` whose ``detail`` says what is wrong: ``400``
undecodable image or bad base64, ``401`` missing/wrong API key, ``413`` body, frame count or
pixel count over the limit, ``415`` unsupported content type, ``422`` invalid fields.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from roadlens.detect.detector import DEMO_WEIGHTS, Detector, DetectorConfig

log = logging.getLogger(__name__)

API_VERSION = 1
DEFAULT_PORT = 8766
MAX_PIXELS = 40_000_000  # per frame: 8K is 33 Mpx; larger is a decompression bomb here


@dataclass(frozen=True)
class ServerConfig:
    """What the detect-server loads and the limits it enforces.

    ``min_conf`` is the confidence the model runs at; a request's ``conf`` only filters
    above it (NMS keeps the same boxes, so a higher threshold applied afterwards gives what
    the model would give at that threshold). ``warmup`` lists ``(width, height)`` frame sizes
    loaded (and, for exported backends, exported) before the first request.
    """

    weights: str = str(DEMO_WEIGHTS)
    device: str = "cpu"
    backend: str = "auto"
    imgsz: int = 640
    min_conf: float = 0.01
    iou: float = 0.5
    batch_size: int | None = None
    max_batch: int = 32
    max_inflight: int = 4
    max_body_bytes: int = 64 << 20
    max_pixels: int = MAX_PIXELS
    retry_after_s: int = 1
    api_key_env: str | None = None
    warmup: tuple[tuple[int, int], ...] = ((640, 360),)
    cache_dir: str | None = None


class JsonDetectRequest(BaseModel):
    """The JSON form of ``POST /v1/detect``."""

    images: list[str] = Field(description="base64 JPEG/PNG bytes, or data URLs, one per frame")
    names: list[str] | None = Field(default=None, description="optional frame names, echoed back")
    conf: float | None = Field(default=None, ge=0.0, le=1.0)
    classes: list[int] | None = None


class BoxOut(BaseModel):
    class_id: int
    class_name: str
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float


class FrameOut(BaseModel):
    index: int
    name: str | None
    width: int
    height: int
    boxes: list[BoxOut]


class DetectResponse(BaseModel):
    """The body of a successful ``POST /v1/detect``."""

    api_version: int
    model: dict[str, str]
    frames: list[FrameOut]
    timing: dict[str, float]


@dataclass
class FrameBoxes:
    """One frame's boxes as arrays: ``xyxy`` (n, 4), ``conf`` (n,), ``cls`` (n,)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray


class BoxEngine:
    """A :class:`Detector` without tracking, run on one thread: frames in, boxes out."""

    def __init__(self, config: ServerConfig, detector: Detector | None = None) -> None:
        self.config = config
        self.detector = detector or Detector(
            DetectorConfig(
                weights=config.weights,
                device=config.device,
                imgsz=config.imgsz,
                conf=config.min_conf,
                iou=config.iou,
                batch_size=config.batch_size,
                backend=config.backend,
                tracker=None,
                cache_dir=config.cache_dir,
            )
        )
        if self.detector.config.tracker is not None:
            raise ValueError("the detect-server's detector must not track (tracker=None)")
        # One thread owns the model: ultralytics predictors are not safe to share.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roadlens-detect")
        self.loaded = False

    def warmup(self) -> None:
        for width, height in self.config.warmup:
            self.detector.warmup(height, width)
        if not self.detector.class_names:
            self.detector.warmup(360, 640)
        self.loaded = True

    def class_names(self) -> dict[int, str]:
        return dict(self.detector.class_names)

    def detect(self, images: Sequence[np.ndarray]) -> list[FrameBoxes]:
        """Boxes of every image, in order; images of different sizes are run per size."""
        out: list[FrameBoxes | None] = [None] * len(images)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_shape.setdefault(image.shape[:2], []).append(i)
        for indices in by_shape.values():
            result = self.detector.detect(
                [images[i] for i in indices],
                frame_numbers=list(range(len(indices))),
                pts_sec=[0.0] * len(indices),
                video_id="detect-server",
            )
            table = result.table
            frame = table.column("frame_number").to_numpy()
            counts = np.bincount(frame, minlength=len(indices)) if len(frame) else None
            xyxy = np.stack(
                [table.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")], axis=1
            ).reshape(-1, 4)
            conf = table.column("confidence").to_numpy()
            cls = table.column("class_id").to_numpy()
            # Rows come out grouped by frame in frame order (Detector._to_table).
            start = 0
            for k, i in enumerate(indices):
                n = int(counts[k]) if counts is not None else 0
                out[i] = FrameBoxes(
                    xyxy[start : start + n], conf[start : start + n], cls[start : start + n]
                )
                start += n
        self.loaded = True
        return [f for f in out if f is not None]

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


# -- request parsing ----------------------------------------------------------------------


def _bad(status: int, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=detail, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _bad(400, f"invalid Content-Length header {declared!r}") from None
        if size > limit:
            raise _bad(413, f"request body of {size} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _bad(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(request: Request, body: bytes) -> Request:
    """A new request over the same scope whose body is ``body`` (already read)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def _parse_classes(raw: str | None) -> list[int] | None:
    if raw is None or not raw.strip():
        return None
    try:
        return [int(x) for x in raw.replace(" ", "").split(",") if x]
    except ValueError:
        raise _bad(422, f"classes must be comma-separated class ids, got {raw!r}") from None


def _parse_conf(raw: str | None) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise _bad(422, f"conf must be a number in [0, 1], got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise _bad(422, f"conf must be a number in [0, 1], got {raw!r}")
    return value


@dataclass
class ParsedRequest:
    blobs: list[bytes]
    names: list[str | None]
    conf: float | None
    classes: list[int] | None


async def _parse_multipart(request: Request, body: bytes, max_batch: int) -> ParsedRequest:
    form = await _replay(request, body).form(max_files=4 * max_batch + 16, max_fields=64)
    blobs: list[bytes] = []
    names: list[str | None] = []
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            blobs.append(await value.read())
            names.append(value.filename)
        else:
            fields[key] = str(value)
    return ParsedRequest(
        blobs, names, _parse_conf(fields.get("conf")), _parse_classes(fields.get("classes"))
    )


def _parse_json(body: bytes) -> ParsedRequest:
    try:
        payload = JsonDetectRequest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise _bad(
            422 if first.get("type") != "json_invalid" else 400,
            f"invalid JSON detect request at {where}: {first.get('msg')}",
        ) from None
    blobs = []
    for i, text in enumerate(payload.images):
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            blobs.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise _bad(400, f"frame {i}: images[{i}] is not valid base64") from None
    names: list[str | None] = list(payload.names) if payload.names else [None] * len(blobs)
    if len(names) != len(blobs):
        raise _bad(422, f"names has {len(names)} entries for {len(blobs)} images")
    return ParsedRequest(blobs, names, payload.conf, payload.classes)


def _label(i: int, name: str | None) -> str:
    return f"frame {i}" + (f" ({name})" if name else "")


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def image_size(blob: bytes) -> tuple[str, int, int] | None:
    """``(format, width, height)`` from a JPEG or PNG header, None for anything else.

    Reads the header only (PIL's format plugins; ``PIL.Image.open`` is patched by
    ultralytics to try HEIF, which is not installed).
    """
    from PIL import JpegImagePlugin, PngImagePlugin

    if blob.startswith(_PNG_MAGIC):
        plugin: Any = PngImagePlugin.PngImageFile
    elif blob.startswith(_JPEG_MAGIC):
        plugin = JpegImagePlugin.JpegImageFile
    else:
        return None
    try:
        with plugin(io.BytesIO(blob)) as probe:
            width, height = probe.size
            return str(probe.format), int(width), int(height)
    except (OSError, SyntaxError, ValueError, EOFError):
        return None


def decode_image(blob: bytes, label: str, max_pixels: int) -> np.ndarray:
    """A BGR frame from JPEG/PNG bytes; 400 when undecodable, 413 when too many pixels."""
    if not blob:
        raise _bad(400, f"{label}: empty image")
    size = image_size(blob)
    if size is None:
        raise _bad(400, f"{label}: not a decodable JPEG or PNG image ({len(blob)} bytes)")
    fmt, width, height = size
    if width * height > max_pixels:
        raise _bad(413, f"{label}: {width}x{height} exceeds the limit of {max_pixels} pixels")
    image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise _bad(400, f"{label}: {fmt} {width}x{height} could not be decoded (truncated?)")
    return image


# -- the app ------------------------------------------------------------------------------


@dataclass
class Stats:
    inflight: int = 0
    peak_inflight: int = 0
    requests: int = 0
    rejected: int = 0
    frames: int = 0


def _check_key(request: Request, expected: str | None) -> None:
    if expected is None:
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise _bad(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            {"WWW-Authenticate": "Bearer"},
        )


def create_app(config: ServerConfig = ServerConfig(), engine: BoxEngine | None = None) -> FastAPI:
    """The detect-server ASGI app; the model loads (and warms up) at startup."""
    engine = engine or BoxEngine(config)
    api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if config.api_key_env and not api_key:
        raise ValueError(f"detect-server: API key variable ${config.api_key_env} is not set")
    stats = Stats()
    gate = asyncio.Semaphore(config.max_inflight)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(engine.executor, engine.warmup)
        yield
        engine.close()

    app = FastAPI(
        title="RoadLens detect-server",
        version=str(API_VERSION),
        description=__doc__,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.stats = stats

    def model_info() -> dict[str, str]:
        det = engine.detector
        return {"name": det.model_name, "sha256": det.model_sha256, "backend": det.backend}

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok" if engine.loaded else "loading", **asdict(stats)}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        return {
            "api_version": API_VERSION,
            "model": model_info(),
            "classes": {str(k): v for k, v in sorted(engine.class_names().items())},
            "backend": engine.detector.backend,
            "device": config.device,
            "imgsz": config.imgsz,
            "min_conf": config.min_conf,
            "iou": config.iou,
            "tracking": False,
            "formats": ["multipart", "json"],
            "limits": {
                "max_batch": config.max_batch,
                "max_inflight": config.max_inflight,
                "max_body_bytes": config.max_body_bytes,
                "max_pixels": config.max_pixels,
            },
            "auth": api_key is not None,
        }

    request_schema = JsonDetectRequest.model_json_schema()

    @app.post(
        "/v1/detect",
        response_model=DetectResponse,
        responses={
            400: {"description": "undecodable image, bad base64 or JSON"},
            401: {"description": "missing or wrong API key"},
            413: {"description": "body, frame count or frame size over the limit"},
            415: {"description": "neither multipart/form-data nor application/json"},
            422: {"description": "invalid conf, classes or names"},
            503: {"description": "too many requests in flight; retry after Retry-After seconds"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "images": {
                                    "type": "array",
                                    "items": {"type": "string", "format": "binary"},
                                },
                                "conf": {"type": "number"},
                                "classes": {"type": "string", "description": "e.g. 0,2"},
                            },
                            "required": ["images"],
                        }
                    },
                    "application/json": {"schema": request_schema},
                },
            }
        },
    )
    async def detect(request: Request) -> Response:
        _check_key(request, api_key)
        if gate.locked():
            stats.rejected += 1
            raise _bad(
                503,
                f"busy: {config.max_inflight} detect requests in flight; retry later",
                {"Retry-After": str(config.retry_after_s)},
            )
        async with gate:
            stats.inflight += 1
            stats.peak_inflight = max(stats.peak_inflight, stats.inflight)
            try:
                return await _detect(request)
            finally:
                stats.inflight -= 1

    async def _detect(request: Request) -> Response:
        started = time.perf_counter()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("multipart/form-data", "application/json"):
            raise _bad(
                415,
                f"unsupported content type {ctype or '(none)'!r}: send multipart/form-data "
                "image files or application/json with base64 images",
            )
        body = await _read_body(request, config.max_body_bytes)
        if ctype == "multipart/form-data":
            parsed = await _parse_multipart(request, body, config.max_batch)
        else:
            parsed = _parse_json(body)
        n = len(parsed.blobs)
        if n == 0:
            raise _bad(400, "no images in the request: send image file parts or JSON images")
        if n > config.max_batch:
            raise _bad(413, f"{n} frames exceed the server's max batch of {config.max_batch}")
        loop = asyncio.get_running_loop()
        t_decode = time.perf_counter()
        images = await loop.run_in_executor(
            None,
            lambda: [
                decode_image(b, _label(i, parsed.names[i]), config.max_pixels)
                for i, b in enumerate(parsed.blobs)
            ],
        )
        t_queue = time.perf_counter()
        timing: dict[str, float] = {}

        def run() -> list[FrameBoxes]:
            timing["queue_ms"] = (time.perf_counter() - t_queue) * 1e3
            t0 = time.perf_counter()
            out = engine.detect(images)
            timing["inference_ms"] = (time.perf_counter() - t0) * 1e3
            return out

        boxes = await loop.run_in_executor(engine.executor, run)
        names = engine.class_names()
        frames = [
            _frame_json(i, parsed.names[i], images[i], fb, names, parsed.conf, parsed.classes)
            for i, fb in enumerate(boxes)
        ]
        stats.requests += 1
        stats.frames += n
        timing["decode_ms"] = (t_queue - t_decode) * 1e3
        timing["total_ms"] = (time.perf_counter() - started) * 1e3
        payload = {
            "api_version": API_VERSION,
            "model": model_info(),
            "frames": frames,
            "timing": {k: round(v, 3) for k, v in timing.items()},
        }
        return Response(json.dumps(payload), media_type="application/json")

    return app


def _frame_json(
    index: int,
    name: str | None,
    image: np.ndarray,
    fb: FrameBoxes,
    names: dict[int, str],
    conf: float | None,
    classes: list[int] | None,
) -> dict[str, Any]:
    keep = np.ones(len(fb.conf), dtype=bool)
    if conf is not None:
        keep &= fb.conf > np.float32(conf)  # NMS keeps scores strictly above its threshold
    if classes:
        keep &= np.isin(fb.cls, classes)
    xyxy, scores, cls = fb.xyxy[keep].tolist(), fb.conf[keep].tolist(), fb.cls[keep].tolist()
    return {
        "index": index,
        "name": name,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "boxes": [
            {
                "class_id": int(c),
                "class_name": names.get(int(c), str(c)),
                "confidence": s,
                "x1": b[0],
                "y1": b[1],
                "x2": b[2],
                "y2": b[3],
            }
            for b, s, c in zip(xyxy, scores, cls, strict=True)
        ],
    }


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"640x360,1280x720"`` as ``((640, 360), (1280, 720))``; ``""``/``"none"`` as ``()``.

    >>> parse_sizes("640x360, 1280x720")
    ((640, 360), (1280, 720))
    """
    if text.strip().lower() in ("", "none"):
        return ()
    sizes = []
    for part in text.split(","):
        w, sep, h = part.strip().lower().partition("x")
        if not sep or not w.isdigit() or not h.isdigit():
            raise ValueError(f"warm-up size {part.strip()!r}: use WIDTHxHEIGHT, e.g. 640x360")
        sizes.append((int(w), int(h)))
    return tuple(sizes)


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run the detect-server with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False)
