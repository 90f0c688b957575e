"""The Parquet lake: its catalogue of tables and the store that reads and writes them.

Nothing outside this package builds a lake path: ask :class:`ParquetLake` for files, video
ids, dates, DuckDB sources and media folders, and :data:`CATALOG` for a table's layout.
"""

from roadlens.lake.catalog import (
    CATALOG,
    DETECTIONS_TABLE,
    EVENT_STATS_TABLE,
    EVENTS_TABLE,
    FRAMES_TABLE,
    HEATMAPS_TABLE,
    RAW_DETECTIONS_TABLE,
    SINK_TABLES,
    TRACK_LINKS_TABLE,
    VIDEOS_TABLE,
    LakeTable,
)
from roadlens.lake.store import (
    MAX_SEGMENT,
    PARTITION_COLUMNS,
    ParquetLake,
    WriteStats,
    location,
    safe_segment,
)

__all__ = [
    "CATALOG",
    "DETECTIONS_TABLE",
    "EVENTS_TABLE",
    "EVENT_STATS_TABLE",
    "FRAMES_TABLE",
    "HEATMAPS_TABLE",
    "MAX_SEGMENT",
    "PARTITION_COLUMNS",
    "RAW_DETECTIONS_TABLE",
    "SINK_TABLES",
    "TRACK_LINKS_TABLE",
    "VIDEOS_TABLE",
    "LakeTable",
    "ParquetLake",
    "WriteStats",
    "location",
    "safe_segment",
]
