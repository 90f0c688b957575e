"""Write synthetic drives to disk: the video, its GPS sidecars and the ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
import pandas as pd

from roadlens.synth.scene import Scene, View
from roadlens.video.mp4 import write_creation_time

EARTH_M_PER_DEG = 111_320.0
DEFAULT_START = datetime(2026, 5, 4, 8, 30, tzinfo=UTC)


@dataclass(frozen=True)
class SynthClip:
    """Paths and counts of one rendered clip."""

    video_path: Path
    truth_path: Path
    gps_csv_path: Path | None
    gps_gpx_path: Path | None
    frames: int
    fps: float
    start: datetime
    truth: pd.DataFrame


def gps_track(
    seconds: float,
    *,
    speed_mps: float,
    seed: int,
    start: datetime = DEFAULT_START,
    rate_hz: float = 1.0,
    origin: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """A smooth, plausible GPS route: heading drifts, speed varies around ``speed_mps``.

    Returns columns ``timestamp`` (UTC), ``lat``, ``lon``, ``heading`` (deg), ``speed`` (m/s),
    integrated on a fine time step so positions agree with speed and heading.

    >>> track = gps_track(10, speed_mps=15, seed=0)
    >>> len(track), bool(track.speed.between(10, 20).all())
    (11, True)
    """
    rng = np.random.default_rng(seed + 7919)
    lat0, lon0 = origin or (52.0 + rng.uniform(0, 1.0), 4.5 + rng.uniform(0, 1.0))
    step = 0.1
    t = np.arange(0.0, seconds + step / 2, step)
    heading0 = rng.uniform(0, 360)
    yaw = rng.uniform(2.0, 6.0) * np.sin(2 * np.pi * t / rng.uniform(20, 60) + rng.uniform(0, 6.28))
    heading = (heading0 + np.cumsum(yaw) * step) % 360
    speed = speed_mps * (1 + 0.08 * np.sin(2 * np.pi * t / rng.uniform(15, 40)))
    north = np.cumsum(speed * np.cos(np.radians(heading))) * step
    east = np.cumsum(speed * np.sin(np.radians(heading))) * step
    lat = lat0 + north / EARTH_M_PER_DEG
    lon = lon0 + east / (EARTH_M_PER_DEG * math.cos(math.radians(lat0)))
    keep = np.isclose((t * rate_hz) % 1.0, 0.0, atol=1e-6) | np.isclose((t * rate_hz) % 1.0, 1.0)
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(start) + pd.to_timedelta(t[keep], unit="s"),
            "lat": lat[keep].round(7),
            "lon": lon[keep].round(7),
            "heading": heading[keep].round(2),
            "speed": speed[keep].round(3),
        }
    )


def write_gpx(track: pd.DataFrame, path: Path, *, name: str = "roadlens synth drive") -> None:
    """Write ``track`` (as from :func:`gps_track`) as GPX 1.0 with ``course`` and ``speed``."""
    points = "\n".join(
        f'      <trkpt lat="{lat:.7f}" lon="{lon:.7f}"><time>{ts:%Y-%m-%dT%H:%M:%S.%fZ}</time>'
        f"<course>{heading:.2f}</course><speed>{speed:.3f}</speed></trkpt>"
        for ts, lat, lon, heading, speed in track[
            ["timestamp", "lat", "lon", "heading", "speed"]
        ].itertuples(index=False)
    )
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.0" creator="roadlens.synth" xmlns="http://www.topografix.com/GPX/1/0">\n'
        f"  <trk><name>{escape(name)}</name>\n    <trkseg>\n{points}\n    </trkseg>\n  </trk>\n</gpx>\n"
    )


def render_clip(
    video_path: str | Path,
    *,
    view: View = "dashcam",
    seconds: float = 12.0,
    fps: float = 30.0,
    width: int = 640,
    height: int = 360,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    gps: bool = True,
    vary_conditions: bool = False,
) -> SynthClip:
    """Render a clip to ``video_path`` (MPEG-4 Part 2 in MP4) with its sidecars.

    Writes next to the video: ``<stem>.truth.parquet`` (per-frame boxes and identities),
    and for the dashcam view ``<stem>.csv`` and ``<stem>.gpx`` (1 Hz GPS). The MP4's
    ``creation_time`` is set to ``start`` the way dashcams stamp their files.
    """
    if start.tzinfo is None:
        raise ValueError("render_clip: start must be timezone-aware")
    video_path = Path(video_path)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    scene = Scene.create(
        view, seed=seed, width=width, height=height, vary_conditions=vary_conditions
    )
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a video writer for {video_path}")
    truth_frames = []
    count = 0
    try:
        for frame in scene.frames(seconds=seconds, fps=fps):
            writer.write(frame.image)
            truth_frames.append(frame.boxes)
            count += 1
    finally:
        writer.release()
    write_creation_time(video_path, start)
    truth = pd.concat(truth_frames, ignore_index=True)
    truth_path = video_path.with_suffix(".truth.parquet")
    truth.to_parquet(truth_path, index=False)
    csv_path = gpx_path = None
    if gps and view == "dashcam":
        track = gps_track(seconds, speed_mps=scene.ego_speed_mps, seed=seed, start=start)
        csv_path = video_path.with_suffix(".csv")
        out = track.assign(timestamp=track.timestamp.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        out.to_csv(csv_path, index=False)
        gpx_path = video_path.with_suffix(".gpx")
        write_gpx(track, gpx_path)
    return SynthClip(video_path, truth_path, csv_path, gpx_path, count, fps, start, truth)


def render_drive_set(
    landing: str | Path,
    *,
    vehicle_id: str = "veh-01",
    session_id: str = "session-a",
    clips: int = 2,
    seconds: float = 12.0,
    fps: float = 30.0,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    view: View = "dashcam",
) -> list[SynthClip]:
    """Render ``clips`` consecutive clips under ``<landing>/<vehicle_id>/<session_id>/``."""
    folder = Path(landing) / vehicle_id / session_id
    return [
        render_clip(
            folder / f"drive-{i:04d}.mp4",
            view=view,
            seconds=seconds,
            fps=fps,
            seed=seed + i,
            start=start + timedelta(seconds=i * seconds),
        )
        for i in range(clips)
    ]
