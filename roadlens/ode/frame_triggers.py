"""Frame-level and temporal ODE triggers, as whole-column pandas/numpy.

Every trigger has the shape ``fn(dets, frames, **params) -> hits`` (see :mod:`roadlens.ode.hits`):

* ``dets``: detection rows (``DETECTIONS`` columns) that already passed the rule's criteria and
  area test;
* ``frames``: EVERY sampled frame of the videos (``video_id, frame_number, pts_sec,
  captured_at``), so empty frames exist (absence, zero counts).

Time is always *stream time* (``pts_sec``), never wall clock: durations, suppressions and ages
are differences of ``pts_sec`` within one video. "Consecutive frames" means adjacent in the
sampled ``frames`` of the video ordered by ``pts_sec`` (not ``frame_number + 1``), so a
sampling stride or dropped frames never break a run.

Frame-level triggers (always, occurrence, absence, count, summation, new_high, new_low) return
hits with ``track_id`` null; track-level ones (instance, persistence, earliest, latest,
smallest, largest) name the track (which may be null for untracked detections in
smallest/largest). Full definitions: ``docs/ode_logic.md``.

The examples use six sampled frames one second apart and four detections: track 1 on frames
1 and 2, track 2 on frames 2 and 5 (frames 0, 3 and 4 are empty).

Example:
    >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
    ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
    >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
    >>> FRAME_TRIGGERS["absence"](dets, frames, duration_s=1.0)[["frame_number", "value"]]
       frame_number  value
    0             4    1.0
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from roadlens.ode.hits import HIT_COLUMNS, conform_hits, empty_hits

FRAME_KEY = ["video_id", "frame_number"]
_FRAME_COLS = ["video_id", "frame_number", "pts_sec", "captured_at"]

Trigger = Callable[..., pd.DataFrame]


# --------------------------------------------------------------------------- shared helpers


def sampled_frames(frames: pd.DataFrame, *extra: pd.DataFrame) -> pd.DataFrame:
    """The sampled frames, one row per (video, frame), in stream order, with ``_ord``.

    Frames named by ``extra`` tables (detections, hits) but missing from ``frames`` are added,
    so a caller's slightly short frame list never drops a detection. ``_ord`` is the frame's
    position among its video's sampled frames (0, 1, 2, ...): two frames are consecutive when
    their ``_ord`` differ by one.

    Example:
        >>> f = pd.DataFrame({"video_id": ["v", "v"], "frame_number": [5, 0],
        ...                   "pts_sec": [0.5, 0.0], "captured_at": pd.NaT})
        >>> sampled_frames(f)["frame_number"].tolist()
        [0, 5]
    """
    out = frames[_FRAME_COLS].drop_duplicates(FRAME_KEY, keep="first")
    missing = [e[_FRAME_COLS] for e in extra if len(e)]
    if missing:  # cheap check first: a full concat of 1M detection rows costs more
        known = pd.MultiIndex.from_frame(out[FRAME_KEY])
        missing = [m[~pd.MultiIndex.from_frame(m[FRAME_KEY]).isin(known)] for m in missing]
        missing = [m for m in missing if len(m)]
    if missing:
        out = pd.concat([out, *missing], ignore_index=True).drop_duplicates(FRAME_KEY)
    out = out.sort_values(["video_id", "pts_sec", "frame_number"], kind="stable")
    out = out.reset_index(drop=True)
    out["_ord"] = out.groupby("video_id", sort=False).cumcount().to_numpy(np.int64)
    return out


def frame_index(table: pd.DataFrame, fr: pd.DataFrame) -> np.ndarray:
    """Row position in ``fr`` (from :func:`sampled_frames`) of each row of ``table``."""
    idx = pd.MultiIndex.from_frame(fr[FRAME_KEY])
    pos = idx.get_indexer(pd.MultiIndex.from_frame(table[FRAME_KEY]))
    if (pos < 0).any():  # cannot happen when fr was built with table as an extra
        raise ValueError("rows reference frames absent from the sampled frames")
    return pos


def id_lists(group: np.ndarray, ids: np.ndarray, n: int) -> list[list[str]]:
    """``ids`` gathered into ``n`` lists by integer ``group`` (0..n-1), order kept.

    One stable argsort and one ``tolist``; the only per-group Python work is slicing out the
    list that each row of the ``detection_ids`` column must hold (an object column).
    """
    if n == 0:
        return []
    order = np.argsort(group, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(group, minlength=n))].tolist()
    flat = np.asarray(ids, dtype=object)[order].tolist()
    return [flat[a:b] for a, b in itertools.pairwise(bounds)]


def _prepare(dets: pd.DataFrame, frames: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sampled frames, dets sorted in stream order with ``_fi`` = row of its frame)."""
    fr = sampled_frames(frames, dets)
    d = dets.copy()  # never mutate the caller's table
    d["_fi"] = frame_index(d, fr)
    d["_ord"] = fr["_ord"].to_numpy()[d["_fi"].to_numpy()]
    # Canonical order (frame, then detection_id) so results never depend on input order. One
    # int64 key instead of a two-column sort: a dense rank of the strings is far cheaper than
    # sorting on them.
    rank = d["detection_id"].rank(method="dense").fillna(0).to_numpy(np.int64)
    key = d["_fi"].to_numpy(np.int64) * (int(rank.max(initial=0)) + 1) + rank
    d = d.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    return fr, d


def _frame_hits(
    fr: pd.DataFrame, rows: np.ndarray, value: np.ndarray, ids: list[list[str]] | None = None
) -> pd.DataFrame:
    """Frame-level hits (track null) at the frames ``rows`` of ``fr``."""
    out = fr.iloc[rows][_FRAME_COLS].reset_index(drop=True)
    out["value"] = np.asarray(value, dtype="float64")
    out["detection_ids"] = ids if ids is not None else [[] for _ in range(len(out))]
    return conform_hits(out)


def _frame_counts(fr: pd.DataFrame, d: pd.DataFrame) -> np.ndarray:
    """Matching detections per sampled frame (0 for empty frames)."""
    return np.bincount(d["_fi"].to_numpy(), minlength=len(fr))


def _sightings(d: pd.DataFrame) -> pd.DataFrame:
    """One row per (video, track, frame) for tracked detections, in stream order per track."""
    t = d[d["track_id"].notna()]
    t = t.drop_duplicates(["video_id", "track_id", "frame_number"], keep="first")
    return t.sort_values(["video_id", "track_id", "_fi"], kind="stable").reset_index(drop=True)


def _det_hits(rows: pd.DataFrame, value: np.ndarray | pd.Series) -> pd.DataFrame:
    """Track-level hits, one per detection row, naming that detection."""
    out = rows[[*_FRAME_COLS, "track_id"]].reset_index(drop=True)
    out["value"] = np.asarray(value, dtype="float64")
    out["detection_ids"] = [[x] for x in rows["detection_id"].tolist()]
    return conform_hits(out)


def _finish(hits: pd.DataFrame) -> pd.DataFrame:
    """Hits in a deterministic order (video, time, frame, track)."""
    if not len(hits):
        return empty_hits()
    return hits.sort_values(
        ["video_id", "pts_sec", "frame_number", "track_id"], kind="stable", na_position="first"
    ).reset_index(drop=True)


# --------------------------------------------------------------------------- frame triggers


def always(dets: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Every sampled frame; ``value`` = matching detections in it (0 for empty frames).

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> always(dets, frames)[["frame_number", "value", "detection_ids"]]
           frame_number  value detection_ids
        0             0    0.0            []
        1             1    1.0           [a]
        2             2    2.0        [b, c]
        3             3    0.0            []
        4             4    0.0            []
        5             5    1.0           [d]
    """
    fr, d = _prepare(dets, frames)
    counts = _frame_counts(fr, d)
    ids = id_lists(d["_fi"].to_numpy(), d["detection_id"].to_numpy(), len(fr))
    return _finish(_frame_hits(fr, np.arange(len(fr)), counts, ids))


def occurrence(
    dets: pd.DataFrame, frames: pd.DataFrame, *, per_detection: bool = False
) -> pd.DataFrame:
    """Every sampled frame with at least one matching detection; ``value`` = their count.

    ``per_detection=True`` gives one hit per matching detection instead (subject = its track,
    value 1), like DSL's Occurrence trigger.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> occurrence(dets, frames)[["frame_number", "value", "detection_ids"]]
           frame_number  value detection_ids
        0             1    1.0           [a]
        1             2    2.0        [b, c]
        2             5    1.0           [d]
        >>> occurrence(dets, frames, per_detection=True)[["frame_number", "track_id", "value"]]
           frame_number  track_id  value
        0             1         1    1.0
        1             2         1    1.0
        2             2         2    1.0
        3             5         2    1.0
    """
    fr, d = _prepare(dets, frames)
    if per_detection:
        return _finish(_det_hits(d, np.ones(len(d))))
    counts = _frame_counts(fr, d)
    rows = np.flatnonzero(counts > 0)
    ids = id_lists(d["_fi"].to_numpy(), d["detection_id"].to_numpy(), len(fr))
    return _finish(_frame_hits(fr, rows, counts[rows], [ids[i] for i in rows]))


def instance(
    dets: pd.DataFrame, frames: pd.DataFrame, *, suppression_s: float | None = None
) -> pd.DataFrame:
    """A track's first sighting; with ``suppression_s`` = S, again at every sighting that
    follows S or more seconds (pts) without a sighting of that track.

    Subject = (video, track); untracked detections (null ``track_id``) never fire. ``value`` =
    seconds since the track's previous sighting (0 for the first one).

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> instance(dets, frames, suppression_s=2.0)[["frame_number", "track_id", "value"]]
           frame_number  track_id  value
        0             1         1    0.0
        1             2         2    0.0
        2             5         2    3.0
    """
    _, d = _prepare(dets, frames)
    s = _sightings(d)
    if not len(s):
        return empty_hits()
    gap = s.groupby(["video_id", "track_id"], sort=False)["pts_sec"].diff()
    first = gap.isna().to_numpy()
    fire = first.copy()
    if suppression_s is not None:
        fire |= (gap >= suppression_s).to_numpy()
    return _finish(_det_hits(s[fire], gap.fillna(0.0).to_numpy()[fire]))


def absence(dets: pd.DataFrame, frames: pd.DataFrame, *, duration_s: float = 0.0) -> pd.DataFrame:
    """Sampled frames with no matching detection, once the absence has lasted ``duration_s``.

    An *absence run* is a maximal run of consecutive sampled frames of a video with zero
    matching detections. A frame of the run fires when ``pts - pts(first frame of the run) >=
    duration_s``; ``value`` = that elapsed time. ``duration_s=0`` fires on every empty frame,
    including the first frames of a video (frames with no detections at all count).

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> absence(dets, frames)["frame_number"].tolist()
        [0, 3, 4]
        >>> absence(dets, frames, duration_s=1.0)[["frame_number", "value"]]
           frame_number  value
        0             4    1.0
    """
    fr, d = _prepare(dets, frames)
    empty = _frame_counts(fr, d) == 0
    video = fr["video_id"].to_numpy()
    pts = fr["pts_sec"].to_numpy(np.float64)
    # A run starts at an empty frame whose previous frame is non-empty or of another video.
    prev_same = np.r_[False, video[1:] == video[:-1]]
    prev_empty = np.r_[False, empty[:-1]]
    start = empty & ~(prev_same & prev_empty)
    run_id = np.cumsum(start)  # 1-based id of the run each empty frame belongs to
    start_pts = np.r_[np.nan, pts[start]]
    elapsed = np.where(empty, pts - start_pts[run_id], np.nan)
    rows = np.flatnonzero(empty & (elapsed >= duration_s - 1e-9))
    return _finish(_frame_hits(fr, rows, elapsed[rows]))


def _per_frame_counts(
    dets: pd.DataFrame,
    frames: pd.DataFrame,
    per_class: bool,
    classes: list[str] | None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(frames, dets, frame row, class or None, count, id-list group) per (frame[, class])."""
    fr, d = _prepare(dets, frames)
    fi = d["_fi"].to_numpy()
    if not per_class:
        counts = np.bincount(fi, minlength=len(fr))
        return fr, d, np.arange(len(fr)), np.full(len(fr), None, object), counts, fi
    names = sorted(set(d["class_name"].dropna())) if classes is None else list(classes)
    code = pd.Categorical(d["class_name"], categories=names).codes.astype(np.int64)
    keep = code >= 0  # a detection of a class outside ``classes`` counts for none
    k = len(names)
    cell = fi[keep] * k + code[keep]
    counts = np.bincount(cell, minlength=len(fr) * k)
    rows = np.repeat(np.arange(len(fr)), k)
    labels = np.tile(np.asarray(names, dtype=object), len(fr))
    group = np.full(len(d), len(fr) * k, np.int64)  # out-of-class ids go to a dropped bucket
    group[keep] = cell
    return fr, d, rows, labels, counts, group


def _count_hits(
    dets: pd.DataFrame,
    frames: pd.DataFrame,
    per_class: bool,
    classes: list[str] | None,
    lo: float,
    hi: float,
) -> pd.DataFrame:
    fr, d, rows, labels, counts, group = _per_frame_counts(dets, frames, per_class, classes)
    ids = id_lists(group, d["detection_id"].to_numpy(), len(counts) + 1)
    sel = np.flatnonzero((counts >= lo) & (counts <= hi))
    out = fr.iloc[rows[sel]][_FRAME_COLS].reset_index(drop=True)
    out["value"] = counts[sel].astype("float64")
    out["direction"] = pd.array(labels[sel], dtype="string")
    out["detection_ids"] = [ids[i] for i in sel]
    return _finish(conform_hits(out))


def count(
    dets: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    min: float = 0,  # the rule file's field names, though they shadow builtins here
    max: float | None = None,
    per_class: bool = False,
    classes: list[str] | None = None,
) -> pd.DataFrame:
    """Sampled frames whose matching-detection count ``n`` satisfies ``min <= n <= max``.

    Inclusive bounds; ``max=None`` is unbounded; ``min=0`` lets empty frames fire. With
    ``per_class=True`` the count is per (frame, class) and each hit's ``direction`` holds the
    class name; the classes are ``classes`` or else those present in ``dets``.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> count(dets, frames, min=2)[["frame_number", "value", "detection_ids"]]
           frame_number  value detection_ids
        0             2    2.0        [b, c]
        >>> cars_and_bus = dets.assign(class_name=["car", "car", "bus", "car"])
        >>> count(cars_and_bus, frames, min=1, per_class=True)[["frame_number", "direction", "value"]]
           frame_number direction  value
        0             1       car    1.0
        1             2       bus    1.0
        2             2       car    1.0
        3             5       car    1.0
    """
    hi = np.inf if max is None else max
    return _count_hits(dets, frames, per_class, classes, min, hi)


def summation(
    dets: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    per_class: bool = False,
    classes: list[str] | None = None,
) -> pd.DataFrame:
    """Every sampled frame, ``value`` = matching detections in it (0 included); per class with
    ``per_class=True`` (class name in ``direction``).

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> summation(dets, frames)["value"].tolist()
        [0.0, 1.0, 2.0, 0.0, 0.0, 1.0]
    """
    return _count_hits(dets, frames, per_class, classes, -np.inf, np.inf)


def _new_extreme(
    dets: pd.DataFrame, frames: pd.DataFrame, preset: float | None, high: bool
) -> pd.DataFrame:
    fr, d = _prepare(dets, frames)
    n = pd.Series(_frame_counts(fr, d).astype(np.float64))
    sign = 1.0 if high else -1.0
    # Running extreme of the *previous* frames of the video (strict comparison, like DSL).
    signed = n * sign
    video = fr["video_id"].to_numpy()
    prev = signed.groupby(video, sort=False).cummax().groupby(video, sort=False).shift()
    # preset None: the video's first frame (prev = NaN) sets the baseline and never fires.
    base = prev if preset is None else prev.fillna(-np.inf).clip(lower=preset * sign)
    rows = np.flatnonzero((signed > base).to_numpy())
    ids = id_lists(d["_fi"].to_numpy(), d["detection_id"].to_numpy(), len(fr))
    return _finish(_frame_hits(fr, rows, n.to_numpy()[rows], [ids[i] for i in rows]))


def new_high(
    dets: pd.DataFrame, frames: pd.DataFrame, *, preset: float | None = None
) -> pd.DataFrame:
    """Sampled frames whose count is strictly above every earlier frame's count of the video.

    ``preset`` is a floor the count must also exceed; with ``preset=None`` the video's first
    sampled frame sets the baseline and does not fire. ``value`` = the new high.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> new_high(dets, frames)[["frame_number", "value"]]
           frame_number  value
        0             1    1.0
        1             2    2.0
        >>> new_high(dets, frames, preset=1)[["frame_number", "value"]]
           frame_number  value
        0             2    2.0
    """
    return _new_extreme(dets, frames, preset, high=True)


def new_low(
    dets: pd.DataFrame, frames: pd.DataFrame, *, preset: float | None = None
) -> pd.DataFrame:
    """Sampled frames whose count is strictly below every earlier frame's count of the video
    (and below ``preset`` when given; ``None``: the first frame is the baseline).

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> new_low(dets, frames.iloc[1:])[["frame_number", "value"]]  # frame 1 (count 1): baseline
           frame_number  value
        0             3    0.0
    """
    return _new_extreme(dets, frames, preset, high=False)


def _extreme_box(dets: pd.DataFrame, frames: pd.DataFrame, largest: bool) -> pd.DataFrame:
    _, d = _prepare(dets, frames)
    area = ((d["x2"] - d["x1"]) * (d["y2"] - d["y1"])).astype(np.float64)
    d["_key"] = -area if largest else area
    # Ties go to the smallest detection_id, so results never depend on input order.
    # d is in (frame, detection_id) order, so a stable sort breaks ties by detection_id.
    best = d.sort_values(["_fi", "_key"], kind="stable").drop_duplicates("_fi")
    return _finish(_det_hits(best, area[best.index].to_numpy()))


def smallest(dets: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """One hit per non-empty frame naming the matching detection with the smallest box area
    ``(x2-x1)*(y2-y1)`` (ties: smallest ``detection_id``); ``value`` = that area.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> boxes = dets.assign(x1=0.0, y1=0.0, x2=[10.0, 10.0, 40.0, 10.0], y2=10.0)
        >>> smallest(boxes, frames)[["frame_number", "track_id", "value", "detection_ids"]]
           frame_number  track_id  value detection_ids
        0             1         1  100.0           [a]
        1             2         1  100.0           [b]
        2             5         2  100.0           [d]
    """
    return _extreme_box(dets, frames, largest=False)


def largest(dets: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """One hit per non-empty frame naming the matching detection with the largest box area.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> boxes = dets.assign(x1=0.0, y1=0.0, x2=[10.0, 10.0, 40.0, 10.0], y2=10.0)
        >>> largest(boxes, frames)[["frame_number", "track_id", "value", "detection_ids"]]
           frame_number  track_id  value detection_ids
        0             1         1  100.0           [a]
        1             2         2  400.0           [c]
        2             5         2  100.0           [d]
    """
    return _extreme_box(dets, frames, largest=True)


def _track_age(dets: pd.DataFrame, frames: pd.DataFrame, earliest: bool) -> pd.DataFrame:
    _, d = _prepare(dets, frames)
    s = _sightings(d)
    if not len(s):
        return empty_hits()
    first = s.groupby(["video_id", "track_id"], sort=False)["pts_sec"].transform("min")
    s["_age"] = s["pts_sec"] - first
    s["_key"] = -s["_age"] if earliest else s["_age"]
    best = s.sort_values(["_fi", "_key", "track_id"], kind="stable").drop_duplicates("_fi")
    return _finish(_det_hits(best, best["_age"].to_numpy()))


def earliest(dets: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """One hit per frame with tracked detections, on the track seen longest: the largest age
    ``pts - pts(track's first matching sighting)``; ties to the smallest ``track_id``.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> earliest(dets, frames)[["frame_number", "track_id", "value"]]  # ages in seconds
           frame_number  track_id  value
        0             1         1    0.0
        1             2         1    1.0
        2             5         2    3.0
    """
    return _track_age(dets, frames, earliest=True)


def latest(dets: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """One hit per frame with tracked detections, on the most recently first-seen track (the
    smallest age; ties to the smallest ``track_id``).

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> latest(dets, frames)[["frame_number", "track_id", "value"]]
           frame_number  track_id  value
        0             1         1    0.0
        1             2         2    0.0
        2             5         2    3.0
    """
    return _track_age(dets, frames, earliest=False)


def persistence(
    dets: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    min_s: float = 0.0,
    max_s: float | None = None,
    measure: Literal["since_first", "continuous"] = "since_first",
    gap_s: float = 0.0,
) -> pd.DataFrame:
    """Track sightings whose duration ``t`` satisfies ``min_s <= t <= max_s`` (level: one hit
    per sighting while in range; use ``fire(mode="edge")`` for once per stay).

    * ``measure="since_first"``: ``t = pts - pts(track's first matching sighting)``; the clock
      keeps running while the track is unseen (DSL's definition, but in stream time).
    * ``measure="continuous"``: ``t = pts - pts(start of the current stay)``. A stay is a run of
      sightings in consecutive sampled frames; a gap of missed frames is tolerated (the stay
      goes on) when it lasts at most ``gap_s`` seconds between the two sightings.

    ``value`` = ``t``. Untracked detections never fire.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> persistence(dets, frames, min_s=2)[["frame_number", "track_id", "value"]]
           frame_number  track_id  value
        0             5         2    3.0
        >>> len(persistence(dets, frames, min_s=2, measure="continuous", gap_s=1.0))  # 3 s unseen
        0
        >>> len(persistence(dets, frames, min_s=2, measure="continuous", gap_s=3.0))
        1
    """
    if measure not in ("since_first", "continuous"):
        raise ValueError(f"persistence: unknown measure {measure!r}")
    _, d = _prepare(dets, frames)
    s = _sightings(d)
    if not len(s):
        return empty_hits()
    key = ["video_id", "track_id"]
    if measure == "since_first":
        t = s["pts_sec"] - s.groupby(key, sort=False)["pts_sec"].transform("min")
    else:
        g = s.groupby(key, sort=False)
        d_ord = g["_ord"].diff()
        d_pts = g["pts_sec"].diff()
        new_stay = d_ord.isna() | ((d_ord > 1) & (d_pts > gap_s + 1e-9))
        stay = new_stay.cumsum()  # unique across tracks: every track starts a stay
        t = s["pts_sec"] - s.groupby(stay.to_numpy())["pts_sec"].transform("first")
    hi = np.inf if max_s is None else max_s
    ok = ((t >= min_s - 1e-9) & (t <= hi + 1e-9)).to_numpy()
    return _finish(_det_hits(s[ok], t.to_numpy()[ok]))


def load_callable(path: str) -> Trigger:
    """The callable named ``"package.module:function"`` (``ValueError`` with the path if not)."""
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"custom trigger {path!r}: expected 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"custom trigger {path!r}: {exc}") from exc
    if not callable(fn):
        raise ValueError(f"custom trigger {path!r} is not callable")
    return fn


def custom(
    dets: pd.DataFrame, frames: pd.DataFrame, *, function: str, **params: Any
) -> pd.DataFrame:
    """Hits from a user callable ``function="package.module:function"`` with the trigger
    signature ``fn(dets, frames, **params)``; its output is conformed to ``HIT_COLUMNS``.

    The callable gets copies, so it cannot change the engine's tables.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> dets = frames.iloc[[1, 2, 2, 5]].assign(detection_id=list("abcd"), track_id=[1, 1, 2, 2])
        >>> hits = custom(dets, frames, function="roadlens.ode.frame_triggers:occurrence",
        ...               per_detection=True)  # any "package.module:function" on the path
        >>> hits["detection_ids"].tolist()
        [['a'], ['b'], ['c'], ['d']]
    """
    fn = load_callable(function)
    out = fn(dets.copy(), frames.copy(), **params)
    if not isinstance(out, pd.DataFrame):
        raise TypeError(f"custom trigger {function!r} returned {type(out).__name__}")
    return _finish(conform_hits(out))


FRAME_TRIGGERS: dict[str, Trigger] = {
    "always": always,
    "occurrence": occurrence,
    "instance": instance,
    "absence": absence,
    "count": count,
    "summation": summation,
    "new_high": new_high,
    "new_low": new_low,
    "smallest": smallest,
    "largest": largest,
    "earliest": earliest,
    "latest": latest,
    "persistence": persistence,
    "custom": custom,
}

__all__ = [
    "FRAME_TRIGGERS",
    "HIT_COLUMNS",
    "absence",
    "always",
    "count",
    "custom",
    "earliest",
    "frame_index",
    "id_lists",
    "instance",
    "largest",
    "latest",
    "load_callable",
    "new_high",
    "new_low",
    "occurrence",
    "persistence",
    "sampled_frames",
    "smallest",
    "summation",
]
