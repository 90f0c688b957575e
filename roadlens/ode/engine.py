"""Evaluate a rule set over detections: criteria -> area/anchor -> trigger -> schedule ->
firing -> events (the EVENTS contract).

Every rule reads the same immutable inputs, so rule order never changes results; composite
rules (all/any/not/for_at_least/sequence) read the *hits* (levels, before firing) of the
rules they name, evaluated first. Event ids hash
``"{rule_id}:{video_id}:{frame_number}:{track_id or 'frame'}"`` (plus ``":{n}"`` for the
n-th further event with the same key, e.g. several pairs of one track in one frame) under
the event's ``captured_at``, so re-runs are idempotent.

Example:
    >>> from roadlens.ode.rules import parse_rules
    >>> from roadlens.synth.tables import synthetic_detections
    >>> dets = synthetic_detections(2_000).to_pandas()
    >>> rules = parse_rules({"rules": [{"id": "cars", "criteria": {"classes": ["car"]},
    ...                                 "trigger": {"instance": {}}}]})
    >>> events = evaluate(dets, None, rules)
    >>> sorted(set(events["rule_id"])), list(events.columns) == EVENTS.names
    (['cars'], True)
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from roadlens.ids import time_ordered_uuids
from roadlens.ode import logic, spatial
from roadlens.ode.criteria import criteria_mask, track_stats
from roadlens.ode.frame_triggers import FRAME_TRIGGERS, frame_index, sampled_frames
from roadlens.ode.geometry import Polygon, anchor_points, build_area
from roadlens.ode.hits import conform_hits, empty_hits
from roadlens.ode.rules import Rule, RuleSet, evaluation_order
from roadlens.schema import EVENTS, conform, table_version

__all__ = ["evaluate", "evaluate_hits", "evaluate_to_table", "frames_from_detections"]

REQUIRED_COLUMNS = [
    "detection_id",
    "video_id",
    "source_id",
    "frame_number",
    "pts_sec",
    "captured_at",
    "class_name",
    "confidence",
    "x1",
    "y1",
    "x2",
    "y2",
    "track_id",
]
_FRAME_COLS = ["video_id", "frame_number", "pts_sec", "captured_at"]
# Triggers whose hits are instants (a crossing), not levels: they always fire "level".
_INSTANT_TRIGGERS = {"cross"}
CROSS_ARRAYS = ("before", "after", "f", "t", "side", "key")


def frames_from_detections(detections: pd.DataFrame) -> pd.DataFrame:
    """The sampled frames implied by ``detections`` (frames without detections are unknown,
    so pass the real frames table for absence and zero counts)."""
    f = detections[_FRAME_COLS].drop_duplicates(["video_id", "frame_number"])
    return f.sort_values(["video_id", "pts_sec", "frame_number"]).reset_index(drop=True)


def _trigger_not_implemented(kind: str) -> Callable[..., pd.DataFrame]:
    def missing(*_: Any, **__: Any) -> pd.DataFrame:
        raise NotImplementedError(f"trigger {kind!r} is not implemented (roadlens.ode)")

    return missing


class _Context:
    """What every rule reads: the immutable inputs and the resolved areas."""

    def __init__(self, detections: pd.DataFrame, frames: pd.DataFrame, rules: RuleSet) -> None:
        self.dets = detections
        self.frames = frames
        self.rules = rules
        self.areas = {name: build_area(spec) for name, spec in rules.areas.items()}
        self.w = (
            detections["frame_width"].to_numpy(np.float64) if "frame_width" in detections else None
        )
        self.h = (
            detections["frame_height"].to_numpy(np.float64)
            if "frame_height" in detections
            else None
        )
        self._detection_index: pd.Index | None = None
        self._track_stats: tuple[np.ndarray, np.ndarray] | None = None
        self._tracks: spatial.TrackTable | None = None
        self._anchors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._sampled: tuple[pd.DataFrame | None, np.ndarray | None] | None = None
        self._track_ord: tuple[np.ndarray | None] | None = None
        self._untracked: np.ndarray | None = None

    @property
    def detection_index(self) -> pd.Index:
        """``detection_id`` -> row position, built once (hash lookups for every rule)."""
        if self._detection_index is None:
            self._detection_index = pd.Index(self.dets["detection_id"].to_numpy(dtype=object))
        return self._detection_index

    @property
    def track_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per detection: its track's sample count and pts span, computed once."""
        if self._track_stats is None:
            self._track_stats = track_stats(self.dets)
        return self._track_stats

    @property
    def tracks(self) -> spatial.TrackTable:
        """The tracked detections in track order, sorted once for every track rule."""
        if self._tracks is None:
            self._tracks = spatial.TrackTable(self.dets)
        return self._tracks

    def anchor(self, anchor: str) -> tuple[np.ndarray, np.ndarray]:
        """Anchor points of every detection (input order), computed once per anchor."""
        if anchor not in self._anchors:
            d = self.dets
            self._anchors[anchor] = anchor_points(d["x1"], d["y1"], d["x2"], d["y2"], anchor)
        return self._anchors[anchor]

    def selects(
        self, area: Polygon, anchor: str, mode: Literal["include", "exclude"] | None = None
    ) -> np.ndarray:
        """True for the detections that pass the zone ``area`` by ``anchor`` (shared anchors);
        ``mode`` overrides the area's include/exclude."""
        if anchor == "any":
            d = self.dets
            return area.selects_boxes(
                d["x1"], d["y1"], d["x2"], d["y2"], anchor, self.w, self.h, mode=mode
            )
        u, v = self.anchor(anchor)
        return area.selects(u, v, self.w, self.h, mode=mode)

    def mask(self, rule: Rule) -> np.ndarray:
        """True for the detections that pass the rule's criteria and its area."""
        d = self.dets
        c = rule.criteria
        needs_tracks = c.min_track_frames is not None or c.min_track_seconds is not None
        stats = self.track_stats if needs_tracks else None
        mask = criteria_mask(d, c, self.frames, stats=stats)
        if rule.area is not None:
            area = self.areas[rule.area]
            assert isinstance(area, Polygon)  # validated in rules.py
            mask &= self.selects(area, rule.anchor)
        return mask

    def selected(self, rule: Rule) -> pd.DataFrame:
        """The detections that pass the rule's criteria and its area (by its anchor)."""
        return self.dets[self.mask(rule)]

    @property
    def sampled(self) -> pd.DataFrame | None:
        """``sampled_frames(frames)`` when it holds every detection's frame (then firing can
        share it across rules, and frame positions are the same for every rule), else None."""
        if self._sampled is None:
            own = sampled_frames(self.frames)
            d = self.dets
            pos = _frame_rows(own, d)
            if pos is None:  # frame numbers that are not plain integers: the general lookup
                covered = len(d) == 0 or len(sampled_frames(self.frames, d)) == len(own)
                pos = frame_index(d, own) if covered and len(d) else None
            else:
                covered = bool((pos >= 0).all())
            self._sampled = (own if covered else None, pos if covered else None)
        return self._sampled[0]

    @property
    def track_ord(self) -> np.ndarray | None:
        """Per row of :attr:`tracks`: its frame's position among the video's sampled frames,
        or None when positions are not non-decreasing along every track (then the shortcuts
        that assume it are not taken)."""
        if self._track_ord is None:
            fr, t = self.sampled, self.tracks
            ordt = None
            if fr is not None and len(t):
                assert self._sampled is not None  # self.sampled set it, with rows whenever fr
                rows = self._sampled[1]
                assert rows is not None
                ordt = fr["_ord"].to_numpy()[rows[t.pos]]
                same = t.key[1:] == t.key[:-1]
                if (np.diff(ordt)[same] < 0).any():
                    ordt = None
            self._track_ord = (ordt,)
        return self._track_ord[0]

    @property
    def untracked(self) -> np.ndarray:
        if self._untracked is None:
            self._untracked = self.dets["track_id"].isna().to_numpy()
        return self._untracked


def _frame_rows(fr: pd.DataFrame, dets: pd.DataFrame) -> np.ndarray | None:
    """Row in ``fr`` (sampled frames, one row per (video, frame)) of each detection's frame,
    -1 where ``fr`` lacks it; by integer keys (one searchsorted, no 1M-row MultiIndex).
    None when frame numbers are not non-negative integers."""
    ff, df = fr["frame_number"].to_numpy(), dets["frame_number"].to_numpy()
    if not (np.issubdtype(ff.dtype, np.integer) and np.issubdtype(df.dtype, np.integer)):
        return None
    if len(ff) == 0 or len(df) == 0 or min(ff.min(), df.min()) < 0:
        return None
    # One object hash table over both video columns (an Index lookup would first convert
    # 1M Python strings to Arrow); a video absent from fr gets codes no frame key has.
    codes = pd.factorize(
        np.concatenate(
            [fr["video_id"].to_numpy(dtype=object), dets["video_id"].to_numpy(dtype=object)]
        )
    )[0]
    fv, dv = codes[: len(ff)], codes[len(ff) :]
    span = int(max(ff.max(), df.max())) + 1
    fkey = fv.astype(np.int64) * span + ff
    dkey = dv.astype(np.int64) * span + df
    order = np.argsort(fkey, kind="stable")
    at = np.minimum(np.searchsorted(fkey[order], dkey), len(order) - 1)
    rows = order[at]
    return np.where((dv >= 0) & (fkey[rows] == dkey), rows, -1)


def _trigger_hits(ctx: _Context, rule: Rule, levels: dict[str, pd.DataFrame]) -> pd.DataFrame:
    kind, p = rule.trigger.kind, rule.trigger.params
    if kind in ("all", "any", "not", "for_at_least", "sequence"):
        return _composite_hits(ctx, rule, levels)
    frames = ctx.frames
    if kind == "cross":
        # The shared track order, narrowed to the rule's detections: no per-rule sort.
        area = ctx.areas[p.pop("line")]
        tracks = ctx.tracks.subset(ctx.mask(rule))
        return spatial.cross(ctx.dets, frames, area, anchor=rule.anchor, tracks=tracks, **p)
    dets = ctx.selected(rule)
    if kind == "zone":
        area = ctx.areas[p.pop("zone")]
        assert isinstance(area, Polygon)
        return spatial.zone(dets, frames, area, anchor=rule.anchor, **p)
    if kind == "intersection":
        return spatial.intersection(dets, frames, **p)
    if kind in ("distance", "direction", "stopped", "speed"):
        return getattr(spatial, kind)(dets, frames, anchor=rule.anchor, **p)
    fn = FRAME_TRIGGERS.get(kind) or _trigger_not_implemented(kind)
    return fn(dets, frames, **p)


def _composite_hits(ctx: _Context, rule: Rule, levels: dict[str, pd.DataFrame]) -> pd.DataFrame:
    kind, p = rule.trigger.kind, rule.trigger.params
    if kind == "all":
        return logic.all_of(*(levels[r] for r in p["rules"]), per_track=p["per_track"])
    if kind == "any":
        return logic.any_of(*(levels[r] for r in p["rules"]), per_track=p["per_track"])
    if kind == "not":
        universe = ctx.selected(rule) if p["per_track"] else None
        return logic.not_of(
            levels[p["rule"]], ctx.frames, per_track=p["per_track"], universe=universe
        )
    if kind == "for_at_least":
        return logic.for_at_least(levels[p["rule"]], ctx.frames, p["seconds"])
    return logic.sequence(
        levels[p["first"]], levels[p["then"]], within_s=p["within_s"], per_track=p["per_track"]
    )


def _zone_entry_rows(ctx: _Context, rule: Rule) -> np.ndarray | None:
    """Rows (input order) of a ``zone`` rule's rising edges: the first hit of each run of
    consecutive sampled frames per track, what ``fire(mode="edge")`` keeps, taken straight
    from the shared track order without building a hit for every detection in the zone.
    None when the shortcut does not apply (untracked detections in the zone, frame
    positions not shared); the caller then takes the general path."""
    ordt = ctx.track_ord
    if ordt is None:
        return None
    p = rule.trigger.params
    area = ctx.areas[p["zone"]]
    assert isinstance(area, Polygon)
    t = ctx.tracks
    mask = ctx.mask(rule)
    if ctx.untracked.any() or rule.anchor == "any":
        ok = mask & ctx.selects(area, rule.anchor, p.get("mode"))
        if (ok & ctx.untracked).any():
            return None
        okt = ok[t.pos]
    else:
        # Every detection is tracked: test the anchors in track order (shared across rules)
        # and skip the gather of a 1M-row mask.
        u, v = t.anchor(rule.anchor)
        w, h = t.wh()
        okt = area.selects(u, v, w, h, mode=p.get("mode"))
        if not mask.all():
            okt &= mask[t.pos]
    idx = np.flatnonzero(okt)
    key, o = t.key[idx], ordt[idx]
    edge = np.r_[True, (key[1:] != key[:-1]) | (o[1:] - o[:-1] > 1)] if idx.size else idx > 0
    return np.sort(t.pos[idx[edge]])  # input order, as zone() returns its rows


def _zone_hits(ctx: _Context, rows: np.ndarray) -> pd.DataFrame:
    """Raw hits of detection ``rows`` with ``_primary`` (the event's detection)."""
    hits = spatial.row_hits(ctx.dets.iloc[rows])
    hits["_primary"] = rows
    return hits


def _fire(
    hits: pd.DataFrame, frames: pd.DataFrame, rule: Rule, sampled: pd.DataFrame | None = None
) -> pd.DataFrame:
    f = rule.firing
    mode = "level" if rule.trigger.kind in _INSTANT_TRIGGERS else f.mode
    return logic.fire(
        hits,
        frames,
        mode=mode,
        cooldown_s=f.cooldown_s,
        max_events=f.max_events,
        max_per_track=f.max_per_track,
        sampled=sampled,
    )


def evaluate_hits(
    detections: pd.DataFrame,
    frames: pd.DataFrame | None,
    rules: RuleSet,
    *,
    shortcuts: bool = True,
) -> dict[str, pd.DataFrame]:
    """Each enabled, emitting rule's fired hits (before they become events), by rule id.

    ``shortcuts``: as for :func:`evaluate` (the same hits either way).
    """
    frames = frames_from_detections(detections) if frames is None else frames
    return _evaluate_hits(_Context(detections, frames, rules), shortcuts=shortcuts)


def _plain_level(rule: Rule, mode: str | None = None) -> bool:
    """Firing keeps every hit as it is (level, no cooldown, no limits); ``mode`` overrides
    the rule's firing mode (edges already taken)."""
    f = rule.firing
    mode = mode or ("level" if rule.trigger.kind in _INSTANT_TRIGGERS else f.mode)
    return (
        mode == "level" and not f.cooldown_s and f.max_events is None and (f.max_per_track is None)
    )


def _evaluate_hits(
    ctx: _Context, *, for_events: bool = False, shortcuts: bool = True
) -> dict[str, pd.DataFrame]:
    """Fired hits by rule id. ``for_events``: the caller only turns them into events, which
    sorts them by time itself, so plain level firing (a stable sort by time) is skipped.
    ``shortcuts``: see :func:`evaluate`."""
    rules, frames = ctx.rules, ctx.frames
    read = {c for r in rules.rules for c in r.trigger.children}  # rules composites read
    levels: dict[str, pd.DataFrame] = {}
    fired: dict[str, pd.DataFrame] = {}
    crossings: dict[str, dict[str, np.ndarray]] = {}
    entries_rows: dict[str, np.ndarray] = {}
    for rid in evaluation_order(rules):
        rule = rules.rule(rid)
        if not rule.enabled:
            levels[rid] = empty_hits()
            continue
        shortcut = shortcuts and rule.emit and rule.schedule is None and rid not in read
        if shortcut and for_events and rule.trigger.kind == "cross" and _plain_level(rule):
            # Crossings straight to events: no per-rule sort, dtypes or firing pass (the
            # events are sorted and conformed once for all rules), detections by position.
            p = rule.trigger.params
            tracks, area = ctx.tracks.subset(ctx.mask(rule)), ctx.areas[p.pop("line")]
            arrays = spatial.crossing_arrays(tracks, area, rule.anchor, **p)
            if arrays is not None:  # rows gathered once for all such rules, below
                crossings[rid] = arrays
                fired[rid] = None  # keeps the rule's place
                continue
            found = spatial.crossing_rows(tracks, area, rule.anchor, **p)
            fired[rid] = empty_hits() if found is None else found.drop(columns="_key")
            continue
        rows = None
        if shortcut and rule.trigger.kind == "zone" and rule.firing.mode == "edge":
            rows = _zone_entry_rows(ctx, rule)
        if rows is not None and for_events and _plain_level(rule, "level"):
            entries_rows[rid] = rows  # the edges are the events; rows gathered below
            fired[rid] = None  # keeps the rule's place
            continue
        if rows is not None:
            entries = spatial.sort_hits(spatial.row_hits(ctx.dets.iloc[rows]))
            # Edge already applied; cooldown and limits act on the edges as fire() does.
            fired[rid] = (
                logic.fire(
                    entries,
                    frames,
                    mode="level",
                    cooldown_s=rule.firing.cooldown_s,
                    max_events=rule.firing.max_events,
                    max_per_track=rule.firing.max_per_track,
                    sampled=ctx.sampled,
                )
                if len(entries)
                else empty_hits()
            )
            continue
        hits = conform_hits(_trigger_hits(ctx, rule, levels))
        if rule.schedule is not None:
            from roadlens.ode.schedule import parse_schedule

            hits = parse_schedule(rule.schedule).filter(hits)
        levels[rid] = hits
        if rule.emit:
            if not len(hits):
                fired[rid] = empty_hits()
            elif for_events and shortcuts and _plain_level(rule):
                fired[rid] = hits
            else:
                fired[rid] = _fire(hits, frames, rule, ctx.sampled if shortcuts else None)
    if entries_rows:
        sizes = [len(r) for r in entries_rows.values()]
        table = _zone_hits(ctx, np.concatenate(list(entries_rows.values())))
        for rid, a, b in zip(
            entries_rows, np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes), strict=True
        ):
            fired[rid] = table.iloc[a:b]
    if crossings:
        sizes = [len(c["before"]) for c in crossings.values()]
        every = {n: np.concatenate([c[n] for c in crossings.values()]) for n in CROSS_ARRAYS}
        table = spatial.crossing_arrays_to_rows(ctx.dets, every).drop(columns="_key")
        for rid, a, b in zip(crossings, np.cumsum([0, *sizes[:-1]]), np.cumsum(sizes), strict=True):
            fired[rid] = table.iloc[a:b]
    return fired


def _check_inputs(detections: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in detections]
    if missing:
        raise ValueError(f"detections lack columns {missing}")


def _primary_detection(
    events: pd.DataFrame, ctx: _Context, known: np.ndarray | None = None
) -> pd.DataFrame:
    """Per event row (index 0..n-1): the detection that justifies it, preferring one in the
    event's own frame (a crossing names the samples before and after it). ``known``: its
    row in the detections where the trigger already knows it (else -1: looked up by id)."""
    n = len(events)
    final = np.full(n, -1, dtype=np.int64) if known is None else known.astype(np.int64)
    look = np.flatnonzero(final < 0)
    if look.size:
        sub = events["detection_ids"].to_numpy()[look]
        lens = np.fromiter(map(len, sub), dtype=np.int64, count=len(sub))
        row = np.repeat(np.arange(len(sub)), lens)
        ids = np.fromiter(itertools.chain.from_iterable(sub), dtype=object, count=len(row))
        # A plain array, not an object Index: pandas 3 infers ``str`` for the detection
        # index, and an object-dtype target would convert the whole 1M-row index each call.
        pos = ctx.detection_index.get_indexer(ids) if len(ids) else row
        ok = pos >= 0
        row, pos = row[ok], pos[ok]
        frame = events["frame_number"].to_numpy()[look]
        other_frame = ctx.dets["frame_number"].to_numpy()[pos] != frame[row]
        order = np.lexsort((other_frame, row))  # by event, own-frame detection first
        row, pos = row[order], pos[order]
        first = np.r_[True, row[1:] != row[:-1]] if len(row) else np.array([], dtype=bool)
        final[look[row[first]]] = pos[first]
    found = np.flatnonzero(final >= 0)
    dets = ctx.dets
    cols = [c for c in ("class_name", "lat", "lon", "model_sha256") if c in dets]
    out = dets.iloc[final[found]][cols]  # gather the few rows first, then the columns
    return out.set_axis(found).reindex(range(n))


def _video_info(dets: pd.DataFrame) -> pd.DataFrame:
    """Source, vehicle, session and model of each video, from its first detection.

    ``drop_duplicates`` hashes the ids once; a groupby-first over 1M rows costs 5x more.
    """
    cols = [c for c in ("source_id", "vehicle_id", "session_id", "model_sha256") if c in dets]
    return dets.drop_duplicates("video_id")[["video_id", *cols]].set_index("video_id")


def _events(
    parts: list[tuple[Rule, pd.DataFrame]],
    ctx: _Context,
    video_info: pd.DataFrame,
    rule_set_sha256: str,
    model_sha256: str | None,
) -> pd.DataFrame:
    """Event rows of every rule's fired hits, built in one pass over all rules (the per-rule
    work is a few constants), in rule order and, per rule, by (video, time, frame, track,
    direction)."""
    sizes = np.array([len(h) for _, h in parts], dtype=np.int64)
    r = np.repeat(np.arange(len(parts)), sizes)
    # Shortcut rules hand over raw hits with ``_primary`` (the event detection's row):
    # dtypes are conformed here once for all rules.
    primary = np.concatenate(
        [
            h["_primary"].to_numpy(np.int64) if "_primary" in h else np.full(len(h), -1)
            for _, h in parts
        ]
        or [np.array([], dtype=np.int64)]
    )
    allh = pd.concat([h for _, h in parts], ignore_index=True) if parts else empty_hits()
    allh = conform_hits(allh)
    allh["_r"] = r
    allh["_primary"] = primary
    h = allh.sort_values(
        ["_r", "video_id", "pts_sec", "frame_number", "track_id", "direction"],
        kind="stable",
        na_position="first",
    ).reset_index(drop=True)
    n = len(h)
    r = h["_r"].to_numpy()
    prim = _primary_detection(h, ctx, h["_primary"].to_numpy())
    vinfo = video_info.reindex(h["video_id"])
    source = vinfo["source_id"].to_numpy(dtype=object) if "source_id" in vinfo else None
    # A video with no detections at all (absence): its source is the video id's prefix.
    vcode, videos = pd.factorize(h["video_id"].to_numpy(dtype=object))
    fallback_source = (
        pd.Series(videos, dtype=object).str.split("--").str[0].to_numpy(dtype=object)[vcode]
    )
    source = (
        fallback_source if source is None else np.where(pd.isna(source), fallback_source, source)
    )

    def col(frame: pd.DataFrame, name: str) -> np.ndarray:
        if name in frame:
            return frame[name].to_numpy(dtype=object)
        return np.full(n, None, dtype=object)

    def per_rule(values: Sequence[object]) -> pd.api.extensions.ExtensionArray:
        # Inferred once over the rules' values (as a scalar column per rule would be), then
        # repeated by a take: no per-event conversion of 100k+ Python strings.
        return pd.Series(np.asarray(values, dtype=object)).array.take(r)

    if model_sha256 is not None:
        model = np.full(n, model_sha256, dtype=object)
    else:
        model = col(prim, "model_sha256")
        model = np.where(pd.isna(model), col(vinfo, "model_sha256"), model)
        model = np.where(pd.isna(model), "unknown", model)

    rule_ids = per_rule([rule.id for rule, _ in parts])
    subject = h["track_id"].astype("string").fillna("frame")
    key = (
        pd.Series(np.asarray([rule.id for rule, _ in parts], dtype=object)[r], dtype=object)
        + ":"
        + h["video_id"]
        + ":"
        + h["frame_number"].astype(str)
        + ":"
        + subject
    )
    nth = key.groupby(key).cumcount()
    key = key.where(nth == 0, key + ":" + nth.astype(str))
    epoch_ms = h["captured_at"].dt.as_unit("ms").astype("int64").to_numpy()

    # Static per rule: what the rule asked for (the per-event measurement is ``value``).
    attributes = [
        json.dumps(
            {
                "params": rule.trigger.params,
                "area": rule.area,
                "anchor": rule.anchor,
                "firing": rule.firing.model_dump(),
            },
            sort_keys=True,
        )
        for rule, _ in parts
    ]
    bounds = np.r_[0, np.cumsum(sizes)].tolist()

    def by_part(values: np.ndarray) -> pd.Series:
        # pandas infers each rule's column dtype on its own (str, or object when a rule's
        # values are all missing) and concatenation keeps str only when every rule's is str:
        # inferring per rule keeps the exact dtypes of building each rule's events apart.
        # Strings without a missing value infer alike in every rule: one Series is enough.
        if pd.api.types.infer_dtype(values, skipna=False) == "string":
            return pd.Series(values)
        return pd.concat(
            [pd.Series(values[a:b]) for a, b in itertools.pairwise(bounds)], ignore_index=True
        )

    return pd.DataFrame(
        {
            "schema_version": np.full(n, table_version(EVENTS), np.int16),
            "event_id": time_ordered_uuids(epoch_ms, key.reset_index(drop=True)),
            "rule_id": rule_ids,
            "rule_name": per_rule([rule.display_name for rule, _ in parts]),
            "trigger": per_rule([rule.trigger.kind for rule, _ in parts]),
            "video_id": by_part(h["video_id"].to_numpy(dtype=object)),
            "source_id": by_part(source),
            "vehicle_id": by_part(col(vinfo, "vehicle_id")),
            "session_id": by_part(col(vinfo, "session_id")),
            "frame_number": h["frame_number"].to_numpy(np.int64),
            "pts_sec": h["pts_sec"].to_numpy(np.float64),
            "captured_at": h["captured_at"].array,
            "track_id": h["track_id"].to_numpy(),
            "class_name": by_part(col(prim, "class_name")),
            "direction": by_part(h["direction"].to_numpy(dtype=object)),
            "value": h["value"].to_numpy(np.float64),
            "detection_ids": h["detection_ids"].to_numpy(),
            "lat": pd.to_numeric(pd.Series(col(prim, "lat")), errors="coerce").to_numpy(),
            "lon": pd.to_numeric(pd.Series(col(prim, "lon")), errors="coerce").to_numpy(),
            "media_paths": [[] for _ in range(n)],
            "attributes": per_rule(attributes),
            "rule_set_sha256": rule_set_sha256,
            "model_sha256": by_part(model),
        }
    )


def _empty_events() -> pd.DataFrame:
    return EVENTS.empty_table().to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def evaluate(
    detections: pd.DataFrame,
    frames: pd.DataFrame | None,
    rules: RuleSet,
    *,
    model_sha256: str | None = None,
    shortcuts: bool = True,
) -> pd.DataFrame:
    """Events of every enabled, emitting rule, in the EVENTS columns, sorted by
    (video, time, rule, track, event id).

    ``frames``: every sampled frame (``video_id, frame_number, pts_sec, captured_at``);
    ``None`` derives them from the detections (then absence can only see frames that have
    some detection). ``model_sha256`` defaults to each event's detection's model hash.
    ``shortcuts``: take the shortcuts for the common rules (crossings and zone entries
    straight to events, shared frame positions); False takes the general path (trigger ->
    hits -> fire -> events) for every rule. The events are the same either way.
    """
    _check_inputs(detections)
    frames = frames_from_detections(detections) if frames is None else frames
    ctx = _Context(detections, frames, rules)
    fired = _evaluate_hits(ctx, for_events=True, shortcuts=shortcuts)
    parts = [(rules.rule(rid), hits) for rid, hits in fired.items() if len(hits)]
    if not parts:
        return _empty_events()
    out = _events(parts, ctx, _video_info(detections), rules.sha256(), model_sha256)
    out = out.sort_values(
        ["video_id", "pts_sec", "rule_id", "track_id", "event_id"],
        kind="stable",
        na_position="first",
    ).reset_index(drop=True)
    return out.astype(
        {
            "track_id": "Int64",
            "captured_at": "datetime64[us, UTC]",
            "frame_number": "int64",
            "schema_version": "int16",
        }
    )[EVENTS.names]


def evaluate_to_table(
    detections: pd.DataFrame,
    frames: pd.DataFrame | None,
    rules: RuleSet,
    *,
    model_sha256: str | None = None,
    shortcuts: bool = True,
) -> pa.Table:
    """:func:`evaluate` as an Arrow table conformed to ``roadlens.schema.EVENTS``."""
    df = evaluate(detections, frames, rules, model_sha256=model_sha256, shortcuts=shortcuts)
    return conform(pa.Table.from_pandas(df, schema=EVENTS, preserve_index=False), EVENTS)
