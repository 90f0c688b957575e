"""The PostgreSQL sink against the real server: migrations, exact round trips, idempotent
replacement per video, concurrency, a backend killed mid-COPY, partitions and pruning.

Every test works in a fresh schema (the ``pg_schema`` fixture drops it afterwards).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql
from psycopg.copy import Copy, FileWriter
from psycopg.types.json import Jsonb

from roadlens.lake import SINK_TABLES
from roadlens.schema import EVENT_STATS, HEATMAPS, SCHEMA_VERSION
from roadlens.sinks.base import SinkError, table_fingerprint
from roadlens.sinks.postgres import (
    MIGRATIONS_DIR,
    PostgresSink,
    advisory_key,
    encode_block,
    load_migrations,
    pg_type,
    plan_copy,
    upgrade,
)
from roadlens.synth.tables import synthetic_detections, synthetic_events
from tests.services import free_port

pytestmark = pytest.mark.postgres

VIDEO = "veh-01--clip-0001"
SIBLING = "veh-01--clip-0002"
ORDER_KEYS = {
    "detections": ["detection_id"],
    "events": ["event_id"],
    "event_stats": ["rule_id", "class_name", "direction", "bin_start"],
    "heatmaps": ["heatmap_id", "space", "col", "row", "cell_id"],
}


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def sink(postgres_url: str, pg_schema: str) -> Iterator[PostgresSink]:
    with PostgresSink(postgres_url, schema=pg_schema, block_rows=1_000) as s:
        yield s


@pytest.fixture
def db(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A second connection for checks from outside the sink."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


def _normal(value: Any) -> Any:
    """One comparable form for a value read from PostgreSQL or from Arrow."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, datetime):
        return value.timestamp(), value.microsecond
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def expected_rows(table: str, data: pa.Table) -> list[tuple[Any, ...]]:
    """``data`` as sorted tuples in the schema's column order (JSON text parsed)."""
    rows = []
    for row in data.to_pylist():
        values = []
        for name in SINK_TABLES[table].names:
            value = row[name]
            if name == "attributes" and value is not None:
                value = json.loads(value)
            values.append(_normal(value))
        rows.append(tuple(values))
    return sorted(rows, key=repr)


def stored_rows(
    conn: psycopg.Connection[Any], schema: str, table: str, video_id: str
) -> list[tuple[Any, ...]]:
    """The video's rows as stored, read in binary so real/float4 values come back exactly."""
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in SINK_TABLES[table].names)
    with conn.cursor(binary=True) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM {} WHERE video_id = %s").format(
                columns, sql.Identifier(schema, table)
            ),
            (video_id,),
        )
        rows = cur.fetchall()
    return sorted((tuple(_normal(v) for v in row) for row in rows), key=repr)


def count(conn: psycopg.Connection[Any], schema: str, table: str, video_id: str) -> int:
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE video_id = %s").format(
            sql.Identifier(schema, table)
        ),
        (video_id,),
    ).fetchone()[0]


def manifest(
    conn: psycopg.Connection[Any], schema: str, table: str, video_id: str
) -> tuple[Any, ...] | None:
    return conn.execute(
        sql.SQL(
            "SELECT export_id, fingerprint, rows, min_captured_at, max_captured_at FROM {} "
            "WHERE table_name = %s AND video_id = %s"
        ).format(sql.Identifier(schema, "export_batches")),
        (table, video_id),
    ).fetchone()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


class Background:
    """Run a call in a thread; keep its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 60.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "background call did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def edge_detections(video_id: str = VIDEO) -> pa.Table:
    """Detections with awkward values: unicode, empty strings, an all-NULL column, NaN,
    NULLs in only some rows, int64 extremes and timestamps either side of 2000-01-01."""
    base = synthetic_detections(
        40, video_id=video_id, start=pd.Timestamp("1999-12-31T23:59:59Z"), per_frame=4
    )
    n = base.num_rows
    names = ["person", "", "Straßenbahn 🚋", "truck"] * (n // 4)
    session = [None if i % 3 == 0 else f"session-{i % 2}" for i in range(n)]
    lat = base.column("lat").to_numpy(zero_copy_only=False).copy()
    lat[1] = np.nan  # a NaN that is a value, not a NULL
    track = [None if i % 5 == 0 else (2**62 if i == 1 else -(2**40) + i) for i in range(n)]
    return (
        base.set_column(base.schema.get_field_index("class_name"), "class_name", pa.array(names))
        .set_column(
            base.schema.get_field_index("vehicle_id"), "vehicle_id", pa.nulls(n, pa.string())
        )
        .set_column(base.schema.get_field_index("session_id"), "session_id", pa.array(session))
        .set_column(base.schema.get_field_index("lat"), "lat", pa.array(lat))
        .set_column(
            base.schema.get_field_index("track_id"), "track_id", pa.array(track, pa.int64())
        )
        .cast(SINK_TABLES["detections"])
    )


def edge_events(video_id: str = VIDEO) -> pa.Table:
    """Events whose lists and JSON cover empty, NULL, NULL elements and nested values."""
    base = synthetic_events(6, video_id=video_id)
    detection_ids = [["a", "b", "c"], [], None, ["x", None, "ü"], ["only"], [""]]
    media = [["clips/a.mp4", "snap/b.jpg"], None, [], [], ["é"], ["p"]]
    attributes = [
        '{"line": "stop", "n": 2, "nested": {"k": [1, 2.5, null]}}',
        None,
        "{}",
        '{"text": "quote \\" and ünïcode"}',
        "[1, 2]",
        '"just a string"',
    ]
    for name, values in (
        ("detection_ids", detection_ids),
        ("media_paths", media),
        ("attributes", attributes),
    ):
        index = base.schema.get_field_index(name)
        base = base.set_column(index, name, pa.array(values, base.schema.field(name).type))
    return base.cast(SINK_TABLES["events"])


def stats_table(video_id: str, rows: int) -> pa.Table:
    start = pd.Timestamp("2026-05-04T10:00:00Z")
    return pa.table(
        {
            "schema_version": pa.array([SCHEMA_VERSION] * rows, pa.int16()),
            "video_id": [video_id] * rows,
            "source_id": ["veh-01"] * rows,
            "rule_id": ["stop-line"] * rows,
            "class_name": [None if i % 4 == 0 else "car" for i in range(rows)],
            "direction": [["in", "out", None][i % 3] for i in range(rows)],
            "bin_minutes": pa.array([5] * rows, pa.int16()),
            "bin_start": pa.array(
                [start + pd.Timedelta(minutes=5 * i) for i in range(rows)],
                pa.timestamp("us", tz="UTC"),
            ),
            "count": pa.array(range(rows), pa.int64()),
            "value": [None if i % 2 else i * 0.5 for i in range(rows)],
        }
    ).cast(EVENT_STATS)


def heatmap_table(video_id: str, cells: int) -> pa.Table:
    captured = pd.Timestamp("2026-05-04T10:00:00Z")
    half = cells // 2
    return pa.table(
        {
            "schema_version": pa.array([SCHEMA_VERSION] * cells, pa.int16()),
            "video_id": [video_id] * cells,
            "source_id": ["veh-01"] * cells,
            "heatmap_id": ["people"] * cells,
            "space": ["image"] * half + ["geo"] * (cells - half),
            "weight": ["count"] * cells,
            "captured_at": pa.array([captured] * cells, pa.timestamp("us", tz="UTC")),
            "grid_w": [64] * half + [None] * (cells - half),
            "grid_h": [36] * half + [None] * (cells - half),
            "col": [i % 64 for i in range(half)] + [None] * (cells - half),
            "row": [i // 64 for i in range(half)] + [None] * (cells - half),
            "cell_id": [None] * half + [f"8f2830828{i:06x}" for i in range(cells - half)],
            "lat": [None] * half + [52.5 + i * 1e-4 for i in range(cells - half)],
            "lon": [None] * half + [13.4 + i * 1e-4 for i in range(cells - half)],
            "value": [float(i) / 3 for i in range(cells)],
        }
    ).cast(HEATMAPS)


# --- migrations -------------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded(
    postgres_url: str, pg_schema: str, db: psycopg.Connection[Any]
) -> None:
    files = load_migrations()
    applied = upgrade(postgres_url, pg_schema)
    assert applied == [m.name for m in files]
    recorded = db.execute(
        sql.SQL("SELECT version, name, sha256 FROM {} ORDER BY version").format(
            sql.Identifier(pg_schema, "schema_migrations")
        )
    ).fetchall()
    assert recorded == [(m.version, m.name, m.sha256) for m in files]
    assert upgrade(postgres_url, pg_schema) == []
    # Partitioned by a monthly-ready range on each table's time column.
    keys = dict(
        db.execute(
            """
            SELECT c.relname, a.attname FROM pg_partitioned_table p
            JOIN pg_class c ON c.oid = p.partrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0]
            WHERE n.nspname = %s AND p.partstrat = 'r'
            """,
            (pg_schema,),
        ).fetchall()
    )
    assert keys == {
        "detections": "captured_at",
        "events": "captured_at",
        "event_stats": "bin_start",
        "heatmaps": "captured_at",
    }


def test_changed_applied_migration_is_refused_and_new_ones_apply(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    upgrade(postgres_url, pg_schema, migrations_dir=folder)

    (folder / "900_extra.sql").write_text("CREATE TABLE extra_probe (id int);\n")
    assert upgrade(postgres_url, pg_schema, migrations_dir=folder) == ["900_extra.sql"]

    first = sorted(folder.glob("001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(SinkError, match=rf"{first.name} was applied with sha256 .*must not change"):
        upgrade(postgres_url, pg_schema, migrations_dir=folder)
    with pytest.raises(SinkError, match="must not change"):
        PostgresSink(postgres_url, schema=pg_schema, migrations_dir=folder)


def test_columns_mirror_the_arrow_contract(sink: PostgresSink, db: psycopg.Connection[Any]) -> None:
    for table, schema in SINK_TABLES.items():
        found = db.execute(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """,
            (sink.schema, table),
        ).fetchall()
        wanted = [(f.name, pg_type(f), f.nullable) for f in schema]
        assert found == wanted, table


# --- the encoder ---------------------------------------------------------------------------


def test_encoder_matches_psycopg_write_row_byte_for_byte(
    db: psycopg.Connection[Any],
) -> None:
    """Our column-wise encoding equals psycopg's own per-row binary COPY output."""
    for table_name, data in (
        ("detections", edge_detections()),
        ("detections", synthetic_detections(3_000, seed=3)),
        ("events", edge_events()),
    ):
        plan = plan_copy(data)
        fields = {f.name: f for f in data.schema}
        types = [pg_type(fields[n]) for n in plan.names]
        buffer = io.BytesIO()
        with db.cursor() as cur:
            copy = Copy(cur, binary=True, writer=FileWriter(buffer))
            copy.set_types(types)
            for row in data.select(plan.names).to_pylist():
                values = []
                for name in plan.names:
                    value = row[name]
                    if value is not None and name in ("detection_id", "event_id"):
                        value = uuid.UUID(value)
                    if value is not None and name == "attributes":
                        value = Jsonb(value, dumps=lambda text: text)
                    values.append(value)
                copy.write_row(values)
            copy.finish(None)
        reference = buffer.getvalue()
        ours = bytes(encode_block(plan, data))
        # psycopg adds the file header (19 bytes) and the trailer (2 bytes).
        assert ours == reference[19:-2], table_name


# --- round trips -------------------------------------------------------------------------------


def test_detections_round_trip_exactly(sink: PostgresSink, db: psycopg.Connection[Any]) -> None:
    data = synthetic_detections(4_321, seed=7)  # 5 COPY blocks of 1,000 rows
    done = sink.write_video("detections", VIDEO, data, export_id="run-1")
    assert (done.rows, done.extra["deleted"], done.extra["blocks"]) == (4_321, 0, 5)
    assert done.bytes > 4_321 * 29 * 4  # at least the 4-byte length of every field
    assert set(done.latency_ms) == {"p50", "p95", "p99", "max"}
    assert stored_rows(db, sink.schema, "detections", VIDEO) == expected_rows("detections", data)

    edge = edge_detections(SIBLING)
    sink.write_video("detections", SIBLING, edge, export_id="run-1")
    assert stored_rows(db, sink.schema, "detections", SIBLING) == expected_rows("detections", edge)
    # Rows before 2000-01-01 (negative PostgreSQL epoch offsets) landed in their own month.
    months = db.execute(
        sql.SQL(
            "SELECT tableoid::regclass::text, count(*) FROM {} WHERE video_id = %s GROUP BY 1"
        ).format(sql.Identifier(sink.schema, "detections")),
        (SIBLING,),
    ).fetchall()
    assert {name.split(".")[-1] for name, _ in months} == {
        "detections_y1999m12",
        "detections_y2000m01",
    }


def test_events_round_trip_lists_and_jsonb(sink: PostgresSink, db: psycopg.Connection[Any]) -> None:
    # The awkward rows sit inside the second of three COPY blocks (sliced list arrays).
    bulk = synthetic_events(3_000, seed=2)
    data = pa.concat_tables([bulk.slice(6, 1_500), edge_events(), bulk.slice(1_506)])
    sink.write_video("events", VIDEO, data, export_id="run-1")
    assert stored_rows(db, sink.schema, "events", VIDEO) == expected_rows("events", data)
    # The JSON is queryable as jsonb, and the arrays as text[].
    nested = db.execute(
        sql.SQL(
            "SELECT attributes #>> '{{nested,k,1}}', detection_ids[2], cardinality(media_paths) "
            "FROM {} WHERE video_id = %s AND attributes ? 'nested'"
        ).format(sql.Identifier(sink.schema, "events")),
        (VIDEO,),
    ).fetchone()
    assert nested == ("2.5", "b", 2)


def test_event_stats_and_heatmaps_write_and_replace(
    sink: PostgresSink, db: psycopg.Connection[Any]
) -> None:
    for table, first, second in (
        ("event_stats", stats_table(VIDEO, 30), stats_table(VIDEO, 12)),
        ("heatmaps", heatmap_table(VIDEO, 200), heatmap_table(VIDEO, 80)),
    ):
        sink.write_video(table, VIDEO, first, export_id="run-1")
        assert stored_rows(db, sink.schema, table, VIDEO) == expected_rows(table, first)
        done = sink.write_video(table, VIDEO, second, export_id="run-2")
        assert done.extra["deleted"] == first.num_rows
        assert stored_rows(db, sink.schema, table, VIDEO) == expected_rows(table, second)


# --- idempotency ---------------------------------------------------------------------------------


def test_same_video_twice_leaves_one_copy(sink: PostgresSink, db: psycopg.Connection[Any]) -> None:
    data = synthetic_detections(2_500, seed=1)
    sink.write_video("detections", VIDEO, data, export_id="run-1")
    again = sink.write_video("detections", VIDEO, data, export_id="run-2")
    assert again.extra["deleted"] == 2_500
    assert stored_rows(db, sink.schema, "detections", VIDEO) == expected_rows("detections", data)
    assert manifest(db, sink.schema, "detections", VIDEO)[:3] == ("run-2", "", 2_500)


def test_smaller_rewrite_removes_rows_that_are_gone(
    sink: PostgresSink, db: psycopg.Connection[Any]
) -> None:
    sink.write_video("detections", VIDEO, synthetic_detections(3_000), export_id="run-1")
    smaller = synthetic_detections(3_000).filter(pa.array(np.arange(3_000) % 3 != 0))
    done = sink.write_video("detections", VIDEO, smaller, export_id="run-2")
    assert (done.rows, done.extra["deleted"]) == (2_000, 3_000)
    assert stored_rows(db, sink.schema, "detections", VIDEO) == expected_rows("detections", smaller)


def test_empty_write_removes_the_video_and_spares_its_sibling(
    sink: PostgresSink, db: psycopg.Connection[Any]
) -> None:
    mine = synthetic_detections(1_200, video_id=VIDEO)
    sibling = synthetic_detections(800, video_id=SIBLING, seed=5)
    sink.write_video("detections", VIDEO, mine, export_id="run-1")
    sink.write_video("detections", SIBLING, sibling, export_id="run-1")
    empty = mine.slice(0, 0)
    done = sink.write_video(
        "detections", VIDEO, empty, export_id="run-2", fingerprint=table_fingerprint(empty)
    )
    assert (done.rows, done.extra["deleted"]) == (0, 1_200)
    assert count(db, sink.schema, "detections", VIDEO) == 0
    assert stored_rows(db, sink.schema, "detections", SIBLING) == expected_rows(
        "detections", sibling
    )
    assert manifest(db, sink.schema, "detections", VIDEO)[1:] == (
        table_fingerprint(empty),
        0,
        None,
        None,
    )


def test_committed_returns_the_fingerprint_last_written(sink: PostgresSink) -> None:
    first = synthetic_detections(300, seed=1)
    second = synthetic_detections(200, seed=2)
    sink.write_video(
        "detections", VIDEO, first, export_id="a", fingerprint=table_fingerprint(first)
    )
    assert sink.committed("detections", [VIDEO, SIBLING]) == {VIDEO: table_fingerprint(first)}
    sink.write_video(
        "detections", VIDEO, second, export_id="b", fingerprint=table_fingerprint(second)
    )
    assert sink.committed("detections", [VIDEO]) == {VIDEO: table_fingerprint(second)}
    assert sink.committed("events", [VIDEO]) == {}
    assert sink.committed("detections", []) == {}


def _smuggle_row(sink: PostgresSink, db: psycopg.Connection[Any], start: str) -> None:
    """Put one row of ``VIDEO`` in place around the sink (so no manifest knows of it)."""
    holder = f"holder-{uuid.uuid4().hex[:8]}"
    row = synthetic_detections(1, video_id=holder, start=pd.Timestamp(start))
    sink.write_video("detections", holder, row, export_id="x")
    db.execute(
        sql.SQL("UPDATE {} SET video_id = %s WHERE video_id = %s").format(
            sql.Identifier(sink.schema, "detections")
        ),
        (VIDEO, holder),
    )


def test_delete_falls_back_when_the_manifest_is_missing_or_wrong(
    sink: PostgresSink, db: psycopg.Connection[Any]
) -> None:
    schema = sink.schema
    data = synthetic_detections(1_000)  # 2026-05-04 10:00:00 - 10:00:10
    wanted = expected_rows("detections", data)
    sink.write_video("detections", VIDEO, data, export_id="run-1")

    # 1. No manifest row, and a row of the video in another month: every partition is swept.
    _smuggle_row(sink, db, "2026-04-01T00:00:00Z")
    db.execute(
        sql.SQL("DELETE FROM {} WHERE video_id = %s").format(
            sql.Identifier(schema, "export_batches")
        ),
        (VIDEO,),
    )
    done = sink.write_video("detections", VIDEO, data, export_id="run-2")
    assert done.extra["deleted"] == 1_001
    assert stored_rows(db, schema, "detections", VIDEO) == wanted

    # 2. An extra row inside the recorded range: found by the pruned delete, counted, gone.
    _smuggle_row(sink, db, "2026-05-04T10:00:05.1Z")
    done = sink.write_video("detections", VIDEO, data, export_id="run-3")
    assert done.extra["deleted"] == 1_001
    assert stored_rows(db, schema, "detections", VIDEO) == wanted

    # 3. Rows removed around the sink: fewer found than recorded, the re-write is exact.
    db.execute(
        sql.SQL("DELETE FROM {} WHERE video_id = %s AND captured_at < %s").format(
            sql.Identifier(schema, "detections")
        ),
        (VIDEO, pd.Timestamp("2026-05-04T10:00:02Z").to_pydatetime()),
    )
    done = sink.write_video("detections", VIDEO, data, export_id="run-4")
    assert done.extra["deleted"] == 800
    assert stored_rows(db, schema, "detections", VIDEO) == wanted


# --- concurrency and failures ------------------------------------------------------------


def _versions() -> tuple[pa.Table, pa.Table]:
    """Two contents of one video whose ids never coincide (different capture starts)."""
    a = synthetic_detections(6_000, start=pd.Timestamp("2026-05-04T10:00:00Z"), seed=1)
    b = synthetic_detections(9_000, start=pd.Timestamp("2026-05-04T12:00:00Z"), seed=2)
    return a, b


def test_concurrent_writes_of_one_video_leave_exactly_one_copy(
    postgres_url: str, pg_schema: str, db: psycopg.Connection[Any]
) -> None:
    versions = dict(zip(("a", "b"), _versions(), strict=True))
    sinks = [PostgresSink(postgres_url, schema=pg_schema, block_rows=500) for _ in range(2)]

    def write(sink: PostgresSink, label: str, barrier: threading.Barrier, attempt: int) -> None:
        barrier.wait()
        sink.write_video("detections", VIDEO, versions[label], export_id=f"{label}-{attempt}")

    try:
        for attempt in range(3):
            barrier = threading.Barrier(2)
            jobs = [
                Background(lambda s=s, v=v, b=barrier, a=attempt: write(s, v, b, a))
                for s, v in zip(sinks, versions, strict=True)
            ]
            for job in jobs:
                job.join()
            winner = manifest(db, pg_schema, "detections", VIDEO)[0].split("-")[0]
            stored = stored_rows(db, pg_schema, "detections", VIDEO)
            assert stored == expected_rows("detections", versions[winner]), attempt
    finally:
        for s in sinks:
            s.close()


def test_advisory_lock_makes_a_second_writer_wait(
    sink: PostgresSink, postgres_url: str, db: psycopg.Connection[Any]
) -> None:
    """While another session holds the video's lock, the write waits and changes nothing."""
    old, new = _versions()
    sink.write_video("detections", VIDEO, old, export_id="old")
    with psycopg.connect(postgres_url) as holder:  # not autocommit: the lock lasts until commit
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
            (advisory_key(sink.schema, "detections", VIDEO),),
        )
        job = Background(lambda: sink.write_video("detections", VIDEO, new, export_id="new"))
        wait_for(
            lambda: (
                db.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND pid = %s",
                    (sink.backend_pid,),
                ).fetchone()[0]
                == 1
            ),
            what="the sink to wait on the advisory lock",
        )
        assert job.thread.is_alive()
        assert stored_rows(db, sink.schema, "detections", VIDEO) == expected_rows("detections", old)
        holder.rollback()
        job.join()
    assert stored_rows(db, sink.schema, "detections", VIDEO) == expected_rows("detections", new)


def test_backend_killed_mid_copy_rolls_back_and_rerun_is_exact(
    postgres_url: str, pg_schema: str, db: psycopg.Connection[Any]
) -> None:
    old = synthetic_detections(3_000, seed=1)
    new = synthetic_detections(300_000, start=pd.Timestamp("2026-05-04T12:00:00Z"), seed=2)
    with PostgresSink(postgres_url, schema=pg_schema, block_rows=5_000) as sink:
        sink.write_video("detections", VIDEO, old, export_id="old", fingerprint="fp-old")
        pid = sink.backend_pid
        job = Background(
            lambda: sink.write_video(
                "detections", VIDEO, new, export_id="new", fingerprint="fp-new"
            )
        )
        seen: list[str] = []

        def copying() -> bool:
            row = db.execute(
                "SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row and row[0] == "active" and row[1].startswith("COPY"):
                seen.append(row[1])
                return True
            return False

        wait_for(copying, timeout=30, what="the sink's COPY to start")
        assert db.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        with pytest.raises(SinkError) as failure:
            job.join()
        message = str(failure.value)
        assert "detections" in message and VIDEO in message and pg_schema in message
        # The killed transaction left the previous version whole, manifest included.
        assert stored_rows(db, pg_schema, "detections", VIDEO) == expected_rows("detections", old)
        assert manifest(db, pg_schema, "detections", VIDEO)[:3] == ("old", "fp-old", 3_000)

        rerun = sink.write_video("detections", VIDEO, new, export_id="new", fingerprint="fp-new")
        assert sink.backend_pid != pid  # it reconnected
        assert rerun.extra["deleted"] == 3_000
        assert count(db, pg_schema, "detections", VIDEO) == 300_000
        distinct = db.execute(
            sql.SQL("SELECT count(DISTINCT detection_id) FROM {} WHERE video_id = %s").format(
                sql.Identifier(pg_schema, "detections")
            ),
            (VIDEO,),
        ).fetchone()[0]
        assert distinct == 300_000
        ids = db.execute(
            sql.SQL("SELECT detection_id::text FROM {} WHERE video_id = %s").format(
                sql.Identifier(pg_schema, "detections")
            ),
            (VIDEO,),
        ).fetchall()
        assert {i for (i,) in ids} == set(new.column("detection_id").to_pylist())
        assert sink.committed("detections", [VIDEO]) == {VIDEO: "fp-new"}


# --- partitions ------------------------------------------------------------------------------


def _plan_relations(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= _plan_relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _plan_relations(value)
    return found


def test_video_across_months_lands_in_two_partitions_and_queries_prune(
    sink: PostgresSink, db: psycopg.Connection[Any]
) -> None:
    # 6,000 rows = 300 frames at 5 fps = 60 s from 23:59:30 on 31 May.
    data = synthetic_detections(6_000, start=pd.Timestamp("2026-05-31T23:59:30Z"))
    done = sink.write_video("detections", VIDEO, data, export_id="run-1")
    assert done.extra["partitions_created"] == 2
    per_partition = dict(
        db.execute(
            sql.SQL(
                "SELECT tableoid::regclass::text, count(*) FROM {} WHERE video_id = %s GROUP BY 1"
            ).format(sql.Identifier(sink.schema, "detections")),
            (VIDEO,),
        ).fetchall()
    )
    captured = pd.DatetimeIndex(data.column("captured_at").to_pandas())
    in_june = int((captured >= pd.Timestamp("2026-06-01T00:00:00Z")).sum())
    assert per_partition == {
        f"{sink.schema}.detections_y2026m05": 6_000 - in_june,
        f"{sink.schema}.detections_y2026m06": in_june,
    }
    assert 0 < in_june < 6_000

    plan = db.execute(
        sql.SQL(
            "EXPLAIN (FORMAT JSON) SELECT count(*) FROM {} "
            "WHERE captured_at >= %s AND captured_at < %s"
        ).format(sql.Identifier(sink.schema, "detections")),
        (pd.Timestamp("2026-06-01T00:00:00Z"), pd.Timestamp("2026-06-01T01:00:00Z")),
    ).fetchone()[0]
    assert _plan_relations(plan) == {"detections_y2026m06"}

    # Writing it again creates nothing new.
    again = sink.write_video("detections", VIDEO, data, export_id="run-2")
    assert (again.extra["partitions_created"], again.extra["deleted"]) == (0, 6_000)


def test_rewrite_touches_only_the_videos_partitions(
    sink: PostgresSink, postgres_url: str, db: psycopg.Connection[Any]
) -> None:
    """The manifest-pruned delete never opens another month's partition; the fallback does."""
    may = synthetic_detections(1_000, start=pd.Timestamp("2026-05-04T10:00:00Z"))
    july = synthetic_detections(1_000, video_id=SIBLING, start=pd.Timestamp("2026-07-04T10:00:00Z"))
    sink.write_video("detections", VIDEO, may, export_id="run-1")
    sink.write_video("detections", SIBLING, july, export_id="run-1")
    july_partition = sql.Identifier(sink.schema, "detections_y2026m07")
    with psycopg.connect(postgres_url) as locker:
        locker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(july_partition))
        # Pruned by the manifest's time range: July's lock is irrelevant.
        Background(lambda: sink.write_video("detections", VIDEO, may, export_id="run-2")).join(20)
        # Without a manifest row the delete must look in July too, so it waits for the lock.
        db.execute(
            sql.SQL("DELETE FROM {} WHERE video_id = %s").format(
                sql.Identifier(sink.schema, "export_batches")
            ),
            (VIDEO,),
        )
        job = Background(lambda: sink.write_video("detections", VIDEO, may, export_id="run-3"))
        wait_for(
            lambda: (
                db.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                    (sink.backend_pid,),
                ).fetchone()
                == ("Lock",)
            ),
            what="the fallback delete to wait for July's lock",
        )
        locker.rollback()
        job.join()
    assert stored_rows(db, sink.schema, "detections", VIDEO) == expected_rows("detections", may)
    assert stored_rows(db, sink.schema, "detections", SIBLING) == expected_rows("detections", july)


def test_new_partition_does_not_wait_for_open_loads_or_readers(
    sink: PostgresSink, postgres_url: str
) -> None:
    """Attaching a month needs only SHARE UPDATE EXCLUSIVE on the parent, which an open
    load (ROW EXCLUSIVE) or a long reader (ACCESS SHARE) does not block."""
    sibling = synthetic_detections(500, video_id=SIBLING)
    sink.write_video("detections", SIBLING, sibling, export_id="run-1")
    parent = sql.Identifier(sink.schema, "detections")
    with psycopg.connect(postgres_url) as loader, psycopg.connect(postgres_url) as reader:
        loader.execute(sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE").format(parent))
        reader.execute(sql.SQL("SELECT count(*) FROM {}").format(parent)).fetchone()
        august = synthetic_detections(500, start=pd.Timestamp("2026-08-04T10:00:00Z"))
        done = Background(
            lambda: sink.write_video("detections", VIDEO, august, export_id="run-1")
        ).join(timeout=20)
        assert done.extra["partitions_created"] == 1
        loader.rollback()
        reader.rollback()


# --- bad configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema", ["Robert'); DROP TABLE detections; --", "RoadLens", "1st", "", "x" * 64, "a-b"]
)
def test_bad_schema_name_is_refused_before_connecting(schema: str) -> None:
    url = "postgresql://postgres:do-not-print@127.0.0.1:1/test"
    with pytest.raises(SinkError, match="invalid schema name") as failure:
        PostgresSink(url, schema=schema)
    assert "do-not-print" not in str(failure.value)
    with pytest.raises(SinkError, match="invalid schema name"):
        upgrade(url, schema)


def test_connection_errors_name_the_target_without_the_password(postgres_url: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(postgres_url)
    closed = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/test"
    with pytest.raises(SinkError, match=r"cannot connect to postgresql://postgres:\*\*\*@") as e:
        PostgresSink(closed, connect_timeout=3)
    assert "s3cret-pw" not in str(e.value) and e.value.__cause__ is None

    unknown = f"postgresql://no_such_role_x:s3cret-pw@{parts.hostname}:{parts.port or 5432}/test"
    with pytest.raises(SinkError, match="no_such_role_x") as e:
        PostgresSink(unknown, connect_timeout=3)
    assert "s3cret-pw" not in str(e.value) and "***" in str(e.value)


def _initdb() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1] if candidates else None


@pytest.fixture(scope="module")
def password_server() -> Iterator[tuple[int, str]]:
    """A private PostgreSQL cluster that checks passwords (scram-sha-256) on a free port.

    The shared test server trusts every local connection, so a wrong password cannot fail
    there. Skips when the server binaries cannot be run here.
    """
    initdb = _initdb()
    if initdb is None:
        pytest.skip("initdb not found: install the PostgreSQL server package")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="roadlens-pgpw-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser: cannot start a private cluster")
        prefix = [runuser, "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    password = "right-" + uuid.uuid4().hex[:8]
    (folder / "pw").write_text(password + "\n")
    if prefix:
        shutil.chown(folder / "pw", "postgres")
    port = free_port()
    pg_ctl = initdb.parent / "pg_ctl"
    data = folder / "data"
    try:
        subprocess.run(
            [*prefix, str(initdb), "-D", str(data), "-A", "scram-sha-256", "-U", "roadlens",
             f"--pwfile={folder / 'pw'}", "-N"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = (
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c shared_buffers=16MB"
        )
        subprocess.run(
            [*prefix, str(pg_ctl), "-D", str(data), "-o", options, "-w", "-l",
             str(folder / "log"), "start"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a private PostgreSQL cluster: {exc}")
    try:
        yield port, password
    finally:
        subprocess.run(
            [*prefix, str(pg_ctl), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def test_wrong_password_is_a_clear_error_without_the_password(
    password_server: tuple[int, str],
) -> None:
    port, password = password_server
    wrong = "wrong-" + uuid.uuid4().hex[:8]
    url = f"postgresql://roadlens:{wrong}@127.0.0.1:{port}/postgres"
    with pytest.raises(SinkError, match="password authentication failed") as failure:
        PostgresSink(url, schema="roadlens", connect_timeout=5)
    message = str(failure.value)
    assert wrong not in message and password not in message
    assert f"postgresql://roadlens:***@127.0.0.1:{port}/postgres" in message
    with pytest.raises(SinkError, match="password authentication failed") as failure:
        upgrade(url)
    assert wrong not in str(failure.value)
    # The right password gets in, so it really was the password that failed.
    good = f"postgresql://roadlens:{password}@127.0.0.1:{port}/postgres"
    assert upgrade(good) == [m.name for m in load_migrations()]


def test_bad_value_fails_the_write_and_keeps_the_previous_version(
    sink: PostgresSink, db: psycopg.Connection[Any]
) -> None:
    good = synthetic_detections(1_000)
    sink.write_video("detections", VIDEO, good, export_id="run-1", fingerprint="good")
    ids = good.column("detection_id").to_pylist()
    ids[700] = "not-a-uuid-but-just-as-long-as-one!!"
    bad = good.set_column(1, "detection_id", pa.array(ids))
    with pytest.raises(SinkError, match=r"detections for video .*not a UUID: 'not-a-uuid"):
        sink.write_video("detections", VIDEO, bad, export_id="run-2", fingerprint="bad")
    # A value the server refuses (a NUL byte in text) rolls back the same way.
    names = good.column("class_name").to_pylist()
    names[999] = "car\x00"
    refused = good.set_column(
        good.schema.get_field_index("class_name"), "class_name", pa.array(names)
    )
    with pytest.raises(SinkError, match="detections for video"):
        sink.write_video("detections", VIDEO, refused, export_id="run-3", fingerprint="refused")
    assert stored_rows(db, sink.schema, "detections", VIDEO) == expected_rows("detections", good)
    assert sink.committed("detections", [VIDEO]) == {VIDEO: "good"}


def test_a_dropped_partition_is_made_again(sink: PostgresSink, db: psycopg.Connection[Any]) -> None:
    """The sink caches known partitions; one dropped since (retention) is re-created."""
    data = synthetic_detections(500)
    sink.write_video("detections", VIDEO, data, export_id="run-1")
    db.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(sink.schema, "detections_y2026m05")))
    done = sink.write_video("detections", VIDEO, data, export_id="run-2")
    assert done.extra["partitions_created"] == 1
    assert stored_rows(db, sink.schema, "detections", VIDEO) == expected_rows("detections", data)
    # Detached but not dropped: the name is taken, so the sink says what to do about it.
    db.execute(
        sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
            sql.Identifier(sink.schema, "detections"),
            sql.Identifier(sink.schema, "detections_y2026m05"),
        )
    )
    with pytest.raises(SinkError, match=r"detections_y2026m05 exists but is not a partition"):
        sink.write_video("detections", VIDEO, data, export_id="run-3")
