"""Train the small demo detector on procedural scenes (no model hub is needed)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from roadlens.synth.dataset import DatasetSpec, build_yolo_dataset

MODEL_YAML = Path(__file__).resolve().parents[1] / "models" / "roadlens-det.yaml"


@dataclass(frozen=True)
class TrainResult:
    """Where the weights went and the held-out metrics ultralytics reported."""

    weights: Path
    metrics: dict[str, float]


def train_demo_detector(
    out_weights: str | Path,
    *,
    work_dir: str | Path,
    epochs: int = 40,
    imgsz: int = 512,
    batch: int = 16,
    spec: DatasetSpec | None = None,
    model_yaml: Path = MODEL_YAML,
) -> TrainResult:
    """Render a dataset, train ``model_yaml`` from scratch and copy ``best.pt`` to ``out_weights``."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics import YOLO

    work_dir = Path(work_dir)
    data_yaml = work_dir / "dataset" / "data.yaml"
    if not data_yaml.exists():
        data_yaml = build_yolo_dataset(work_dir / "dataset", spec or DatasetSpec())
    model = YOLO(str(model_yaml))

    def use_all_cores(_trainer: object) -> None:
        # ultralytics pins torch to cores-1 threads: one thread on a 2-core machine.
        torch.set_num_threads(os.cpu_count() or 1)

    model.add_callback("on_pretrain_routine_end", use_all_cores)
    model.train(
        data=str(data_yaml),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device="cpu",
        workers=2,
        project=str(work_dir / "runs"),
        name="demo",
        exist_ok=True,
        plots=False,
        amp=False,
        seed=0,
        deterministic=True,
        close_mosaic=max(1, epochs // 5),
        patience=epochs,
        fliplr=0.5,
        degrees=0.0,
        mosaic=1.0,
        verbose=False,
    )
    best = work_dir / "runs" / "demo" / "weights" / "best.pt"
    out_weights = Path(out_weights)
    out_weights.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(best, out_weights)
    metrics = YOLO(str(out_weights)).val(
        data=str(data_yaml), imgsz=640, batch=8, device="cpu", plots=False, verbose=False
    )
    summary = {
        "map50": float(metrics.box.map50),
        "map50_95": float(metrics.box.map),
        "precision": float(metrics.box.mp),
        "recall": float(metrics.box.mr),
    }
    return TrainResult(out_weights, summary)
