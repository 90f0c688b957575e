"""Video decoding for RoadLens: probe files, sample frames by timestamp, read MP4 boxes.

Example:
    ```python
    from datetime import UTC, datetime
    from roadlens.video import probe, sample_video

    info = probe("dashcam.mp4")
    result = sample_video(
        info.path, 5.0, out_dir="frames/v1", video_id="v1",
        start_time=info.creation_time or datetime.now(UTC),
    )
    ```
"""

from __future__ import annotations

from roadlens.video import mp4
from roadlens.video.mp4 import read_creation_time, read_rotation, write_creation_time
from roadlens.video.probe import VideoError, VideoInfo, fourcc_to_str, open_capture, probe
from roadlens.video.sample import (
    PartialVideoWarning,
    SampledFrame,
    SampleResult,
    iter_sampled_frames,
    sample_video,
)

__all__ = [
    "PartialVideoWarning",
    "SampleResult",
    "SampledFrame",
    "VideoError",
    "VideoInfo",
    "fourcc_to_str",
    "iter_sampled_frames",
    "mp4",
    "open_capture",
    "probe",
    "read_creation_time",
    "read_rotation",
    "sample_video",
    "write_creation_time",
]
