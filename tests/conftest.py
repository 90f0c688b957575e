"""Shared fixtures: a rendered dashcam landing folder, a tmp lake and a tmp RoadLens home.

Rendering and model exports are session-scoped so the slow work happens once per run.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from roadlens.lake import ParquetLake
from roadlens.synth.render import DEFAULT_START, SynthClip, render_drive_set
from tests.services import (  # noqa: F401 - fixtures for the server-backed sink tests
    amqp_url,
    kafka_bootstrap,
    mqtt_url,
    pg_schema,
    postgres_url,
    private_tansu,
    real_mongo_url,
    tansu_broker,
)

# The shared folders next to the checkout: real clips and real COCO detectors.
# The repository, and the shared data and models beside it (never copied into it).
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_MODELS = REPO.parent / "shared" / "models"

CAPTURE_DATE = DEFAULT_START.date().isoformat()  # "2026-05-04": synth clips' creation time
CLIP_SECONDS = 3.0
CLIP_FPS = 30.0
VEHICLE_ID = "veh-01"
SESSION_ID = "session-a"


def _shared(path: Path, what: str) -> Path:
    if not path.exists():
        message = f"shared {what} not found: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI must prove the real-footage path)")
        pytest.skip(message)
    return path


def shared_data(name: str) -> Path:
    """A file of the shared data folder; skips when absent (fails under CI=true)."""
    return _shared(SHARED_DATA / name, "test data")


def shared_model(name: str = "yolo11n_int8_openvino_model") -> Path:
    """A real COCO detector of the shared models folder; skips when absent (fails under CI)."""
    return _shared(SHARED_MODELS / name, "detector")


@dataclass(frozen=True)
class LandingClips:
    """A landing folder holding rendered clips under ``<landing>/veh-01/session-a/``."""

    landing: Path
    clips: list[SynthClip]

    @property
    def folder(self) -> Path:
        return self.landing / VEHICLE_ID / SESSION_ID

    @property
    def paths(self) -> list[Path]:
        return [c.video_path for c in self.clips]


@pytest.fixture(scope="session")
def dashcam_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> LandingClips:
    """Two consecutive 3 s, 30 fps synthetic dashcam clips with GPS CSV/GPX sidecars.

    Session-scoped and shared: tests that change the landing folder must copy the clips
    elsewhere (see :func:`copy_clip`).
    """
    landing = tmp_path_factory.mktemp("landing")
    clips = render_drive_set(
        landing,
        vehicle_id=VEHICLE_ID,
        session_id=SESSION_ID,
        clips=2,
        seconds=CLIP_SECONDS,
        fps=CLIP_FPS,
    )
    return LandingClips(landing, clips)


def copy_clip(clip: SynthClip, folder: Path, *, name: str | None = None) -> Path:
    """Copy a clip and its GPS CSV sidecar into ``folder``; return the new video path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = name or clip.video_path.stem
    target = folder / f"{stem}{clip.video_path.suffix}"
    shutil.copy2(clip.video_path, target)
    if clip.gps_csv_path is not None:
        shutil.copy2(clip.gps_csv_path, folder / f"{stem}.csv")
    return target


@pytest.fixture(scope="session")
def roadlens_home_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tmp RoadLens home per session, so model exports are cached across tests."""
    return tmp_path_factory.mktemp("roadlens-home")


@pytest.fixture
def roadlens_env(roadlens_home_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ROADLENS_HOME, YOLO_CONFIG_DIR (and offline mode) at tmp; return the home."""
    monkeypatch.setenv("ROADLENS_HOME", str(roadlens_home_dir))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(roadlens_home_dir / "ultralytics"))
    monkeypatch.delenv("ROADLENS_LAKE", raising=False)
    monkeypatch.delenv("ROADLENS_LANDING", raising=False)
    monkeypatch.delenv("ROADLENS_SOURCES", raising=False)
    # Synthetic scenes get the detector trained on them unless a test names another.
    from roadlens.detect.weights import DEMO_WEIGHTS

    monkeypatch.setenv("ROADLENS_WEIGHTS", str(DEMO_WEIGHTS))
    return roadlens_home_dir


@pytest.fixture(scope="session")
def detector_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of the demo weights: the model may be retrained while the tests run.

    Tests assert on plumbing only, never on detection quality.
    """
    from roadlens.detect.detector import DEMO_WEIGHTS

    if not DEMO_WEIGHTS.exists():
        pytest.skip(f"detector weights not found: {DEMO_WEIGHTS}")
    target = tmp_path_factory.mktemp("weights") / DEMO_WEIGHTS.name
    shutil.copy2(DEMO_WEIGHTS, target)
    return target


@pytest.fixture
def lake(tmp_path: Path) -> ParquetLake:
    """An empty Parquet lake in a tmp folder."""
    return ParquetLake(tmp_path / "lake")
