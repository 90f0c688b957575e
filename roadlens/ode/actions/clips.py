"""The ``record`` action: event clips cut from the source video with the bundled ffmpeg."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from roadlens.atomic import move_into_place
from roadlens.ode.actions.media import tmp_next_to
from roadlens.video.ffmpeg import ffmpeg_exe

log = logging.getLogger(__name__)


def record_clip(
    video_path: str | Path,
    t_sec: float,
    *,
    pre_s: float = 5.0,
    post_s: float = 5.0,
    out: str | Path,
    exact: bool = False,
    duration_s: float | None = None,
) -> Path:
    """Cut ``[t - pre_s, t + post_s]`` (clamped to the video) of ``video_path`` to ``out``.

    Stream copy by default: no re-encode, so it is fast and lossless, but the cut starts at
    the keyframe at or before ``t - pre_s`` (at most one GOP earlier; dashcams use 0.5-2 s).
    ``exact=True``, or a failed copy, re-encodes with libx264 for frame-exact cuts.

    >>> record_clip("drive.mp4", 6.0, pre_s=2, post_s=2, out="e1-clip.mp4")  # doctest: +SKIP
    PosixPath('e1-clip.mp4')
    """
    video_path, out = Path(video_path), Path(out)
    if duration_s is None:
        from roadlens.video import probe

        duration_s = probe(video_path).duration_s
    start = max(0.0, float(t_sec) - pre_s)
    end = float(t_sec) + post_s
    if duration_s and duration_s > 0:
        end = min(end, duration_s)
    if end <= start:
        raise ValueError(f"{video_path}: clip [{start:.3f}, {end:.3f}] s is empty (t={t_sec})")
    tmp = tmp_next_to(out)
    # -ss before -i seeks the input (fast); -t is the length of the output.
    base = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-ss",
        f"{start:.3f}",
        "-i",
        str(video_path),
        "-t",
        f"{end - start:.3f}",
        "-an",
    ]
    copy = [
        *base,
        "-c:v",
        "copy",
        "-avoid_negative_ts",
        "make_zero",
        "-movflags",
        "+faststart",
        str(tmp),
    ]
    encode = [
        *base,
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        str(tmp),
    ]
    try:
        attempts = [encode] if exact else [copy, encode]
        for i, cmd in enumerate(attempts):
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode == 0 and tmp.exists() and tmp.stat().st_size > 0:
                break
            if i == len(attempts) - 1:
                raise RuntimeError(
                    f"ffmpeg could not cut {video_path}: {done.stderr.strip()[-500:]}"
                )
            log.info(
                "stream copy of %s failed, re-encoding: %s", video_path, done.stderr.strip()[-200:]
            )
        move_into_place(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
