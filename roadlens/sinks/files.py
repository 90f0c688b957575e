"""File export sink: rotated JSONL or CSV files (optionally gzip), one folder per video.

Layout::

    <root>/<table>/date=YYYY-MM-DD/source_id=<id>/<video_id>/part-00000.jsonl.gz
                                                              part-00001.jsonl.gz
                                                              _manifest.json

``date`` is the UTC date of the video's first row (``captured_at``; ``bin_start`` for
``event_stats``). ``_manifest.json`` lists ``export_id``, ``fingerprint``, ``rows`` and, per
file, its rows, bytes, ``sha256`` and first/last timestamp.

Rotation: a new part starts when the current one would pass ``rotate_bytes`` (counted
before compression, header included, so part boundaries do not depend on the gzip level)
or when the row's time enters a new ``rotate_seconds`` window (aligned to the epoch, so
hourly parts break at full hours). A single row larger than ``rotate_bytes`` gets a part
of its own. Parts keep the input row order.

Formats: JSONL lines come from :func:`roadlens.sinks.encode.json_lines` (the same JSON as
the message sinks). CSV has a header row; timestamps are ISO 8601 UTC, strings are quoted
(``""`` is an empty string, an empty field is null) and lists are JSON text. CSV lines are
built with Arrow compute kernels rather than ``pyarrow.csv.write_csv``, because rotation
needs each row's exact size and the writer only yields whole files. Gzip output is
deterministic (no timestamp in the header), so equal rows give equal ``sha256``.

Idempotent per video: the new folder is written under ``<root>/_staging``, any old folder
of the video (also under another date or source) is renamed aside, the new one renamed
into place, then the old one deleted. Readers never see half a video or two copies; for
the instant between the two renames they see none. Writers of one video are serialized
with ``flock``.

Example:
    >>> import tempfile
    >>> from roadlens.synth.tables import synthetic_events
    >>> events = synthetic_events(1500, video_id="veh-01--clip")  # one every 0.5 s: 12.5 min
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     sink = FileExportSink(tmp, file_format="csv.gz", rotate_seconds=600)
    ...     done = sink.write_video("events", "veh-01--clip", events, export_id="run-1")
    ...     parts = sorted(p.name for p in Path(done.extra["path"]).iterdir())
    >>> done.rows, done.extra["files"], parts
    (1500, 2, ['_manifest.json', 'part-00000.csv.gz', 'part-00001.csv.gz'])
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from roadlens.lake import CATALOG, SINK_TABLES, safe_segment
from roadlens.schema import table_version
from roadlens.sinks.base import SinkBase, SinkError, SinkWrite, Stopwatch
from roadlens.sinks.encode import buffers, json_lines

FORMATS = ("jsonl", "jsonl.gz", "csv", "csv.gz")
MANIFEST = "_manifest.json"
# --- encoding ---------------------------------------------------------------------------


def _newline_terminated(lines: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(lines, "", "\n")


def jsonl_lines(data: pa.Table) -> pa.Array:
    """One JSON object per row, each ending in ``\\n``."""
    return _newline_terminated(json_lines(data))


def _json_text(data: pa.Table, names: Sequence[str]) -> dict[str, pa.Array]:
    """JSON text of nested columns (lists), built by DuckDB in one pass."""
    if not names:
        return {}
    con = duckdb.connect()
    try:
        con.register("nested", data.select(list(names)))
        select = ", ".join(f'to_json("{n}")::VARCHAR AS "{n}"' for n in names)
        result = con.sql(f"SELECT {select} FROM nested").to_arrow_table()
    finally:
        con.close()
    return {n: result.column(n).combine_chunks() for n in names}


def _quoted(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")


def csv_header(data: pa.Table) -> bytes:
    """The header row (column names, quoted only where needed)."""
    names = [f'"{n}"' if any(c in n for c in ',"\r\n') else n for n in data.column_names]
    return (",".join(names) + "\n").encode()


def csv_lines(data: pa.Table) -> pa.Array:
    """One CSV record per row (no header), each ending in ``\\n``, in Arrow kernels."""
    nested = [
        f.name
        for f in data.schema
        if pa.types.is_list(f.type)
        or pa.types.is_large_list(f.type)
        or pa.types.is_struct(f.type)
        or pa.types.is_map(f.type)
    ]
    as_json = _json_text(data, nested)
    fields = []
    for field in data.schema:
        column = data.column(field.name).combine_chunks()
        if field.name in as_json:
            text = _quoted(as_json[field.name])
        elif pa.types.is_timestamp(field.type):
            # "%S" carries the fraction for a microsecond unit: 10:00:00.250000.
            text = pc.strftime(column, "%Y-%m-%dT%H:%M:%SZ")
        elif pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            text = _quoted(column)
        else:
            # Arrow prints the shortest text that round-trips (764.354 for a float32).
            text = pc.cast(column, pa.string())
        fields.append(pc.fill_null(text, ""))
    if not fields:
        raise ValueError("cannot write CSV without columns")
    return _newline_terminated(pc.binary_join_element_wise(*fields, ","))


# --- rotation ---------------------------------------------------------------------------


def plan_parts(
    offsets: np.ndarray, windows: np.ndarray | None, budget: int | None
) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` of the parts: cut where ``windows`` changes and before a
    part's bytes (``offsets[end] - offsets[start]``) would pass ``budget``.

    >>> plan_parts(np.array([0, 4, 8, 12, 16]), np.array([0, 0, 1, 1]), 8)
    [(0, 2), (2, 4)]
    >>> plan_parts(np.array([0, 4, 8, 12, 16]), None, 5)
    [(0, 1), (1, 2), (2, 3), (3, 4)]
    """
    rows = len(offsets) - 1
    changes: np.ndarray | list[int]
    changes = np.flatnonzero(windows[1:] != windows[:-1]) + 1 if windows is not None else []
    cuts = [int(c) for c in changes]
    parts: list[tuple[int, int]] = []
    for first, last in pairwise([0, *cuts, rows]):
        start = first
        while start < last:
            if budget is None:
                end = last
            else:
                end = int(np.searchsorted(offsets, offsets[start] + budget, side="right")) - 1
                end = min(max(end, start + 1), last)  # an oversized row gets a part of its own
            parts.append((start, end))
            start = end
    return parts


# --- the sink ---------------------------------------------------------------------------


class FileExportSink(SinkBase):
    """Per-video folders of rotated JSONL/CSV files under ``root``, replaced atomically."""

    name = "files"

    def __init__(
        self,
        root: str | Path,
        *,
        file_format: str = "jsonl.gz",
        rotate_bytes: int | None = 64 * 2**20,
        rotate_seconds: float | None = 3600,
        compresslevel: int = 1,
    ) -> None:
        if file_format not in FORMATS:
            raise SinkError(f"files: unknown format {file_format!r}; expected one of {FORMATS}")
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise SinkError(f"files: rotate_bytes must be positive, not {rotate_bytes}")
        if rotate_seconds is not None and rotate_seconds <= 0:
            raise SinkError(f"files: rotate_seconds must be positive, not {rotate_seconds}")
        self.root = Path(root)
        self.file_format = file_format
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.compresslevel = compresslevel

    @property
    def staging(self) -> Path:
        return self.root / "_staging"

    @property
    def gzip(self) -> bool:
        return self.file_format.endswith(".gz")

    @property
    def csv(self) -> bool:
        return self.file_format.startswith("csv")

    def video_dir(self, table: str, *, date: str, source_id: str, video_id: str) -> Path:
        return (
            self.root
            / safe_segment(table, "table")
            / f"date={safe_segment(date, 'date')}"
            / f"source_id={safe_segment(source_id, 'source_id')}"
            / safe_segment(video_id, "video_id")
        )

    def find_video(self, table: str, video_id: str) -> list[Path]:
        """Every folder of ``video_id`` in ``table`` (normally one)."""
        pattern = f"date=*/source_id=*/{safe_segment(video_id, 'video_id')}"
        return sorted(p for p in (self.root / safe_segment(table, "table")).glob(pattern))

    @contextmanager
    def _locked(self, table: str, video_id: str) -> Iterator[None]:
        locks = self.staging / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{table}--{video_id}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_video(
        self, table: str, video_id: str, data: pa.Table, *, export_id: str, fingerprint: str = ""
    ) -> SinkWrite:
        """Replace ``video_id``'s folder of ``table`` with ``data`` (empty removes it)."""
        data = self.prepare(table, video_id, data)
        try:
            safe_segment(video_id, "video_id")
            with Stopwatch() as watch, self._locked(table, video_id):
                if data.num_rows == 0:
                    self._swap(table, video_id, None)
                    files: list[dict[str, Any]] = []
                    final = None
                else:
                    final, files = self._write(table, video_id, data, export_id, fingerprint)
        except (OSError, ValueError) as exc:
            raise SinkError(f"files ({self.root}): {table} video {video_id!r}: {exc}") from None
        return SinkWrite(
            sink=self.name,
            table=table,
            video_id=video_id,
            rows=data.num_rows,
            bytes=sum(int(f["bytes"]) for f in files),
            seconds=watch.seconds,
            extra={
                "files": len(files),
                "format": self.file_format,
                "path": str(final) if final else "",
            },
        )

    def _write(
        self, table: str, video_id: str, data: pa.Table, export_id: str, fingerprint: str
    ) -> tuple[Path, list[dict[str, Any]]]:
        sources = data.column("source_id").unique().to_pylist()
        if len(sources) != 1:
            raise ValueError(f"one video must have one source_id, found {sorted(sources)[:3]}")
        # The column that dates a row: its folder date and time rotation.
        times = data.column(CATALOG[table].time_column)
        micros = pc.cast(times, pa.int64()).to_numpy()
        date = datetime.fromtimestamp(int(micros.min()) / 1e6, UTC).date().isoformat()
        final = self.video_dir(table, date=date, source_id=sources[0], video_id=video_id)

        header = csv_header(data) if self.csv else b""
        lines = csv_lines(data) if self.csv else jsonl_lines(data)
        body, offsets = buffers(lines)
        windows = None
        if self.rotate_seconds is not None:
            windows = np.floor_divide(micros, int(self.rotate_seconds * 1_000_000))
        budget = None
        if self.rotate_bytes is not None:
            budget = max(self.rotate_bytes - len(header), 1)
        parts = plan_parts(offsets, windows, budget)

        self.staging.mkdir(parents=True, exist_ok=True)
        for leftover in self.staging.glob(f"{table}--{video_id}--*"):
            shutil.rmtree(leftover, ignore_errors=True)  # a crashed write of this video
        new = self.staging / f"{table}--{video_id}--{uuid.uuid4().hex}"
        new.mkdir()
        try:
            files = []
            ext = self.file_format
            ends = [index for start, end in parts for index in (start, end - 1)]
            iso = pc.strftime(times.take(ends), "%Y-%m-%dT%H:%M:%SZ").to_pylist()
            for number, (start, end) in enumerate(parts):
                chunk = header + body[offsets[start] : offsets[end]]
                if self.gzip:
                    chunk = gzip.compress(chunk, compresslevel=self.compresslevel, mtime=0)
                name = f"part-{number:05d}.{ext}"
                (new / name).write_bytes(chunk)
                files.append(
                    {
                        "name": name,
                        "rows": end - start,
                        "bytes": len(chunk),
                        "sha256": hashlib.sha256(chunk).hexdigest(),
                        "first": iso[2 * number],
                        "last": iso[2 * number + 1],
                    }
                )
            manifest = {
                "table": table,
                "video_id": video_id,
                "source_id": sources[0],
                "date": date,
                "export_id": export_id,
                "fingerprint": fingerprint,
                "rows": data.num_rows,
                "format": self.file_format,
                "schema_version": table_version(SINK_TABLES[table]),
                "columns": data.column_names,
                "rotate_bytes": self.rotate_bytes,
                "rotate_seconds": self.rotate_seconds,
                "written_at": datetime.now(UTC).isoformat(),
                "files": files,
            }
            (new / MANIFEST).write_text(json.dumps(manifest, indent=1))
            self._swap(table, video_id, (new, final))
        finally:
            if new.exists():
                shutil.rmtree(new, ignore_errors=True)
        return final, files

    def _swap(self, table: str, video_id: str, move: tuple[Path, Path] | None) -> None:
        """Put ``move``'s new folder in place of every old folder of the video."""
        aside = []
        for old in self.find_video(table, video_id):
            target = self.staging / f"old--{uuid.uuid4().hex}"
            self.staging.mkdir(parents=True, exist_ok=True)
            os.replace(old, target)
            aside.append((old, target))
        if move is not None:
            new, final = move
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(new, final)
        for old, target in aside:
            shutil.rmtree(target, ignore_errors=True)
            # Drop the date=/source_id= folders the move left empty.
            for parent in (old.parent, old.parent.parent):
                try:
                    parent.rmdir()
                except OSError:
                    break

    # --- reads --------------------------------------------------------------------------

    def manifest(self, table: str, video_id: str) -> dict[str, Any] | None:
        """The ``_manifest.json`` of ``video_id`` (None when the video has no folder)."""
        for folder in self.find_video(table, video_id):
            try:
                return json.loads((folder / MANIFEST).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
        return None

    def committed(self, table: str, video_ids: Sequence[str]) -> dict[str, str]:
        """``{video_id: fingerprint}`` from the manifests of the videos' folders."""
        wanted = set(video_ids)
        found: dict[str, str] = {}
        folder = self.root / safe_segment(table, "table")
        for path in folder.glob(f"date=*/source_id=*/*/{MANIFEST}"):
            if path.parent.name in wanted:
                try:
                    found[path.parent.name] = json.loads(path.read_text()).get("fingerprint", "")
                except (OSError, json.JSONDecodeError):
                    continue
        return found

    def read_video(self, table: str, video_id: str) -> pa.Table:
        """Read a video's parts back into ``table``'s schema (for tests and small consumers)."""
        folders = self.find_video(table, video_id)
        manifest = self.manifest(table, video_id)
        if not folders or manifest is None:
            raise FileNotFoundError(f"files: no {table} folder for video {video_id!r}")
        schema = SINK_TABLES[table]
        parts = [
            _read_part(folders[0] / str(f["name"]), schema, str(manifest["format"]))
            for f in manifest["files"]
        ]
        return pa.concat_tables(parts) if parts else schema.empty_table()


def _read_part(path: Path, schema: pa.Schema, file_format: str) -> pa.Table:
    raw = path.read_bytes()
    if file_format.endswith(".gz"):
        raw = gzip.decompress(raw)
    nested = [f for f in schema if pa.types.is_list(f.type)]
    if file_format.startswith("csv"):
        types = {f.name: (pa.string() if f in nested else f.type) for f in schema}
        text = pacsv.read_csv(
            pa.py_buffer(raw),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
        for field in nested:
            values = [None if v is None else json.loads(v) for v in text[field.name].to_pylist()]
            index = text.schema.get_field_index(field.name)
            text = text.set_column(index, field.name, pa.array(values, field.type))
        return text.cast(schema)
    rows = [json.loads(line) for line in raw.splitlines() if line]
    for row in rows:
        for field in schema:
            value = row.get(field.name)
            if value is not None and pa.types.is_timestamp(field.type):
                row[field.name] = datetime.fromisoformat(value)
            elif field.name == "attributes" and value is not None and not isinstance(value, str):
                row[field.name] = json.dumps(value)
    return pa.Table.from_pylist(rows, schema=schema)
