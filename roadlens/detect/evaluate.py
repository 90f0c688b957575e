"""Score detections and tracks against synthetic ground truth.

Predictions (rows shaped like :data:`roadlens.schema.RAW_DETECTIONS` or
:data:`roadlens.schema.DETECTIONS`) are matched one-to-one to the truth boxes of the same
frame, greedily by descending IoU, and counted as true positives, false positives and
false negatives overall and per class. Identity switches follow the MOT convention.

Example:
    >>> truth = pd.DataFrame({
    ...     "frame_number": [0, 0], "class_name": ["car", "person"], "track_id": [1, 2],
    ...     "x1": [0.0, 50.0], "y1": [0.0, 0.0], "x2": [10.0, 60.0], "y2": [10.0, 30.0],
    ... })
    >>> predictions = truth.iloc[:1].assign(track_id=7)
    >>> report = evaluate_detections(predictions, truth)
    >>> report.precision, report.recall, report.false_negatives
    (1.0, 0.5, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

BOX_COLUMNS = ["x1", "y1", "x2", "y2"]
TRUTH_SUFFIX = ".truth.parquet"


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes along the last axis, broadcasting the leading axes."""
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros(np.shape(inter)), where=union > 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of two sets of ``xyxy`` boxes.

    Args:
        a: ``(N, 4)`` boxes as ``x1, y1, x2, y2``.
        b: ``(M, 4)`` boxes as ``x1, y1, x2, y2``.

    Returns:
        ``(N, M)`` float64 matrix; pairs whose union has no area score 0.

    Example:
        >>> box_iou(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10]]))
        array([[1.        , 0.33333333]])
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return _iou(a[:, None, :], b[None, :, :])


@dataclass(frozen=True)
class EvalReport:
    """Detection and tracking scores over a set of frames.

    ``per_class`` maps a class name to ``precision``, ``recall``, ``tp``, ``fp`` and ``fn``:
    true positives and false negatives count under the truth box's class, false positives
    under the predicted class. Precision and recall are 0.0 when undefined (no predictions,
    no truth); ``mean_iou`` is the mean IoU of the true positives, 0.0 when there are none.

    Example:
        >>> report = EvalReport(1, 2, 1, 1, 0, 1, 1.0, 0.5, 0, {}, 0.9)
        >>> report.to_dict()["recall"], round(report.f1, 3)
        (0.5, 0.667)
    """

    frames: int
    truth_boxes: int
    predicted_boxes: int
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float
    recall: float
    id_switches: int
    per_class: dict[str, dict[str, float]]
    mean_iou: float

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (0.0 when both are 0)."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-serialisable types (``per_class`` deep-copied)."""
        return asdict(self)

    def format(self) -> str:
        """A readable multi-line table: one row per class, a total row and the tracking line.

        Example:
            >>> print(EvalReport(1, 1, 1, 1, 0, 0, 1.0, 1.0, 0, {}, 0.9).format().splitlines()[0])
            frames 1   truth boxes 1   predicted boxes 1
        """
        header = f"{'class':<16}{'truth':>7}{'pred':>7}{'tp':>7}{'fp':>7}{'fn':>7}"
        header += f"{'precision':>11}{'recall':>8}"

        def row(name: str, tp: float, fp: float, fn: float, precision: float, recall: float) -> str:
            counts = f"{tp + fn:>7.0f}{tp + fp:>7.0f}{tp:>7.0f}{fp:>7.0f}{fn:>7.0f}"
            return f"{name:<16}{counts}{precision:>11.3f}{recall:>8.3f}"

        lines = [
            f"frames {self.frames}   truth boxes {self.truth_boxes}   "
            f"predicted boxes {self.predicted_boxes}",
            header,
            "-" * len(header),
        ]
        lines += [
            row(name, s["tp"], s["fp"], s["fn"], s["precision"], s["recall"])
            for name, s in self.per_class.items()
        ]
        lines += [
            "-" * len(header),
            row(
                "all",
                self.true_positives,
                self.false_positives,
                self.false_negatives,
                self.precision,
                self.recall,
            ),
            f"f1 {self.f1:.3f}   mean IoU {self.mean_iou:.3f}   id switches {self.id_switches}",
        ]
        return "\n".join(lines)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _frame(data: pd.DataFrame | pa.Table, role: str, required: Sequence[str]) -> pd.DataFrame:
    frame = data.to_pandas() if isinstance(data, pa.Table) else data
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise ValueError(f"{role} lack columns {missing}")
    return frame.reset_index(drop=True)


def _track_ids(frame: pd.DataFrame) -> pd.Series:
    """The ``track_id`` column as nullable Int64 (all null when the column is absent)."""
    if "track_id" not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="Int64")
    return pd.Series(frame["track_id"].to_numpy(), index=frame.index).astype("Int64")


def _greedy_match(pred_idx: np.ndarray, truth_idx: np.ndarray, iou: np.ndarray) -> np.ndarray:
    """Mask of the candidate pairs kept by greedy one-to-one matching by descending IoU.

    Each round accepts every pair that is the best remaining pair of both its prediction
    and its truth box (ties broken by prediction, then truth index), then drops the pairs
    that share a box with an accepted one. This gives the same result as walking the pairs
    one by one in descending IoU order, with whole-array rounds instead of a per-pair loop.
    """
    count = len(iou)
    accepted = np.zeros(count, dtype=bool)
    if count == 0:
        return accepted
    rank = np.empty(count, dtype=np.int64)
    rank[np.lexsort((truth_idx, pred_idx, -iou))] = np.arange(count)
    alive = np.ones(count, dtype=bool)
    sentinel = np.iinfo(np.int64).max
    n_pred, n_truth = int(pred_idx.max()) + 1, int(truth_idx.max()) + 1
    while alive.any():
        best_pred = np.full(n_pred, sentinel)
        best_truth = np.full(n_truth, sentinel)
        np.minimum.at(best_pred, pred_idx[alive], rank[alive])
        np.minimum.at(best_truth, truth_idx[alive], rank[alive])
        mutual = alive & (best_pred[pred_idx] == rank) & (best_truth[truth_idx] == rank)
        accepted |= mutual
        used_pred = np.zeros(n_pred, dtype=bool)
        used_truth = np.zeros(n_truth, dtype=bool)
        used_pred[pred_idx[mutual]] = True
        used_truth[truth_idx[mutual]] = True
        alive &= ~(used_pred[pred_idx] | used_truth[truth_idx])
    return accepted


def _match(
    predictions: pd.DataFrame, truth: pd.DataFrame, *, iou_threshold: float, class_aware: bool
) -> pd.DataFrame:
    """One-to-one matches of ``predictions`` to ``truth`` rows within each frame.

    Returns columns ``pred`` and ``truth`` (positional row indices) and ``iou``.
    """
    keys = ["frame_number", "class_name"] if class_aware else ["frame_number"]
    left = predictions[keys].assign(pred=np.arange(len(predictions)))
    right = truth[keys].assign(truth=np.arange(len(truth)))
    pairs = left.merge(right, on=keys, how="inner")
    pred_idx = pairs["pred"].to_numpy(np.int64)
    truth_idx = pairs["truth"].to_numpy(np.int64)
    pred_boxes = predictions[BOX_COLUMNS].to_numpy(np.float64)
    truth_boxes = truth[BOX_COLUMNS].to_numpy(np.float64)
    iou = _iou(pred_boxes[pred_idx], truth_boxes[truth_idx])
    candidate = iou >= iou_threshold
    pred_idx, truth_idx, iou = pred_idx[candidate], truth_idx[candidate], iou[candidate]
    keep = _greedy_match(pred_idx, truth_idx, iou)
    return pd.DataFrame({"pred": pred_idx[keep], "truth": truth_idx[keep], "iou": iou[keep]})


def count_id_switches(
    frame_number: np.ndarray, truth_track: pd.Series, pred_track: pd.Series
) -> int:
    """ID switches over matched pairs, MOT style.

    For each truth track, walk its matches in frame order and count every change of the
    predicted track id from the previous non-null one. Null ids on either side are skipped.

    Example:
        >>> frames, truth_ids = np.array([0, 1, 2, 3]), pd.Series([1, 1, 1, 1])
        >>> count_id_switches(frames, truth_ids, pd.Series([5, None, 6, 6], dtype="Int64"))
        1
    """
    pairs = pd.DataFrame(
        {
            "frame_number": np.asarray(frame_number),
            "truth_track": pd.Series(truth_track).astype("Int64").array,
            "pred_track": pd.Series(pred_track).astype("Int64").array,
        }
    ).dropna(subset=["truth_track", "pred_track"])
    if pairs.empty:
        return 0
    pairs = pairs.sort_values(["truth_track", "frame_number"], kind="stable")
    previous = pairs.groupby("truth_track", sort=False)["pred_track"].shift()
    return int((previous.notna() & (previous != pairs["pred_track"])).sum())


def evaluate_detections(
    predictions: pd.DataFrame | pa.Table,
    truth: pd.DataFrame | pa.Table,
    *,
    frames: Sequence[int] | np.ndarray | None = None,
    iou_threshold: float = 0.5,
    class_aware: bool = True,
    min_visibility: float = 0.0,
) -> EvalReport:
    """Match predictions to ground truth frame by frame and score them.

    A prediction and a truth box of the same frame (and the same ``class_name`` when
    ``class_aware``) can match when their IoU is at least ``iou_threshold``; matching is
    one-to-one, greedy by descending IoU. Unmatched predictions are false positives,
    unmatched truth boxes false negatives.

    Args:
        predictions: Columns ``frame_number``, ``class_name``, ``x1``, ``y1``, ``x2``,
            ``y2`` and optionally ``track_id`` (nullable), as in ``RAW_DETECTIONS``.
        truth: Ground truth as written by :func:`roadlens.synth.render.render_clip`
            (see :func:`load_truth`): the columns above, ``track_id`` and ``visibility``.
        frames: The frame numbers that were evaluated, normally the sampled frames fed to
            the detector. Only these frames are scored; rows of either table outside them
            are ignored. Defaults to the frame numbers present in ``predictions``, which
            silently skips sampled frames where the detector found nothing: pass the
            sampled frames so their missed truth boxes count as false negatives.
        iou_threshold: Minimum IoU of a match, in ``(0, 1]``.
        class_aware: Whether a match needs the same ``class_name``; a right box with the
            wrong class then counts one false positive and one false negative.
        min_visibility: Truth boxes less visible than this are "ignore" regions: they are
            not missed when unmatched, and a prediction left over after matching the other
            boxes that lands on one counts as neither true nor false positive.

    Returns:
        An :class:`EvalReport`; ``id_switches`` counts, for each truth ``track_id``, the
        changes of the matched prediction's non-null ``track_id`` across its matched frames.

    Example:
        >>> truth = pd.DataFrame({"frame_number": [0, 1], "class_name": ["car", "car"],
        ...     "x1": [0.0, 0.0], "y1": [0.0, 0.0], "x2": [10.0, 10.0], "y2": [10.0, 10.0]})
        >>> report = evaluate_detections(truth.iloc[:1], truth, frames=[0, 1])
        >>> report.true_positives, report.false_negatives, report.recall
        (1, 1, 0.5)
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    required = ["frame_number", "class_name", *BOX_COLUMNS]
    preds = _frame(predictions, "predictions", required)
    gt = _frame(truth, "truth", required)
    if min_visibility > 0 and "visibility" not in gt.columns:
        raise ValueError("truth lacks the visibility column that min_visibility needs")

    frame_set = np.unique(
        np.asarray(frames if frames is not None else preds["frame_number"], dtype=np.int64)
    )
    preds = preds[preds["frame_number"].isin(frame_set)].reset_index(drop=True)
    gt = gt[gt["frame_number"].isin(frame_set)].reset_index(drop=True)
    ignored = (
        gt["visibility"].to_numpy(np.float64) < min_visibility
        if "visibility" in gt.columns
        else np.zeros(len(gt), dtype=bool)
    )
    scored = gt[~ignored].reset_index(drop=True)
    matches = _match(preds, scored, iou_threshold=iou_threshold, class_aware=class_aware)

    matched_pred = np.zeros(len(preds), dtype=bool)
    matched_pred[matches["pred"].to_numpy()] = True
    matched_truth = np.zeros(len(scored), dtype=bool)
    matched_truth[matches["truth"].to_numpy()] = True
    false_pos = ~matched_pred
    if ignored.any():
        leftover = np.flatnonzero(~matched_pred)
        on_ignored = _match(
            preds.iloc[leftover].reset_index(drop=True),
            gt[ignored].reset_index(drop=True),
            iou_threshold=iou_threshold,
            class_aware=class_aware,
        )
        false_pos[leftover[on_ignored["pred"].to_numpy()]] = False

    tp_by_class = scored["class_name"].iloc[matches["truth"]].value_counts()
    fp_by_class = preds["class_name"][false_pos].value_counts()
    fn_by_class = scored["class_name"][~matched_truth].value_counts()
    counts = (
        pd.DataFrame({"tp": tp_by_class, "fp": fp_by_class, "fn": fn_by_class})
        .fillna(0)
        .astype(np.int64)
        .sort_index()
    )
    per_class = {
        str(name): {
            "precision": _ratio(row.tp, row.tp + row.fp),
            "recall": _ratio(row.tp, row.tp + row.fn),
            "tp": float(row.tp),
            "fp": float(row.fp),
            "fn": float(row.fn),
        }
        for name, row in counts.iterrows()
    }

    tp, fp, fn = len(matches), int(false_pos.sum()), int((~matched_truth).sum())
    switches = count_id_switches(
        scored["frame_number"].to_numpy()[matches["truth"].to_numpy()],
        _track_ids(scored).iloc[matches["truth"]],
        _track_ids(preds).iloc[matches["pred"]],
    )
    return EvalReport(
        frames=len(frame_set),
        truth_boxes=len(scored),
        predicted_boxes=len(preds),
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        id_switches=switches,
        per_class=per_class,
        mean_iou=float(matches["iou"].mean()) if tp else 0.0,
    )


def truth_path_for(video_path: str | Path) -> Path:
    """Where :func:`roadlens.synth.render.render_clip` writes a video's ground truth.

    >>> truth_path_for("drives/c.mp4").as_posix()
    'drives/c.truth.parquet'
    """
    video_path = Path(video_path)
    return video_path.with_name(video_path.stem + TRUTH_SUFFIX)


def load_truth(video_path: str | Path) -> pd.DataFrame:
    """Read the ``<stem>.truth.parquet`` ground truth that sits next to ``video_path``.

    Raises:
        FileNotFoundError: naming the expected truth path when it does not exist.

    Example:
        >>> import tempfile
        >>> from roadlens.synth.render import render_clip
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     clip = render_clip(Path(tmp, "c.mp4"), seconds=0.2, fps=10, width=160, height=96)
        ...     truth = load_truth(clip.video_path)
        >>> truth.columns[:3].tolist(), len(truth)
        (['frame_number', 'pts_sec', 'track_id'], 2)
        >>> load_truth("no/such/c.mp4")
        Traceback (most recent call last):
        ...
        FileNotFoundError: no ground truth for no/such/c.mp4: expected no/such/c.truth.parquet ...
    """
    path = truth_path_for(video_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no ground truth for {video_path}: expected {path} "
            "(written by roadlens.synth.render.render_clip)"
        )
    return pd.read_parquet(path)
