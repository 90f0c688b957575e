"""A rule's criteria as one vectorized boolean mask over a detections DataFrame.

Every bound is inclusive. Track length counts the track's detections in the whole input
(frames) and its first-to-last ``pts_sec`` span (seconds), so a rule with
``min_track_seconds: 2`` ignores tracks seen for less than two seconds in total; this is
offline (non-causal) by design: the engine sees whole videos.

Example:
    >>> import pandas as pd
    >>> from roadlens.ode.rules import Criteria
    >>> dets = pd.DataFrame({"class_name": ["car", "person"], "confidence": [0.9, 0.9]})
    >>> criteria_mask(dets, Criteria(classes=["car"])).tolist()
    [True, False]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from roadlens.ode.rules import Criteria


def frame_rank(detections: pd.DataFrame, frames: pd.DataFrame | None = None) -> np.ndarray:
    """0-based rank of each detection's frame among the sampled frames of its video.

    With ``frames`` (every sampled frame) the rank counts frames without detections too.
    """
    if frames is None or frames.empty:
        ranks = detections.groupby("video_id", sort=False)["frame_number"].rank(method="dense")
        return (ranks.to_numpy() - 1).astype(np.int64)
    f = (
        frames[["video_id", "frame_number"]]
        .drop_duplicates()
        .sort_values(["video_id", "frame_number"])
    )
    f = f.assign(_rank=f.groupby("video_id", sort=False).cumcount())
    merged = detections[["video_id", "frame_number"]].merge(
        f, on=["video_id", "frame_number"], how="left"
    )
    if merged["_rank"].isna().any():
        raise ValueError("detections reference frames that are not in the frames table")
    return merged["_rank"].to_numpy(np.int64)


def _between(values: pd.Series | np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    mask = np.ones(arr.shape[0], dtype=bool)
    if lo is not None:
        mask &= arr >= lo
    if hi is not None:
        mask &= arr <= hi
    return mask


def track_stats(detections: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: its track's number of detections and its first-to-last pts span
    (untracked detections: 0 and NaN)."""
    g = detections.groupby(["video_id", "track_id"], sort=False, dropna=False)["pts_sec"]
    tracked = detections["track_id"].notna().to_numpy()
    n = np.where(tracked, g.transform("size").to_numpy(), 0)
    span = np.where(tracked, g.transform("max").to_numpy() - g.transform("min").to_numpy(), np.nan)
    return n, span


def criteria_mask(
    detections: pd.DataFrame,
    criteria: Criteria,
    frames: pd.DataFrame | None = None,
    *,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """True for the detections that pass every criterion (one whole-column pass each).

    ``stats``: :func:`track_stats` of ``detections``, when the caller has it already.
    """
    c = criteria
    d = detections
    mask = np.ones(len(d), dtype=bool)
    if c.classes is not None:
        mask &= d["class_name"].isin(c.classes).to_numpy()
    if c.sources is not None:
        mask &= d["source_id"].isin(c.sources).to_numpy()
    if c.confidence_min is not None or c.confidence_max is not None:
        mask &= _between(d["confidence"], c.confidence_min, c.confidence_max)
    if any(
        getattr(c, f"{n}_{b}") is not None
        for n in ("width", "height", "area", "aspect")
        for b in ("min", "max")
    ):
        w = d["x2"].to_numpy(np.float64) - d["x1"].to_numpy(np.float64)
        h = d["y2"].to_numpy(np.float64) - d["y1"].to_numpy(np.float64)
        mask &= _between(w, c.width_min, c.width_max)
        mask &= _between(h, c.height_min, c.height_max)
        mask &= _between(w * h, c.area_min, c.area_max)
        with np.errstate(divide="ignore", invalid="ignore"):
            mask &= _between(np.where(h > 0, w / h, np.inf), c.aspect_min, c.aspect_max)
    if c.min_track_frames is not None or c.min_track_seconds is not None:
        # Untracked detections have no track length: they fail a track-length criterion.
        n, span = stats if stats is not None else track_stats(d)
        if c.min_track_frames is not None:
            mask &= n >= c.min_track_frames
        if c.min_track_seconds is not None:
            mask &= np.nan_to_num(span, nan=-1.0) >= c.min_track_seconds
    if c.every_nth_frame > 1:
        # Rank 0, n, 2n, ... of the sampled frames (the first sampled frame is included).
        mask &= frame_rank(d, frames) % c.every_nth_frame == 0
    return mask
