"""Arrow schemas of the data contracts (schema version 1).

Every table RoadLens writes is validated against one of these schemas before it leaves
the library, so a field that changes silently fails ``tests/test_schema.py``.

These schemas are the source of truth: each carries its own version in its metadata
(``{"table": "detections", "schema_version": "1"}``), its fields are recorded per version
in ``roadlens/contracts/schema_contracts.json`` (``tests/contracts/test_contracts.py`` fails
when a field changes without a version bump), and :func:`upgrade_table` lets readers take
tables written with an older version. See ``docs/schema.md``.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.compute as pc

# The version of the wire package (Kafka topics ``<prefix>.<table>.v1``, protobuf package
# ``roadlens.v1``) and the starting version of every table. A table's own version is the
# ``schema_version`` of its metadata (:func:`table_version`): to change a table's fields,
# bump that value for the table alone, e.g. ``"schema_version": "2"``.
SCHEMA_VERSION = 1

TIMESTAMP = pa.timestamp("us", tz="UTC")

FRAMES = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_number", pa.int64(), nullable=False),
        pa.field("pts_sec", pa.float64(), nullable=False),
        pa.field("captured_at", TIMESTAMP, nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("image_path", pa.string()),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "frames"},
)

# Raw detector output before enrichment: one row per box.
RAW_DETECTIONS = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_number", pa.int64(), nullable=False),
        pa.field("pts_sec", pa.float64(), nullable=False),
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("x1", pa.float32(), nullable=False),
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
        pa.field("frame_width", pa.int32(), nullable=False),
        pa.field("frame_height", pa.int32(), nullable=False),
        pa.field("track_id", pa.int64()),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "raw_detections"},
)

DETECTIONS = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("detection_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("vehicle_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("frame_number", pa.int64(), nullable=False),
        pa.field("pts_sec", pa.float64(), nullable=False),
        pa.field("captured_at", TIMESTAMP, nullable=False),
        pa.field("ingested_at", TIMESTAMP, nullable=False),
        pa.field("class_id", pa.int32(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("x1", pa.float32(), nullable=False),
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
        pa.field("frame_width", pa.int32(), nullable=False),
        pa.field("frame_height", pa.int32(), nullable=False),
        pa.field("anchor_u", pa.float32(), nullable=False),
        pa.field("anchor_v", pa.float32(), nullable=False),
        pa.field("track_id", pa.int64()),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("heading_deg", pa.float32()),
        pa.field("speed_mps", pa.float32()),
        pa.field("gps_age_s", pa.float32()),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "detections"},
)

# Rule events (the ODE stage). ``value`` is what the trigger measures (a count, a dwell in
# seconds, an overlap); ``attributes`` holds trigger-specific extras as a JSON object.
EVENTS = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("rule_name", pa.string(), nullable=False),
        pa.field("trigger", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("vehicle_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("frame_number", pa.int64(), nullable=False),
        pa.field("pts_sec", pa.float64(), nullable=False),
        pa.field("captured_at", TIMESTAMP, nullable=False),
        pa.field("track_id", pa.int64()),
        pa.field("class_name", pa.string()),
        pa.field("direction", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("detection_ids", pa.list_(pa.string())),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("media_paths", pa.list_(pa.string())),
        pa.field("attributes", pa.string()),
        pa.field("rule_set_sha256", pa.string(), nullable=False),
        pa.field("model_sha256", pa.string(), nullable=False),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "events"},
)

# Time-binned event statistics (counts per rule/class/direction per bin).
EVENT_STATS = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("rule_id", pa.string(), nullable=False),
        pa.field("class_name", pa.string()),
        pa.field("direction", pa.string()),
        pa.field("bin_minutes", pa.int16(), nullable=False),
        pa.field("bin_start", TIMESTAMP, nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("value", pa.float64()),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "event_stats"},
)

# Heat maps as sparse cells: ``space`` is "image" (col/row of a grid_w x grid_h grid over
# the frame) or "geo" (cell_id with its centre lat/lon).
HEATMAPS = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("heatmap_id", pa.string(), nullable=False),
        pa.field("space", pa.string(), nullable=False),
        pa.field("weight", pa.string(), nullable=False),
        pa.field("captured_at", TIMESTAMP, nullable=False),
        pa.field("grid_w", pa.int32()),
        pa.field("grid_h", pa.int32()),
        pa.field("col", pa.int32()),
        pa.field("row", pa.int32()),
        pa.field("cell_id", pa.string()),
        pa.field("lat", pa.float64()),
        pa.field("lon", pa.float64()),
        pa.field("value", pa.float64(), nullable=False),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "heatmaps"},
)

VIDEOS = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("vehicle_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("path", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("capture_start", TIMESTAMP, nullable=False),
        pa.field("capture_date", pa.string(), nullable=False),
        pa.field("capture_time_source", pa.string(), nullable=False),
        pa.field("gps_path", pa.string()),
        pa.field("registered_at", TIMESTAMP, nullable=False),
    ],
    metadata={"schema_version": str(SCHEMA_VERSION), "table": "videos"},
)


# One row per track of a video. ``chain_id`` is ``"<chain_video_id>:<chain_track_id>"``, the
# first (video, track) of the chain of stitched tracks; ``prev_*``, ``iou`` and ``gap_s``
# describe the stitch to the previous chunk (null for a track that starts a chain).
TRACK_LINKS = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("track_id", pa.int64(), nullable=False),
        pa.field("chain_id", pa.string(), nullable=False),
        pa.field("chain_video_id", pa.string(), nullable=False),
        pa.field("chain_track_id", pa.int64(), nullable=False),
        pa.field("prev_video_id", pa.string()),
        pa.field("prev_track_id", pa.int64()),
        pa.field("iou", pa.float64()),
        pa.field("gap_s", pa.float64()),
    ],
    metadata={"schema_version": "1", "table": "track_links"},
)

# The column that repeats the table's version in every row, where a table has one.
VERSION_COLUMN = "schema_version"
# Field metadata key holding a JSON literal that :func:`upgrade_table` fills into a NOT NULL
# column missing from tables written with an older version (e.g. ``{"default": "0"}``).
DEFAULT_KEY = b"default"


class SchemaVersionError(ValueError):
    """A table cannot be read as the requested version of its schema."""


def table_name(schema: pa.Schema) -> str:
    """The ``table`` name in ``schema``'s metadata (``"?"`` when it has none).

    >>> table_name(DETECTIONS)
    'detections'
    """
    return (schema.metadata or {}).get(b"table", b"?").decode()


def _version_of(schema: pa.Schema) -> int | None:
    raw = (schema.metadata or {}).get(b"schema_version")
    return None if raw is None else int(raw)


def table_version(schema: pa.Schema) -> int:
    """The table's own schema version, from its metadata; an error for an unversioned one.

    >>> table_version(DETECTIONS)
    1
    """
    version = _version_of(schema)
    if version is None:
        raise ValueError(f"schema of table {table_name(schema)} has no schema_version metadata")
    return version


def schema_fingerprint(schema: pa.Schema) -> str:
    """A stable SHA-256 (hex) of the fields' names, types and nullability, in column order.

    Metadata (table name, version, field defaults) is not part of it, so the fingerprint
    changes exactly when what a reader sees of a row changes: a field added, removed,
    renamed, retyped, reordered or made (not) nullable.

    >>> schema_fingerprint(pa.schema([pa.field("a", pa.int64(), nullable=False)]))[:16]
    '4f42a16b21c1bc62'
    """
    canonical = [[f.name, str(f.type), f.nullable] for f in schema]
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _column_versions(table: pa.Table) -> tuple[int, int] | None:
    """The lowest and highest value of ``table``'s version column (None: no values)."""
    if VERSION_COLUMN not in table.column_names:
        return None
    column = table.column(VERSION_COLUMN)
    if not (pa.types.is_integer(column.type) and len(column) > column.null_count):
        return None
    low, high = pc.min_max(column).values()
    return int(low.as_py()), int(high.as_py())


def written_version(table: pa.Table, schema: pa.Schema) -> int | None:
    """The version of ``schema``'s table that ``table`` was written with, when it says.

    The schema metadata of ``table`` counts when it names the same table (a Parquet file
    keeps the metadata of the schema it was written with); otherwise the ``schema_version``
    column does: its highest value when that is newer than ``schema``, else its lowest.

    >>> old = pa.table({"video_id": ["v"]}).replace_schema_metadata(
    ...     {"table": "frames", "schema_version": "0"})
    >>> written_version(old, FRAMES), written_version(pa.table({"video_id": ["v"]}), FRAMES)
    (0, None)
    """
    meta = table.schema.metadata or {}
    if meta.get(b"table") == (schema.metadata or {}).get(b"table") and b"schema_version" in meta:
        return int(meta[b"schema_version"])
    versions = _column_versions(table)
    if versions is None:
        return None
    current = _version_of(schema)
    return versions[1] if current is not None and versions[1] > current else versions[0]


def _default(field: pa.Field) -> pa.Scalar | None:
    raw = (field.metadata or {}).get(DEFAULT_KEY)
    return None if raw is None else pa.scalar(json.loads(raw), type=field.type)


def upgrade_table(
    table: pa.Table, schema: pa.Schema, *, from_version: int | None = None
) -> pa.Table:
    """Read ``table``, written with ``from_version`` or an older one, as ``schema``.

    The written version is ``from_version``, else :func:`written_version`, else the
    schema's own. Columns of ``schema`` that an older version lacks are filled with nulls
    (nullable) or the field's ``default`` metadata (NOT NULL); columns ``schema`` no longer
    has are dropped; the others are cast (safely) to their current type; the
    ``schema_version`` column is rewritten to the current version. Fails with
    :class:`SchemaVersionError` on a version newer than ``schema``'s, on a missing NOT
    NULL column without a default, on a cast that would lose data and on nulls in a NOT
    NULL column. A table of the current version must have every column, as in
    :func:`conform`.

    >>> v0 = pa.table({"video_id": ["v"], "frame_number": [3], "pts_sec": [0.1],
    ...     "captured_at": pa.array([0], TIMESTAMP), "width": [64], "height": [48]})
    >>> upgrade_table(v0, FRAMES, from_version=0).column("image_path").to_pylist()
    [None]
    """
    name = table_name(schema)
    current = table_version(schema)
    written = from_version if from_version is not None else written_version(table, schema)
    written = current if written is None else written
    if written > current:
        raise SchemaVersionError(
            f"{name} rows were written with schema version {written}, newer than this "
            f"reader's version {current}: upgrade RoadLens to read them"
        )
    n = table.num_rows
    columns: list[pa.ChunkedArray] = []
    missing: list[str] = []
    no_default: list[str] = []
    for field in schema:
        default = _default(field)
        if field.name == VERSION_COLUMN:
            column = pa.chunked_array([pa.repeat(pa.scalar(current, field.type), n)])
        elif field.name in table.column_names:
            try:
                column = table.column(field.name).cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaVersionError(
                    f"{name}: column {field.name!r} of type {table.column(field.name).type} "
                    f"(version {written}) cannot be read as {field.type} (version {current}): "
                    f"{exc}"
                ) from exc
            if default is not None and not field.nullable and column.null_count:
                column = column.fill_null(default)
        elif written == current:
            missing.append(field.name)
            continue
        elif field.nullable or default is not None:
            fill = default if default is not None else pa.scalar(None, field.type)
            column = pa.chunked_array([pa.repeat(fill, n)])
        else:
            no_default.append(field.name)
            continue
        if not field.nullable and column.null_count:
            raise SchemaVersionError(
                f"{name}: column {field.name!r} holds {column.null_count} nulls but is NOT "
                f"NULL in version {current}; give it a default (field metadata "
                f"{{'default': <JSON literal>}})"
            )
        columns.append(column)
    if missing:
        raise SchemaVersionError(f"table for {name} lacks columns {missing}")
    if no_default:
        raise SchemaVersionError(
            f"{name} version {written} cannot be upgraded to version {current}: NOT NULL "
            f"columns {no_default} are missing and have no default; give each a default "
            f"(field metadata {{'default': <JSON literal>}}) or make it nullable"
        )
    return pa.Table.from_arrays(columns, schema=schema)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast ``table``'s columns to ``schema``, failing on a missing column.

    A table whose metadata says it holds an older version of the same table (a lake file
    written before a version bump) is read through :func:`upgrade_table`; a newer one, or
    rows whose ``schema_version`` column holds another version than ``schema``'s, fail
    with :class:`SchemaVersionError` (call :func:`upgrade_table` for stored older rows).

    >>> conform(pa.table({"video_id": ["a"]}), pa.schema([("video_id", pa.string())])).num_rows
    1
    """
    current = _version_of(schema)
    meta = table.schema.metadata or {}
    if current is not None and meta.get(b"table") == (schema.metadata or {}).get(b"table"):
        declared = meta.get(b"schema_version")
        if declared is not None and int(declared) != current:
            return upgrade_table(table, schema, from_version=int(declared))
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise ValueError(f"table for {table_name(schema)} lacks columns {missing}")
    versions = _column_versions(table) if VERSION_COLUMN in schema.names else None
    if current is not None and versions is not None and versions != (current, current):
        raise SchemaVersionError(
            f"{table_name(schema)} rows carry {VERSION_COLUMN} {versions[0]}..{versions[1]} "
            f"but the schema is version {current}: writers fill it with table_version(schema); "
            f"readers of stored older rows call upgrade_table"
        )
    return table.select(schema.names).cast(schema)
