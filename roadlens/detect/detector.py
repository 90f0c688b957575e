"""Ultralytics YOLO wrapper: batched inference, exported CPU backends and tracking.

Example:
    >>> det = Detector(DetectorConfig(weights="roadlens/models/roadlens-det.pt"))  # doctest: +SKIP
    >>> result = det.detect(images, frame_numbers=[0, 6], pts_sec=[0.0, 0.2], video_id="v")  # doctest: +SKIP
    >>> result.table.column_names[:3]  # doctest: +SKIP
    ['video_id', 'frame_number', 'pts_sec']
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import itertools
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pyarrow as pa

from roadlens.camera import DEFAULT_CAMERA
from roadlens.detect.openvino_engine import OpenVINOEngine, ir_file
from roadlens.detect.tracking import MotionTracker, TrackerConfig, class_groups
from roadlens.detect.weights import DEMO_WEIGHTS, WeightsError, check_weights
from roadlens.schema import RAW_DETECTIONS, conform
from roadlens.settings import roadlens_home
from roadlens.video.sample import SampledFrame

log = logging.getLogger(__name__)

BACKENDS = ("pytorch", "openvino", "onnx")
# Export formats by backend, and the file or folder ultralytics writes for each.
_EXPORT_FORMAT = {"openvino": "openvino", "onnx": "onnx"}

ProgressFn = Callable[[int, int, float], None]
TrackFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``track(xyxy, confidence, class_id, image) -> track id per box (-1: none)``, in frame order."""
MOTION_TRACKER = "motion"
T = TypeVar("T")


def file_sha256(path: str | Path) -> str:
    """sha256 of a weights file, or of every file of a weights folder in name order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            for block in iter(functools.partial(handle.read, 1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def fastest_cpu_backend() -> str:
    """The fastest installed CPU backend: OpenVINO (about 4x PyTorch here), ONNX Runtime, PyTorch."""
    if importlib.util.find_spec("openvino") is not None:
        return "openvino"
    if importlib.util.find_spec("onnxruntime") is not None:
        return "onnx"
    return "pytorch"


def letterbox_shape(height: int, width: int, imgsz: int, stride: int = 32) -> tuple[int, int]:
    """The ``(h, w)`` tensor shape ultralytics' rectangular letterbox gives a frame.

    >>> letterbox_shape(360, 640, 640)
    (384, 640)
    """
    ratio = imgsz / max(height, width)
    return (
        int(math.ceil(round(height * ratio) / stride) * stride),
        int(math.ceil(round(width * ratio) / stride) * stride),
    )


@dataclass(frozen=True)
class DetectorConfig:
    """What to run and how.

    ``backend="auto"`` picks the fastest installed CPU backend on CPU and PyTorch on GPUs.
    ``batch_size=None`` picks 16 on GPUs, 8 for PyTorch on CPU and 1 for the static
    exported CPU backends. ``tracker`` is ``"motion"`` (:class:`MotionTracker`, tuned per
    camera kind for sparse sampling), an ultralytics tracker config (``bytetrack.yaml``,
    ``botsort.yaml``) or None to skip tracking.
    """

    weights: str = str(DEMO_WEIGHTS)
    device: str = "cpu"
    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.5
    classes: tuple[int, ...] | None = None
    batch_size: int | None = None
    backend: str = "auto"
    tracker: str | None = MOTION_TRACKER
    cache_dir: str | None = None
    threads: int | None = None

    def resolved_backend(self) -> str:
        if self.backend == "auto":
            return fastest_cpu_backend() if self.device == "cpu" else "pytorch"
        if self.backend not in BACKENDS:
            raise ValueError(
                f"unknown detector backend {self.backend!r}: use one of {BACKENDS} or 'auto'"
            )
        return self.backend

    def resolved_batch_size(self) -> int:
        if self.batch_size is not None:
            if self.batch_size < 1:
                raise ValueError(f"detector batch_size must be >= 1, got {self.batch_size}")
            return self.batch_size
        if self.device != "cpu":
            return 16
        # Exports are static batch-1 graphs; PyTorch on this 2-core CPU measured 9.0 ms/frame
        # at batch 8 against 13.1 at batch 1 with the demo model (bench/bench_detect.py).
        return 8 if self.resolved_backend() == "pytorch" else 1


@dataclass
class DetectionResult:
    """Raw detections of one video and where the time went."""

    table: pa.Table
    frames: int
    backend: str
    seconds_total: float
    seconds_model: float
    seconds_tracking: float
    tracks: int
    model_name: str
    model_sha256: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def model_share(self) -> float:
        """Fraction of the stage's wall time spent inside the model."""
        return self.seconds_model / self.seconds_total if self.seconds_total else 0.0


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter).

    >>> [len(b) for b in batches(range(5), 2)]
    [2, 2, 1]
    """
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Collected:
    """Per-frame boxes gathered for one video's table: a few arrays per frame, no pixels."""

    def __init__(self) -> None:
        self.boxes: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.frame_numbers: list[int] = []
        self.pts_sec: list[float] = []

    @property
    def frames(self) -> int:
        return len(self.frame_numbers)

    def add(
        self,
        frame: SampledFrame,
        xyxy: np.ndarray,
        conf: np.ndarray,
        cls: np.ndarray,
        ids: np.ndarray,
    ) -> None:
        self.boxes.append((xyxy, conf, cls, ids))
        self.frame_numbers.append(frame.frame_number)
        self.pts_sec.append(frame.pts_sec)


def box_scale(
    image: np.ndarray, frame_size: tuple[int, int] | None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Factors from ``image``'s pixels to ``frame_size``'s for ``xyxy`` boxes, and that size.

    >>> factors, size = box_scale(np.zeros((360, 640, 3), np.uint8), (1920, 1080))
    >>> factors.tolist(), size
    ([3.0, 3.0, 3.0, 3.0], (1920, 1080))
    """
    height, width = image.shape[:2]
    out_w, out_h = frame_size or (width, height)
    return np.array([out_w / width, out_h / height] * 2, dtype=np.float32), (out_w, out_h)


def throttled(
    progress: ProgressFn | None, expected: int | None, started: float, every_s: float = 2.0
) -> Callable[..., None]:
    """``report(done, final=False)``: calls ``progress`` at most every ``every_s`` seconds."""
    last = [started]

    def report(done: int, final: bool = False) -> None:
        now = time.perf_counter()
        if progress is None or not (final or now - last[0] > every_s):
            return
        last[0] = now
        progress(done, max(expected or 0, done), done / max(now - started, 1e-9))

    return report


def _load_error(weights: Path, exc: BaseException) -> WeightsError:
    """A weights error naming the file the user set, not a model-cache copy."""
    detail = str(exc).replace("❌️", "").replace("ERROR", "").strip().splitlines()
    reason = detail[0].replace(str(weights), "").strip(" :-—") if detail else type(exc).__name__
    return WeightsError(f"detector weights {weights}: cannot be loaded as a YOLO model ({reason})")


def frame_count(
    images: Sequence[np.ndarray],
    frame_numbers: Sequence[int],
    pts_sec: Sequence[float],
    video_id: str,
) -> int:
    """The number of frames, after checking that every frame has a number and a time."""
    n = len(images)
    if not (n == len(frame_numbers) == len(pts_sec)):
        raise ValueError(
            f"{video_id}: {n} images but {len(frame_numbers)} frame numbers, {len(pts_sec)} times"
        )
    return n


class Detector:
    """A loaded YOLO model; :meth:`detect` turns frames into a ``RAW_DETECTIONS`` table."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        # Before ultralytics is first imported: keep per-load chatter out of run logs.
        os.environ.setdefault("YOLO_VERBOSE", "False")
        self.config = config
        weights = Path(config.weights)
        if weights.exists() or os.sep in config.weights:
            weights = check_weights(weights)
        self.weights = weights
        self.model_name = weights.stem if weights.suffix else weights.name
        # A folder model's identity covers every file in it (graph, weights, metadata).
        self.model_sha256 = file_sha256(weights) if weights.exists() else "unknown"
        self.backend = config.resolved_backend()
        self.batch_size = config.resolved_batch_size()
        self._models: dict[tuple[int, int], object] = {}
        self.class_names: dict[int, str] = {}
        self.export_seconds = 0.0
        self.load_seconds = 0.0

    # -- model loading ------------------------------------------------------------------

    def _cache_dir(self) -> Path:
        home = Path(self.config.cache_dir) if self.config.cache_dir else roadlens_home()
        root = home / "model-cache"
        return root / self.model_sha256[:16]

    def _model_for(self, shape: tuple[int, int]) -> object:
        """The model for one letterboxed input shape; exported backends are static-shape.

        A static OpenVINO graph runs on :class:`OpenVINOEngine` (requests in flight), any
        other model through ultralytics' predictor.
        """
        from ultralytics import YOLO

        key = shape if self.backend != "pytorch" else (0, 0)
        if key in self._models:
            return self._models[key]
        try:
            exported = self.backend != "pytorch" and self.weights.suffix == ".pt"
            source = self._export(shape) if exported else self.weights
            model: object | None = None
            xml = ir_file(source) if self.backend == "openvino" else None
            if xml is not None:
                model, names = self._engine(xml)
            if model is None:
                model = YOLO(str(source), task="detect")
                # Reading the class map makes ultralytics load an exported model's graph.
                names = getattr(model, "names", None) or {}
        except Exception as exc:  # ultralytics raises anything from a bad file
            raise _load_error(self.weights, exc) from None
        self._models[key] = model
        if not self.class_names:
            self.class_names = {int(k): str(v) for k, v in dict(names).items()}
        return model

    @staticmethod
    def _engine(xml: Path) -> tuple[OpenVINOEngine | None, dict[int, str]]:
        """An engine and the class map of an OpenVINO export; no engine for a dynamic graph."""
        from ultralytics.utils import YAML

        metadata = xml.parent / "metadata.yaml"
        names = YAML.load(metadata).get("names", {}) if metadata.is_file() else {}
        if not names:
            return None, {}  # no class map beside it: let ultralytics read what it can
        try:
            return OpenVINOEngine(xml), names
        except ValueError:
            return None, names

    def _export(self, shape: tuple[int, int]) -> Path:
        """Export the ``.pt`` weights once per backend and shape, cached by the weights' hash."""
        from ultralytics import YOLO

        fmt = _EXPORT_FORMAT[self.backend]
        target = self._cache_dir() / f"{fmt}-{shape[0]}x{shape[1]}"
        done = target / "EXPORTED"
        if done.exists():
            return Path(done.read_text().strip())
        target.mkdir(parents=True, exist_ok=True)
        local = target / self.weights.name
        shutil.copy2(self.weights, local)
        started = time.perf_counter()
        log.info("exporting %s to %s at %sx%s (once, cached)", self.weights.name, fmt, *shape)
        exported = Path(
            YOLO(str(local)).export(
                format=fmt, imgsz=list(shape), dynamic=False, half=False, verbose=False
            )
        )
        self.export_seconds += time.perf_counter() - started
        done.write_text(str(exported.resolve()))
        return exported.resolve()

    def _use_all_cores(self) -> None:
        # ultralytics sets torch to min(8, cores - 1) threads: one thread on a 2-core box.
        if self.backend == "pytorch" and self.config.device == "cpu":
            import torch

            torch.set_num_threads(self.config.threads or os.cpu_count() or 1)

    # -- inference ----------------------------------------------------------------------

    def _predict(
        self,
        model: object,
        images: list[np.ndarray],
        shape: tuple[int, int],
        classes: Sequence[int] | None = None,
    ) -> list[Any]:
        cfg = self.config
        imgsz = list(shape) if self.backend != "pytorch" else cfg.imgsz
        return model.predict(  # type: ignore[attr-defined]
            images,
            imgsz=imgsz,
            conf=cfg.conf,
            iou=cfg.iou,
            device=cfg.device,
            classes=list(classes) if classes is not None else None,
            verbose=False,
            batch=len(images),
        )

    @property
    def frames_in_flight(self) -> int:
        """Most frames the model holds at once: one batch, or the engine's requests in flight
        plus the frame waiting for a free one (after :meth:`warmup`)."""
        engines = [m for m in self._models.values() if isinstance(m, OpenVINOEngine)]
        return max([self.batch_size] + [e.in_flight + 1 for e in engines])

    def _infer(
        self,
        model: object,
        frames: Iterable[SampledFrame],
        shape: tuple[int, int],
        classes: Sequence[int] | None,
        clock: list[float],
    ) -> Iterator[tuple[SampledFrame, np.ndarray]]:
        """``(frame, boxes)`` per frame in order, boxes ``(n, 6)`` as ultralytics'
        ``boxes.data``; ``clock[0]`` accumulates the seconds spent in the model."""
        if isinstance(model, OpenVINOEngine):
            cfg, spent = self.config, model.seconds
            pairs = ((f, f.image) for f in frames)
            for frame, boxes in model.run(pairs, conf=cfg.conf, iou=cfg.iou, classes=classes):
                clock[0] = model.seconds - spent
                yield frame, boxes
            return
        for batch in batches(frames, self.batch_size):
            t0 = time.perf_counter()
            results = self._predict(model, [f.image for f in batch], shape, classes)
            clock[0] += time.perf_counter() - t0
            data = [r.boxes.data.cpu().numpy() for r in results]
            del results  # hold no frame beyond its batch
            yield from zip(batch, data, strict=True)

    def warmup(self, height: int, width: int) -> None:
        """Load (and export) the model for frames of this size and run it once."""
        shape = letterbox_shape(height, width, self.config.imgsz)
        model = self._model_for(shape)
        blank = SampledFrame(0, 0.0, np.zeros((height, width, 3), dtype=np.uint8))
        try:
            # ultralytics loads an exported model on its first prediction.
            for _ in self._infer(model, [blank], shape, None, [0.0]):
                pass
        except Exception as exc:
            raise _load_error(self.weights, exc) from None

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """The ``(width, height)`` the model's letterbox scales a frame to before padding.

        Decoding straight to this size skips converting and resizing full-size frames;
        boxes are scaled back to the source size. Frames are never scaled up.

        >>> Detector(DetectorConfig(weights="w.pt")).input_size(1920, 1080)
        (640, 360)
        """
        ratio = min(self.config.imgsz / max(width, height), 1.0)
        return round(width * ratio), round(height * ratio)

    def detect(
        self,
        images: Sequence[np.ndarray],
        *,
        frame_numbers: Sequence[int],
        pts_sec: Sequence[float],
        video_id: str,
        fps: float = 5.0,
        progress: ProgressFn | None = None,
        classes: Sequence[int] | None = None,
        camera_kind: str = DEFAULT_CAMERA,
    ) -> DetectionResult:
        """Detect (and track, in frame order) objects in ``images`` of one video."""
        n = frame_count(images, frame_numbers, pts_sec, video_id)
        frames = (
            SampledFrame(int(k), float(t), image)
            for k, t, image in zip(frame_numbers, pts_sec, images, strict=True)
        )
        return self.detect_stream(
            frames,
            expected=n,
            video_id=video_id,
            fps=fps,
            progress=progress,
            classes=classes,
            camera_kind=camera_kind,
        )

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
        """Detect and track a stream of frames of one video, holding one batch at a time.

        Args:
            frames: Sampled frames in order, possibly scaled down (see :meth:`input_size`).
            video_id: The video's id, for the table and errors.
            expected: How many frames the stream should hold (for progress only).
            frame_size: ``(width, height)`` of the source video; boxes are scaled from
                the frames' size to it. None: the frames are at the source size.
            fps: Samples per second, for the tracker's motion model.
            progress: Called as ``progress(done, expected, frames_per_second)``.
            classes: Class ids to keep (None: the config's, else all).
            camera_kind: ``fixed`` or ``dashcam``, for the motion tracker's defaults.
        """
        load_started = time.perf_counter()
        stream = iter(frames)
        first = next(stream, None)
        if first is None:
            return self._result(RAW_DETECTIONS.empty_table(), 0, load_started, 0.0, 0.0)
        height, width = first.image.shape[:2]
        scale, (out_w, out_h) = box_scale(first.image, frame_size)
        shape = letterbox_shape(height, width, self.config.imgsz)
        if (shape if self.backend != "pytorch" else (0, 0)) not in self._models:
            self.warmup(height, width)
        # Loading another YOLO model anywhere in the process resets torch's thread count.
        self._use_all_cores()
        # Loading, exporting and warming up happen once per detector; they are reported apart.
        self.load_seconds += time.perf_counter() - load_started
        started = time.perf_counter()
        keep = classes if classes is not None else self.config.classes
        track = self.new_tracker(fps, camera_kind)
        collected = Collected()
        clock, tracking_seconds = [0.0], 0.0
        model = self._model_for(shape)
        report = throttled(progress, expected, started)
        inferred = self._infer(model, itertools.chain([first], stream), shape, keep, clock)
        for frame, boxes in inferred:
            t1 = time.perf_counter()
            xyxy, conf, cls = boxes[:, :4], boxes[:, 4], boxes[:, 5]
            ids = (
                track(xyxy, conf, cls, frame.image)
                if track is not None
                else np.full(len(conf), -1, dtype=np.int64)
            )
            collected.add(frame, xyxy * scale, conf, cls, ids)
            del frame
            tracking_seconds += time.perf_counter() - t1
            report(collected.frames)
        report(collected.frames, final=True)
        table = self._to_table(collected, video_id, out_w, out_h)
        return self._result(table, collected.frames, started, clock[0], tracking_seconds)

    def new_tracker(self, fps: float, camera_kind: str = DEFAULT_CAMERA) -> TrackFn | None:
        """A fresh tracker for one video sampled at ``fps``, or None when tracking is off.

        ``motion`` gets :meth:`TrackerConfig.for_camera` defaults, with the model's similar
        classes (car, bus, truck; bicycle, motorcycle) allowed to swap on one track.
        """
        spec = self.config.tracker
        if not spec:
            return None
        if spec == MOTION_TRACKER:
            config = TrackerConfig.for_camera(
                camera_kind, class_groups=class_groups(self.class_names)
            )
            return MotionTracker(config, fps).update
        return _ultralytics_tracker(spec, self.config.device)

    def _to_table(self, collected: Collected, video_id: str, width: int, height: int) -> pa.Table:
        per_frame = collected.boxes
        counts = np.array([len(f[1]) for f in per_frame], dtype=np.int64)
        total = int(counts.sum())
        if total == 0:
            return RAW_DETECTIONS.empty_table()
        xyxy = np.concatenate([f[0] for f in per_frame]).astype(np.float32)
        conf = np.concatenate([f[1] for f in per_frame]).astype(np.float32)
        cls = np.concatenate([f[2] for f in per_frame]).astype(np.int32)
        ids = np.concatenate([f[3] for f in per_frame])
        names = np.array(
            [self.class_names.get(i, str(i)) for i in range(max(self.class_names, default=0) + 1)]
        )
        table = pa.table(
            {
                "video_id": pa.array(np.full(total, video_id)),
                "frame_number": np.repeat(
                    np.asarray(collected.frame_numbers, dtype=np.int64), counts
                ),
                "pts_sec": np.repeat(np.asarray(collected.pts_sec, dtype=np.float64), counts),
                "class_id": cls,
                "class_name": names[cls],
                "confidence": conf,
                "x1": xyxy[:, 0],
                "y1": xyxy[:, 1],
                "x2": xyxy[:, 2],
                "y2": xyxy[:, 3],
                "frame_width": np.full(total, width, dtype=np.int32),
                "frame_height": np.full(total, height, dtype=np.int32),
                "track_id": pa.array(ids, mask=ids < 0),
            }
        )
        return conform(table, RAW_DETECTIONS)

    def _result(
        self,
        table: pa.Table,
        frames: int,
        started: float,
        model_s: float,
        tracking_s: float,
    ) -> DetectionResult:
        total = time.perf_counter() - started
        track_ids = table.column("track_id").drop_null()
        tracks = len(np.unique(track_ids.to_numpy())) if len(track_ids) else 0
        return DetectionResult(
            table=table,
            frames=frames,
            backend=self.backend,
            seconds_total=total,
            seconds_model=model_s,
            seconds_tracking=tracking_s,
            tracks=tracks,
            model_name=self.model_name,
            model_sha256=self.model_sha256,
            timings={"export_s": self.export_seconds, "load_s": self.load_seconds},
        )


def _ultralytics_tracker(spec: str, device: str) -> TrackFn:
    """ByteTrack or BoT-SORT from an ultralytics tracker config, as a :data:`TrackFn`."""
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    try:
        cfg = IterableSimpleNamespace(**YAML.load(check_yaml(spec)))
    except Exception as exc:  # ultralytics raises anything for a bad name or file
        raise ValueError(
            f"tracker {spec!r}: not {MOTION_TRACKER!r} nor a readable tracker config ({exc})"
        ) from None
    if cfg.tracker_type not in ("bytetrack", "botsort"):
        raise ValueError(f"tracker {spec!r}: use {MOTION_TRACKER!r} or a bytetrack/botsort config")
    if getattr(cfg, "with_reid", False):
        cfg.with_reid = False  # ReID needs a second model from a hub; motion matching only
    cfg.device = device
    # As ultralytics' own track(): the tracker's defaults whatever the stride (ultralytics
    # 8.4's trackers take no frame_rate; passing one was a TypeError).
    tracker = cast(BYTETracker, TRACKER_MAP[cfg.tracker_type](args=cfg))  # BOTSORT subclasses it

    def track(xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, image: np.ndarray) -> np.ndarray:
        data = np.column_stack([xyxy, conf, cls]).astype(np.float32).reshape(-1, 6)
        ids = np.full(len(data), -1, dtype=np.int64)
        tracks = tracker.update(Boxes(data, image.shape[:2]), image)
        if len(tracks):
            # Column -1 is the index of the detection each track was matched to.
            ids[tracks[:, -1].astype(int)] = tracks[:, 4].astype(np.int64)
        return ids

    return track
