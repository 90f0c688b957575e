"""Synthetic detection and event tables in the contract schemas, for sink tests and benchmarks.

The rows are plausible (tracks that move, GPS along a drive, deterministic ids), built
with whole-column numpy operations so a million rows take about a second.

Example:
    >>> table = synthetic_detections(1_000, video_id="veh-01--clip")
    >>> table.num_rows, table.schema.names[1]
    (1000, 'detection_id')
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa

from roadlens.ids import time_ordered_uuids
from roadlens.schema import DETECTIONS, EVENTS, table_version

CLASS_NAMES = np.array(["person", "car", "truck", "stop sign", "traffic light"])
DEFAULT_START = pd.Timestamp("2026-05-04T10:00:00Z")


def _epoch_ms(ts: pd.DatetimeIndex) -> np.ndarray:
    return (ts.as_unit("us").asi8 // 1000).astype(np.uint64)


def synthetic_detections(
    rows: int,
    *,
    video_id: str = "veh-01--clip-0001",
    source_id: str = "veh-01",
    start: pd.Timestamp = DEFAULT_START,
    per_frame: int = 20,
    fps: float = 5.0,
    seed: int = 0,
) -> pa.Table:
    """``rows`` detections of one video: ``per_frame`` boxes per sampled frame at ``fps``."""
    rng = np.random.default_rng(seed)
    index = np.arange(rows)
    frame = index // per_frame
    rank = index % per_frame
    pts = frame / fps
    captured = pd.DatetimeIndex(start + pd.to_timedelta(pts, unit="s"))
    keys = pd.Series(
        video_id + ":" + pd.Series(frame).astype(str) + ":" + pd.Series(rank).astype(str)
    )
    ids = time_ordered_uuids(_epoch_ms(captured), keys)
    class_id = (rank % len(CLASS_NAMES)).astype(np.int32)
    x1 = (rng.uniform(0, 1200, rows)).astype(np.float32)
    y1 = (rng.uniform(0, 600, rows)).astype(np.float32)
    w = rng.uniform(10, 80, rows).astype(np.float32)
    h = rng.uniform(10, 120, rows).astype(np.float32)
    has_fix = rng.random(rows) > 0.02  # a few detections in a GPS gap
    lat = np.where(has_fix, 52.5 + pts * 1e-5, np.nan)
    lon = np.where(has_fix, 13.4 + pts * 1.5e-5, np.nan)
    columns = {
        "schema_version": pa.array(np.full(rows, table_version(DETECTIONS), np.int16)),
        "detection_id": pa.array(ids),
        "video_id": pa.array(np.full(rows, video_id, dtype=object)),
        "source_id": pa.array(np.full(rows, source_id, dtype=object)),
        "vehicle_id": pa.array(np.full(rows, source_id, dtype=object)),
        "session_id": pa.array(np.full(rows, "session-a", dtype=object)),
        "frame_number": pa.array(frame * 6),  # 30 fps source sampled at 5 fps
        "pts_sec": pa.array(pts),
        "captured_at": pa.array(captured),
        "ingested_at": pa.array(pd.DatetimeIndex(np.full(rows, start + pd.Timedelta(hours=1)))),
        "class_id": pa.array(class_id),
        "class_name": pa.array(CLASS_NAMES[class_id]),
        "confidence": pa.array(rng.uniform(0.25, 1.0, rows).astype(np.float32)),
        "x1": pa.array(x1),
        "y1": pa.array(y1),
        "x2": pa.array(x1 + w),
        "y2": pa.array(y1 + h),
        "frame_width": pa.array(np.full(rows, 1280, np.int32)),
        "frame_height": pa.array(np.full(rows, 720, np.int32)),
        "anchor_u": pa.array(x1 + w / 2),
        "anchor_v": pa.array(y1 + h),
        "track_id": pa.array(frame // 50 * per_frame + rank + 1, mask=rank == per_frame - 1),
        "lat": pa.array(lat, from_pandas=True),
        "lon": pa.array(lon, from_pandas=True),
        "heading_deg": pa.array(
            np.where(has_fix, 56.3, np.nan).astype(np.float32), from_pandas=True
        ),
        "speed_mps": pa.array(np.where(has_fix, 12.5, np.nan).astype(np.float32), from_pandas=True),
        "gps_age_s": pa.array(rng.uniform(0, 1, rows).astype(np.float32)),
        "model_name": pa.array(np.full(rows, "roadlens-det", dtype=object)),
        "model_sha256": pa.array(np.full(rows, "6577e314" * 8, dtype=object)),
    }
    return pa.table(columns).cast(DETECTIONS)


def synthetic_events(
    rows: int,
    *,
    video_id: str = "veh-01--clip-0001",
    source_id: str = "veh-01",
    start: pd.Timestamp = DEFAULT_START,
    seed: int = 0,
) -> pa.Table:
    """``rows`` line-crossing events of one video, one every 0.5 s."""
    rng = np.random.default_rng(seed)
    index = np.arange(rows)
    pts = index * 0.5
    captured = pd.DatetimeIndex(start + pd.to_timedelta(pts, unit="s"))
    frame = (pts * 30).astype(np.int64)
    track = index + 1
    keys = pd.Series(
        "stop-line:"
        + video_id
        + ":"
        + pd.Series(frame).astype(str)
        + ":"
        + pd.Series(track).astype(str)
    )
    directions = np.where(rng.random(rows) > 0.5, "in", "out")
    attributes = [json.dumps({"line": "stop-line", "side": d}) for d in directions]
    columns = {
        "schema_version": pa.array(np.full(rows, table_version(EVENTS), np.int16)),
        "event_id": pa.array(time_ordered_uuids(_epoch_ms(captured), keys)),
        "rule_id": pa.array(np.full(rows, "stop-line", dtype=object)),
        "rule_name": pa.array(np.full(rows, "Cars crossing the stop line", dtype=object)),
        "trigger": pa.array(np.full(rows, "cross", dtype=object)),
        "video_id": pa.array(np.full(rows, video_id, dtype=object)),
        "source_id": pa.array(np.full(rows, source_id, dtype=object)),
        "vehicle_id": pa.array(np.full(rows, source_id, dtype=object)),
        "session_id": pa.array(np.full(rows, "session-a", dtype=object)),
        "frame_number": pa.array(frame),
        "pts_sec": pa.array(pts),
        "captured_at": pa.array(captured),
        "track_id": pa.array(track),
        "class_name": pa.array(np.full(rows, "car", dtype=object)),
        "direction": pa.array(directions),
        "value": pa.array(np.ones(rows)),
        "detection_ids": pa.array([[f"det-{i}"] for i in index], pa.list_(pa.string())),
        "lat": pa.array(52.5 + pts * 1e-5),
        "lon": pa.array(13.4 + pts * 1.5e-5),
        "media_paths": pa.array([[] for _ in index], pa.list_(pa.string())),
        "attributes": pa.array(attributes),
        "rule_set_sha256": pa.array(np.full(rows, "ab" * 32, dtype=object)),
        "model_sha256": pa.array(np.full(rows, "6577e314" * 8, dtype=object)),
    }
    return pa.table(columns).cast(EVENTS)
