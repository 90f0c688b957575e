"""Decode a video at a target frame rate, choosing frames by container timestamps.

Every frame is grabbed (demuxed and decoded, which H.264 needs anyway for the frames
that follow), but only the sampled ones are converted to BGR with ``retrieve()``.
Samples sit on a grid ``first_pts + k / target_fps``: each one is the first frame
whose timestamp reaches its grid point (less half a source frame), so variable frame
rate footage is sampled evenly in time rather than by frame index.

Example:
    ```python
    from datetime import UTC, datetime
    from roadlens.video import sample_video

    result = sample_video(
        "dashcam.mp4", 5.0, out_dir=None, video_id="v1",
        start_time=datetime(2024, 5, 1, 8, 30, tzinfo=UTC),
    )
    result.table.num_rows  # 69
    ```
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from roadlens.schema import FRAMES, TIMESTAMP, conform
from roadlens.video.probe import VideoError, VideoInfo, open_capture, probe

PARTIAL_THRESHOLD = 0.98
"""A decode that reaches fewer than this share of the expected frames is partial."""


class PartialVideoWarning(UserWarning):
    """A video decoded only in part (truncated or corrupt); the frames that decoded are kept."""


@dataclass(frozen=True)
class SampledFrame:
    """One decoded frame chosen by the sampler.

    Attributes:
        frame_number: 0-based index of the frame in the source (count of grabs).
        pts_sec: Presentation timestamp from the container, seconds since stream start.
        image: BGR image, ``(height, width, 3)`` uint8, rotation already applied.

    Example:
        ```python
        frame = next(iter_sampled_frames("dashcam.mp4"))
        frame.frame_number, frame.pts_sec, frame.image.shape  # (0, 0.0, (360, 640, 3))
        ```
    """

    frame_number: int
    pts_sec: float
    image: np.ndarray


@dataclass(frozen=True)
class SampleResult:
    """Outcome of `sample_video`.

    Attributes:
        table: One row per sampled frame, conforming to `roadlens.schema.FRAMES`.
        info: The probed source video.
        partial: True when decoding stopped well short of the expected frame count.
        frames_decoded: Source frames grabbed (sampled or not).
        frames_expected: Source frame count from the container index.
        warnings: Human-readable problems, each naming the file.
        seconds: Wall time spent sampling.
        images: Decoded BGR images in table order when ``keep_images=True``, else empty.

    Example:
        ```python
        result.table.column("pts_sec").to_pylist()[:3]  # [0.0, 0.2, 0.4]
        ```
    """

    table: pa.Table
    info: VideoInfo
    partial: bool
    frames_decoded: int
    frames_expected: int
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    images: list[np.ndarray] = field(default_factory=list)


@dataclass
class _DecodeStats:
    grabbed: int = 0
    sampled: int = 0
    retrieve_failures: int = 0
    missing_pts: int = 0
    stopped_early: bool = False  # max_frames reached before the end of the stream


def iter_sampled_frames(
    path: str | os.PathLike[str],
    target_fps: float | None = 5.0,
    *,
    max_frames: int | None = None,
    threads: int | None = None,
) -> Iterator[SampledFrame]:
    """Iterate over frames sampled at ``target_fps`` by container timestamp.

    The file is probed before this returns, so a missing, empty or non-video file
    raises here rather than at the first ``next()``. A truncated or corrupt file
    yields what decodes and then emits a `PartialVideoWarning` naming the file; use
    `sample_video` to get that as data.

    Args:
        path: Video file.
        target_fps: Samples per second of video; None, or at least the source rate,
            yields every frame.
        max_frames: Stop after yielding this many frames.
        threads: FFmpeg decoder threads; None keeps OpenCV's default (one per core).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoError: The file is empty, not a video, or no frame decodes.
        ValueError: ``target_fps`` or ``max_frames`` is not positive.

    Example:
        ```python
        [f.frame_number for f in iter_sampled_frames("dashcam.mp4", 5.0, max_frames=3)]
        # [0, 6, 12]
        ```
    """
    _check_rates(target_fps, max_frames)
    # Probe eagerly so a bad file raises here, not at the first next().
    info = probe(path)
    return _sample_and_warn(info, target_fps, max_frames, threads)


def _sample_and_warn(
    info: VideoInfo, target_fps: float | None, max_frames: int | None, threads: int | None
) -> Iterator[SampledFrame]:
    stats = _DecodeStats()
    yield from _sample(info, target_fps, max_frames, threads, stats)
    for message in _problems(info, stats):
        warnings.warn(message, PartialVideoWarning, stacklevel=2)


def sample_video(
    path: str | os.PathLike[str],
    target_fps: float | None = 5.0,
    *,
    out_dir: str | os.PathLike[str] | None,
    video_id: str,
    start_time: datetime,
    jpeg_quality: int = 90,
    keep_images: bool = False,
    max_frames: int | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SampleResult:
    """Sample a video into a FRAMES table, optionally writing JPEGs and keeping images.

    Args:
        path: Video file.
        target_fps: Samples per second of video; None, or at least the source rate,
            keeps every frame.
        out_dir: Directory for ``<frame_number:06d>.jpg`` files (created if missing);
            None writes nothing and leaves ``image_path`` null.
        video_id: Value of the ``video_id`` column.
        start_time: Timezone-aware wall-clock time of pts 0;
            ``captured_at = start_time + pts_sec``.
        jpeg_quality: ``cv2.IMWRITE_JPEG_QUALITY``, 0-100.
        keep_images: Also return the decoded BGR images in ``SampleResult.images``,
            so detection can skip re-reading JPEGs.
        max_frames: Stop after this many sampled frames (not counted as partial).
        threads: FFmpeg decoder threads; None keeps OpenCV's default (one per core).
        progress: Called as ``progress(frames_decoded, frames_expected)`` after each
            sampled frame and once at the end.

    Returns:
        The `SampleResult`; ``partial`` is True (with a `PartialVideoWarning`) when
        fewer than 98 % of the expected source frames decoded.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoError: The file is empty, not a video, or no frame decodes.
        ValueError: ``start_time`` is naive, or ``target_fps``/``max_frames``/
            ``jpeg_quality`` is out of range.
        OSError: A JPEG could not be written.

    Example:
        ```python
        result = sample_video(
            "dashcam.mp4", 5.0, out_dir="frames/v1", video_id="v1",
            start_time=datetime(2024, 5, 1, 8, 30, tzinfo=UTC),
        )
        result.table.num_rows, result.partial  # (69, False)
        ```
    """
    if start_time.tzinfo is None or start_time.utcoffset() is None:
        raise ValueError(f"start_time must be timezone-aware, got {start_time!r}")
    if not 0 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be within 0-100, got {jpeg_quality}")
    _check_rates(target_fps, max_frames)
    started = time.perf_counter()
    info = probe(path)
    out = None if out_dir is None else Path(out_dir).resolve()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    stats = _DecodeStats()
    columns: dict[str, list[Any]] = {name: [] for name in FRAMES.names}
    images: list[np.ndarray] = []
    jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    start_us = epoch_us(start_time)
    for frame in _sample(info, target_fps, max_frames, threads, stats):
        image_path = None
        if out is not None:
            jpeg = out / f"{frame.frame_number:06d}.jpg"
            if not cv2.imwrite(str(jpeg), frame.image, jpeg_params):
                raise OSError(f"{jpeg}: cv2.imwrite failed for a frame of {info.path}")
            image_path = str(jpeg)
        height, width = frame.image.shape[:2]
        columns["video_id"].append(video_id)
        columns["frame_number"].append(frame.frame_number)
        columns["pts_sec"].append(frame.pts_sec)
        # Integer microseconds: exact, and no float rounding in datetime arithmetic.
        columns["captured_at"].append(start_us + round(frame.pts_sec * 1e6))
        columns["width"].append(width)
        columns["height"].append(height)
        columns["image_path"].append(image_path)
        if keep_images:
            images.append(frame.image)
        if progress is not None:
            progress(stats.grabbed, info.frame_count)
    if progress is not None:
        progress(stats.grabbed, info.frame_count)

    problems = _problems(info, stats)
    for message in problems:
        warnings.warn(message, PartialVideoWarning, stacklevel=2)
    arrays = {
        name: pa.array(values, type=TIMESTAMP if name == "captured_at" else None)
        for name, values in columns.items()
    }
    return SampleResult(
        table=conform(pa.table(arrays), FRAMES),
        info=info,
        partial=_is_partial(info, stats),
        frames_decoded=stats.grabbed,
        frames_expected=info.frame_count,
        warnings=problems,
        seconds=time.perf_counter() - started,
        images=images,
    )


def _sample(
    info: VideoInfo,
    target_fps: float | None,
    max_frames: int | None,
    threads: int | None,
    stats: _DecodeStats,
) -> Iterator[SampledFrame]:
    """Grab every frame, retrieve the sampled ones, and record what happened in ``stats``."""
    every_frame = target_fps is None or (info.fps > 0 and target_fps >= info.fps)
    step = 0.0 if target_fps is None else 1.0 / target_fps
    # Half a source frame: absorbs timestamp jitter without picking a frame early.
    tolerance = 0.5 / info.fps if info.fps > 0 else 0.0

    capture = open_capture(info.path, threads=threads)
    try:
        first_pts: float | None = None
        previous_pts = -math.inf
        next_index = 0  # grid point k: next sample is due at first_pts + k * step
        while capture.grab():
            frame_number = stats.grabbed
            stats.grabbed += 1
            pts = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            # FFmpeg reports 0 for frames without a pts; keep time moving forward.
            if frame_number > 0 and not pts > previous_pts:
                stats.missing_pts += 1
                pts = previous_pts + (1.0 / info.fps if info.fps > 0 else 0.0)
            previous_pts = pts
            if first_pts is None:
                first_pts = pts
            if not every_frame:
                due = first_pts + next_index * step
                if pts < due - tolerance:
                    continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                # Leave the grid point open so the next good frame takes it.
                stats.retrieve_failures += 1
                continue
            if not every_frame:
                # Jump to the first grid point after this frame: a gap in VFR footage
                # skips the missed points instead of bunching samples after it.
                next_index = math.floor((pts + tolerance - first_pts) / step) + 1
            stats.sampled += 1
            yield SampledFrame(frame_number, pts, image)
            if max_frames is not None and stats.sampled >= max_frames:
                stats.stopped_early = True
                return
    finally:
        capture.release()
    if stats.sampled == 0:
        raise VideoError(
            f"{info.path}: no frame decoded ({stats.grabbed} grabbed, "
            f"{stats.retrieve_failures} failed to convert)"
        )


def _check_rates(target_fps: float | None, max_frames: int | None) -> None:
    if target_fps is not None and not target_fps > 0:
        raise ValueError(f"target_fps must be positive or None, got {target_fps}")
    if max_frames is not None and max_frames <= 0:
        raise ValueError(f"max_frames must be positive or None, got {max_frames}")


def _is_partial(info: VideoInfo, stats: _DecodeStats) -> bool:
    if stats.stopped_early or info.frame_count <= 0:
        return False
    return stats.grabbed < PARTIAL_THRESHOLD * info.frame_count


def _problems(info: VideoInfo, stats: _DecodeStats) -> list[str]:
    problems = []
    if _is_partial(info, stats):
        problems.append(
            f"{info.path}: partial decode, {stats.grabbed} of {info.frame_count} frames "
            f"({stats.grabbed / info.frame_count:.0%}); file truncated or corrupt"
        )
    if stats.retrieve_failures:
        problems.append(
            f"{info.path}: {stats.retrieve_failures} sampled frames failed to convert and "
            "were replaced by the next frame"
        )
    if stats.missing_pts:
        problems.append(
            f"{info.path}: {stats.missing_pts} frames lacked a container timestamp; "
            "estimated from the nominal frame rate"
        )
    return problems


def epoch_us(when: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime, computed exactly."""
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
