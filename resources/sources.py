"""Landing folder, sources YAML and sampling settings."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from resources.lake import roadlens_home
from roadlens.enrich import SourcesConfig, load_sources


class SourcesResource(dg.ConfigurableResource):
    """Where videos land and how they are identified and sampled."""

    landing_dir: str = ""
    sources_yaml: str = ""
    sample_fps: float = 5.0
    jpeg_quality: int = 90
    max_gps_gap_s: float = 5.0
    ready_after_s: float = 10.0
    max_files_per_tick: int = 50

    def landing(self) -> Path:
        return Path(
            self.landing_dir or os.environ.get("ROADLENS_LANDING") or roadlens_home() / "landing"
        ).resolve()

    def sources(self) -> SourcesConfig:
        path = self.sources_yaml or os.environ.get("ROADLENS_SOURCES", "")
        return load_sources(path) if path else SourcesConfig()
