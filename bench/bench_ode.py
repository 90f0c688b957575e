"""ODE rules on 1M tracked detections: roadlens vs supervision's per-frame LineZone/PolygonZone.

Target (issue 3): 1M tracked detections x 1, 10 and 100 rules; 100 rules in under 2 s; at
least 50x faster than supervision's per-frame loop on the same data with identical counts;
µs per frame next to the seed's "< 1 ms per frame".

Data (built vectorised, seed 0): ``--frames`` sampled frames (5 fps) x 100 concurrent
objects in a 1280x720 frame (1M detections by default), like research/baselines.md §3. Each
of the 100 slots runs a chain of 200-frame tracks (5,000 track ids) that move 0.5-4 px per
frame on a smooth random walk, reflected at the borders. Boxes are 40x60 px on integer
pixels, so the bottom-centre anchor is an integer point (detectors report integer pixels);
supervision's PolygonZone rounds anchors to pixels and tests a raster mask, so with integer
anchors and the axis-aligned rectangles below, exact geometry and the raster agree.

Rule sets (1, 10, 100 rules; every rule its own area, anchor ``bottom_center``):

* ``lines``: ``cross`` of a random line through the frame (endpoints extended 4,000 px
  beyond it, so supervision's segment limits cover the frame), ``in_side: left``
  (supervision's ``in``), no hysteresis, ``count: every``;
* ``zones``: ``zone`` of a random axis-aligned rectangle (integer corners), ``firing:
  edge`` (zone entries: level firing would make ~10 M events at 100 rules).

Methods, timed in interleaved rounds (medians, spread = min/max over median):

* ``evaluate``: :func:`roadlens.ode.evaluate`, end to end (criteria, trigger, firing,
  events with ids and detection ids);
* ``triggers``: the trigger functions alone (:func:`roadlens.ode.spatial.cross` / ``zone``),
  once per rule, hits out (crossings share one track table, as in the engine; ``zone``
  returns a hit, with its detection-id list, for every detection in the zone: ~10 M at
  100 rules, which is why ``evaluate`` with edge firing never builds them);
* ``supervision``: ``sv.LineZone.trigger`` / ``sv.PolygonZone.trigger`` fed frame by frame
  with prebuilt ``sv.Detections`` (built untimed), one zone object per rule. It runs once on
  all frames for 1 and 10 rules; for 100 rules on the first ``--sv-frames`` frames,
  extrapolated linearly (its cost per frame and rule is constant).

Counts compared (all frames for 1 and 10 rules, the subset for 100): per line the
(in, out) totals of LineZone vs ``cross`` hits; per zone the number of detections in the
zone in every frame, PolygonZone vs ``zone`` hits.

Usage:
    .venv/bin/python bench/bench_ode.py [--frames 10000] [--rounds 3] [--sv-frames 1000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Method, format_spread, interleave, versions
from roadlens.ode import evaluate, parse_rules
from roadlens.ode.engine import _Context, frames_from_detections
from roadlens.ode.spatial import TrackTable, cross, zone

WIDTH, HEIGHT = 1280, 720
PER_FRAME = 100
FPS = 5.0
LIFE = 200
BOX_W, BOX_H = 40, 60
RULE_COUNTS = (1, 10, 100)
SEED_TARGET_US = 1000.0  # the seed's "< 1 ms per frame"


def smooth_tracks(frames: int, *, seed: int = 0) -> pd.DataFrame:
    """``frames x PER_FRAME`` tracked detections in the DETECTIONS columns (see module doc)."""
    rng = np.random.default_rng(seed)
    n_gen = -(-frames // LIFE)
    n_tracks = n_gen * PER_FRAME
    # Per track: a start point, a speed of 0.5-4 px/frame and a heading that drifts.
    x0 = rng.uniform(0, WIDTH - BOX_W, n_tracks)
    y0 = rng.uniform(0, HEIGHT - BOX_H, n_tracks)
    speed = rng.uniform(0.5, 4.0, n_tracks)
    heading0 = rng.uniform(0, 2 * np.pi, n_tracks)
    turn = rng.normal(0, 0.03, (n_tracks, LIFE)).cumsum(axis=1)  # smooth random walk
    theta = heading0[:, None] + turn
    dx = np.cumsum(speed[:, None] * np.cos(theta), axis=1) - speed[:, None] * np.cos(theta[:, :1])
    dy = np.cumsum(speed[:, None] * np.sin(theta), axis=1) - speed[:, None] * np.sin(theta[:, :1])

    def reflect(p: np.ndarray, hi: float) -> np.ndarray:
        p = np.mod(p, 2 * hi)
        return np.where(p > hi, 2 * hi - p, p)

    xs = np.rint(reflect(x0[:, None] + dx, WIDTH - BOX_W))  # (track, age)
    ys = np.rint(reflect(y0[:, None] + dy, HEIGHT - BOX_H))
    frame = np.repeat(np.arange(frames), PER_FRAME)
    slot = np.tile(np.arange(PER_FRAME), frames)
    track = (frame // LIFE) * PER_FRAME + slot
    age = frame % LIFE
    x = xs[track, age].astype(np.float32)
    y = ys[track, age].astype(np.float32)
    rows = frames * PER_FRAME
    pts = frame / FPS
    captured = pd.Timestamp("2026-11-21T08:00:00Z") + pd.to_timedelta(pts, unit="s")
    return pd.DataFrame(
        {
            "detection_id": pd.Series(np.char.add("d", np.arange(rows).astype(str)), dtype=object),
            "video_id": pd.Series(np.full(rows, "veh-01--clip-0001", dtype=object), dtype=object),
            "source_id": pd.Series(np.full(rows, "veh-01", dtype=object), dtype=object),
            "frame_number": frame * 6,
            "pts_sec": pts,
            "captured_at": captured.as_unit("us"),
            "class_name": pd.Series(np.full(rows, "car", dtype=object), dtype=object),
            "confidence": np.full(rows, 0.9, np.float32),
            "x1": x,
            "y1": y,
            "x2": x + BOX_W,
            "y2": y + BOX_H,
            "track_id": (track + 1).astype(np.int64),
            "frame_width": np.full(rows, WIDTH, np.int32),
            "frame_height": np.full(rows, HEIGHT, np.int32),
        }
    )


def random_lines(n: int, *, seed: int = 1) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """``n`` lines through the frame: two random points, pushed 4,000 px beyond it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = rng.uniform((100, 100), (WIDTH - 100, HEIGHT - 100))
        b = rng.uniform((100, 100), (WIDTH - 100, HEIGHT - 100))
        d = (b - a) / np.hypot(*(b - a))
        p1, p2 = a - 4000 * d, a + 4000 * d
        out.append(((float(p1[0]), float(p1[1])), (float(p2[0]), float(p2[1]))))
    return out


def random_rects(n: int, *, seed: int = 2) -> list[list[tuple[int, int]]]:
    """``n`` axis-aligned rectangles with integer corners, 120-500 x 80-300 px."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = int(rng.integers(120, 500)), int(rng.integers(80, 300))
        x, y = int(rng.integers(0, WIDTH - w)), int(rng.integers(BOX_H, HEIGHT - h))
        out.append([(x, y), (x + w, y), (x + w, y + h), (x, y + h)])
    return out


def rule_set(kind: str, n: int):
    """A validated RuleSet of ``n`` line-crossing or zone rules."""
    if kind == "lines":
        areas = {
            f"l{i}": {"line": [list(p1), list(p2)], "in_side": "left"}
            for i, (p1, p2) in enumerate(random_lines(n))
        }
        rules = [
            {"id": f"line-{i}", "anchor": "bottom_center", "trigger": {"cross": {"line": f"l{i}"}}}
            for i in range(n)
        ]
    else:
        areas = {
            f"z{i}": {"polygon": [list(p) for p in poly]} for i, poly in enumerate(random_rects(n))
        }
        rules = [
            {
                "id": f"zone-{i}",
                "anchor": "bottom_center",
                "trigger": {"zone": {"zone": f"z{i}"}},
                "firing": {"mode": "edge"},
            }
            for i in range(n)
        ]
    return parse_rules({"version": 1, "areas": areas, "rules": rules})


def run_triggers(kind: str, dets: pd.DataFrame, frames: pd.DataFrame, rules) -> list[pd.DataFrame]:
    """The trigger functions alone, once per rule, hits out (areas resolved as the engine
    does; crossings share one :class:`~roadlens.ode.spatial.TrackTable`, built in here)."""
    ctx = _Context(dets, frames, rules)
    n = len(rules.rules)
    if kind == "lines":
        tracks = TrackTable(dets)
        return [
            cross(dets, frames, ctx.areas[f"l{i}"], anchor="bottom_center", tracks=tracks)
            for i in range(n)
        ]
    return [zone(dets, frames, ctx.areas[f"z{i}"], anchor="bottom_center") for i in range(n)]


def frame_counts(hits: pd.DataFrame, frames: int) -> np.ndarray:
    """Hits per sampled frame (frame numbers are ``6 x`` the frame index)."""
    idx = hits["frame_number"].to_numpy(np.int64) // 6
    return np.bincount(idx, minlength=frames)


def our_counts(kind: str, hits: list[pd.DataFrame], frames: int) -> list:
    """(in, out) per line, or in-zone detections per frame per zone."""
    if kind == "lines":
        return [
            [int((h["direction"] == "in").sum()), int((h["direction"] == "out").sum())]
            for h in hits
        ]
    return [frame_counts(h, frames) for h in hits]


def sv_detections(dets: pd.DataFrame, frames: int) -> list:
    """``sv.Detections`` of the first ``frames`` frames, with tracker ids (built untimed)."""
    import supervision as sv

    n = frames * PER_FRAME
    xyxy = dets[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)[:n]
    tid = dets["track_id"].to_numpy(np.int64)[:n]
    cls = np.zeros(PER_FRAME, dtype=int)
    return [
        sv.Detections(xyxy=xyxy[i : i + PER_FRAME], tracker_id=tid[i : i + PER_FRAME], class_id=cls)
        for i in range(0, n, PER_FRAME)
    ]


def run_supervision(kind: str, n_rules: int, dets_sv: list) -> tuple[float, list]:
    """Seconds for the per-frame loop over ``dets_sv`` with ``n_rules`` zones, and counts."""
    import supervision as sv

    anchor = [sv.Position.BOTTOM_CENTER]
    if kind == "lines":
        zones = [
            sv.LineZone(
                start=sv.Point(*p1),
                end=sv.Point(*p2),
                triggering_anchors=anchor,
                minimum_crossing_threshold=1,
            )
            for p1, p2 in random_lines(n_rules)
        ]
        started = time.perf_counter()
        for d in dets_sv:  # its API is per frame: this loop is the peer's cost model
            for z in zones:
                z.trigger(d)
        seconds = time.perf_counter() - started
        return seconds, [[z.in_count, z.out_count] for z in zones]
    zones = [
        sv.PolygonZone(polygon=np.array(poly), triggering_anchors=anchor)
        for poly in random_rects(n_rules)
    ]
    counts = np.zeros((n_rules, len(dets_sv)), dtype=np.int64)
    started = time.perf_counter()
    for f, d in enumerate(dets_sv):
        for i, z in enumerate(zones):
            counts[i, f] = z.trigger(d).sum()
    seconds = time.perf_counter() - started
    return seconds, list(counts)


def same_counts(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sv-frames", type=int, default=1_000, help="supervision, 100 rules")
    parser.add_argument("--sv-full-max-rules", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "ode.json")
    args = parser.parse_args()

    started = time.perf_counter()
    dets = smooth_tracks(args.frames)
    build_s = time.perf_counter() - started
    frames = frames_from_detections(dets)
    n_frames, rows = args.frames, len(dets)
    print(
        f"{rows:,} tracked detections ({n_frames:,} frames x {PER_FRAME}, "
        f"{dets['track_id'].nunique():,} tracks; built in {build_s:.2f} s), "
        f"{args.rounds} rounds (median)"
    )
    results: dict[str, object] = {
        "rows": rows,
        "frames": n_frames,
        "per_frame": PER_FRAME,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "versions": versions("numpy", "pandas", "shapely", "supervision"),
        "load_avg_start": os.getloadavg(),
        "seed_target_us_per_frame": SEED_TARGET_US,
        "rule_sets": {},
    }
    sets = {(k, n): rule_set(k, n) for k in ("lines", "zones") for n in RULE_COUNTS}
    # Outputs are checked once, untimed; timed rounds keep only a size, and every method
    # starts from a collected heap, so one method's garbage (10 M zone hits) never lands
    # in another's time.
    outputs = {}
    for (kind, n), rs in sets.items():
        outputs[kind, n] = (evaluate(dets, frames, rs), run_triggers(kind, dets, frames, rs))
    methods = []
    for (kind, n), rs in sets.items():
        methods.append(
            Method(
                f"evaluate {kind} {n}",
                lambda rs=rs: len(evaluate(dets, frames, rs)),
                setup=gc.collect,
            )
        )
        methods.append(
            Method(
                f"triggers {kind} {n}",
                lambda k=kind, rs=rs: len(run_triggers(k, dets, frames, rs)),
                setup=gc.collect,
            )
        )
    timings = interleave(methods, args.rounds, warm_up=False)

    sv_cache: dict[int, list] = {}
    table = []
    for (kind, n), rs in sets.items():
        ev_t, tr_t = timings[f"evaluate {kind} {n}"], timings[f"triggers {kind} {n}"]
        events, trigger_hits = outputs[kind, n]
        sv_frames = n_frames if n <= args.sv_full_max_rules else min(args.sv_frames, n_frames)
        if sv_frames not in sv_cache:
            sv_cache[sv_frames] = sv_detections(dets, sv_frames)
        sv_s, sv_counts = run_supervision(kind, n, sv_cache[sv_frames])
        if sv_frames == n_frames:
            ours = our_counts(kind, trigger_hits, n_frames)
        else:  # the same subset through our triggers
            sub = dets[dets["frame_number"] < sv_frames * 6]
            ours = our_counts(
                kind, run_triggers(kind, sub, frames_from_detections(sub), rs), sv_frames
            )
        identical = same_counts(ours, sv_counts)
        sv_full_s = sv_s * n_frames / sv_frames
        row = {
            "kind": kind,
            "rules": n,
            "events": len(events),
            "evaluate_ms": ev_t.median * 1e3,
            "evaluate_spread": format_spread(ev_t),
            "evaluate_us_per_frame": ev_t.median * 1e6 / n_frames,
            "triggers_ms": tr_t.median * 1e3,
            "triggers_spread": format_spread(tr_t),
            "triggers_us_per_frame": tr_t.median * 1e6 / n_frames,
            "supervision_ms": sv_full_s * 1e3,
            "supervision_us_per_frame": sv_s * 1e6 / sv_frames,
            "supervision_frames_timed": sv_frames,
            "supervision_extrapolated": sv_frames != n_frames,
            "speedup_evaluate": sv_full_s / ev_t.median,
            "speedup_triggers": sv_full_s / tr_t.median,
            "counts_identical": identical,
            "counts_compared": (
                "in/out per line" if kind == "lines" else "in-zone detections per frame per zone"
            )
            + f" over {sv_frames:,} frames",
            "total_counts": (
                [int(sum(c[0] for c in ours)), int(sum(c[1] for c in ours))]
                if kind == "lines"
                else int(sum(int(c.sum()) for c in ours))
            ),
        }
        table.append(row)
        extrapolated = f", extrapolated from {sv_frames:,} frames" if sv_frames != n_frames else ""
        print(
            f"{kind:5s} {n:3d} rules: evaluate {row['evaluate_ms']:8.1f} ms "
            f"({row['evaluate_us_per_frame']:6.1f} us/frame, {row['evaluate_spread']}), "
            f"triggers {row['triggers_ms']:8.1f} ms ({row['triggers_us_per_frame']:6.1f} us/frame), "
            f"supervision {row['supervision_ms']:9.1f} ms ({row['supervision_us_per_frame']:7.1f} "
            f"us/frame{extrapolated}); "
            f"x{row['speedup_evaluate']:.1f} evaluate, x{row['speedup_triggers']:.1f} triggers; "
            f"counts identical: {identical} {row['total_counts']}",
            flush=True,
        )
    results["rule_sets"] = table
    results["load_avg_end"] = os.getloadavg()
    results["measured_at"] = pd.Timestamp.now(tz="UTC").isoformat()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"seed target: < {SEED_TARGET_US:.0f} us per frame")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
