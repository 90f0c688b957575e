"""Continuity across live chunks: one track identity and exactly-once events at boundaries.

A live source arrives as consecutive chunks (``<source>-<UTC start>Z.mp4``), each its own
video: its own frame numbers, its own ``pts_sec`` axis starting at 0 and its own tracker
ids. Three pieces make the chunks of one source behave like one stream for the rules:

1. :func:`previous_chunk` finds the registered video of the same source whose span ends
   where a chunk starts (``capture_start + duration`` within ``tolerance_s``).
2. :func:`stitch_tracks` matches the tracks alive at the end of chunk N with the tracks
   born at the start of chunk N+1 by box IoU (the last box, also moved by the track's
   last velocity) and time gap, one-to-one (Hungarian assignment).
   :func:`link_tracks` turns the matches into the ``track_links`` lake table, one file
   per video of a chain of consecutive videos: every track of the video with its
   ``chain_id``, the first ``(video_id, track_id)`` of its chain of stitched tracks, so
   one object keeps one identity across any number of chunks. A standalone video has no
   file: each of its tracks is its own chain, ``"<video_id>:<track_id>"``.
3. :func:`prepare_chunk` builds chunk N's tail (its last ``context_s`` seconds of frames
   and detections) in chunk N+1's id space: ``video_id`` of N+1, negative frame numbers,
   ``pts_sec`` on N+1's axis (negative), stitched tracks renamed to their N+1 track id and
   the other tracks to ids N+1 does not use. :func:`evaluate_with_context` evaluates the
   rules over tail + chunk and keeps only the events whose frame belongs to chunk N+1.

The exactly-once rule: an event belongs to the chunk that holds its frame (for a
crossing, the first sample on the new side). A crossing between N's last sample and
N+1's first sample has its frame in N+1: N cannot see it (no sample after it), N+1 sees
it through the stitched track and keeps it. A crossing inside N's tail has its frame in
N: N emits it, N+1 sees it in the context and drops it. See ``docs/live.md``
("Continuity across chunks") for the limits.

Example:
    ```python
    from roadlens.live.continuity import evaluate_with_context, prepare_chunk

    context = prepare_chunk(lake, record, detections, frames)  # writes track_links
    events = evaluate_with_context(detections, frames, rules, context)
    context.previous.video_id if context.previous else None    # the chunk used as context
    ```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.optimize import linear_sum_assignment

from roadlens.lake import (
    DETECTIONS_TABLE,
    FRAMES_TABLE,
    TRACK_LINKS_TABLE,
    VIDEOS_TABLE,
    ParquetLake,
)
from roadlens.live.record import read_chunk_marker
from roadlens.ode.engine import evaluate, evaluate_to_table
from roadlens.ode.rules import RuleSet
from roadlens.registry import VideoRecord
from roadlens.schema import EVENTS, TRACK_LINKS, conform
from roadlens.sinks.base import table_fingerprint

__all__ = [
    "TRACK_LINKS",
    "TRACK_LINKS_TABLE",
    "ChunkContext",
    "ContinuityConfig",
    "chunk_duration",
    "chunk_start_of",
    "context_key",
    "context_tail",
    "evaluate_with_context",
    "link_tracks",
    "own_events",
    "prepare_chunk",
    "previous_chunk",
    "read_track_links",
    "stitch_tracks",
]


# The UTC start a chunk name carries, as it appears (lower-cased) in the video id.
_ID_START = re.compile(r"-(\d{8}t\d{6}\.\d{3})z$", re.IGNORECASE)
_BOX = ["x1", "y1", "x2", "y2"]


@dataclass(frozen=True)
class ContinuityConfig:
    """How chunks are chained, stitched and given context.

    Attributes:
        tolerance_s: Largest ``|previous start + duration - start|`` for two videos of a
            source to count as consecutive.
        window_s: A track is "alive at the end" of chunk N when its last sample is within
            this many seconds of N's last frame, "born at the start" of N+1 when its first
            sample is within this many seconds of N+1's first frame.
        max_gap_s: Largest time between a track's last sample in N and the candidate's
            first sample in N+1.
        min_iou: Smallest IoU (raw last box, or moved by the last velocity) to stitch.
        extrapolate: Also compare the last box moved by the track's last velocity.
        context_s: Seconds of chunk N's tail prepended when evaluating N+1's rules.
        max_chain_depth: How many earlier chunks :func:`link_tracks` links on demand when
            their ``track_links`` are missing (beyond that a chain restarts).
    """

    tolerance_s: float = 1.5
    window_s: float = 1.0
    max_gap_s: float = 1.5
    min_iou: float = 0.3
    extrapolate: bool = True
    context_s: float = 5.0
    max_chain_depth: int = 32


@dataclass
class ChunkContext:
    """What :func:`prepare_chunk` found for one chunk.

    Attributes:
        previous: The previous chunk used as context (None: no context).
        detections: Its tail in this chunk's id space (empty without context).
        frames: The tail's frames in this chunk's id space (empty without context).
        links: This chunk's ``track_links`` rows.
        fingerprint: ``"<previous video id>:<fingerprint of its tail>"`` or ``""``;
            stored with the events so a change of the previous chunk makes them stale.
    """

    previous: VideoRecord | None
    detections: pd.DataFrame
    frames: pd.DataFrame
    links: pd.DataFrame
    fingerprint: str = ""
    stitched: int = field(default=0)


# --- consecutive chunks -------------------------------------------------------------------


def chunk_start_of(video_id: str) -> datetime | None:
    """The UTC start a live chunk's video id carries (from its file name), else None.

    >>> chunk_start_of("cam-1--cam-1-20261121t103000.123z")
    datetime.datetime(2026, 11, 21, 10, 30, 0, 123000, tzinfo=datetime.timezone.utc)
    >>> chunk_start_of("veh-01--drive-0001") is None
    True
    """
    match = _ID_START.search(video_id)
    if not match:
        return None
    return pd.Timestamp(match.group(1).upper(), tz="UTC").to_pydatetime()


def chunk_duration(lake: ParquetLake, record: VideoRecord) -> float | None:
    """A video's duration in seconds: the recorder's ``.done`` marker, else its frames
    (last ``pts_sec`` plus the median frame step); None when neither is known."""
    marker = read_chunk_marker(record.path)
    if marker is not None and marker.duration_s > 0:
        return float(marker.duration_s)
    if not lake.has_video(FRAMES_TABLE, record.video_id):
        return None
    pts = np.sort(
        lake.read_video(FRAMES_TABLE, record.video_id)
        .column("pts_sec")
        .to_numpy(zero_copy_only=False)
    )
    if len(pts) < 2:
        return None
    return float(pts[-1] + np.median(np.diff(pts)))


def _registry_files(lake: ParquetLake, record: VideoRecord) -> list[Path]:
    start = pd.Timestamp(record.capture_start)
    dates = {record.capture_date, (start - pd.Timedelta(days=1)).date().isoformat()}
    files: list[Path] = []
    for date in sorted(dates):
        files.extend(lake.source_files(VIDEOS_TABLE, date, record.source_id))
    return [f for f in files if f.stem != record.video_id]


# Registry file -> (mtime_ns, size, capture_start): a backfill of plain (not live-named)
# videos asks for the previous video of every video of a source, so each registry row is
# read once per process, not once per video; a rewritten file has a new mtime.
_STARTS: dict[Path, tuple[int, int, datetime]] = {}
_STARTS_MAX = 100_000


def _capture_start(path: Path) -> datetime:
    stat = path.stat()
    cached = _STARTS.get(path)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    start = pq.read_table(path, columns=["capture_start"]).column(0)[0].as_py()
    if len(_STARTS) >= _STARTS_MAX:
        _STARTS.clear()
    _STARTS[path] = (stat.st_mtime_ns, stat.st_size, start)
    return start


def previous_chunk(
    lake: ParquetLake, record: VideoRecord, *, tolerance_s: float = 1.5
) -> VideoRecord | None:
    """The registered video of ``record``'s source that ends where ``record`` starts.

    Candidates are the source's registry rows of the capture date and the day before;
    the latest one starting before ``record`` is taken (by the start in the chunk name
    when every candidate is a live chunk, so no file is opened; else by the rows'
    ``capture_start``, cached per file), and it counts when its start plus
    :func:`chunk_duration` is within ``tolerance_s`` of ``record.capture_start``. None
    when there is no such video.

    Example:
        >>> prev = previous_chunk(lake, record)  # doctest: +SKIP
        >>> prev.video_id  # doctest: +SKIP
        'cam-1--cam-1-20261121t102950.000z'
    """
    files = _registry_files(lake, record)
    if not files:
        return None
    ids = [f.stem for f in files]
    starts = [chunk_start_of(v) for v in ids]
    if any(s is None for s in starts):
        starts = [_capture_start(f) for f in files]
    own = pd.Timestamp(record.capture_start)
    earlier = [(pd.Timestamp(s), v) for s, v in zip(starts, ids, strict=True) if s is not None]
    earlier = [(s, v) for s, v in earlier if s < own]
    if not earlier:
        return None
    _, video_id = max(earlier)
    prev = VideoRecord.from_row(lake.read_video(VIDEOS_TABLE, video_id).to_pylist()[0])
    duration = chunk_duration(lake, prev)
    if duration is None:
        return None
    end = pd.Timestamp(prev.capture_start) + pd.Timedelta(seconds=duration)
    return prev if abs((own - end).total_seconds()) <= tolerance_s else None


# --- stitching ----------------------------------------------------------------------------


def _seconds(captured_at: pd.Series, ref: pd.Timestamp) -> np.ndarray:
    ns = captured_at.dt.as_unit("ns").astype("int64").to_numpy()
    return (ns - ref.as_unit("ns").value) / 1e9


def _track_samples(
    dets: pd.DataFrame, ref: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tracked rows sorted by (track, time): track ids, seconds from ``ref``, boxes, class."""
    d = dets[dets["track_id"].notna()]
    track = d["track_id"].to_numpy(np.int64)
    t = _seconds(d["captured_at"], ref)
    order = np.lexsort((t, track))
    boxes = d[_BOX].to_numpy(np.float64)[order]
    return track[order], t[order], boxes, d["class_name"].to_numpy(dtype=object)[order]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``(..., 4)`` broadcast against each other."""
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prev_track_id": pd.Series(dtype="int64"),
            "track_id": pd.Series(dtype="int64"),
            "iou": pd.Series(dtype="float64"),
            "gap_s": pd.Series(dtype="float64"),
        }
    )


def stitch_tracks(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    *,
    previous_end: pd.Timestamp | None = None,
    current_start: pd.Timestamp | None = None,
    window_s: float = 1.0,
    max_gap_s: float = 1.5,
    min_iou: float = 0.3,
    extrapolate: bool = True,
) -> pd.DataFrame:
    """One-to-one matches of chunk N's ending tracks with chunk N+1's starting tracks.

    ``previous``/``current``: detections (``track_id``, ``captured_at``, ``class_name``,
    ``x1..y2``) of the two chunks. A track of N qualifies when its last sample is within
    ``window_s`` of ``previous_end`` (N's last frame; default its last detection), a track
    of N+1 when its first sample is within ``window_s`` of ``current_start`` (N+1's first
    frame; default its first detection). A pair needs the same class (of those samples),
    a gap ``0 < first - last <= max_gap_s`` and an IoU of at least ``min_iou`` between
    N+1's first box and N's last box, or that box moved by the track's last velocity
    (``extrapolate``); the better IoU counts. The Hungarian assignment maximises the total
    IoU (ties: the shorter gap).

    Returns ``prev_track_id, track_id, iou, gap_s``, sorted by ``track_id``.

    Example:
        >>> t = pd.to_datetime([0.0, 0.2, 0.4], unit="s", utc=True)
        >>> a = pd.DataFrame({"track_id": [7, 7], "captured_at": t[:2], "class_name": "car",
        ...     "x1": [0.0, 10.0], "y1": 0.0, "x2": [20.0, 30.0], "y2": 20.0})
        >>> b = pd.DataFrame({"track_id": [1], "captured_at": t[2:], "class_name": "car",
        ...     "x1": [20.0], "y1": 0.0, "x2": [40.0], "y2": 20.0})
        >>> stitch_tracks(a, b)[["prev_track_id", "track_id", "iou"]].values.tolist()
        [[7.0, 1.0, 1.0]]
    """
    if not len(previous) or not len(current):
        return _empty_pairs()
    ref = current_start if current_start is not None else current["captured_at"].min()
    ref = pd.Timestamp(ref)
    end_ref = previous_end if previous_end is not None else previous["captured_at"].max()
    end_s = float(_seconds(pd.Series([pd.Timestamp(end_ref)]), ref)[0])

    ptrack, pt, pbox, pcls = _track_samples(previous, ref)
    ctrack, ct, cbox, ccls = _track_samples(current, ref)
    if not len(ptrack) or not len(ctrack):
        return _empty_pairs()
    # Tails of N: the last sample per track and the one before it (for the velocity).
    last = np.flatnonzero(np.r_[ptrack[1:] != ptrack[:-1], True])
    before = np.where(
        (last > 0) & (ptrack[np.maximum(last - 1, 0)] == ptrack[last]), last - 1, last
    )
    dt = pt[last] - pt[before]
    with np.errstate(divide="ignore", invalid="ignore"):
        vel = np.where(dt[:, None] > 0, (pbox[last] - pbox[before]) / dt[:, None], 0.0)
    alive = pt[last] >= end_s - window_s
    last, vel = last[alive], vel[alive]
    # Heads of N+1: the first sample per track.
    first = np.flatnonzero(np.r_[True, ctrack[1:] != ctrack[:-1]])
    first = first[ct[first] <= window_s]
    if not len(last) or not len(first):
        return _empty_pairs()

    gap = ct[first][None, :] - pt[last][:, None]  # (n_prev, n_cur)
    a, b = pbox[last][:, None, :], cbox[first][None, :, :]
    iou = _iou(a, b)
    if extrapolate:
        moved = a + vel[:, None, :] * gap[..., None]
        iou = np.maximum(iou, _iou(moved, b))
    ok = (
        (pcls[last][:, None] == ccls[first][None, :])
        & (gap > 0)
        & (gap <= max_gap_s)
        & (iou >= min_iou)
    )
    if not ok.any():
        return _empty_pairs()
    cost = np.where(ok, 1.0 - iou + 1e-3 * gap / max(max_gap_s, 1e-9), 1e6)
    rows, cols = linear_sum_assignment(cost)
    keep = ok[rows, cols]
    rows, cols = rows[keep], cols[keep]
    out = pd.DataFrame(
        {
            "prev_track_id": ptrack[last][rows].astype(np.int64),
            "track_id": ctrack[first][cols].astype(np.int64),
            "iou": iou[rows, cols].astype(np.float64),
            "gap_s": gap[rows, cols].astype(np.float64),
        }
    )
    return out.sort_values("track_id", kind="stable").reset_index(drop=True)


# --- track_links ----------------------------------------------------------------------------


def read_track_links(lake: ParquetLake, video_id: str) -> pd.DataFrame | None:
    """A video's ``track_links`` rows (None when they were never written)."""
    if not lake.has_video(TRACK_LINKS_TABLE, video_id):
        return None
    table = lake.read_video(TRACK_LINKS_TABLE, video_id)
    return table.select(TRACK_LINKS.names).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _links_frame(
    video_id: str,
    track_ids: np.ndarray,
    previous: VideoRecord | None,
    pairs: pd.DataFrame,
    prev_links: pd.DataFrame | None,
) -> pd.DataFrame:
    tracks = pd.Index(np.unique(track_ids.astype(np.int64)), name="track_id")
    out = pd.DataFrame(index=tracks).reset_index()
    out.insert(0, "video_id", video_id)
    matched = pairs.set_index("track_id").reindex(tracks)
    prev_track = matched["prev_track_id"].astype("Int64").to_numpy()
    stitched = ~pd.isna(prev_track)
    chain_video = np.full(len(out), video_id, dtype=object)
    chain_track = out["track_id"].to_numpy(np.int64).copy()
    if previous is not None and stitched.any():
        prev_ids = prev_track[stitched].astype(np.int64)
        chain_video[stitched] = previous.video_id
        chain_track[stitched] = prev_ids
        if prev_links is not None and len(prev_links):
            by_track = prev_links.set_index(prev_links["track_id"].astype(np.int64))
            found = by_track.reindex(prev_ids)
            has = found["chain_video_id"].notna().to_numpy()
            idx = np.flatnonzero(stitched)[has]
            chain_video[idx] = found["chain_video_id"].to_numpy(dtype=object)[has]
            chain_track[idx] = found["chain_track_id"].to_numpy(np.int64)[has]
    out["chain_id"] = (
        pd.Series(chain_video, dtype=object) + ":" + pd.Series(chain_track).astype(str)
    )
    out["chain_video_id"] = chain_video
    out["chain_track_id"] = chain_track
    # numpy's stubs reject None as an array-like (numpy itself takes it as an object scalar).
    out["prev_video_id"] = np.where(stitched, previous.video_id if previous else None, None)  # type: ignore[arg-type]
    out["prev_track_id"] = pd.array(prev_track, dtype="Int64")
    out["iou"] = matched["iou"].to_numpy(np.float64)
    out["gap_s"] = matched["gap_s"].to_numpy(np.float64)
    return out[TRACK_LINKS.names]


def _write_links(lake: ParquetLake, record: VideoRecord, links: pd.DataFrame) -> None:
    table = conform(pa.Table.from_pandas(links, preserve_index=False), TRACK_LINKS)
    table = table.replace_schema_metadata(TRACK_LINKS.metadata)
    lake.write_video(
        TRACK_LINKS_TABLE,
        table,
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )


def _read_dets(lake: ParquetLake, video_id: str) -> pd.DataFrame:
    frame = lake.read_video(DETECTIONS_TABLE, video_id).to_pandas()
    frame["track_id"] = frame["track_id"].astype("Int64")
    return frame


def _read_frames(lake: ParquetLake, video_id: str, dets: pd.DataFrame) -> pd.DataFrame:
    if lake.has_video(FRAMES_TABLE, video_id):
        return lake.read_video(FRAMES_TABLE, video_id).to_pandas()
    cols = ["video_id", "frame_number", "pts_sec", "captured_at"]
    return dets[cols].drop_duplicates(["video_id", "frame_number"]).sort_values("pts_sec")


def _pairs(
    prev_dets: pd.DataFrame,
    prev_frames: pd.DataFrame,
    dets: pd.DataFrame,
    frames: pd.DataFrame,
    config: ContinuityConfig,
) -> pd.DataFrame:
    return stitch_tracks(
        prev_dets,
        dets,
        previous_end=prev_frames["captured_at"].max() if len(prev_frames) else None,
        current_start=frames["captured_at"].min() if len(frames) else None,
        window_s=config.window_s,
        max_gap_s=config.max_gap_s,
        min_iou=config.min_iou,
        extrapolate=config.extrapolate,
    )


def link_tracks(
    lake: ParquetLake,
    record: VideoRecord,
    *,
    config: ContinuityConfig | None = None,
    _depth: int = 0,
) -> pd.DataFrame:
    """Compute and write ``record``'s ``track_links`` (its detections must be in the lake),
    also when it has no previous chunk (the first chunk of a chain).

    The previous chunk's links give the chain ids; when they are missing (it was never
    evaluated, or it is the first chunk of the chain) they are computed and written first,
    up to ``config.max_chain_depth`` chunks back. Deterministic: a re-run writes the same
    rows.

    Example:
        >>> links = link_tracks(lake, record)  # doctest: +SKIP
        >>> links.set_index("track_id")["chain_id"].to_dict()  # doctest: +SKIP
        {1: 'cam-1--cam-1-20261121t102950.000z:4', 2: 'cam-1--cam-1-20261121t103000.000z:2'}
    """
    config = config or ContinuityConfig()
    dets = _read_dets(lake, record.video_id)
    frames = _read_frames(lake, record.video_id, dets)
    return prepare_chunk(lake, record, dets, frames, config=config, _depth=_depth, _root=True).links


# --- context ----------------------------------------------------------------------------------


def context_tail(
    previous_detections: pd.DataFrame,
    previous_frames: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    video_id: str,
    capture_start: datetime | pd.Timestamp,
    before: pd.Timestamp,
    context_s: float,
    current_tracks: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Chunk N's last ``context_s`` seconds as rows of chunk N+1 (``video_id``).

    Frames from N's last frame minus ``context_s`` up to (not including) ``before``
    (N+1's first frame) are kept. Their frame numbers become negative (order kept),
    ``pts_sec`` is measured from N+1's ``capture_start`` (negative), a stitched track
    takes its N+1 id (``pairs``) and every other track an id above ``current_tracks``.
    Detection ids, boxes and GPS are kept.

    Example:
        >>> t = pd.to_datetime([9.6, 9.8], unit="s", utc=True)
        >>> d = pd.DataFrame({"video_id": "a", "frame_number": [48, 49], "pts_sec": [9.6, 9.8],
        ...     "captured_at": t, "track_id": pd.array([5, 6], dtype="Int64")})
        >>> pairs = pd.DataFrame({"prev_track_id": [5], "track_id": [1]})
        >>> dets, frames = context_tail(d, d[["video_id", "frame_number", "pts_sec",
        ...     "captured_at"]], pairs, video_id="b", capture_start=pd.Timestamp(10, unit="s",
        ...     tz="UTC"), before=pd.Timestamp(10, unit="s", tz="UTC"), context_s=5.0,
        ...     current_tracks=np.array([1, 2]))
        >>> dets[["frame_number", "track_id"]].values.tolist(), dets["pts_sec"].round(1).tolist()
        ([[-2, 1], [-1, 9]], [-0.4, -0.2])
    """
    frames = previous_frames
    if not len(frames):
        return previous_detections.iloc[:0].copy(), frames.iloc[:0].copy()
    end = frames["captured_at"].max()
    keep = (frames["captured_at"] >= end - pd.Timedelta(seconds=context_s)) & (
        frames["captured_at"] < before
    )
    frames = frames[keep].copy()
    shift = int(previous_frames["frame_number"].max()) + 1
    ref = pd.Timestamp(capture_start)
    frames["video_id"] = video_id
    frames["pts_sec"] = _seconds(frames["captured_at"], ref)
    dets = previous_detections[
        previous_detections["frame_number"].isin(frames["frame_number"].to_numpy())
    ].copy()
    frames["frame_number"] = frames["frame_number"].to_numpy(np.int64) - shift
    dets["video_id"] = video_id
    dets["frame_number"] = dets["frame_number"].to_numpy(np.int64) - shift
    dets["pts_sec"] = _seconds(dets["captured_at"], ref)
    # Track ids: stitched -> the N+1 id; others -> above every id N+1 uses (never shared).
    old = dets["track_id"].astype("Int64")
    tracked = old.notna().to_numpy()
    ids = old.to_numpy(dtype=np.float64, na_value=np.nan)
    top = int(current_tracks.max()) if len(current_tracks) else -1
    low = int(np.nanmin(ids)) if tracked.any() else 0
    renamed = ids + (top + 1 - min(low, 0))
    if len(pairs):
        mapping = pd.Series(
            pairs["track_id"].to_numpy(np.float64), index=pairs["prev_track_id"].to_numpy(np.int64)
        )
        stitched = mapping.reindex(ids[tracked].astype(np.int64)).to_numpy()
        sub = renamed[tracked]
        sub[~np.isnan(stitched)] = stitched[~np.isnan(stitched)]
        renamed[tracked] = sub
    dets["track_id"] = pd.array(np.where(tracked, renamed, 0).astype(np.int64), dtype="Int64")
    dets.loc[~tracked, "track_id"] = pd.NA
    return dets.reset_index(drop=True), frames.reset_index(drop=True)


# Seconds read before the context window (and the stitch window): room for the sample
# before a track's last one, which gives its velocity.
_TAIL_MARGIN_S = 1.0


def _previous_tail(
    lake: ParquetLake, previous: VideoRecord, config: ContinuityConfig
) -> tuple[pa.Table, pd.DataFrame]:
    """The previous chunk's detections of its last ``max(context_s, window_s)`` seconds
    (plus a margin) and all its frames: everything the context and the stitch read, so
    its fingerprint changes exactly when they could."""
    table = lake.read_video(DETECTIONS_TABLE, previous.video_id)
    frames = (
        lake.read_video(FRAMES_TABLE, previous.video_id).to_pandas()
        if lake.has_video(FRAMES_TABLE, previous.video_id)
        else None
    )
    pts = table.column("pts_sec")
    last = (
        float(frames["pts_sec"].max())
        if frames is not None and len(frames)
        else (pc.max(pts).as_py() if table.num_rows else None)
    )
    if last is not None:
        cut = last - max(config.context_s, config.window_s) - _TAIL_MARGIN_S
        table = table.filter(pc.greater_equal(pts, cut))
    if frames is None:
        cols = ["video_id", "frame_number", "pts_sec", "captured_at"]
        dets = table.select(cols).to_pandas()
        frames = dets.drop_duplicates(["video_id", "frame_number"]).sort_values("pts_sec")
    return table, frames


def context_key(
    lake: ParquetLake, record: VideoRecord, *, config: ContinuityConfig | None = None
) -> str:
    """``"<previous video id>:<fingerprint of its tail>"`` for the chunk that
    :func:`prepare_chunk` would use as context, ``""`` when there is none. The tail is
    the previous chunk's detections that the context and the stitch read (its last
    ``max(context_s, window_s)`` seconds and a 1 s margin)."""
    config = config or ContinuityConfig()
    prev = previous_chunk(lake, record, tolerance_s=config.tolerance_s)
    if prev is None or not lake.has_video(DETECTIONS_TABLE, prev.video_id):
        return ""
    tail, _ = _previous_tail(lake, prev, config)
    return f"{prev.video_id}:{table_fingerprint(tail)}"


def prepare_chunk(
    lake: ParquetLake,
    record: VideoRecord,
    detections: pd.DataFrame,
    frames: pd.DataFrame,
    *,
    config: ContinuityConfig | None = None,
    write_links: bool = True,
    _depth: int = 0,
    _root: bool = False,
) -> ChunkContext:
    """Find ``record``'s previous chunk, stitch tracks, write ``track_links`` and build the
    context tail for :func:`evaluate_with_context`.

    ``detections``/``frames``: the chunk's own (as the ODE stage reads them). Without a
    consecutive previous chunk with detections in the lake, the context is empty, every
    track starts its own chain and no ``track_links`` file is written (unless the video
    already has one: it is the first chunk of a chain, see :func:`link_tracks`).

    Example:
        >>> context = prepare_chunk(lake, record, detections, frames)  # doctest: +SKIP
        >>> context.previous.video_id, context.stitched  # doctest: +SKIP
        ('cam-1--cam-1-20261121t102950.000z', 3)
    """
    config = config or ContinuityConfig()
    prev = previous_chunk(lake, record, tolerance_s=config.tolerance_s)
    if prev is not None and not lake.has_video(DETECTIONS_TABLE, prev.video_id):
        prev = None
    tracks = detections["track_id"].dropna().to_numpy(np.int64)
    if prev is None:
        links = _links_frame(record.video_id, tracks, None, _empty_pairs(), None)
        # A standalone video gets no file; the first chunk of a chain gets one when its
        # successor needs it (``_root``) and keeps it fresh from then on.
        if write_links and (_root or lake.has_video(TRACK_LINKS_TABLE, record.video_id)):
            _write_links(lake, record, links)
        return ChunkContext(None, detections.iloc[:0].copy(), frames.iloc[:0].copy(), links)
    prev_table, prev_frames = _previous_tail(lake, prev, config)
    prev_dets = prev_table.to_pandas()
    prev_dets["track_id"] = prev_dets["track_id"].astype("Int64")
    pairs = _pairs(prev_dets, prev_frames, detections, frames, config)
    prev_links = read_track_links(lake, prev.video_id)
    if prev_links is None and _depth < config.max_chain_depth:
        prev_links = link_tracks(lake, prev, config=config, _depth=_depth + 1)
    links = _links_frame(record.video_id, tracks, prev, pairs, prev_links)
    if write_links:
        _write_links(lake, record, links)
    before = (
        frames["captured_at"].min()
        if len(frames)
        else (
            detections["captured_at"].min()
            if len(detections)
            else pd.Timestamp.max.tz_localize("UTC")
        )
    )
    tail, tail_frames = context_tail(
        prev_dets,
        prev_frames,
        pairs,
        video_id=record.video_id,
        capture_start=record.capture_start,
        before=before,
        context_s=config.context_s,
        current_tracks=tracks,
    )
    cols = [c for c in detections.columns if c in tail.columns]
    fcols = [c for c in frames.columns if c in tail_frames.columns]
    return ChunkContext(
        prev,
        tail[cols],
        tail_frames[fcols],
        links,
        f"{prev.video_id}:{table_fingerprint(prev_table)}",
        len(pairs),
    )


# --- evaluation -------------------------------------------------------------------------------


def _retime_ids(ids: np.ndarray, epoch_ms: np.ndarray) -> np.ndarray:
    """Event ids with their 48-bit time prefix replaced (the hash part is kept)."""
    hex_ms = pd.Series(epoch_ms.astype(np.int64)).map("{:012x}".format)
    rest = pd.Series(ids, dtype=object).str[13:]
    return (hex_ms.str[:8] + "-" + hex_ms.str[8:] + rest).to_numpy(dtype=object)


def own_events(events: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """The events of evaluation over tail + chunk that belong to the chunk.

    Kept: events whose frame is one of ``frames`` (the chunk's own; the tail's frame
    numbers are negative). A kept event whose interpolated time lies before the chunk's
    first frame (a crossing between the previous chunk's last sample and this chunk's
    first) is stamped at its own frame's ``pts_sec`` and ``captured_at`` (the time part of
    its ``event_id`` follows), so every event of a chunk lies inside the chunk's span.
    """
    own = events["frame_number"].isin(frames["frame_number"].to_numpy())
    out = events[own.to_numpy()].reset_index(drop=True)
    if not len(out) or not len(frames):
        return out
    first = float(frames["pts_sec"].min())
    early = out["pts_sec"].to_numpy(np.float64) < first
    if early.any():
        by_frame = frames.drop_duplicates("frame_number").set_index("frame_number")
        at = by_frame.reindex(out.loc[early, "frame_number"].to_numpy())
        out.loc[early, "pts_sec"] = at["pts_sec"].to_numpy(np.float64)
        out.loc[early, "captured_at"] = at["captured_at"].array
        ms = out.loc[early, "captured_at"].dt.as_unit("ms").astype("int64").to_numpy()
        out.loc[early, "event_id"] = _retime_ids(out.loc[early, "event_id"].to_numpy(), ms)
        out = out.sort_values(
            ["video_id", "pts_sec", "rule_id", "track_id", "event_id"],
            kind="stable",
            na_position="first",
        ).reset_index(drop=True)
    return out


def evaluate_with_context(
    detections: pd.DataFrame,
    frames: pd.DataFrame | None,
    rules: RuleSet,
    context: ChunkContext | None,
    *,
    model_sha256: str | None = None,
) -> pa.Table:
    """Events of one chunk (EVENTS table), its previous chunk's tail as context.

    Without context (None, or an empty tail) this is
    :func:`roadlens.ode.engine.evaluate_to_table`. With it, the rules run over tail +
    chunk, so a stitched track is one track to the engine, and :func:`own_events` keeps
    the chunk's events: each event exactly once across the two chunks.
    """
    if context is None or (not len(context.detections) and not len(context.frames)):
        return evaluate_to_table(detections, frames, rules, model_sha256=model_sha256)
    own_frames = (
        frames
        if frames is not None
        else detections[["video_id", "frame_number", "pts_sec", "captured_at"]].drop_duplicates(
            ["video_id", "frame_number"]
        )
    )
    both = pd.concat([context.detections, detections], ignore_index=True)
    both["track_id"] = both["track_id"].astype("Int64")
    all_frames = pd.concat([context.frames, own_frames], ignore_index=True)
    events = own_events(evaluate(both, all_frames, rules, model_sha256=model_sha256), own_frames)
    events = events.astype(
        {
            "track_id": "Int64",
            "captured_at": "datetime64[us, UTC]",
            "frame_number": "int64",
            "schema_version": "int16",
        }
    )[EVENTS.names]
    return conform(pa.Table.from_pandas(events, schema=EVENTS, preserve_index=False), EVENTS)
