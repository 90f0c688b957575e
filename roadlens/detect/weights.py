"""Which detector runs: the real COCO default, an honest fallback, and the road classes.

With no weights named, real ingests use ``yolo11n.pt``, which ultralytics downloads once
into ``$ROADLENS_HOME/models``. Only when that cannot be had does the demo model (trained
on synthetic scenes) run, and then :attr:`ResolvedWeights.note` says so in one line.

Example:
    >>> road_class_ids({0: "person", 1: "bicycle", 4: "airplane", 9: "traffic light"})
    [0, 1, 9]
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from roadlens.camera import ALL_CLASSES
from roadlens.settings import roadlens_home

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"  # package data: the demo detector
DEMO_WEIGHTS = REPO_MODELS / "roadlens-det.pt"
DEFAULT_WEIGHTS = "yolo11n.pt"
WEIGHTS_ENV = "ROADLENS_WEIGHTS"

ROAD_CLASSES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "bus",
    "truck",
    "traffic light",
    "stop sign",
)
"""The COCO classes a road platform exists for; every other class is dropped by default."""

# Files ultralytics loads as weights, by suffix; folders are OpenVINO, TF or NCNN exports.
WEIGHT_SUFFIXES = (".pt", ".onnx", ".engine", ".torchscript", ".tflite", ".mlpackage")


class WeightsError(ValueError):
    """Weights that cannot be used; the message names the path and what is wrong."""


@dataclass(frozen=True)
class ResolvedWeights:
    """The weights to load and, when they are not what the user would expect, why.

    Attributes:
        path: A weights file or export folder.
        demo_fallback: The synthetic demo model runs because no real model could be had.
        note: One line for every run's log when ``demo_fallback``; None otherwise.
    """

    path: str
    demo_fallback: bool = False
    note: str | None = None


def check_weights(path: str | os.PathLike[str]) -> Path:
    """``path`` as a usable weights file or export folder, or a :class:`WeightsError`.

    >>> check_weights("no/such/model.pt")
    Traceback (most recent call last):
    ...
    roadlens.detect.weights.WeightsError: detector weights no/such/model.pt: no such file or folder
    """
    weights = Path(path)
    if not weights.exists():
        raise WeightsError(f"detector weights {path}: no such file or folder")
    if weights.is_dir():
        xml = sorted(weights.glob("*.xml"))
        if xml and not any(weights.glob("*.bin")):
            raise WeightsError(f"detector weights {path}: OpenVINO folder without its .bin file")
        if not any(p.is_file() for p in weights.iterdir()):
            raise WeightsError(f"detector weights {path}: the folder is empty")
        return weights
    if weights.suffix.lower() not in WEIGHT_SUFFIXES:
        raise WeightsError(
            f"detector weights {path}: unknown format {weights.suffix or '(no suffix)'}; "
            f"use {', '.join(WEIGHT_SUFFIXES)} or an exported model folder"
        )
    if weights.stat().st_size == 0:
        raise WeightsError(f"detector weights {path}: the file is empty")
    if weights.suffix == ".pt" and not zipfile.is_zipfile(weights):
        raise WeightsError(
            f"detector weights {path}: not a PyTorch checkpoint (corrupt or truncated)"
        )
    return weights


def resolve_weights(explicit: str | None = None, *, home: Path | None = None) -> ResolvedWeights:
    """The weights a run loads: ``explicit``, else ``$ROADLENS_WEIGHTS``, else ``yolo11n.pt``.

    ``yolo11n.pt`` is downloaded by ultralytics into ``<home>/models`` on first use. When
    that fails (no network, no hub), the demo model runs and ``note`` says so.
    """
    named = explicit or os.environ.get(WEIGHTS_ENV, "")
    if named:
        if Path(named).name == DEFAULT_WEIGHTS and not Path(named).exists():
            return _default_real(home or roadlens_home())
        return ResolvedWeights(str(check_weights(named)))
    return _default_real(home or roadlens_home())


def _default_real(home: Path) -> ResolvedWeights:
    target = home / "models" / DEFAULT_WEIGHTS
    if target.exists():
        return ResolvedWeights(str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        from ultralytics.utils.downloads import attempt_download_asset

        path = Path(attempt_download_asset(str(target)))
        if path.exists():
            return ResolvedWeights(str(path))
        reason = "the download left no file"
    except Exception as exc:  # any download failure leads to the same fallback
        reason = str(exc).replace("❌", "").strip().splitlines()[0] if str(exc) else repr(exc)
    return ResolvedWeights(
        str(DEMO_WEIGHTS),
        demo_fallback=True,
        note=(
            f"no real detector: {DEFAULT_WEIGHTS} could not be downloaded ({reason}); running "
            "the synthetic demo model, which misses real vehicles and boxes buildings as cars. "
            f"Fix: set {WEIGHTS_ENV} to a COCO YOLO (.pt, .onnx or an OpenVINO folder) or run "
            "once with internet access."
        ),
    )


def road_class_ids(
    names: Mapping[int, str],
    wanted: Sequence[str] | str | None = None,
    *,
    model: str = "the model",
) -> list[int] | None:
    """Class ids of ``names`` to keep: the road classes by default, None for ``"all"``.

    Raises:
        WeightsError: The model has none of the wanted classes (its class list is named).
    """
    if wanted == ALL_CLASSES:
        return None
    targets = ROAD_CLASSES if wanted is None else tuple(wanted)
    ids = sorted(i for i, name in names.items() if name in targets)
    if not ids:
        listed = ", ".join(names[i] for i in sorted(names)) or "(none)"
        raise WeightsError(
            f"{model} detects none of the classes {list(targets)}; its classes are: {listed}"
        )
    return ids
