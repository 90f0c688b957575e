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
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from roadlens.camera import THUMBNAIL_WIDTH, CameraProfile
from roadlens.detect.detector import Detector, ProgressFn
from roadlens.detect.weights import road_class_ids
from roadlens.enrich import SourceIdentity, enrich_detections, read_gps_track
from roadlens.lake import (
    DETECTIONS_TABLE,
    FRAMES_TABLE,
    RAW_DETECTIONS_TABLE,
    VIDEOS_TABLE,
    ParquetLake,
    WriteStats,
)
from roadlens.prefetch import prefetch
from roadlens.quality.gate import gate
from roadlens.registry import VideoRecord
from roadlens.schema import FRAMES, TIMESTAMP, conform
from roadlens.video import probe
from roadlens.video.sample import epoch_us
from roadlens.video.stream import DecodeReport, FrameIndex, decode_sampled, frame_index

log = logging.getLogger(__name__)


@dataclass
class StageOutcome:
    """What one stage did for one video."""

    video_id: str
    rows: int
    seconds: float
    write: WriteStats | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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


PREFETCH_FRAMES = 4
"""Sampled frames decoded ahead of the detector: all the spine ever holds of a video."""


def frames_table(
    index: FrameIndex, video_id: str, start_time: datetime, paths: list[str | None]
) -> pa.Table:
    """The ``frames`` index of a video: sampled frames with true container timestamps."""
    n = len(index)
    start_us = epoch_us(start_time)
    # Integer microseconds: exact, and no float rounding in datetime arithmetic.
    captured = start_us + np.rint(index.pts_sec * 1e6).astype(np.int64)
    table = pa.table(
        {
            "video_id": pa.array([video_id] * n, pa.string()),
            "frame_number": pa.array(index.frame_number, pa.int64()),
            "pts_sec": pa.array(index.pts_sec, pa.float64()),
            "captured_at": pa.array(captured, pa.int64()).cast(TIMESTAMP),
            "width": pa.array(np.full(n, index.info.width, np.int32)),
            "height": pa.array(np.full(n, index.info.height, np.int32)),
            "image_path": pa.array(paths, pa.string()),
        }
    )
    return conform(table, FRAMES)


def extract_frames(
    lake: ParquetLake,
    record: VideoRecord,
    *,
    camera: CameraProfile | None = None,
    target_fps: float | None = None,
    jpeg_quality: int = 90,
) -> StageOutcome:
    """Index a video's sampled frames from its container timestamps; keep JPEGs if asked.

    With ``keep_frames: none`` (the default) nothing is decoded here: the detector decodes
    the sampled frames once, streaming, and captures decode what they need from the video.
    ``target_fps`` overrides the camera profile's rate.
    """
    camera = camera or CameraProfile()
    fps = target_fps or camera.sample_fps
    started = time.perf_counter()
    index = frame_index(record.path, fps)
    final = lake.frames_dir(record.capture_date, record.video_id)
    paths: list[str | None] = [None] * len(index)
    problems = index.problems()
    if camera.keep_frames == "none":
        # A re-run that keeps nothing must not leave an older run's JPEGs behind.
        shutil.rmtree(final, ignore_errors=True)
    else:
        problems += _write_frame_images(lake, record, index, camera, jpeg_quality, paths)
    table = frames_table(index, record.video_id, record.capture_start, paths)
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
        time.perf_counter() - started,
        stats,
        {
            "partial": index.partial,
            "frames_total": index.frames_total,
            "frames_expected": index.info.frame_count,
            "warnings": problems,
            "fps": index.info.fps,
            "sample_fps": fps,
            "camera": camera.kind,
            "keep_frames": camera.keep_frames,
            "duration_s": index.info.duration_s,
            "quality": checked.as_dict(),
        },
    )


def _write_frame_images(
    lake: ParquetLake,
    record: VideoRecord,
    index: FrameIndex,
    camera: CameraProfile,
    jpeg_quality: int,
    paths: list[str | None],
) -> list[str]:
    """Decode the sampled frames into JPEGs (thumbnails or full size); fill ``paths``."""
    final = lake.frames_dir(record.capture_date, record.video_id)
    # A prefix of the id keeps the name under the file-system limit for the longest ids.
    staging = lake.staging / f"media-{record.video_id[:64]}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True, exist_ok=True)
    info = index.info
    size = None
    if camera.keep_frames == "thumbnails" and info.width > THUMBNAIL_WIDTH:
        size = (THUMBNAIL_WIDTH, max(2, round(info.height * THUMBNAIL_WIDTH / info.width)))
    position = {n: i for i, n in enumerate(index.frame_number.tolist())}
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    report = DecodeReport()
    try:
        for frame in decode_sampled(index, size=size, report=report):
            name = f"{frame.frame_number:06d}.jpg"
            if not cv2.imwrite(str(staging / name), frame.image, params):
                raise OSError(f"{staging / name}: cv2.imwrite failed for a frame of {info.path}")
            paths[position[frame.frame_number]] = str(final / name)
        # Swap the whole folder so a re-run never leaves frames of an older sampling behind.
        shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report.problems


def detect_video(
    lake: ParquetLake,
    record: VideoRecord,
    detector: Detector,
    *,
    camera: CameraProfile | None = None,
    progress: ProgressFn | None = None,
) -> StageOutcome:
    """Detect and track a video's sampled frames, decoded once in a bounded stream.

    At most :data:`PREFETCH_FRAMES` decoded frames plus one detector batch are held at
    any time, whatever the video's length. A decode that fails partway keeps the
    detections of the frames before it and says where it stopped.
    """
    camera = camera or CameraProfile()
    frames = lake.read_video(FRAMES_TABLE, record.video_id)
    info = probe(record.path)
    index = FrameIndex(
        info=info,
        frame_number=frames.column("frame_number").to_numpy(),
        pts_sec=frames.column("pts_sec").to_numpy(),
        frames_total=info.frame_count,
    )
    pts = index.pts_sec
    fps = 1.0 / float(np.median(np.diff(pts))) if len(pts) > 1 else camera.sample_fps
    width, height = detector.input_size(info.width, info.height)
    detector.warmup(height, width)
    classes = road_class_ids(
        detector.class_names, camera.classes, model=f"detector {detector.model_name}"
    )
    report = DecodeReport()
    stream = prefetch(
        decode_sampled(index, size=(width, height), report=report),
        depth=PREFETCH_FRAMES,
        name="roadlens-decode",
    )
    result = detector.detect_stream(
        stream,
        video_id=record.video_id,
        expected=len(index),
        frame_size=(info.width, info.height),
        fps=fps,
        progress=progress,
        classes=classes,
        camera_kind=camera.kind,
    )
    model_classes = {str(k): v for k, v in sorted(detector.class_names.items())}
    kept = sorted(detector.class_names[i] for i in classes) if classes else "all"
    table = result.table.replace_schema_metadata(
        {
            **(result.table.schema.metadata or {}),
            b"model_name": result.model_name.encode(),
            b"model_sha256": result.model_sha256.encode(),
            b"backend": result.backend.encode(),
            # The model's classes: the detections' quality gate checks class names against them.
            b"class_names": json.dumps(sorted(set(detector.class_names.values()))).encode(),
            b"model_classes": json.dumps(model_classes).encode(),
            b"classes_kept": json.dumps(kept).encode(),
        }
    )
    stats = lake.write_video(
        RAW_DETECTIONS_TABLE,
        table,
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )
    per_class = Counter(table.column("class_name").to_pylist()) if table.num_rows else Counter()
    return StageOutcome(
        record.video_id,
        table.num_rows,
        result.seconds_total,
        stats,
        {
            "frames": result.frames,
            "tracks": result.tracks,
            "backend": result.backend,
            "per_class": dict(sorted(per_class.items())),
            "model_seconds": result.seconds_model,
            "tracking_seconds": result.seconds_tracking,
            "detect_seconds": result.seconds_total,
            "model_share": result.model_share,
            "model_name": result.model_name,
            "model_sha256": result.model_sha256,
            "model_classes": model_classes,
            "classes_kept": kept,
            "decoded_frames": report.decoded,
            "skipped_packets": report.skipped,
            "decode_stopped": report.stopped,
            "warnings": report.problems,
            **result.timings,
        },
    )


def enrich_video(lake: ParquetLake, record: VideoRecord, *, max_gap_s: float = 5.0) -> StageOutcome:
    """Add GPS, identity and deterministic ids to a video's raw detections."""
    started = datetime.now(UTC)
    raw = lake.read_video(RAW_DETECTIONS_TABLE, record.video_id)
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
    warnings = []
    if track is not None and len(track) and raw.num_rows:
        warnings += gps_overlap_warnings(record, track, raw.column("pts_sec").to_numpy())
    return StageOutcome(
        record.video_id,
        table.num_rows,
        (datetime.now(UTC) - started).total_seconds(),
        stats,
        {
            "gps_coverage": with_gps / table.num_rows if table.num_rows else 0.0,
            "gps_source": record.gps_path or "none",
            "quality": checked.as_dict(),
            "warnings": warnings,
        },
    )


def gps_overlap_warnings(
    record: VideoRecord, track: pd.DataFrame, pts_sec: np.ndarray
) -> list[str]:
    """A warning, with both time ranges, when the GPS fixes miss the video's time entirely
    (a sidecar from another drive, day or year): every position would be empty."""
    video_from = record.capture_start + timedelta(seconds=float(pts_sec.min()))
    video_to = record.capture_start + timedelta(seconds=float(pts_sec.max()))
    gps_from, gps_to = track["t"].iloc[0].to_pydatetime(), track["t"].iloc[-1].to_pydatetime()
    if gps_to >= video_from and gps_from <= video_to:
        return []
    return [
        f"{record.gps_path}: its fixes ({gps_from.isoformat()} to {gps_to.isoformat()}) do not "
        f"overlap the video {record.video_id} ({video_from.isoformat()} to "
        f"{video_to.isoformat()}): no detection gets a position"
    ]


def is_done(lake: ParquetLake, video_id: str) -> bool:
    """A video is done when its enriched detections are in the lake."""
    return lake.has_video(DETECTIONS_TABLE, video_id)


def select_videos(
    lake: ParquetLake,
    date: str,
    video_ids: list[str] | None,
    *,
    force: bool = False,
    needs: str | None = None,
) -> list[VideoRecord]:
    """The videos a run of ``date`` processes: the named ones, else every one not yet done.

    ``needs`` names the table the stage reads: a video an earlier stage could not process
    (a file that does not decode) is left out, so the batch's other videos go on.
    """
    records = registered_videos(lake, date)
    if video_ids:
        by_id = {r.video_id: r for r in records}
        unknown = sorted(set(video_ids) - set(by_id))
        if unknown:
            raise ValueError(f"videos {unknown} are not registered for {date}; register them first")
        chosen = [by_id[v] for v in video_ids]
    else:
        chosen = [r for r in records if force or not is_done(lake, r.video_id)]
    if needs is not None:
        chosen = [r for r in chosen if lake.has_video(needs, r.video_id)]
    return chosen
