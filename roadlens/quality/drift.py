"""Drift checks: is this video's detection output like the recent ones?

:func:`drift_metrics` reduces one partition (a video's detections and sampled frames) to a
few numbers; :func:`compare` sets them against the same numbers of earlier partitions
(the "history", e.g. read back from Dagster asset-check metadata) and flags the ones that
moved too far from the history's median. No Great Expectations here: pandas only.

The metrics:

- ``class_mix``: the share of detections per class (sums to 1). Compared by total
  variation distance, ``0.5 * sum(|p - q|)``: 0 for the same mix, 1 for disjoint ones;
  0.15 means 15 % of the detections would have to change class to match.
- ``track_churn_per_min``: distinct track ids per minute of stream time. A tracker that
  loses its targets (blur, a lower frame rate, a new model) starts new ids and churns more.
- ``empty_frame_share``: the share of sampled frames with no detection at all (a covered
  lens, night, a broken model).
- ``gps_coverage``: the share of detections with both ``lat`` and ``lon``.
- ``detections_per_frame``: mean detections per sampled frame.

Default thresholds (:class:`DriftThresholds`): class-mix TVD 0.15; churn and detections per
frame may move 50 % from the median; empty-frame share and GPS coverage 0.15 and 0.10
(absolute shares). With fewer than 5 history points nothing can drift: the report passes
with the note "not enough history".

Example:
    >>> mix = {"class_mix": {"car": 0.8, "person": 0.2}}
    >>> compare({"class_mix": {"car": 0.2, "person": 0.8}}, [mix] * 5).passed
    False
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

CLASS_MIX = "class_mix"
SCALARS = ("track_churn_per_min", "empty_frame_share", "gps_coverage", "detections_per_frame")


def _stream_minutes(frames: pd.DataFrame, detections: pd.DataFrame) -> float | None:
    """Minutes of stream time: per video, last - first ``pts_sec`` plus one frame step."""
    source = frames if len(frames) else detections
    if not len(source) or "pts_sec" not in source.columns:
        return None
    pts = source[["video_id", "pts_sec"]].drop_duplicates().sort_values(["video_id", "pts_sec"])
    grouped = pts.groupby("video_id", sort=False)["pts_sec"]
    span = grouped.max() - grouped.min()
    steps = grouped.diff().dropna()
    step = float(steps[steps > 0].median()) if (steps > 0).any() else 0.0
    seconds = float((span + step).sum())
    return seconds / 60.0 if seconds > 0 else None


def drift_metrics(
    detections: pd.DataFrame, frames: pd.DataFrame
) -> dict[str, float | dict[str, float] | None]:
    """The drift metrics of one partition: see the module docstring.

    ``detections`` needs ``video_id``, ``frame_number``, ``pts_sec``, ``class_name``,
    ``track_id``, ``lat`` and ``lon``; ``frames`` needs ``video_id``, ``frame_number`` and
    ``pts_sec`` (all the sampled frames, also those without detections). A metric that is
    undefined (no detections, no stream time) is ``None``.

    >>> det = pd.DataFrame({"video_id": "v", "frame_number": [0, 0, 6],
    ...     "pts_sec": [0.0, 0.0, 0.2], "class_name": ["car", "car", "person"],
    ...     "track_id": [1, 2, 1], "lat": [52.5, None, 52.5], "lon": [13.4, None, 13.4]})
    >>> fr = pd.DataFrame({"video_id": "v", "frame_number": [0, 6, 12, 18],
    ...     "pts_sec": [0.0, 0.2, 0.4, 0.6]})
    >>> m = drift_metrics(det, fr)
    >>> m["class_mix"], m["empty_frame_share"], round(m["gps_coverage"], 3)
    ({'car': 0.6666666666666666, 'person': 0.3333333333333333}, 0.5, 0.667)
    """
    n = len(detections)
    out: dict[str, Any] = {"detections": n, "frames": len(frames)}
    if n:
        mix = detections["class_name"].value_counts(normalize=True, dropna=False)
        out[CLASS_MIX] = {str(k): float(v) for k, v in mix.sort_index().items()}
        located = detections["lat"].notna() & detections["lon"].notna()
        out["gps_coverage"] = float(located.mean())
    else:
        out[CLASS_MIX] = {}
        out["gps_coverage"] = None
    minutes = _stream_minutes(frames, detections)
    tracks = detections[["video_id", "track_id"]].dropna().drop_duplicates() if n else []
    out["track_churn_per_min"] = len(tracks) / minutes if minutes else None
    if len(frames):
        keys = ["video_id", "frame_number"]
        seen = (
            pd.MultiIndex.from_frame(detections[keys]) if n else pd.MultiIndex.from_arrays([[], []])
        )
        has = pd.MultiIndex.from_frame(frames[keys]).isin(seen)
        out["empty_frame_share"] = float(1.0 - has.mean())
        out["detections_per_frame"] = n / len(frames)
    else:
        out["empty_frame_share"] = None
        out["detections_per_frame"] = None
    return out


@dataclass(frozen=True)
class DriftThresholds:
    """How far each metric may move from the history's median before it counts as drift.

    ``relative`` metrics compare ``|current - median| / median``; the others compare the
    absolute difference of shares; ``class_mix_tvd`` bounds the total variation distance.
    """

    class_mix_tvd: float = 0.15
    track_churn_per_min: float = 0.5
    empty_frame_share: float = 0.15
    gps_coverage: float = 0.10
    detections_per_frame: float = 0.5
    min_history: int = 5
    relative: tuple[str, ...] = ("track_churn_per_min", "detections_per_frame")

    def limit(self, metric: str) -> float:
        return float(self.class_mix_tvd if metric == CLASS_MIX else getattr(self, metric))


@dataclass(frozen=True)
class MetricDrift:
    """One metric's current value, its history baseline (median) and how far apart."""

    metric: str
    current: Any
    baseline: Any
    deviation: float
    threshold: float
    kind: str  # "tvd", "absolute" or "relative"

    @property
    def passed(self) -> bool:
        return self.deviation <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "baseline": self.baseline,
            "deviation": round(self.deviation, 6) if math.isfinite(self.deviation) else None,
            "threshold": self.threshold,
            "kind": self.kind,
            "passed": self.passed,
        }


@dataclass
class DriftReport:
    """What :func:`compare` found; ``passed`` is False when any metric drifted."""

    passed: bool
    metrics: dict[str, MetricDrift] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    history_points: int = 0

    @property
    def drifted(self) -> list[str]:
        """The names of the metrics beyond their threshold."""
        return [name for name, m in self.metrics.items() if not m.passed]

    def as_metadata(self) -> dict[str, Any]:
        """A JSON-able summary for the Dagster UI."""
        return {
            "passed": self.passed,
            "drifted": self.drifted,
            "history_points": self.history_points,
            "notes": list(self.notes),
            "metrics": {name: m.as_dict() for name, m in self.metrics.items()},
        }


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """``0.5 * sum(|p - q|)`` over the union of classes (missing classes count as 0).

    >>> total_variation({"car": 0.5, "person": 0.5}, {"car": 1.0})
    0.5
    """
    keys = set(p) | set(q)
    return 0.5 * sum(abs(float(p.get(k, 0.0)) - float(q.get(k, 0.0))) for k in keys)


def median_mix(mixes: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The per-class median share over ``mixes`` (absent = 0), renormalized to sum 1."""
    keys = sorted({k for m in mixes for k in m})
    medians = {k: float(np.median([float(m.get(k, 0.0)) for m in mixes])) for k in keys}
    total = sum(medians.values())
    return {k: v / total for k, v in medians.items()} if total > 0 else medians


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def compare(
    current: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    *,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Compare ``current`` (a :func:`drift_metrics` result) with earlier partitions'.

    Each metric's baseline is the median over the history points that have it; the report
    fails when any metric deviates beyond its threshold. Metrics missing (``None``) on
    either side are skipped with a note. Fewer than ``thresholds.min_history`` points:
    passes with the note "not enough history".

    >>> past = [{"gps_coverage": 0.98}] * 5
    >>> compare({"gps_coverage": 0.60}, past).drifted
    ['gps_coverage']
    >>> compare({"gps_coverage": 0.60}, past[:2]).notes
    ['not enough history: 2 earlier partitions, 5 needed']
    """
    limits = thresholds or DriftThresholds()
    report = DriftReport(passed=True, history_points=len(history))
    if len(history) < limits.min_history:
        report.notes.append(
            f"not enough history: {len(history)} earlier partitions, {limits.min_history} needed"
        )
        return report
    if CLASS_MIX in current:
        mixes = [h[CLASS_MIX] for h in history if h.get(CLASS_MIX)]
        if current[CLASS_MIX] and len(mixes) >= limits.min_history:
            baseline = median_mix(mixes)
            report.metrics[CLASS_MIX] = MetricDrift(
                CLASS_MIX,
                dict(current[CLASS_MIX]),
                baseline,
                total_variation(current[CLASS_MIX], baseline),
                limits.limit(CLASS_MIX),
                "tvd",
            )
        else:
            report.notes.append(f"{CLASS_MIX}: no detections now or in enough of the history")
    for metric in SCALARS:
        if metric not in current:
            continue
        now = _number(current[metric])
        past = [v for h in history if (v := _number(h.get(metric))) is not None]
        if now is None or len(past) < limits.min_history:
            report.notes.append(f"{metric}: undefined now or in too much of the history")
            continue
        base = statistics.median(past)
        if metric in limits.relative:
            deviation = abs(now - base) / base if base else (0.0 if now == base else math.inf)
            kind = "relative"
        else:
            deviation, kind = abs(now - base), "absolute"
        report.metrics[metric] = MetricDrift(
            metric, now, base, deviation, limits.limit(metric), kind
        )
    report.passed = all(m.passed for m in report.metrics.values())
    return report
