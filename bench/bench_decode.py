"""Benchmark sampled decoding against decoding every frame and against the ffmpeg CLI.

Rounds are interleaved (every method once per round, after one untimed warm-up round)
so drift in machine load hits all methods alike; the table reports medians. This
script reports, it never fails: missing tools become notes and the exit status is 0.

Usage:
    .venv/bin/python bench/bench_decode.py [clip] [--rounds N] [--fps F]

Example output row (2-core x86_64, 640x360 H.264):
    sampled 5 fps (iter_sampled_frames)   69   135.3 ms   3059 src frames/s   0.72x
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import cv2

# Runnable as a plain script from the repository root or anywhere else.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Method, interleave
from roadlens.video import iter_sampled_frames, probe

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "dashcam.mp4"


def find_ffmpeg() -> str | None:
    """The ffmpeg binary on PATH, else the one bundled with imageio-ffmpeg, else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    return None


def read_all(clip: Path) -> int:
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def grab_all(clip: Path) -> int:
    capture = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def ffmpeg_null(ffmpeg: str, clip: Path, fps: float) -> int:
    cmd = [ffmpeg, "-v", "error", "-nostdin", "-i", str(clip), "-vf", f"fps={fps}"]
    subprocess.run([*cmd, "-f", "null", "-"], check=True, capture_output=True)
    return 0  # frames are discarded inside ffmpeg


def ffmpeg_pipe(ffmpeg: str, clip: Path, fps: float, frame_bytes: int) -> int:
    cmd = [ffmpeg, "-v", "error", "-nostdin", "-i", str(clip), "-vf", f"fps={fps}"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    return len(out) // frame_bytes


def methods_for(clip: Path, fps: float, notes: list[str]) -> list[Method]:
    info = probe(clip)
    methods = [
        Method(
            f"sampled {fps:g} fps (iter_sampled_frames)",
            lambda: sum(1 for _ in iter_sampled_frames(clip, fps)),
        ),
        Method("read all frames (cv2 read)", lambda: read_all(clip)),
        Method("grab all, no retrieve (cv2 grab)", lambda: grab_all(clip)),
    ]
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        notes.append("ffmpeg rows skipped: no ffmpeg on PATH and imageio-ffmpeg not installed")
        return methods
    frame_bytes = info.width * info.height * 3
    methods += [
        Method(f"ffmpeg -vf fps={fps:g} -f null", lambda: ffmpeg_null(ffmpeg, clip, fps)),
        Method(
            f"ffmpeg -vf fps={fps:g} bgr24 pipe",
            lambda: ffmpeg_pipe(ffmpeg, clip, fps, frame_bytes),
        ),
    ]
    notes.append(f"ffmpeg: {ffmpeg}; 'vs ffmpeg' compares with the bgr24 pipe row")
    return methods


def bench(clip: Path, rounds: int, fps: float) -> None:
    notes: list[str] = []
    info = probe(clip)
    methods = methods_for(clip, fps, notes)
    # Each method's ``run`` returns the frames it delivered; the warm-up round (page
    # cache, codec init) supplies those counts.
    timings = interleave(methods, rounds)
    counts = {name: timing.warmup for name, timing in timings.items()}
    medians = {name: timing.median for name, timing in timings.items()}

    read_all_s = medians["read all frames (cv2 read)"]
    ffmpeg_s = next((s for name, s in medians.items() if "pipe" in name), None)
    print(f"clip: {clip.name}  {info.width}x{info.height}  {info.codec}  {info.fps:g} fps")
    print(f"      {info.frame_count} frames  {info.duration_s:.2f} s  {info.size_bytes} bytes")
    print(
        f"host: {platform.machine()}, {os.cpu_count()} CPUs, OpenCV {cv2.__version__}, "
        f"Python {platform.python_version()}; median of {rounds} interleaved rounds"
    )
    header = (
        f"{'method':<40} {'frames':>6} {'ms/clip':>9} {'src frames/s':>13} "
        f"{'vs read-all':>12} {'vs ffmpeg':>10}"
    )
    print(header)
    print("-" * len(header))
    for method in methods:
        seconds = medians[method.name]
        delivered = counts[method.name] or "-"
        vs_ffmpeg = f"{seconds / ffmpeg_s:.2f}x" if ffmpeg_s else "n/a"
        print(
            f"{method.name:<40} {delivered!s:>6} {seconds * 1e3:>9.1f} "
            f"{info.frame_count / seconds:>13.0f} {seconds / read_all_s:>11.2f}x {vs_ffmpeg:>10}"
        )
    notes.append("ratios are time ratios: below 1.00x is faster than the reference")
    for note in notes:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--fps", type=float, default=5.0, help="sampling rate (default 5)")
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        print(f"no clip at {args.clip}; pass one as the first argument")
        return 0
    try:
        bench(args.clip, max(args.rounds, 1), args.fps)
    except Exception as exc:  # a benchmark reports; it does not fail the caller
        print(f"benchmark aborted: {type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
