"""The Parquet lake: one deterministic file per video and table, hive-partitioned.

Layout: ``<root>/<table>/date=YYYY-MM-DD/source_id=<id>/<video_id>.parquet``. A write goes
to ``<root>/_staging`` (outside every table tree: DuckDB globs read dot-files) and is
moved into place with ``os.replace``, so readers see the old file or the new one, never
half a file, and a re-run replaces exactly one video's rows. pyarrow's
``existing_data_behavior="delete_matching"`` is never used: it wipes sibling videos.

Example:
    >>> import tempfile
    >>> from roadlens.synth.tables import synthetic_detections
    >>> table = synthetic_detections(100, video_id="v")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     lake = ParquetLake(tmp)
    ...     stats = lake.write_video("detections", table, date="2026-05-04", source_id="veh-01",
    ...                              video_id="v")
    ...     back = lake.read_video("detections", "v")
    >>> stats.path.relative_to(tmp).as_posix(), stats.rows, back.num_rows
    ('detections/date=2026-05-04/source_id=veh-01/v.parquet', 100, 100)
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from roadlens.schema import (
    DETECTIONS,
    EVENT_STATS,
    EVENTS,
    FRAMES,
    HEATMAPS,
    RAW_DETECTIONS,
    VIDEOS,
    table_name,
    table_version,
    upgrade_table,
)

PARTITION_COLUMNS = ("date", "source_id")
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# Longest segment: ``<video_id>.parquet`` must fit the usual 255-byte file-name limit.
MAX_SEGMENT = 255 - len(".parquet")


def safe_segment(value: str, what: str) -> str:
    """``value`` if it is safe as one path segment (ids are slugs already), else an error.

    Safe means ASCII letters, digits, ``.``, ``_`` and ``-`` only, not starting with ``.``
    or ``-`` (so never ``..``, a separator, whitespace or a hidden file) and at most
    `MAX_SEGMENT` characters. Values are checked, not rewritten: a caller that passes
    an unsafe id has a bug, and silently changing it would split one video's files.

    >>> safe_segment("veh-01--clip-a", "video_id")
    'veh-01--clip-a'
    """
    if (
        not isinstance(value, str)
        or not _SAFE_SEGMENT.fullmatch(value)
        or value in (".", "..")
        or len(value) > MAX_SEGMENT
    ):
        raise ValueError(
            f"{what} {value!r} is not a safe path segment (letters, digits, '.', '_', '-';"
            f" at most {MAX_SEGMENT} characters)"
        )
    return value


@dataclass(frozen=True)
class WriteStats:
    """What one write put where."""

    path: Path
    rows: int
    bytes: int
    seconds: float


class ParquetLake:
    """A folder of hive-partitioned Parquet tables with atomic per-video writes."""

    def __init__(self, root: str | Path, *, compression: str = "zstd") -> None:
        self.root = Path(root)
        self.compression = compression

    @property
    def staging(self) -> Path:
        return self.root / "_staging"

    def video_path(self, table: str, *, date: str, source_id: str, video_id: str) -> Path:
        return (
            self.root
            / safe_segment(table, "table")
            / f"date={safe_segment(date, 'date')}"
            / f"source_id={safe_segment(source_id, 'source_id')}"
            / f"{safe_segment(video_id, 'video_id')}.parquet"
        )

    def write_video(
        self, table_name: str, table: pa.Table, *, date: str, source_id: str, video_id: str
    ) -> WriteStats:
        """Replace one video's file of ``table_name`` with ``table`` atomically.

        Partition columns live in the path, so they are dropped from the file; DuckDB and
        pyarrow's hive partitioning restore them. Any older copy of the same video under
        another date or source (its capture date was corrected) is removed.
        """
        started = time.perf_counter()
        final = self.video_path(table_name, date=date, source_id=source_id, video_id=video_id)
        body = table.drop_columns([c for c in PARTITION_COLUMNS if c in table.column_names])
        self.staging.mkdir(parents=True, exist_ok=True)
        # A prefix of the id keeps the staging name under the file-name limit.
        tmp = self.staging / f"{final.stem[:64]}.{uuid.uuid4().hex}.parquet"
        try:
            pq.write_table(body, tmp, compression=self.compression, row_group_size=256_000)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        for stale in self.find_video(table_name, video_id):
            if stale != final:
                stale.unlink(missing_ok=True)
        return WriteStats(
            final, table.num_rows, final.stat().st_size, time.perf_counter() - started
        )

    def find_video(self, table_name: str, video_id: str) -> list[Path]:
        """Every file of ``video_id`` in ``table_name`` (normally one)."""
        return sorted(
            (self.root / safe_segment(table_name, "table")).glob(
                f"date=*/source_id=*/{safe_segment(video_id, 'video_id')}.parquet"
            )
        )

    def has_video(self, table_name: str, video_id: str) -> bool:
        return bool(self.find_video(table_name, video_id))

    def read_video(self, table_name: str, video_id: str) -> pa.Table:
        """One video's rows with its partition columns restored."""
        files = self.find_video(table_name, video_id)
        if not files:
            raise FileNotFoundError(
                f"lake table {table_name!r} has no file for video {video_id!r} under {self.root}"
            )
        return _read_file(files[0])

    def read_date(self, table_name: str, date: str) -> pa.Table | None:
        """All rows of one date (None when the date has no files)."""
        folder = (
            self.root / safe_segment(table_name, "table") / f"date={safe_segment(date, 'date')}"
        )
        files = sorted(folder.glob("source_id=*/*.parquet"))
        if not files:
            return None
        return pa.concat_tables([_read_file(f) for f in files], promote_options="default")

    def tables(self) -> list[str]:
        """Names of the tables that hold at least one file."""
        if not self.root.exists():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir()
            and not p.name.startswith(("_", "."))
            and any(p.glob("date=*/source_id=*/*.parquet"))
        )


def _read_file(path: Path) -> pa.Table:
    """One lake file with the partition columns of its path restored, upgraded to the
    current version of its table when it was written with an older one."""
    table = pq.read_table(path)
    source_id = path.parent.name.removeprefix("source_id=")
    date = path.parent.parent.name.removeprefix("date=")
    table = table.append_column(
        "source_id", pa.array([source_id] * table.num_rows, pa.string())
    ).append_column("date", pa.array([date] * table.num_rows, pa.string()))
    return _upgraded(table)


_SCHEMAS_BY_TABLE = {
    table_name(s): s
    for s in (FRAMES, RAW_DETECTIONS, DETECTIONS, EVENTS, EVENT_STATS, HEATMAPS, VIDEOS)
}


def _upgraded(table: pa.Table) -> pa.Table:
    """``table`` as the current version of the schema its metadata names (readers accept
    the previous version; a file of the current version is returned as it is)."""
    meta = table.schema.metadata or {}
    current = _SCHEMAS_BY_TABLE.get(meta.get(b"table", b"").decode())
    written = meta.get(b"schema_version")
    if current is None or written is None or int(written) == table_version(current):
        return table
    upgraded = upgrade_table(table, current)
    for name in PARTITION_COLUMNS:  # partition columns are not schema fields of every table
        if name not in upgraded.column_names:
            upgraded = upgraded.append_column(name, table.column(name))
    return upgraded
