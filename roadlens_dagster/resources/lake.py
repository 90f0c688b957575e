"""The Parquet lake resource."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from roadlens.lake import ParquetLake


def roadlens_home() -> Path:
    """``ROADLENS_HOME`` (default ``./.roadlens``): the lake, media and the default DAGSTER_HOME."""
    return Path(os.environ.get("ROADLENS_HOME", ".roadlens")).resolve()


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives; default ``$ROADLENS_LAKE`` or ``$ROADLENS_HOME/lake``."""

    root: str = ""
    compression: str = "zstd"

    def lake(self) -> ParquetLake:
        root = self.root or os.environ.get("ROADLENS_LAKE") or str(roadlens_home() / "lake")
        return ParquetLake(root, compression=self.compression)
