"""Build a YOLO-format training set from procedural scenes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from roadlens.synth.scene import Scene, View
from roadlens.synth.sprites import CLASS_NAMES


@dataclass(frozen=True)
class DatasetSpec:
    """How many scenes feed each split; seeds of the splits never overlap."""

    train_scenes: int = 40
    val_scenes: int = 8
    seconds_per_scene: float = 12.0
    fps: float = 10.0
    keep_every: int = 3
    roadside_share: float = 0.3
    width: int = 640
    height: int = 360
    seed: int = 1000


def _write_split(root: Path, split: str, seeds: range, spec: DatasetSpec) -> int:
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    written = 0
    for seed in seeds:
        view: View = "roadside" if (seed * 7919 % 100) / 100 < spec.roadside_share else "dashcam"
        scene = Scene.create(
            view, seed=seed, width=spec.width, height=spec.height, vary_conditions=True
        )
        for frame in scene.frames(seconds=spec.seconds_per_scene, fps=spec.fps):
            if frame.frame_number % spec.keep_every:
                continue
            stem = f"{view}-{seed:05d}-{frame.frame_number:04d}"
            quality = int(60 + (seed + frame.frame_number) % 35)
            cv2.imwrite(
                str(images / f"{stem}.jpg"), frame.image, [cv2.IMWRITE_JPEG_QUALITY, quality]
            )
            b = frame.boxes
            cx = ((b.x1 + b.x2) / 2 / spec.width).to_numpy()
            cy = ((b.y1 + b.y2) / 2 / spec.height).to_numpy()
            bw = ((b.x2 - b.x1) / spec.width).to_numpy()
            bh = ((b.y2 - b.y1) / spec.height).to_numpy()
            rows = np.column_stack([b.class_id.to_numpy(), cx, cy, bw, bh])
            np.savetxt(labels / f"{stem}.txt", rows, fmt=["%d", "%.6f", "%.6f", "%.6f", "%.6f"])
            written += 1
    return written


def build_yolo_dataset(root: str | Path, spec: DatasetSpec = DatasetSpec()) -> Path:
    """Render the train and val splits under ``root``; return the ``data.yaml`` path."""
    root = Path(root)
    _write_split(root, "train", range(spec.seed, spec.seed + spec.train_scenes), spec)
    val_start = spec.seed + spec.train_scenes + 10_000
    _write_split(root, "val", range(val_start, val_start + spec.val_scenes), spec)
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CLASS_NAMES))
    data_yaml = root / "data.yaml"
    data_yaml.write_text(
        f"path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n"
    )
    return data_yaml
