"""Landing folder, sources YAML and sampling settings."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import dagster as dg

from roadlens.camera import CameraProfile
from roadlens.enrich import SourcesConfig, load_sources
from roadlens.settings import roadlens_home


class SourcesResource(dg.ConfigurableResource):
    """Where videos land and how they are identified and sampled."""

    landing_dir: str = ""
    sources_yaml: str = ""
    # 0: each source's camera profile decides (sources.yaml `sample_fps` or its kind's default).
    sample_fps: float = 0.0
    jpeg_quality: int = 90
    max_gps_gap_s: float = 5.0
    ready_after_s: float = 10.0
    max_files_per_tick: int = 50

    def landing(self) -> Path:
        return Path(
            self.landing_dir or os.environ.get("ROADLENS_LANDING") or roadlens_home() / "landing"
        ).resolve()

    def camera(self, video_path: str, *, sample_fps: float = 0.0, kind: str = "") -> CameraProfile:
        """A video's camera profile: its source's, with run-config overrides applied."""
        profile = self.sources().camera_for(video_path, self.landing())
        if kind and kind != profile.kind:
            profile = CameraProfile.of(
                kind, classes=profile.classes, keep_frames=profile.keep_frames
            )
        fps = sample_fps or self.sample_fps
        return replace(profile, sample_fps=float(fps)) if fps else profile

    def sources(self) -> SourcesConfig:
        path = self.sources_yaml or os.environ.get("ROADLENS_SOURCES", "")
        return load_sources(path) if path else SourcesConfig()
