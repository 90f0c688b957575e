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
        VideoError: The file is empty, a still image, or FFmpeg cannot open it as a
            video; the message names the file and the likely cause (no ``moov`` index,
            an unknown codec and its FourCC, not a video container).

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
    image = _still_image_format(path)
    if image is not None:
        # FFmpeg would open it as a one-frame "video" through its image demuxers.
        raise VideoError(f"{path}: cannot open as video (it is a {image} still image)")
    params = [] if threads is None else [cv2.CAP_PROP_N_THREADS, int(threads)]
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, params)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path}: cannot open as video ({_why_unopenable(path)})")
    return capture


# Leading bytes of still-image formats FFmpeg would happily open as a one-frame video.
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _still_image_format(path: Path) -> str | None:
    """Name of the still-image format ``path`` starts with, None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None  # let FFmpeg report it
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _IMAGE_MAGIC if head.startswith(magic)), None)


def _why_unopenable(path: Path) -> str:
    """Best guess at why FFmpeg refused ``path``, from the first bytes and the MP4 boxes."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if mp4.is_iso_bmff(path):
            codecs = mp4.read_video_codecs(path)
            if codecs is None:
                return "MP4/MOV without a moov index: truncated, or the recording never finished"
            if not codecs:
                return "MP4/MOV with no video track"
            return f"unknown or unsupported video codec {', '.join(map(repr, codecs))}"
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            codec = _avi_codec(head)
            if codec:
                return f"unknown or unsupported video codec {codec!r} in AVI"
            return "AVI without a readable video stream header: truncated or corrupt"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    return "not a video container, or truncated"


def _avi_codec(head: bytes) -> str | None:
    """The video FourCC of an AVI header: ``strf`` biCompression, else ``strh`` handler."""
    strh = head.find(b"strh")
    while strh >= 0 and head[strh + 8 : strh + 12] != b"vids":  # "strh", size, fccType
        strh = head.find(b"strh", strh + 4)
    if strh < 0:
        return None
    strf = head.find(b"strf", strh)
    raw = head[strf + 24 : strf + 28] if strf >= 0 else b""  # 8-byte header + 16 bytes in
    if len(raw) < 4 or not raw.strip(b"\x00"):
        raw = head[strh + 12 : strh + 16]
    text = raw.decode("latin-1").rstrip("\x00").strip()
    return text if text.isprintable() and text else None


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
        codec = fourcc_to_str(int(capture.get(cv2.CAP_PROP_FOURCC)))
        if width <= 0 or height <= 0:
            raise VideoError(
                f"{path}: no video stream with a frame size (codec {codec or 'unknown'!r}; "
                "audio-only, or the codec parameters are missing)"
            )
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        # NaN or negative when FFmpeg cannot tell.
        fps = fps if fps > 0 else 0.0
        frame_count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        cv_rotation = int(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 360
        # grab() demuxes and decodes one frame without the BGR conversion.
        if not capture.grab():
            raise VideoError(
                f"{path}: no decodable frames in the {codec or 'unknown'} video stream "
                "(corrupt from the start, or a codec this FFmpeg build cannot decode)"
            )
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
