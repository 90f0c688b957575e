"""The per-video ODE stage: enriched detections -> events, event statistics and heat maps.

Each function reads one video's inputs from the lake, writes one file per output table
(so a re-run replaces exactly that video's rows) and returns a ``StageOutcome`` for
materialization metadata. The rule set's hash and a fingerprint of the detections are
stored in the events file's schema metadata, so a run can tell whether a video's events
are current (``events_are_current``) and skip it.

Example:
    >>> outcome = evaluate_video(lake, record, load_rules("roadlens_dagster/rules/examples.yaml"))  # doctest: +SKIP
    >>> outcome.rows  # events written  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from roadlens.lake import (
    DETECTIONS_TABLE,
    EVENT_STATS_TABLE,
    EVENTS_TABLE,
    FRAMES_TABLE,
    HEATMAPS_TABLE,
    VIDEOS_TABLE,
    ParquetLake,
    WriteStats,
)
from roadlens.live.continuity import (
    ContinuityConfig,
    context_key,
    evaluate_with_context,
    prepare_chunk,
)
from roadlens.ode.accumulate import binned_counts, stats_table
from roadlens.ode.actions import write_events_with_media
from roadlens.ode.heatmap import geo_grid, image_grid, render_png, to_table
from roadlens.ode.rules import RuleSet
from roadlens.pipeline import StageOutcome
from roadlens.quality.gate import gate
from roadlens.registry import VideoRecord
from roadlens.schema import HEATMAPS
from roadlens.sinks.base import table_fingerprint
from roadlens.video.probe import VideoError
from roadlens.video.stream import decode_frame

log = logging.getLogger(__name__)

HEATMAP_GRID = (64, 36)  # cells across x down; 20 px cells on a 1280x720 frame
# Live chunks see their previous chunk's tail (roadlens.live.continuity); None turns it off.
DEFAULT_CONTINUITY = ContinuityConfig()


def read_detections(lake: ParquetLake, video_id: str) -> pd.DataFrame:
    """A video's enriched detections as pandas, nullable ids kept as ``Int64``."""
    frame = lake.read_video(DETECTIONS_TABLE, video_id).to_pandas()
    frame["track_id"] = frame["track_id"].astype("Int64")
    return frame


def read_frames(lake: ParquetLake, video_id: str) -> pd.DataFrame:
    """Every sampled frame of a video (absence and zero counts need frames with no boxes)."""
    return lake.read_video(FRAMES_TABLE, video_id).to_pandas()


def _write(lake: ParquetLake, table_name: str, table: pa.Table, record: VideoRecord) -> WriteStats:
    return lake.write_video(
        table_name,
        table,
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )


def events_are_current(
    lake: ParquetLake,
    video_id: str,
    rules: RuleSet,
    *,
    continuity: ContinuityConfig | None = DEFAULT_CONTINUITY,
) -> bool:
    """Whether the video's events were computed from its current detections and rules,
    and from the previous chunk's current detections when it had one as context
    (:func:`roadlens.live.continuity.context_key`)."""
    files = lake.find_video(EVENTS_TABLE, video_id)
    if not files or not lake.has_video(DETECTIONS_TABLE, video_id):
        return False
    meta = pq.read_schema(files[0]).metadata or {}
    detections = lake.read_video(DETECTIONS_TABLE, video_id)
    if not (
        meta.get(b"rule_set_sha256") == rules.sha256().encode()
        and meta.get(b"detections_fingerprint") == table_fingerprint(detections).encode()
    ):
        return False
    stored = meta.get(b"context_fingerprint", b"").decode()
    if continuity is None or not lake.has_video(VIDEOS_TABLE, video_id):
        return stored == ""
    record = VideoRecord.from_row(lake.read_video(VIDEOS_TABLE, video_id).to_pylist()[0])
    return stored == context_key(lake, record, config=continuity)


def evaluate_video(
    lake: ParquetLake,
    record: VideoRecord,
    rules: RuleSet,
    *,
    continuity: ContinuityConfig | None = DEFAULT_CONTINUITY,
    env: Mapping[str, str] | None = None,
) -> StageOutcome:
    """Evaluate ``rules`` over one video and write its ``events`` file (empty when none fire),
    with each rule's captures, clips and notifications done and their files named in
    ``media_paths`` (:func:`roadlens.ode.actions.write_events_with_media`; ``env`` holds
    the notification secrets, default ``os.environ``).

    With ``continuity`` (the default; None turns it off), a live chunk whose previous chunk
    of the same source is in the lake is evaluated with that chunk's tail as context and
    keeps only its own events (:mod:`roadlens.live.continuity`), and its ``track_links``
    are written. The events file's metadata records the context (``context_video_id``,
    ``context_fingerprint``) so :func:`events_are_current` sees a change of either chunk.
    """
    started = time.perf_counter()
    detections_table = lake.read_video(DETECTIONS_TABLE, record.video_id)
    detections = read_detections(lake, record.video_id)
    frames = read_frames(lake, record.video_id)
    context = (
        prepare_chunk(lake, record, detections, frames, config=continuity)
        if continuity is not None
        else None
    )
    events = evaluate_with_context(detections, frames, rules, context)
    checked = gate(
        lake,
        "events",
        events,
        video_id=record.video_id,
        date=record.capture_date,
        source_id=record.source_id,
    )
    events = checked.good
    previous = context.previous.video_id if context and context.previous else ""
    events = events.replace_schema_metadata(
        {
            **(events.schema.metadata or {}),
            b"rule_set_sha256": rules.sha256().encode(),
            b"detections_fingerprint": table_fingerprint(detections_table).encode(),
            b"context_video_id": previous.encode(),
            b"context_fingerprint": (context.fingerprint if context else "").encode(),
        }
    )
    stats, media = write_events_with_media(
        lake, record, events, rules, detections=detections, frames=frames, env=env
    )
    per_rule = (
        pd.Series(events.column("rule_id").to_pylist()).value_counts().sort_index().to_dict()
        if events.num_rows
        else {}
    )
    return StageOutcome(
        record.video_id,
        events.num_rows,
        time.perf_counter() - started,
        stats,
        {
            "per_rule": per_rule,
            "rule_set_sha256": rules.sha256(),
            "quality": checked.as_dict(),
            "context_video_id": previous or None,
            "stitched_tracks": context.stitched if context else 0,
            **media,
        },
    )


def event_stats_of(events: pd.DataFrame, frames: pd.DataFrame) -> pa.Table:
    """5/15/60-minute event counts per rule, class and direction over the video's span (its
    first to last sampled frame, so quiet bins count as zeros)."""
    span = (frames["captured_at"].min(), frames["captured_at"].max()) if len(frames) else None
    return stats_table(binned_counts(events, span=span))


def stats_for_video(lake: ParquetLake, record: VideoRecord) -> StageOutcome:
    """Write a video's ``event_stats`` (:func:`event_stats_of` of its events and frames)."""
    started = time.perf_counter()
    events = lake.read_video(EVENTS_TABLE, record.video_id).to_pandas()
    table = event_stats_of(events, read_frames(lake, record.video_id))
    stats = _write(lake, EVENT_STATS_TABLE, table, record)
    return StageOutcome(record.video_id, table.num_rows, time.perf_counter() - started, stats)


def frames_of(detections: pd.DataFrame) -> pd.DataFrame:
    """A frames table recovered from detections alone, for callers without the ``frames``
    table (frames without boxes are missing from it, so exposure counts only those with)."""
    columns = ["video_id", "frame_number", "pts_sec", "captured_at", "frame_width", "frame_height"]
    frames = detections[columns].drop_duplicates(["video_id", "frame_number"])
    frames = frames.rename(columns={"frame_width": "width", "frame_height": "height"})
    return frames.sort_values(["video_id", "frame_number"]).reset_index(drop=True)


@dataclass(frozen=True)
class Heatmaps:
    """A video's heat map rows (HEATMAPS) and its dwell grid, for the PNG overlay."""

    table: pa.Table
    dwell: np.ndarray
    geo_cells: int | None


def heatmaps_of(
    detections: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    video_id: str,
    source_id: str,
    captured_at: pd.Timestamp,
) -> Heatmaps:
    """Dwell and unique-track image grids, and a geo grid when GPS exists, of one video."""
    size = (int(frames["width"].iloc[0]), int(frames["height"].iloc[0])) if len(frames) else None
    exposure = float(len(frames)) or None
    common: dict[str, Any] = {"video_id": video_id, "source_id": source_id}
    tables = []
    dwell = image_grid(
        detections,
        grid=HEATMAP_GRID,
        weight="dwell",
        frame_size=size,
        segments=True,
        normalize="frames",
        exposure=exposure,
    )
    tables.append(
        to_table(dwell, heatmap_id="dwell", weight="dwell", captured_at=captured_at, **common)
    )
    tracks = image_grid(detections, grid=HEATMAP_GRID, weight="tracks", frame_size=size)
    tables.append(
        to_table(tracks, heatmap_id="tracks", weight="tracks", captured_at=captured_at, **common)
    )
    geo_cells = None
    if "lat" in detections and detections["lat"].notna().any():
        geo = geo_grid(detections)
        tables.append(
            to_table(
                geo,
                heatmap_id="geo-dwell",
                weight="dwell",
                captured_at=captured_at,
                space="geo",
                value_column="dwell",
                **common,
            )
        )
        geo_cells = len(geo)
    table = pa.concat_tables([t.cast(HEATMAPS) for t in tables])
    return Heatmaps(table, dwell, geo_cells)


def _representative_frame(frames: pd.DataFrame, video_path: str) -> np.ndarray | None:
    """The middle sampled frame: its stored JPEG, else decoded from the video."""
    paths = [p for p in frames.get("image_path", pd.Series(dtype=object)).dropna()]
    if paths:
        return cv2.imread(str(paths[len(paths) // 2]))
    if not len(frames):
        return None
    try:
        return decode_frame(video_path, float(frames["pts_sec"].iloc[len(frames) // 2]))
    except (VideoError, FileNotFoundError) as exc:
        log.warning("no heat map background: %s", exc)
        return None


def heatmaps_for_video(lake: ParquetLake, record: VideoRecord) -> StageOutcome:
    """Write a video's ``heatmaps`` (:func:`heatmaps_of`) and a PNG overlay of the dwell grid."""
    started = time.perf_counter()
    detections = read_detections(lake, record.video_id)
    frames = read_frames(lake, record.video_id)
    captured_at = frames["captured_at"].min() if len(frames) else pd.Timestamp(record.capture_start)
    maps = heatmaps_of(
        detections,
        frames,
        video_id=record.video_id,
        source_id=record.source_id,
        captured_at=captured_at,
    )
    extra: dict[str, object] = {}
    if maps.geo_cells is not None:
        extra["geo_cells"] = maps.geo_cells
    stats = _write(lake, HEATMAPS_TABLE, maps.table, record)
    background = _representative_frame(frames, record.path)
    if background is not None:
        png = lake.heatmap_png(record.capture_date, record.video_id, "dwell")
        png.parent.mkdir(parents=True, exist_ok=True)
        render_png(maps.dwell, background, png, units="s/frame")
        extra["png"] = str(png)
    return StageOutcome(
        record.video_id, maps.table.num_rows, time.perf_counter() - started, stats, extra
    )
