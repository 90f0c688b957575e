"""The RoadLens code location with the detector on a GPU.

Served by the GPU worker (``docker compose --profile gpu``, the GPU user deployment on
Kubernetes) with ``dagster code-server start -f deploy/gpu_definitions.py``: the same
assets, jobs, schedules and sensors as ``roadlens_dagster.orchestration.definitions`` under the same location
name, with the ``detector`` resource on ``$ROADLENS_DEVICE`` (default ``cuda:0``). It
replaces the CPU server instead of running beside it: Dagster allows one location per
materializable asset.

``ROADLENS_DEVICE=auto`` picks ``cuda:0`` when torch sees a GPU and ``cpu`` otherwise. Every
run process loads the location again, so on Kubernetes the choice is made inside each run
pod: runs that the ``dagster-k8s/config`` tag puts on the GPU pool detect on the GPU, the
others on CPU (docs/deploy.md).
"""

from __future__ import annotations

import os

import dagster as dg

# The module, not its `defs`: Dagster refuses a file with two Definitions at module scope.
import roadlens_dagster.orchestration.definitions as cpu_location
from roadlens_dagster.resources import DetectorResource

DEFAULT_DEVICE = "cuda:0"


def resolve_device(value: str) -> str:
    """``value`` as a torch device; ``auto`` is ``cuda:0`` with a visible GPU, else ``cpu``."""
    value = value.strip() or DEFAULT_DEVICE
    if value != "auto":
        return value
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def on_device(base: dg.Definitions, device: str) -> dg.Definitions:
    """``base`` with its detector (and every other setting of it) moved to ``device``."""
    detector = (base.resources or {}).get("detector")
    if not isinstance(detector, DetectorResource):
        raise TypeError(f"expected a DetectorResource under 'detector', got {type(detector)}")
    return dg.Definitions(
        assets=base.assets,
        asset_checks=base.asset_checks,
        jobs=base.jobs,
        schedules=base.schedules,
        sensors=base.sensors,
        resources={**base.resources, "detector": detector.model_copy(update={"device": device})},
        executor=base.executor,
        loggers=base.loggers,
        metadata=base.metadata,
    )


defs = on_device(cpu_location.defs, resolve_device(os.environ.get("ROADLENS_DEVICE", "")))
