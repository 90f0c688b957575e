"""Detection and tracking evaluation against ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from roadlens.detect.evaluate import (
    EvalReport,
    _greedy_match,
    box_iou,
    count_id_switches,
    evaluate_detections,
    load_truth,
)
from roadlens.synth.render import render_clip


def _boxes(rows: list[tuple[int, str, int | None, float, float, float, float]]) -> pd.DataFrame:
    """Rows of ``(frame_number, class_name, track_id, x1, y1, x2, y2)``."""
    frame = pd.DataFrame(
        rows, columns=["frame_number", "class_name", "track_id", "x1", "y1", "x2", "y2"]
    )
    return frame.astype({"track_id": "Int64"})


def _two_cars(frames: int) -> pd.DataFrame:
    """Two cars, track 1 on the left and track 2 on the right, in ``frames`` frames."""
    rows = []
    for f in range(frames):
        rows.append((f, "car", 1, 10.0 + f, 10.0, 40.0 + f, 30.0))
        rows.append((f, "car", 2, 100.0 - f, 10.0, 130.0 - f, 30.0))
    return _boxes(rows)


# -- box_iou ------------------------------------------------------------------------------


def test_box_iou_known_values() -> None:
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [5.0, 0.0, 15.0, 10.0]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 0.0, 1.0 / 3.0]])


def test_box_iou_shapes_and_degenerate_boxes() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[0, 0, 5, 5], [1, 1, 2, 2], [0, 0, 0, 0]])
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0, :2], [0.25, 0.01])
    assert np.all(iou[1] == 0.0)  # a zero-area box overlaps nothing, without NaN
    assert box_iou(np.empty((0, 4)), b).shape == (0, 3)


# -- matching -----------------------------------------------------------------------------


def test_perfect_predictions_score_one() -> None:
    truth = _two_cars(5)
    report = evaluate_detections(truth, truth)
    assert (report.precision, report.recall) == (1.0, 1.0)
    assert (report.true_positives, report.false_positives, report.false_negatives) == (10, 0, 0)
    assert report.id_switches == 0
    assert report.frames == 5
    assert report.mean_iou == pytest.approx(1.0)
    assert report.per_class == {
        "car": {"precision": 1.0, "recall": 1.0, "tp": 10.0, "fp": 0.0, "fn": 0.0}
    }


def test_arrow_tables_are_accepted() -> None:
    truth = _two_cars(3)
    table = pa.Table.from_pandas(truth, preserve_index=False)
    report = evaluate_detections(table, table)
    assert report.true_positives == 6
    assert report.id_switches == 0


def test_shifted_box_below_threshold_is_one_fp_and_one_fn() -> None:
    truth = _boxes([(0, "car", 1, 0.0, 0.0, 10.0, 10.0)])
    # Shifted by half its width: IoU 1/3.
    predictions = _boxes([(0, "car", 7, 5.0, 0.0, 15.0, 10.0)])
    report = evaluate_detections(predictions, truth)
    assert (report.true_positives, report.false_positives, report.false_negatives) == (0, 1, 1)
    assert (report.precision, report.recall, report.mean_iou) == (0.0, 0.0, 0.0)
    loose = evaluate_detections(predictions, truth, iou_threshold=0.3)
    assert loose.true_positives == 1
    assert loose.mean_iou == pytest.approx(1.0 / 3.0)


def test_class_mismatch_counts_only_when_class_aware() -> None:
    truth = _boxes([(0, "car", 1, 0.0, 0.0, 10.0, 10.0)])
    predictions = _boxes([(0, "truck", 1, 0.0, 0.0, 10.0, 10.0)])
    aware = evaluate_detections(predictions, truth)
    assert (aware.true_positives, aware.false_positives, aware.false_negatives) == (0, 1, 1)
    assert aware.per_class["truck"]["fp"] == 1.0
    assert aware.per_class["car"]["fn"] == 1.0
    blind = evaluate_detections(predictions, truth, class_aware=False)
    assert (blind.true_positives, blind.false_positives, blind.false_negatives) == (1, 0, 0)
    assert blind.per_class["car"]["tp"] == 1.0  # true positives count under the truth class


def test_matching_is_one_to_one_and_prefers_higher_iou() -> None:
    truth = _boxes([(0, "car", 1, 0.0, 0.0, 10.0, 10.0), (0, "car", 2, 4.0, 0.0, 14.0, 10.0)])
    # Both predictions overlap both truth boxes; the best pairing keeps both matched.
    predictions = _boxes(
        [(0, "car", None, 0.0, 0.0, 10.0, 10.0), (0, "car", None, 1.0, 0.0, 11.0, 10.0)]
    )
    report = evaluate_detections(predictions, truth, iou_threshold=0.4)
    # Greedy: (p0, t0) IoU 1.0 first, then p1 can only take t1 (IoU 7/13 >= 0.4).
    assert (report.true_positives, report.false_positives, report.false_negatives) == (2, 0, 0)
    duplicate = evaluate_detections(pd.concat([truth.iloc[:1]] * 2), truth.iloc[:1])
    assert (duplicate.true_positives, duplicate.false_positives) == (1, 1)


def test_vectorised_greedy_equals_sequential_greedy() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        pairs = pd.DataFrame(
            {
                "p": rng.integers(0, 6, 30),
                "t": rng.integers(0, 6, 30),
                "iou": rng.choice([0.5, 0.7, 0.9], 30),  # many ties
            }
        ).drop_duplicates(["p", "t"])
        p, t, iou = (pairs[c].to_numpy() for c in ("p", "t", "iou"))
        expected = np.zeros(len(p), dtype=bool)
        used_p: set[int] = set()
        used_t: set[int] = set()
        for i in np.lexsort((t, p, -iou)):
            if p[i] not in used_p and t[i] not in used_t:
                expected[i] = True
                used_p.add(p[i])
                used_t.add(t[i])
        np.testing.assert_array_equal(_greedy_match(p, t, iou), expected)


def test_boxes_in_other_frames_never_match() -> None:
    truth = _boxes([(0, "car", 1, 0.0, 0.0, 10.0, 10.0)])
    predictions = _boxes([(1, "car", 1, 0.0, 0.0, 10.0, 10.0)])
    report = evaluate_detections(predictions, truth, frames=[0, 1])
    assert (report.true_positives, report.false_positives, report.false_negatives) == (0, 1, 1)


def test_frames_without_predictions_count_their_misses() -> None:
    truth = _two_cars(4)
    predictions = truth[truth.frame_number < 2]
    by_default = evaluate_detections(predictions, truth)
    assert (by_default.frames, by_default.recall) == (2, 1.0)
    sampled = evaluate_detections(predictions, truth, frames=[0, 1, 2, 3])
    assert sampled.frames == 4
    assert (sampled.true_positives, sampled.false_negatives) == (4, 4)
    assert sampled.recall == 0.5
    assert sampled.precision == 1.0
    # Frames outside the evaluated set are ignored on both sides.
    subset = evaluate_detections(truth, truth, frames=[3])
    assert (subset.truth_boxes, subset.predicted_boxes, subset.true_positives) == (2, 2, 2)


def test_low_visibility_truth_is_ignored() -> None:
    truth = _boxes(
        [(0, "car", 1, 0.0, 0.0, 10.0, 10.0), (0, "car", 2, 50.0, 0.0, 60.0, 10.0)]
    ).assign(visibility=[1.0, 0.2])
    missed = evaluate_detections(truth.iloc[:1], truth, min_visibility=0.5)
    assert (missed.truth_boxes, missed.false_negatives, missed.recall) == (1, 0, 1.0)
    found = evaluate_detections(truth, truth, min_visibility=0.5)
    assert (found.true_positives, found.false_positives, found.predicted_boxes) == (1, 0, 2)
    counted = evaluate_detections(truth.iloc[:1], truth)
    assert counted.false_negatives == 1


def test_empty_inputs() -> None:
    truth = _two_cars(2)
    report = evaluate_detections(truth.iloc[:0], truth, frames=[0, 1])
    assert (report.false_negatives, report.precision, report.recall) == (4, 0.0, 0.0)
    nothing = evaluate_detections(truth.iloc[:0], truth.iloc[:0])
    assert (nothing.frames, nothing.true_positives, nothing.per_class) == (0, 0, {})


def test_bad_arguments_are_rejected() -> None:
    truth = _two_cars(1)
    with pytest.raises(ValueError, match="iou_threshold"):
        evaluate_detections(truth, truth, iou_threshold=0.0)
    with pytest.raises(ValueError, match=r"predictions lack columns \['class_name'\]"):
        evaluate_detections(truth.drop(columns="class_name"), truth)
    with pytest.raises(ValueError, match="visibility"):
        evaluate_detections(truth, truth, min_visibility=0.5)


# -- identity switches --------------------------------------------------------------------


def test_track_swap_mid_sequence_is_two_switches() -> None:
    truth = _two_cars(6)
    predictions = truth.copy()
    swap = predictions.frame_number >= 3
    predictions.loc[swap, "track_id"] = 3 - predictions.loc[swap, "track_id"]
    report = evaluate_detections(predictions, truth)
    assert report.id_switches == 2
    assert (report.precision, report.recall) == (1.0, 1.0)


def test_null_track_ids_and_gaps_do_not_switch() -> None:
    truth = _two_cars(6)
    predictions = truth.copy()
    predictions["track_id"] = predictions["track_id"] + 10
    predictions.loc[predictions.frame_number == 2, "track_id"] = pd.NA  # untracked frame
    predictions = predictions[predictions.frame_number != 4]  # missed frame
    report = evaluate_detections(predictions, truth, frames=range(6))
    assert report.id_switches == 0
    assert report.false_negatives == 2
    no_ids = evaluate_detections(predictions.drop(columns="track_id"), truth)
    assert no_ids.id_switches == 0


def test_count_id_switches_returns_to_old_id() -> None:
    frames = np.array([0, 1, 2, 3, 4])
    truth_ids = pd.Series([9, 9, 9, 9, 9])
    predicted = pd.Series([1, 2, None, 1, 1], dtype="Int64")
    # 1 -> 2 and 2 -> 1 (the null frame is skipped): two switches.
    assert count_id_switches(frames, truth_ids, predicted) == 2
    shuffled = np.array([4, 0, 2, 1, 3])
    assert count_id_switches(frames[shuffled], truth_ids, predicted.iloc[shuffled]) == 2


# -- report -------------------------------------------------------------------------------


def test_report_to_dict_and_format() -> None:
    truth = _two_cars(2)
    report = evaluate_detections(truth.iloc[:3], truth)
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["per_class"]["car"]["tp"] == 3.0
    text = report.format()
    assert "car" in text
    assert "id switches 0" in text
    assert len(text.splitlines()) == 7
    assert isinstance(report, EvalReport)


# -- real renderer ------------------------------------------------------------------------


def test_load_truth_names_the_expected_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.truth\.parquet"):
        load_truth(tmp_path / "missing.mp4")


def test_rendered_clip_truth_round_trip(tmp_path: Path) -> None:
    clip = render_clip(tmp_path / "c.mp4", seconds=2, fps=10, seed=3)
    truth = load_truth(clip.video_path)
    pd.testing.assert_frame_equal(truth, clip.truth, check_dtype=False)
    sampled = list(range(0, clip.frames, 2))
    predictions = truth[truth.frame_number.isin(sampled)].copy()
    predictions[["x1", "y1", "x2", "y2"]] += 1.0
    assert len(predictions) > 20

    report = evaluate_detections(predictions, truth, frames=sampled)
    assert report.frames == len(sampled)
    assert (report.recall, report.precision, report.id_switches) == (1.0, 1.0, 0)
    assert report.truth_boxes == len(predictions)
    assert 0.5 < report.mean_iou < 1.0

    kept = predictions.sample(frac=0.75, random_state=0)
    dropped = evaluate_detections(kept, truth, frames=sampled)
    assert dropped.precision == 1.0
    assert dropped.recall == pytest.approx(len(kept) / len(predictions))
    assert dropped.recall == pytest.approx(0.75, abs=0.03)
