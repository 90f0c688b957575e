"""The video registry: discover ready files in a landing folder and describe each one.

A :class:`VideoRecord` is everything later stages need to know about a file: its id,
source identity, capture start (and where that time came from), GPS sidecar and size.
The sensor, the nightly schedule and ``roadlens ingest`` all build it with
:func:`probe_video_record`, so a file gets the same id and date whichever way it arrives.
Nothing here writes the lake: :func:`roadlens.pipeline.register` stores the record.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from roadlens.enrich import SourcesConfig, read_gps_track, resolve_capture_start
from roadlens.ids import slugify, video_id_for
from roadlens.live.record import read_chunk_marker
from roadlens.schema import VIDEOS, conform
from roadlens.video import probe

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".ts")
DONE_MARKER = ".done"


@dataclass(frozen=True)
class VideoRecord:
    """One registered video."""

    video_id: str
    source_id: str
    vehicle_id: str | None
    session_id: str | None
    path: str
    size_bytes: int
    mtime_ns: int
    capture_start: datetime
    capture_date: str
    capture_time_source: str
    gps_path: str | None
    registered_at: datetime

    def to_table(self) -> pa.Table:
        return conform(pa.Table.from_pylist([asdict(self)]), VIDEOS)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VideoRecord:
        fields = {k: row[k] for k in cls.__dataclass_fields__}
        return cls(**fields)


def probe_video_record(
    path: str | Path,
    *,
    landing_root: str | Path | None = None,
    sources: SourcesConfig | None = None,
    source_id: str | None = None,
    gps_path: str | Path | None = None,
    now: datetime | None = None,
) -> VideoRecord:
    """Probe ``path`` and build its registry record, without writing anything.

    The record reaches the lake through :func:`roadlens.pipeline.register`.

    Capture time comes from the container's creation time, else the first GPS fix, else
    the file's modification time minus its duration; which one is recorded.

    ``source_id`` and the file name are slugified (:func:`roadlens.ids.slugify`), so ids
    and lake paths never hold separators, ``..``, spaces or non-ASCII characters.

    Raises:
        ValueError: ``source_id`` or the file name has no letter or digit to build an id.
        FileNotFoundError, VideoError: from :func:`roadlens.video.probe`.
        GpsError: the GPS track cannot be read.
    """
    path = Path(path).resolve()
    landing = Path(landing_root).resolve() if landing_root else path.parent
    sources = sources or SourcesConfig()
    identity = sources.identify(path, landing) if _inside(path, landing) else None
    if identity is None or source_id:
        from roadlens.enrich import SourceIdentity

        identity = SourceIdentity(
            _source_slug(source_id)
            if source_id
            else (identity.source_id if identity else "default"),
            identity.vehicle_id if identity else None,
            identity.session_id if identity else None,
        )
    video_id = _video_id(identity.source_id, path)
    info = probe(path)
    gps = (
        Path(gps_path)
        if gps_path
        else sources.gps_path_for(path, landing)
        if _inside(path, landing)
        else None
    )
    track = read_gps_track(gps, start=info.creation_time) if gps else None
    stat = path.stat()
    start, time_source = resolve_capture_start(
        info.creation_time, track, stat.st_mtime, info.duration_s
    )
    marker = read_chunk_marker(path)
    if marker is not None:
        # A live chunk: the recorder measured its wall-clock start to the millisecond
        # (the MP4 creation time holds whole seconds only).
        start, time_source = marker.capture_start, "live"
    return VideoRecord(
        video_id=video_id,
        source_id=identity.source_id,
        vehicle_id=identity.vehicle_id,
        session_id=identity.session_id,
        path=str(path),
        size_bytes=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        capture_start=start,
        capture_date=start.date().isoformat(),
        capture_time_source=time_source,
        gps_path=str(gps.resolve()) if gps else None,
        registered_at=now or datetime.now(UTC),
    )


def video_id_of(
    path: str | Path, landing_root: str | Path, sources: SourcesConfig | None = None
) -> str:
    """The id a file would be registered under, without probing it."""
    path, landing = Path(path).resolve(), Path(landing_root).resolve()
    identity = (
        (sources or SourcesConfig()).identify(path, landing) if _inside(path, landing) else None
    )
    return _video_id(identity.source_id if identity else "default", path)


def _source_slug(source_id: str) -> str:
    try:
        return slugify(source_id)
    except ValueError as exc:
        raise ValueError(f"source_id {source_id!r} is not usable as an id: {exc}") from None


def _video_id(source_id: str, path: Path) -> str:
    try:
        return video_id_for(source_id, path.stem)
    except ValueError as exc:
        raise ValueError(f"{path}: cannot build a video id from the file name ({exc})") from None


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class Candidate:
    """A file in the landing folder with what the readiness check needs."""

    path: Path
    size: int
    mtime_ns: int
    has_marker: bool


def list_candidates(landing_root: str | Path) -> list[Candidate]:
    """Video files under ``landing_root`` (recursively), oldest first."""
    root = Path(landing_root)
    if not root.exists():
        return []
    found = []
    for dirpath, _dirs, files in os.walk(root):
        names = set(files)
        for name in files:
            if name.startswith(".") or not name.lower().endswith(VIDEO_SUFFIXES):
                continue
            path = Path(dirpath) / name
            stat = path.stat()
            marker = f"{name}{DONE_MARKER}" in names or f"{path.stem}{DONE_MARKER}" in names
            found.append(Candidate(path, stat.st_size, stat.st_mtime_ns, marker))
    return sorted(found, key=lambda c: (c.mtime_ns, str(c.path)))


def batch_run_key(date: str, video_ids: list[str]) -> str:
    """A stable run key for one micro-batch: the date and a hash of its sorted video ids."""
    digest = hashlib.sha256("\n".join(sorted(video_ids)).encode()).hexdigest()[:16]
    return f"{date}:{digest}"
