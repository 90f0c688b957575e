"""Filtered, paginated and binned reads of the lake's detections and events with DuckDB.

Every user value travels as a bound parameter; the only SQL text built from variables is
the lake's own Parquet glob (server configuration, quoted) and column names taken from
fixed allow-lists. Pagination is keyset pagination on ``(captured_at, <id>)``: a cursor
holds the last row's key, so pages never skip or repeat a row, however deep.

Partition pruning uses the one thing a ``date=D`` folder guarantees: its rows were
captured at or after ``D`` 00:00 UTC (a video's capture date is the UTC date of its start,
and its rows come later). A video may run past midnight, so a folder can hold rows of
later days: ``until`` prunes the folders after it, but ``since`` and a cursor prune
nothing. A page is read folder by folder in date order (doubling the span each round)
until its last row is earlier than the next folder's date, which bounds the scan of an
unfiltered first page by the dates it needs instead of the whole lake.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb

from roadlens.lake import CATALOG, DETECTIONS_TABLE, EVENTS_TABLE, ParquetLake

# The row id each queryable table pages and looks up by.
TABLE_KEYS = {t: CATALOG[t].row_id for t in (DETECTIONS_TABLE, EVENTS_TABLE)}
DETECTION_COLUMNS = (
    "detection_id, video_id, source_id, vehicle_id, session_id, frame_number, pts_sec, "
    "captured_at, class_id, class_name, confidence, x1, y1, x2, y2, frame_width, "
    "frame_height, anchor_u, anchor_v, track_id, lat, lon, heading_deg, speed_mps"
)
EVENT_COLUMNS = (
    'event_id, rule_id, rule_name, "trigger", video_id, source_id, vehicle_id, session_id, '
    "frame_number, pts_sec, captured_at, track_id, class_name, direction, value, "
    "detection_ids, lat, lon, media_paths, attributes, CAST(date AS VARCHAR) AS date"
)
GROUP_COLUMNS = {
    "detections": ("class_name",),
    "events": ("rule_id", "class_name", "direction"),
}


class QueryError(ValueError):
    """A request the lake cannot answer as asked (bad cursor, bad box); a 400."""


@dataclass(frozen=True)
class Filters:
    """Row filters shared by the query endpoints; None means "any".

    ``bbox`` is ``(min_lon, min_lat, max_lon, max_lat)``; ``pixel_box`` is
    ``(x1, y1, x2, y2)`` and keeps detections whose bottom-centre anchor lies inside.
    """

    source_ids: Sequence[str] = ()
    video_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    class_names: Sequence[str] = ()
    rule_ids: Sequence[str] = ()
    min_confidence: float | None = None
    bbox: tuple[float, float, float, float] | None = None
    pixel_box: tuple[float, float, float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_box(text: str | None, what: str) -> tuple[float, float, float, float] | None:
    """``"a,b,c,d"`` as four finite floats with ``a <= c`` and ``b <= d``.

    >>> parse_box("13.3,52.4,13.5,52.6", "bbox")
    (13.3, 52.4, 13.5, 52.6)

    Raises:
        QueryError: not four finite numbers, or an empty box.
    """
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise QueryError(f"{what} must be four comma-separated numbers") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise QueryError(f"{what} must be four comma-separated finite numbers")
    a, b, c, d = values
    if a > c or b > d:
        raise QueryError(f"{what} must be min_x,min_y,max_x,max_y with min <= max")
    return a, b, c, d


def encode_cursor(captured_at: datetime, row_id: str) -> str:
    micros = int(captured_at.timestamp() * 1_000_000)
    raw = json.dumps([micros, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (captured_at, id) key of a cursor.

    Raises:
        QueryError: the cursor was not made by this service.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, row_id = json.loads(raw)
        if type(micros) is not int or not isinstance(row_id, str):
            raise TypeError
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except (ValueError, TypeError, binascii.Error, OverflowError, UnicodeDecodeError):
        raise QueryError("cursor is not valid; pass the next_cursor of a previous page") from None
    return when, row_id


def utc(value: datetime) -> datetime:
    """``value`` in UTC (naive means UTC); offsets past year 1 or 9999 clamp to the limit."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def table_source(lake_root: Path, table: str) -> str | None:
    """A ``read_parquet`` over one lake table, or None when the table has no file."""
    lake = ParquetLake(lake_root)
    return lake.duckdb_source(table) if lake.has_files(table) else None


def partition_dates(lake_root: Path, table: str, *, until: datetime | None = None) -> list[date]:
    """The ``date=`` folders of ``table`` in order (none after ``until``)."""
    last = utc(until).date() if until is not None else date.max
    out = []
    for name in ParquetLake(lake_root).dates(table):
        try:
            day = date.fromisoformat(name)
        except ValueError:
            continue
        if day <= last:
            out.append(day)
    return sorted(out)


def where(table: str, f: Filters, *, prune_dates: bool = True) -> tuple[list[str], list[Any]]:
    """SQL conditions (``?`` placeholders) and their parameters for ``f`` on ``table``.

    ``prune_dates`` adds the safe condition on the lake's ``date`` partition column: no
    folder dated after ``until``.

    Raises:
        QueryError: a filter that does not apply to ``table``.
    """
    conds: list[str] = []
    params: list[Any] = []
    if f.source_ids:
        conds.append(f"source_id IN ({', '.join('?' * len(f.source_ids))})")
        params += list(f.source_ids)
    if f.video_id:
        conds.append("video_id = ?")
        params.append(f.video_id)
    if f.since is not None:
        since = utc(f.since)
        conds.append("captured_at >= ?")
        params.append(since)
    if f.until is not None:
        until = utc(f.until)
        conds.append("captured_at < ?")
        params.append(until)
        if prune_dates:
            conds.append("date <= ?")
            params.append(until.date())
    if f.class_names:
        conds.append(f"class_name IN ({', '.join('?' * len(f.class_names))})")
        params += list(f.class_names)
    if f.rule_ids:
        if table != "events":
            raise QueryError("rule_id filters events only")
        conds.append(f"rule_id IN ({', '.join('?' * len(f.rule_ids))})")
        params += list(f.rule_ids)
    if f.min_confidence is not None:
        if table != "detections":
            raise QueryError("min_confidence filters detections only")
        conds.append("confidence >= ?")
        params.append(f.min_confidence)
    if f.bbox is not None:
        conds.append("lon BETWEEN ? AND ? AND lat BETWEEN ? AND ?")
        params += [f.bbox[0], f.bbox[2], f.bbox[1], f.bbox[3]]
    if f.pixel_box is not None:
        if table != "detections":
            raise QueryError("pixel_box filters detections only (events have no box)")
        conds.append("anchor_u BETWEEN ? AND ? AND anchor_v BETWEEN ? AND ?")
        params += [f.pixel_box[0], f.pixel_box[2], f.pixel_box[1], f.pixel_box[3]]
    return conds, params


def clean(value: Any) -> Any:
    """NaN/inf floats become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


def page(
    lake_root: Path, table: str, filters: Filters, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``table`` rows matching ``filters`` after ``cursor``; and the next cursor.

    Raises:
        QueryError: a bad cursor or a filter that does not apply to ``table``.
    """
    key = TABLE_KEYS[table]
    conds, params = where(table, filters)
    if cursor:
        when, row_id = decode_cursor(cursor)
        conds.append(f"(captured_at > ? OR (captured_at = ? AND {key} > ?))")
        params += [when, when, row_id]
    source = table_source(lake_root, table)
    if source is None:
        return [], None
    dates = partition_dates(lake_root, table, until=filters.until)
    columns = DETECTION_COLUMNS if table == "detections" else EVENT_COLUMNS
    sql = (
        f"SELECT {columns} FROM {source} WHERE {' AND '.join([*conds, 'date <= ?'])} "
        f"ORDER BY captured_at, {key} LIMIT ?"
    )
    con = _connect()
    try:
        span = 1
        while True:
            upto = min(span, len(dates))
            last_date = dates[upto - 1] if dates else date.max
            cur = con.execute(sql, [*params, last_date, limit + 1])
            names = [d[0] for d in cur.description]
            rows = [{n: clean(v) for n, v in zip(names, r, strict=True)} for r in cur.fetchall()]
            if upto >= len(dates):
                break
            next_start = datetime.combine(dates[upto], time.min, UTC)
            if len(rows) > limit and utc(rows[-1]["captured_at"]) < next_start:
                break  # every row of a later folder comes after this page
            span *= 2
    finally:
        con.close()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["captured_at"], rows[-1][key]) if more else None
    return rows, next_cursor


def stats(
    lake_root: Path, table: str, filters: Filters, *, bin_minutes: int, group_by: Sequence[str]
) -> list[dict[str, Any]]:
    """Row counts per ``bin_minutes`` bin (aligned to the epoch, UTC) and ``group_by`` values.

    Raises:
        QueryError: a grouping column that ``table`` does not have.
    """
    allowed = GROUP_COLUMNS[table]
    bad = [g for g in group_by if g not in allowed]
    if bad:
        raise QueryError(f"{table} cannot be grouped by {bad}; allowed: {list(allowed)}")
    conds, params = where(table, filters)
    source = table_source(lake_root, table)
    if source is None:
        return []
    groups = list(dict.fromkeys(group_by))
    cols = "".join(f", {g}" for g in groups)
    where_sql = f"WHERE {' AND '.join(conds)}" if conds else ""
    sql = (
        "SELECT to_timestamp(floor(epoch(captured_at) / ?) * ?) AS bin_start"
        f"{cols}, count(*) AS count FROM {source} {where_sql} "
        f"GROUP BY ALL ORDER BY bin_start{cols}"
    )
    seconds = bin_minutes * 60
    con = _connect()
    try:
        cur = con.execute(sql, [seconds, seconds, *params])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()


def find_event(lake_root: Path, event_id: str) -> dict[str, Any] | None:
    """``video_id``, ``date`` and ``source_id`` of one event, or None."""
    source = table_source(lake_root, "events")
    if source is None:
        return None
    con = _connect()
    try:
        row = con.execute(
            f"SELECT video_id, CAST(date AS VARCHAR), source_id FROM {source} "
            "WHERE event_id = ? LIMIT 1",
            [event_id],
        ).fetchone()
    finally:
        con.close()
    return None if row is None else {"video_id": row[0], "date": row[1], "source_id": row[2]}
