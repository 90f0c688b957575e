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

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from roadlens.ids import time_ordered_uuids
from roadlens.ode import spatial
from roadlens.ode.criteria import criteria_mask, track_stats
from roadlens.ode.geometry import Polygon, build_area
from roadlens.ode.hits import conform_hits, empty_hits
from roadlens.ode.rules import Rule, RuleSet, evaluation_order
from roadlens.schema import EVENTS, SCHEMA_VERSION, conform

try:  # written alongside this module; a missing module gives a clear error when used
    from roadlens.ode import frame_triggers as _frame_triggers
except ImportError:  # pragma: no cover - only while the module does not exist
    _frame_triggers = None  # type: ignore[assignment]
try:
    from roadlens.ode import logic as _logic
except ImportError:  # pragma: no cover
    _logic = None  # type: ignore[assignment]

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


def frames_from_detections(detections: pd.DataFrame) -> pd.DataFrame:
    """The sampled frames implied by ``detections`` (frames without detections are unknown,
    so pass the real frames table for absence and zero counts)."""
    f = detections[_FRAME_COLS].drop_duplicates(["video_id", "frame_number"])
    return f.sort_values(["video_id", "pts_sec", "frame_number"]).reset_index(drop=True)


def _registry() -> dict[str, Callable[..., pd.DataFrame]]:
    reg: dict[str, Callable[..., pd.DataFrame]] = {}
    if _frame_triggers is not None:
        reg.update(getattr(_frame_triggers, "FRAME_TRIGGERS", {}))
    return reg


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

    def selected(self, rule: Rule) -> pd.DataFrame:
        """The detections that pass the rule's criteria and its area (by its anchor)."""
        d = self.dets
        c = rule.criteria
        needs_tracks = c.min_track_frames is not None or c.min_track_seconds is not None
        stats = self.track_stats if needs_tracks else None
        mask = criteria_mask(d, c, self.frames, stats=stats)
        if rule.area is not None:
            area = self.areas[rule.area]
            assert isinstance(area, Polygon)  # validated in rules.py
            mask &= area.passes(d["x1"], d["y1"], d["x2"], d["y2"], rule.anchor, self.w, self.h)
        return d[mask]


def _trigger_hits(ctx: _Context, rule: Rule, levels: dict[str, pd.DataFrame]) -> pd.DataFrame:
    kind, p = rule.trigger.kind, rule.trigger.params
    if kind in ("all", "any", "not", "for_at_least", "sequence"):
        return _composite_hits(ctx, rule, levels)
    dets = ctx.selected(rule)
    frames = ctx.frames
    if kind == "cross":
        area = ctx.areas[p.pop("line")]
        return spatial.cross(dets, frames, area, anchor=rule.anchor, **p)
    if kind == "zone":
        area = ctx.areas[p.pop("zone")]
        assert isinstance(area, Polygon)
        return spatial.zone(dets, frames, area, anchor=rule.anchor, **p)
    if kind == "intersection":
        return spatial.intersection(dets, frames, **p)
    if kind in ("distance", "direction", "stopped", "speed"):
        return getattr(spatial, kind)(dets, frames, anchor=rule.anchor, **p)
    fn = _registry().get(kind) or _trigger_not_implemented(kind)
    return fn(dets, frames, **p)


def _composite_hits(ctx: _Context, rule: Rule, levels: dict[str, pd.DataFrame]) -> pd.DataFrame:
    if _logic is None:
        raise NotImplementedError("composite triggers need roadlens.ode.logic")
    kind, p = rule.trigger.kind, rule.trigger.params
    if kind == "all":
        return _logic.all_of(*(levels[r] for r in p["rules"]), per_track=p["per_track"])
    if kind == "any":
        return _logic.any_of(*(levels[r] for r in p["rules"]), per_track=p["per_track"])
    if kind == "not":
        universe = ctx.selected(rule) if p["per_track"] else None
        return _logic.not_of(
            levels[p["rule"]], ctx.frames, per_track=p["per_track"], universe=universe
        )
    if kind == "for_at_least":
        return _logic.for_at_least(levels[p["rule"]], ctx.frames, p["seconds"])
    return _logic.sequence(
        levels[p["first"]], levels[p["then"]], within_s=p["within_s"], per_track=p["per_track"]
    )


def _fire(hits: pd.DataFrame, frames: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    f = rule.firing
    mode = "level" if rule.trigger.kind in _INSTANT_TRIGGERS else f.mode
    if _logic is None:  # pragma: no cover - logic.py is part of the package
        raise NotImplementedError("firing needs roadlens.ode.logic.fire")
    return _logic.fire(
        hits,
        frames,
        mode=mode,
        cooldown_s=f.cooldown_s,
        max_events=f.max_events,
        max_per_track=f.max_per_track,
    )


def evaluate_hits(
    detections: pd.DataFrame, frames: pd.DataFrame | None, rules: RuleSet
) -> dict[str, pd.DataFrame]:
    """Each enabled, emitting rule's fired hits (before they become events), by rule id."""
    frames = frames_from_detections(detections) if frames is None else frames
    return _evaluate_hits(_Context(detections, frames, rules))


def _evaluate_hits(ctx: _Context) -> dict[str, pd.DataFrame]:
    rules, frames = ctx.rules, ctx.frames
    levels: dict[str, pd.DataFrame] = {}
    fired: dict[str, pd.DataFrame] = {}
    for rid in evaluation_order(rules):
        rule = rules.rule(rid)
        if not rule.enabled:
            levels[rid] = empty_hits()
            continue
        hits = conform_hits(_trigger_hits(ctx, rule, levels))
        if rule.schedule is not None:
            from roadlens.ode.schedule import parse_schedule

            hits = parse_schedule(rule.schedule).filter(hits)
        levels[rid] = hits
        if rule.emit:
            fired[rid] = _fire(hits, frames, rule) if len(hits) else empty_hits()
    return fired


def _check_inputs(detections: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in detections]
    if missing:
        raise ValueError(f"detections lack columns {missing}")


def _primary_detection(events: pd.DataFrame, ctx: _Context) -> pd.DataFrame:
    """Per event row (index 0..n-1): the detection that justifies it, preferring one in the
    event's own frame (a crossing names the samples before and after it)."""
    lens = events["detection_ids"].map(len).to_numpy()
    row = np.repeat(np.arange(len(events)), lens)
    ids = np.concatenate([np.asarray(x, dtype=object) for x in events["detection_ids"]] or [[]])
    pos = ctx.detection_index.get_indexer(pd.Index(ids, dtype=object)) if len(ids) else row
    ok = pos >= 0
    row, pos = row[ok], pos[ok]
    dets = ctx.dets
    other_frame = dets["frame_number"].to_numpy()[pos] != events["frame_number"].to_numpy()[row]
    order = np.lexsort((other_frame, row))  # by event, own-frame detection first
    row, pos = row[order], pos[order]
    first = np.r_[True, row[1:] != row[:-1]] if len(row) else np.array([], dtype=bool)
    cols = [c for c in ("class_name", "lat", "lon", "model_sha256") if c in dets]
    out = dets[cols].iloc[pos[first]]
    return out.set_axis(row[first]).reindex(range(len(events)))


def _video_info(dets: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("source_id", "vehicle_id", "session_id", "model_sha256") if c in dets]
    return dets.groupby("video_id", sort=False)[cols].first()


def _events(
    rule: Rule,
    hits: pd.DataFrame,
    ctx: _Context,
    video_info: pd.DataFrame,
    rule_set_sha256: str,
    model_sha256: str | None,
) -> pd.DataFrame:
    n = len(hits)
    h = hits.sort_values(
        ["video_id", "pts_sec", "frame_number", "track_id", "direction"],
        kind="stable",
        na_position="first",
    ).reset_index(drop=True)
    prim = _primary_detection(h, ctx)
    vinfo = video_info.reindex(h["video_id"])
    source = vinfo["source_id"].to_numpy(dtype=object) if "source_id" in vinfo else None
    # A video with no detections at all (absence): its source is the video id's prefix.
    fallback_source = h["video_id"].str.split("--").str[0].to_numpy(dtype=object)
    source = (
        fallback_source if source is None else np.where(pd.isna(source), fallback_source, source)
    )

    def col(frame: pd.DataFrame, name: str) -> np.ndarray:
        if name in frame:
            return frame[name].to_numpy(dtype=object)
        return np.full(n, None, dtype=object)

    if model_sha256 is not None:
        model = np.full(n, model_sha256, dtype=object)
    else:
        model = col(prim, "model_sha256")
        model = np.where(pd.isna(model), col(vinfo, "model_sha256"), model)
        model = np.where(pd.isna(model), "unknown", model)

    subject = h["track_id"].astype("string").fillna("frame")
    key = rule.id + ":" + h["video_id"] + ":" + h["frame_number"].astype(str) + ":" + subject
    nth = key.groupby(key).cumcount()
    key = key.where(nth == 0, key + ":" + nth.astype(str))
    epoch_ms = h["captured_at"].dt.as_unit("ms").astype("int64").to_numpy()

    # Static per rule: what the rule asked for (the per-event measurement is ``value``).
    attributes = json.dumps(
        {
            "params": rule.trigger.params,
            "area": rule.area,
            "anchor": rule.anchor,
            "firing": rule.firing.model_dump(),
        },
        sort_keys=True,
    )
    return pd.DataFrame(
        {
            "schema_version": np.full(n, SCHEMA_VERSION, np.int16),
            "event_id": time_ordered_uuids(epoch_ms, key.reset_index(drop=True)),
            "rule_id": rule.id,
            "rule_name": rule.display_name,
            "trigger": rule.trigger.kind,
            "video_id": h["video_id"].to_numpy(dtype=object),
            "source_id": source,
            "vehicle_id": col(vinfo, "vehicle_id"),
            "session_id": col(vinfo, "session_id"),
            "frame_number": h["frame_number"].to_numpy(np.int64),
            "pts_sec": h["pts_sec"].to_numpy(np.float64),
            "captured_at": h["captured_at"].array,
            "track_id": h["track_id"].to_numpy(),
            "class_name": col(prim, "class_name"),
            "direction": h["direction"].to_numpy(dtype=object),
            "value": h["value"].to_numpy(np.float64),
            "detection_ids": h["detection_ids"].to_numpy(),
            "lat": pd.to_numeric(pd.Series(col(prim, "lat")), errors="coerce").to_numpy(),
            "lon": pd.to_numeric(pd.Series(col(prim, "lon")), errors="coerce").to_numpy(),
            "media_paths": [[] for _ in range(n)],
            "attributes": attributes,
            "rule_set_sha256": rule_set_sha256,
            "model_sha256": model,
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
) -> pd.DataFrame:
    """Events of every enabled, emitting rule, in the EVENTS columns, sorted by
    (video, time, rule, track, event id).

    ``frames``: every sampled frame (``video_id, frame_number, pts_sec, captured_at``);
    ``None`` derives them from the detections (then absence can only see frames that have
    some detection). ``model_sha256`` defaults to each event's detection's model hash.
    """
    _check_inputs(detections)
    frames = frames_from_detections(detections) if frames is None else frames
    ctx = _Context(detections, frames, rules)
    fired = _evaluate_hits(ctx)
    rs_hash = rules.sha256()
    vinfo = _video_info(detections)
    parts = [
        _events(rules.rule(rid), hits, ctx, vinfo, rs_hash, model_sha256)
        for rid, hits in fired.items()
        if len(hits)
    ]
    if not parts:
        return _empty_events()
    out = pd.concat(parts, ignore_index=True)
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
) -> pa.Table:
    """:func:`evaluate` as an Arrow table conformed to ``roadlens.schema.EVENTS``."""
    df = evaluate(detections, frames, rules, model_sha256=model_sha256)
    return conform(pa.Table.from_pandas(df, schema=EVENTS, preserve_index=False), EVENTS)
