"""Accumulators of the ODE stage: time-binned counts, occupancy (in − out), O-D matrices.

All three are whole-table pandas group-bys on sorted columns; there is no loop per event,
per track or per bin (only one pass per bin size).

Example:
    >>> from roadlens.synth.tables import synthetic_events
    >>> stats = binned_counts(synthetic_events(100), minutes=(5,))
    >>> int(stats["count"].sum())
    100
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa

from roadlens.schema import EVENT_STATS, conform, table_version

Frame: TypeAlias = pa.Table | pd.DataFrame

STATS_COLUMNS: list[str] = EVENT_STATS.names
OPTIONAL_KEYS = ("class_name", "direction")


def _frame(table: Frame, columns: Sequence[str]) -> pd.DataFrame:
    """The needed ``columns`` of an Arrow table or DataFrame as a pandas frame."""
    if isinstance(table, pa.Table):
        present = [c for c in columns if c in table.column_names]
        return table.select(present).to_pandas()
    return table[[c for c in columns if c in table.columns]].copy()


def _utc(series: pd.Series) -> pd.Series:
    series = pd.to_datetime(series)
    if series.dt.tz is None:
        return series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC")


def binned_counts(
    events: Frame,
    *,
    minutes: Sequence[int] = (5, 15, 60),
    by: Sequence[str] = ("rule_id", "class_name", "direction"),
    fill_empty: bool = True,
    span: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Event counts and value sums per ``by`` key and time bin, in EVENT_STATS columns.

    Bins are ``captured_at`` floored in UTC to multiples of ``minutes`` since the epoch
    (so 15-minute bins start at :00/:15/:30/:45 UTC). ``by`` must contain ``rule_id``; a
    ``class_name``/``direction`` left out of ``by`` is null (all classes / directions).
    ``video_id`` and ``source_id`` are always keys (one partition is one video).

    With ``fill_empty`` every key seen in a video gets a row for every bin of the video's
    covered range, zero-filled: the range is the first to the last event's bin, or ``span``
    (start, end) when given (e.g. the video's first and last frame times), so quiet periods
    read as 0 rather than as missing data. ``value`` sums the events' ``value`` (nulls
    skipped; 0 for empty bins).

    >>> import pandas as pd
    >>> ev = pd.DataFrame({"video_id": "v", "source_id": "s", "rule_id": "r",
    ...     "class_name": "car", "direction": "in", "value": 1.0,
    ...     "captured_at": pd.to_datetime(["2026-05-04T10:01Z", "2026-05-04T10:12Z"])})
    >>> binned_counts(ev, minutes=(5,))["count"].tolist()
    [1, 0, 1]
    """
    if "rule_id" not in by:
        raise ValueError("binned_counts needs 'rule_id' in by=")
    unknown = set(by) - {"rule_id", *OPTIONAL_KEYS}
    if unknown:
        raise ValueError(
            f"unknown by= keys {sorted(unknown)}; allowed: rule_id, class_name, direction"
        )
    keys = ["video_id", "source_id", *by]
    frame = _frame(events, [*keys, "captured_at", "value"])
    if "value" not in frame:
        frame["value"] = np.nan
    frame["captured_at"] = _utc(frame["captured_at"]).dt.as_unit("us")
    parts = [
        _binned_one(frame, keys, int(m), fill_empty=fill_empty, span=span) for m in minutes
    ]  # one pass per bin size: three at most, not a loop over data
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    for key in OPTIONAL_KEYS:
        if key not in out:
            out[key] = None
    out["schema_version"] = np.int16(table_version(EVENT_STATS))
    out = out[STATS_COLUMNS]
    out = out.astype(
        {"schema_version": "int16", "bin_minutes": "int16", "count": "int64", "value": "float64"}
    )
    return out.sort_values(["video_id", "rule_id", "bin_minutes", "bin_start"], kind="stable")[
        STATS_COLUMNS
    ].reset_index(drop=True)


def _binned_one(
    frame: pd.DataFrame,
    keys: list[str],
    minutes: int,
    *,
    fill_empty: bool,
    span: tuple[pd.Timestamp, pd.Timestamp] | None,
) -> pd.DataFrame:
    width = pd.Timedelta(minutes=minutes)
    binned = frame.assign(bin_start=frame["captured_at"].dt.floor(width))
    agg = (
        binned.groupby([*keys, "bin_start"], dropna=False, sort=False)
        .agg(count=("captured_at", "size"), value=("value", "sum"))
        .reset_index()
    )
    if fill_empty and len(agg):
        agg = _fill_bins(agg, keys, width, span)
    agg["bin_minutes"] = minutes
    return agg


def _fill_bins(
    agg: pd.DataFrame,
    keys: list[str],
    width: pd.Timedelta,
    span: tuple[pd.Timestamp, pd.Timestamp] | None,
) -> pd.DataFrame:
    """Every key × every bin of its video's range, zero where no event fell."""
    bins = agg.groupby("video_id", sort=False)["bin_start"].agg(["min", "max"])
    if span is not None:
        lo, hi = (_utc(pd.Series([pd.Timestamp(t)])).iloc[0].floor(width) for t in span)
        bins["min"] = np.minimum(bins["min"], lo)
        bins["max"] = np.maximum(bins["max"], hi)
    rep, start = _bin_grid(bins["min"], bins["max"], width)
    grid = pd.DataFrame({"video_id": bins.index.to_numpy()[rep], "bin_start": start})
    combos = agg[keys].drop_duplicates()
    full = combos.merge(grid, on="video_id")
    out = full.merge(agg, on=[*keys, "bin_start"], how="left")
    out["count"] = out["count"].fillna(0)
    out["value"] = out["value"].fillna(0.0)
    return out


def _bin_grid(
    lo: pd.Series, hi: pd.Series, width: pd.Timedelta
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Every bin start from ``lo[i]`` to ``hi[i]``: ``(i per bin, bin starts)``, no loop."""
    lo_us = pd.DatetimeIndex(lo).as_unit("us").asi8
    hi_us = pd.DatetimeIndex(hi).as_unit("us").asi8
    step = width // pd.Timedelta(microseconds=1)
    n_bins = (hi_us - lo_us) // step + 1
    rep = np.repeat(np.arange(len(lo_us)), n_bins)
    offset = np.arange(n_bins.sum()) - np.repeat(np.cumsum(n_bins) - n_bins, n_bins)
    start = pd.to_datetime(lo_us[rep] + offset * step, unit="us", utc=True).as_unit("us")
    return rep, start


def stats_table(stats: pd.DataFrame) -> pa.Table:
    """A :func:`binned_counts` frame as an Arrow table conformed to EVENT_STATS."""
    return conform(pa.Table.from_pandas(stats, preserve_index=False), EVENT_STATS)


def occupancy(
    events: Frame,
    *,
    by: Sequence[str] = ("video_id", "source_id", "rule_id"),
    in_value: str = "in",
    out_value: str = "out",
    initial: float = 0.0,
    floor_zero: bool = False,
    minutes: int | None = None,
) -> pd.DataFrame:
    """Running occupancy (``in`` − ``out``) per ``by`` key from crossing events' ``direction``.

    Without ``minutes``: one row per crossing event, in time order (``captured_at``, then
    ``pts_sec``), with ``delta`` (+1, −1, 0 for other directions) and ``occupancy`` =
    ``initial`` + the running sum. ``floor_zero`` clamps the count at zero (a zone cannot
    hold −2 cars; missed entries otherwise drift negative), computed without a loop as
    ``S_t − min(0, min_{s≤t} S_s)``.

    With ``minutes``: one row per key and bin (bins between the key's first and last event,
    empty ones filled) with ``in``, ``out``, ``net`` and ``occupancy`` at the bin's end.

    >>> import pandas as pd
    >>> ev = pd.DataFrame({"video_id": "v", "source_id": "s", "rule_id": "r",
    ...     "direction": ["in", "in", "out", "out", "out"], "pts_sec": [0.0, 1, 2, 3, 4],
    ...     "captured_at": pd.Timestamp("2026-05-04T10:00Z") + pd.to_timedelta(
    ...     [0, 1, 2, 3, 4], unit="s")})
    >>> occupancy(ev)["occupancy"].tolist(), occupancy(ev, floor_zero=True)["occupancy"].tolist()
    ([1.0, 2.0, 1.0, 0.0, -1.0], [1.0, 2.0, 1.0, 0.0, 0.0])
    """
    keys = list(by)
    frame = _frame(events, [*keys, "captured_at", "pts_sec", "direction", "event_id"])
    frame["captured_at"] = _utc(frame["captured_at"]).dt.as_unit("us")
    order = [c for c in ("captured_at", "pts_sec", "event_id") if c in frame]
    frame = frame.sort_values([*keys, *order], kind="stable").reset_index(drop=True)
    direction = frame["direction"].astype("string")
    frame["delta"] = (direction == in_value).astype(np.int64) - (direction == out_value).astype(
        np.int64
    )
    groups = frame.groupby(keys, sort=False, dropna=False)
    running = groups["delta"].cumsum().astype(np.float64) + initial
    if floor_zero:
        # Clamped random walk: x_t = S_t - min(0, min_{s<=t} S_s) with S the raw running sum.
        low = running.groupby([frame[k] for k in keys], sort=False, dropna=False).cummin()
        running = running - np.minimum(low, 0.0)
    frame["occupancy"] = running
    if minutes is None:
        return frame
    return _occupancy_bins(frame, keys, int(minutes))


def _occupancy_bins(frame: pd.DataFrame, keys: list[str], minutes: int) -> pd.DataFrame:
    width = pd.Timedelta(minutes=minutes)
    frame = frame.assign(
        bin_start=frame["captured_at"].dt.floor(width),
        **{"in": frame["delta"] == 1, "out": frame["delta"] == -1},
    )
    agg = (
        frame.groupby([*keys, "bin_start"], sort=True, dropna=False)
        .agg(**{"in": ("in", "sum"), "out": ("out", "sum"), "occupancy": ("occupancy", "last")})
        .reset_index()
    )
    # Fill empty bins per key: counts 0, occupancy carried forward from the previous bin.
    span = agg.groupby(keys, sort=False, dropna=False)["bin_start"].agg(["min", "max"])
    rep, start = _bin_grid(span["min"], span["max"], width)
    full = span.index.to_frame(index=False).iloc[rep].reset_index(drop=True)
    full["bin_start"] = start
    agg["bin_start"] = agg["bin_start"].dt.as_unit("us")
    out = full.merge(agg, on=[*keys, "bin_start"], how="left")
    out[["in", "out"]] = out[["in", "out"]].fillna(0).astype(np.int64)
    out["occupancy"] = out.groupby(keys, sort=False, dropna=False)["occupancy"].ffill()
    out["net"] = out["in"] - out["out"]
    out["bin_minutes"] = minutes
    return out[[*keys, "bin_minutes", "bin_start", "in", "out", "net", "occupancy"]]


def zone_entries(
    hits: Frame,
    *,
    zone_col: str = "zone",
    by: Sequence[str] = ("video_id",),
    track_col: str = "track_id",
    time_col: str = "pts_sec",
    max_gap_s: float | None = None,
) -> pd.DataFrame:
    """The zone entries of every track, in order: one row per visit with its entry time.

    ``hits`` holds one row per (sampled frame, track) in a zone (a zone hits table with a
    zone column, or detections with a zone column that is null outside all zones). A track's
    visit to a zone starts at its first row there; with ``max_gap_s`` a gap longer than that
    between two rows of the same track and zone starts a new visit (re-entry), otherwise
    each zone counts once per track (its first entry). Columns: ``by``, track, ``zone``,
    ``entered``, ``seq`` (0, 1, ... per track).
    """
    keys = [*by, track_col]
    frame = _frame(hits, [*keys, zone_col, time_col])
    frame = frame[frame[zone_col].notna() & frame[track_col].notna()]
    frame = frame.sort_values([*keys, zone_col, time_col], kind="stable")
    same = pd.Series(True, index=frame.index)
    for key in [*keys, zone_col]:  # a handful of key columns, not rows
        same &= frame[key].eq(frame[key].shift())
    new_visit = ~same
    if max_gap_s is not None:
        new_visit |= frame[time_col].diff().gt(max_gap_s)
    entries = frame.loc[new_visit, [*keys, zone_col, time_col]]
    entries = entries.rename(columns={zone_col: "zone", time_col: "entered"})
    entries = entries.sort_values([*keys, "entered", "zone"], kind="stable").reset_index(drop=True)
    entries["seq"] = entries.groupby(keys, sort=False).cumcount()
    return entries


def od_matrix(
    hits: Frame,
    *,
    zone_col: str = "zone",
    by: Sequence[str] = ("video_id",),
    track_col: str = "track_id",
    time_col: str = "pts_sec",
    pairs: Literal["first_last", "consecutive"] = "first_last",
    max_gap_s: float | None = None,
    include_single: bool = False,
    wide: bool = False,
) -> pd.DataFrame:
    """Origin–destination counts from the order in which each track entered zones.

    ``pairs="first_last"``: one trip per track, first zone entered → last zone entered;
    tracks that entered a single zone are dropped unless ``include_single`` (then A → A).
    ``pairs="consecutive"``: every consecutive pair of entries (turn/transition counts).
    Entries come from :func:`zone_entries`. Returns a long frame (``by``, ``origin``,
    ``destination``, ``count``), or with ``wide`` a origin × destination matrix summed over
    ``by``.

    >>> import pandas as pd
    >>> hits = pd.DataFrame({"video_id": "v", "track_id": [1, 1, 2, 2, 2],
    ...     "pts_sec": [0.0, 1.0, 0.0, 1.0, 2.0], "zone": ["N", "E", "N", "S", "W"]})
    >>> od_matrix(hits)[["origin", "destination", "count"]].values.tolist()
    [['N', 'E', 1], ['N', 'W', 1]]
    """
    entries = zone_entries(
        hits, zone_col=zone_col, by=by, track_col=track_col, time_col=time_col,
        max_gap_s=max_gap_s,
    )  # fmt: skip
    keys = [*by, track_col]
    groups = entries.groupby(keys, sort=False)
    if pairs == "first_last":
        trips = groups["zone"].agg(origin="first", destination="last", visits="size")
        trips = trips.reset_index()
        if not include_single:
            trips = trips[trips["visits"] > 1]
    elif pairs == "consecutive":
        nxt = groups["zone"].shift(-1)
        trips = entries.assign(origin=entries["zone"], destination=nxt)
        trips = trips[trips["destination"].notna()]
    else:
        raise ValueError(f"unknown pairs {pairs!r}; expected first_last or consecutive")
    long = (
        trips.groupby([*by, "origin", "destination"], sort=True)
        .size()
        .rename("count")
        .reset_index()
    )
    if wide:
        return long.pivot_table(
            index="origin", columns="destination", values="count", aggfunc="sum", fill_value=0
        )
    return long


__all__ = ["binned_counts", "occupancy", "od_matrix", "stats_table", "zone_entries"]
