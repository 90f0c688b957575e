"""The same filtered, paginated and binned reads as :mod:`.lakequery`, from PostgreSQL.

Used when a request says ``store=postgres`` and ``ROADLENS_POSTGRES_URL`` is set: the
tables the PostgreSQL sink writes (``<schema>.detections`` / ``<schema>.events``, DDL in
``roadlens/sql/postgres/``). Values are bound parameters; the schema is quoted as an identifier.
Keyset pagination uses the ``(captured_at, id)`` order the primary key and the BRIN index
on ``captured_at`` serve, with the same cursor format as the lake's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from roadlens.service.lakequery import (
    GROUP_COLUMNS,
    TABLE_KEYS,
    Filters,
    QueryError,
    clean,
    decode_cursor,
    encode_cursor,
    where,
)

DETECTION_COLUMNS = (
    "detection_id::text AS detection_id, video_id, source_id, vehicle_id, session_id, "
    "frame_number, pts_sec, captured_at, class_id, class_name, confidence, x1, y1, x2, y2, "
    "frame_width, frame_height, anchor_u, anchor_v, track_id, lat, lon, heading_deg, speed_mps"
)
EVENT_COLUMNS = (
    'event_id::text AS event_id, rule_id, rule_name, "trigger", video_id, source_id, '
    "vehicle_id, session_id, frame_number, pts_sec, captured_at, track_id, class_name, "
    "direction, value, detection_ids, lat, lon, media_paths, attributes::text AS attributes"
)


def _pg(conds: list[str]) -> str:
    """Lake conditions (``?`` placeholders, no literal ``?`` elsewhere) in psycopg's style."""
    return " AND ".join(conds).replace("?", "%s")


def _run(url: str, query: sql.Composed, params: Sequence[Any]) -> list[dict[str, Any]]:
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        cur = conn.execute(query, list(params))
        names = [d.name for d in cur.description or ()]
        return [{n: clean(v) for n, v in zip(names, r, strict=True)} for r in cur.fetchall()]


def page(
    url: str, schema: str, table: str, filters: Filters, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``table`` rows after ``cursor``, and the next cursor.

    Raises:
        QueryError: a bad cursor or a filter that does not apply to ``table``.
    """
    key = TABLE_KEYS[table]
    conds, params = where(table, filters, prune_dates=False)
    if cursor:
        when, row_id = decode_cursor(cursor)
        try:
            uuid.UUID(row_id)
        except ValueError:
            raise QueryError(
                "cursor is not valid; pass the next_cursor of a previous page"
            ) from None
        conds.append(f"(captured_at > ? OR (captured_at = ? AND {key} > ?::uuid))")
        params += [when, when, row_id]
    columns = DETECTION_COLUMNS if table == "detections" else EVENT_COLUMNS
    text = f"SELECT {columns} FROM {{}}.{table}"
    text += f" WHERE {_pg(conds)}" if conds else ""
    text += f" ORDER BY captured_at, {key} LIMIT %s"
    rows = _run(url, sql.SQL(text).format(sql.Identifier(schema)), [*params, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1]["captured_at"], rows[-1][key]) if more else None
    return rows, next_cursor


def stats(
    url: str,
    schema: str,
    table: str,
    filters: Filters,
    *,
    bin_minutes: int,
    group_by: Sequence[str],
) -> list[dict[str, Any]]:
    """Row counts per ``bin_minutes`` bin (UTC, epoch-aligned) and ``group_by`` values.

    Raises:
        QueryError: a grouping column that ``table`` does not have.
    """
    bad = [g for g in group_by if g not in GROUP_COLUMNS[table]]
    if bad:
        raise QueryError(
            f"{table} cannot be grouped by {bad}; allowed: {list(GROUP_COLUMNS[table])}"
        )
    conds, params = where(table, filters, prune_dates=False)
    groups = list(dict.fromkeys(group_by))
    cols = "".join(f", {g}" for g in groups)
    text = (
        "SELECT to_timestamp(floor(extract(epoch FROM captured_at) / %s) * %s) AS bin_start"
        f"{cols}, count(*) AS count FROM {{}}.{table}"
    )
    text += f" WHERE {_pg(conds)}" if conds else ""
    text += f" GROUP BY 1{cols} ORDER BY 1{cols}"
    seconds = bin_minutes * 60
    return _run(url, sql.SQL(text).format(sql.Identifier(schema)), [seconds, seconds, *params])
