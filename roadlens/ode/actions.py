"""ODE actions: capture, record, annotate, notify (SMTP, webhook) and custom callbacks.

Actions run after the engine, per video partition, on the events of the rules that ask for
them (a rule's ``capture`` and ``actions`` in the rule file). They are idempotent per
partition: every media path is derived from the event id (:func:`media_paths`), files are
written to a temp file and moved into place with ``os.replace`` (a re-run overwrites, never
duplicates), and notifications go through a sent-ledger per (video, rule) so a re-run does not
notify twice.

Events are few next to detections, so capture/record loop per *event* (one JPEG or clip each);
boxes are joined to events with whole-column pandas, never a loop per detection.

Example:
    >>> from roadlens.ode.actions import media_paths
    >>> media_paths("/lake", "2026-05-04", "veh-01--clip", "e1").frame.as_posix()
    '/lake/media/events/date=2026-05-04/veh-01--clip/e1-frame.jpg'
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import logging
import math
import os
import smtplib
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roadlens.atomic import move_into_place, temp_beside, write_text_atomic
from roadlens.lake import EVENTS_TABLE, ParquetLake, WriteStats, safe_segment
from roadlens.redact import url_origin
from roadlens.schema import EVENTS, conform
from roadlens.video.ffmpeg import ffmpeg_exe

log = logging.getLogger(__name__)

# --- media layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EventMedia:
    """The deterministic media files of one event."""

    frame: Path
    crop: Path
    clip: Path


def media_paths(lake_root: str | Path, date: str, video_id: str, event_id: str) -> EventMedia:
    """Where an event's frame, crop and clip live; a re-run writes the same paths.

    >>> media_paths("/lake", "2026-05-04", "v", "e1").clip.name
    'e1-clip.mp4'
    """
    folder = ParquetLake(lake_root).event_media_dir(date, video_id)
    eid = safe_segment(event_id, "event_id")
    return EventMedia(
        folder / f"{eid}-frame.jpg", folder / f"{eid}-crop.jpg", folder / f"{eid}-clip.mp4"
    )


def annotated_path(lake_root: str | Path, date: str, video_id: str, rule_id: str) -> Path:
    """Where the annotated video of one rule's events in one video lives."""
    folder = ParquetLake(lake_root).event_media_dir(date, video_id)
    return folder / f"annotated-{safe_segment(rule_id, 'rule_id')}.mp4"


# What counts as a media file when pruning: images and videos, never JSON or the ledger.
MEDIA_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".mp4", ".mkv", ".avi",
                            ".mov", ".webm"})  # fmt: skip


def prune_media(folder: str | Path, keep: Iterable[str | Path]) -> list[Path]:
    """Delete the media files directly in ``folder`` that are not in ``keep``; return them.

    Only plain files with a :data:`MEDIA_SUFFIXES` suffix are candidates: sub-folders (the
    ``_notified/`` sent-ledger), dot-files (another writer's temp files) and non-media files
    are left alone. ``keep`` is compared after resolving, so relative and absolute spellings
    of one path match.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name in ("e1-frame.jpg", "e2-frame.jpg", "e2-crop.jpg", "e2.json"):
    ...         _ = Path(tmp, name).write_bytes(b"")
    ...     removed = prune_media(tmp, [Path(tmp, "e1-frame.jpg")])
    ...     left = sorted(p.name for p in Path(tmp).iterdir())
    >>> [p.name for p in removed], left
    (['e2-crop.jpg', 'e2-frame.jpg'], ['e1-frame.jpg', 'e2.json'])
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    kept = {Path(p).resolve() for p in keep}
    removed = []
    for path in sorted(folder.iterdir()):
        if (
            path.name.startswith(".")
            or path.suffix.lower() not in MEDIA_SUFFIXES
            or not path.is_file()
            or path.is_symlink()
            or path.resolve() in kept
        ):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d media file(s) of vanished events from %s", len(removed), folder)
    return removed


def _tmp_next_to(path: Path) -> Path:
    # Same folder as the target, so os.replace is an atomic rename on one file system; the
    # suffix is kept because OpenCV and ffmpeg choose the format from it.
    path.parent.mkdir(parents=True, exist_ok=True)
    return temp_beside(path, keep_suffix=True)


def _write_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> None:
    tmp = _tmp_next_to(path)
    try:
        if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise OSError(f"cannot write JPEG {path}")
        move_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


# --- configuration (the rule's `capture` and `actions`) -------------------------------------


class ActionConfigError(ValueError):
    """A rule's ``capture``/``actions`` that do not validate; names the rule id and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaptureSpec(_Strict):
    """``capture: {frame: true, crop: true, margin: 0.15, jpeg_quality: 90}``."""

    frame: bool = True
    crop: bool = True
    margin: float = Field(default=0.15, ge=0, le=2)  # of the box width/height, per side
    jpeg_quality: int = Field(default=90, ge=1, le=100)


class RecordSpec(_Strict):
    """``record: {pre_s: 5, post_s: 5, exact: false}``."""

    pre_s: float = Field(default=5.0, ge=0)
    post_s: float = Field(default=5.0, ge=0)
    exact: bool = False


class AnnotateSpec(_Strict):
    """``annotate: {areas: true, counters: true}``."""

    areas: bool = True
    counters: bool = True


class SmtpSpec(_Strict):
    """SMTP settings; the password comes from the environment variable ``password_env``."""

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    subject: str = "RoadLens: {count} event(s) of {rules}"
    username: str | None = None
    password_env: str | None = None
    starttls: bool = False
    cafile: str | None = None  # PEM of a CA (or self-signed cert) to trust for STARTTLS

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class WebhookSpec(_Strict):
    """Webhook settings; header values may name environment variables via ``headers_env``."""

    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    headers: dict[str, str] = {}
    headers_env: dict[str, str] = {}  # header name -> environment variable holding its value


class NotifySpec(_Strict):
    """``notify: {smtp: {...}, webhook: "https://..." | {...}}`` (at least one)."""

    smtp: SmtpSpec | None = None
    webhook: WebhookSpec | None = None

    @field_validator("webhook", mode="before")
    @classmethod
    def _url_shorthand(cls, value: object) -> object:
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _some_channel(self) -> NotifySpec:
        if self.smtp is None and self.webhook is None:
            raise ValueError("give smtp and/or webhook")
        return self


class CustomSpec(_Strict):
    """``custom: {function: "pkg.module:fn", params: {...}}``."""

    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    params: dict[str, Any] = {}


ACTION_KINDS = ("record", "annotate", "notify", "custom")


class ActionSpec(_Strict):
    """One entry of a rule's ``actions`` list: exactly one of :data:`ACTION_KINDS`."""

    record: RecordSpec | None = None
    annotate: AnnotateSpec | None = None
    notify: NotifySpec | None = None
    custom: CustomSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_kind(cls, value: object) -> object:
        # `{record: null}` (YAML `- record:`) means the kind with its defaults.
        if isinstance(value, dict):
            value = {
                k: ({} if v is None and k in ("record", "annotate") else v)
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ActionSpec:
        given = [k for k in ACTION_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of {', '.join(ACTION_KINDS)} (got {given or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> BaseModel:
        return getattr(self, self.kind)


@dataclass(frozen=True)
class RulePlan:
    """A rule's validated media and actions."""

    rule_id: str
    capture: CaptureSpec | None
    actions: tuple[ActionSpec, ...]


def _path(loc: Sequence[object]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and "[" not in part:  # drop pydantic's union-member names
            out += f".{part}" if out else part
    return out


def plan_rule(rule_id: str, capture: object, actions: object) -> RulePlan:
    """Validate one rule's ``capture`` and ``actions``; errors name the rule id and field.

    >>> plan_rule("r", {"frame": True}, [{"record": {"pre_s": 2}}]).actions[0].record.pre_s
    2.0
    >>> try:
    ...     plan_rule("r", None, [{"record": {"pre_s": -1}}])
    ... except ActionConfigError as exc:
    ...     print(exc)
    rule 'r' field 'actions[0].record.pre_s': Input should be greater than or equal to 0
    """
    problems: list[str] = []
    cap = None
    if capture is not None:
        try:
            cap = CaptureSpec.model_validate(capture)
        except ValidationError as exc:
            problems += [
                f"rule {rule_id!r} field {_path(['capture', *e['loc']])!r}: {e['msg']}"
                for e in exc.errors()
            ]
    specs: list[ActionSpec] = []
    if actions is not None and not isinstance(actions, list):
        problems.append(f"rule {rule_id!r} field 'actions': must be a list of actions")
        actions = []
    for i, item in enumerate(actions or []):
        try:
            specs.append(ActionSpec.model_validate(item))
        except ValidationError as exc:
            problems += [
                f"rule {rule_id!r} field {_path(['actions', i, *e['loc']])!r}: "
                + e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            ]
    if problems:
        raise ActionConfigError("; ".join(problems))
    return RulePlan(rule_id, cap, tuple(specs))


def plan_rules(rules: Any) -> dict[str, RulePlan]:
    """Plans of every rule of a :class:`~roadlens.ode.rules.RuleSet` (or list of rules)
    that has a ``capture`` or ``actions``; all problems are reported together."""
    items = getattr(rules, "rules", rules)
    plans, problems = {}, []
    for rule in items:
        if getattr(rule, "capture", None) is None and not getattr(rule, "actions", None):
            continue
        try:
            plans[rule.id] = plan_rule(rule.id, rule.capture, rule.actions)
        except ActionConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ActionConfigError("invalid actions:\n  " + "\n  ".join(problems))
    return plans


# --- drawing ---------------------------------------------------------------------------------

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


# --- capture ---------------------------------------------------------------------------------


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
        return _with_media(out, paths)
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
    return _with_media(out, paths)


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
        _write_jpeg(target.frame, image, jpeg_quality)
        written.append(str(target.frame))
    if crop and ev_boxes is not None:
        piece, _ = crop_box(image, ev_boxes.iloc[0], margin)
        if piece.size:
            _write_jpeg(target.crop, piece, jpeg_quality)
            written.append(str(target.crop))
    paths[ev.event_id] = written


def _with_media(events: pd.DataFrame, paths: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """``events`` with ``paths`` appended to each event's ``media_paths`` (no duplicates)."""
    out = events.copy()
    old = (
        out["media_paths"]
        if "media_paths" in out.columns
        else pd.Series([None] * len(out), out.index)
    )
    merged = []
    for eid, prev in zip(out["event_id"], old, strict=True):
        have = (
            []
            if prev is None or (not isinstance(prev, (list, np.ndarray)) and pd.isna(prev))
            else list(prev)
        )
        merged.append(list(dict.fromkeys([*have, *paths.get(eid, [])])))
    out["media_paths"] = merged
    return out


# --- record ----------------------------------------------------------------------------------


def record_clip(
    video_path: str | Path,
    t_sec: float,
    *,
    pre_s: float = 5.0,
    post_s: float = 5.0,
    out: str | Path,
    exact: bool = False,
    duration_s: float | None = None,
) -> Path:
    """Cut ``[t - pre_s, t + post_s]`` (clamped to the video) of ``video_path`` to ``out``.

    Stream copy by default: no re-encode, so it is fast and lossless, but the cut starts at
    the keyframe at or before ``t - pre_s`` (at most one GOP earlier; dashcams use 0.5-2 s).
    ``exact=True``, or a failed copy, re-encodes with libx264 for frame-exact cuts.

    >>> record_clip("drive.mp4", 6.0, pre_s=2, post_s=2, out="e1-clip.mp4")  # doctest: +SKIP
    PosixPath('e1-clip.mp4')
    """
    video_path, out = Path(video_path), Path(out)
    if duration_s is None:
        from roadlens.video import probe

        duration_s = probe(video_path).duration_s
    start = max(0.0, float(t_sec) - pre_s)
    end = float(t_sec) + post_s
    if duration_s and duration_s > 0:
        end = min(end, duration_s)
    if end <= start:
        raise ValueError(f"{video_path}: clip [{start:.3f}, {end:.3f}] s is empty (t={t_sec})")
    tmp = _tmp_next_to(out)
    # -ss before -i seeks the input (fast); -t is the length of the output.
    base = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        f"{start:.3f}",
        "-i",
        str(video_path),
        "-t",
        f"{end - start:.3f}",
        "-an",
    ]
    copy = [
        *base,
        "-c:v",
        "copy",
        "-avoid_negative_ts",
        "make_zero",
        "-movflags",
        "+faststart",
        str(tmp),
    ]
    encode = [
        *base,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        str(tmp),
    ]
    try:
        attempts = [encode] if exact else [copy, encode]
        for i, cmd in enumerate(attempts):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode == 0 and tmp.exists() and tmp.stat().st_size > 0:
                break
            if i == len(attempts) - 1:
                raise RuntimeError(
                    f"ffmpeg could not cut {video_path}: {done.stderr.strip()[-500:]}"
                )
            log.info(
                "stream copy of %s failed, re-encoding: %s", video_path, done.stderr.strip()[-200:]
            )
        move_into_place(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# --- annotate --------------------------------------------------------------------------------


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
    tmp = _tmp_next_to(out)
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


# --- notify ----------------------------------------------------------------------------------


class NotifyError(RuntimeError):
    """A notification that could not be delivered (credentials never in the message)."""


class SentLedger:
    """Event ids already notified for one (video, rule), per channel, in a JSON file.

    Written atomically after a successful send, so a crash between send and write can at
    worst notify once more; it never loses a notification.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     ledger = SentLedger(Path(tmp, "r.json"))
    ...     before = ledger.pending("webhook:ab", ["e1", "e2"])
    ...     ledger.mark("webhook:ab", ["e1"])
    ...     after = ledger.pending("webhook:ab", ["e1", "e2"])
    >>> before, after
    (['e1', 'e2'], ['e2'])
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, list[str]]:
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text()).get("channels", {})

    def pending(self, channel: str, event_ids: Iterable[str]) -> list[str]:
        sent = set(self.read().get(channel, []))
        return [e for e in event_ids if e not in sent]

    def mark(self, channel: str, event_ids: Iterable[str]) -> None:
        channels = self.read()
        channels[channel] = sorted(set(channels.get(channel, [])) | set(event_ids))
        _write_json(self.path, {"channels": channels})


def ledger_path(ledger_dir: str | Path, video_id: str, rule_id: str) -> Path:
    """The sent-ledger of one (video, rule) under ``ledger_dir``."""
    return (
        Path(ledger_dir)
        / safe_segment(video_id, "video_id")
        / "_notified"
        / f"{safe_segment(rule_id, 'rule_id')}.json"
    )


def _channel(kind: str, *parts: object) -> str:
    # A hash, not the address itself: webhook URLs often embed tokens.
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]
    return f"{kind}:{digest}"


def _pending(events: pd.DataFrame, ledger_dir: str | Path | None, channel: str) -> pd.DataFrame:
    if ledger_dir is None or events.empty:
        return events
    keep = np.zeros(len(events), dtype=bool)
    for (video_id, rule_id), idx in events.groupby(["video_id", "rule_id"]).indices.items():
        ledger = SentLedger(ledger_path(ledger_dir, video_id, rule_id))
        todo = set(ledger.pending(channel, events["event_id"].iloc[idx]))
        keep[idx] = events["event_id"].iloc[idx].isin(todo).to_numpy()
    return events[keep]


def _mark(events: pd.DataFrame, ledger_dir: str | Path | None, channel: str) -> None:
    if ledger_dir is None:
        return
    for (video_id, rule_id), group in events.groupby(["video_id", "rule_id"]):
        SentLedger(ledger_path(ledger_dir, video_id, rule_id)).mark(channel, group["event_id"])


def _jsonable(value: object) -> object:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value


def event_records(events: pd.DataFrame) -> list[dict[str, object]]:
    """Events as JSON-ready dicts (timestamps ISO 8601, lists as lists, NaN as null)."""
    return [{k: _jsonable(v) for k, v in row.items()} for row in events.to_dict("records")]


def summary(events: pd.DataFrame) -> str:
    """A short plain-text summary: one line per event."""
    lines = [f"{len(events)} RoadLens event(s)"]
    for r in events.to_dict("records"):
        track = r.get("track_id")
        track = "" if track is None or pd.isna(track) else f" track {int(track)}"
        direction = r.get("direction")
        direction = f" {direction}" if isinstance(direction, str) else ""
        lines.append(
            f"- {r.get('captured_at')} {r.get('rule_id')} {r.get('video_id')} "
            f"frame {r.get('frame_number')}: {r.get('class_name') or ''}{track}{direction} "
            f"[{r.get('event_id')}]"
        )
    return "\n".join(lines)


def _template_fields(events: pd.DataFrame) -> dict[str, object]:
    return {
        "count": len(events),
        "rules": ", ".join(sorted(map(str, events["rule_id"].unique()))),
        "videos": ", ".join(sorted(map(str, events["video_id"].unique()))),
    }


def notify_smtp(
    events: pd.DataFrame,
    *,
    host: str,
    port: int,
    sender: str,
    to: str | Sequence[str],
    subject_template: str = "RoadLens: {count} event(s) of {rules}",
    username: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    cafile: str | Path | None = None,
    timeout_s: float = 10.0,
    ledger_dir: str | Path | None = None,
) -> int:
    """One e-mail for the batch: a summary body and ``events.json`` attached.

    Returns the number of events sent (0 when the ledger says all were sent already).
    ``subject_template`` may use ``{count}``, ``{rules}``, ``{videos}``. With ``starttls``
    the server's certificate and host name are verified against the system CAs, or against
    ``cafile`` (a PEM file: a private CA or a self-signed server certificate); verification
    is never switched off. ``username``/``password`` log in (AUTH PLAIN or LOGIN, whichever
    the server offers) before sending. Any failure raises :class:`NotifyError` naming the
    host, port and user, never the password.

    >>> notify_smtp(events, host="localhost", port=2525, sender="rl@x", to="ops@x")  # doctest: +SKIP
    3
    """
    recipients = [to] if isinstance(to, str) else list(to)
    channel = _channel("smtp", host, port, sorted(recipients))
    todo = _pending(events, ledger_dir, channel)
    if todo.empty:
        return 0
    msg = EmailMessage()
    msg["Subject"] = subject_template.format(**_template_fields(todo))
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content(summary(todo))
    body = json.dumps(event_records(todo), indent=1).encode()
    msg.add_attachment(body, maintype="application", subtype="json", filename="events.json")
    who = f"SMTP {host}:{port}" + (f" as user {username!r}" if username is not None else "")
    try:
        with smtplib.SMTP(host, port, timeout=timeout_s) as smtp:
            if starttls:
                # smtplib's own default context verifies nothing; this one verifies.
                smtp.starttls(context=ssl.create_default_context(cafile=cafile))
            if username is not None:
                try:
                    smtp.login(username, password or "")
                except smtplib.SMTPAuthenticationError as exc:
                    reason = _smtp_reply(exc, password)
                    raise NotifyError(f"{who}: login failed: {reason}") from None
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        # The exception text is the server's reply or a socket error; scrubbed regardless.
        raise NotifyError(f"{who}: {type(exc).__name__}: {_smtp_reply(exc, password)}") from None
    _mark(todo, ledger_dir, channel)
    log.info("notified %d event(s) by e-mail to %d recipient(s)", len(todo), len(recipients))
    return len(todo)


def _smtp_reply(exc: BaseException, password: str | None) -> str:
    """The error text with the password (plain or in an AUTH PLAIN/LOGIN base64) removed."""
    if isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error
        reply = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
        text = f"{exc.smtp_code} {reply}"
    else:
        text = str(exc)
    if password:
        for secret in (password, base64.b64encode(password.encode()).decode()):
            text = text.replace(secret, "***")
    return text


def notify_webhook(
    events: pd.DataFrame,
    *,
    url: str,
    timeout_s: float = 5.0,
    retries: int = 3,
    headers: Mapping[str, str] | None = None,
    backoff_s: float = 0.5,
    ledger_dir: str | Path | None = None,
) -> int:
    """POST one JSON body ``{"count", "summary", "events": [...]}`` for the batch.

    Retries ``retries`` times with exponential backoff (``backoff_s`` × 2^attempt) on
    connection errors, timeouts, 429 and 5xx; other 4xx fail at once. Returns the number
    of events sent (0 when the ledger says all were sent already).

    >>> notify_webhook(events, url="http://localhost:8080/hook")  # doctest: +SKIP
    3
    """
    channel = _channel("webhook", url)
    todo = _pending(events, ledger_dir, channel)
    if todo.empty:
        return 0
    payload = {"count": len(todo), "summary": summary(todo), "events": event_records(todo)}
    data = json.dumps(payload).encode()
    last = ""
    for attempt in range(retries + 1):
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
            _mark(todo, ledger_dir, channel)
            return len(todo)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                break
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            last = f"{type(reason).__name__}"
        if attempt < retries:
            log.info("webhook %s: %s, retry %d/%d", url_origin(url), last, attempt + 1, retries)
            time.sleep(backoff_s * 2**attempt)
    raise NotifyError(f"webhook {url_origin(url)}: {last} after {attempt + 1} attempt(s)")


# --- custom ----------------------------------------------------------------------------------


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``"pkg.module:fn"``.

    >>> load_callable("json:dumps")([1])
    '[1]'
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"custom action: {path!r} is not 'pkg.module:function'")
    fn = getattr(importlib.import_module(module_name), attr, None)
    if not callable(fn):
        raise ValueError(f"custom action: {path!r} is not a callable")
    return fn


def custom(events: pd.DataFrame, *, function: str, **params: Any) -> Any:
    """Call ``function(events, **params)`` imported by path; returns what it returns.

    A callback that returns a DataFrame with ``event_id`` and ``media_paths`` has those paths
    added to the events by :func:`run_actions`. Idempotency is the callback's job (derive
    any output path from ``event_id``).

    >>> events = pd.DataFrame({"event_id": ["e1", "e2"]})
    >>> custom(events, function="builtins:len")  # a "mypkg.hooks:send" of yours works the same
    2
    """
    return load_callable(function)(events, **params)


# --- orchestration -----------------------------------------------------------------------------


def run_actions(
    events: pd.DataFrame,
    detections: pd.DataFrame,
    frames: pd.DataFrame,
    rules: object,
    *,
    lake_root: str | Path,
    date: str,
    video_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Apply each rule's ``capture`` and ``actions`` to that rule's events.

    Every rule's configuration is validated first (:class:`ActionConfigError` names the rule
    and field), so a bad rule fails before any side effect. Returns the events with
    ``media_paths`` filled (frame, crop, clip, annotated video). Notifications use the
    sent-ledger under ``<lake>/media/events/date=<date>/<video_id>/_notified/``. Secrets
    (``password_env``, ``headers_env``) are read from ``env`` (default ``os.environ``).

    >>> events = run_actions(events, detections, frames, rules, lake_root=lake.root,
    ...                      date=record.capture_date, video_path=record.path)  # doctest: +SKIP
    """
    plans = plan_rules(rules)
    env = os.environ if env is None else env
    areas = getattr(rules, "areas", None)
    out = events.copy()
    if "media_paths" not in out.columns:
        out["media_paths"] = [[] for _ in range(len(out))]
    ledger_dir = ParquetLake(lake_root).event_media_ledger_dir(date)
    duration = None
    for rule_id, plan in plans.items():
        mine = out[out["rule_id"] == rule_id]
        if mine.empty:
            continue
        added: dict[str, list[str]] = {}
        if plan.capture is not None and (plan.capture.frame or plan.capture.crop):
            done = capture(
                mine,
                detections,
                frames,
                root=lake_root,
                date=date,
                frame=plan.capture.frame,
                crop=plan.capture.crop,
                margin=plan.capture.margin,
                jpeg_quality=plan.capture.jpeg_quality,
                video_path=video_path,
            )
            added.update(zip(done["event_id"], done["media_paths"], strict=True))
        for action in plan.actions:
            spec = action.spec
            if isinstance(spec, RecordSpec):
                if video_path is None:
                    raise ValueError(f"rule {rule_id!r} field 'actions': record needs video_path")
                if duration is None:
                    from roadlens.video import probe

                    duration = probe(video_path).duration_s
                for ev in mine[["event_id", "video_id", "pts_sec"]].itertuples(index=False):
                    clip = media_paths(lake_root, date, ev.video_id, ev.event_id).clip
                    record_clip(
                        video_path,
                        ev.pts_sec,
                        pre_s=spec.pre_s,
                        post_s=spec.post_s,
                        out=clip,
                        exact=spec.exact,
                        duration_s=duration,
                    )
                    added.setdefault(ev.event_id, []).append(str(clip))
            elif isinstance(spec, AnnotateSpec):
                for video_id, group in mine.groupby("video_id"):
                    target = annotated_path(lake_root, date, video_id, rule_id)
                    stored = frames[frames["video_id"] == video_id]
                    # Sources that keep no JPEGs are drawn over the decoded video itself.
                    kept = len(stored) and stored.get("image_path", pd.Series()).notna().all()
                    annotate(
                        stored if kept or video_path is None else video_path,
                        detections[detections["video_id"] == video_id],
                        group,
                        target,
                        areas=areas if spec.areas else None,
                        counters=spec.counters,
                    )
                    for eid in group["event_id"]:
                        added.setdefault(eid, []).append(str(target))
            elif isinstance(spec, NotifySpec):
                _notify(mine, spec, env, ledger_dir)
            elif isinstance(spec, CustomSpec):
                result = custom(mine, function=spec.function, **spec.params)
                if isinstance(result, pd.DataFrame) and {"event_id", "media_paths"} <= set(result):
                    for eid, paths in zip(result["event_id"], result["media_paths"], strict=True):
                        added.setdefault(eid, []).extend(list(paths))
        out = _with_media(out, added)
    return out


def write_events_with_media(
    lake: ParquetLake,
    record: Any,
    events: pa.Table,
    rules: object,
    *,
    detections: pd.DataFrame,
    frames: pd.DataFrame,
    env: Mapping[str, str] | None = None,
) -> tuple[WriteStats, dict[str, object]]:
    """Run each rule's capture and actions (:func:`run_actions`) for one video's ``events``,
    write them as the video's ``events`` file with ``media_paths`` filled (the table's
    metadata kept), and return the write and what the media step did.

    ``record`` is the video's :class:`~roadlens.registry.VideoRecord` (its ``capture_date``
    is the media date, its ``path`` the source for clips). After the write, media files in
    the video's media folder that no current event references (events a rule change
    removed) are deleted (:func:`prune_media`); the ``_notified/`` ledger stays, so nothing
    is notified twice. ``extra["media_removed"]`` counts them.

    >>> stats, extra = write_events_with_media(lake, record, events, rules,
    ...     detections=detections, frames=frames)  # doctest: +SKIP
    >>> extra["media_files"]  # doctest: +SKIP
    12
    """
    out = run_actions(
        events.to_pandas(),
        detections,
        frames,
        rules,
        lake_root=lake.root,
        date=record.capture_date,
        video_path=record.path,
        env=env,
    )
    table = conform(pa.Table.from_pandas(out, preserve_index=False), EVENTS)
    table = table.replace_schema_metadata(events.schema.metadata or table.schema.metadata)
    stats = lake.write_video(
        EVENTS_TABLE,
        table,
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )
    files = sorted({p for paths in out["media_paths"] for p in paths})
    # Events a rule change removed leave their files behind: drop what no event references,
    # now that the new media and the table naming them are written.
    folder = lake.event_media_dir(record.capture_date, record.video_id)
    removed = prune_media(folder, files)
    return stats, {
        "media_files": len(files),
        "media_removed": len(removed),
        "events_with_media": int(sum(bool(len(p)) for p in out["media_paths"])),
        "media_dir": str(folder),
    }


def _notify(
    events: pd.DataFrame, spec: NotifySpec, env: Mapping[str, str], ledger_dir: Path
) -> None:
    if spec.smtp is not None:
        s = spec.smtp
        password = env.get(s.password_env) if s.password_env else None
        if s.password_env and password is None:
            raise NotifyError(f"SMTP password variable {s.password_env!r} is not set")
        notify_smtp(
            events,
            host=s.host,
            port=s.port,
            sender=s.sender,
            to=s.to,
            subject_template=s.subject,
            username=s.username,
            password=password,
            starttls=s.starttls,
            cafile=s.cafile,
            ledger_dir=ledger_dir,
        )
    if spec.webhook is not None:
        w = spec.webhook
        missing = [v for v in w.headers_env.values() if v not in env]
        if missing:
            raise NotifyError(f"webhook header variables not set: {missing}")
        headers = {**w.headers, **{h: env[v] for h, v in w.headers_env.items()}}
        notify_webhook(
            events,
            url=w.url,
            timeout_s=w.timeout_s,
            retries=w.retries,
            headers=headers,
            ledger_dir=ledger_dir,
        )


__all__ = [
    "ACTION_KINDS",
    "MEDIA_SUFFIXES",
    "ActionConfigError",
    "ActionSpec",
    "AnnotateSpec",
    "CaptureSpec",
    "CustomSpec",
    "EventMedia",
    "NotifyError",
    "NotifySpec",
    "RecordSpec",
    "RulePlan",
    "SentLedger",
    "SmtpSpec",
    "WebhookSpec",
    "annotate",
    "annotated_path",
    "capture",
    "crop_box",
    "custom",
    "draw_boxes",
    "event_records",
    "ledger_path",
    "load_callable",
    "media_paths",
    "notify_smtp",
    "notify_webhook",
    "plan_rule",
    "plan_rules",
    "prune_media",
    "record_clip",
    "run_actions",
    "summary",
    "write_events_with_media",
]
