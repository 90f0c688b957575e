"""Heat map of 1M points: roadlens image_grid vs supervision's HeatMapAnnotator vs np.bincount.

Target (issue 3): a heat map of 1M points in under 50 ms (dwell weighting, without segment
rasterization). Two inputs of ``--rows`` detections (100 boxes per sampled frame, 5 fps,
1280x720):

* ``smooth``: tracks that move a few pixels per sampled frame (200 frames each), the shape
  of real traffic; segment rasterization adds little here.
* ``synthetic``: :func:`roadlens.synth.tables.synthetic_detections`, whose boxes jump to a
  random place every sample; the worst case for segments (every segment crosses ~1/3 of the
  grid).

Methods on a 64x36 grid (20 px cells):

* ``image_grid dwell``: dwell seconds per cell (track step per detection) from the table.
* ``image_grid dwell+segments``: the same with track segments rasterized between samples.
* ``image_grid tracks``: unique tracks per cell.
* ``bincount floor``: bottom-centre anchor -> cell -> ``np.bincount`` (counts, no dwell).
* ``bincount only``: ``np.bincount`` of precomputed cell indices (the lower bound).
* ``supervision HeatMapAnnotator``: ``annotate`` frame by frame on a blank 1280x720 frame
  (Detections built outside the timing). It is run on ``--sv-frames`` frames and the time
  is extrapolated linearly to all frames (its cost per frame is constant: a full-frame
  blur and colour map every frame).

Usage:
    .venv/bin/python bench/bench_ode_heatmap.py [--rows 1000000] [--rounds 5] [--sv-frames 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Method, format_spread, interleave, versions
from roadlens.ode.heatmap import image_grid
from roadlens.synth.tables import synthetic_detections

GRID = (64, 36)
WIDTH, HEIGHT = 1280, 720
PER_FRAME = 100
FPS = 5.0


def smooth_tracks(rows: int, *, seed: int = 0) -> pa.Table:
    """``rows`` detections: ``PER_FRAME`` slots, each a run of 200-frame linear tracks."""
    rng = np.random.default_rng(seed)
    index = np.arange(rows)
    frame = index // PER_FRAME
    slot = index % PER_FRAME
    life = 200
    generation = frame // life
    track = generation * PER_FRAME + slot + 1
    n_tracks = int(track.max()) + 1
    x0 = rng.uniform(0, WIDTH - 60, n_tracks)
    y0 = rng.uniform(0, HEIGHT - 60, n_tracks)
    vx, vy = rng.uniform(-3, 3, n_tracks), rng.uniform(-2, 2, n_tracks)
    age = frame % life
    x = np.clip(x0[track] + vx[track] * age, 0, WIDTH - 40).astype(np.float32)
    y = np.clip(y0[track] + vy[track] * age, 0, HEIGHT - 60).astype(np.float32)
    return pa.table(
        {
            "video_id": pa.array(np.full(rows, "veh-01--clip-0001", dtype=object)),
            "detection_id": pa.array(index.astype(str)),
            "frame_number": pa.array(frame * 6),
            "pts_sec": pa.array(frame / FPS),
            "track_id": pa.array(track),
            "x1": pa.array(x),
            "y1": pa.array(y),
            "x2": pa.array(x + 40),
            "y2": pa.array(y + 60),
            "frame_width": pa.array(np.full(rows, WIDTH, np.int32)),
            "frame_height": pa.array(np.full(rows, HEIGHT, np.int32)),
        }
    )


def bincount_floor(table: pa.Table) -> np.ndarray:
    """Bottom-centre anchor -> cell -> bincount, straight from the Arrow columns."""
    x1, x2 = table.column("x1").to_numpy(), table.column("x2").to_numpy()
    y2 = table.column("y2").to_numpy()
    col = np.minimum((x1 + x2) * np.float32(0.5 * GRID[0] / WIDTH), GRID[0] - 1).astype(np.int64)
    row = np.minimum(y2 * np.float32(GRID[1] / HEIGHT), GRID[1] - 1).astype(np.int64)
    return np.bincount(row * GRID[0] + col, minlength=GRID[0] * GRID[1])


def supervision_frames(table: pa.Table, frames: int) -> list:
    """``sv.Detections`` of the first ``frames`` sampled frames (built untimed)."""
    import supervision as sv

    n = min(table.num_rows, frames * PER_FRAME)
    xyxy = np.stack([table.column(c).to_numpy()[:n] for c in ("x1", "y1", "x2", "y2")], axis=1)
    return [
        sv.Detections(xyxy=xyxy[i : i + PER_FRAME].astype(np.float32))
        for i in range(0, n, PER_FRAME)
    ]


def run_supervision(dets: list) -> np.ndarray:
    import supervision as sv

    annotator = sv.HeatMapAnnotator(position=sv.Position.BOTTOM_CENTER)
    scene = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for frame_dets in dets:  # its API is per frame: this loop is the peer's cost model
        scene = annotator.annotate(scene.copy(), frame_dets)
    return scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sv-frames", type=int, default=100)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "ode_heatmap.json"
    )
    args = parser.parse_args()

    results: dict[str, object] = {
        "rows": args.rows,
        "grid": GRID,
        "per_frame": PER_FRAME,
        "frames": args.rows // PER_FRAME,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "versions": versions("numpy", "pandas", "pyarrow", "supervision", "cv2"),
        "load_avg_start": os.getloadavg(),
        "inputs": {},
    }
    print(f"{args.rows:,} points, grid {GRID[0]}x{GRID[1]}, {args.rounds} rounds (median)")
    for name, table in (
        ("smooth", smooth_tracks(args.rows)),
        ("synthetic", synthetic_detections(args.rows, per_frame=PER_FRAME)),
    ):
        cells = bincount_floor(table)  # warm
        x1, x2 = table.column("x1").to_numpy(), table.column("x2").to_numpy()
        y2 = table.column("y2").to_numpy()
        flat = np.minimum(y2 * np.float32(GRID[1] / HEIGHT), GRID[1] - 1).astype(np.int64) * GRID[
            0
        ] + np.minimum((x1 + x2) * np.float32(0.5 * GRID[0] / WIDTH), GRID[0] - 1).astype(np.int64)
        methods = [
            Method("image_grid dwell", lambda t=table: image_grid(t, grid=GRID)),
            Method(
                "image_grid dwell+segments",
                lambda t=table: image_grid(t, grid=GRID, segments=True),
            ),
            Method("image_grid tracks", lambda t=table: image_grid(t, grid=GRID, weight="tracks")),
            Method("bincount floor", lambda t=table: bincount_floor(t)),
            Method("bincount only", lambda f=flat: np.bincount(f, minlength=GRID[0] * GRID[1])),
        ]
        timings = interleave(methods, args.rounds)
        dwell = timings["image_grid dwell"].warmup
        seg = timings["image_grid dwell+segments"].warmup
        # Same total time with or without segments; counts x step = dwell without segments.
        checks = {
            "dwell_total_s": float(dwell.sum()),
            "segments_total_s": float(seg.sum()),
            "floor_total": int(cells.sum()),
            "segment_cells_nonzero": int(np.count_nonzero(seg)),
            "point_cells_nonzero": int(np.count_nonzero(dwell)),
        }
        sv_dets = supervision_frames(table, args.sv_frames)
        started = time.perf_counter()
        run_supervision(sv_dets)
        sv_seconds = time.perf_counter() - started
        sv_points = sum(len(d) for d in sv_dets)
        sv_full_ms = sv_seconds / sv_points * args.rows * 1e3
        base = timings["image_grid dwell"].median
        rows = {
            m: {
                "ms": t.median * 1e3,
                "spread": format_spread(t),
                "us_per_frame": t.median * 1e6 / (args.rows / PER_FRAME),
            }
            for m, t in timings.items()
        }
        rows["supervision HeatMapAnnotator (extrapolated)"] = {
            "ms": sv_full_ms,
            "spread": f"1 run of {len(sv_dets)} frames",
            "us_per_frame": sv_seconds * 1e6 / len(sv_dets),
        }
        print(f"\n[{name}] checks: {checks}")
        print(f"{'method':46s} {'ms':>10s} {'us/frame':>9s} {'x dwell':>9s}  spread")
        for method, row in rows.items():
            ratio = row["ms"] / (base * 1e3)
            print(
                f"{method:46s} {row['ms']:10.1f} {row['us_per_frame']:9.2f} {ratio:9.2f}  "
                f"{row['spread']}"
            )
        results["inputs"][name] = {"methods": rows, "checks": checks}
    results["load_avg_end"] = os.getloadavg()
    results["measured_at"] = pd.Timestamp.now(tz="UTC").isoformat()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
