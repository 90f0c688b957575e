"""The ``capture`` of a rule: a frame and a crop JPEG per event, with the event's boxes drawn.

Events are few next to detections, so :func:`capture` loops per *event* (one JPEG read and one
or two writes each); boxes are joined to events with whole-column pandas, never a loop per
detection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from roadlens.ode.actions.media import media_paths, with_media, write_jpeg
from roadlens.ode.actions.render import crop_box, draw_boxes

log = logging.getLogger(__name__)


def capture(
    events: pd.DataFrame,
    detections: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    root: str | Path,
    date: str,
    frame: bool = True,
    crop: bool = True,
    margin: float = 0.15,
    jpeg_quality: int = 90,
    video_path: str | Path | None = None,
) -> pd.DataFrame:
    """Frame and crop JPEGs per event, with the event's boxes drawn; ``media_paths`` filled.

    ``frames`` is the lake's frames table (``image_path`` of each sampled JPEG); ``root`` is
    the lake root. Loops per event (events are few). A frame whose JPEG is missing is decoded
    from ``video_path`` (seek to its ``frame_number``) when given, else the event is logged
    and left without media. An event without a box in its frame (absence, counts) gets the
    frame only.

    >>> out = capture(events, detections, frames, root=lake.root, date="2026-05-04")  # doctest: +SKIP
    >>> out.media_paths.iloc[0]  # doctest: +SKIP
    ['/lake/media/events/date=2026-05-04/v/<event_id>-frame.jpg', '.../<event_id>-crop.jpg']
    """
    out = events.copy()
    paths: dict[str, list[str]] = {}
    if out.empty or not (frame or crop):
        return with_media(out, paths)
    boxes = _event_boxes(out, detections)
    box_groups = {k: g for k, g in boxes.groupby("event_id", sort=False)}
    image_of = frames.drop_duplicates(["video_id", "frame_number"]).set_index(
        ["video_id", "frame_number"]
    )["image_path"]
    video = None
    try:
        for ev in out[["event_id", "video_id", "frame_number"]].itertuples(index=False):
            src = image_of.get((ev.video_id, ev.frame_number))
            image = cv2.imread(str(src)) if isinstance(src, str) else None
            if image is None and video_path is not None:
                if video is None:
                    from roadlens.video import open_capture

                    video = open_capture(video_path)
                video.set(cv2.CAP_PROP_POS_FRAMES, int(ev.frame_number))
                ok, decoded = video.read()
                image = decoded if ok else None
            _capture_one(
                ev, image, box_groups, root, date, frame, crop, margin, jpeg_quality, paths
            )
    finally:
        if video is not None:
            video.release()
    return with_media(out, paths)


def _capture_one(
    ev: Any,
    image: np.ndarray | None,
    box_groups: Mapping[str, pd.DataFrame],
    root: str | Path,
    date: str,
    frame: bool,
    crop: bool,
    margin: float,
    jpeg_quality: int,
    paths: dict[str, list[str]],
) -> None:
    """Draw and write one event's frame and crop; record what was written in ``paths``."""
    if image is None:
        log.warning("event %s: frame %s has no readable image", ev.event_id, ev.frame_number)
        return
    target = media_paths(root, date, ev.video_id, ev.event_id)
    ev_boxes = box_groups.get(ev.event_id)
    written: list[str] = []
    if ev_boxes is not None:
        draw_boxes(image, ev_boxes)
    if frame:
        write_jpeg(target.frame, image, jpeg_quality)
        written.append(str(target.frame))
    if crop and ev_boxes is not None:
        piece, _ = crop_box(image, ev_boxes.iloc[0], margin)
        if piece.size:
            write_jpeg(target.crop, piece, jpeg_quality)
            written.append(str(target.crop))
    paths[ev.event_id] = written


def _event_boxes(events: pd.DataFrame, detections: pd.DataFrame) -> pd.DataFrame:
    """The boxes of each event in the event's own frame: its ``detection_ids`` there, else
    its track's detection there. Whole-column joins; ``order`` 0 is the primary box."""
    if detections.empty or "detection_id" not in detections.columns:
        return pd.DataFrame({"event_id": pd.Series(dtype=object), "order": pd.Series(dtype=int)})
    cols = ["event_id", "video_id", "frame_number", "track_id", "detection_ids"]
    ev = events[[c for c in cols if c in events.columns]].copy()
    det_cols = [
        c
        for c in (
            "detection_id",
            "video_id",
            "frame_number",
            "track_id",
            "x1",
            "y1",
            "x2",
            "y2",
            "class_name",
            "confidence",
        )
        if c in detections.columns
    ]
    dets = detections[det_cols]
    by_id = ev.explode("detection_ids").dropna(subset=["detection_ids"])
    by_id = by_id.assign(order=by_id.groupby("event_id").cumcount())
    by_id = by_id.drop(columns=["track_id"]).merge(
        dets,
        left_on=["detection_ids", "video_id", "frame_number"],
        right_on=["detection_id", "video_id", "frame_number"],
    )
    missing = ev[~ev["event_id"].isin(by_id["event_id"]) & ev["track_id"].notna()]
    by_track = missing.drop(columns=["detection_ids"]).merge(
        dets, on=["video_id", "frame_number", "track_id"]
    )
    by_track = by_track.assign(order=by_track.groupby("event_id").cumcount())
    out = pd.concat([by_id.drop(columns=["detection_ids"]), by_track], ignore_index=True)
    return out.sort_values(["event_id", "order"], kind="stable").reset_index(drop=True)
