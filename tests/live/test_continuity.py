"""Continuity across live chunks: previous chunk, track stitching, exactly-once events.

Chunks are built by hand: three consecutive 10 s chunks of one source sampled at 5 fps
(``cam-1-20261121T103000.000Z`` and the next two) with a few tracks whose positions are
known, so every count below is a known answer.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roadlens.ids import video_id_for
from roadlens.lake import DETECTIONS_TABLE, EVENTS_TABLE, FRAMES_TABLE, ParquetLake
from roadlens.live.continuity import (
    TRACK_LINKS_TABLE,
    ContinuityConfig,
    chunk_duration,
    chunk_start_of,
    evaluate_with_context,
    own_events,
    prepare_chunk,
    previous_chunk,
    read_track_links,
    stitch_tracks,
)
from roadlens.live.record import ChunkMarker, chunk_name
from roadlens.ode.rules import parse_rules
from roadlens.ode.stage import evaluate_video, events_are_current
from roadlens.pipeline import register
from roadlens.registry import VideoRecord
from roadlens.schema import DETECTIONS, FRAMES, conform

SOURCE = "cam-1"
T0 = datetime(2026, 11, 21, 10, 30, 0, tzinfo=UTC)
FPS = 5
CHUNK_S = 10.0
LINE_Y = 300.0

RULES = parse_rules(
    {
        "areas": {
            "stop-line": {"line": [[0, LINE_Y], [1280, LINE_Y]], "in_side": "right"},
            "bay": {"polygon": [[900, 100], [1200, 100], [1200, 400], [900, 400]]},
        },
        "rules": [
            {
                "id": "crossings",
                "criteria": {"classes": ["car"]},
                "anchor": "bottom_center",
                "trigger": {"cross": {"line": "stop-line"}},
            },
            {
                "id": "bay-entries",
                "criteria": {"classes": ["car"]},
                "anchor": "bottom_center",
                "trigger": {"zone": {"zone": "bay"}},
                "firing": {"mode": "edge"},
            },
        ],
    }
)

Row = tuple[float, int, str, float, float, float, float]  # (t since T0, track, class, box)


# --- builders ----------------------------------------------------------------------------------


def _record(tmp: Path, start: datetime) -> VideoRecord:
    name = chunk_name(SOURCE, start)
    return VideoRecord(
        video_id=video_id_for(SOURCE, Path(name).stem),
        source_id=SOURCE,
        vehicle_id=None,
        session_id=None,
        path=str(tmp / "landing" / SOURCE / name),  # no file: durations come from frames
        size_bytes=1,
        mtime_ns=0,
        capture_start=start,
        capture_date=start.date().isoformat(),
        capture_time_source="live",
        gps_path=None,
        registered_at=T0,
    )


def _frames(record: VideoRecord, seconds: float = CHUNK_S) -> pa.Table:
    n = round(seconds * FPS)
    pts = np.arange(n) / FPS
    start = pd.Timestamp(record.capture_start)
    return conform(
        pa.table(
            {
                "video_id": [record.video_id] * n,
                "frame_number": np.arange(n, dtype=np.int64),
                "pts_sec": pts,
                "captured_at": pd.DatetimeIndex(start + pd.to_timedelta(pts, unit="s")),
                "width": np.full(n, 1280, np.int32),
                "height": np.full(n, 720, np.int32),
                "image_path": [None] * n,
            }
        ),
        FRAMES,
    )


def _detections(record: VideoRecord, rows: list[Row]) -> pa.Table:
    """Detections of ``rows`` that fall inside ``record``'s chunk (times since T0)."""
    offset = (record.capture_start - T0).total_seconds()
    df = pd.DataFrame(rows, columns=["t", "track_id", "class_name", "x1", "y1", "x2", "y2"])
    df["pts_sec"] = (df["t"] - offset).round(6)
    df = df[(df["pts_sec"] >= 0) & (df["pts_sec"] < CHUNK_S - 1e-9)].reset_index(drop=True)
    n = len(df)
    frame = np.round(df["pts_sec"].to_numpy() * FPS).astype(np.int64)
    start = pd.Timestamp(record.capture_start)
    return conform(
        pa.table(
            {
                "schema_version": np.ones(n, np.int16),
                "detection_id": [
                    f"{record.video_id}:{f}:{t}" for f, t in zip(frame, df["track_id"], strict=True)
                ],
                "video_id": [record.video_id] * n,
                "source_id": [SOURCE] * n,
                "vehicle_id": pa.nulls(n, pa.string()),
                "session_id": pa.nulls(n, pa.string()),
                "frame_number": frame,
                "pts_sec": frame / FPS,
                "captured_at": pd.DatetimeIndex(start + pd.to_timedelta(frame / FPS, unit="s")),
                "ingested_at": pd.DatetimeIndex([start] * n),
                "class_id": (df["class_name"] != "car").to_numpy(np.int32),
                "class_name": df["class_name"].tolist(),
                "confidence": np.full(n, 0.9, np.float32),
                "x1": df["x1"].to_numpy(np.float32),
                "y1": df["y1"].to_numpy(np.float32),
                "x2": df["x2"].to_numpy(np.float32),
                "y2": df["y2"].to_numpy(np.float32),
                "frame_width": np.full(n, 1280, np.int32),
                "frame_height": np.full(n, 720, np.int32),
                "anchor_u": ((df["x1"] + df["x2"]) / 2).to_numpy(np.float32),
                "anchor_v": df["y2"].to_numpy(np.float32),
                "track_id": df["track_id"].to_numpy(np.int64),
                "lat": pa.nulls(n, pa.float64()),
                "lon": pa.nulls(n, pa.float64()),
                "heading_deg": pa.nulls(n, pa.float32()),
                "speed_mps": pa.nulls(n, pa.float32()),
                "gps_age_s": pa.nulls(n, pa.float32()),
                "model_name": ["m"] * n,
                "model_sha256": ["sha"] * n,
            }
        ),
        DETECTIONS,
    )


def _track(
    t0: float, t1: float, track: int, x: float, y2_at: float, speed: float, *, cls: str = "car"
) -> list[Row]:
    """Samples every 0.2 s in [t0, t1] of a 40x40 box whose bottom is at ``y2_at`` at t = 0
    and moves down ``speed`` px/s."""
    times = np.round(np.arange(round(t0 * FPS), round(t1 * FPS) + 1) / FPS, 6)
    return [(t, track, cls, x, y2_at + speed * t - 40, x + 40, y2_at + speed * t) for t in times]


def _store(lake: ParquetLake, tmp: Path, index: int, rows: list[Row]) -> VideoRecord:
    """Register chunk ``index`` (0, 1, 2: starts T0 + 10 s * index) with ``rows``."""
    record = _record(tmp, T0 + timedelta(seconds=CHUNK_S * index))
    register(lake, record)
    kw = {"date": record.capture_date, "source_id": SOURCE, "video_id": record.video_id}
    lake.write_video(FRAMES_TABLE, _frames(record), **kw)
    lake.write_video(DETECTIONS_TABLE, _detections(record, rows), **kw)
    return record


def _store_all(lake: ParquetLake, tmp: Path, rows: list[Row], n: int = 2) -> list[VideoRecord]:
    """Chunks 0..n-1 with ``rows`` split by time, each chunk's tracker ids offset by 100 *
    chunk so that no id is shared by accident (stitching must find the pairs)."""
    records = []
    for i in range(n):
        shifted = [(t, tr + 100 * i, c, *box) for t, tr, c, *box in rows]
        records.append(_store(lake, tmp, i, shifted))
    return records


def _events(lake: ParquetLake, record: VideoRecord, rule: str = "crossings") -> pd.DataFrame:
    events = lake.read_video(EVENTS_TABLE, record.video_id).to_pandas()
    return events[events["rule_id"] == rule].reset_index(drop=True)


def _links(lake: ParquetLake, record: VideoRecord) -> pd.DataFrame:
    links = read_track_links(lake, record.video_id)
    assert links is not None, f"no track_links for {record.video_id}"
    return links.set_index("track_id")


@pytest.fixture
def lake(tmp_path: Path) -> ParquetLake:
    return ParquetLake(tmp_path / "lake")


# --- previous chunk ----------------------------------------------------------------------------


def test_chunk_start_of_reads_the_live_name_from_the_video_id() -> None:
    record = _record(Path("landing"), T0 + timedelta(milliseconds=123))
    assert chunk_start_of(record.video_id) == record.capture_start
    assert chunk_start_of("veh-01--drive-0001") is None


def test_previous_chunk_is_the_consecutive_one_of_the_same_source(
    lake: ParquetLake, tmp_path: Path
) -> None:
    a, b, c = (_store(lake, tmp_path, i, []) for i in range(3))
    assert previous_chunk(lake, a) is None
    assert previous_chunk(lake, b).video_id == a.video_id  # type: ignore[union-attr]
    assert previous_chunk(lake, c).video_id == b.video_id  # type: ignore[union-attr]
    # Another source with the same times is never a previous chunk.
    other = replace(
        _record(tmp_path, T0 + timedelta(seconds=10)),
        source_id="cam-2",
        video_id=video_id_for("cam-2", "cam-2-x"),
    )
    register(lake, other)
    assert previous_chunk(lake, other) is None


def test_a_gap_beyond_the_tolerance_means_no_previous_chunk(
    lake: ParquetLake, tmp_path: Path
) -> None:
    _store(lake, tmp_path, 0, [])
    late = _store(lake, tmp_path, 2, [])  # starts 10 s after chunk 0 ended
    assert previous_chunk(lake, late) is None
    # 1.2 s late is within the default 1.5 s, 1.2 s beyond a 1.0 s tolerance.
    near = _record(tmp_path, T0 + timedelta(seconds=11.2))
    register(lake, near)
    assert previous_chunk(lake, near) is not None
    assert previous_chunk(lake, near, tolerance_s=1.0) is None


def test_previous_chunk_of_plain_videos_reads_the_registry_times(
    lake: ParquetLake, tmp_path: Path
) -> None:
    first = replace(
        _record(tmp_path, T0), video_id=video_id_for(SOURCE, "drive-0001")
    )  # a name without a chunk start: capture_start comes from the registry row
    second = replace(
        _record(tmp_path, T0 + timedelta(seconds=10)), video_id=video_id_for(SOURCE, "drive-0002")
    )
    for r in (first, second):
        register(lake, r)
        lake.write_video(
            FRAMES_TABLE,
            _frames(r),
            date=r.capture_date,
            source_id=SOURCE,
            video_id=r.video_id,
        )
    assert previous_chunk(lake, second).video_id == first.video_id  # type: ignore[union-attr]
    assert previous_chunk(lake, first) is None


def test_chunk_duration_prefers_the_recorder_marker(lake: ParquetLake, tmp_path: Path) -> None:
    record = _store(lake, tmp_path, 0, [])
    assert chunk_duration(lake, record) == pytest.approx(10.0)  # 49 * 0.2 + 0.2 from frames
    path = Path(record.path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    marker = ChunkMarker(record.capture_start, 9.5, SOURCE, 0, 0.0, 1, "copy")
    Path(f"{path}.done").write_text(marker.to_json())
    assert chunk_duration(lake, record) == pytest.approx(9.5)


# --- stitching ---------------------------------------------------------------------------------


def _frame_of(rows: list[Row]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["t", "track_id", "class_name", "x1", "y1", "x2", "y2"])
    df["captured_at"] = pd.Timestamp(T0) + pd.to_timedelta(df["t"], unit="s")
    df["track_id"] = df["track_id"].astype("Int64")
    return df


def test_stitch_matches_by_iou_class_and_gap_one_to_one() -> None:
    prev = _frame_of(
        _track(9.0, 9.8, 3, 100, 200, 0)  # standing car
        + _track(9.0, 9.8, 4, 110, 200, 0)  # a second car, overlapping the first
        + _track(9.0, 9.8, 5, 600, 200, 0, cls="person")  # a person ...
        + _track(5.0, 7.0, 6, 300, 200, 0)  # ended 2.8 s before the boundary
    )
    cur = _frame_of(
        _track(10.0, 11.0, 1, 101, 200, 0)  # best match of 3 (IoU 0.95 vs 4's 0.64)
        + _track(10.0, 11.0, 2, 111, 200, 0)  # best match of 4
        + _track(10.0, 11.0, 7, 600, 200, 0)  # ... and a car in the same place: other class
        + _track(10.0, 11.0, 8, 300, 200, 0)  # where track 6 was, too late to be 6
        + _track(12.0, 13.0, 9, 800, 200, 0)  # born 2 s into the chunk
    )
    pairs = stitch_tracks(prev, cur, previous_end=pd.Timestamp(T0) + pd.Timedelta(seconds=9.8))
    assert pairs[["prev_track_id", "track_id"]].values.tolist() == [[3, 1], [4, 2]]
    assert pairs["iou"].min() > 0.9
    assert pairs["gap_s"].tolist() == pytest.approx([0.2, 0.2])
    # A stricter threshold than the IoU of a 1 px shift leaves both unmatched.
    assert stitch_tracks(prev, cur, min_iou=0.99).empty


def test_stitch_extrapolates_fast_tracks() -> None:
    # 40 px boxes moving 300 px/s: 60 px per 0.2 s, no overlap without the velocity.
    prev = _frame_of(_track(9.0, 9.8, 3, 100, 0, 300))
    cur = _frame_of(_track(10.0, 11.0, 1, 100, 0, 300))
    assert stitch_tracks(prev, cur, extrapolate=False).empty
    pairs = stitch_tracks(prev, cur)
    assert pairs[["prev_track_id", "track_id"]].values.tolist() == [[3, 1]]
    assert pairs["iou"].iloc[0] == pytest.approx(1.0)


# --- exactly-once events -------------------------------------------------------------------------


def test_a_crossing_between_two_chunks_is_counted_once_in_the_second(
    lake: ParquetLake, tmp_path: Path
) -> None:
    # Bottom edge at 300 - 50 * 9.9 + 50 t: on the line at t = 9.9 s, between chunk 0's last
    # sample (9.8) and chunk 1's first (10.0).
    rows = _track(8.0, 11.0, 3, 100, LINE_Y - 50 * 9.9, 50)
    a, b = _store_all(lake, tmp_path, rows)
    # Without continuity neither chunk sees the crossing: the count is lost.
    for r in (a, b):
        evaluate_video(lake, r, RULES, continuity=None)
    assert len(_events(lake, a)) + len(_events(lake, b)) == 0

    for r in (a, b):
        outcome = evaluate_video(lake, r, RULES)
    assert outcome.extra["context_video_id"] == a.video_id
    assert outcome.extra["stitched_tracks"] == 1
    assert len(_events(lake, a)) == 0
    got = _events(lake, b)
    assert len(got) == 1
    event = got.iloc[0]
    assert (event["track_id"], event["frame_number"], event["direction"]) == (103, 0, "in")
    # The instant (0.1 s before chunk 1) is stamped at the event's frame, inside chunk 1,
    # and the event id's time prefix follows it.
    assert event["pts_sec"] == 0.0
    assert event["captured_at"] == pd.Timestamp(b.capture_start)
    ms = int(pd.Timestamp(b.capture_start).timestamp() * 1000)
    assert event["event_id"].replace("-", "")[:12] == f"{ms:012x}"
    # The samples before and after the crossing: one from each chunk.
    assert event["detection_ids"].tolist() == [f"{a.video_id}:49:3", f"{b.video_id}:0:103"]
    meta = pq.read_schema(lake.find_video(EVENTS_TABLE, b.video_id)[0]).metadata
    assert meta[b"context_video_id"] == a.video_id.encode()


def test_a_crossing_in_the_last_second_is_not_counted_again(
    lake: ParquetLake, tmp_path: Path
) -> None:
    # On the line at t = 9.5 s: inside chunk 0's tail, which chunk 1 sees as context.
    rows = _track(8.0, 11.0, 3, 100, LINE_Y - 50 * 9.5, 50)
    a, b = _store_all(lake, tmp_path, rows)
    for r in (a, b):
        evaluate_video(lake, r, RULES)
    assert len(_events(lake, a)) == 1
    assert _events(lake, a)["frame_number"].tolist() == [48]  # t = 9.6, first sample below
    assert len(_events(lake, b)) == 0


def test_restarted_tracker_ids_of_other_objects_are_not_joined(
    lake: ParquetLake, tmp_path: Path
) -> None:
    # The tracker restarts at 1 in every chunk: chunk 0's track 1 (a car waiting above the
    # line on the left) and chunk 1's track 1 (another car, below the line on the right)
    # are different objects. Joined by id they would "cross" the line at the boundary.
    a = _store(lake, tmp_path, 0, _track(5.0, 9.8, 1, 100, 250, 0))
    b = _store(lake, tmp_path, 1, _track(10.0, 12.0, 1, 900, 350, 0))
    for r in (a, b):
        evaluate_video(lake, r, RULES)
    assert len(_events(lake, a)) + len(_events(lake, b)) == 0
    assert _links(lake, b).loc[1, "chain_id"] == f"{b.video_id}:1"


def test_a_zone_entry_before_the_boundary_is_not_entered_again(
    lake: ParquetLake, tmp_path: Path
) -> None:
    # A car parked in the bay from 6 s to 15 s: one entry, in chunk 0. Without context,
    # chunk 1 would report a second entry at its first frame.
    rows = _track(6.0, 15.0, 3, 1000, 300, 0)
    a, b = _store_all(lake, tmp_path, rows)
    for r in (a, b):
        evaluate_video(lake, r, RULES, continuity=None)
    assert len(_events(lake, b, "bay-entries")) == 1  # the duplicate
    for r in (a, b):
        evaluate_video(lake, r, RULES)
    assert _events(lake, a, "bay-entries")["frame_number"].tolist() == [30]
    assert len(_events(lake, b, "bay-entries")) == 0


def test_a_cooldown_started_before_the_boundary_keeps_suppressing(
    lake: ParquetLake, tmp_path: Path
) -> None:
    rules = parse_rules(
        {
            "rules": [
                {
                    "id": "cars-seen",
                    "criteria": {"classes": ["car"]},
                    "trigger": {"occurrence": {}},
                    "firing": {"mode": "level", "cooldown_s": 3},
                }
            ]
        }
    )
    # One car from 6 s to 15 s: a continuous stream fires at 6, 9, 12 and 15 s.
    a, b = _store_all(lake, tmp_path, _track(6.0, 15.0, 3, 100, 100, 0))
    for r in (a, b):
        evaluate_video(lake, r, rules, continuity=None)
    assert _events(lake, b, "cars-seen")["frame_number"].tolist() == [0, 15]  # 10 s, 13 s
    for r in (a, b):
        evaluate_video(lake, r, rules)
    assert _events(lake, a, "cars-seen")["frame_number"].tolist() == [30, 45]  # 6 s, 9 s
    assert _events(lake, b, "cars-seen")["frame_number"].tolist() == [10, 25]  # 12 s, 15 s


def test_tracks_keep_one_chain_across_three_chunks(lake: ParquetLake, tmp_path: Path) -> None:
    rows = _track(5.0, 25.0, 3, 100, 0, 10)  # a slow car through all three chunks
    rows += _track(10.0, 11.0, 7, 800, 500, 0)
    a, b, c = _store_all(lake, tmp_path, rows, n=3)
    for r in (a, b, c):
        evaluate_video(lake, r, RULES)
    chain = {r.video_id: _links(lake, r) for r in (a, b, c)}
    root = f"{a.video_id}:3"
    assert chain[a.video_id].loc[3, "chain_id"] == root
    assert chain[b.video_id].loc[103, "chain_id"] == root
    assert chain[c.video_id].loc[203, "chain_id"] == root
    assert chain[c.video_id].loc[203, "prev_video_id"] == b.video_id
    assert chain[c.video_id].loc[203, "prev_track_id"] == 103
    # The object that appears in chunk 1 at the same time elsewhere starts its own chain.
    assert chain[b.video_id].loc[107, "chain_id"] == f"{b.video_id}:107"
    assert pd.isna(chain[b.video_id].loc[107, "prev_track_id"])


def test_links_of_an_unevaluated_previous_chunk_are_made_on_demand(
    lake: ParquetLake, tmp_path: Path
) -> None:
    rows = _track(5.0, 25.0, 3, 100, 0, 10)
    a, b, c = _store_all(lake, tmp_path, rows, n=3)
    evaluate_video(lake, c, RULES)  # the newest first: a and b get their links on the way
    assert read_track_links(lake, a.video_id) is not None
    assert read_track_links(lake, b.video_id) is not None
    links = _links(lake, c)
    assert links.loc[203, "chain_id"] == f"{a.video_id}:3"


def test_re_evaluating_a_chunk_is_idempotent(lake: ParquetLake, tmp_path: Path) -> None:
    rows = _track(8.0, 11.0, 3, 100, LINE_Y - 50 * 9.9, 50) + _track(8.0, 12.0, 4, 500, 0, 40)
    a, b = _store_all(lake, tmp_path, rows)
    evaluate_video(lake, a, RULES)
    evaluate_video(lake, b, RULES)
    events = lake.read_video(EVENTS_TABLE, b.video_id)
    links = lake.read_video(TRACK_LINKS_TABLE, b.video_id)
    assert events_are_current(lake, b.video_id, RULES)
    evaluate_video(lake, b, RULES)
    assert lake.read_video(EVENTS_TABLE, b.video_id).equals(events)
    assert lake.read_video(TRACK_LINKS_TABLE, b.video_id).equals(links)
    assert len(lake.find_video(EVENTS_TABLE, b.video_id)) == 1


def test_a_change_of_the_previous_chunk_makes_the_events_stale(
    lake: ParquetLake, tmp_path: Path
) -> None:
    rows = _track(8.0, 11.0, 3, 100, LINE_Y - 50 * 9.9, 50)
    a, b = _store_all(lake, tmp_path, rows)
    evaluate_video(lake, b, RULES)  # chunk 0 evaluated later: b's context is its detections
    assert events_are_current(lake, b.video_id, RULES)
    kw = {"date": a.capture_date, "source_id": SOURCE, "video_id": a.video_id}
    # A change early in chunk 0, outside what the context and the stitch read: still current.
    early = _track(1.0, 2.0, 9, 600, 600, 0, cls="person")
    lake.write_video(DETECTIONS_TABLE, _detections(a, rows + early), **kw)
    assert events_are_current(lake, b.video_id, RULES)
    # Chunk 0 re-detected without the car: chunk 1's context changed.
    lake.write_video(
        DETECTIONS_TABLE,
        _detections(a, []),
        date=a.capture_date,
        source_id=SOURCE,
        video_id=a.video_id,
    )
    assert not events_are_current(lake, b.video_id, RULES)
    evaluate_video(lake, b, RULES)
    assert events_are_current(lake, b.video_id, RULES)
    assert len(_events(lake, b)) == 0  # no stitched track, no crossing
    # With continuity off, events computed with a context are not current either.
    assert not events_are_current(lake, b.video_id, RULES, continuity=None)


def test_non_consecutive_chunks_get_no_context(lake: ParquetLake, tmp_path: Path) -> None:
    rows = _track(18.0, 21.0, 3, 100, LINE_Y - 50 * 19.9, 50)
    _store(lake, tmp_path, 0, rows)
    late = _store(lake, tmp_path, 2, [(t + 10, tr, c, *box) for t, tr, c, *box in rows])
    outcome = evaluate_video(lake, late, RULES)
    assert outcome.extra["context_video_id"] is None
    assert outcome.extra["stitched_tracks"] == 0
    meta = pq.read_schema(lake.find_video(EVENTS_TABLE, late.video_id)[0]).metadata
    assert meta[b"context_video_id"] == b"" and meta[b"context_fingerprint"] == b""
    assert read_track_links(lake, late.video_id) is None  # a standalone video: no links


# --- pure helpers --------------------------------------------------------------------------------


def test_without_context_the_events_are_the_engines(lake: ParquetLake, tmp_path: Path) -> None:
    rows = _track(0.0, 9.8, 3, 100, 100, 50) + _track(0.0, 9.8, 4, 1000, 200, 5)
    record = _store(lake, tmp_path, 0, rows)
    dets = lake.read_video(DETECTIONS_TABLE, record.video_id).to_pandas()
    dets["track_id"] = dets["track_id"].astype("Int64")
    frames = lake.read_video(FRAMES_TABLE, record.video_id).to_pandas()
    context = prepare_chunk(lake, record, dets, frames, write_links=False)
    assert context.previous is None and context.detections.empty
    from roadlens.ode.engine import evaluate_to_table

    got = evaluate_with_context(dets, frames, RULES, context)
    assert got.equals(evaluate_to_table(dets, frames, RULES))
    assert got.num_rows == 2  # one crossing (t = 4 s), one bay entry


def test_own_events_drops_context_frames_and_clamps_early_instants() -> None:
    start = pd.Timestamp(T0)
    frames = pd.DataFrame(
        {
            "frame_number": [0, 1],
            "pts_sec": [0.0, 0.2],
            "captured_at": [start, start + pd.Timedelta(seconds=0.2)],
        }
    )
    events = pd.DataFrame(
        {
            "video_id": "v",
            "rule_id": "r",
            "track_id": pd.array([1, 1, 2], dtype="Int64"),
            "frame_number": [-1, 1, 0],
            "pts_sec": [-0.3, 0.1, -0.05],
            "captured_at": [
                start - pd.Timedelta(seconds=0.3),
                start + pd.Timedelta(seconds=0.1),
                start - pd.Timedelta(seconds=0.05),
            ],
            "event_id": ["0" * 8 + "-0000-8abc-8def-" + "1" * 12] * 3,
        }
    )
    out = own_events(events, frames)
    assert out["frame_number"].tolist() == [0, 1]  # the context frame's event is gone
    assert out["pts_sec"].tolist() == [0.0, 0.1]  # the early one stamped at its frame
    assert out["captured_at"].iloc[0] == start
    ms = int(start.timestamp() * 1000)
    assert (
        out["event_id"].iloc[0]
        == f"{ms:012x}"[:8] + "-" + f"{ms:012x}"[8:] + "-8abc-8def-" + "1" * 12
    )
    assert out["event_id"].iloc[1] == events["event_id"].iloc[1]  # untouched


# --- end to end: recorder chunks, real registry and frames ---------------------------------------


@pytest.mark.slow
def test_recorded_chunks_count_every_line_once(lake: ParquetLake, tmp_path: Path) -> None:
    """A box moving right at 30 px/s through a 6 s clip, recorded at 1x in 2 s chunks; the
    detections are the box's known positions at the sampled frames (5 fps: 6 px apart),
    with the tracker id restarting at 1 in every chunk. 29 vertical lines (x = 23, 29,
    ..., 191; one between two samples) are each crossed once by the box: with continuity
    every line counts exactly once over all chunks, also the lines crossed between two
    chunks, which are lost without it."""
    import cv2

    from roadlens.live.record import Recorder, RecorderConfig, read_chunk_marker
    from roadlens.pipeline import extract_frames
    from roadlens.registry import probe_video_record

    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(60):
        frame = np.full((240, 320, 3), 60, np.uint8)
        cv2.rectangle(frame, (i * 3, 100), (i * 3 + 40, 140), (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    landing = tmp_path / "landing"
    config = RecorderConfig(
        str(clip), landing / SOURCE, chunk_seconds=2, codec="reencode", realtime=True
    )
    Recorder(config, log=None).run()
    chunks = sorted(p for p in (landing / SOURCE).glob("*.mp4") if not p.name.startswith("."))
    assert len(chunks) >= 3

    records, spans = [], []
    for path in chunks:
        record = probe_video_record(path, landing_root=landing)
        register(lake, record)
        extract_frames(lake, record)
        frames = lake.read_video(FRAMES_TABLE, record.video_id).to_pandas()
        stream_start = read_chunk_marker(path).stream_start_s  # type: ignore[union-attr]
        x = np.round((stream_start + frames["pts_sec"].to_numpy()) * 10) * 3  # box's left edge
        spans.append((x.min() + 20, x.max() + 20))  # the anchor (bottom centre) at both ends
        offset = (record.capture_start - T0).total_seconds()
        rows = [
            (offset + p, 1, "car", float(u), 100.0, float(u) + 40, 140.0)
            for p, u in zip(frames["pts_sec"], x, strict=True)
        ]
        dets = _detections(record, rows).to_pandas()
        # The real frames' pts (not multiples of 0.2 s): take them over as they are.
        dets["frame_number"] = frames["frame_number"].to_numpy()
        dets["pts_sec"] = frames["pts_sec"].to_numpy()
        dets["captured_at"] = frames["captured_at"].to_numpy()
        dets["frame_width"], dets["frame_height"] = 320, 240
        dets["detection_id"] = record.video_id + ":" + dets["frame_number"].astype(str)
        table = conform(pa.Table.from_pandas(dets, preserve_index=False), DETECTIONS)
        lake.write_video(
            DETECTIONS_TABLE,
            table,
            date=record.capture_date,
            source_id=SOURCE,
            video_id=record.video_id,
        )
        records.append(record)

    for prev, record in itertools.pairwise(records):
        found = previous_chunk(lake, record)
        assert found is not None and found.video_id == prev.video_id

    xs = list(range(23, 192, 6))
    # Lines crossed between one chunk's last sample and the next chunk's first.
    between = {
        f"x{x}"
        for (_, end), (start, _) in itertools.pairwise(spans)
        for x in xs
        if end < x <= start
    }
    assert between, spans  # 2 s chunks: the box crosses a line between every two
    rules = parse_rules(
        {
            "areas": {f"x{x}": {"line": [[x, 0], [x, 240]]} for x in xs},
            "rules": [{"id": f"x{x}", "trigger": {"cross": {"line": f"x{x}"}}} for x in xs],
        }
    )

    def counts(continuity: object) -> pd.Series:
        for record in records:
            evaluate_video(lake, record, rules, continuity=continuity)  # type: ignore[arg-type]
        events = pd.concat([lake.read_video(EVENTS_TABLE, r.video_id).to_pandas() for r in records])
        return events["rule_id"].value_counts().reindex([f"x{x}" for x in xs], fill_value=0)

    without = counts(None)
    assert set(without[without == 0].index) == between  # lost in the gaps
    assert (without[~without.index.isin(between)] == 1).all()
    with_context = counts(ContinuityConfig())
    assert (with_context == 1).all(), with_context[with_context != 1].to_dict()
    roots = {_links(lake, r).loc[1, "chain_id"] for r in records}
    assert roots == {f"{records[0].video_id}:1"}
