"""Probe a video file: stream properties from OpenCV, container metadata from the MP4 boxes.

Example:
    ```python
    from roadlens.video import probe

    info = probe("dashcam.mp4")
    info.fps, info.frame_count, (info.width, info.height)  # (30.0, 414, (640, 360))
    ```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import cv2

from roadlens.video import mp4


class VideoError(ValueError):
    """A video file that cannot be decoded: empty, not a video, or nothing decodable."""


@dataclass(frozen=True)
class VideoInfo:
    """What RoadLens knows about a video file before decoding it.

    Attributes:
        path: The probed file.
        fps: Nominal frame rate reported by the container (0.0 when unknown).
        frame_count: Frame count from the container index; an estimate for some
            containers, so decoders must not rely on it to stop.
        duration_s: Nominal duration, ``frame_count / fps`` (0.0 when fps is unknown).
        width: Display width in pixels, after applying ``rotation``; decoded frames
            have this width.
        height: Display height in pixels, after applying ``rotation``.
        codec: FourCC of the video codec, e.g. ``"h264"``, ``"mp4v"``.
        rotation: Clockwise display rotation in degrees (0, 90, 180 or 270). OpenCV
            already applies it to decoded frames.
        creation_time: Container (``mvhd``) creation time in UTC, None when unset.
        size_bytes: File size in bytes.

    Example:
        ```python
        info = probe("dashcam.mp4")
        info.codec, info.duration_s  # ('h264', 13.8)
        ```
    """

    path: Path
    fps: float
    frame_count: int
    duration_s: float
    width: int
    height: int
    codec: str
    rotation: int
    creation_time: datetime | None
    size_bytes: int


def open_capture(path: str | os.PathLike[str], *, threads: int | None = None) -> cv2.VideoCapture:
    """Open ``path`` with OpenCV's FFmpeg backend, raising instead of returning a dud.

    The FFmpeg backend is pinned because container timestamps
    (``CAP_PROP_POS_MSEC``) and rotation metadata come from it.

    Args:
        path: Video file.
        threads: FFmpeg decoder threads; None keeps OpenCV's default (one per core).
            Pass 1 when several videos are decoded in parallel processes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoError: The file is empty or FFmpeg cannot open it as a video.

    Example:
        ```python
        capture = open_capture("dashcam.mp4", threads=1)
        ```
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes)")
    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, int(threads)]
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: cannot open as video (not a video container or truncated)")
    return capture


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's properties and check that at least its first frame decodes.

    Args:
        path: Video file (any container FFmpeg reads; MP4/MOV also gets
            ``creation_time`` and ``rotation`` from the boxes).

    Returns:
        The file's `VideoInfo`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoError: The file is empty, is not a video, has no video stream, or no
            frame decodes.

    Example:
        ```python
        info = probe("dashcam.mp4")
        info.frame_count / info.fps  # 13.8
        ```
    """
    path = Path(path)
    capture = open_capture(path)
    try:
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width <= 0 or height <= 0:
            raise VideoError(f"{path}: no video stream")
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        # NaN or negative when FFmpeg cannot tell.
        fps = fps if fps > 0 else 0.0
        frame_count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        codec = fourcc_to_str(int(capture.get(cv2.CAP_PROP_FOURCC)))
        cv_rotation = int(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 360
        # grab() demuxes and decodes one frame without the BGR conversion.
        if not capture.grab():
            raise VideoError(f"{path}: no decodable frames in the video stream")
    finally:
        capture.release()
    box_rotation = mp4.read_rotation(path)
    return VideoInfo(
        path=path,
        fps=fps,
        frame_count=frame_count,
        duration_s=frame_count / fps if fps else 0.0,
        width=width,
        height=height,
        codec=codec,
        rotation=cv_rotation if box_rotation is None else box_rotation,
        creation_time=mp4.read_creation_time(path),
        size_bytes=path.stat().st_size,
    )


def fourcc_to_str(code: int) -> str:
    """Decode OpenCV's integer FourCC (little-endian chars) to text.

    Example:
        ```python
        fourcc_to_str(cv2.VideoWriter_fourcc(*"mp4v"))  # 'mp4v'
        ```
    """
    chars = bytes((code >> shift) & 0xFF for shift in (0, 8, 16, 24))
    return chars.decode("latin-1").rstrip("\x00").strip()
