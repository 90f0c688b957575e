"""Where an event's media files live and how they are written.

Every path is derived from the event id (:func:`media_paths`, :func:`annotated_path`), so a
re-run writes the same files; files are written to a hidden temp file next to the target and
moved into place with ``os.replace`` (:func:`tmp_next_to`, :func:`write_jpeg`,
:func:`write_json`); :func:`prune_media` deletes the files of events that vanished, and
:func:`with_media` adds written paths to the events' ``media_paths`` column.

Example:
    >>> media_paths("/lake", "2026-05-04", "veh-01--clip", "e1").frame.as_posix()
    '/lake/media/events/date=2026-05-04/veh-01--clip/e1-frame.jpg'
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from roadlens.atomic import move_into_place, temp_beside, write_text_atomic
from roadlens.lake import ParquetLake, safe_segment

log = logging.getLogger(__name__)


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


def tmp_next_to(path: Path) -> Path:
    """A fresh hidden temp path for writing ``path``: write there, then ``os.replace``.

    Same folder as the target (created if missing), so ``os.replace`` is an atomic rename on
    one file system; the suffix is kept because OpenCV and ffmpeg choose the format from it.
    The caller removes the temp file if the write fails.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     name = tmp_next_to(Path(tmp, "e1-clip.mp4")).name
    >>> name.startswith(".e1-clip.") and name.endswith(".tmp.mp4")
    True
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return temp_beside(path, keep_suffix=True)


def write_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> None:
    """Write ``image`` (BGR) as a JPEG of ``quality`` to ``path`` atomically (a reader sees
    the old file or the new one, never a partial one); :class:`OSError` if OpenCV cannot."""
    tmp = tmp_next_to(path)
    try:
        if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise OSError(f"cannot write JPEG {path}")
        move_into_place(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as indented, key-sorted JSON to ``path`` atomically (its folder is
    created if missing).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_json(Path(tmp, "new", "x.json"), {"b": 1, "a": [2]})
    ...     text = Path(tmp, "new", "x.json").read_text()
    >>> json.loads(text)
    {'a': [2], 'b': 1}
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True))


def with_media(events: pd.DataFrame, paths: Mapping[str, Sequence[str]]) -> pd.DataFrame:
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
