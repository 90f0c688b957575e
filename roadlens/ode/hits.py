"""The table every ODE trigger returns: hits, one row per (sampled frame, subject) where its
condition holds.

A *subject* is a track (``track_id`` set) for track-level triggers such as cross or
persistence, or the whole frame of a video (``track_id`` null) for frame-level triggers
such as count or absence. Hits are *levels*: a rule whose condition holds for ten sampled
frames yields ten hits; :mod:`roadlens.ode.logic` turns levels into fired events (edge or
level firing, cooldowns, limits) and combines rules (all/any/not, for-at-least, sequence).

Columns (``HIT_COLUMNS``, in this order):

==============  ===========================  ============================================
video_id        str                          the video (sampling and tracks are per video)
frame_number    int64                        the sampled frame's index in the source
pts_sec         float64                      container time of the frame (or sub-frame
                                             time for interpolated crossings)
captured_at     datetime64[us, UTC]          wall-clock time of the hit
track_id        Int64 (nullable)             the subject track; null = the whole frame
value           float64                      what the trigger measures (count, seconds,
                                             overlap, speed, ...)
direction       string (nullable)            "in"/"out" for crossings, a heading bucket...
detection_ids   object (list of str)         the detections that justify the hit
==============  ===========================  ============================================

Example:
    >>> empty_hits().columns.tolist()[:3]
    ['video_id', 'frame_number', 'pts_sec']
"""

from __future__ import annotations

import pandas as pd

HIT_COLUMNS: dict[str, str] = {
    "video_id": "object",
    "frame_number": "int64",
    "pts_sec": "float64",
    "captured_at": "datetime64[us, UTC]",
    "track_id": "Int64",
    "value": "float64",
    "direction": "string",
    "detection_ids": "object",
}


def empty_hits() -> pd.DataFrame:
    """A hits table with no rows and the right dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in HIT_COLUMNS.items()})


def conform_hits(hits: pd.DataFrame) -> pd.DataFrame:
    """``hits`` with exactly ``HIT_COLUMNS`` in order and dtype (missing optional ones filled).

    ``value`` defaults to 1.0, ``direction`` and ``track_id`` to null, ``detection_ids`` to
    an empty list; the first four columns are required.
    """
    missing = [c for c in ("video_id", "frame_number", "pts_sec", "captured_at") if c not in hits]
    if missing:
        raise ValueError(f"hits lack required columns {missing}")
    out = hits.copy()
    if "value" not in out:
        out["value"] = 1.0
    if "track_id" not in out:
        out["track_id"] = pd.NA
    if "direction" not in out:
        out["direction"] = pd.NA
    if "detection_ids" not in out:
        out["detection_ids"] = [[] for _ in range(len(out))]
    out = out[list(HIT_COLUMNS)]
    return out.astype({k: v for k, v in HIT_COLUMNS.items() if k != "detection_ids"})
