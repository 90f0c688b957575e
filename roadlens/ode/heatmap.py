"""Heat maps of the ODE stage as data: image-space and geographic grids, sparse tables, PNGs.

Everything works on whole columns (numpy ``bincount`` over cell indices); there is no Python
loop per detection or per frame. Grids are ``float32`` arrays of shape ``(h_cells, w_cells)``
(row-major like an image).

Weightings (``weight=``):

* ``"dwell"``: seconds. Every detection holds its cell for the time until its track's next
  sample (``dt``), so uneven sampling is fair; a track's last sample, an untracked detection
  or a gap over ``max_gap_s`` holds for the video's sampling step instead.
* ``"tracks"``: unique tracks per cell (a track counts once per cell, however long it stays;
  untracked detections are ignored).
* ``"events"``: hits of a rule; pass the rule's events table as ``events=`` and every event
  adds 1, split evenly across the detections in its ``detection_ids``.

With ``segments=True`` the path between two consecutive samples of a track is rasterized
(sampled at ``oversample`` points per cell length), and the segment's ``dt`` is split across
the cells it passes, so low frame rates leave no gaps. Totals are unchanged by segments.

Example:
    >>> from roadlens.synth.tables import synthetic_detections
    >>> grid = image_grid(synthetic_detections(1_000), grid=(16, 9))
    >>> grid.shape, grid.dtype.name
    ((9, 16), 'float32')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, TypeAlias

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from roadlens.ode.geometry import ANCHOR_FRACTIONS
from roadlens.schema import HEATMAPS, conform, table_version

Weight = Literal["dwell", "tracks", "events"]
Normalize = Literal["frames", "seconds"] | None
Frame: TypeAlias = pa.Table | pd.DataFrame

# Fractions (fx, fy) of the box for the 9 DSL test points, shared with the rule geometry.
ANCHORS: dict[str, tuple[float, float]] = ANCHOR_FRACTIONS

UNITS: dict[str, str] = {"dwell": "s", "tracks": "tracks", "events": "events"}


# --------------------------------------------------------------------------- column access
def _col(table: Frame, name: str, dtype: type | np.dtype, fill: object = None) -> np.ndarray:
    """Column ``name`` of a pyarrow Table or DataFrame as a numpy array (nulls -> ``fill``)."""
    if isinstance(table, pa.Table):
        col = table.column(name)
        if fill is not None and col.null_count:
            col = pc.fill_null(col, fill)
        return np.asarray(col.to_numpy(), dtype=dtype)
    series = table[name]
    if fill is not None:
        return series.to_numpy(dtype=dtype, na_value=fill)
    return series.to_numpy(dtype=dtype)


def _single_value(table: Frame, name: str) -> bool:
    """True when column ``name`` holds one value only (the usual one-video partition)."""
    if len(table) == 0:
        return True
    if isinstance(table, pa.Table):
        col = table.column(name)
        return bool(pc.all(pc.equal(col, col[0])).as_py())
    return bool(table[name].nunique(dropna=False) <= 1)


def _codes(table: Frame, name: str) -> np.ndarray:
    """Integer codes of a (string) column; all zero when it has a single value."""
    if _single_value(table, name):
        return np.zeros(len(table), np.int64)
    if isinstance(table, pa.Table):
        encoded = pc.dictionary_encode(table.column(name)).combine_chunks()
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return pd.factorize(table[name])[0].astype(np.int64)


def _mix(a: np.ndarray, b: np.ndarray, f: float) -> np.ndarray:
    """``a + f (b - a)``, exact at the box edges (f = 0 or 1) and the centre."""
    if f == 0.0:
        return a
    if f == 1.0:
        return b
    if f == 0.5:
        return (a + b) * a.dtype.type(0.5)
    return a + a.dtype.type(f) * (b - a)


def anchor_points(
    dets: Frame, anchor: str = "bottom_center", dtype: type = np.float64
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates ``(u, v)`` of the chosen test point of every box.

    ``anchor`` is one of :data:`ANCHORS` or ``"anchor"`` for the enriched ``anchor_u/v``.
    ``dtype=np.float32`` skips the widening copy (enough precision for grid cells).

    >>> import pandas as pd
    >>> anchor_points(pd.DataFrame({"x1": [0.0], "y1": [0.0], "x2": [10.0], "y2": [4.0]}))
    (array([5.]), array([4.]))
    """
    if anchor == "anchor":
        return _col(dets, "anchor_u", dtype), _col(dets, "anchor_v", dtype)
    if anchor not in ANCHORS:
        raise ValueError(f"unknown anchor {anchor!r}; expected one of {sorted(ANCHORS)}")
    fx, fy = ANCHORS[anchor]
    x1, x2 = _col(dets, "x1", dtype), _col(dets, "x2", dtype)
    y1, y2 = _col(dets, "y1", dtype), _col(dets, "y2", dtype)
    return _mix(x1, x2, fx), _mix(y1, y2, fy)


# --------------------------------------------------------------------------- time steps
def sampling_step(pts: np.ndarray) -> float:
    """The typical time between sampled frames: median positive step of the sorted times."""
    times = np.unique(pts) if not _is_sorted(pts) else pts
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 1.0


def _is_sorted(values: np.ndarray) -> bool:
    return bool(values.size < 2 or np.all(values[1:] >= values[:-1]))


def track_steps(
    dets: Frame, *, max_gap_s: float | None = None, step: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: ``dt`` to its track's next sample, and the index of that next sample.

    Returns ``(dt, next_index)``: ``next_index`` is ``-1`` where there is no next sample
    (last sample, untracked, or a gap longer than ``max_gap_s``); there ``dt`` is the
    sampling ``step`` (default: :func:`sampling_step`).

    >>> import pandas as pd
    >>> d = pd.DataFrame({"video_id": "v", "track_id": [1, 1, 1], "pts_sec": [0.0, 0.2, 1.0]})
    >>> track_steps(d)[0].round(2).tolist()
    [0.2, 0.8, 0.5]
    """
    n = len(dets)
    pts = _col(dets, "pts_sec", np.float64)
    track = _col(dets, "track_id", np.int64, fill=-1)
    video = _codes(dets, "video_id")
    if step is None:
        step = sampling_step(pts) if video.max(initial=0) == 0 else _multi_video_step(video, pts)
    key = track if not video.any() else video * (int(track.max(initial=0)) + 2) + track
    if _is_sorted(pts):
        # Rows in time order (the usual case): the next sample of a track is the next row
        # of its group, found by a hash group-by shift, with no sort at all.
        rows = pd.Series(np.arange(n, dtype=np.int64))
        shifted = rows.groupby(key, sort=False).shift(-1, fill_value=-1)
        nxt = shifted.to_numpy(np.int64, copy=True)
    else:
        order = np.lexsort((pts, key))
        s_next = np.full(n, -1, np.int64)
        s_next[:-1] = np.where(key[order][1:] == key[order][:-1], order[1:], -1)
        nxt = np.empty(n, np.int64)
        nxt[order] = s_next
    nxt[track < 0] = -1  # untracked detections are not one object: never chained
    dt = np.where(nxt >= 0, pts[np.maximum(nxt, 0)] - pts, step)
    if max_gap_s is not None:
        too_long = dt > max_gap_s
        dt[too_long] = step
        nxt[too_long] = -1
    return dt, nxt


def _multi_video_step(video: np.ndarray, pts: np.ndarray) -> float:
    frame = pd.DataFrame({"v": video, "t": pts}).drop_duplicates().sort_values(["v", "t"])
    steps = frame.groupby("v")["t"].diff().to_numpy()
    steps = steps[steps > 0]
    return float(np.median(steps)) if steps.size else 1.0


def sampled_frames(dets: Frame) -> int:
    """Number of distinct sampled frames seen in ``dets`` (per video, summed).

    Frames with no detection at all are invisible here; pass ``exposure=`` from the frames
    table when you have it.
    """
    frame = _col(dets, "frame_number", np.int64)
    video = _codes(dets, "video_id")
    if not video.any() and _is_sorted(frame):
        return int(frame.size and 1 + np.count_nonzero(frame[1:] != frame[:-1]))
    return int(np.unique(video * (int(frame.max(initial=0)) + 1) + frame).size)


# --------------------------------------------------------------------------- image grid
def _frame_size(
    dets: Frame, frame_size: tuple[int, int] | None
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Frame width and height: scalars when given or constant, else per-row arrays."""
    if frame_size is not None:
        return np.float64(frame_size[0]), np.float64(frame_size[1])
    sizes: list[np.ndarray | float] = []
    for name in ("frame_width", "frame_height"):
        values = _col(dets, name, np.float64)
        # A scalar saves a per-row division when every frame has the same size (usual).
        same = values.size and values.min() == values.max()
        sizes.append(np.float64(values[0]) if same else values)
    return sizes[0], sizes[1]


def _cells(cu: np.ndarray, cv: np.ndarray, gw: int, gh: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell index of points in cell units, and a mask of those inside the grid.

    A point exactly on the right/bottom edge belongs to the last cell (with a float32
    rounding allowance, so ``x2 == frame_width`` is never dropped).
    """
    edge_w, edge_h = gw * (1 + 1e-6), gh * (1 + 1e-6)
    inside = (cu >= 0) & (cu <= edge_w) & (cv >= 0) & (cv <= edge_h)  # NaN compares False
    col = np.minimum(cu, gw - 1).astype(np.int64, copy=False)
    row = np.minimum(cv, gh - 1).astype(np.int64, copy=False)
    return row * gw + col, inside


def _bincount(cell: np.ndarray, inside: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Weighted bincount of the points inside the grid (no masking copy when all are)."""
    if inside.all():
        return np.bincount(cell, weights=weights, minlength=n)
    return np.bincount(cell[inside], weights=weights[inside], minlength=n)


def _segment_samples(
    cu: np.ndarray,
    cv: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    weight: np.ndarray,
    *,
    oversample: float,
    max_steps: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample segments ``start[i] -> end[i]`` at sub-cell steps.

    Each segment of length ``L`` (cells, Chebyshev) is cut into ``n = ceil(L * oversample)``
    equal pieces; the midpoint of each piece carries ``weight / n``. A cell's share is
    thus its share of the segment's length, exactly when boundaries fall on piece edges.
    Returns ``(u, v, w, segment_index)``.
    """
    du, dv = cu[end] - cu[start], cv[end] - cv[start]
    length = np.maximum(np.abs(du), np.abs(dv))
    n = np.clip(np.ceil(length * oversample), 1, max_steps).astype(np.int64)
    seg = np.repeat(np.arange(start.size), n)
    first = np.cumsum(n) - n
    k = np.arange(seg.size) - first[seg]
    t = (k + 0.5) / n[seg]
    u = cu[start][seg] + t * du[seg]
    v = cv[start][seg] + t * dv[seg]
    return u, v, (weight / n)[seg], seg


def image_grid(
    dets: Frame,
    *,
    grid: tuple[int, int] = (32, 18),
    anchor: str = "bottom_center",
    weight: Weight = "dwell",
    frame_size: tuple[int, int] | None = None,
    segments: bool = False,
    oversample: float = 4.0,
    max_gap_s: float | None = None,
    normalize: Normalize = None,
    exposure: float | None = None,
    events: Frame | None = None,
) -> np.ndarray:
    """A ``(h_cells, w_cells)`` float32 heat map of ``dets`` (DETECTIONS columns).

    ``grid=(w_cells, h_cells)`` splits the frame (``frame_size=(width, height)``, default
    the rows' ``frame_width/height``) into cells. ``normalize="frames"`` divides by the
    number of sampled frames, ``"seconds"`` by the seconds observed (frames × step); a dwell
    map normalized by seconds is the mean number of objects in each cell. ``exposure``
    overrides that divisor (e.g. from the frames table, which sees empty frames too).

    >>> import pandas as pd
    >>> d = pd.DataFrame({"video_id": "v", "track_id": [1, 1], "pts_sec": [0.0, 1.0],
    ...     "frame_number": [0, 1], "x1": [5.0, 45.0], "y1": 0.0, "x2": [5.0, 45.0],
    ...     "y2": 5.0, "frame_width": 50, "frame_height": 10})
    >>> image_grid(d, grid=(5, 1), segments=True).tolist()
    [[0.125, 0.25, 0.25, 0.25, 1.125]]
    """
    gw, gh = int(grid[0]), int(grid[1])
    if weight == "events":
        if events is None:
            raise ValueError("weight='events' needs events= (the rule's EVENTS table)")
        counts = _event_grid(dets, events, gw, gh, anchor, frame_size)
    elif weight in ("dwell", "tracks"):
        counts = _track_grid(
            dets, gw, gh, anchor, frame_size, weight, segments, oversample, max_gap_s
        )
    else:
        raise ValueError(f"unknown weight {weight!r}; expected dwell, tracks or events")
    if normalize is not None:
        counts = counts / _exposure(dets, normalize, exposure)
    return counts.reshape(gh, gw).astype(np.float32, copy=False)


def _exposure(dets: Frame, normalize: str, exposure: float | None) -> float:
    if exposure is not None:
        return float(exposure)
    frames: float
    if normalize == "frames":
        frames = sampled_frames(dets)
    elif normalize == "seconds":
        frames = sampled_frames(dets) * sampling_step(_col(dets, "pts_sec", np.float64))
    else:
        raise ValueError(f"unknown normalize {normalize!r}; expected frames or seconds")
    return float(frames) if frames else 1.0


def _track_grid(
    dets: Frame,
    gw: int,
    gh: int,
    anchor: str,
    frame_size: tuple[int, int] | None,
    weight: str,
    segments: bool,
    oversample: float,
    max_gap_s: float | None,
) -> np.ndarray:
    ncell = gw * gh
    if len(dets) == 0:
        return np.zeros(ncell, np.float64)
    u, v = anchor_points(dets, anchor, np.float32)
    fw, fh = _frame_size(dets, frame_size)
    cu, cv = u * np.float32(gw / fw), v * np.float32(gh / fh)
    dt, nxt = track_steps(dets, max_gap_s=max_gap_s)
    if weight == "dwell":
        if not segments:
            cell, inside = _cells(cu, cv, gw, gh)
            return _bincount(cell, inside, dt, ncell)
        # Samples without a next one stay points; the others become segments to their next.
        seg_start = np.flatnonzero(nxt >= 0)
        point = np.flatnonzero(nxt < 0)
        su, sv, sw, _ = _segment_samples(
            cu, cv, seg_start, nxt[seg_start], dt[seg_start],
            oversample=oversample, max_steps=int(max(gw, gh) * oversample) + 1,
        )  # fmt: skip
        all_u = np.concatenate([su, cu[point]])
        all_v = np.concatenate([sv, cv[point]])
        all_w = np.concatenate([sw, dt[point]])
        cell, inside = _cells(all_u, all_v, gw, gh)
        return _bincount(cell, inside, all_w, ncell)
    # weight == "tracks": unique (video, track, cell) triples.
    track = _col(dets, "track_id", np.int64, fill=-1)
    key = _codes(dets, "video_id") * (int(track.max()) + 2) + track
    if segments:
        seg_start = np.flatnonzero(nxt >= 0)
        su, sv, _, seg = _segment_samples(
            cu, cv, seg_start, nxt[seg_start], dt[seg_start],
            oversample=oversample, max_steps=int(max(gw, gh) * oversample) + 1,
        )  # fmt: skip
        cu = np.concatenate([cu, su])
        cv = np.concatenate([cv, sv])
        key = np.concatenate([key, key[seg_start][seg]])
        track = np.concatenate([track, track[seg_start][seg]])
    cell, inside = _cells(cu, cv, gw, gh)
    keep = inside & (track >= 0)
    # pd.unique hashes (linear); np.unique sorts and was 50x slower here.
    pairs = pd.unique(key[keep] * ncell + cell[keep])
    return np.bincount(pairs % ncell, minlength=ncell).astype(np.float64)


def _event_grid(
    dets: Frame,
    events: Frame,
    gw: int,
    gh: int,
    anchor: str,
    frame_size: tuple[int, int] | None,
) -> np.ndarray:
    """Every event adds 1, split across the detections named in its ``detection_ids``."""
    ncell = gw * gh
    ev = events if isinstance(events, pa.Table) else pa.Table.from_pandas(events)
    ids = ev.column("detection_ids").combine_chunks()
    flat = pc.list_flatten(ids)
    parent = pc.list_parent_indices(ids).to_numpy(zero_copy_only=False)
    per_event = np.bincount(parent, minlength=ev.num_rows)
    det_ids = dets.column("detection_id") if isinstance(dets, pa.Table) else dets["detection_id"]
    where = pc.index_in(flat, value_set=pa.array(det_ids)).to_numpy(zero_copy_only=False)
    found = ~np.isnan(where.astype(np.float64))
    row = where[found].astype(np.int64)
    share = 1.0 / per_event[parent[found]]
    u, v = anchor_points(dets, anchor)
    fw, fh = _frame_size(dets, frame_size)
    fw = fw[row] if isinstance(fw, np.ndarray) else fw
    fh = fh[row] if isinstance(fh, np.ndarray) else fh
    cell, inside = _cells(u[row] * (gw / fw), v[row] * (gh / fh), gw, gh)
    return np.bincount(cell[inside], weights=share[inside], minlength=ncell)


# --------------------------------------------------------------------------- geo grid
def geo_grid(
    dets: Frame,
    *,
    cell_deg: float = 0.0005,
    h3: bool = False,
    h3_resolution: int = 9,
    max_gap_s: float | None = None,
) -> pd.DataFrame:
    """Counts and dwell seconds per lat/lon cell, for dashcam drives.

    Cells are ``cell_deg`` squares (0.0005° ≈ 55 m north-south); ``cell_id`` is
    ``"deg{cell_deg}:{row}:{col}"`` with ``row = floor(lat / cell_deg)``. Detections with no
    GPS fix are dropped. ``h3=True`` uses H3 cells of ``h3_resolution`` instead (``cell_id``
    is the H3 index, ``lat``/``lon`` its centre).
    Columns: ``cell_id, lat, lon, count, dwell``.

    >>> import pandas as pd
    >>> d = pd.DataFrame({"video_id": "v", "track_id": [1, 1], "pts_sec": [0.0, 1.0],
    ...     "lat": [52.50001, 52.50002], "lon": [13.4, 13.4]})
    >>> geo_grid(d)[["count", "dwell"]].values.tolist()
    [[2.0, 2.0]]
    """
    lat, lon = _col(dets, "lat", np.float64, fill=np.nan), _col(dets, "lon", np.float64, np.nan)
    dt = track_steps(dets, max_gap_s=max_gap_s)[0] if len(dets) else np.zeros(0)
    ok = np.isfinite(lat) & np.isfinite(lon)
    lat, lon, dt = lat[ok], lon[ok], dt[ok]
    if h3:
        return _h3_grid(lat, lon, dt, h3_resolution)
    row = np.floor(lat / cell_deg).astype(np.int64)
    col = np.floor(lon / cell_deg).astype(np.int64)
    frame = pd.DataFrame({"row": row, "col": col, "dwell": dt})
    agg = frame.groupby(["row", "col"], sort=True).agg(
        count=("dwell", "size"), dwell=("dwell", "sum")
    )
    rows = agg.index.get_level_values("row").to_numpy()
    cols = agg.index.get_level_values("col").to_numpy()
    cell_id = f"deg{cell_deg:g}:" + pd.Series(rows).astype(str) + ":" + pd.Series(cols).astype(str)
    return pd.DataFrame(
        {
            "cell_id": cell_id.to_numpy(dtype=object),
            "lat": (rows + 0.5) * cell_deg,
            "lon": (cols + 0.5) * cell_deg,
            "count": agg["count"].to_numpy(np.float64),
            "dwell": agg["dwell"].to_numpy(np.float64),
        }
    )


def _h3_grid(lat: np.ndarray, lon: np.ndarray, dt: np.ndarray, resolution: int) -> pd.DataFrame:
    """Count and dwell per H3 cell of ``resolution`` (0..15), sorted by ``cell_id``.

    h3 4.x has no array API: positions are rounded to 1e-6° (≈ 0.1 m), deduplicated with one
    ``np.unique``, and only the distinct positions go through ``h3.latlng_to_cell``; the
    aggregation itself is a ``bincount``.

    >>> import numpy as np
    >>> g = _h3_grid(np.array([52.5, 52.5]), np.array([13.4, 13.4]), np.array([1.0, 2.0]), 9)
    >>> g[["count", "dwell"]].values.tolist()
    [[2.0, 3.0]]
    """
    import h3

    if not 0 <= resolution <= 15:
        raise ValueError(f"h3_resolution must be in 0..15, got {resolution}")
    if len(lat) == 0:
        return pd.DataFrame(
            {"cell_id": np.array([], dtype=object), "lat": np.zeros(0), "lon": np.zeros(0),
             "count": np.zeros(0), "dwell": np.zeros(0)}
        )  # fmt: skip
    pos = np.column_stack([lat.round(6), lon.round(6)])
    uniq, pos_of = np.unique(pos, axis=0, return_inverse=True)
    cells_of_pos = np.array(
        [h3.latlng_to_cell(a, b, resolution) for a, b in uniq.tolist()], dtype=object
    )
    cell_ids, cell_of_pos = np.unique(cells_of_pos.astype(str), return_inverse=True)
    cell = cell_of_pos[pos_of.ravel()]
    centres = np.array([h3.cell_to_latlng(c) for c in cell_ids.tolist()], dtype=np.float64)
    return pd.DataFrame(
        {
            "cell_id": cell_ids.astype(object),
            "lat": centres[:, 0],
            "lon": centres[:, 1],
            "count": np.bincount(cell, minlength=len(cell_ids)).astype(np.float64),
            "dwell": np.bincount(cell, weights=dt, minlength=len(cell_ids)),
        }
    )


# --------------------------------------------------------------------------- tables
def to_table(
    grid: np.ndarray | pd.DataFrame,
    *,
    video_id: str,
    source_id: str,
    heatmap_id: str,
    weight: str,
    captured_at: pd.Timestamp | str,
    space: Literal["image", "geo"] | None = None,
    value_column: str | None = None,
) -> pa.Table:
    """A sparse HEATMAPS table (non-zero cells only) of an image grid or a :func:`geo_grid`.

    For a geo frame ``value_column`` picks ``count`` or ``dwell`` (default: ``dwell`` for
    weight ``dwell``, else ``count``). ``captured_at`` is the map's reference time (e.g. the
    video's start).

    >>> t = to_table(np.eye(2, dtype=np.float32), video_id="v", source_id="s",
    ...     heatmap_id="h", weight="dwell", captured_at="2026-05-04T10:00:00Z")
    >>> t.num_rows, t.column("col").to_pylist()
    (2, [0, 1])
    """
    if space is None:
        space = "geo" if isinstance(grid, pd.DataFrame) else "image"
    if space == "image":
        dense = np.asarray(grid)
        gh, gw = dense.shape
        flat = np.flatnonzero(dense)
        n = flat.size
        columns: dict[str, pa.Array] = {
            "grid_w": pa.array(np.full(n, gw, np.int32)),
            "grid_h": pa.array(np.full(n, gh, np.int32)),
            "col": pa.array((flat % gw).astype(np.int32)),
            "row": pa.array((flat // gw).astype(np.int32)),
            "cell_id": pa.nulls(n, pa.string()),
            "lat": pa.nulls(n, pa.float64()),
            "lon": pa.nulls(n, pa.float64()),
            "value": pa.array(dense.ravel()[flat].astype(np.float64)),
        }
    elif space == "geo":
        value_column = value_column or ("dwell" if weight == "dwell" else "count")
        cells = grid[grid[value_column] != 0]
        n = len(cells)
        columns = {
            "grid_w": pa.nulls(n, pa.int32()),
            "grid_h": pa.nulls(n, pa.int32()),
            "col": pa.nulls(n, pa.int32()),
            "row": pa.nulls(n, pa.int32()),
            "cell_id": pa.array(cells["cell_id"].to_numpy(dtype=object), pa.string()),
            "lat": pa.array(cells["lat"].to_numpy(np.float64)),
            "lon": pa.array(cells["lon"].to_numpy(np.float64)),
            "value": pa.array(cells[value_column].to_numpy(np.float64)),
        }
    else:
        raise ValueError(f"unknown space {space!r}; expected image or geo")
    ts = pd.Timestamp(captured_at)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    head = {
        "schema_version": pa.array(np.full(n, table_version(HEATMAPS), np.int16)),
        "video_id": pa.array([video_id] * n, pa.string()),
        "source_id": pa.array([source_id] * n, pa.string()),
        "heatmap_id": pa.array([heatmap_id] * n, pa.string()),
        "space": pa.array([space] * n, pa.string()),
        "weight": pa.array([weight] * n, pa.string()),
        "captured_at": pa.array([ts] * n, HEATMAPS.field("captured_at").type),
    }
    return conform(pa.table({**head, **columns}), HEATMAPS)


def from_table(table: pa.Table | pd.DataFrame, *, heatmap_id: str | None = None) -> np.ndarray:
    """The dense float32 ``(grid_h, grid_w)`` grid of one image-space heat map in ``table``.

    >>> g = np.array([[0, 2], [3, 0]], np.float32)
    >>> t = to_table(g, video_id="v", source_id="s", heatmap_id="h", weight="tracks",
    ...     captured_at="2026-05-04T10:00:00Z")
    >>> bool((from_table(t) == g).all())
    True
    """
    frame = table.to_pandas() if isinstance(table, pa.Table) else table
    frame = frame[frame["space"] == "image"]
    if heatmap_id is not None:
        frame = frame[frame["heatmap_id"] == heatmap_id]
    ids = frame["heatmap_id"].unique()
    if len(ids) != 1:
        raise ValueError(f"expected one image heat map, found {list(ids)}; pass heatmap_id=")
    gw, gh = int(frame["grid_w"].iloc[0]), int(frame["grid_h"].iloc[0])
    dense = np.zeros((gh, gw), np.float32)
    dense[frame["row"].to_numpy(np.int64), frame["col"].to_numpy(np.int64)] = frame["value"]
    return dense


# --------------------------------------------------------------------------- PNG
def render_png(
    grid: np.ndarray,
    background_bgr: np.ndarray | None,
    path: str | Path,
    *,
    alpha: float = 0.5,
    legend: bool = True,
    units: str = "",
    colormap: int = cv2.COLORMAP_TURBO,
    vmax: float | None = None,
    legend_width: int = 90,
) -> np.ndarray:
    """Overlay ``grid`` on a representative frame and write it to ``path`` (PNG, OpenCV).

    Empty cells stay transparent; the others are coloured by ``value / vmax`` (default the
    grid's maximum). With ``legend`` a ``legend_width`` px panel is appended on the right: a
    colour bar from 0 (bottom) to ``vmax`` (top) with ``units``. Returns the written image
    (``height x (width + legend_width) x 3``). ``background_bgr=None`` draws on dark grey at
    20 px per cell.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = render_png(np.eye(4, dtype=np.float32), None, Path(tmp, "h.png"), units="s")
    >>> out.shape
    (80, 170, 3)
    """
    values = np.asarray(grid, np.float64)
    gh, gw = values.shape
    if background_bgr is None:
        background_bgr = np.full((gh * 20, gw * 20, 3), 40, np.uint8)
    height, width = background_bgr.shape[:2]
    top = float(vmax if vmax is not None else values.max(initial=0.0))
    scaled = np.clip(values / top, 0, 1) if top > 0 else np.zeros_like(values)
    colours = cv2.applyColorMap((scaled * 255).astype(np.uint8), colormap)
    # Nearest-neighbour keeps the cells visible and exact (no blur inventing values).
    colours = cv2.resize(colours, (width, height), interpolation=cv2.INTER_NEAREST)
    mask = (
        cv2.resize((values > 0).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        > 0
    )
    out = background_bgr.copy()
    blended = cv2.addWeighted(background_bgr, 1 - alpha, colours, alpha, 0)
    out[mask] = blended[mask]
    if legend:
        out = np.concatenate([out, _legend(height, legend_width, top, units, colormap)], axis=1)
    # Highest zlib level: a third smaller than OpenCV's default on a photo background, and
    # written once per heat map, not per frame.
    if not cv2.imwrite(str(path), out, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")
    return out


def _legend(height: int, width: int, top: float, units: str, colormap: int) -> np.ndarray:
    panel = np.full((height, width, 3), 255, np.uint8)
    font_scale = max(0.3, min(0.5, height / 400))
    text_h = int(22 * font_scale) + 4
    y0, y1 = text_h + 4, height - text_h - 4
    bar_w = max(8, width // 4)
    if y1 > y0:
        ramp = np.linspace(255, 0, y1 - y0).astype(np.uint8)[:, None]
        bar = cv2.applyColorMap(np.repeat(ramp, bar_w, axis=1), colormap)
        panel[y0:y1, 6 : 6 + bar_w] = bar
    black = (0, 0, 0)
    label = f"{top:.3g} {units}".strip()
    cv2.putText(panel, label, (4, text_h), cv2.FONT_HERSHEY_SIMPLEX, font_scale, black, 1)
    cv2.putText(panel, "0", (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, font_scale, black, 1)
    return panel


__all__: Sequence[str] = [
    "ANCHORS",
    "anchor_points",
    "from_table",
    "geo_grid",
    "image_grid",
    "render_png",
    "sampled_frames",
    "sampling_step",
    "to_table",
    "track_steps",
]
