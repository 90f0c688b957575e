"""The quality gate of a stage: validate one video's table, keep the good rows, file the rest.

Every stage that writes frames, detections or events passes its table through
:func:`gate` before the lake write. Rows that fail a row-level expectation go, whole and
with their reasons, to the video's file of the lake table ``quarantine_<table>`` (and
nowhere else); the good rows go on. A re-run replaces the video's quarantine file, and a
clean re-run removes it, so the quarantine always holds exactly the video's current bad
rows. Nothing good is dropped: a row leaves the table only with a reason.

Batch-level failures (ids not unique across the table is row-level; a clock that jumps
back and stays is batch-level) cannot be pinned on rows; they are reported, and the
Dagster asset check built on :class:`GateResult` fails on them.

Example:
    >>> import tempfile
    >>> from roadlens.synth.tables import synthetic_detections
    >>> table = synthetic_detections(100, video_id="veh-01--doc")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     result = gate(ParquetLake(tmp), "detections", table, video_id="veh-01--doc",
    ...                   date="2026-05-04", source_id="veh-01", engine="pandas")
    >>> result.good.num_rows, result.quarantined
    (100, 0)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from roadlens.lake import ParquetLake
from roadlens.quality.quarantine import QUARANTINE, quarantine_table
from roadlens.quality.suites import ValidationReport, split, validate

QUARANTINE_PREFIX = "quarantine_"


def default_engine() -> Literal["gx", "pandas"]:
    """``$ROADLENS_QUALITY_ENGINE`` (``gx`` or ``pandas``), default ``gx``."""
    value = os.environ.get("ROADLENS_QUALITY_ENGINE", "gx").strip().lower() or "gx"
    engines: tuple[Literal["gx", "pandas"], ...] = ("gx", "pandas")
    if value not in engines:
        raise ValueError(f"ROADLENS_QUALITY_ENGINE={value!r}: expected 'gx' or 'pandas'")
    return value


def quarantine_table_name(table: str) -> str:
    """The lake table holding ``table``'s quarantined rows, e.g. ``quarantine_detections``."""
    return f"{QUARANTINE_PREFIX}{table}"


@dataclass(frozen=True)
class GateResult:
    """One video's gate: the rows that go on, and what was filed away and why."""

    video_id: str
    table: str
    good: pa.Table
    quarantined: int
    report: ValidationReport

    @property
    def rows(self) -> int:
        return self.report.rows

    @property
    def batch_failures(self) -> list[str]:
        """Reasons of the failed batch-level expectations (nothing could be quarantined)."""
        return [o.reason for o in self.report.aggregate_failures]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary for stage metadata."""
        return {
            "rows": self.rows,
            "quarantined": self.quarantined,
            "batch_failures": self.batch_failures,
            "failed_expectations": {
                o.reason: o.unexpected_count for o in self.report.outcomes if not o.success
            },
            "validation_seconds": round(self.report.seconds, 4),
        }


def gate(
    lake: ParquetLake,
    table: Literal["frames", "detections", "events"],
    data: pa.Table,
    *,
    video_id: str,
    date: str,
    source_id: str,
    known_classes: Sequence[str] | None = None,
    run_id: str | None = None,
    engine: Literal["gx", "pandas"] | None = None,
) -> GateResult:
    """Validate ``data`` (one video's ``table``), write its bad rows to the quarantine and
    return the good rows, in their original order and schema.

    ``engine`` defaults to ``$ROADLENS_QUALITY_ENGINE``, else ``"gx"`` (Great Expectations,
    in-process); ``"pandas"`` applies the same rules with masks, about 6x faster.
    """
    engine = engine or default_engine()
    report = validate(table, data, known_classes=known_classes, engine=engine)
    target = quarantine_table_name(table)
    if not len(report.bad_positions):
        lake.delete_video(target, video_id)  # a clean re-run clears the quarantine
        return GateResult(video_id, table, data, 0, report)
    _, bad = split(data.to_pandas(), report)
    rows = quarantine_table(bad, table_name=table, partition_key=date, run_id=run_id)
    lake.write_video(target, rows, date=date, source_id=source_id, video_id=video_id)
    keep = np.ones(data.num_rows, dtype=bool)
    keep[report.bad_positions] = False
    return GateResult(video_id, table, data.filter(pa.array(keep)), len(bad), report)


def read_quarantine(lake: ParquetLake, table: str, video_id: str) -> pa.Table:
    """The video's quarantined rows of ``table`` (an empty QUARANTINE table when none)."""
    files = lake.find_video(quarantine_table_name(table), video_id)
    if not files:
        return QUARANTINE.empty_table()
    return lake.read_video(quarantine_table_name(table), video_id).select(QUARANTINE.names)


__all__ = ["GateResult", "default_engine", "gate", "quarantine_table_name", "read_quarantine"]
