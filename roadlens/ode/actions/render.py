"""OpenCV drawing: event boxes with their labels, crops, and the annotated video of a rule.

:func:`draw_boxes` draws boxes in place (the event's primary box red, its others amber),
:func:`crop_box` cuts a box with a margin, :func:`annotate` renders sampled frames or a video
with boxes, areas and running event counters to an MP4.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from roadlens.atomic import move_into_place
from roadlens.ode.actions.media import tmp_next_to

log = logging.getLogger(__name__)


PRIMARY_COLOR = (0, 0, 255)  # BGR red: the event's own box
OTHER_COLOR = (0, 200, 255)  # amber: the event's other boxes (e.g. B of an A x B pair)
AREA_COLOR = (255, 128, 0)
BOX_THICKNESS = 2


def _label(row: Mapping[str, Any]) -> str:
    track = row.get("track_id")
    tid = "" if track is None or pd.isna(track) else f" #{int(track)}"
    return f"{row.get('class_name', '')} {float(row.get('confidence', 0.0)):.2f}{tid}"


def draw_boxes(image: np.ndarray, boxes: pd.DataFrame, *, primary: int | None = 0) -> np.ndarray:
    """Draw ``boxes`` (x1..y2, class_name, confidence, track_id) on ``image`` in place.

    The label sits above the box (inside when at the top edge) so it never hides the left,
    right or bottom edge.
    """
    for i, row in enumerate(boxes.to_dict("records")):
        color = PRIMARY_COLOR if i == primary else OTHER_COLOR
        x1, y1, x2, y2 = (round(float(row[c])) for c in ("x1", "y1", "x2", "y2"))
        cv2.rectangle(image, (x1, y1), (x2, y2), color, BOX_THICKNESS)
        text = _label(row)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else y1 + th + 4
        cv2.rectangle(image, (x1, ty - th - 2), (x1 + tw + 2, ty + base), color, -1)
        cv2.putText(
            image, text, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    return image


def crop_box(
    image: np.ndarray, box: Mapping[str, Any], margin: float = 0.15
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The box grown by ``margin`` × its width/height on each side, clipped to the image.

    >>> img = np.zeros((100, 200, 3), np.uint8)
    >>> crop_box(img, {"x1": 10, "y1": 10, "x2": 30, "y2": 50}, 0.5)[1]
    (0, 0, 40, 70)
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(box[c]) for c in ("x1", "y1", "x2", "y2"))
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    a, b = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
    c, d = min(w, math.ceil(x2 + mx)), min(h, math.ceil(y2 + my))
    return image[b:d, a:c].copy(), (a, b, c, d)


def _area_polylines(areas: Any, width: int, height: int) -> list[tuple[str, np.ndarray, bool]]:
    """``(name, int points, closed)`` for each area: a rule set's ``areas`` (AreaSpec),
    geometry objects (Line, Polyline, Polygon) or plain point lists (closed when ≥ 3)."""
    items = areas.items() if isinstance(areas, Mapping) else enumerate(areas or [])
    out = []
    for name, area in items:
        normalized = bool(getattr(area, "normalized", False))
        if getattr(area, "line", None) is not None:
            pts, closed = list(area.line), False
        elif getattr(area, "p1", None) is not None:
            pts, closed = [area.p1, area.p2], False
        elif getattr(area, "polyline", None) is not None:
            pts, closed = list(area.polyline), False
        elif getattr(area, "polygon", None) is not None:
            pts, closed = list(area.polygon), True
        elif getattr(area, "points", None) is not None:  # geometry Polyline or Polygon
            pts, closed = list(area.points), hasattr(area, "geometry")
        else:
            pts = [tuple(p) for p in area]
            closed = len(pts) >= 3
        arr = np.asarray(pts, np.float64)
        if normalized:
            arr = arr * [width, height]
        out.append((str(name), np.round(arr).astype(np.int32), closed))
    return out


def annotate(
    source: pd.DataFrame | str | Path,
    detections: pd.DataFrame,
    events: pd.DataFrame,
    out: str | Path,
    *,
    areas: object = None,
    counters: bool = True,
    fps: float | None = None,
) -> Path:
    """An MP4 (OpenCV ``mp4v``) of the sampled frames with boxes, labels, track ids, the
    areas and running event counters per rule.

    ``source`` is the frames table (``image_path`` per sampled frame) or a video file (every
    decoded frame, showing the boxes of the latest sampled frame). ``areas`` is a rule set's
    ``areas`` mapping, geometry objects, or plain point lists.

    >>> annotate(frames, detections, events, "annotated.mp4", areas=rules.areas)  # doctest: +SKIP
    """
    out = Path(out)
    if isinstance(source, pd.DataFrame):
        order = source.sort_values("frame_number")
        numbers = order["frame_number"].to_numpy(np.int64)
        images: Iterable[np.ndarray | None] = (cv2.imread(str(p)) for p in order["image_path"])
        pts = order["pts_sec"].to_numpy(np.float64) if "pts_sec" in order else None
        if fps is None:
            fps = 1.0 / float(np.median(np.diff(pts))) if pts is not None and len(pts) > 1 else 5.0
    else:
        from roadlens.video import open_capture, probe

        info = probe(source)
        fps = fps or info.fps or 30.0
        numbers = np.arange(info.frame_count, dtype=np.int64)
        images = _decode(open_capture(source))
    dets = detections.sort_values("frame_number", kind="stable")
    det_frames = dets["frame_number"].to_numpy(np.int64)
    # Frames that "own" boxes: for a frames table every sampled frame (so a sampled frame
    # without detections shows none), for a video the frames that have detections.
    sampled = np.union1d(det_frames, numbers) if isinstance(source, pd.DataFrame) else det_frames
    sampled = np.unique(sampled)
    ev_sorted = events.sort_values("frame_number", kind="stable")
    rule_ids = sorted(ev_sorted["rule_id"].unique()) if len(ev_sorted) else []
    # Running counters: for each rule, searchsorted over its event frames gives the count of
    # events at or before any frame without a loop over events.
    ev_frames = {
        r: ev_sorted.loc[ev_sorted["rule_id"] == r, "frame_number"].to_numpy(np.int64)
        for r in rule_ids
    }
    tmp = tmp_next_to(out)
    writer = None
    written = 0
    try:
        for number, image in zip(numbers, images, strict=False):
            if image is None:
                continue
            h, w = image.shape[:2]
            if writer is None:
                writer = cv2.VideoWriter(
                    str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (w, h)
                )
                if not writer.isOpened():
                    raise RuntimeError(f"cannot open a video writer for {out}")
                lines = _area_polylines(areas, w, h) if areas is not None else []
            for name, poly, closed in lines:
                cv2.polylines(image, [poly.reshape(-1, 1, 2)], closed, AREA_COLOR, 2, cv2.LINE_AA)
                cv2.putText(
                    image,
                    name,
                    tuple(int(v) for v in poly[0]),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.45,
                    AREA_COLOR,
                    1,
                    cv2.LINE_AA,
                )
            # The latest sampled frame at or before this one (video sources hold boxes).
            k = np.searchsorted(sampled, number, side="right") - 1
            if k >= 0:
                lo, hi = np.searchsorted(det_frames, [sampled[k], sampled[k] + 1])
                draw_boxes(image, dets.iloc[lo:hi], primary=None)
            if counters:
                for j, r in enumerate(rule_ids):
                    n = int(np.searchsorted(ev_frames[r], number, side="right"))
                    cv2.putText(
                        image,
                        f"{r}: {n}",
                        (8, 20 + 18 * j),
                        cv2.FONT_HERSHEY_SIMPLEX,
                        0.5,
                        (255, 255, 255),
                        2,
                        cv2.LINE_AA,
                    )
                    cv2.putText(
                        image,
                        f"{r}: {n}",
                        (8, 20 + 18 * j),
                        cv2.FONT_HERSHEY_SIMPLEX,
                        0.5,
                        (0, 0, 0),
                        1,
                        cv2.LINE_AA,
                    )
            writer.write(image)
            written += 1
        if writer is None:
            raise ValueError(f"annotate: no readable frames for {out}")
        writer.release()
        writer = None
        move_into_place(tmp, out)
    finally:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
    log.info("annotated %d frames to %s", written, out)
    return out


def _decode(capture_: cv2.VideoCapture) -> Iterable[np.ndarray]:
    try:
        while True:
            ok, image = capture_.read()
            if not ok:
                return
            yield image
    finally:
        capture_.release()
