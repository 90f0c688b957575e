"""The Parquet lake resource."""

from __future__ import annotations

import os

import dagster as dg

from roadlens.lake import ParquetLake
from roadlens.settings import roadlens_home


class LakeResource(dg.ConfigurableResource):
    """Where the lake lives; default ``$ROADLENS_LAKE`` or ``$ROADLENS_HOME/lake``."""

    root: str = ""
    compression: str = "zstd"

    def lake(self) -> ParquetLake:
        root = self.root or os.environ.get("ROADLENS_LAKE") or str(roadlens_home() / "lake")
        return ParquetLake(root, compression=self.compression)
