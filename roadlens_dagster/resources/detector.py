"""The detector resource: weights, device and backend, loaded once per process."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import PrivateAttr

from roadlens.detect.detector import MOTION_TRACKER, Detector, DetectorConfig
from roadlens.detect.remote import URL_ENV, RemoteConfig, RemoteDetector
from roadlens.detect.weights import ResolvedWeights, resolve_weights
from roadlens.settings import roadlens_home


class DetectorResource(dg.ConfigurableResource):
    """An ultralytics YOLO model (any ``.pt``/``.onnx``/exported weights), or a remote provider.

    ``backend="auto"`` runs the fastest installed CPU backend (OpenVINO, then ONNX Runtime)
    on CPU hosts and PyTorch on GPUs; exports are cached by the weights' hash.

    With ``remote_url`` (or ``$ROADLENS_DETECT_URL``) set, boxes come from that HTTP provider
    (``roadlens detect-server`` or a compatible one) and tracking runs here; ``weights``,
    ``device``, ``imgsz``, ``iou``, ``batch_size`` and ``backend`` are then the provider's
    business. ``remote_api_key_env`` names the variable holding the provider's API key.
    """

    weights: str = ""
    device: str = "cpu"
    imgsz: int = 640
    conf: float = 0.25
    iou: float = 0.5
    batch_size: int = 0
    backend: str = "auto"
    tracker: str = MOTION_TRACKER  # or an ultralytics tracker config; "" for none
    remote_url: str = ""
    remote_format: str = "multipart"
    remote_image_format: str = "jpeg"
    remote_batch_size: int = 8
    remote_max_in_flight: int = 2
    remote_timeout_s: float = 60.0
    remote_retries: int = 3
    remote_api_key_env: str = ""
    _detector: Detector | None = PrivateAttr(default=None)
    _weights: ResolvedWeights | None = PrivateAttr(default=None)

    def config(self) -> DetectorConfig:
        return DetectorConfig(
            weights=self.resolved_weights().path,
            device=self.device,
            imgsz=self.imgsz,
            conf=self.conf,
            iou=self.iou,
            batch_size=self.batch_size or None,
            backend=self.backend,
            tracker=self.tracker or None,
            cache_dir=str(roadlens_home()),
        )

    def resolved_weights(self) -> ResolvedWeights:
        """``weights``, else ``$ROADLENS_WEIGHTS``, else yolo11n.pt (the demo model if offline)."""
        if self._weights is None and self.remote_config() is not None:
            # A remote provider runs its own model; nothing local to resolve or download.
            self._weights = ResolvedWeights("remote")
        if self._weights is None:
            self._weights = resolve_weights(self.weights or None, home=roadlens_home())
        return self._weights

    def remote_config(self) -> RemoteConfig | None:
        """The remote provider's settings, or None to detect locally."""
        url = self.remote_url or os.environ.get(URL_ENV, "")
        if not url:
            return None
        return RemoteConfig(
            url=url,
            request_format=self.remote_format,
            image_format=self.remote_image_format,
            batch_size=self.remote_batch_size,
            max_in_flight=self.remote_max_in_flight,
            timeout_s=self.remote_timeout_s,
            retries=self.remote_retries,
            api_key_env=self.remote_api_key_env or None,
        )

    def get_detector(self) -> Detector:
        if self._detector is None:
            remote = self.remote_config()
            if remote is not None:
                self._detector = RemoteDetector(remote, self.config())
            else:
                self._detector = Detector(self.config())
        return self._detector
