"""The Parquet lake: one deterministic file per video and table, hive-partitioned.

Layout: ``<root>/<table>/date=YYYY-MM-DD/source_id=<id>/<video_id>.parquet``. A write goes
to ``<root>/_staging`` (outside every table tree: DuckDB globs read dot-files) and is
moved into place with ``os.replace``, so readers see the old file or the new one, never
half a file, and a re-run replaces exactly one video's rows. pyarrow's
``existing_data_behavior="delete_matching"`` is never used: it wipes sibling videos.

Media (sampled JPEGs, event captures and clips, heat map PNGs) live under ``<root>/media``
with the same date and video segments; :class:`ParquetLake` builds every such path.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     lake = ParquetLake(tmp)
    ...     rows = pa.table({"video_id": ["v"], "frame_number": [0]})
    ...     stats = lake.write_video("frames", rows, date="2026-05-04", source_id="veh-01",
    ...                              video_id="v")
    ...     listed = lake.video_ids("frames", "2026-05-04"), lake.locations("frames")
    >>> stats.path.relative_to(tmp).as_posix(), stats.rows
    ('frames/date=2026-05-04/source_id=veh-01/v.parquet', 1)
    >>> listed
    (['v'], {'v': ('2026-05-04', 'veh-01')})
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

from roadlens.lake.catalog import CATALOG
from roadlens.schema import table_version, upgrade_table

PARTITION_COLUMNS = ("date", "source_id")
# ``<table>/`` + this: every video file of a table (the hive layout).
VIDEO_FILES = "date=*/source_id=*/*.parquet"
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
        folder = self._partition_dir(table, date, source_id)
        return folder / f"{safe_segment(video_id, 'video_id')}.parquet"

    def _date_dir(self, table_name: str, date: str) -> Path:
        return self.table_dir(table_name) / f"date={safe_segment(date, 'date')}"

    def _partition_dir(self, table_name: str, date: str, source_id: str) -> Path:
        return (
            self._date_dir(table_name, date) / f"source_id={safe_segment(source_id, 'source_id')}"
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

    def delete_video(self, table_name: str, video_id: str) -> int:
        """Remove every file of ``video_id`` in ``table_name``; return how many there were."""
        files = self.find_video(table_name, video_id)
        for path in files:
            path.unlink(missing_ok=True)
        return len(files)

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
        files = self.files(table_name, date=date)
        if not files:
            return None
        return pa.concat_tables([_read_file(f) for f in files], promote_options="default")

    def table_dir(self, table_name: str) -> Path:
        """``<root>/<table>``, the folder of one table."""
        return self.root / safe_segment(table_name, "table")

    def files(self, table_name: str, *, date: str | None = None) -> list[Path]:
        """Every video file of ``table_name`` (of one ``date`` if given), sorted."""
        if date is None:
            return sorted(self.table_dir(table_name).glob(VIDEO_FILES))
        return sorted(self._date_dir(table_name, date).glob("source_id=*/*.parquet"))

    def has_files(self, table_name: str) -> bool:
        """Whether ``table_name`` holds at least one video file."""
        return next(self.table_dir(table_name).glob(VIDEO_FILES), None) is not None

    def video_ids(self, table_name: str, date: str) -> list[str]:
        """The ids of the videos with a file of ``table_name`` on ``date``, sorted."""
        return [p.stem for p in self.files(table_name, date=date)]

    def locations(self, table_name: str) -> dict[str, tuple[str, str]]:
        """``video_id -> (date, source_id)`` of every file of ``table_name``."""
        return {p.stem: location(p) for p in self.files(table_name)}

    def date_dirs(self, table_name: str) -> list[Path]:
        """The ``date=`` folders of ``table_name``, sorted (with files or not)."""
        return sorted(d for d in self.table_dir(table_name).glob("date=*") if d.is_dir())

    def dates(self, table_name: str) -> list[str]:
        """The dates of :meth:`date_dirs`."""
        return [d.name.removeprefix("date=") for d in self.date_dirs(table_name)]

    def source_files(self, table_name: str, date: str, source_id: str) -> list[Path]:
        """The files of one source on one date of ``table_name``."""
        return sorted(self._partition_dir(table_name, date, source_id).glob("*.parquet"))

    def duckdb_source(self, table_name: str) -> str:
        """A DuckDB ``read_parquet(...)`` over every file of ``table_name``, with the
        partition columns typed (``date`` as DATE) and columns unified by name."""
        glob = (self.table_dir(table_name) / "**" / "*.parquet").as_posix().replace("'", "''")
        return (
            f"read_parquet('{glob}', hive_partitioning = true, "
            "hive_types = {'date': DATE, 'source_id': VARCHAR}, union_by_name = true)"
        )

    # -- media ----------------------------------------------------------------------------

    @property
    def media_root(self) -> Path:
        """``<root>/media``: every file that is not a table (JPEGs, PNGs, clips)."""
        return self.root / "media"

    def frames_dir(self, date: str, video_id: str) -> Path:
        """Where a video's sampled JPEGs live (``media/frames/date=<date>/<video>``)."""
        return self._media_dir("frames", date, video_id)

    def event_media_dir(self, date: str, video_id: str) -> Path:
        """Where a video's event captures, crops and clips live."""
        return self._media_dir("events", date, video_id)

    def event_media_ledger_dir(self, date: str) -> Path:
        """The folder of one date's event media (its ledger files sit beside the videos')."""
        return self._media_date_dir("events", date)

    def heatmap_png(self, date: str, video_id: str, heatmap_id: str) -> Path:
        """Where a video's rendered heat map lives (a re-run overwrites it)."""
        return (
            self._media_dir("heatmaps", date, video_id)
            / f"{safe_segment(heatmap_id, 'heatmap_id')}.png"
        )

    def heatmap_pngs(self, video_id: str, heatmap_id: str = "*") -> list[Path]:
        """The rendered heat maps of ``video_id`` on any date."""
        if heatmap_id != "*":
            safe_segment(heatmap_id, "heatmap_id")
        pattern = f"date=*/{safe_segment(video_id, 'video_id')}/{heatmap_id}.png"
        return sorted((self.media_root / "heatmaps").glob(pattern))

    def videos_with_heatmaps(self) -> set[str]:
        """The ids of the videos that have a rendered heat map folder."""
        return {p.name for p in (self.media_root / "heatmaps").glob("date=*/*") if p.is_dir()}

    def _media_date_dir(self, kind: str, date: str) -> Path:
        return self.media_root / kind / f"date={safe_segment(date, 'date')}"

    def _media_dir(self, kind: str, date: str, video_id: str) -> Path:
        return self._media_date_dir(kind, date) / safe_segment(video_id, "video_id")

    def tables(self) -> list[str]:
        """Names of the tables that hold at least one file."""
        if not self.root.exists():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(("_", ".")) and self.has_files(p.name)
        )


def location(path: Path) -> tuple[str, str]:
    """``(date, source_id)`` of a lake file, from its hive folders."""
    return (
        path.parent.parent.name.removeprefix("date="),
        path.parent.name.removeprefix("source_id="),
    )


def _read_file(path: Path) -> pa.Table:
    """One lake file with the partition columns of its path restored, upgraded to the
    current version of its table when it was written with an older one."""
    table = pq.read_table(path)
    date, source_id = location(path)
    table = table.append_column(
        "source_id", pa.array([source_id] * table.num_rows, pa.string())
    ).append_column("date", pa.array([date] * table.num_rows, pa.string()))
    return _upgraded(table)


def _upgraded(table: pa.Table) -> pa.Table:
    """``table`` as the current version of the schema its metadata names (readers accept
    the previous version; a file of the current version is returned as it is)."""
    meta = table.schema.metadata or {}
    entry = CATALOG.get(meta.get(b"table", b"").decode())
    current = entry.schema if entry is not None else None
    written = meta.get(b"schema_version")
    if current is None or written is None or int(written) == table_version(current):
        return table
    upgraded = upgrade_table(table, current)
    for name in PARTITION_COLUMNS:  # partition columns are not schema fields of every table
        if name not in upgraded.column_names:
            upgraded = upgraded.append_column(name, table.column(name))
    return upgraded
