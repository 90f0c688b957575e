"""Spatial triggers: cross, zone, intersection, distance, direction, stopped, speed.

Each takes ``dets`` (the detections that passed the rule's criteria and area, DETECTIONS
columns), ``frames`` (every sampled frame) and parameters, and returns hits
(:mod:`roadlens.ode.hits`). Everything is whole-column numpy/pandas: no Python loop per
detection or per frame. Track triggers sort by ``(video_id, track_id, pts_sec)`` once and
compare neighbours; pair triggers merge A and B within ``(video_id, frame_number)``.

Example:
    >>> import pandas as pd
    >>> from roadlens.ode.geometry import Line
    >>> dets = pd.DataFrame({
    ...     "detection_id": ["a", "b"], "video_id": "v", "track_id": [1, 1],
    ...     "frame_number": [0, 1], "pts_sec": [0.0, 1.0],
    ...     "captured_at": pd.to_datetime([0, 1], unit="s", utc=True),
    ...     "x1": [0.0, 0.0], "y1": [0.0, 20.0], "x2": [10.0, 10.0], "y2": [5.0, 25.0],
    ...     "frame_width": 100, "frame_height": 100})
    >>> hits = cross(dets, None, Line((0, 10), (100, 10)))
    >>> hits[["pts_sec", "direction"]].values.tolist()
    [[0.25, 'in']]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from roadlens.ode.geometry import Line, Polygon, Polyline, anchor_points
from roadlens.ode.hits import conform_hits, empty_hits

__all__ = [
    "HomographyError",
    "TrackTable",
    "as_homography",
    "cross",
    "crossing_arrays",
    "crossing_arrays_to_rows",
    "crossing_rows",
    "direction",
    "distance",
    "homography_from_points",
    "intersection",
    "row_hits",
    "sort_hits",
    "speed",
    "stopped",
    "to_ground",
    "zone",
]


# --- shared helpers ------------------------------------------------------------------------

_TRACK_COLS = [
    "detection_id",
    "video_id",
    "frame_number",
    "pts_sec",
    "captured_at",
    "track_id",
    "x1",
    "y1",
    "x2",
    "y2",
    "frame_width",
    "frame_height",
]


def _tracks(dets: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Tracked rows sorted by (video, track, pts) and an int key per (video, track)."""
    # Only the columns track triggers read: sorting a wide table moves every column.
    cols = [c for c in _TRACK_COLS if c in dets]
    t = TrackTable(dets)
    df = dets.iloc[t.pos][cols].reset_index(drop=True)
    return df, t.key


def _video_codes(videos: np.ndarray) -> np.ndarray:
    """Sorted integer codes of ``videos``; one comparison pass when it is a single video
    (the stage's case), which is 4x cheaper than hashing every id."""
    if len(videos) and bool((videos == videos[0]).all()):
        return np.zeros(len(videos), dtype=np.int64)
    return pd.factorize(videos, sort=True)[0]


class TrackTable:
    """The tracked rows of a detections table in track order, as numpy columns.

    ``pos``: row positions in ``dets`` of the tracked detections, sorted by (video, track,
    pts) (stable, so ties keep the input order); ``key``: a code per (video, track),
    non-decreasing along ``pos``. Built once per detections table (the engine shares one
    across all its rules) and narrowed per rule with :meth:`subset`; columns and anchors are
    gathered lazily and cached, so every rule reuses the sort and the anchor arithmetic.
    """

    _rows: np.ndarray
    """Set by :meth:`subset` on a narrowed table: its rows' positions in the root's order."""

    def __init__(
        self,
        dets: pd.DataFrame,
        *,
        pos: np.ndarray | None = None,
        key: np.ndarray | None = None,
        parent: TrackTable | None = None,
    ) -> None:
        self.dets = dets
        self.parent = parent
        # Columns (an array, or None when absent) and anchors (a (u, v) pair of arrays).
        self._cache: dict[object, Any] = {}
        if pos is not None and key is not None:
            self.pos, self.key = pos, key
            return
        tracked = np.flatnonzero(dets["track_id"].notna().to_numpy())
        video = _video_codes(dets["video_id"].to_numpy()[tracked])
        track = dets["track_id"].to_numpy()[tracked].astype(np.int64)
        pts = dets["pts_sec"].to_numpy(np.float64)[tracked]
        order = np.lexsort((pts, track, video))  # stable, like sort_values(kind="stable")
        self.pos = tracked[order]
        v, t = video[order], track[order]
        new = np.r_[True, (v[1:] != v[:-1]) | (t[1:] != t[:-1])] if len(order) else order > 0
        self.key = np.cumsum(new) - 1

    def __len__(self) -> int:
        return len(self.pos)

    def subset(self, mask: np.ndarray) -> TrackTable:
        """The rows whose detection passes ``mask`` (a boolean mask over ``dets``)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.all():  # the common case (no criteria): no 1M-row gather
            return self
        keep = mask[self.pos]
        if keep.all():
            return self
        rows = np.flatnonzero(keep)
        root = self if self.parent is None else self.parent
        sub = TrackTable(self.dets, pos=self.pos[rows], key=self.key[rows], parent=root)
        sub._rows = rows if self.parent is None else self._rows[rows]  # rows of the root
        return sub

    def column(self, name: str, dtype: object = None) -> np.ndarray | None:
        """Column ``name`` of the tracked rows, in track order (None when absent)."""
        ck = (name, dtype)
        if ck not in self._cache:
            if self.parent is not None:
                full = self.parent.column(name, dtype)
                self._cache[ck] = None if full is None else full[self._rows]
            elif name not in self.dets:
                self._cache[ck] = None
            else:
                col = self.dets[name].to_numpy(dtype=dtype) if dtype else self.dets[name].to_numpy()
                self._cache[ck] = col[self.pos]
        return self._cache[ck]

    def wh(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        return self.column("frame_width", np.float64), self.column("frame_height", np.float64)

    def anchor(self, anchor: str) -> tuple[np.ndarray, np.ndarray]:
        """The anchor point ``(u, v)`` of every row (``any``: the box centre)."""
        point = "center" if anchor == "any" else anchor
        ck = ("anchor", point)
        if ck not in self._cache:
            if self.parent is not None:
                u, v = self.parent.anchor(point)
                self._cache[ck] = (u[self._rows], v[self._rows])
            else:
                x1, y1, x2, y2 = (self.column(c, np.float64) for c in ("x1", "y1", "x2", "y2"))
                assert x1 is not None and y1 is not None and x2 is not None and y2 is not None
                self._cache[ck] = anchor_points(x1, y1, x2, y2, point)
        return self._cache[ck]


def _wh(df: pd.DataFrame) -> tuple[np.ndarray | None, np.ndarray | None]:
    if "frame_width" not in df:
        return None, None
    return df["frame_width"].to_numpy(np.float64), df["frame_height"].to_numpy(np.float64)


def _uv(df: pd.DataFrame, anchor: str) -> tuple[np.ndarray, np.ndarray]:
    # "any" is an area test, not a point; motion and lines use the box centre for it.
    point = "center" if anchor == "any" else anchor
    return anchor_points(df["x1"], df["y1"], df["x2"], df["y2"], point)


def _ids(*cols: pd.Series | np.ndarray) -> list[list[str]]:
    return np.column_stack([np.asarray(c, dtype=object) for c in cols]).tolist()


def row_hits(
    df: pd.DataFrame, value: np.ndarray | float = 1.0, direction: object = None
) -> pd.DataFrame:
    """One hit per detection row of ``df``, in row order, conformed to ``HIT_COLUMNS``.

    ``df`` needs ``detection_id``, ``video_id``, ``frame_number``, ``pts_sec``,
    ``captured_at`` and ``track_id``; ``value`` (one per row, or one for all) and
    ``direction`` (one for all; None: null) fill the hit columns of those names.

    >>> d = pd.DataFrame({"detection_id": ["a", "b"], "video_id": "v", "track_id": 7,
    ...     "frame_number": [3, 0], "pts_sec": [0.3, 0.0],
    ...     "captured_at": pd.to_datetime([0.3, 0.0], unit="s", utc=True)})
    >>> row_hits(d, np.array([2.0, 1.0]))[["frame_number", "value", "detection_ids"]]
       frame_number  value detection_ids
    0             3    2.0           [a]
    1             0    1.0           [b]
    """
    if df.empty:
        return empty_hits()
    out = pd.DataFrame(
        {
            "video_id": df["video_id"].to_numpy(),
            "frame_number": df["frame_number"].to_numpy(),
            "pts_sec": df["pts_sec"].to_numpy(),
            "captured_at": df["captured_at"].array,
            "track_id": df["track_id"].to_numpy(),
            "value": value,
            "direction": direction if direction is not None else pd.NA,
            "detection_ids": _ids(df["detection_id"]),
        }
    )
    return conform_hits(out)


def sort_hits(hits: pd.DataFrame) -> pd.DataFrame:
    """``hits`` in the order triggers return them: by video, time, frame and track (stable;
    frame-level hits, with a null track, first), on a fresh 0..n-1 index.

    >>> hits = pd.DataFrame({"video_id": "v", "pts_sec": [0.3, 0.0, 0.0],
    ...                      "frame_number": [3, 0, 0], "track_id": [1, 2, None]})
    >>> sort_hits(hits)["track_id"].tolist()
    [nan, 2.0, 1.0]
    """
    order = ["video_id", "pts_sec", "frame_number", "track_id"]
    return hits.sort_values(order, kind="stable", na_position="first").reset_index(drop=True)


# --- cross -----------------------------------------------------------------------------------


def _crossings(
    key: np.ndarray,
    pts: np.ndarray,
    s: np.ndarray,
    hysteresis_px: float,
    hysteresis_s: float,
) -> dict[str, np.ndarray]:
    """Confirmed side changes of a signed-distance signal ``s``, rows sorted by (key, pts).

    Returns arrays over crossings: ``k`` (row before the crossing; ``k + 1`` is after),
    ``f`` (fraction of the way from row k to k+1), ``t`` (interpolated time) and
    ``side`` (+1: ended on the positive side).
    """
    empty = {n: np.array([], dtype=t) for n, t in (("k", int), ("f", float), ("t", float))}
    empty["side"] = np.array([], dtype=int)
    # Decisive samples are further than the hysteresis band from the line; samples in the
    # band never change the side, so jitter on the line cannot double count.
    state = (s > hysteresis_px).view(np.int8) - (s < -hysteresis_px).view(np.int8)
    same = key[1:] == key[:-1]  # row i and i + 1 belong to the same track
    decisive = np.count_nonzero(state)
    if decisive < 2:
        return empty
    every = decisive == s.size  # every sample decisive (typical without hysteresis)
    if every:  # the decisive samples are the rows themselves: no gathers
        dk, ds, same_dec = key, state, same
    else:
        dec = np.flatnonzero(state)
        dk, ds = key[dec], state[dec]
        same_dec = dk[1:] == dk[:-1]
    cand = np.flatnonzero(same_dec & (ds[1:] != ds[:-1]))
    if cand.size == 0:
        return empty
    a, side, ck = (cand if every else dec[cand]), ds[cand + 1], dk[cand + 1]
    # The crossing instant: the first raw sign change at or after the last decisive sample
    # on the old side (one exists, since s[a] and s[b] have opposite signs).
    if every and hysteresis_px == 0:
        change = cand  # no zero and no NaN in s: sign(s) is the state, its changes are cand
    else:
        sg = np.sign(s)
        change = np.flatnonzero(same & (sg[1:] != sg[:-1]))
    k = change[np.searchsorted(change, a)]
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.clip(s[k] / (s[k] - s[k + 1]), 0.0, 1.0)
    t = pts[k] + f * (pts[k + 1] - pts[k])
    # Confirmation by the future: a crossing is refuted when the track crosses back within
    # hysteresis_s (the next candidate of the same track is too soon). A track that ends
    # on the new side confirms it, so a vehicle leaving the view right after the line counts.
    if hysteresis_s > 0:
        same_next = np.r_[ck[1:] == ck[:-1], False]
        gap = np.r_[t[1:] - t[:-1], np.inf]
        ok = ~(same_next & (gap < hysteresis_s))
        a, side, ck, k, f, t = (x[ok] for x in (a, side, ck, k, f, t))
    if side.size == 0:
        return empty
    # Side sequence per track starts at the first decisive side; a confirmed crossing counts
    # only when it changes the side (a refuted excursion and its return cancel out).
    # First decisive sample of each track (keys are non-decreasing: no sort needed).
    first = np.flatnonzero(np.r_[True, ~same_dec])
    initial = np.zeros(key.max() + 1, dtype=int)
    initial[dk[first]] = ds[first]
    prev = np.r_[0, side[:-1]]
    new_track = np.r_[True, ck[1:] != ck[:-1]]
    prev = np.where(new_track, initial[ck], prev)
    keep = side != prev
    return {"k": k[keep], "f": f[keep], "t": t[keep], "side": side[keep]}


def _area_crossing_arrays(
    t: TrackTable,
    u: np.ndarray,
    v: np.ndarray,
    area: Line | Polygon,
    hysteresis_px: float,
    hysteresis_s: float,
) -> dict[str, np.ndarray]:
    """Crossings of one line or polygon as arrays: ``before``/``after`` (rows in ``t.dets``
    of the samples around it), ``f``, ``t`` (interpolated time), ``side``, ``key``."""
    w, h = t.wh()
    key = t.key
    s = area.signed_distance(u, v, w, h)
    pts = t.column("pts_sec", np.float64)
    assert pts is not None  # TrackTable reads pts_sec to sort: the column exists
    c = _crossings(key, pts, s, hysteresis_px, hysteresis_s)
    k, f = c["k"], c["f"]
    if isinstance(area, Line) and k.size:
        # Segment bounds at the interpolated crossing point (not at either sample).
        uc, vc = u[k] + f * (u[k + 1] - u[k]), v[k] + f * (v[k + 1] - v[k])
        wk = None if w is None else w[k]
        hk = None if h is None else h[k]
        inside = area.within_bounds(uc, vc, wk, hk)
        c = {n: arr[inside] for n, arr in c.items()}
        k = c["k"]
    return {
        "before": t.pos[k],
        "after": t.pos[k + 1],
        "f": c["f"],
        "t": c["t"],
        "side": c["side"],
        "key": key[k + 1],
    }


def crossing_arrays_to_rows(d: pd.DataFrame, c: dict[str, np.ndarray]) -> pd.DataFrame:
    """Crossing arrays (:func:`crossing_arrays`, possibly of several rules concatenated) as
    raw hit rows (hit columns before :func:`roadlens.ode.hits.conform_hits`) with ``_key``
    (the track's key) and ``_primary`` (row in ``d`` of the event's detection); only the
    rows of ``d`` that the crossings name are read. See :func:`crossing_arrays`."""
    before, after, f = c["before"], c["after"], c["f"]
    n = len(before)
    cap = d["captured_at"]
    if n:
        cap_ns = cap.iloc[np.r_[before, after]].dt.as_unit("ns").astype("int64").to_numpy()
        cap_k, cap_k1 = cap_ns[:n], cap_ns[n:]
    else:
        cap_k = cap_k1 = np.array([], dtype=np.int64)
    cap_t = cap_k + np.round(f * (cap_k1 - cap_k)).astype(np.int64)
    ids_k = d["detection_id"].iloc[before].to_numpy(dtype=object)
    ids_k1 = d["detection_id"].iloc[after].to_numpy(dtype=object)
    frame_k = d["frame_number"].iloc[before].to_numpy()
    frame_k1 = d["frame_number"].iloc[after].to_numpy()
    return pd.DataFrame(
        {
            "video_id": d["video_id"].iloc[after].to_numpy(),
            "frame_number": frame_k1,
            "pts_sec": c["t"],
            "captured_at": pd.to_datetime(cap_t, utc=True),
            "track_id": d["track_id"].iloc[after].to_numpy(),
            "value": 1.0,
            "direction": np.where(c["side"] > 0, "in", "out"),
            "detection_ids": _ids(ids_k, ids_k1),
            "_key": c["key"],
            # The event's detection (its own frame: the first sample on the new side).
            "_primary": np.where(frame_k == frame_k1, before, after),
        }
    )


def _area_crossing_rows(
    t: TrackTable,
    u: np.ndarray,
    v: np.ndarray,
    area: Line | Polygon,
    hysteresis_px: float,
    hysteresis_s: float,
) -> pd.DataFrame:
    arrays = _area_crossing_arrays(t, u, v, area, hysteresis_px, hysteresis_s)
    return crossing_arrays_to_rows(t.dets, arrays)


def crossing_arrays(
    t: TrackTable,
    area: Line | Polyline | Polygon,
    anchor: str,
    hysteresis_px: float = 0.0,
    hysteresis_s: float = 0.0,
    count: str = "every",
    directions: Sequence[str] = ("in", "out"),
) -> dict[str, np.ndarray] | None:
    """:func:`cross`'s crossings of the tracks ``t`` as arrays, when no table work is
    needed (one line or polygon, ``count="every"``, both directions); None otherwise (then
    use :func:`crossing_rows`).

    The arrays, one entry per crossing: ``before`` and ``after`` (rows in ``t.dets`` of the
    samples around it), ``f`` (fraction of the way from before to after), ``t``
    (interpolated time), ``side`` (+1: ended on the ``in`` side) and ``key`` (the track's
    key). :func:`crossing_arrays_to_rows` turns them into hit rows.

    >>> from roadlens.ode.geometry import Line
    >>> d = pd.DataFrame({"detection_id": ["a", "b"], "video_id": "v", "track_id": 1,
    ...     "frame_number": [0, 1], "pts_sec": [0.0, 1.0],
    ...     "captured_at": pd.to_datetime([0, 1], unit="s", utc=True),
    ...     "x1": 0.0, "x2": 10.0, "y1": [0.0, 20.0], "y2": [5.0, 25.0]})
    >>> arrays = crossing_arrays(TrackTable(d), Line((0, 10), (100, 10)), "bottom_center")
    >>> {n: arrays[n].tolist() for n in ("before", "after", "f", "side")}
    {'before': [0], 'after': [1], 'f': [0.25], 'side': [1]}
    >>> crossing_arrays_to_rows(d, arrays)[["pts_sec", "direction", "_primary"]].values.tolist()
    [[0.25, 'in', 1]]
    """
    if isinstance(area, Polyline) or count != "every" or not {"in", "out"} <= set(directions):
        return None
    if not len(t):
        return {n: np.array([], dtype=np.int64) for n in ("before", "after", "key", "side")} | {
            "f": np.array([], dtype=float),
            "t": np.array([], dtype=float),
        }
    u, v = t.anchor(anchor)
    return _area_crossing_arrays(t, u, v, area, hysteresis_px, hysteresis_s)


def cross(
    dets: pd.DataFrame,
    frames: pd.DataFrame | None,
    area: Line | Polyline | Polygon,
    *,
    anchor: str = "bottom_center",
    hysteresis_px: float = 0.0,
    hysteresis_s: float = 0.0,
    count: str = "every",
    directions: Sequence[str] = ("in", "out"),
    tracks: TrackTable | None = None,
) -> pd.DataFrame:
    """Crossings of a line, polyline or polygon boundary by each track's anchor.

    ``in`` means the track ended on the line's ``in_side`` (or inside the polygon). A hit's
    ``pts_sec`` and ``captured_at`` are the interpolated crossing instant; ``frame_number``
    is the first sample on the new side; ``detection_ids`` the samples before and after.
    ``count="once"`` keeps each track's first crossing. ``tracks``: a :class:`TrackTable`
    of ``dets`` already built (the engine shares one across rules); the same results.
    """
    found = crossing_rows(
        TrackTable(dets) if tracks is None else tracks,
        area,
        anchor,
        hysteresis_px,
        hysteresis_s,
        count,
        directions,
    )
    if found is None or found.empty:
        return empty_hits()
    return sort_hits(conform_hits(found.drop(columns=["_key", "_primary"])))


def crossing_rows(
    t: TrackTable,
    area: Line | Polyline | Polygon,
    anchor: str,
    hysteresis_px: float = 0.0,
    hysteresis_s: float = 0.0,
    count: str = "every",
    directions: Sequence[str] = ("in", "out"),
) -> pd.DataFrame | None:
    """:func:`cross`'s crossings of the tracks ``t`` before the final sort and dtypes, with
    ``_key`` (the track's key) and ``_primary`` (row in ``t.dets`` of the event's
    detection); None when nothing is tracked. Any area, count and directions.

    >>> from roadlens.ode.geometry import Polyline
    >>> d = pd.DataFrame({"detection_id": ["a", "b"], "video_id": "v", "track_id": 1,
    ...     "frame_number": [0, 1], "pts_sec": [0.0, 1.0],
    ...     "captured_at": pd.to_datetime([0, 1], unit="s", utc=True),
    ...     "x1": 0.0, "x2": 10.0, "y1": [0.0, 20.0], "y2": [5.0, 25.0]})
    >>> rows = crossing_rows(TrackTable(d), Polyline([(0, 10), (50, 10), (100, 10)]), "center")
    >>> rows[["frame_number", "direction", "detection_ids", "_primary"]].values.tolist()
    [[1, 'in', ['a', 'b'], 1]]
    """
    if not len(t):
        return None
    u, v = t.anchor(anchor)
    if isinstance(area, Polyline):
        # Each segment is its own line (bounded, same in_side); a crossing exactly at a
        # vertex is reported once.
        parts = [
            _area_crossing_rows(t, u, v, seg, hysteresis_px, hysteresis_s) for seg in area.segments
        ]
        found = pd.concat(parts, ignore_index=True)
        found = found.sort_values(["_key", "pts_sec"], kind="stable")
        found = found.drop_duplicates(["_key", "frame_number", "direction"])
    else:
        found = _area_crossing_rows(t, u, v, area, hysteresis_px, hysteresis_s)
    if not {"in", "out"} <= set(directions):
        found = found[found["direction"].isin(list(directions))]
    if count == "once":
        found = found.sort_values(["_key", "pts_sec"], kind="stable").drop_duplicates("_key")
    return found


# --- zone ------------------------------------------------------------------------------------


def zone(
    dets: pd.DataFrame,
    frames: pd.DataFrame | None,
    area: Polygon,
    *,
    anchor: str = "bottom_center",
    mode: Literal["include", "exclude"] | None = None,
) -> pd.DataFrame:
    """One hit per detection whose anchor (or, for ``"any"``, any part of the box) passes
    the polygon: inside it (``include``) or outside it (``exclude``). With edge firing per
    track, the events are zone entries."""
    if dets.empty:
        return empty_hits()
    w, h = _wh(dets)
    ok = area.selects_boxes(dets["x1"], dets["y1"], dets["x2"], dets["y2"], anchor, w, h, mode=mode)
    return sort_hits(row_hits(dets[ok]))


# --- A x B pairs -------------------------------------------------------------------------------


def _pairs(dets: pd.DataFrame, class_a: Sequence[str], class_b: Sequence[str]) -> pd.DataFrame:
    """Every (A, B) pair of distinct detections in the same frame of the same video.

    A merge on (video_id, frame_number) costs sum over frames of |A_f| x |B_f| rows, not
    |A| x |B|. When a class is in both lists each unordered pair is kept once.
    """
    cols = ["detection_id", "video_id", "frame_number", "pts_sec", "captured_at", "track_id"]
    cols += ["class_name", "x1", "y1", "x2", "y2"]
    a = dets.loc[dets["class_name"].isin(class_a), cols]
    b = dets.loc[dets["class_name"].isin(class_b), cols]
    b = b.drop(columns=["pts_sec", "captured_at"])
    p = a.merge(b, on=["video_id", "frame_number"], suffixes=("_a", "_b"))
    p = p[p["detection_id_a"] != p["detection_id_b"]]
    both = p["class_name_a"].isin(class_b) & p["class_name_b"].isin(class_a)
    p = p[~both | (p["detection_id_a"] < p["detection_id_b"])]
    return p.reset_index(drop=True)


def _pair_hits(p: pd.DataFrame, value: np.ndarray) -> pd.DataFrame:
    if p.empty:
        return empty_hits()
    out = pd.DataFrame(
        {
            "video_id": p["video_id"].to_numpy(),
            "frame_number": p["frame_number"].to_numpy(),
            "pts_sec": p["pts_sec"].to_numpy(),
            "captured_at": p["captured_at"].array,
            "track_id": p["track_id_a"].to_numpy(),
            "value": value,
            "detection_ids": _ids(p["detection_id_a"], p["detection_id_b"]),
        }
    )
    return sort_hits(conform_hits(out))


def intersection(
    dets: pd.DataFrame,
    frames: pd.DataFrame | None,
    *,
    class_a: Sequence[str],
    class_b: Sequence[str],
    measure: str = "area",
    min_value: float = 0.0,
) -> pd.DataFrame:
    """A hit per (A, B) pair whose boxes intersect in a frame.

    ``area``: overlap area in px² > 0 and >= ``min_value`` (containment counts);
    ``iou``: intersection over union > 0 and >= ``min_value``; ``contains``: one box lies
    entirely inside the other (value 1). The hit's track is A's.
    """
    p = _pairs(dets, class_a, class_b)
    if p.empty:
        return empty_hits()
    g = {c: p[c].to_numpy(np.float64) for c in p.columns if c[:2] in ("x1", "y1", "x2", "y2")}
    iw = np.minimum(g["x2_a"], g["x2_b"]) - np.maximum(g["x1_a"], g["x1_b"])
    ih = np.minimum(g["y2_a"], g["y2_b"]) - np.maximum(g["y1_a"], g["y1_b"])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (g["x2_a"] - g["x1_a"]) * (g["y2_a"] - g["y1_a"])
    area_b = (g["x2_b"] - g["x1_b"]) * (g["y2_b"] - g["y1_b"])
    if measure == "area":
        value = inter
    elif measure == "iou":
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.nan_to_num(inter / (area_a + area_b - inter))
    elif measure == "contains":
        value = ((inter >= area_a) | (inter >= area_b)).astype(np.float64) * (inter > 0)
    else:
        raise ValueError(f"unknown intersection measure {measure!r}")
    ok = (value > 0) & (value >= min_value)
    return _pair_hits(p[ok], value[ok])


def distance(
    dets: pd.DataFrame,
    frames: pd.DataFrame | None,
    *,
    class_a: Sequence[str],
    class_b: Sequence[str],
    anchor: str = "bottom_center",
    min: float = 0.0,  # the rule file's own names
    max: float | None = None,
    unit: str = "px",
    fire: str = "inside",
) -> pd.DataFrame:
    """A hit per (A, B) pair whose anchor distance is inside (or outside) [min, max].

    ``unit``: ``px``, or ``pct_width``/``pct_height`` = percent of A's box width/height.
    """
    p = _pairs(dets, class_a, class_b)
    if p.empty:
        return empty_hits()
    point = "center" if anchor == "any" else anchor
    ua, va = anchor_points(p["x1_a"], p["y1_a"], p["x2_a"], p["y2_a"], point)
    ub, vb = anchor_points(p["x1_b"], p["y1_b"], p["x2_b"], p["y2_b"], point)
    d = np.hypot(ua - ub, va - vb)
    if unit != "px":
        lo, hi = ("x1_a", "x2_a") if unit == "pct_width" else ("y1_a", "y2_a")
        size = p[hi].to_numpy(np.float64) - p[lo].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = 100.0 * d / size
    inside = (d >= min) & (d <= (np.inf if max is None else max))
    ok = inside if fire == "inside" else ~inside
    return _pair_hits(p[ok], d[ok])


# --- motion: direction, stopped, speed -------------------------------------------------------


class HomographyError(ValueError):
    """A homography or ground-point set that cannot map pixels to the ground plane."""


# Below this ratio of smallest to largest singular value a matrix counts as singular.
_SINGULAR_RTOL = 1e-9


def homography_from_points(
    ground_points: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> np.ndarray:
    """The 3x3 homography mapping image pixels (u, v) to ground metres (x, y), from 4 or
    more ``((u, v), (x, y))`` pairs: a normalized DLT (least squares beyond 4 pairs, like
    ``cv2.findHomography(..., method=0)`` before its refinement). ``H[2, 2] == 1``.

    Raises :class:`HomographyError` for fewer than 4 pairs or a degenerate set (3 of 4
    points on one line, repeated points), where no unique plane-to-plane map exists.

    >>> H = homography_from_points([((0, 0), (0, 0)), ((10, 0), (1, 0)),
    ...                             ((10, 10), (1, 2)), ((0, 10), (0, 2))])
    >>> (np.round(H, 6) + 0.0).tolist()
    [[0.1, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 1.0]]
    """
    try:
        pts = np.asarray(ground_points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HomographyError(f"ground_points must be [[u, v], [x, y]] pairs: {exc}") from None
    if pts.ndim != 3 or pts.shape[1:] != (2, 2):
        raise HomographyError(
            f"ground_points must be a list of [[u, v], [x, y]] pairs (got shape {pts.shape})"
        )
    if len(pts) < 4:
        raise HomographyError(f"ground_points needs at least 4 pairs (got {len(pts)})")
    if not np.isfinite(pts).all():
        raise HomographyError("ground_points must be finite numbers")
    img, world = pts[:, 0], pts[:, 1]
    t_img, t_world = _hartley(img), _hartley(world)
    a = _apply(t_img, img)
    b = _apply(t_world, world)
    n = len(pts)
    one, zero = np.ones(n), np.zeros(n)
    au, av, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    rows_x = np.column_stack([au, av, one, zero, zero, zero, -bx * au, -bx * av, -bx])
    rows_y = np.column_stack([zero, zero, zero, au, av, one, -by * au, -by * av, -by])
    _, sv, vt = np.linalg.svd(np.vstack([rows_x, rows_y]))
    # 8 constraints are needed; a rank-deficient system has a family of solutions.
    if sv[7] <= _SINGULAR_RTOL * sv[0]:
        raise HomographyError(
            "ground_points are degenerate (repeated points or 3 of them on one line): "
            "no unique homography"
        )
    hn = vt[-1].reshape(3, 3)
    h = np.linalg.inv(t_world) @ hn @ t_img
    try:
        _check_homography(h)
    except HomographyError:
        raise HomographyError(
            "ground_points are degenerate (3 image or 3 world points on one line): "
            "the homography they give is singular"
        ) from None
    if abs(h[2, 2]) > 1e-12:
        h = h / h[2, 2]
    return h


def _hartley(p: np.ndarray) -> np.ndarray:
    """Similarity moving points to their centroid, mean distance sqrt(2)."""
    c = p.mean(axis=0)
    d = np.hypot(*(p - c).T).mean()
    k = np.sqrt(2) / d if d > 0 else 1.0
    return np.array([[k, 0, -k * c[0]], [0, k, -k * c[1]], [0, 0, 1.0]])


def _apply(h: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = p @ h[:, :2].T + h[:, 2]
    return q[:, :2] / q[:, 2:3]


def _check_homography(h: np.ndarray) -> None:
    sv = np.linalg.svd(h, compute_uv=False)
    if not np.isfinite(sv).all() or sv[-1] <= _SINGULAR_RTOL * sv[0]:
        raise HomographyError(
            f"homography is a singular matrix (singular values {np.round(sv, 12).tolist()}): "
            "it collapses the image onto a line or point"
        )


def as_homography(homography: Sequence[Sequence[float]]) -> np.ndarray:
    """``homography`` (3 rows of 3 numbers, row-major) as a checked float64 3x3 array.

    >>> as_homography([[0.05, 0, 0], [0, 0.1, 0], [0, 0, 1]]).shape
    (3, 3)
    """
    try:
        h = np.asarray(homography, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise HomographyError(f"homography must be 3 rows of 3 numbers: {exc}") from None
    if h.shape != (3, 3):
        raise HomographyError(f"homography must be 3 rows of 3 numbers (got shape {h.shape})")
    if not np.isfinite(h).all():
        raise HomographyError("homography must be finite numbers")
    _check_homography(h)
    return h


def to_ground(u: np.ndarray, v: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image points (u, v) mapped through homography ``h`` to ground (x, y), vectorized.

    Points on the horizon (``w == 0``) map to NaN.

    >>> x, y = to_ground(np.array([10.0]), np.array([20.0]), np.diag([0.05, 0.1, 1.0]))
    >>> float(x[0]), float(y[0])
    (0.5, 2.0)
    """
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    w = h[2, 0] * u + h[2, 1] * v + h[2, 2]
    w = np.where(w == 0, np.nan, w)
    x = (h[0, 0] * u + h[0, 1] * v + h[0, 2]) / w
    y = (h[1, 0] * u + h[1, 1] * v + h[1, 2]) / w
    return x, y


def _ground_transform(
    metres_per_pixel: float | None,
    homography: Sequence[Sequence[float]] | None,
    ground_points: Sequence[tuple[Sequence[float], Sequence[float]]] | None,
) -> tuple[float | None, np.ndarray | None]:
    """(scale, homography): at most one of the three ways to get metres may be given."""
    given = [
        n
        for n, x in (
            ("metres_per_pixel", metres_per_pixel),
            ("homography", homography),
            ("ground_points", ground_points),
        )
        if x is not None
    ]
    if len(given) > 1:
        raise ValueError(f"give at most one of metres_per_pixel, homography, ground_points "
                         f"(got {', '.join(given)})")  # fmt: skip
    if homography is not None:
        return None, as_homography(homography)
    if ground_points is not None:
        return None, homography_from_points(ground_points)
    return metres_per_pixel, None


def _motion(
    dets: pd.DataFrame, anchor: str, window_s: float, ground: np.ndarray | None = None
) -> tuple[pd.DataFrame, ...]:
    """Per tracked row: displacement (du, dv) and time dt since a reference sample of the
    same track: the previous one, or the latest at least ``window_s`` earlier. With a
    ``ground`` homography the anchors are mapped to ground metres before differencing."""
    df, key = _tracks(dets)
    u, v = _uv(df, anchor)
    if ground is not None:
        u, v = to_ground(u, v, ground)
    pts = df["pts_sec"].to_numpy(np.float64)
    first = np.r_[True, key[1:] != key[:-1]] if len(key) else np.array([], dtype=bool)
    if window_s <= 0:
        ref = np.where(first, -1, np.arange(len(df)) - 1)
    else:
        # One monotone time axis for all tracks (each track shifted past the previous one),
        # so one searchsorted finds, for every row, the latest sample >= window_s earlier.
        start = np.maximum.accumulate(np.where(first, np.arange(len(df)), 0))
        rel = pts - pts[start]
        span = (rel.max() if len(rel) else 0.0) + window_s + 1.0
        axis = key * span + rel
        # 1 µs of tolerance so 0.3 - 0.2 (= 0.0999...) still finds the sample at 0.1.
        ref = np.searchsorted(axis, axis - window_s + 1e-6, side="right") - 1
        ref = np.where(ref >= start, ref, -1)
    has = ref >= 0
    r = np.where(has, ref, 0)
    du = np.where(has, u - u[r], np.nan)
    dv = np.where(has, v - v[r], np.nan)
    dt = np.where(has, pts - pts[r], np.nan)
    return df, key, du, dv, dt


def _speed(du: np.ndarray, dv: np.ndarray, dt: np.ndarray, mpp: float | None) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        sp = np.where(dt > 0, np.hypot(du, dv) / dt, np.nan)
    return sp * (mpp or 1.0)


def direction(
    dets: pd.DataFrame,
    frames: pd.DataFrame | None,
    *,
    min_deg: float,
    max_deg: float,
    anchor: str = "bottom_center",
    min_distance_px: float = 2.0,
    window_s: float = 0.0,
) -> pd.DataFrame:
    """A hit per tracked sample whose heading since its reference sample is in
    [min_deg, max_deg] (degrees, 0 = +x/right, 90 = +y/down, ranges may wrap past 360),
    ignoring moves shorter than ``min_distance_px``. ``value`` is the heading."""
    df, _, du, dv, _ = _motion(dets, anchor, window_s)
    if df.empty:
        return empty_hits()
    heading = np.degrees(np.arctan2(dv, du)) % 360.0
    lo, hi = min_deg % 360.0, max_deg % 360.0
    if max_deg - min_deg >= 360:
        in_range = np.ones(len(df), dtype=bool)
    elif lo <= hi:
        in_range = (heading >= lo) & (heading <= hi)
    else:
        in_range = (heading >= lo) | (heading <= hi)
    ok = in_range & (np.hypot(du, dv) >= min_distance_px)
    return sort_hits(row_hits(df[ok], heading[ok]))


def speed(
    dets: pd.DataFrame,
    frames: pd.DataFrame | None,
    *,
    anchor: str = "bottom_center",
    min: float = 0.0,
    max: float | None = None,
    metres_per_pixel: float | None = None,
    homography: Sequence[Sequence[float]] | None = None,
    ground_points: Sequence[tuple[Sequence[float], Sequence[float]]] | None = None,
    window_s: float = 0.0,
) -> pd.DataFrame:
    """A hit per tracked sample whose anchor speed is in [min, max]. ``value`` is the speed:
    px/s; m/s with ``metres_per_pixel`` (one scale for the whole image); or m/s in the ground
    plane with a ``homography`` (3x3, pixels -> metres) or the ``ground_points`` it is
    computed from (4+ ``((u, v), (x, y))`` pairs). At most one of the three.

    >>> import pandas as pd
    >>> d = pd.DataFrame({"detection_id": ["a", "b"], "video_id": "v", "track_id": 1,
    ...     "frame_number": [0, 1], "pts_sec": [0.0, 1.0], "x1": 0.0, "x2": 0.0,
    ...     "y1": [0.0, 20.0], "y2": [0.0, 20.0],
    ...     "captured_at": pd.to_datetime([0, 1], unit="s", utc=True)})
    >>> speed(d, None, homography=[[0.05, 0, 0], [0, 0.1, 0], [0, 0, 1]])["value"].tolist()
    [2.0]
    """
    mpp, ground = _ground_transform(metres_per_pixel, homography, ground_points)
    df, _, du, dv, dt = _motion(dets, anchor, window_s, ground)
    if df.empty:
        return empty_hits()
    sp = _speed(du, dv, dt, mpp)
    ok = (sp >= min) & (sp <= (np.inf if max is None else max))
    return sort_hits(row_hits(df[ok], sp[ok]))


def stopped(
    dets: pd.DataFrame,
    frames: pd.DataFrame | None,
    *,
    max_speed: float,
    anchor: str = "bottom_center",
    min_seconds: float = 1.0,
    metres_per_pixel: float | None = None,
    homography: Sequence[Sequence[float]] | None = None,
    ground_points: Sequence[tuple[Sequence[float], Sequence[float]]] | None = None,
    window_s: float = 0.0,
) -> pd.DataFrame:
    """A hit per tracked sample once the track has moved slower than ``max_speed`` for at
    least ``min_seconds`` of stream time. The stop starts at the reference sample of its
    first slow sample; ``value`` is the stopped duration so far. ``max_speed`` is in px/s,
    or m/s with ``metres_per_pixel``, ``homography`` or ``ground_points`` (see
    :func:`speed`)."""
    mpp, ground = _ground_transform(metres_per_pixel, homography, ground_points)
    df, key, du, dv, dt = _motion(dets, anchor, window_s, ground)
    if df.empty:
        return empty_hits()
    slow = _speed(du, dv, dt, mpp) < max_speed  # NaN (first sample) is False
    pts = df["pts_sec"].to_numpy(np.float64)
    start_run = slow & ~np.r_[False, slow[:-1] & (key[1:] == key[:-1])]
    run = np.cumsum(start_run)
    start_t = np.where(start_run, pts - np.nan_to_num(dt), np.nan)
    # Forward-fill each run's start time to its rows (runs are contiguous).
    run_start = pd.Series(start_t).groupby(run).transform("first").to_numpy()
    dur = np.where(slow, pts - run_start, np.nan)
    ok = slow & (dur >= min_seconds)
    return sort_hits(row_hits(df[ok], dur[ok]))
