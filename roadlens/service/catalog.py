"""What the lake holds per video, and media files resolved strictly inside the lake.

:func:`resolve_media` is the only way the API turns a request into a file path: it joins
the request's relative path to ``<lake>/media``, resolves symlinks and ``..``, and refuses
anything that does not stay under that folder, is hidden, or is not a media file type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq

from roadlens.lake import (
    DETECTIONS_TABLE,
    EVENTS_TABLE,
    FRAMES_TABLE,
    VIDEOS_TABLE,
    ParquetLake,
)

MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
}


class MediaError(LookupError):
    """A media path that is outside the lake, hidden, of a wrong type or missing (a 404)."""


def media_root(lake_root: Path) -> Path:
    return ParquetLake(lake_root).media_root


def resolve_media(lake_root: Path, relative: str) -> Path:
    """The file at ``<lake>/media/<relative>``, refusing traversal and non-media files.

    Raises:
        MediaError: ``relative`` is absolute, contains ``..`` or a hidden segment, leaves
            the media folder after resolving links, is not a JPEG/PNG/MP4, or is missing.
    """
    pure = PurePosixPath(relative)
    if (
        not relative
        or "\x00" in relative
        or "\\" in relative
        or pure.is_absolute()
        or any(part in ("..", ".") or part.startswith(".") for part in pure.parts)
    ):
        raise MediaError("not a media path")
    if pure.suffix.lower() not in MEDIA_TYPES:
        raise MediaError("not a media file type")
    root = media_root(lake_root).resolve()
    path = (root / pure).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise MediaError("no such media file")
    return path


def media_url(lake_root: Path, path: str) -> str | None:
    """``/media/<relative>`` for an absolute media path inside the lake, else None."""
    root = media_root(lake_root).resolve()
    try:
        relative = Path(path).resolve().relative_to(root)
    except (ValueError, OSError):
        return None
    return f"/media/{relative.as_posix()}"


@dataclass(frozen=True)
class VideoEntry:
    video_id: str
    source_id: str
    capture_date: str
    capture_start: datetime | None
    registered: bool
    frames: bool
    detections: bool
    events: bool
    heatmap: bool


def list_videos(lake_root: Path) -> list[VideoEntry]:
    """Every video the lake knows (registered, or with any output), sorted by date and id."""
    lake = ParquetLake(lake_root)
    tables = {
        t: lake.locations(t) for t in (VIDEOS_TABLE, FRAMES_TABLE, DETECTIONS_TABLE, EVENTS_TABLE)
    }
    heatmaps = lake.videos_with_heatmaps()
    starts: dict[str, datetime] = {}
    for video_id, (date, source) in tables[VIDEOS_TABLE].items():
        path = lake.video_path(VIDEOS_TABLE, date=date, source_id=source, video_id=video_id)
        try:
            column = pq.read_table(path, columns=["capture_start"]).column(0)
            if len(column):
                starts[video_id] = column[0].as_py()
        except (OSError, KeyError, ValueError):
            pass
    ids = set().union(*(t.keys() for t in tables.values()))
    entries = []
    for video_id in ids:
        date, source = next(t[video_id] for t in tables.values() if video_id in t)
        entries.append(
            VideoEntry(
                video_id=video_id,
                source_id=source,
                capture_date=date,
                capture_start=starts.get(video_id),
                registered=video_id in tables[VIDEOS_TABLE],
                frames=video_id in tables[FRAMES_TABLE],
                detections=video_id in tables[DETECTIONS_TABLE],
                events=video_id in tables[EVENTS_TABLE],
                heatmap=video_id in heatmaps,
            )
        )
    return sorted(entries, key=lambda e: (e.capture_date, e.video_id))


def frame_image(lake_root: Path, video_id: str, frame_number: int) -> Path:
    """The JPEG of one sampled frame, looked up in the frames table and checked to lie in
    the lake's media folder.

    Raises:
        MediaError: no such video or frame, or the recorded path is outside the lake.
    """
    try:
        files = ParquetLake(lake_root).find_video(FRAMES_TABLE, video_id)
    except ValueError:  # not a video id at all
        raise MediaError("no frames for this video") from None
    if not files:
        raise MediaError("no frames for this video")
    table = pq.read_table(files[0], columns=["frame_number", "image_path"])
    for number, image in zip(
        table.column("frame_number").to_pylist(),
        table.column("image_path").to_pylist(),
        strict=True,
    ):
        if number == frame_number and image:
            url = media_url(lake_root, image)
            if url is None:
                raise MediaError("frame image is outside the lake")
            return resolve_media(lake_root, url.removeprefix("/media/"))
    raise MediaError("no such frame")


def heatmap_image(lake_root: Path, video_id: str, heatmap_id: str) -> Path:
    """A video's rendered heat map PNG (``media/heatmaps/date=*/<video>/<id>.png``).

    Raises:
        MediaError: none rendered.
    """
    try:
        found = ParquetLake(lake_root).heatmap_pngs(video_id, heatmap_id)
    except ValueError:  # not an id at all
        raise MediaError("no heat map for this video") from None
    for path in found:
        return resolve_media(lake_root, path.relative_to(media_root(lake_root)).as_posix())
    raise MediaError("no heat map for this video")
