"""Benchmark RoadLens detection against plain ultralytics, across CPU backends and sizes.

The clip (a rendered 20 s synthetic dashcam clip unless one is given) is sampled at
5 fps into memory once. Every configuration is warmed up once (loading, exporting and
first inference are untimed; exports are cached under $ROADLENS_HOME/model-cache), then
all of them run in interleaved rounds so drift in machine load hits them alike; the
table reports medians and the spread (min/median-max/median) of the rounds.

Rows: the peer is out-of-the-box ultralytics, ``YOLO(weights).predict(frame, imgsz=640)``
per frame with no tracking (ultralytics pins torch to cores - 1 threads). RoadLens rows
call ``Detector.detect`` with tracking (ByteTrack) at each ``--imgsz``: PyTorch batch 1
and 8, ONNX Runtime, OpenVINO. Each row runs with the torch thread count it had right
after its own warm-up, as it would in a process of its own.

A second table splits one run of ``pipeline.detect_video`` (default detector, lake in a
temporary folder built with ``pipeline.extract_frames``) into model, tracking and JPEG
read time, and compares the frames stage with the detection stage.

This script reports, it never fails: problems become notes and the exit status is 0.

Usage:
    .venv/bin/python bench/bench_detect.py [clip] [--rounds N] [--frames N]
        [--imgsz 640 320] [--weights PT] [--json out.json]

    e.g. the real clip from the repository root: bench/bench_detect.py ../shared/data/dashcam.mp4
    (a relative clip path that does not exist from the working directory is tried
    relative to the repository root).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Before ultralytics is imported anywhere: no downloads, and no export chatter in the table.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

import numpy as np

# Runnable as a plain script from the repository root or anywhere else.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Method, Timing, format_spread, interleave, versions
from roadlens.video import iter_sampled_frames, probe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO / "models" / "roadlens-det.pt"
SAMPLE_FPS = 5.0
SYNTH_SECONDS = 20.0
PEER_IMGSZ = 640
BIG_BATCH = 8
MODEL_SHARE_TARGET = 0.90
FRAMES_SHARE_TARGET = 0.10
WARMUP_FRAMES = 8


@dataclass
class Frames:
    """The sampled clip, in memory."""

    images: list[np.ndarray]
    frame_numbers: list[int]
    pts_sec: list[float]


@dataclass
class Row:
    """One configuration: how to run it and what it measured."""

    name: str
    backend: str
    imgsz: int
    batch: int
    method: Method | None = None
    threads: int = 0
    prepare_s: float = 0.0
    export_s: float = 0.0
    timing: Timing | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_clip(arg: str | None) -> Path | None:
    if arg is None:
        return None
    path = Path(arg).expanduser()
    if not path.exists() and not path.is_absolute() and (REPO / path).exists():
        path = REPO / path
    return path.resolve()


def render_default_clip(workdir: Path) -> Path:
    from roadlens.synth.render import render_clip

    clip = render_clip(workdir / "clip" / "synth-dashcam.mp4", seconds=SYNTH_SECONDS, seed=0)
    return clip.video_path


def load_frames(clip: Path, limit: int | None) -> Frames:
    frames = Frames([], [], [])
    for frame in iter_sampled_frames(clip, SAMPLE_FPS, max_frames=limit):
        frames.images.append(frame.image)
        frames.frame_numbers.append(frame.frame_number)
        frames.pts_sec.append(frame.pts_sec)
    return frames


def torch_threads_setter(threads: int) -> Callable[[], None]:
    import torch

    return lambda: torch.set_num_threads(threads)


def prepare_peer(weights: Path, frames: Frames) -> Row:
    """Out-of-the-box ultralytics, one ``predict`` call per frame, no tracking."""
    import torch
    from ultralytics import YOLO

    row = Row(f"peer: YOLO.predict per frame @{PEER_IMGSZ}", "pytorch", PEER_IMGSZ, 1)
    started = time.perf_counter()
    model = YOLO(str(weights))

    def run(images: list[np.ndarray] = frames.images) -> int:
        return sum(
            len(model.predict(image, imgsz=PEER_IMGSZ, verbose=False)[0].boxes) for image in images
        )

    run(frames.images[:WARMUP_FRAMES])
    row.prepare_s = time.perf_counter() - started
    row.threads = torch.get_num_threads()
    row.method = Method(row.name, run, torch_threads_setter(row.threads))
    return row


def prepare_roadlens(row: Row, weights: Path, frames: Frames) -> Row:
    """A RoadLens Detector of ``row``'s backend, batch and size, loaded and warmed up."""
    import torch

    from roadlens.detect.detector import Detector, DetectorConfig

    started = time.perf_counter()
    detector = Detector(
        DetectorConfig(
            weights=str(weights), backend=row.backend, batch_size=row.batch, imgsz=row.imgsz
        )
    )

    def run(n: int | None = None) -> Any:
        return detector.detect(
            frames.images[:n],
            frame_numbers=frames.frame_numbers[:n],
            pts_sec=frames.pts_sec[:n],
            video_id="bench",
            fps=SAMPLE_FPS,
        )

    run(max(WARMUP_FRAMES, row.batch))
    row.prepare_s = time.perf_counter() - started
    row.export_s = detector.export_seconds
    row.threads = torch.get_num_threads()
    row.method = Method(row.name, run, torch_threads_setter(row.threads))
    return row


def planned_rows(sizes: list[int]) -> list[Row]:
    rows = []
    for imgsz in sizes:
        rows.append(Row(f"RoadLens pytorch b1 @{imgsz}", "pytorch", imgsz, 1))
        rows.append(Row(f"RoadLens pytorch b{BIG_BATCH} @{imgsz}", "pytorch", imgsz, BIG_BATCH))
        rows.append(Row(f"RoadLens onnx b1 @{imgsz}", "onnx", imgsz, 1))
        rows.append(Row(f"RoadLens openvino b1 @{imgsz}", "openvino", imgsz, 1))
    return rows


BACKEND_MODULE = {"onnx": "onnxruntime", "openvino": "openvino"}


def bench_rows(
    weights: Path, frames: Frames, args: argparse.Namespace, notes: list[str]
) -> list[Row]:
    rows: list[Row] = []
    try:
        rows.append(prepare_peer(weights, frames))
    except Exception as exc:
        notes.append(f"peer row skipped: {type(exc).__name__}: {exc}")
    for row in planned_rows(args.imgsz):
        module = BACKEND_MODULE.get(row.backend)
        if module and importlib.util.find_spec(module) is None:
            notes.append(f"{row.name} skipped: {module} is not installed")
            continue
        try:
            rows.append(prepare_roadlens(row, weights, frames))
        except Exception as exc:
            notes.append(f"{row.name} skipped: {type(exc).__name__}: {exc}")
        if row.export_s:
            notes.append(f"{row.name}: exported once in {row.export_s:.1f} s (cached, untimed)")
    timings = interleave([r.method for r in rows if r.method], args.rounds, warm_up=False)
    for row in rows:
        row.timing = timings[row.name]
    return rows


def row_stats(row: Row, n: int, peer_s: float | None) -> dict[str, Any]:
    timing = row.timing or Timing(seconds=[float("nan")])
    seconds = timing.median
    results = timing.results
    if results and not isinstance(results[0], int):  # DetectionResult
        share = statistics.median(r.model_share for r in results)
        detections = results[-1].table.num_rows
        tracks = results[-1].tracks
    else:
        share, detections, tracks = None, results[-1] if results else None, None
    return {
        "name": row.name,
        "backend": row.backend,
        "imgsz": row.imgsz,
        "batch": row.batch,
        "torch_threads": row.threads,
        "frames": n,
        "median_s": seconds,
        "ms_per_frame": seconds / n * 1e3,
        "frames_per_s": n / seconds,
        "spread": format_spread(timing),
        "spread_min": timing.spread[0],
        "spread_max": timing.spread[1],
        "rounds_s": timing.seconds,
        "speedup_vs_peer": peer_s / seconds if peer_s else None,
        "model_share": share,
        "detections": detections,
        "tracks": tracks,
        "prepare_s": row.prepare_s,
        "export_s": row.export_s,
    }


def print_rows(stats: list[dict[str, Any]], rounds: int) -> None:
    print(f"\nper-frame detection, median of {rounds} interleaved rounds")
    header = (
        f"{'configuration':<36} {'thr':>3} {'ms/frame':>9} {'frames/s':>9} {'spread':>10} "
        f"{'vs peer':>8} {'model share':>12} {'dets':>6}"
    )
    print(header)
    print("-" * len(header))
    for s in stats:
        speedup = f"{s['speedup_vs_peer']:.2f}x" if s["speedup_vs_peer"] else "n/a"
        share = s["model_share"]
        share_txt = (
            "-" if share is None else f"{share:.1%}" + (" <" if share < MODEL_SHARE_TARGET else "")
        )
        print(
            f"{s['name']:<36} {s['torch_threads']:>3} {s['ms_per_frame']:>9.1f} "
            f"{s['frames_per_s']:>9.2f} {s['spread']:>10} "
            f"{speedup:>8} {share_txt:>12} {s['detections']!s:>6}"
        )


def asset_split(
    clip: Path, workdir: Path, weights: Path, limit: int | None, notes: list[str]
) -> dict[str, Any]:
    """One run of the frames stage and of ``pipeline.detect_video`` with the default detector."""
    from roadlens import pipeline
    from roadlens.detect.detector import Detector, DetectorConfig
    from roadlens.lake import ParquetLake
    from roadlens.registry import probe_video_record

    lake = ParquetLake(workdir / "lake")
    record = probe_video_record(clip)
    pipeline.register(lake, record)
    started = time.perf_counter()
    frames_out = pipeline.extract_frames(lake, record, target_fps=SAMPLE_FPS)
    frames_wall = time.perf_counter() - started
    sampled = frames_out.rows
    if limit is not None and sampled > limit:
        table = lake.read_video(pipeline.FRAMES_TABLE, record.video_id).slice(0, limit)
        lake.write_video(
            pipeline.FRAMES_TABLE,
            table,
            date=record.capture_date,
            source_id=record.source_id,
            video_id=record.video_id,
        )
        notes.append(
            f"split: detection ran on the first {limit} of {sampled} sampled frames (--frames); "
            "frames vs detection is compared per frame"
        )
    detector = Detector(DetectorConfig(weights=str(weights)))
    started = time.perf_counter()
    out = pipeline.detect_video(lake, record, detector)
    detect_wall = time.perf_counter() - started
    extra = out.extra
    detected = int(extra["frames"])  # type: ignore[arg-type]
    stage_s = out.seconds  # detect() + JPEG read, as the asset reports it
    frames_per_frame = frames_out.seconds / max(sampled, 1)
    detect_per_frame = stage_s / max(detected, 1)
    return {
        "backend": extra["backend"],
        "frames_sampled": sampled,
        "frames_detected": detected,
        "model_s": extra["model_seconds"],
        "tracking_s": extra["tracking_seconds"],
        "jpeg_read_s": extra["read_seconds"],
        "detect_s": extra["detect_seconds"],
        "other_s": float(extra["detect_seconds"])  # type: ignore[arg-type]
        - float(extra["model_seconds"])  # type: ignore[arg-type]
        - float(extra["tracking_seconds"]),  # type: ignore[arg-type]
        "stage_total_s": stage_s,
        "model_share_of_detect": extra["model_share"],
        "model_share_of_total": float(extra["model_seconds"]) / stage_s if stage_s else 0.0,  # type: ignore[arg-type]
        "lake_write_s": out.write.seconds if out.write else 0.0,
        "detect_video_wall_s": detect_wall,
        "detector_load_s": extra.get("load_s", 0.0),
        "detector_export_s": extra.get("export_s", 0.0),
        "frames_stage_s": frames_out.seconds,
        "frames_stage_wall_s": frames_wall,
        "frames_s_per_frame": frames_per_frame,
        "detect_s_per_frame": detect_per_frame,
        "frames_vs_detection": frames_per_frame / detect_per_frame if detect_per_frame else None,
    }


def print_split(split: dict[str, Any]) -> None:
    total = split["stage_total_s"]
    print(
        f"\ndetection asset time split: pipeline.detect_video, default detector "
        f"({split['backend']}), {split['frames_detected']} frames"
    )
    header = f"{'part':<44} {'seconds':>8} {'of total':>9}"
    print(header)
    print("-" * len(header))
    for label, key in (
        ("model (predict)", "model_s"),
        ("tracking (ByteTrack, boxes to numpy)", "tracking_s"),
        ("JPEG read (cv2.imread)", "jpeg_read_s"),
        ("other inside detect() (table building)", "other_s"),
    ):
        print(f"{label:<44} {split[key]:>8.3f} {split[key] / total:>9.1%}")
    print(f"{'total (detect() + JPEG read)':<44} {total:>8.3f} {1:>9.1%}")
    target = "meets" if split["model_share_of_total"] >= MODEL_SHARE_TARGET else "below"
    print(
        f"model share of total: {split['model_share_of_total']:.1%} ({target} the "
        f"{MODEL_SHARE_TARGET:.0%} target); of detect() alone (asset metadata): "
        f"{split['model_share_of_detect']:.1%}"
    )
    print(
        f"outside the total: lake write {split['lake_write_s']:.3f} s; detector load/export/"
        f"warm-up {split['detector_load_s']:.2f} s (once per process, export "
        f"{split['detector_export_s']:.2f} s); detect_video wall {split['detect_video_wall_s']:.2f} s"
    )
    ratio = split["frames_vs_detection"]
    target = "meets" if ratio is not None and ratio < FRAMES_SHARE_TARGET else "misses"
    print(
        f"frames stage {split['frames_stage_s']:.3f} s for {split['frames_sampled']} frames "
        f"({split['frames_s_per_frame'] * 1e3:.1f} ms/frame, wall with lake write "
        f"{split['frames_stage_wall_s']:.3f} s) vs detection stage {total:.3f} s for "
        f"{split['frames_detected']} frames ({split['detect_s_per_frame'] * 1e3:.1f} ms/frame): "
        f"frames = {ratio:.1%} of detection ({target} the < {FRAMES_SHARE_TARGET:.0%} target)"
    )


def print_host() -> dict[str, Any]:
    import torch
    from ultralytics.utils import NUM_THREADS

    libs = versions("torch", "ultralytics", "openvino", "onnxruntime", "cv2")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    host = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "python": platform.python_version(),
        "versions": libs,
        "torch_threads_at_start": torch.get_num_threads(),
        "ultralytics_num_threads": NUM_THREADS,
        "loadavg_at_start": load,
    }
    print(
        f"host: {host['machine']}, {host['cpu_count']} cores ({affinity} usable), "
        f"Python {host['python']}, load average {', '.join(f'{x:.2f}' for x in load or ())}"
    )
    print("libs: " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    print(
        f"torch threads: {host['torch_threads_at_start']} at start; ultralytics resets them to "
        f"{NUM_THREADS} when a predictor is set up"
    )
    return host


def bench(args: argparse.Namespace, workdir: Path, notes: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {"rounds": args.rounds, "imgsz": args.imgsz, "notes": notes}
    report["host"] = print_host()
    print(f"ROADLENS_HOME (model-cache): {os.environ['ROADLENS_HOME']}")
    clip = resolve_clip(args.clip)
    if clip is None:
        clip = render_default_clip(workdir)
        notes.append(f"clip: synthetic dashcam clip rendered by render_clip ({SYNTH_SECONDS:g} s)")
    if not clip.is_file():
        print(f"no clip at {clip}; pass one as the first argument")
        return report
    weights = Path(args.weights).resolve()
    if not weights.is_file():
        print(f"no weights at {weights}; pass --weights")
        return report
    info = probe(clip)
    frames = load_frames(clip, args.frames)
    n = len(frames.images)
    report["clip"] = {
        "path": str(clip),
        "width": info.width,
        "height": info.height,
        "codec": info.codec,
        "fps": info.fps,
        "frame_count": info.frame_count,
        "duration_s": info.duration_s,
        "frames_sampled": n,
    }
    report["weights"] = str(weights)
    print(
        f"clip: {clip.name}  {info.width}x{info.height}  {info.codec}  {info.fps:g} fps  "
        f"{info.duration_s:.1f} s -> {n} frames at {SAMPLE_FPS:g} fps"
        + (f" (capped by --frames {args.frames})" if args.frames else "")
    )
    print(f"weights: {weights.name}")

    rows = bench_rows(weights, frames, args, notes)
    peer = next((r for r in rows if r.name.startswith("peer")), None)
    peer_s = peer.timing.median if peer and peer.timing else None
    stats = [row_stats(r, n, peer_s) for r in rows]
    report["rows"] = stats
    print_rows(stats, args.rounds)

    try:
        split = asset_split(clip, workdir, weights, args.frames, notes)
        report["split"] = split
        print_split(split)
    except Exception as exc:
        notes.append(f"asset split skipped: {type(exc).__name__}: {exc}")

    notes.append(
        f"vs peer = peer time / row time (above 1.00x is faster); the peer runs at imgsz "
        f"{PEER_IMGSZ} without tracking, RoadLens rows include ByteTrack"
    )
    notes.append(
        "model share = seconds inside predict / detect() time, median over rounds; "
        f"'<' marks rows under the {MODEL_SHARE_TARGET:.0%} target"
    )
    notes.append(
        "thr = torch threads the row ran with (as right after its own warm-up); "
        "dets = detections in the last round"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "clip",
        nargs="?",
        help="video to sample (default: render a 20 s synthetic dashcam clip); "
        "relative paths fall back to the repository root",
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--frames", type=int, default=None, help="cap on sampled frames")
    parser.add_argument(
        "--imgsz", type=int, nargs="+", default=[640, 320], help="sizes (default 640 320)"
    )
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="ultralytics .pt")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    # torch.jit.trace deprecation chatter from the OpenVINO export
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
    args.rounds = max(args.rounds, 1)
    if args.frames is not None and args.frames < 1:
        args.frames = None
    notes: list[str] = []
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="roadlens-bench-") as tmp:
        workdir = Path(tmp)
        if not os.environ.get("ROADLENS_HOME"):
            os.environ["ROADLENS_HOME"] = str(workdir / "home")
            notes.append("ROADLENS_HOME was unset: exports went to a temporary folder")
        try:
            report = bench(args, workdir, notes)
        except Exception as exc:  # a benchmark reports; it does not fail the caller
            print(f"benchmark aborted: {type(exc).__name__}: {exc}")
    for note in notes:
        print(f"note: {note}")
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report, indent=2, default=str))
            print(f"wrote {args.json}")
        except OSError as exc:
            print(f"could not write {args.json}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
