"""The quarantine: rows that failed a row-level expectation, kept whole with their reasons.

A quarantined row keeps its original values as one JSON object (``row_json``, built in
bulk by :func:`roadlens.sinks.encode.json_lines`, no Python work per row) next to the
columns needed to find and replace it: the table it came from, its id, video, source,
the Dagster partition and run, and the reasons :func:`roadlens.quality.suites.validate`
gave. Re-running a partition replaces that video's quarantine rows (see
``PostgresSink.replace_quarantine`` and ``roadlens/sql/postgres/005_quarantine.sql``).

``row_json`` follows the sinks' JSON conventions (ISO 8601 UTC timestamps, shortest
float32 text, NaN as ``null``) except that JSON-text columns such as ``attributes`` stay
strings: a quarantined row's text may not parse, and the original text is what is kept.

Example:
    >>> import pandas as pd
    >>> bad = pd.DataFrame({"detection_id": ["d1"], "video_id": ["v"], "source_id": ["s"],
    ...                     "confidence": [1.5], "reasons": [["confidence: range"]]})
    >>> q = quarantine_table(bad, table_name="detections", partition_key="v", run_id="r1")
    >>> q.column("row_json").to_pylist()
    ['{"detection_id":"d1","video_id":"v","source_id":"s","confidence":1.5}']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from roadlens.quality.suites import ID_COLUMNS
from roadlens.schema import SCHEMA_VERSION, TIMESTAMP
from roadlens.sinks.encode import JSON_TEXT_COLUMNS, json_lines

QUARANTINE = pa.schema(
    [
        pa.field("table_name", pa.string(), nullable=False),
        # The row's id as text: detection_id, event_id, or "video_id:frame_number" for
        # frames; null when the id itself was missing.
        pa.field("row_id", pa.string()),
        # The row's video, or the partition key when the row has none.
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("partition_key", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("reasons", pa.list_(pa.string()), nullable=False),
        pa.field("row_json", pa.string(), nullable=False),
        pa.field("quarantined_at", TIMESTAMP, nullable=False),
        pa.field("schema_version", pa.int16(), nullable=False),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "quarantine"},
)

REASONS_COLUMN = "reasons"


def _text(series: pd.Series) -> pa.Array:
    """``series`` as an Arrow string array (nulls kept), whatever its dtype."""
    array = pa.array(series.astype(object).where(series.notna(), None), from_pandas=True)
    return array if pa.types.is_string(array.type) else pc.cast(array, pa.string())


def row_ids(rows: pd.DataFrame, id_columns: Sequence[str]) -> pa.Array:
    """The id of each row as text; several id columns are joined with ``:``.

    >>> row_ids(pd.DataFrame({"video_id": ["v"], "frame_number": [6]}),
    ...         ["video_id", "frame_number"]).to_pylist()
    ['v:6']
    """
    parts = [
        _text(rows[c]) if c in rows.columns else pa.nulls(len(rows), pa.string())
        for c in id_columns
    ]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, ":")  # null when any part is null


def _original(rows: pd.DataFrame) -> pa.Table:
    """The rows without the ``reasons`` column, as Arrow, JSON-text columns kept as text."""
    table = pa.Table.from_pandas(rows.drop(columns=[REASONS_COLUMN]), preserve_index=False)
    for i, f in enumerate(table.schema):
        if f.name in JSON_TEXT_COLUMNS and pa.types.is_string(f.type):
            # large_string is not embedded by json_lines: the text is kept as a JSON string.
            table = table.set_column(i, f.name, table.column(i).cast(pa.large_string()))
    return table


def quarantine_table(
    bad: pd.DataFrame,
    *,
    table_name: str,
    partition_key: str | None,
    run_id: str | None,
    id_columns: Sequence[str] | None = None,
    quarantined_at: datetime | None = None,
) -> pa.Table:
    """The quarantine rows (schema ``QUARANTINE``) of ``bad``, as :func:`split` returns it.

    ``bad`` needs a ``reasons`` column (a list of strings per row); every other column goes
    into ``row_json``. ``id_columns`` defaults to the table's id columns
    (``ID_COLUMNS``). A row without ``video_id`` is filed under ``partition_key``.

    >>> q = quarantine_table(pd.DataFrame({"event_id": ["e"], "video_id": [None],
    ...                      "reasons": [["x"]]}), table_name="events",
    ...                      partition_key="veh-01--clip", run_id=None)
    >>> q.column("video_id").to_pylist(), q.column("reasons").to_pylist()
    (['veh-01--clip'], [['x']])
    """
    if REASONS_COLUMN not in bad.columns:
        raise ValueError("quarantine_table: the rows need a 'reasons' column (see split())")
    n = len(bad)
    columns = list(id_columns) if id_columns is not None else list(ID_COLUMNS.get(table_name, ()))
    if not columns:
        raise ValueError(f"quarantine_table: no id columns known for table {table_name!r}")
    video = _text(bad["video_id"]) if "video_id" in bad.columns else pa.nulls(n, pa.string())
    if partition_key is not None:
        video = pc.fill_null(video, partition_key)
    if video.null_count:
        raise ValueError("quarantine_table: rows without video_id need a partition_key")
    source = _text(bad["source_id"]) if "source_id" in bad.columns else pa.nulls(n, pa.string())
    reasons = pa.array(
        [list(r) if r is not None else [] for r in bad[REASONS_COLUMN]], pa.list_(pa.string())
    )
    at = quarantined_at or datetime.now(UTC)
    if n:
        row_json = json_lines(_original(bad))
        row_json = row_json.cast(pa.string()) if not pa.types.is_string(row_json.type) else row_json
    else:
        row_json = pa.array([], pa.string())
    return pa.table(
        {
            "table_name": pa.array(np.full(n, table_name, dtype=object), pa.string()),
            "row_id": row_ids(bad, columns),
            "video_id": video,
            "source_id": source,
            "partition_key": pa.array([partition_key] * n, pa.string()),
            "run_id": pa.array([run_id] * n, pa.string()),
            "reasons": reasons,
            "row_json": row_json,
            "quarantined_at": pa.array([at] * n, TIMESTAMP),
            "schema_version": pa.array(np.full(n, SCHEMA_VERSION, np.int16)),
        },
        schema=QUARANTINE,
    )


def original_rows(quarantine: pa.Table) -> list[dict[str, Any]]:
    """The quarantined rows' original values, parsed back from ``row_json``.

    >>> q = quarantine_table(pd.DataFrame({"detection_id": ["d"], "video_id": ["v"],
    ...                      "reasons": [["x"]]}), table_name="detections",
    ...                      partition_key=None, run_id=None)
    >>> original_rows(q)
    [{'detection_id': 'd', 'video_id': 'v'}]
    """
    return [json.loads(text) for text in quarantine.column("row_json").to_pylist()]
