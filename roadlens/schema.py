"""Arrow schemas of the data contracts (schema version 1).

Every table RoadLens writes is validated against one of these schemas before it leaves
the library, so a field that changes silently fails ``tests/test_schema.py``.
"""

from __future__ import annotations

import pyarrow as pa

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

# The tables a sink can receive, by name.
SINK_TABLES: dict[str, pa.Schema] = {
    "detections": DETECTIONS,
    "events": EVENTS,
    "event_stats": EVENT_STATS,
    "heatmaps": HEATMAPS,
}


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


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast ``table``'s columns to ``schema``, failing on a missing column.

    >>> conform(pa.table({"video_id": ["a"]}), pa.schema([("video_id", pa.string())])).num_rows
    1
    """
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise ValueError(
            f"table for {schema.metadata.get(b'table', b'?').decode()} lacks columns {missing}"
        )
    return table.select(schema.names).cast(schema)
