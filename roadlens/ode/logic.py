"""Firing and composition of ODE hits: levels → events, and rules combined as interval algebra.

Triggers return *levels* (a hit on every sampled frame where the condition holds, see
:mod:`roadlens.ode.hits`). This module:

* :func:`fire` turns levels into events: ``mode="level"`` (every hit) or ``"edge"`` (first hit
  of each run of consecutive sampled frames per subject), then a cooldown in stream time, then
  event limits per track and per rule;
* combines child rules' hits: :func:`all_of`, :func:`any_of`, :func:`not_of` (per frame, or per
  (frame, track)), :func:`for_at_least` (held continuously for T s), :func:`sequence` (B within
  W s after A);
* :func:`intervals` run-length encodes hits into (start, end) intervals per subject.

A *subject* is ``(video_id, track_id, direction)``: a track (or the whole frame when
``track_id`` is null), split by ``direction`` so that "in" and "out" crossings, or per-class
counts, keep separate runs and cooldowns. "Consecutive" means adjacent among the video's
sampled ``frames`` in stream order (``pts_sec``), never ``frame_number + 1``. All functions
return new tables; arguments are never modified.

In the examples, a hits table is any table with ``video_id, frame_number, pts_sec,
captured_at`` (here rows of ``frames``: frame-level hits, ``value`` 1).

Example:
    >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
    ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
    >>> hits = frames.iloc[[1, 2, 4, 5]]  # two runs: frames 1-2 and 4-5
    >>> fire(hits, frames, mode="edge")["frame_number"].tolist()
    [1, 4]
    >>> fire(hits, frames, mode="edge", cooldown_s=10)["frame_number"].tolist()
    [1]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from roadlens.ode.frame_triggers import FRAME_KEY, frame_index, id_lists, sampled_frames
from roadlens.ode.hits import conform_hits, empty_hits

_SUBJECT = ["video_id", "track_id", "direction"]
_EPS = 1e-9  # pts are float seconds; comparisons of differences tolerate rounding


def _ordered(
    hits: pd.DataFrame, frames: pd.DataFrame, sampled: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Conformed hits sorted by subject then time, with ``_ord`` (frame position) and ``_g``
    (subject code, 0..k-1, contiguous after sorting). ``sampled``: ``sampled_frames(frames)``
    when the caller has it and it holds every frame of ``hits``."""
    h = conform_hits(hits)  # a copy: the caller's table is never touched
    fr = sampled_frames(frames, h) if sampled is None else sampled
    h["_ord"] = fr["_ord"].to_numpy()[frame_index(h, fr)]
    # Sort keys that tolerate nulls: track/direction nulls sort first in a stable order.
    h = h.sort_values(
        [*_SUBJECT, "pts_sec", "_ord"], kind="stable", na_position="first"
    ).reset_index(drop=True)
    h["_g"] = h.groupby(_SUBJECT, sort=False, dropna=False).ngroup().to_numpy(np.int64)
    return h


def _time_order(h: pd.DataFrame) -> pd.DataFrame:
    """Hits in output order (video, time, frame, track, direction), helper columns dropped."""
    h = conform_hits(h)  # keeps only HIT_COLUMNS
    return h.sort_values(
        ["video_id", "pts_sec", "frame_number", "track_id", "direction"],
        kind="stable",
        na_position="first",
    ).reset_index(drop=True)


def _cooldown_keep(t: np.ndarray, g: np.ndarray, cooldown: float) -> np.ndarray:
    """Greedy cooldown per subject: keep a hit when it comes ``cooldown`` s or more after the
    previously *kept* hit of its subject. ``t`` is sorted within each contiguous group ``g``.

    Kept hits form a chain ``i -> next[i]`` (the first hit at or after ``t[i] + cooldown``), so
    the scan is sequential along each chain. We follow all chains at once with numpy: the Python
    loop runs once per event of the busiest subject, each step vectorized over all subjects.
    """
    n = len(t)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], n]
    group_end = np.repeat(ends, ends - starts)
    # One monotone key across groups (each group shifted past the previous one's span), so a
    # single searchsorted finds next[i] for every hit.
    t0 = np.repeat(t[starts], ends - starts)
    rel = t - t0
    span = np.maximum.reduceat(rel, starts) + cooldown + 1.0
    offset = np.repeat(np.r_[0.0, np.cumsum(span)[:-1]], ends - starts)
    key = offset + rel
    nxt = np.searchsorted(key, key + cooldown - _EPS, side="left")
    cur = starts
    while cur.size:
        keep[cur] = True
        step = nxt[cur]
        cur = step[step < group_end[cur]]
    return keep


def fire(
    hits: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    mode: Literal["edge", "level"] = "edge",
    cooldown_s: float = 0.0,
    max_events: int | None = None,
    max_per_track: int | None = None,
    sampled: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Events from one rule's hits.

    1. ``mode="level"`` keeps every hit; ``"edge"`` keeps the first hit of every run of
       consecutive sampled frames per subject (the rising edge).
    2. ``cooldown_s``: a hit is dropped when it comes less than ``cooldown_s`` seconds (pts)
       after the previous *fired* hit of the same subject.
    3. ``max_per_track``: at most N events per (video, track) (frame-level hits are exempt),
       the earliest ones; then ``max_events``: at most N events for the rule, the earliest ones.

    ``sampled``: :func:`~roadlens.ode.frame_triggers.sampled_frames` of ``frames``, when the
    caller (the engine, once for all rules) has it and it holds every frame of ``hits``.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> hits = frames.iloc[[1, 2, 4, 5]]
        >>> fire(hits, frames, mode="level")["frame_number"].tolist()
        [1, 2, 4, 5]
        >>> fire(hits, frames, mode="level", cooldown_s=2)["frame_number"].tolist()
        [1, 4]
        >>> fire(hits, frames, mode="level", max_events=3)["frame_number"].tolist()
        [1, 2, 4]
    """
    if mode not in ("edge", "level"):
        raise ValueError(f"fire: mode must be 'edge' or 'level', not {mode!r}")
    if not len(hits):
        return empty_hits()
    h = _ordered(hits, frames, sampled)
    g = h["_g"].to_numpy()
    if mode == "edge":
        o = h["_ord"].to_numpy()
        new_subject = np.r_[True, g[1:] != g[:-1]]
        gap = np.r_[0, np.diff(o)]
        h = h[new_subject | (gap > 1)]  # same frame (gap 0) or next frame (1) continue the run
    if cooldown_s > 0 and len(h):
        h = h[_cooldown_keep(h["pts_sec"].to_numpy(np.float64), h["_g"].to_numpy(), cooldown_s)]
    h = _time_order(h)
    if max_per_track is not None:
        tracked = h["track_id"].notna()
        nth = h.groupby(["video_id", "track_id"], sort=False).cumcount()
        h = h[~tracked | (nth < max_per_track)]
    if max_events is not None:
        h = h.iloc[:max_events]
    return h.reset_index(drop=True)


# --------------------------------------------------------------------------- composition


def _keys(per_track: bool) -> list[str]:
    return [*FRAME_KEY, "track_id"] if per_track else list(FRAME_KEY)


def _check_track_level(children: tuple[pd.DataFrame, ...], per_track: bool, name: str) -> None:
    if per_track:
        for i, c in enumerate(children):
            if c["track_id"].isna().any():
                raise ValueError(f"{name}(per_track=True): child {i} has frame-level hits")


def _combine(children: tuple[pd.DataFrame, ...], per_track: bool, need: int) -> pd.DataFrame:
    """Keys held by at least ``need`` children, one hit per key (earliest pts among the
    children's hits there; detection ids of all children, deduplicated, in order)."""
    if not children:
        raise ValueError("all_of/any_of need at least one child rule's hits")
    parts = []
    for i, c in enumerate(children):
        c = conform_hits(c)
        c["_child"] = i
        parts.append(c)
    allh = pd.concat(parts, ignore_index=True)
    if not len(allh):
        return empty_hits()
    keys = _keys(per_track)
    if not per_track:
        allh["track_id"] = pd.array([pd.NA] * len(allh), dtype="Int64")
    allh["_k"] = allh.groupby(keys, sort=False).ngroup().to_numpy(np.int64)
    n_children = allh.groupby("_k")["_child"].nunique()
    ok = n_children.index[n_children.to_numpy() >= need]
    sel = allh[allh["_k"].isin(ok)].sort_values(["_k", "pts_sec", "_child"], kind="stable")
    if not len(sel):
        return empty_hits()
    ids = sel[["_k", "detection_ids"]].explode("detection_ids").dropna()
    ids = ids.drop_duplicates()
    code = pd.Categorical(ids["_k"], categories=ok).codes.astype(np.int64)
    lists = id_lists(code, ids["detection_ids"].to_numpy(), len(ok))
    out = sel.drop_duplicates("_k").set_index("_k").loc[ok].reset_index(drop=True)
    out["value"] = n_children.loc[ok].to_numpy(np.float64)
    out["direction"] = pd.NA
    out["detection_ids"] = lists
    return _time_order(out)


def all_of(*hits: pd.DataFrame, per_track: bool = False) -> pd.DataFrame:
    """Frames where every child has a hit (``per_track=True``: (frame, track) pairs where every
    child has a hit on that track; all children must then be track-level).

    ``value`` = number of children; ``pts_sec`` = the earliest child hit in the frame.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> a, b = frames.iloc[[1, 2, 3]], frames.iloc[[2, 3, 4]]
        >>> all_of(a, b)[["frame_number", "value"]]
           frame_number  value
        0             2    2.0
        1             3    2.0
        >>> a, b = a.assign(track_id=7), b.assign(track_id=[7, 8, 7])
        >>> all_of(a, b, per_track=True)[["frame_number", "track_id", "value"]]
           frame_number  track_id  value
        0             2         7    2.0
    """
    _check_track_level(hits, per_track, "all_of")
    return _combine(hits, per_track, need=len(hits))


def any_of(*hits: pd.DataFrame, per_track: bool = False) -> pd.DataFrame:
    """Frames (or (frame, track) pairs) where at least one child has a hit; ``value`` = how
    many children hold there.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> any_of(frames.iloc[[1, 2, 3]], frames.iloc[[2, 3, 4]])[["frame_number", "value"]]
           frame_number  value
        0             1    1.0
        1             2    2.0
        2             3    2.0
        3             4    1.0
    """
    _check_track_level(hits, per_track, "any_of")
    return _combine(hits, per_track, need=1)


def not_of(
    hits: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    per_track: bool = False,
    universe: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Sampled frames where the child has no hit (``value`` 1, no detections).

    With ``per_track=True``, the (frame, track) pairs of ``universe`` (a table with
    ``video_id, frame_number, pts_sec, captured_at, track_id``: usually the rule's detections)
    where the child has no hit on that track.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> not_of(frames.iloc[[1, 2]], frames)["frame_number"].tolist()
        [0, 3, 4, 5]
    """
    keys = _keys(per_track)
    if per_track:
        if universe is None:
            raise ValueError("not_of(per_track=True) needs the universe of (frame, track) pairs")
        _check_track_level((hits,), True, "not_of")
        base = universe[universe["track_id"].notna()][[*FRAME_KEY, "pts_sec", "captured_at"]]
        base = base.assign(track_id=universe["track_id"]).drop_duplicates(keys)
    else:
        base = sampled_frames(frames)
    base = base.copy()
    base["track_id"] = base["track_id"].astype("Int64") if per_track else pd.NA
    present = pd.MultiIndex.from_frame(conform_hits(hits)[keys])
    mask = ~pd.MultiIndex.from_frame(base[keys]).isin(present)
    out = base[mask][["video_id", "frame_number", "pts_sec", "captured_at", "track_id"]]
    return _time_order(out.reset_index(drop=True))


def intervals(hits: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Run-length encoding of hits: one row per run of consecutive sampled frames per subject.

    Columns: ``video_id, track_id, direction, start_frame, end_frame, start_pts, end_pts,
    n_frames, duration_s`` (``end_pts - start_pts``; 0 for a single frame).

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> runs = intervals(frames.iloc[[1, 2, 4]], frames)
        >>> runs[["start_frame", "end_frame", "n_frames", "duration_s"]]
           start_frame  end_frame  n_frames  duration_s
        0            1          2         2         1.0
        1            4          4         1         0.0
    """
    cols = [
        *_SUBJECT,
        "start_frame",
        "end_frame",
        "start_pts",
        "end_pts",
        "n_frames",
        "duration_s",
    ]
    if not len(hits):
        return pd.DataFrame(columns=cols)
    h = _run_ids(_ordered(hits, frames))
    # Several hits on one frame (sub-frame crossings) count once in n_frames.
    agg = h.groupby("_run", sort=True).agg(
        video_id=("video_id", "first"),
        track_id=("track_id", "first"),
        direction=("direction", "first"),
        start_frame=("frame_number", "first"),
        end_frame=("frame_number", "last"),
        start_pts=("pts_sec", "first"),
        end_pts=("pts_sec", "last"),
        n_frames=("_ord", "nunique"),
    )
    agg["duration_s"] = agg["end_pts"] - agg["start_pts"]
    return agg.reset_index(drop=True)[cols]


def _run_ids(h: pd.DataFrame) -> pd.DataFrame:
    """``h`` (from :func:`_ordered`) with ``_run``: id of its run of consecutive frames."""
    g = h["_g"].to_numpy()
    o = h["_ord"].to_numpy()
    new_run = np.r_[True, (g[1:] != g[:-1]) | (np.diff(o) > 1)]
    return h.assign(_run=np.cumsum(new_run))


def for_at_least(hits: pd.DataFrame, frames: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """Hits from the moment the condition has held continuously for ``seconds``: a hit is kept
    when ``pts - pts(start of its run) >= seconds`` (a run = consecutive sampled frames with a
    hit, per subject). ``value`` = how long it has held.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> for_at_least(frames.iloc[[1, 2, 3, 5]], frames, 2)[["frame_number", "value"]]
           frame_number  value
        0             3    2.0
    """
    if not len(hits):
        return empty_hits()
    h = _run_ids(_ordered(hits, frames))
    held = h["pts_sec"] - h.groupby("_run")["pts_sec"].transform("first")
    h = h[(held >= seconds - _EPS).to_numpy()].copy()
    h["value"] = held[h.index]
    return _time_order(h).reset_index(drop=True)


def sequence(
    a: pd.DataFrame, b: pd.DataFrame, *, within_s: float, per_track: bool = True
) -> pd.DataFrame:
    """B after A within W: every B hit with an A hit strictly earlier (pts) by at most
    ``within_s`` seconds, in the same video and, with ``per_track=True``, the same track.

    One row per qualifying B hit (its frame, track and direction), ``value`` = seconds since
    the latest such A hit, ``detection_ids`` = that A hit's ids then B's.

    Example:
        >>> frames = pd.DataFrame({"video_id": "v", "frame_number": range(6), "pts_sec": np.arange(6.0),
        ...                        "captured_at": pd.Timestamp("2026-05-04", tz="UTC")})
        >>> a = frames.iloc[[1]].assign(track_id=7, detection_ids=[["a1"]])
        >>> b = frames.iloc[[3, 5]].assign(track_id=7, detection_ids=[["b3"], ["b5"]])
        >>> sequence(a, b, within_s=3)[["frame_number", "track_id", "value", "detection_ids"]]
           frame_number  track_id  value detection_ids
        0             3         7    2.0      [a1, b3]

        (``b5`` comes 4 s after ``a1``, too late for ``within_s=3``.)
    """
    a = conform_hits(a)
    b = conform_hits(b)
    if per_track:
        a = a[a["track_id"].notna()]
        b = b[b["track_id"].notna()]
    if not len(a) or not len(b):
        return empty_hits()
    by = ["video_id", "track_id"] if per_track else ["video_id"]
    left = b.reset_index(drop=True).assign(_b=lambda x: np.arange(len(x)))
    right = a[[*by, "pts_sec", "detection_ids"]].rename(
        columns={"pts_sec": "_a_pts", "detection_ids": "_a_ids"}
    )
    if per_track:  # merge_asof wants plain keys
        left["track_id"] = left["track_id"].astype("int64")
        right = right.assign(track_id=right["track_id"].astype("int64"))
    m = pd.merge_asof(
        left.sort_values("pts_sec", kind="stable"),
        right.sort_values("_a_pts", kind="stable"),
        left_on="pts_sec",
        right_on="_a_pts",
        by=by,
        direction="backward",
        allow_exact_matches=False,  # "then": A strictly before B
        tolerance=float(within_s) + _EPS,
    )
    m = m[m["_a_pts"].notna()].sort_values("_b").copy()
    m["value"] = m["pts_sec"] - m["_a_pts"]
    m["detection_ids"] = m["_a_ids"] + m["detection_ids"]  # element-wise list concatenation
    return _time_order(m).reset_index(drop=True)


__all__ = [
    "all_of",
    "any_of",
    "fire",
    "for_at_least",
    "intervals",
    "not_of",
    "sequence",
]
