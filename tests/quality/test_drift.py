"""Drift metrics and their comparison with history: a shifted class mix, a churning
tracker, lost GPS and empty frames are flagged; a stable stream passes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from roadlens.quality.drift import (
    DriftThresholds,
    compare,
    drift_metrics,
    median_mix,
    total_variation,
)
from roadlens.synth.tables import synthetic_detections


def partition(seed: int, rows: int = 4_000, per_frame: int = 20) -> tuple[pd.DataFrame, ...]:
    """One video's detections and its sampled frames (every 10th frame has no boxes)."""
    det = synthetic_detections(rows, per_frame=per_frame, seed=seed).to_pandas()
    frames = det[["video_id", "frame_number", "pts_sec"]].drop_duplicates()
    extra = frames.assign(frame_number=frames["frame_number"] + 3, pts_sec=frames["pts_sec"] + 0.1)
    empty = extra.iloc[::10]  # sampled frames in between, without detections
    return det, pd.concat([frames, empty], ignore_index=True)


@pytest.fixture(scope="module")
def history() -> list[dict]:
    return [drift_metrics(*partition(seed)) for seed in range(6)]


def test_metrics_of_a_synthetic_video() -> None:
    det, frames = partition(0)
    m = drift_metrics(det, frames)
    # Five classes, four boxes each per frame of 20.
    assert m["class_mix"] == {name: pytest.approx(0.2) for name in m["class_mix"]}
    assert len(m["class_mix"]) == 5
    assert m["gps_coverage"] == pytest.approx(det["lat"].notna().mean())
    assert 0.95 < m["gps_coverage"] < 1.0
    assert m["empty_frame_share"] == pytest.approx(20 / 220)
    assert m["detections_per_frame"] == pytest.approx(4000 / 220)
    # Tracks: 19 per block of 50 frames (one box per frame has no track id); 200 frames
    # at 5 fps = 40 s of stream.
    assert m["track_churn_per_min"] == pytest.approx(4 * 19 / (40 / 60))
    json.dumps(m)


def test_empty_partition_metrics_are_undefined() -> None:
    det, frames = partition(0)
    m = drift_metrics(det.iloc[:0], frames)
    assert m["class_mix"] == {} and m["gps_coverage"] is None
    assert m["empty_frame_share"] == 1.0 and m["detections_per_frame"] == 0.0
    nothing = drift_metrics(det.iloc[:0], frames.iloc[:0])
    assert nothing["track_churn_per_min"] is None and nothing["empty_frame_share"] is None


def test_a_stable_stream_passes(history) -> None:
    current = drift_metrics(*partition(42))
    report = compare(current, history)
    assert report.passed, report.as_metadata()
    assert set(report.metrics) == {
        "class_mix",
        "track_churn_per_min",
        "empty_frame_share",
        "gps_coverage",
        "detections_per_frame",
    }
    assert report.metrics["class_mix"].deviation < 0.01
    assert report.history_points == 6
    json.dumps(report.as_metadata())


def test_a_shifted_class_mix_is_flagged(history) -> None:
    det, frames = partition(42)
    det = det.copy()
    cars = det.index[det["class_name"] != "car"][: len(det) // 4]
    det.loc[cars, "class_name"] = "car"  # 25 % of the boxes become cars: TVD 0.25
    report = compare(drift_metrics(det, frames), history)
    assert not report.passed
    assert report.drifted == ["class_mix"]
    drift = report.metrics["class_mix"]
    assert drift.deviation == pytest.approx(0.25, abs=1e-9)
    assert drift.baseline["car"] == pytest.approx(0.2)
    assert report.as_metadata()["metrics"]["class_mix"]["passed"] is False


def test_a_small_shift_under_the_threshold_passes(history) -> None:
    det, frames = partition(42)
    det = det.copy()
    cars = det.index[det["class_name"] != "car"][: len(det) // 20]
    det.loc[cars, "class_name"] = "car"  # TVD 0.05 < 0.15
    report = compare(drift_metrics(det, frames), history)
    assert report.passed
    assert report.metrics["class_mix"].deviation == pytest.approx(0.05, abs=1e-9)


def test_tracker_churn_lost_gps_and_empty_frames_are_flagged(history) -> None:
    det, frames = partition(42)
    churned = det.assign(track_id=np.arange(len(det)))  # a new id for every box
    assert compare(drift_metrics(churned, frames), history).drifted == ["track_churn_per_min"]
    no_gps = det.assign(lat=np.nan, lon=np.nan)
    assert compare(drift_metrics(no_gps, frames), history).drifted == ["gps_coverage"]
    # Two frames in three lose every box (the rest are unchanged): empty share, boxes/frame.
    keep = det["frame_number"] % 18 == 0
    drifted = compare(drift_metrics(det[keep], frames), history).drifted
    assert drifted == ["empty_frame_share", "detections_per_frame"]


def test_not_enough_history_passes_with_a_note(history) -> None:
    det, frames = partition(42)
    shifted = det.assign(class_name="car")
    report = compare(drift_metrics(shifted, frames), history[:4])
    assert report.passed and report.metrics == {}
    assert report.notes == ["not enough history: 4 earlier partitions, 5 needed"]
    strict = compare(
        drift_metrics(shifted, frames), history[:4], thresholds=DriftThresholds(min_history=3)
    )
    assert not strict.passed


def test_undefined_metrics_are_skipped_with_a_note(history) -> None:
    current = dict(history[0], gps_coverage=None)
    report = compare(current, history)
    assert report.passed and "gps_coverage" not in report.metrics
    assert any(n.startswith("gps_coverage:") for n in report.notes)


def test_thresholds_are_configurable(history) -> None:
    det, frames = partition(42)
    det = det.copy()
    cars = det.index[det["class_name"] != "car"][: len(det) // 20]
    det.loc[cars, "class_name"] = "car"
    tight = DriftThresholds(class_mix_tvd=0.01)
    assert compare(drift_metrics(det, frames), history, thresholds=tight).drifted == ["class_mix"]


def test_distances() -> None:
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1.0
    assert total_variation({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    mix = median_mix([{"a": 1.0}, {"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}])
    assert mix == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}
    assert sum(
        median_mix([{"a": 0.9, "b": 0.1}, {"a": 0.1, "b": 0.9}, {"a": 0.2, "b": 0.2}]).values()
    ) == pytest.approx(1.0)
