"""Detection: the local YOLO wrapper, a remote HTTP provider client and the detect-server.

Exports resolve lazily so that importing :mod:`roadlens.detect.detector` pulls in neither
httpx nor FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detector": "roadlens.detect.detector",
    "DetectorConfig": "roadlens.detect.detector",
    "DetectionResult": "roadlens.detect.detector",
    "RemoteConfig": "roadlens.detect.remote",
    "RemoteDetector": "roadlens.detect.remote",
    "RemoteDetectionError": "roadlens.detect.remote",
    "connectivity_test": "roadlens.detect.remote",
    "ServerConfig": "roadlens.detect.server",
    "create_app": "roadlens.detect.server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'roadlens.detect' has no attribute {name!r}")
