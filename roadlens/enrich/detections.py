"""Raw detector boxes -> the ``detections`` contract: time, anchor, GPS, identity and ids.

Example:
    >>> from datetime import datetime, timezone
    >>> import pyarrow as pa
    >>> from roadlens.schema import RAW_DETECTIONS
    >>> raw = pa.table({
    ...     "video_id": ["veh-01--a"], "frame_number": [3], "pts_sec": [0.1],
    ...     "class_id": [2], "class_name": ["car"], "confidence": [0.9],
    ...     "x1": [10.0], "y1": [20.0], "x2": [30.0], "y2": [60.0],
    ...     "frame_width": [640], "frame_height": [360], "track_id": [None]},
    ...     schema=RAW_DETECTIONS)
    >>> t0 = datetime(2026, 5, 1, tzinfo=timezone.utc)
    >>> out = enrich_detections(raw, identity=SourceIdentity("veh-01", None, None),
    ...     capture_start=t0, track=None, model_name="m", model_sha256="0" * 64, ingested_at=t0)
    >>> out.column("anchor_u")[0].as_py(), out.column("captured_at")[0].as_py().microsecond
    (20.0, 100000)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from roadlens.enrich.gps import interpolate_track
from roadlens.enrich.sources import SourceIdentity, as_utc
from roadlens.ids import time_ordered_uuids
from roadlens.schema import DETECTIONS, RAW_DETECTIONS, TIMESTAMP, conform, table_version

__all__ = ["enrich_detections"]

# Rank order inside a frame is (class_id, x1, y1) per the contract; the further keys
# only break exact ties, so identical boxes still get the same index on every run.
_SORT_KEYS = ("frame_number", "class_id", "x1", "y1", "x2", "y2", "confidence")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GPS_COLUMNS = ("lat", "lon", "heading_deg", "speed_mps", "gps_age_s")


def enrich_detections(
    raw: pa.Table,
    *,
    identity: SourceIdentity,
    capture_start: datetime,
    track: pd.DataFrame | None,
    model_name: str,
    model_sha256: str,
    ingested_at: datetime,
    max_gap_s: float = 5.0,
) -> pa.Table:
    """Turn a ``RAW_DETECTIONS`` table into one conforming exactly to ``DETECTIONS``.

    - ``captured_at`` = ``capture_start`` + ``pts_sec`` (naive datetimes are taken as UTC);
    - ``anchor_u``/``anchor_v`` = bottom-centre of the box, ``(x1 + x2) / 2`` and ``y2``;
    - lat/lon/heading/speed/gps_age_s from :func:`interpolate_track` at ``captured_at``
      (null when ``track`` is None or the time falls in a gap longer than ``max_gap_s``);
    - ``detection_id`` = time-ordered UUIDv8 of ``captured_at`` (ms) and
      ``"{video_id}:{frame_number}:{index}"``, ``index`` being the box's rank in its
      frame by (class_id, x1, y1).

    Rows come out sorted by (frame_number, class_id, x1, y1); the same input always
    yields the same ids.
    """
    raw = conform(raw, RAW_DETECTIONS)
    n = raw.num_rows
    if n == 0:
        return DETECTIONS.empty_table()
    raw = raw.sort_by([(key, "ascending") for key in _SORT_KEYS])

    # Rank within frame: position minus the position where the frame's run starts.
    frame = raw.column("frame_number").to_numpy()
    position = np.arange(n)
    run_start = np.r_[True, frame[1:] != frame[:-1]]
    index = position - np.maximum.accumulate(np.where(run_start, position, 0))

    start_us = _epoch_us(capture_start)
    pts = raw.column("pts_sec").to_numpy()
    captured_us = start_us + np.round(pts * 1e6).astype(np.int64)
    captured_at = pd.Series(captured_us.astype("datetime64[us]")).dt.tz_localize("UTC")

    keys = pc.binary_join_element_wise(
        raw.column("video_id"),
        pc.cast(raw.column("frame_number"), pa.string()),
        pc.cast(pa.array(index), pa.string()),
        ":",
    )
    detection_ids = time_ordered_uuids(
        np.floor_divide(captured_us, 1000), keys.to_pandas(types_mapper=pd.ArrowDtype)
    )

    if track is None:
        gps = {name: pa.nulls(n, pa.float64()) for name in _GPS_COLUMNS}
    else:
        located = interpolate_track(track, captured_at, max_gap_s=max_gap_s)
        gps = {
            name: pa.array(located[name].to_numpy(np.float64), from_pandas=True)
            for name in _GPS_COLUMNS
        }

    x1, x2 = raw.column("x1").to_numpy(), raw.column("x2").to_numpy()
    ingested_us = _epoch_us(ingested_at)
    extra = {
        "schema_version": _repeat(table_version(DETECTIONS), n, pa.int16()),
        "detection_id": pa.array(detection_ids, pa.string()),
        "source_id": _repeat(identity.source_id, n, pa.string()),
        "vehicle_id": _repeat(identity.vehicle_id, n, pa.string()),
        "session_id": _repeat(identity.session_id, n, pa.string()),
        "captured_at": pa.array(captured_us, pa.int64()).cast(TIMESTAMP),
        "ingested_at": _repeat(ingested_us, n, pa.int64()).cast(TIMESTAMP),
        "anchor_u": pa.array(((x1 + x2) / 2).astype(np.float32)),
        "anchor_v": raw.column("y2"),
        "model_name": _repeat(model_name, n, pa.string()),
        "model_sha256": _repeat(model_sha256, n, pa.string()),
        **gps,
    }
    table = raw
    for name, values in extra.items():
        table = table.append_column(name, values)
    return conform(table, DETECTIONS)


def _epoch_us(value: datetime) -> int:
    """Exact Unix microseconds of a datetime (naive = UTC), without float rounding."""
    return (as_utc(value) - _EPOCH) // timedelta(microseconds=1)


def _repeat(value: object, n: int, type_: pa.DataType) -> pa.Array:
    """A constant column (nulls for None) without building a Python list."""
    if value is None:
        return pa.nulls(n, type_)
    return pa.repeat(pa.scalar(value, type_), n)
