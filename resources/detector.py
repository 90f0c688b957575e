"""The detector resource: weights, device and backend, loaded once per process."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import PrivateAttr

from resources.lake import roadlens_home
from roadlens.detect.detector import DEFAULT_WEIGHTS, Detector, DetectorConfig


class DetectorResource(dg.ConfigurableResource):
    """An ultralytics YOLO model (any ``.pt``/``.onnx``/exported weights).

    ``backend="auto"`` runs the fastest installed CPU backend (OpenVINO, then ONNX Runtime)
    on CPU hosts and PyTorch on GPUs; exports are cached by the weights' hash.
    """

    weights: str = ""
    device: str = "cpu"
    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.5
    batch_size: int = 0
    backend: str = "auto"
    tracker: str = "bytetrack.yaml"
    _detector: Detector | None = PrivateAttr(default=None)

    def config(self) -> DetectorConfig:
        return DetectorConfig(
            weights=self.weights or os.environ.get("ROADLENS_WEIGHTS") or str(DEFAULT_WEIGHTS),
            device=self.device,
            imgsz=self.imgsz,
            conf=self.conf,
            iou=self.iou,
            batch_size=self.batch_size or None,
            backend=self.backend,
            tracker=self.tracker or None,
            cache_dir=str(roadlens_home()),
        )

    def get_detector(self) -> Detector:
        if self._detector is None:
            self._detector = Detector(self.config())
        return self._detector
