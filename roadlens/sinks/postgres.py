"""The PostgreSQL sink: monthly-partitioned tables loaded by binary COPY, replaced per video.

Tables ``detections``, ``events``, ``event_stats`` and ``heatmaps`` live in one schema
(``ROADLENS_POSTGRES_SCHEMA``, default ``roadlens``) created by the numbered migrations in
``roadlens/sql/postgres/`` (:func:`upgrade`, also run by the sink before its first write). The
unpartitioned ``quarantine`` table (migration 005) holds rows that failed the quality
suites; :meth:`PostgresSink.replace_quarantine` replaces one video's rows of it.

A write of one video's rows is one transaction:

1. ``pg_advisory_xact_lock`` on (schema, table, video), so a Dagster retry and a manual
   re-run of the same video queue instead of interleaving;
2. delete the video's previous rows, pruned to the partitions that the ``export_batches``
   manifest says hold them (with a fallback over every partition when there is no
   manifest row or it disagrees with what was found);
3. ``COPY ... FROM STDIN (FORMAT BINARY)`` of the new rows, encoded column-wise with
   numpy/pyarrow into the binary COPY format (no Python work per row);
4. upsert the manifest row (export id, fingerprint, rows, bytes, time range).

Readers see the old rows or the new ones, never both. Missing monthly partitions are
created and attached just before, in a short transaction of their own (``ATTACH
PARTITION`` takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so it neither waits
for nor blocks other videos' loads and readers, as ``CREATE TABLE ... PARTITION OF``'s
ACCESS EXCLUSIVE lock would for as long as the loading transaction runs).

Example:
    >>> with PostgresSink("postgresql://postgres@127.0.0.1/test") as sink:  # doctest: +SKIP
    ...     done = sink.write_video("detections", "veh-01--clip", table, export_id="run-1")
    >>> done.rows, done.extra["deleted"]  # doctest: +SKIP
    (763, 0)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from roadlens.lake import CATALOG, SINK_TABLES
from roadlens.prefetch import prefetch
from roadlens.redact import redact, scrub
from roadlens.sinks.base import SinkBase, SinkConfigError, SinkError, SinkWrite, percentiles_ms

# Package data: shipped in the wheel next to the code.
MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "sql" / "postgres"
DEFAULT_SCHEMA = "roadlens"
# Lower-case identifiers only: they need no quoting in hand-written SQL and cannot collide
# with PostgreSQL's case folding.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MIGRATION_FILE = re.compile(r"(\d+)_[A-Za-z0-9_]+\.sql")

# Columns whose PostgreSQL type is not the plain mapping of their Arrow type.
TYPE_OVERRIDES = {
    "detection_id": "uuid",
    "event_id": "uuid",
    "attributes": "jsonb",
    "row_json": "jsonb",  # the quarantine's original row (005_quarantine.sql)
}
# The columns of the quarantine table (roadlens.quality.quarantine.QUARANTINE), in order.
QUARANTINE_COLUMNS = (
    "table_name",
    "row_id",
    "video_id",
    "source_id",
    "partition_key",
    "run_id",
    "reasons",
    "row_json",
    "quarantined_at",
    "schema_version",
)
# Rows per COPY block: one encode + one write, one latency sample (about 18 MB of detections).
DEFAULT_BLOCK_ROWS = 50_000

# --- binary COPY encoding ----------------------------------------------------------------

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
TEXT_OID = 25
_NUMERIC = {
    pa.int16(): (">i2", "smallint"),
    pa.int32(): (">i4", "integer"),
    pa.int64(): (">i8", "bigint"),
    pa.float32(): (">f4", "real"),
    pa.float64(): (">f8", "double precision"),
}
_HEX_VALUE = np.full(256, 255, np.uint8)
_HEX_VALUE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16)
_HEX_VALUE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_UUID_DASHES = np.array([8, 13, 18, 23])
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_NULL_PREFIX = struct.pack(">i", -1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def pg_kind(field: pa.Field) -> str:
    """How a column is encoded: ``num``, ``timestamptz``, ``text``, ``uuid``, ``jsonb``, ``text[]``."""
    if field.name in TYPE_OVERRIDES:
        return TYPE_OVERRIDES[field.name]
    if field.type in _NUMERIC:
        return "num"
    if pa.types.is_timestamp(field.type) and field.type.tz is not None:
        return "timestamptz"
    if pa.types.is_string(field.type):
        return "text"
    if pa.types.is_list(field.type) and pa.types.is_string(field.type.value_type):
        return "text[]"
    raise TypeError(f"no PostgreSQL binary encoding for column {field.name} ({field.type})")


def pg_type(field: pa.Field) -> str:
    """The PostgreSQL type (as ``format_type`` spells it) a contract column maps to.

    >>> pg_type(pa.field("confidence", pa.float32()))
    'real'
    """
    kind = pg_kind(field)
    if kind == "num":
        return _NUMERIC[field.type][1]
    return "timestamp with time zone" if kind == "timestamptz" else kind


@dataclass(frozen=True)
class _Column:
    name: str
    kind: str
    # Bytes of each value when every row's value has the same size (``None`` = varies).
    # Such columns go first in the COPY column list and are written as one numpy matrix.
    width: int | None


@dataclass(frozen=True)
class CopyPlan:
    """The COPY column order for one table's rows: fixed-size columns first, then the rest."""

    columns: tuple[_Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def fixed(self) -> tuple[_Column, ...]:
        return tuple(c for c in self.columns if c.width is not None)

    @property
    def variable(self) -> tuple[_Column, ...]:
        return tuple(c for c in self.columns if c.width is None)


def plan_copy(table: pa.Table) -> CopyPlan:
    """Decide, from the whole table, which columns have one encoded size in every row.

    COPY accepts the columns in any order, so putting those first makes the head of every
    row identical in layout, built as an ``(n, bytes)`` numpy matrix in a few vector ops.
    """
    fixed: list[_Column] = []
    variable: list[_Column] = []
    for field in table.schema:
        column = table.column(field.name)
        kind = pg_kind(field)
        width: int | None = None
        if column.null_count == len(column):
            width = 0  # every value is NULL: just the -1 length
        elif column.null_count == 0:
            if kind == "num":
                width = np.dtype(_NUMERIC[field.type][0]).itemsize
            elif kind == "timestamptz":
                width = 8
            elif kind == "uuid":
                width = 16
            elif kind == "text" and len(column):
                lengths = pc.binary_length(column)
                low, high = pc.min_max(lengths).values()
                if low.as_py() == high.as_py():
                    width = low.as_py()
        (fixed if width is not None else variable).append(_Column(field.name, kind, width))
    return CopyPlan(tuple(fixed + variable))


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data bytes) of a single-chunk string or binary array."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32, len(arr) + 1, arr.offset * 4)
    data = arr.buffers()[2]
    return offsets, (np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8))


def _uuid_bytes(arr: pa.Array) -> np.ndarray:
    """``(n, 16)`` bytes of canonical UUID strings; ``ValueError`` names the first bad one."""
    n = len(arr)
    if arr.null_count:
        arr = arr.fill_null("00000000-0000-0000-0000-000000000000")
    offsets, data = _string_buffers(arr)
    lengths = np.diff(offsets)
    if n and (lengths != 36).any():
        bad = int(np.flatnonzero(lengths != 36)[0])
        raise ValueError(f"not a UUID: {arr[bad].as_py()!r}")
    text = data[offsets[0] : offsets[0] + 36 * n].reshape(n, 36)
    nibbles = _HEX_VALUE[text[:, _UUID_DIGITS]]
    good = (nibbles != 255).all(axis=1) & (text[:, _UUID_DASHES] == ord("-")).all(axis=1)
    if not good.all():
        raise ValueError(f"not a UUID: {arr[int(np.flatnonzero(~good)[0])].as_py()!r}")
    return (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]


def _value_bytes(arr: pa.Array, column: _Column) -> np.ndarray:
    """``(n, width)`` big-endian bytes of a fixed-size column (NULLs filled with zeros)."""
    n = len(arr)
    if column.kind == "uuid":
        return _uuid_bytes(arr)
    if column.kind == "timestamptz":
        micros = arr.cast(pa.int64()).fill_null(0).to_numpy()
        return (micros - PG_EPOCH_US).astype(">i8").view(np.uint8).reshape(n, 8)
    if column.kind == "num":
        values = arr.fill_null(0).to_numpy() if arr.null_count else arr.to_numpy()
        big = values.astype(_NUMERIC[arr.type][0])
        return big.view(np.uint8).reshape(n, big.dtype.itemsize)
    if column.kind == "text" and column.width is not None:
        offsets, data = _string_buffers(arr)
        width = column.width
        return data[offsets[0] : offsets[0] + width * n].reshape(n, width)
    raise TypeError(f"{column.name}: {column.kind} has no fixed size")


def _binary_rows(matrix: np.ndarray) -> pa.Array:
    """A binary array whose values are the rows of a ``(n, w)`` uint8 matrix."""
    n, width = matrix.shape
    matrix = np.ascontiguousarray(matrix)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(matrix)])
    return fixed.cast(pa.binary())


def _length_prefixed(lengths: np.ndarray, body: pa.Array) -> pa.Array:
    """Each row's ``int32 length`` (``-1`` = NULL) followed by its body bytes."""
    prefix = _binary_rows(lengths.astype(">i4").view(np.uint8).reshape(-1, 4))
    return pc.binary_join_element_wise(prefix, body, b"")


def _variable_segments(arr: pa.Array, column: _Column) -> pa.Array:
    """Binary COPY fields (length + value) of a column whose value sizes vary by row."""
    valid = np.asarray(arr.is_valid())
    if column.kind == "text[]":
        return _text_array_segments(arr, valid)
    if column.kind in ("text", "jsonb"):
        body = arr.cast(pa.binary())
        lengths = pc.binary_length(body).fill_null(-1).to_numpy().astype(np.int64)
        if column.kind == "jsonb":
            # jsonb's binary form is a version byte (1) followed by the JSON text.
            body = pc.binary_join_element_wise(pa.scalar(b"\x01"), body, b"")
            lengths = np.where(valid, lengths + 1, -1)
        return _length_prefixed(lengths, body.fill_null(b""))
    # A fixed-size type with some NULLs: the value bytes, or nothing after a -1 length.
    values = _value_bytes(arr, column)
    body = pc.if_else(pa.array(valid), _binary_rows(values), pa.scalar(b"", pa.binary()))
    return _length_prefixed(np.where(valid, values.shape[1], -1), body)


def _text_array_segments(arr: pa.Array, valid: np.ndarray) -> pa.Array:
    """Binary ``text[]`` fields: ndim, has-null, element oid, [size, lower bound], elements."""
    n = len(arr)
    offsets = np.asarray(arr.offsets)
    counts = np.diff(offsets).astype(np.int64)
    elements = arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    element_null = np.asarray(elements.is_null(), dtype=bool)
    if len(elements):
        element_fields = _variable_segments(elements, _Column("element", "text", None))
    else:
        element_fields = pa.array([], pa.binary())
    per_row = pa.ListArray.from_arrays(pa.array(offsets - offsets[0], pa.int32()), element_fields)
    joined = pc.binary_join(per_row, b"").fill_null(b"")
    has_null = np.zeros(n, np.int32)
    if element_null.any():
        has_null[np.repeat(np.arange(n), counts)[element_null]] = 1
    header = np.zeros((n, 5), ">i4")
    header[:, 0] = counts > 0  # an empty array has no dimensions
    header[:, 1] = has_null
    header[:, 2] = TEXT_OID
    header[:, 3] = counts
    header[:, 4] = 1  # lower bound
    header_bytes = header.view(np.uint8).reshape(n, 20)
    header_rows = pc.if_else(
        pa.array(counts > 0), _binary_rows(header_bytes), _binary_rows(header_bytes[:, :12])
    )
    body = pc.binary_join_element_wise(header_rows, joined, b"")
    lengths = np.where(valid, pc.binary_length(body).to_numpy(), -1)
    body = pc.if_else(pa.array(valid), body, pa.scalar(b"", pa.binary()))
    return _length_prefixed(lengths, body)


def encode_block(plan: CopyPlan, rows: pa.Table) -> memoryview:
    """Binary COPY tuples (no file header or trailer) of ``rows`` in ``plan``'s column order.

    >>> t = pa.table({"a": pa.array([1], pa.int32())})
    >>> bytes(encode_block(plan_copy(t), t)).hex()
    '00010000000400000001'
    """
    n = rows.num_rows
    fixed = plan.fixed
    width = 2 + sum(4 + (c.width or 0) for c in fixed)
    head = np.empty((n, width), np.uint8)
    head[:, :2] = np.frombuffer(struct.pack(">h", len(plan.columns)), np.uint8)
    at = 2
    for column in fixed:
        arr = rows.column(column.name).combine_chunks()
        size = column.width or 0  # never None here: these are the fixed-width columns
        if size == 0:
            head[:, at : at + 4] = np.frombuffer(_NULL_PREFIX, np.uint8)
        else:
            head[:, at : at + 4] = np.frombuffer(struct.pack(">i", size), np.uint8)
            head[:, at + 4 : at + 4 + size] = _value_bytes(arr, column)
        at += 4 + size
    if not plan.variable:
        return head.data.cast("B")
    parts = [_binary_rows(head)]
    for column in plan.variable:
        parts.append(_variable_segments(rows.column(column.name).combine_chunks(), column))
    joined = pc.binary_join_element_wise(*parts, b"")
    offsets = np.frombuffer(joined.buffers()[1], np.int32, n + 1, joined.offset * 4)
    return memoryview(joined.buffers()[2])[offsets[0] : offsets[-1]]


def iter_copy_blocks(
    table: pa.Table, plan: CopyPlan, block_rows: int = DEFAULT_BLOCK_ROWS
) -> Iterator[tuple[int, memoryview]]:
    """``(rows, bytes)`` per block of ``table``, ready for ``Copy.write`` after the header."""
    for start in range(0, table.num_rows, block_rows):
        chunk = table.slice(start, block_rows)
        yield chunk.num_rows, encode_block(plan, chunk)


# --- names, URLs and errors ----------------------------------------------------------------


def validate_schema(schema: str) -> str:
    """``schema`` if it is a plain lower-case identifier, else :class:`SinkError`.

    >>> validate_schema("roadlens")
    'roadlens'
    """
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise SinkError(
            f"postgres: invalid schema name {schema!r}: use 1-63 lower-case letters, digits "
            "and '_', not starting with a digit (ROADLENS_POSTGRES_SCHEMA)"
        )
    return schema


def _describe(exc: BaseException, url: str) -> str:
    """A one-paragraph description of a driver error, scrubbed of the password."""
    return scrub(" ".join(str(exc).split()) or type(exc).__name__, url)


def advisory_key(schema: str, table: str, video_id: str) -> str:
    """The text hashed (``hashtextextended``) into the per-video advisory lock."""
    return f"roadlens:{schema}:{table}:{video_id}"


# --- migrations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file of ``roadlens/sql/postgres``."""

    version: int
    name: str
    sha256: str
    sql: str


def load_migrations(directory: Path | str | None = None) -> list[Migration]:
    """The numbered ``NNN_name.sql`` files of ``directory``, in version order."""
    folder = Path(directory) if directory is not None else MIGRATIONS_DIR
    if not folder.is_dir():
        raise SinkError(f"postgres: migrations folder not found: {folder}")
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_FILE.fullmatch(path.name)
        if not match:
            raise SinkError(f"postgres: migration file {path.name} is not named NNN_name.sql")
        raw = path.read_bytes()
        version = int(match.group(1))
        if version in found:
            raise SinkError(
                f"postgres: migrations {found[version].name} and {path.name} share version "
                f"{version}"
            )
        found[version] = Migration(
            version, path.name, hashlib.sha256(raw).hexdigest(), raw.decode()
        )
    return [found[v] for v in sorted(found)]


_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS {}.schema_migrations (
    version     integer      PRIMARY KEY,
    name        text         NOT NULL,
    sha256      text         NOT NULL,
    applied_at  timestamptz  NOT NULL DEFAULT now()
)"""


def _lock_migrations(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"roadlens:migrate:{schema}",)
    )


def _applied(conn: psycopg.Connection[Any], schema: str) -> dict[int, tuple[str, str]]:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL(_MIGRATIONS_TABLE).format(sql.Identifier(schema)))
    rows = conn.execute(
        sql.SQL("SELECT version, name, sha256 FROM {}.schema_migrations").format(
            sql.Identifier(schema)
        )
    ).fetchall()
    return {int(v): (str(n), str(s)) for v, n, s in rows}


def _check_applied(applied: dict[int, tuple[str, str]], migrations: Sequence[Migration]) -> None:
    known = {m.version: m for m in migrations}
    for version, (name, digest) in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise SinkError(
                f"postgres: the database has migration {name} (version {version}), which "
                "this code does not have: upgrade RoadLens before writing to it"
            )
        if migration.sha256 != digest:
            raise SinkError(
                f"postgres: migration {migration.name} was applied with sha256 {digest[:12]}… "
                f"but the file now has {migration.sha256[:12]}…; applied migrations must not "
                "change: restore the file and add a new numbered migration instead"
            )


def apply_migrations(
    conn: psycopg.Connection[Any], schema: str, migrations: Sequence[Migration]
) -> list[str]:
    """Apply the pending ``migrations`` on an autocommit connection; return their names.

    Each file runs in its own transaction under an advisory lock (so two processes that
    upgrade at once apply each file once), with ``search_path`` set to ``schema``.
    """
    schema = validate_schema(schema)
    with conn.transaction():
        _lock_migrations(conn, schema)
        _check_applied(_applied(conn, schema), migrations)
    done: list[str] = []
    for migration in migrations:
        with conn.transaction():
            _lock_migrations(conn, schema)
            applied = _applied(conn, schema)
            if migration.version in applied:  # another process got there first
                _check_applied(applied, migrations)
                continue
            conn.execute(
                sql.SQL("SET LOCAL search_path TO {}, pg_catalog").format(sql.Identifier(schema))
            )
            try:
                conn.execute(sql.SQL(migration.sql))  # trusted file
            except psycopg.Error as exc:
                raise SinkError(
                    f"postgres: migration {migration.name} failed in schema {schema}: {exc}"
                ) from exc
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.schema_migrations (version, name, sha256) VALUES (%s, %s, %s)"
                ).format(sql.Identifier(schema)),
                (migration.version, migration.name, migration.sha256),
            )
            done.append(migration.name)
    return done


def _connect(url: str, connect_timeout: int) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=connect_timeout,
            application_name="roadlens",
            client_encoding="UTF8",  # Arrow strings are UTF-8 and go out as-is in binary COPY
        )
    except psycopg.Error as exc:
        why = _describe(exc, url)
        # The server answered and refused this login for good: retrying cannot help.
        error = SinkConfigError if _REFUSED_LOGIN.search(why) else SinkError
        raise error(f"postgres: cannot connect to {redact(url)}: {why}") from None


# Server answers to a connection that no retry changes (a wrong password, user or database);
# "starting up" or "too many clients" are left out: those pass.
_REFUSED_LOGIN = re.compile(
    r"password authentication failed|role \S+ does not exist|database \S+ does not exist"
    r"|no pg_hba\.conf entry|permission denied for database"
)


def upgrade(
    url: str,
    schema: str = DEFAULT_SCHEMA,
    *,
    migrations_dir: Path | str | None = None,
    connect_timeout: int = 10,
) -> list[str]:
    """Apply the pending migrations of ``roadlens/sql/postgres`` to ``schema``; return their file names.

    Re-running applies nothing; a changed file that was already applied raises
    :class:`SinkError`.

    >>> upgrade("postgresql://postgres@127.0.0.1/test", "roadlens")  # doctest: +SKIP
    ['001_detections.sql', '002_events.sql', '003_event_stats_heatmaps.sql', ...]
    """
    schema = validate_schema(schema)
    migrations = load_migrations(migrations_dir)
    conn = _connect(url, connect_timeout)
    try:
        return apply_migrations(conn, schema, migrations)
    except psycopg.Error as exc:
        raise SinkError(
            f"postgres: upgrade of schema {schema} at {redact(url)} failed: {_describe(exc, url)}"
        ) from exc
    finally:
        conn.close()


# --- the sink ------------------------------------------------------------------------------


def _month_starts(micros: np.ndarray) -> list[datetime]:
    """The first instant (UTC) of every month that holds one of ``micros`` (Unix µs)."""
    months = np.unique(micros.astype("datetime64[us]").astype("datetime64[M]"))
    return [datetime.fromisoformat(f"{m}-01T00:00:00+00:00") for m in months.astype(str)]


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def partition_name(table: str, month: datetime) -> str:
    """``detections_y2026m05`` for May 2026."""
    return f"{table}_y{month.year:04d}m{month.month:02d}"


class PostgresSink(SinkBase):
    """Writes one video's rows of a table per transaction; see the module docstring.

    >>> sink = PostgresSink("postgresql://postgres@127.0.0.1/test", schema="roadlens")  # doctest: +SKIP
    >>> sink.committed("detections", ["veh-01--clip"])  # doctest: +SKIP
    {'veh-01--clip': '9c1f...'}
    """

    name = "postgres"

    def __init__(
        self,
        url: str,
        schema: str = DEFAULT_SCHEMA,
        *,
        migrate: bool = True,
        connect_timeout: int = 10,
        block_rows: int = DEFAULT_BLOCK_ROWS,
        migrations_dir: Path | str | None = None,
    ) -> None:
        self.url = url
        self.target = redact(url)
        self.schema = validate_schema(schema)
        self.connect_timeout = connect_timeout
        self.block_rows = max(1, int(block_rows))
        self._conn: psycopg.Connection[Any] | None = None
        # Monthly partitions known to exist, per table (saves a catalog query per write).
        self._partitions: dict[str, set[datetime]] = {}
        self.applied: list[str] = []
        conn = self._connection()
        if migrate:
            try:
                self.applied = apply_migrations(conn, self.schema, load_migrations(migrations_dir))
            except psycopg.Error as exc:
                self.close()
                raise SinkError(
                    f"postgres: migrating schema {self.schema} at {self.target} failed: "
                    f"{_describe(exc, url)}"
                ) from exc
            except SinkError:
                self.close()
                raise

    # -- connection ---------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, reconnecting after a lost one (a killed backend, a restart)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = _connect(self.url, self.connect_timeout)
        return self._conn

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the open connection (``pg_stat_activity.pid``)."""
        if self._conn is None or self._conn.closed:
            return None
        return int(self._conn.info.backend_pid)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _ident(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def _error(self, table: str, video_id: str, what: str, exc: BaseException) -> SinkError:
        detail = _describe(exc, self.url).removeprefix(f"{self.name}: ")
        return SinkError(
            f"{self.name}: {what} of {table} for video {video_id!r} at {self.target} "
            f"(schema {self.schema}) failed: {detail}"
        )

    # -- partitions ---------------------------------------------------------------------

    def _existing_partitions(self, conn: psycopg.Connection[Any], table: str) -> set[str]:
        rows = conn.execute(
            """
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            JOIN pg_namespace n ON n.oid = p.relnamespace
            WHERE n.nspname = %s AND p.relname = %s
            """,
            (self.schema, table),
        ).fetchall()
        return {r[0] for r in rows}

    def ensure_partitions(self, table: str, months: Sequence[datetime]) -> int:
        """Create and attach the missing monthly partitions of ``table``; return how many.

        Runs in its own short transaction, under an advisory lock per table so concurrent
        writers do not race on the same name.
        """
        known = self._partitions.setdefault(table, set())
        missing = [m for m in months if m not in known]
        if not missing:
            return 0
        conn = self._connection()
        created = 0
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"roadlens:partitions:{self.schema}:{table}",),
            )
            existing = self._existing_partitions(conn, table)
            for month in missing:
                name = partition_name(table, month)
                if name not in existing:
                    try:
                        with conn.transaction():  # a savepoint: an overlap error undoes just this
                            conn.execute(
                                sql.SQL(
                                    "CREATE TABLE {part} (LIKE {parent} INCLUDING DEFAULTS "
                                    "INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)"
                                ).format(part=self._ident(name), parent=self._ident(table))
                            )
                            conn.execute(
                                sql.SQL(
                                    "ALTER TABLE {parent} ATTACH PARTITION {part} "
                                    "FOR VALUES FROM ({lo}) TO ({hi})"
                                ).format(
                                    parent=self._ident(table),
                                    part=self._ident(name),
                                    lo=sql.Literal(month),
                                    hi=sql.Literal(_next_month(month)),
                                )
                            )
                        created += 1
                    except psycopg.errors.InvalidObjectDefinition:
                        # Another partition (e.g. a yearly one an operator made) covers the
                        # month already; rows route there.
                        pass
                    except psycopg.errors.DuplicateTable:
                        raise SinkError(
                            f"postgres: table {self.schema}.{name} exists but is not a "
                            f"partition of {self.schema}.{table} (detached?): attach or drop it"
                        ) from None
        known.update(missing)
        return created

    # -- writes ---------------------------------------------------------------------------

    def write_video(
        self, table: str, video_id: str, data: pa.Table, *, export_id: str, fingerprint: str = ""
    ) -> SinkWrite:
        """Replace ``video_id``'s rows of ``table`` with ``data`` in one transaction.

        An empty ``data`` removes the video's rows. ``extra`` holds ``deleted`` (previous
        rows removed), ``partitions_created``, ``blocks`` and the seconds of each phase.
        """
        data = self.prepare(table, video_id, data)
        try:
            try:
                return self._write(table, video_id, data, export_id, fingerprint)
            except psycopg.errors.CheckViolation as exc:
                if "no partition" not in str(exc):
                    raise
                # A cached partition was dropped (retention) since: look again, once.
                self._partitions.pop(table, None)
                return self._write(table, video_id, data, export_id, fingerprint)
        except (psycopg.Error, ValueError, SinkError) as exc:
            raise self._error(table, video_id, "write", exc) from exc

    def _write(
        self, table: str, video_id: str, data: pa.Table, export_id: str, fingerprint: str
    ) -> SinkWrite:
        started = time.perf_counter()
        time_column = CATALOG[table].time_column
        rows = data.num_rows
        low = high = None
        months: list[datetime] = []
        if rows:
            micros = data.column(time_column).cast(pa.int64()).to_numpy()
            low = _UNIX_EPOCH + timedelta(microseconds=int(micros.min()))
            high = _UNIX_EPOCH + timedelta(microseconds=int(micros.max()))
            months = _month_starts(micros)
        conn = self._connection()
        created = self.ensure_partitions(table, months)
        partitions_s = time.perf_counter() - started

        target = self._ident(table)
        block_s: list[float] = []
        sent = 0
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (advisory_key(self.schema, table, video_id),),
            )
            t0 = time.perf_counter()
            deleted = self._delete_previous(conn, table, video_id)
            delete_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            if rows:
                plan = plan_copy(data)
                columns = sql.SQL(", ").join(sql.Identifier(n) for n in plan.names)
                statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                    target, columns
                )
                with conn.cursor() as cur, cur.copy(statement) as copy:
                    copy.write(COPY_HEADER)
                    sent += len(COPY_HEADER)
                    # closing(): a failed write stops the encoder thread at once.
                    blocks = prefetch(
                        iter_copy_blocks(data, plan, self.block_rows), name="roadlens-copy-encoder"
                    )
                    with closing(blocks):
                        for _, block in blocks:
                            b0 = time.perf_counter()
                            copy.write(block)
                            sent += block.nbytes
                            block_s.append(time.perf_counter() - b0)
                    copy.write(COPY_TRAILER)
                    sent += len(COPY_TRAILER)
            copy_s = time.perf_counter() - t0
            conn.execute(
                sql.SQL(
                    """
                    INSERT INTO {} (table_name, video_id, export_id, fingerprint, rows,
                                         bytes, min_captured_at, max_captured_at, committed_at)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())
                    ON CONFLICT (table_name, video_id) DO UPDATE SET
                        export_id = EXCLUDED.export_id, fingerprint = EXCLUDED.fingerprint,
                        rows = EXCLUDED.rows, bytes = EXCLUDED.bytes,
                        min_captured_at = EXCLUDED.min_captured_at,
                        max_captured_at = EXCLUDED.max_captured_at,
                        committed_at = EXCLUDED.committed_at
                    """
                ).format(self._ident("export_batches")),
                (table, video_id, export_id, fingerprint, rows, sent, low, high),
            )
            t0 = time.perf_counter()
        commit_s = time.perf_counter() - t0
        seconds = time.perf_counter() - started
        return SinkWrite(
            sink=self.name,
            table=table,
            video_id=video_id,
            rows=rows,
            bytes=sent,
            seconds=seconds,
            latency_ms=percentiles_ms(block_s),
            extra={
                "deleted": deleted,
                "partitions_created": created,
                "blocks": len(block_s),
                "block_rows": self.block_rows,
                "partitions_s": round(partitions_s, 4),
                "delete_s": round(delete_s, 4),
                "copy_s": round(copy_s, 4),
                "commit_s": round(commit_s, 4),
                "schema": self.schema,
                "target": self.target,
            },
        )

    def _delete_previous(self, conn: psycopg.Connection[Any], table: str, video_id: str) -> int:
        """Delete ``video_id``'s rows; prune by the manifest's time range when there is one."""
        target = self._ident(table)
        time_column = sql.Identifier(CATALOG[table].time_column)
        previous = conn.execute(
            sql.SQL(
                "SELECT rows, min_captured_at, max_captured_at FROM {} "
                "WHERE table_name = %s AND video_id = %s"
            ).format(self._ident("export_batches")),
            (table, video_id),
        ).fetchone()
        everywhere = sql.SQL("DELETE FROM {} WHERE video_id = %s").format(target)
        if previous is None or previous[1] is None:
            # Never committed here, or committed empty: look in every partition (one index
            # probe each), which also catches rows written around the sink.
            return conn.execute(everywhere, (video_id,)).rowcount
        expected, low, high = previous
        deleted = conn.execute(
            sql.SQL("DELETE FROM {} WHERE video_id = %s AND {} BETWEEN %s AND %s").format(
                target, time_column
            ),
            (video_id, low, high),
        ).rowcount
        if deleted != expected:
            # The manifest disagrees with the table (rows written or removed around the
            # sink): make sure nothing of the video survives outside the recorded range.
            deleted += conn.execute(everywhere, (video_id,)).rowcount
        return deleted

    def replace_quarantine(self, table_name: str, video_id: str, rows: pa.Table) -> SinkWrite:
        """Replace ``video_id``'s quarantined rows of ``table_name`` with ``rows``.

        One transaction under the video's advisory lock: delete the previous rows of that
        (table_name, video_id), then binary COPY ``rows`` (a
        ``roadlens.quality.quarantine.QUARANTINE`` table), so a re-run leaves exactly one
        copy and an empty ``rows`` clears the video. ``extra["deleted"]`` counts the rows
        removed.

        >>> sink.replace_quarantine("detections", "veh-01--clip", q)  # doctest: +SKIP
        """
        started = time.perf_counter()
        what = f"quarantine:{table_name}"
        missing = [c for c in QUARANTINE_COLUMNS if c not in rows.column_names]
        if missing:
            raise SinkError(f"postgres: quarantine rows lack columns {missing}")
        rows = rows.select(list(QUARANTINE_COLUMNS))
        for column, expected in (("table_name", table_name), ("video_id", video_id)):
            found = rows.column(column).unique().to_pylist() if rows.num_rows else []
            if found not in ([], [expected]):
                raise SinkError(
                    f"postgres: quarantine rows for {table_name} of video {video_id!r} hold "
                    f"{column} values {sorted(map(str, found))[:3]}"
                )
        target = self._ident("quarantine")
        sent = 0
        try:
            conn = self._connection()
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (advisory_key(self.schema, what, video_id),),
                )
                deleted = conn.execute(
                    sql.SQL("DELETE FROM {} WHERE table_name = %s AND video_id = %s").format(
                        target
                    ),
                    (table_name, video_id),
                ).rowcount
                if rows.num_rows:
                    plan = plan_copy(rows)
                    columns = sql.SQL(", ").join(sql.Identifier(n) for n in plan.names)
                    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                        target, columns
                    )
                    with conn.cursor() as cur, cur.copy(statement) as copy:
                        copy.write(COPY_HEADER)
                        for _, block in iter_copy_blocks(rows, plan, self.block_rows):
                            copy.write(block)
                            sent += block.nbytes
                        copy.write(COPY_TRAILER)
                    sent += len(COPY_HEADER) + len(COPY_TRAILER)
        except (psycopg.Error, ValueError, TypeError) as exc:
            raise self._error(what, video_id, "quarantine write", exc) from exc
        return SinkWrite(
            sink=self.name,
            table="quarantine",
            video_id=video_id,
            rows=rows.num_rows,
            bytes=sent,
            seconds=time.perf_counter() - started,
            extra={"deleted": deleted, "table_name": table_name, "schema": self.schema},
        )

    def committed(self, table: str, video_ids: Sequence[str]) -> dict[str, str]:
        """``{video_id: fingerprint}`` of the videos of ``table`` this schema holds."""
        if table not in SINK_TABLES:
            raise SinkError(f"postgres: unknown table {table!r}")
        if not video_ids:
            return {}
        try:
            rows = (
                self._connection()
                .execute(
                    sql.SQL(
                        "SELECT video_id, fingerprint FROM {} "
                        "WHERE table_name = %s AND video_id = ANY(%s)"
                    ).format(self._ident("export_batches")),
                    (table, list(video_ids)),
                )
                .fetchall()
            )
        except psycopg.Error as exc:
            raise SinkError(
                f"postgres: reading committed {table} videos at {self.target} failed: "
                f"{_describe(exc, self.url)}"
            ) from exc
        return {str(v): str(f) for v, f in rows}


# --- command line --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m roadlens.sinks.postgres upgrade [--url URL] [--schema NAME]``."""
    parser = argparse.ArgumentParser(prog="python -m roadlens.sinks.postgres")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("upgrade", help="apply pending migrations from roadlens/sql/postgres")
    p.add_argument("--url", default=os.environ.get("ROADLENS_POSTGRES_URL", ""))
    p.add_argument("--schema", default=os.environ.get("ROADLENS_POSTGRES_SCHEMA", DEFAULT_SCHEMA))
    args = parser.parse_args(argv)
    if not args.url:
        print("set ROADLENS_POSTGRES_URL or pass --url", file=sys.stderr)
        return 2
    try:
        applied = upgrade(args.url, args.schema)
    except SinkError as exc:
        print(exc, file=sys.stderr)
        return 1
    target = redact(args.url)
    if applied:
        print(f"applied {len(applied)} migration(s) to {args.schema} at {target}:")
        for name in applied:
            print(f"  {name}")
    else:
        print(f"schema {args.schema} at {target} is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
