"""Per-video stages of the spine: frames -> raw detections -> enriched detections.

Each stage reads its input from the lake, writes one file per video and returns an
outcome with counts and seconds for materialization metadata. Dagster assets and the
CLI call these functions; nothing here knows about Dagster.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pyarrow.compute as pc

from roadlens.detect.detector import Detector
from roadlens.enrich import SourceIdentity, enrich_detections, read_gps_track
from roadlens.quality.gate import gate
from roadlens.registry import VideoRecord
from roadlens.sinks.parquet import ParquetLake, WriteStats, safe_segment
from roadlens.video import sample_video

log = logging.getLogger(__name__)

FRAMES_TABLE = "frames"
RAW_TABLE = "raw_detections"
DETECTIONS_TABLE = "detections"
VIDEOS_TABLE = "videos"


@dataclass
class StageOutcome:
    """What one stage did for one video."""

    video_id: str
    rows: int
    seconds: float
    write: WriteStats | None = None
    extra: dict[str, object] = field(default_factory=dict)


def media_dir(lake: ParquetLake, record: VideoRecord) -> Path:
    """Where a video's sampled JPEGs live."""
    date = safe_segment(record.capture_date, "capture_date")
    return (
        lake.root / "media" / "frames" / f"date={date}" / safe_segment(record.video_id, "video_id")
    )


def register(lake: ParquetLake, record: VideoRecord) -> StageOutcome:
    """Write (or rewrite) a video's registry row.

    Registering an unchanged file again keeps its first ``registered_at`` (the
    detections' ``ingested_at``), so re-running a date reproduces identical rows.
    """
    if lake.has_video(VIDEOS_TABLE, record.video_id):
        previous = VideoRecord.from_row(
            lake.read_video(VIDEOS_TABLE, record.video_id).to_pylist()[0]
        )
        if (previous.path, previous.size_bytes, previous.mtime_ns) == (
            record.path,
            record.size_bytes,
            record.mtime_ns,
        ):
            record = replace(record, registered_at=previous.registered_at)
    stats = lake.write_video(
        VIDEOS_TABLE,
        record.to_table(),
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )
    return StageOutcome(record.video_id, 1, stats.seconds, stats)


def registered_videos(lake: ParquetLake, date: str) -> list[VideoRecord]:
    """Every video registered for ``date``."""
    table = lake.read_date(VIDEOS_TABLE, date)
    if table is None:
        return []
    return [VideoRecord.from_row(row) for row in table.to_pylist()]


def extract_frames(
    lake: ParquetLake,
    record: VideoRecord,
    *,
    target_fps: float = 5.0,
    jpeg_quality: int = 90,
) -> StageOutcome:
    """Sample a video's frames to JPEGs and write the ``frames`` index table."""
    final = media_dir(lake, record)
    # A prefix of the id keeps the name under the file-system limit for the longest ids.
    staging = lake.staging / f"media-{record.video_id[:64]}-{uuid.uuid4().hex}"
    try:
        result = sample_video(
            record.path,
            target_fps,
            out_dir=staging,
            video_id=record.video_id,
            start_time=record.capture_start,
            jpeg_quality=jpeg_quality,
        )
        # Swap the whole folder so a re-run never leaves frames of an older sampling behind.
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    paths = pc.replace_substring(result.table.column("image_path"), str(staging), str(final))
    table = result.table.set_column(
        result.table.schema.get_field_index("image_path"), "image_path", paths
    )
    checked = gate(
        lake,
        "frames",
        table,
        video_id=record.video_id,
        date=record.capture_date,
        source_id=record.source_id,
    )
    table = checked.good
    stats = lake.write_video(
        FRAMES_TABLE,
        table,
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )
    return StageOutcome(
        record.video_id,
        table.num_rows,
        result.seconds,
        stats,
        {
            "partial": result.partial,
            "frames_decoded": result.frames_decoded,
            "frames_expected": result.frames_expected,
            "warnings": list(result.warnings),
            "fps": result.info.fps,
            "duration_s": result.info.duration_s,
            "quality": checked.as_dict(),
        },
    )


def detect_video(
    lake: ParquetLake,
    record: VideoRecord,
    detector: Detector,
    *,
    progress: object | None = None,
) -> StageOutcome:
    """Run the detector (and tracker) over a video's sampled frames."""
    frames = lake.read_video(FRAMES_TABLE, record.video_id)
    paths = frames.column("image_path").to_pylist()
    read_started = datetime.now(UTC)
    images = [cv2.imread(p, cv2.IMREAD_COLOR) for p in paths]
    missing = [p for p, img in zip(paths, images, strict=True) if img is None]
    if missing:
        raise FileNotFoundError(
            f"{record.video_id}: {len(missing)} sampled frames are missing or unreadable, e.g. {missing[0]}; "
            "re-materialize `frames` for this video"
        )
    read_seconds = (datetime.now(UTC) - read_started).total_seconds()
    pts = frames.column("pts_sec").to_numpy()
    fps = 1.0 / float(np.median(np.diff(pts))) if len(pts) > 1 else 5.0
    result = detector.detect(
        images,
        frame_numbers=frames.column("frame_number").to_pylist(),
        pts_sec=pts.tolist(),
        video_id=record.video_id,
        fps=fps,
        progress=progress,  # type: ignore[arg-type]
    )
    table = result.table.replace_schema_metadata(
        {
            **(result.table.schema.metadata or {}),
            b"model_name": result.model_name.encode(),
            b"model_sha256": result.model_sha256.encode(),
            b"backend": result.backend.encode(),
            # The model's classes: the detections' quality gate checks class names against them.
            b"class_names": json.dumps(sorted(set(detector.class_names.values()))).encode(),
        }
    )
    stats = lake.write_video(
        RAW_TABLE,
        table,
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )
    per_class = Counter(table.column("class_name").to_pylist()) if table.num_rows else Counter()
    return StageOutcome(
        record.video_id,
        table.num_rows,
        result.seconds_total + read_seconds,
        stats,
        {
            "frames": result.frames,
            "tracks": result.tracks,
            "backend": result.backend,
            "per_class": dict(sorted(per_class.items())),
            "model_seconds": result.seconds_model,
            "tracking_seconds": result.seconds_tracking,
            "detect_seconds": result.seconds_total,
            "read_seconds": read_seconds,
            "model_share": result.model_share,
            "model_name": result.model_name,
            "model_sha256": result.model_sha256,
            **result.timings,
        },
    )


def enrich_video(lake: ParquetLake, record: VideoRecord, *, max_gap_s: float = 5.0) -> StageOutcome:
    """Add GPS, identity and deterministic ids to a video's raw detections."""
    started = datetime.now(UTC)
    raw = lake.read_video(RAW_TABLE, record.video_id)
    meta = raw.schema.metadata or {}
    track = read_gps_track(record.gps_path, start=record.capture_start) if record.gps_path else None
    table = enrich_detections(
        raw.drop_columns(["source_id", "date"]),
        identity=SourceIdentity(record.source_id, record.vehicle_id, record.session_id),
        capture_start=record.capture_start,
        track=track,
        model_name=meta.get(b"model_name", b"unknown").decode(),
        model_sha256=meta.get(b"model_sha256", b"unknown").decode(),
        ingested_at=record.registered_at,
        max_gap_s=max_gap_s,
    )
    classes = json.loads(meta[b"class_names"]) if b"class_names" in meta else None
    checked = gate(
        lake,
        "detections",
        table,
        video_id=record.video_id,
        date=record.capture_date,
        source_id=record.source_id,
        known_classes=classes or None,
    )
    table = checked.good
    stats = lake.write_video(
        DETECTIONS_TABLE,
        table,
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )
    with_gps = int(pc.sum(pc.is_valid(table.column("lat"))).as_py() or 0) if table.num_rows else 0
    return StageOutcome(
        record.video_id,
        table.num_rows,
        (datetime.now(UTC) - started).total_seconds(),
        stats,
        {
            "gps_coverage": with_gps / table.num_rows if table.num_rows else 0.0,
            "gps_source": record.gps_path or "none",
            "quality": checked.as_dict(),
        },
    )


def is_done(lake: ParquetLake, video_id: str) -> bool:
    """A video is done when its enriched detections are in the lake."""
    return lake.has_video(DETECTIONS_TABLE, video_id)


def select_videos(
    lake: ParquetLake, date: str, video_ids: list[str] | None, *, force: bool = False
) -> list[VideoRecord]:
    """The videos a run of ``date`` processes: the named ones, else every one not yet done."""
    records = registered_videos(lake, date)
    if video_ids:
        by_id = {r.video_id: r for r in records}
        unknown = sorted(set(video_ids) - set(by_id))
        if unknown:
            raise ValueError(f"videos {unknown} are not registered for {date}; register them first")
        return [by_id[v] for v in video_ids]
    return [r for r in records if force or not is_done(lake, r.video_id)]
