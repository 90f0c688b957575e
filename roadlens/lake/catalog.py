"""The lake's tables: each one's name, schema, row id and time column, in one place.

Asset keys, lake folders, DuckDB views and sink tables all use these names. Sinks take a
table's row id (what consumers dedupe on) and time column (what PostgreSQL partitions
by) from here.

Example:
    >>> CATALOG[DETECTIONS_TABLE].id_columns, CATALOG[DETECTIONS_TABLE].time_column
    (('detection_id',), 'captured_at')
    >>> sorted(SINK_TABLES)
    ['detections', 'event_stats', 'events', 'heatmaps']
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from roadlens import schema

VIDEOS_TABLE = "videos"
FRAMES_TABLE = "frames"
RAW_DETECTIONS_TABLE = "raw_detections"
DETECTIONS_TABLE = "detections"
EVENTS_TABLE = "events"
EVENT_STATS_TABLE = "event_stats"
HEATMAPS_TABLE = "heatmaps"
TRACK_LINKS_TABLE = "track_links"


@dataclass(frozen=True)
class LakeTable:
    """One table of the lake (one Parquet file per video under ``date=/source_id=``)."""

    name: str
    description: str
    schema: pa.Schema | None = None
    # The columns that name one row; the first one alone where it is a deterministic id.
    id_columns: tuple[str, ...] = ()
    # The row's time: PostgreSQL partitions by it, the file export names its hour folder.
    time_column: str = ""
    # Tables that leave the lake for the sinks (PostgreSQL, MongoDB, Kafka, MQTT, ...).
    exported: bool = False

    @property
    def row_id(self) -> str:
        """The deterministic id column consumers dedupe on (``""`` where there is none)."""
        return self.id_columns[0] if len(self.id_columns) == 1 else ""


CATALOG: dict[str, LakeTable] = {
    t.name: t
    for t in (
        LakeTable(VIDEOS_TABLE, "one row per registered video file", schema.VIDEOS, ("video_id",)),
        LakeTable(
            FRAMES_TABLE,
            "the sampled frames' index (number, timestamp, optional JPEG path)",
            schema.FRAMES,
            ("video_id", "frame_number"),
            "captured_at",
        ),
        LakeTable(
            RAW_DETECTIONS_TABLE,
            "the detector's boxes and track ids, before enrichment",
            schema.RAW_DETECTIONS,
            ("video_id", "frame_number"),
        ),
        LakeTable(
            DETECTIONS_TABLE,
            "boxes with GPS, vehicle and session ids and deterministic ids",
            schema.DETECTIONS,
            ("detection_id",),
            "captured_at",
            exported=True,
        ),
        LakeTable(
            EVENTS_TABLE,
            "rule events with their media (captures, crops, clips)",
            schema.EVENTS,
            ("event_id",),
            "captured_at",
            exported=True,
        ),
        LakeTable(
            EVENT_STATS_TABLE,
            "event counts per rule, class and time bin",
            schema.EVENT_STATS,
            time_column="bin_start",
            exported=True,
        ),
        LakeTable(
            HEATMAPS_TABLE,
            "heat map cells per video",
            schema.HEATMAPS,
            time_column="captured_at",
            exported=True,
        ),
        LakeTable(
            TRACK_LINKS_TABLE,
            "live chunks: which track of the previous chunk each track continues",
            schema.TRACK_LINKS,
            ("video_id", "track_id"),
        ),
    )
}

# The tables a sink can receive, by name.
SINK_TABLES: dict[str, pa.Schema] = {
    t.name: t.schema for t in CATALOG.values() if t.exported and t.schema is not None
}
