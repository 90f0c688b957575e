"""Validate 1M detection rows: the GX suite against the same rules as plain pandas masks,
and its share of the detection stage that produced those rows.

Input: :func:`roadlens.synth.tables.synthetic_detections` (``--rows``, 20 boxes per frame)
with 50 injected bad rows (ranges, box, GPS, nulls, unknown class), converted to pandas once
outside the timings (the conversion is reported on its own). Methods, in interleaved rounds
after one warm-up (``bench.common.interleave``):

* ``GX suite (warm)``: ``suites.validate(engine="gx")``, the 33-expectation detections suite
  with ``result_format`` COMPLETE, in an already-built GX context;
* ``suite, pandas engine``: ``suites.validate(engine="pandas")``, the same rules and report;
* ``plain pandas masks``: the same rules written inline as one boolean mask per rule
  (no report, no reasons): the floor.

Every method must find the same 50 rows (checked; a mismatch is printed). The first GX call
of a process is timed on its own before the rounds: importing GX and building the
ephemeral context, then building the suite and the first run.

Detection stage: the default :class:`roadlens.detect.detector.Detector` (auto backend,
ByteTrack) runs on ``--det-frames`` rendered dashcam frames (640x360, the synthetic clips'
size) after its warm-up. Its seconds per frame times the frames that hold 1M rows, at the
measured boxes per frame and at the table's 20, give the stage's time per 1M rows. The
rendered scene has few boxes per frame, so "measured" gives the validation its smallest
share of the stage and "20/frame" (dense traffic) a larger one. ``bench/bench_detect.py`` measures the
detector in depth (backends, batch sizes, a 20 s clip) but takes minutes; this is a quick
estimate of the same default configuration on a few frames.
``--det-frames 0`` skips it.

Target: the GX suite under 3 s per 1M rows (warm).

Usage:
    .venv/bin/python bench/bench_quality.py [--rows 1000000] [--rounds 3] [--det-frames 24]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Method, format_spread, interleave, versions
from roadlens.quality import suites
from roadlens.synth.tables import CLASS_NAMES, synthetic_detections

TARGET_S_PER_MILLION = 3.0
BAD_ROWS = 50
CLASSES = list(CLASS_NAMES)
INJECT = [
    ("confidence", 1.2),
    ("x1", -4.0),
    ("x2", 4000.0),
    ("y2", 0.0),
    ("lat", 95.0),
    ("lon", -181.0),
    ("class_name", "bicycle"),
    ("confidence", np.nan),
    ("frame_width", 0),
    ("class_id", -1),
]


def make_input(rows: int) -> tuple[pd.DataFrame, np.ndarray, float]:
    """Detections with ``BAD_ROWS`` faults, their positions, and the Arrow->pandas seconds."""
    table = synthetic_detections(rows, seed=11)
    started = time.perf_counter()
    frame = table.to_pandas()
    convert_s = time.perf_counter() - started
    rng = np.random.default_rng(5)
    positions = np.sort(rng.choice(rows, size=BAD_ROWS, replace=False))
    for i, pos in enumerate(positions):
        column, value = INJECT[i % len(INJECT)]
        frame.loc[pos, column] = value
    return frame, positions, convert_s


def plain_masks(df: pd.DataFrame) -> np.ndarray:
    """The detections suite's rules as inline pandas masks; the bad rows' positions."""
    bad = np.zeros(len(df), bool)
    for column in (
        "detection_id",
        "video_id",
        "source_id",
        "frame_number",
        "pts_sec",
        "captured_at",
        "class_id",
        "class_name",
        "confidence",
        "x1",
        "y1",
        "x2",
        "y2",
        "frame_width",
        "frame_height",
    ):
        bad |= df[column].isna().to_numpy()
    ids = df["detection_id"]
    bad |= (ids.duplicated(keep=False) & ids.notna()).to_numpy()

    def outside(s: pd.Series, low: float | None, high: float | None) -> np.ndarray:
        out = np.zeros(len(s), bool)
        if low is not None:
            out |= (s < low).to_numpy(bool, na_value=False)
        if high is not None:
            out |= (s > high).to_numpy(bool, na_value=False)
        return out

    for column, low, high in (
        ("frame_number", 0, None),
        ("pts_sec", 0, None),
        ("class_id", 0, None),
        ("confidence", 0, 1),
        ("frame_width", 1, None),
        ("frame_height", 1, None),
        ("x1", 0, None),
        ("y1", 0, None),
        ("lat", -90, 90),
        ("lon", -180, 180),
    ):
        bad |= outside(df[column], low, high)
    for a, b, equal in (
        ("x2", "x1", False),
        ("frame_width", "x2", True),
        ("y2", "y1", False),
        ("frame_height", "y2", True),
    ):
        ok = (df[a] >= df[b]) if equal else (df[a] > df[b])
        bad |= ~ok.to_numpy(bool, na_value=False) & ~(df[a].isna() & df[b].isna()).to_numpy()
    names = df["class_name"]
    bad |= (names.notna() & ~names.isin(CLASSES)).to_numpy()
    in_order, _ = suites.pts_order(df)
    bad |= ~in_order
    return np.flatnonzero(bad)


def detector_seconds_per_frame(frames: int) -> tuple[float, float, str] | str:
    """``(seconds per frame, boxes per frame, backend)`` of the default detector, or a note."""
    if frames <= 0:
        return "skipped (--det-frames 0)"
    try:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_VERBOSE", "False")
        from roadlens.detect.detector import Detector, DetectorConfig
        from roadlens.synth.scene import Scene

        scene = Scene.create("dashcam", seed=3, width=640, height=360)
        rendered = list(scene.frames(seconds=frames / 5.0, fps=5.0))
        images = [f.image for f in rendered]
        detector = Detector(DetectorConfig())
        kwargs: dict[str, Any] = {
            "frame_numbers": [i * 6 for i in range(len(images))],
            "pts_sec": [i / 5.0 for i in range(len(images))],
            "video_id": "bench",
        }
        height, width = images[0].shape[:2]
        detector.warmup(height, width)  # load/export once, untimed
        result = detector.detect(images, **kwargs)
        per_frame = result.seconds_total / max(result.frames, 1)
        return per_frame, result.table.num_rows / max(result.frames, 1), detector.backend
    except Exception as exc:  # a missing model or backend is reported, never raised
        return f"not measured: {type(exc).__name__}: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--det-frames", type=int, default=24)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    scale = 1_000_000 / args.rows

    frame, injected, convert_s = make_input(args.rows)
    results: dict[str, Any] = {
        "rows": args.rows,
        "bad_rows": BAD_ROWS,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "load_avg_start": os.getloadavg(),
        "arrow_to_pandas_s": convert_s,
    }
    print(
        f"{args.rows:,} detection rows ({BAD_ROWS} bad), {args.rounds} rounds (median), "
        f"{len(suites.rules('detections', CLASSES))} expectations"
    )

    started = time.perf_counter()
    suites._gx_context()  # import great_expectations + the ephemeral context
    import_s = time.perf_counter() - started
    started = time.perf_counter()
    first = suites.validate("detections", frame, known_classes=CLASSES, engine="gx")
    first_s = time.perf_counter() - started
    results["gx_import_and_context_s"] = import_s
    results["gx_first_validate_s"] = first_s

    methods = [
        Method(
            "GX suite (warm)",
            lambda: suites.validate("detections", frame, known_classes=CLASSES, engine="gx"),
        ),
        Method(
            "suite, pandas engine",
            lambda: suites.validate("detections", frame, known_classes=CLASSES, engine="pandas"),
        ),
        Method("plain pandas masks", lambda: plain_masks(frame)),
    ]
    timings = interleave(methods, args.rounds)
    found = {
        "GX first call": first.bad_positions,
        **{
            name: (t.warmup.bad_positions if hasattr(t.warmup, "bad_positions") else t.warmup)
            for name, t in timings.items()
        },
    }
    agree = {name: np.array_equal(np.asarray(p), injected) for name, p in found.items()}

    det = detector_seconds_per_frame(args.det_frames)
    stage: dict[str, float] = {}
    if isinstance(det, tuple):
        per_frame, boxes, backend = det
        stage = {
            f"measured ({boxes:.1f} boxes/frame)": per_frame * 1_000_000 / max(boxes, 1e-9),
            "dense (20 boxes/frame)": per_frame * 1_000_000 / 20,
        }
        results["detector"] = {
            "s_per_frame": per_frame,
            "boxes_per_frame": boxes,
            "backend": backend,
        }
        det_line = f"detector ({backend}): {per_frame * 1000:.1f} ms/frame, {boxes:.1f} boxes/frame"
    else:
        results["detector"] = det
        det_line = f"detector: {det}"

    warm = timings["GX suite (warm)"].median
    print()
    print(
        f"{'method':<28}{'s / run':>9}{'s / 1M rows':>13}{'vs GX warm':>12}{'spread':>12}  rows ok"
    )
    print(
        f"{'GX suite, first call':<28}{first_s:>9.3f}{first_s * scale:>13.3f}"
        f"{first_s / warm:>11.2f}x{'-':>12}  {agree['GX first call']}"
    )
    for name, timing in timings.items():
        print(
            f"{name:<28}{timing.median:>9.3f}{timing.median * scale:>13.3f}"
            f"{timing.median / warm:>11.2f}x{format_spread(timing):>12}  {agree[name]}"
        )
    print()
    print(f"GX import + ephemeral context (once per process): {import_s:.2f} s")
    print(f"Arrow -> pandas of the table (outside the timings): {convert_s:.3f} s")
    print(det_line)
    per_million = warm * scale
    for label, seconds in stage.items():
        print(
            f"detection stage per 1M rows, {label}: {seconds:,.0f} s; GX suite share "
            f"{per_million / (seconds + per_million):.3%}"
        )
    verdict = "meets" if per_million < TARGET_S_PER_MILLION else "MISSES"
    print(
        f"GX suite warm: {per_million:.2f} s per 1M rows ({verdict} the {TARGET_S_PER_MILLION:.0f} s target)"
    )

    # Only now: importing the modules for their versions would pre-pay GX's import above.
    results["versions"] = versions("great_expectations", "pandas", "pyarrow", "numpy")
    results["methods"] = {
        name: {"median_s": t.median, "seconds": t.seconds, "rows_ok": agree[name]}
        for name, t in timings.items()
    }
    results["detection_stage_s_per_million"] = stage
    results["gx_warm_s_per_million"] = per_million
    results["load_avg_end"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
