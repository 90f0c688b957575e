"""The quarantine table: the original rows round-trip through row_json, and PostgreSQL
replaces one video's quarantined rows idempotently (real server, throw-away schema)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from roadlens.quality.quarantine import QUARANTINE, original_rows, quarantine_table
from roadlens.quality.suites import split, validate
from roadlens.sinks.base import SinkError
from roadlens.sinks.postgres import PostgresSink, pg_type
from roadlens.synth.tables import synthetic_detections, synthetic_events

VIDEO = "veh-01--clip-0001"
AT = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def bad_detections(rows: int = 500, positions: tuple[int, ...] = (3, 77, 420)) -> pd.DataFrame:
    df = synthetic_detections(rows).to_pandas()
    df.loc[list(positions), "confidence"] = 1.5
    df.loc[positions[0], "x2"] = 9999.0
    _, bad = split(df, validate("detections", df, engine="pandas"))
    assert bad.index.tolist() == list(positions)
    return bad


def quarantined(bad: pd.DataFrame, run_id: str = "run-1") -> pa.Table:
    return quarantine_table(
        bad, table_name="detections", partition_key=VIDEO, run_id=run_id, quarantined_at=AT
    )


def same_value(original: Any, from_json: Any) -> bool:
    """Does a value parsed from row_json stand for the original pandas value?"""
    if isinstance(original, pd.Timestamp):
        return pd.Timestamp(from_json) == original
    if isinstance(original, np.ndarray):
        return list(original) == from_json
    if original is None or (isinstance(original, float) and math.isnan(original)):
        return from_json is None
    if isinstance(original, np.floating):
        if np.isnan(original):
            return from_json is None
        return type(original)(from_json) == original  # shortest round-trip text
    return original == from_json


def test_quarantine_table_round_trips_the_original_rows() -> None:
    bad = bad_detections()
    q = quarantined(bad)
    assert q.schema == QUARANTINE
    assert q.column("row_id").to_pylist() == bad["detection_id"].tolist()
    assert q.column("video_id").to_pylist() == [VIDEO] * 3
    assert q.column("source_id").to_pylist() == ["veh-01"] * 3
    assert q.column("run_id").to_pylist() == ["run-1"] * 3
    assert q.column("partition_key").to_pylist() == [VIDEO] * 3
    assert q.column("table_name").to_pylist() == ["detections"] * 3
    assert q.column("reasons").to_pylist() == bad["reasons"].tolist()
    assert q.column("schema_version").to_pylist() == [1, 1, 1]
    assert q.column("quarantined_at").to_pylist() == [AT] * 3
    rows = original_rows(q)
    original = bad.drop(columns="reasons")
    assert len(rows) == len(original)
    for i, parsed in enumerate(rows):
        assert list(parsed) == list(original.columns)
        for column in original.columns:
            value = original[column].iloc[i]  # keeps float32 as float32
            assert same_value(value, parsed[column]), (column, value, parsed[column])
    assert rows[0]["confidence"] == 1.5 and rows[0]["x2"] == 9999.0
    assert rows[0]["captured_at"].endswith("Z")


def test_events_keep_lists_and_attributes_text() -> None:
    ev = synthetic_events(20).to_pandas()
    ev.loc[5, "lat"] = 120.0
    ev.loc[5, "attributes"] = "{not json"  # a broken row must still be quarantinable
    _, bad = split(ev, validate("events", ev, engine="pandas"))
    q = quarantine_table(bad, table_name="events", partition_key=VIDEO, run_id=None)
    (row,) = original_rows(q)
    assert row["event_id"] == ev.loc[5, "event_id"]
    assert row["attributes"] == "{not json"
    assert row["detection_ids"] == ["det-5"] and row["media_paths"] == []
    assert row["lat"] == 120.0
    assert q.column("reasons").to_pylist() == [
        ["lat: expect_column_values_to_be_between [-90, 90]"]
    ]


def test_frames_are_named_by_video_and_frame_number() -> None:
    frames = pd.DataFrame(
        {"video_id": [VIDEO, None], "frame_number": [6, 12], "reasons": [["a"], ["b"]]}
    )
    q = quarantine_table(frames, table_name="frames", partition_key=VIDEO, run_id="r")
    assert q.column("row_id").to_pylist() == [f"{VIDEO}:6", None]
    assert q.column("video_id").to_pylist() == [VIDEO, VIDEO]  # null video -> partition key


def test_quarantine_table_needs_reasons_and_a_video() -> None:
    bad = pd.DataFrame({"detection_id": ["d"], "video_id": [None], "reasons": [["x"]]})
    with pytest.raises(ValueError, match="partition_key"):
        quarantine_table(bad, table_name="detections", partition_key=None, run_id=None)
    with pytest.raises(ValueError, match="'reasons' column"):
        quarantine_table(bad.drop(columns="reasons"), table_name="detections",
                         partition_key="v", run_id=None)  # fmt: skip
    empty = quarantine_table(bad.iloc[:0], table_name="detections", partition_key="v", run_id="r")
    assert empty.num_rows == 0 and empty.schema == QUARANTINE


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def sink(postgres_url: str, pg_schema: str) -> Iterator[PostgresSink]:
    with PostgresSink(postgres_url, schema=pg_schema) as s:
        yield s


def _rows(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL(
            "SELECT table_name, row_id, video_id, run_id, reasons, row_json, quarantined_at "
            "FROM {} ORDER BY video_id, row_id"
        ).format(sql.Identifier(schema, "quarantine"))
    ).fetchall()


@pytest.mark.postgres
def test_migration_mirrors_the_arrow_schema(
    sink: PostgresSink, postgres_url: str, pg_schema: str
) -> None:
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = 'quarantine' AND a.attnum > 0
              AND NOT a.attisdropped
            ORDER BY a.attnum
            """,
            (pg_schema,),
        ).fetchall()
    expected = [(f.name, pg_type(f), f.nullable) for f in QUARANTINE]
    assert found == expected


@pytest.mark.postgres
def test_replace_quarantine_is_idempotent_per_video(
    sink: PostgresSink, postgres_url: str, pg_schema: str
) -> None:
    bad = bad_detections()
    q = quarantined(bad)
    other = bad_detections(positions=(10, 11, 12)).assign(video_id="veh-01--clip-0002")
    q_other = quarantine_table(
        other, table_name="detections", partition_key="veh-01--clip-0002", run_id="run-1"
    )
    first = sink.replace_quarantine("detections", VIDEO, q)
    sink.replace_quarantine("detections", "veh-01--clip-0002", q_other)
    with psycopg.connect(postgres_url) as conn:
        before = _rows(conn, pg_schema)
    again = sink.replace_quarantine("detections", VIDEO, q)
    with psycopg.connect(postgres_url) as conn:
        after = _rows(conn, pg_schema)
        confidence = conn.execute(
            sql.SQL("SELECT (row_json->>'confidence')::float8 FROM {} WHERE video_id = %s").format(
                sql.Identifier(pg_schema, "quarantine")
            ),
            (VIDEO,),
        ).fetchall()
    assert (first.rows, first.extra["deleted"]) == (3, 0)
    assert (again.rows, again.extra["deleted"]) == (3, 3)
    assert after == before and len(after) == 6
    mine = [r for r in after if r[2] == VIDEO]
    assert sorted(r[1] for r in mine) == sorted(bad["detection_id"])
    assert all(r[4] == ["confidence: expect_column_values_to_be_between [0, 1]"] or len(r[4]) == 2
               for r in mine)  # fmt: skip
    assert [json.loads(json.dumps(r[5]))["video_id"] for r in mine] == [VIDEO] * 3
    assert confidence == [(1.5,)] * 3

    # A fixed re-run quarantines fewer rows: they replace the old ones, the sibling stays.
    sink.replace_quarantine("detections", VIDEO, quarantined(bad.iloc[:1], run_id="run-2"))
    with psycopg.connect(postgres_url) as conn:
        rows = _rows(conn, pg_schema)
    assert [(r[2], r[3]) for r in rows] == [(VIDEO, "run-2")] + [("veh-01--clip-0002", "run-1")] * 3
    # Another table's rows of the same video are separate.
    ev = synthetic_events(5).to_pandas()
    ev.loc[0, "lon"] = 999.0
    _, ev_bad = split(ev, validate("events", ev, engine="pandas"))
    sink.replace_quarantine(
        "events",
        VIDEO,
        quarantine_table(ev_bad, table_name="events", partition_key=VIDEO, run_id="run-2"),
    )
    cleared = sink.replace_quarantine("detections", VIDEO, quarantined(bad.iloc[:0]))
    assert cleared.extra["deleted"] == 1
    with psycopg.connect(postgres_url) as conn:
        rows = _rows(conn, pg_schema)
    assert [(r[0], r[2]) for r in rows] == [("events", VIDEO)] + [
        ("detections", "veh-01--clip-0002")
    ] * 3


@pytest.mark.postgres
def test_replace_quarantine_refuses_rows_of_another_video(sink: PostgresSink) -> None:
    q = quarantined(bad_detections())
    with pytest.raises(SinkError, match="video_id values"):
        sink.replace_quarantine("detections", "veh-99--other", q)
    with pytest.raises(SinkError, match="table_name values"):
        sink.replace_quarantine("events", VIDEO, q)
    with pytest.raises(SinkError, match="lack columns"):
        sink.replace_quarantine("detections", VIDEO, q.drop_columns(["row_json"]))
