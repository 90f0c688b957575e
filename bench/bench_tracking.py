"""Line counts and cost per frame: MotionTracker vs ultralytics ByteTrack on real footage.

Input: the shared real clips (``<repo>/../shared/data``, or ``ROADLENS_SHARED_DATA``) and
the real COCO detector ``yolo11n_int8_openvino_model`` (``<repo>/../shared/models``, or
``ROADLENS_SHARED_MODELS``) at conf 0.25, iou 0.5, imgsz 640. The detector runs once over
every frame of each clip (cached as npz under ``--cache``; about 20 s per clip here) and the
sampling rates are subsets of those frames: the frames RoadLens's sampler picks.

Roadside (a fixed overhead camera, 716 frames at 29.97 fps, traffic towards the camera;
a person counts 28 vehicles crossing y = 0.6, plus one straddling the line at frame 0 whose
centre crosses at frame 2): at 5, 10 and 30 fps, crossings by box centres of full-width
lines at y = 0.45 ... 0.75 for car/truck/bus/motorcycle, every crossing between consecutive
samples of a track (RoadLens's ``cross`` rule with no hysteresis), for

* ``motion``: `roadlens.detect.tracking.MotionTracker` with the ``fixed`` config;
* ``bytetrack``: ultralytics ``BYTETracker`` with its default ``bytetrack.yaml``;
* ``bytetrack+LineZone``: supervision ``LineZone`` (centre anchor) on the ByteTrack ids,
  frame by frame (it forgets a track absent for 2 frames, hence fewer at low rates).

Variants: the mirrored clip (``--mirrored``, detected on mirrored frames) and the clip
played backwards (traffic going away; same crossings, so the forward reference holds).

Dashcam (a forward dashcam, 414 frames at 30 fps): at 5 and 10 fps, distinct ids, mean
samples per id and tracked detections for ``motion`` (``dashcam`` config, with camera-
motion compensation), the same without compensation, and ByteTrack; the ids and mean
length restricted to the detections ByteTrack tracks (same objects); and how many ids of
each tracker one ByteTrack-on-every-frame track is split into (fragmentation).

Cost: seconds per sample inside ``update`` alone, median of ``--rounds`` interleaved
rounds (``bench.common.interleave``), plus a synthetic scene of 20 boxes per frame.

Usage:
    .venv/bin/python bench/bench_tracking.py [--cache DIR] [--rounds 3] [--mirrored]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import Method, interleave  # noqa: E402
from roadlens.detect.tracking import MotionTracker, TrackerConfig  # noqa: E402
from roadlens.video import iter_sampled_frames  # noqa: E402

SHARED_DATA = Path(os.environ.get("ROADLENS_SHARED_DATA") or REPO.parent / "shared" / "data")
SHARED_MODELS = Path(os.environ.get("ROADLENS_SHARED_MODELS") or REPO.parent / "shared" / "models")
MODEL_NAME = "yolo11n_int8_openvino_model"
VEHICLES = (2, 3, 5, 7)  # COCO car, motorcycle, bus, truck
LINES = (0.45, 0.5, 0.6, 0.7, 0.75)
RATES = (5.0, 10.0, 30.0)
DASHCAM_RATES = (5.0, 10.0)
IMGSZ, CONF, IOU = 640, 0.25, 0.5


@dataclass
class Clip:
    """Vehicle detections of every frame of a clip, indexed by frame number."""

    name: str
    xyxy: list[np.ndarray]
    conf: list[np.ndarray]
    cls: list[np.ndarray]
    height: int
    width: int
    fps: float

    def reversed(self) -> Clip:
        return Clip(
            self.name + " (backwards)",
            self.xyxy[::-1],
            self.conf[::-1],
            self.cls[::-1],
            self.height,
            self.width,
            self.fps,
        )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def detect_clip(path: Path, cache: Path, mirror: bool = False) -> Clip:
    """Run the detector over every frame once (or load the cached boxes)."""
    import cv2

    name = path.stem + (" (mirrored)" if mirror else "")
    cached = cache / f"tracking-{path.stem}{'-mirrored' if mirror else ''}.npz"
    frames = list(iter_sampled_frames(path, None))
    height, width = frames[0].image.shape[:2]
    fps = (len(frames) - 1) / (frames[-1].pts_sec - frames[0].pts_sec)
    if cached.exists():
        d = np.load(cached)
        split = np.cumsum(d["counts"])[:-1]
        return Clip(
            name,
            np.split(d["xyxy"], split),
            np.split(d["conf"], split),
            np.split(d["cls"], split),
            height,
            width,
            fps,
        )
    from ultralytics import YOLO

    os.environ.setdefault("YOLO_OFFLINE", "1")
    model = YOLO(str(SHARED_MODELS / MODEL_NAME), task="detect")
    xyxy, conf, cls = [], [], []
    started = time.perf_counter()
    for frame in frames:
        image = cv2.flip(frame.image, 1) if mirror else frame.image
        boxes = model.predict(image, conf=CONF, iou=IOU, imgsz=IMGSZ, verbose=False)[0].boxes
        boxes = boxes.cpu().numpy()
        keep = np.isin(boxes.cls.astype(np.int64), VEHICLES)
        xyxy.append(boxes.xyxy[keep].astype(np.float32))
        conf.append(boxes.conf[keep].astype(np.float32))
        cls.append(boxes.cls[keep].astype(np.int64))
    log(f"detected {len(frames)} frames of {name} in {time.perf_counter() - started:.1f} s")
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(
        cached,
        xyxy=np.concatenate(xyxy),
        conf=np.concatenate(conf),
        cls=np.concatenate(cls),
        counts=np.array([len(b) for b in xyxy]),
    )
    return Clip(name, xyxy, conf, cls, height, width, fps)


def sampled(path: Path, fps: float) -> list[int]:
    return [f.frame_number for f in iter_sampled_frames(path, fps)]


# -- trackers ----------------------------------------------------------------------------


def run_motion(
    clip: Clip, frames: list[int], config: TrackerConfig, fps: float, images=None
) -> list[np.ndarray]:
    tracker = MotionTracker(config, fps)
    return [
        tracker.update(
            clip.xyxy[i], clip.conf[i], clip.cls[i], None if images is None else images[i]
        )
        for i in frames
    ]


def run_bytetrack(clip: Clip, frames: list[int]) -> list[np.ndarray]:
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    tracker = BYTETracker(IterableSimpleNamespace(**YAML.load(check_yaml("bytetrack.yaml"))))
    out = []
    for i in frames:
        data = np.concatenate(
            [clip.xyxy[i], clip.conf[i][:, None], clip.cls[i][:, None]], 1
        ).astype(np.float32)
        result = tracker.update(Boxes(data, (clip.height, clip.width)))
        ids = np.full(len(data), -1, np.int64)
        if len(result):
            ids[result[:, 7].astype(np.int64)] = result[:, 4].astype(np.int64)
        out.append(ids)
    return out


# -- metrics -----------------------------------------------------------------------------


def crossings(clip: Clip, frames: list[int], ids: list[np.ndarray], line: float) -> int:
    """Crossings of ``y = line * height`` by box centres between consecutive samples of a
    track, either way."""
    track = np.concatenate(ids)
    when = np.concatenate([np.full(len(t), k) for k, t in enumerate(ids)])
    cy = np.concatenate([(clip.xyxy[i][:, 1] + clip.xyxy[i][:, 3]) / 2 for i in frames])
    keep = track >= 0
    order = np.lexsort((when[keep], track[keep]))
    t, below = track[keep][order], cy[keep][order] > line * clip.height
    return int(((t[1:] == t[:-1]) & (below[1:] != below[:-1])).sum())


def linezone(clip: Clip, frames: list[int], ids: list[np.ndarray], line: float) -> int:
    """supervision's LineZone (centre anchor), in + out."""
    import supervision as sv

    y = line * clip.height
    zone = sv.LineZone(
        sv.Point(0, y), sv.Point(clip.width, y), triggering_anchors=[sv.Position.CENTER]
    )
    for i, t in zip(frames, ids, strict=True):
        if len(t):
            zone.trigger(
                sv.Detections(
                    xyxy=clip.xyxy[i], confidence=clip.conf[i], class_id=clip.cls[i], tracker_id=t
                )
            )
    return zone.in_count + zone.out_count


def id_stats(ids: list[np.ndarray], within: list[np.ndarray] | None = None) -> dict:
    """Distinct ids, mean samples per id and tracked detections (optionally only on the
    detections where ``within`` has an id)."""
    flat = np.concatenate(ids)
    if within is not None:
        flat = flat[np.concatenate(within) >= 0]
    flat = flat[flat >= 0]
    _, counts = np.unique(flat, return_counts=True)
    return {
        "ids": len(counts),
        "mean_len": float(counts.mean()) if len(counts) else 0.0,
        "tracked": len(flat),
    }


def split_per_reference(
    ids: list[np.ndarray], frames: list[int], reference: list[np.ndarray]
) -> float:
    """Mean number of ids each reference track (ByteTrack on every frame) is split into."""
    ref = np.concatenate([reference[i] for i in frames])
    ours = np.concatenate(ids)
    keep = (ref >= 0) & (ours >= 0)
    pairs = np.unique(np.c_[ref[keep], ours[keep]], axis=0)
    _, per_ref = np.unique(pairs[:, 0], return_counts=True)
    return float(per_ref.mean()) if len(per_ref) else 0.0


def per_sample_seconds(fn: Callable[[], object], samples: int, rounds: int) -> float:
    timing = interleave([Method("x", fn)], rounds)["x"]
    return timing.median / samples


def synthetic_cost(rounds: int) -> float:
    """Seconds per frame of MotionTracker on 20 boxes per frame (10 % missed each frame)."""
    rng = np.random.default_rng(0)
    n, steps = 20, 200
    start = np.c_[rng.uniform(50, 1200, n), rng.uniform(50, 650, n)]
    velocity = rng.normal(0, 20, (n, 2))
    size = rng.uniform(30, 80, (n, 1))
    frames = []
    for k in range(steps):
        centres = start + velocity * k + rng.normal(0, 1, (n, 2))
        keep = rng.random(n) > 0.1
        xyxy = np.c_[centres - size / 2, centres + size / 2][keep].astype(np.float32)
        frames.append((xyxy, np.full(len(xyxy), 0.8), np.full(len(xyxy), 2)))

    def run() -> None:
        tracker = MotionTracker(TrackerConfig.for_camera("fixed"), 10.0)
        for xyxy, conf, cls in frames:
            tracker.update(xyxy, conf, cls)

    return per_sample_seconds(run, steps, rounds)


# -- report ------------------------------------------------------------------------------


def roadside_table(path: Path, clips: list[Clip], rounds: int, results: dict) -> None:
    forward = {}
    for clip in clips:
        print(f"\n## {clip.name}: line crossings (y as a fraction of the height)")
        print(f"{'tracker':22s} {'fps':>4s} " + " ".join(f"{y:>5}" for y in LINES) + "  us/sample")
        reference = None
        for fps in RATES:
            frames = sampled(path, fps)
            frames = [f for f in frames if f < len(clip.xyxy)]
            motion = run_motion(clip, frames, TrackerConfig.for_camera("fixed"), fps)
            byte = run_bytetrack(clip, frames)
            t_motion = per_sample_seconds(
                lambda c=clip, f=frames, r=fps: run_motion(
                    c, f, TrackerConfig.for_camera("fixed"), r
                ),
                len(frames),
                rounds,
            )
            t_byte = per_sample_seconds(
                lambda c=clip, f=frames: run_bytetrack(c, f), len(frames), rounds
            )
            rows = {
                "motion": ([crossings(clip, frames, motion, y) for y in LINES], t_motion),
                "bytetrack": ([crossings(clip, frames, byte, y) for y in LINES], t_byte),
                "bytetrack+LineZone": ([linezone(clip, frames, byte, y) for y in LINES], None),
            }
            if fps == 30.0:
                reference = rows["bytetrack"][0]
            for name, (counts, cost) in rows.items():
                extra = f"  {cost * 1e6:7.0f}" if cost is not None else ""
                print(f"{name:22s} {fps:4.0f} " + " ".join(f"{c:5d}" for c in counts) + extra)
                results.setdefault(clip.name, {})[f"{name}@{fps:g}"] = {
                    "counts": dict(zip(map(str, LINES), counts, strict=True)),
                    "us_per_sample": None if cost is None else cost * 1e6,
                }
        if "backwards" not in clip.name:
            forward[clip.name] = reference
        ref = forward.get(clip.name.replace(" (backwards)", ""), reference)
        print(f"{'reference (30 fps)':22s} {'':4s} " + " ".join(f"{c:5d}" for c in ref))


def dashcam_table(path: Path, clip: Clip, rounds: int, results: dict) -> None:
    every = list(range(len(clip.xyxy)))
    reference = run_bytetrack(clip, every)
    images = {f.frame_number: f.image for f in iter_sampled_frames(path, max(DASHCAM_RATES))}
    for fps in DASHCAM_RATES:
        images.update({f.frame_number: f.image for f in iter_sampled_frames(path, fps)})
    print(f"\n## {clip.name}: fragmentation")
    header = "ids  mean-len  tracked | ids  mean-len on ByteTrack's | ids/ref-track  us/sample"
    print(f"{'tracker':20s} {'fps':>4s}  {header}")
    for fps in DASHCAM_RATES:
        frames = sampled(path, fps)
        configs = {
            "motion (dashcam)": (TrackerConfig.for_camera("dashcam"), images),
            "motion (no CMC)": (TrackerConfig.for_camera("dashcam", camera_motion=False), None),
        }
        byte = run_bytetrack(clip, frames)
        runs = {
            name: (run_motion(clip, frames, cfg, fps, imgs), cfg, imgs)
            for name, (cfg, imgs) in configs.items()
        }
        for name, (ids, cfg, imgs) in [*runs.items(), ("bytetrack", (byte, None, None))]:
            if cfg is None:
                cost = per_sample_seconds(
                    lambda c=clip, f=frames: run_bytetrack(c, f), len(frames), rounds
                )
            else:
                cost = per_sample_seconds(
                    lambda f=frames, c=cfg, i=imgs, r=fps: run_motion(clip, f, c, r, i),
                    len(frames),
                    rounds,
                )
            own, same = id_stats(ids), id_stats(ids, within=byte)
            split = split_per_reference(ids, frames, reference)
            print(
                f"{name:20s} {fps:4.0f}  {own['ids']:3d}  {own['mean_len']:8.2f}  "
                f"{own['tracked']:4d}/{sum(len(clip.xyxy[i]) for i in frames):<4d}| "
                f"{same['ids']:3d}  {same['mean_len']:8.2f}{'':16s}| {split:13.2f}  {cost * 1e6:9.0f}"
            )
            results.setdefault(clip.name, {})[f"{name}@{fps:g}"] = {
                "all": own,
                "on_bytetrack_tracked": same,
                "ids_per_reference_track": split,
                "us_per_sample": cost * 1e6,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=REPO / "bench" / "results" / "cache")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mirrored", action="store_true", help="also detect mirrored frames")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "tracking.json")
    args = parser.parse_args()

    roadside, dashcam = SHARED_DATA / "roadside.mp4", SHARED_DATA / "dashcam.mp4"
    for needed in (roadside, dashcam, SHARED_MODELS / MODEL_NAME):
        if not needed.exists():
            sys.exit(f"missing {needed}; set ROADLENS_SHARED_DATA / ROADLENS_SHARED_MODELS")
    results: dict = {}
    clip = detect_clip(roadside, args.cache)
    clips = [clip, clip.reversed()]
    if args.mirrored:
        clips.insert(1, detect_clip(roadside, args.cache, mirror=True))
    roadside_table(roadside, clips, args.rounds, results)
    dashcam_table(dashcam, detect_clip(dashcam, args.cache), args.rounds, results)
    cost = synthetic_cost(args.rounds)
    print(f"\nsynthetic, 20 boxes per frame (10 % missed): {cost * 1e6:.0f} us per frame")
    results["synthetic_20_boxes_us_per_frame"] = cost * 1e6
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
