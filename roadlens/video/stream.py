"""The spine's decoder: a frame index from the container alone, then one streaming decode.

Sampling needs only timestamps, so :func:`frame_index` reads the container's packets
(no decoding) and picks frames on a grid ``first_pts + k / target_fps``, each sample
being the first frame whose timestamp reaches its grid point less half a source frame.
:func:`decode_sampled` then decodes the video once and converts only the sampled frames
to BGR, optionally scaled straight to the detector's input size by swscale. Packets that
no other frame depends on (H.264 ``nal_ref_idc == 0``, HEVC ``*_N`` slices) are not even
decoded unless they are sampled, which saves a third of the decode on B-frame footage.

Nothing here holds more than one decoded frame; :func:`roadlens.prefetch.prefetch` decodes ahead in a
thread into a bounded queue so decoding overlaps inference.

Example:
    ```python
    index = frame_index("dashcam.mp4", 5.0)
    index.frame_number[:3], index.pts_sec[:3]  # ([0, 6, 12], [0.0, 0.2, 0.4])
    for frame in decode_sampled(index, size=(640, 360)):
        frame.image.shape  # (360, 640, 3)
    ```
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import av
import cv2
import numpy as np

from roadlens.video.probe import VideoError, VideoInfo, probe
from roadlens.video.sample import PARTIAL_THRESHOLD, SampledFrame

__all__ = [
    "DecodeReport",
    "FrameIndex",
    "decode_frame",
    "decode_sampled",
    "frame_index",
    "sample_grid",
]

T = TypeVar("T")

_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def sample_grid(pts_sec: np.ndarray, target_fps: float | None, source_fps: float) -> np.ndarray:
    """Indices of the frames sampled at ``target_fps`` from presentation-ordered timestamps.

    Each grid point ``pts[0] + k / target_fps`` takes the first frame whose time reaches
    it less half a source frame; a gap in variable-rate footage skips the grid points
    it covers instead of bunching samples after it.

    >>> sample_grid(np.arange(10) / 30.0, 5.0, 30.0).tolist()
    [0, 6]
    >>> sample_grid(np.array([0.0, 0.1, 0.9, 1.0]), 5.0, 10.0).tolist()  # a gap after 0.1 s
    [0, 2, 3]
    """
    n = len(pts_sec)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if target_fps is None or (source_fps > 0 and target_fps >= source_fps):
        return np.arange(n, dtype=np.int64)
    tolerance = 0.5 / source_fps if source_fps > 0 else 0.0
    steps = math.floor((pts_sec[-1] + tolerance - pts_sec[0]) * target_fps) + 1
    grid = pts_sec[0] + np.arange(steps) / target_fps - tolerance
    picked = np.searchsorted(pts_sec, grid, side="left")
    return np.unique(picked[picked < n]).astype(np.int64)


@dataclass(frozen=True)
class FrameIndex:
    """The sampled frames of one video, found from container timestamps alone.

    Attributes:
        info: The probed video.
        frame_number: Each sampled frame's rank in presentation order (int64).
        pts_sec: Its presentation time, seconds since the stream's start (float64).
        frames_total: Frames in the container (packets with data).
        timestamps_estimated: Packets without a timestamp were timed by the nominal rate.
        stopped: Where and why reading the container stopped early, or None.
    """

    info: VideoInfo
    frame_number: np.ndarray
    pts_sec: np.ndarray
    frames_total: int
    timestamps_estimated: int = 0
    stopped: str | None = None

    def __len__(self) -> int:
        return len(self.frame_number)

    @property
    def partial(self) -> bool:
        """Fewer than 98 % of the frames the container announces could be read."""
        expected = self.info.frame_count
        return expected > 0 and self.frames_total < PARTIAL_THRESHOLD * expected

    def problems(self) -> list[str]:
        """Human-readable problems, each naming the file."""
        path, out = self.info.path, []
        if self.partial:
            out.append(
                f"{path}: partial file, {self.frames_total} of {self.info.frame_count} frames "
                f"({self.frames_total / self.info.frame_count:.0%}); truncated or corrupt"
                + (f" ({self.stopped})" if self.stopped else "")
            )
        if self.timestamps_estimated:
            out.append(
                f"{path}: {self.timestamps_estimated} frames lacked a container timestamp; "
                "estimated from the nominal frame rate"
            )
        return out


def frame_index(path: str | os.PathLike[str], target_fps: float | None) -> FrameIndex:
    """Sample ``path`` at ``target_fps`` from its packets' timestamps, decoding nothing.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        VideoError: The file is empty, not a video, or holds no frame.
        ValueError: ``target_fps`` is not positive.
    """
    if target_fps is not None and not target_fps > 0:
        raise ValueError(f"sample fps must be positive, got {target_fps}")
    info = probe(path)
    stamps: list[int | None] = []
    stopped = None
    with _open(info) as container:
        stream = container.streams.video[0]
        base = float(stream.time_base) if stream.time_base else 0.0
        start = stream.start_time
        try:
            for packet in container.demux(stream):
                if packet.size:
                    stamps.append(packet.pts)
        except av.FFmpegError as exc:
            stopped = f"stopped reading at packet {len(stamps)}: {exc}"
    if not stamps:
        raise VideoError(f"{info.path}: the container holds no video frame")
    missing = sum(s is None for s in stamps)
    pts_sec: np.ndarray
    if missing or not base:
        # Raw streams carry no timestamps: frames in decode order at the nominal rate.
        pts_sec = np.arange(len(stamps), dtype=np.float64) / (info.fps or 30.0)
    else:
        raw = np.sort(np.asarray(stamps, dtype=np.int64))
        origin = start if start is not None else int(raw[0])
        pts_sec = (raw - origin) * base
    # Frames before the stream's start (an edit list's lead-in) are never shown: sample the rest.
    shown = int(np.searchsorted(pts_sec, 0.0, side="left"))
    if shown == len(pts_sec):
        raise VideoError(f"{info.path}: every frame is timed before the stream's start")
    picked = sample_grid(pts_sec[shown:], target_fps, info.fps) + shown
    return FrameIndex(
        info=info,
        frame_number=picked,
        pts_sec=pts_sec[picked],
        frames_total=len(stamps),
        timestamps_estimated=len(stamps) if (missing or not base) else 0,
        stopped=stopped,
    )


@dataclass
class DecodeReport:
    """What one :func:`decode_sampled` pass did.

    Attributes:
        decoded: Frames the decoder produced (sampled or not).
        skipped: Packets never decoded because no frame depends on them.
        yielded: Sampled frames delivered.
        stopped: Where and why decoding stopped early, or None.
    """

    decoded: int = 0
    skipped: int = 0
    yielded: int = 0
    stopped: str | None = None
    problems: list[str] = field(default_factory=list)


def decode_sampled(
    index: FrameIndex,
    *,
    size: tuple[int, int] | None = None,
    threads: int | None = None,
    report: DecodeReport | None = None,
) -> Iterator[SampledFrame]:
    """Decode ``index``'s video once and yield its sampled frames in order, as BGR.

    Args:
        index: From :func:`frame_index`.
        size: ``(width, height)`` to scale each sampled frame to while converting
            (display orientation); None keeps the video's size.
        threads: Decoder threads; None lets FFmpeg pick one per core.
        report: Filled with counts and, if decoding stopped early, where.

    A decode error ends the stream after the frames decoded so far; ``report.stopped``
    says where (the spine keeps those frames' detections).
    """
    report = report if report is not None else DecodeReport()
    info = index.info
    rotation = info.rotation if info.rotation in _ROTATE else 0
    out_size = size
    if size is not None and rotation in (90, 270):
        out_size = (size[1], size[0])  # decoded frames are not rotated yet
    with _open(info) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads or 0
        by_order = index.timestamps_estimated > 0 or not stream.time_base
        wanted = _wanted_pts(index, stream) if not by_order else {}
        wanted_numbers = set(index.frame_number.tolist())
        pts_of = dict(zip(index.frame_number.tolist(), index.pts_sec.tolist(), strict=True))
        disposable = _disposable_test(stream.codec_context.name) if not by_order else None
        position = 0
        try:
            for packet in container.demux(stream):
                if (
                    disposable is not None
                    and packet.size
                    and packet.pts is not None
                    and packet.pts not in wanted
                    and disposable(bytes(packet))
                ):
                    report.skipped += 1
                    continue
                for frame in packet.decode():
                    report.decoded += 1
                    if frame.pts is None and not by_order:
                        by_order = True  # a stream without timestamps: count frames
                    if by_order:
                        number = position if position in wanted_numbers else None
                        position += 1
                    else:
                        number = wanted.get(frame.pts) if frame.pts is not None else None
                    if number is None:
                        continue
                    image = _to_bgr(frame, out_size)
                    if rotation:
                        image = cv2.rotate(image, _ROTATE[rotation])
                    report.yielded += 1
                    yield SampledFrame(int(number), pts_of[int(number)], image)
        except av.FFmpegError as exc:
            report.stopped = (
                f"{info.path}: decoding stopped after {report.decoded} frames "
                f"({report.yielded} of {len(index)} sampled): {exc}"
            )
    if report.stopped is None and report.yielded < len(index):
        report.stopped = (
            f"{info.path}: decoding ended after {report.decoded} frames, "
            f"{report.yielded} of {len(index)} sampled frames decoded"
        )
    if report.stopped:
        report.problems.append(report.stopped)


def _to_bgr(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    if size is None or (frame.width, frame.height) == size:
        return frame.to_ndarray(format="bgr24")
    # swscale converts and scales in one pass, far cheaper than converting full size first.
    return frame.to_ndarray(format="bgr24", width=size[0], height=size[1], interpolation="BILINEAR")


def _wanted_pts(index: FrameIndex, stream: av.video.stream.VideoStream) -> dict[int, int]:
    """Raw stream timestamps of the sampled frames -> their frame numbers."""
    assert stream.time_base is not None  # the caller counts frames instead when it is unset
    base = float(stream.time_base)
    origin = stream.start_time or 0
    raw = np.rint(index.pts_sec / base).astype(np.int64) + origin
    return dict(zip(raw.tolist(), index.frame_number.tolist(), strict=True))


def _disposable_test(codec: str) -> Callable[[bytes], bool] | None:
    """A test of whether a packet is a non-reference frame, for codecs where we can tell."""
    if codec == "h264":
        return _h264_disposable
    if codec == "hevc":
        return _hevc_disposable
    return None


def _nal_units(data: bytes) -> Iterator[bytes]:
    """NAL units of a packet in length-prefixed (MP4/MKV) or Annex B (TS) form."""
    if data[:3] == b"\x00\x00\x01" or data[:4] == b"\x00\x00\x00\x01":
        for part in data.split(b"\x00\x00\x01"):
            part = part.rstrip(b"\x00")
            if part:
                yield part
        return
    at = 0
    while at + 4 < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        yield data[at + 4 : at + 4 + length]
        at += 4 + length


def _h264_disposable(data: bytes) -> bool:
    """True when every slice of the packet has ``nal_ref_idc == 0``."""
    slices = [n for n in _nal_units(data) if n and n[0] & 0x1F in (1, 5)]
    return bool(slices) and all(n[0] & 0x60 == 0 for n in slices)


def _hevc_disposable(data: bytes) -> bool:
    """True when every slice is a sub-layer non-reference picture (TRAIL_N ... RASL_N)."""
    types = [(n[0] >> 1) & 0x3F for n in _nal_units(data) if n]
    slices = [t for t in types if t < 32]
    return bool(slices) and all(t <= 14 and t % 2 == 0 for t in slices)


@contextlib.contextmanager
def _open(info: VideoInfo) -> Iterator[av.container.InputContainer]:
    """``av.open`` with errors that name the file."""
    try:
        container = av.open(str(info.path), mode="r", metadata_errors="replace")
    except av.FFmpegError as exc:
        raise VideoError(f"{info.path}: cannot open the video: {exc}") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{info.path}: the file has no video stream")
        yield container
    finally:
        container.close()


def decode_frame(path: str | os.PathLike[str], pts_sec: float) -> np.ndarray:
    """Decode the one frame shown at ``pts_sec`` (seconds since the stream's start).

    For captures and the dashboard's frame view when no stored frame exists: seeks to
    the keyframe before it and decodes forward.

    Raises:
        VideoError: No frame at that time.
    """
    info = probe(path)
    rotation = info.rotation if info.rotation in _ROTATE else 0
    with _open(info) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None  # FFmpeg's demuxers set every stream's time base
        base = float(stream.time_base)
        origin = stream.start_time or 0
        target = round(pts_sec / base) + origin
        container.seek(target, stream=stream, backward=True, any_frame=False)
        tolerance = max(1, round(0.5 / ((info.fps or 30.0) * base)))
        for frame in container.decode(stream):
            if frame.pts is not None and frame.pts >= target - tolerance:
                image = frame.to_ndarray(format="bgr24")
                return cv2.rotate(image, _ROTATE[rotation]) if rotation else image
    raise VideoError(f"{info.path}: no frame at {pts_sec:.3f} s")
