"""``roadlens ode``: the rule author's loop over any detections table, outside Dagster."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from roadlens.cli import main
from roadlens.ode import evaluate, parse_rules
from roadlens.synth.tables import synthetic_detections

RULES = """
version: 1
rules:
  - id: cars
    name: Cars in view
    criteria: {classes: [car]}
    trigger: {occurrence: {}}
    firing: {mode: level}
  - id: crowded
    name: Many boxes
    trigger: {count: {min: 15}}
"""


def test_roadlens_ode_writes_events_stats_and_heatmap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = synthetic_detections(2_000, per_frame=20)
    detections = tmp_path / "detections.parquet"
    pq.write_table(table, detections)
    rules = tmp_path / "rules.yaml"
    rules.write_text(textwrap.dedent(RULES))
    out = tmp_path / "out"

    assert (
        main(["ode", "--detections", str(detections), "--rules", str(rules), "--out", str(out)])
        == 0
    )

    events = pq.read_table(out / "events.parquet")
    frame = table.to_pandas()
    frame["track_id"] = frame["track_id"].astype("Int64")
    expected = evaluate(frame, None, parse_rules(textwrap.dedent(RULES)))
    assert events.num_rows == len(expected) > 0
    assert events.column("event_id").to_pylist() == expected["event_id"].tolist()
    assert pq.read_table(out / "event_stats.parquet").num_rows > 0
    assert pq.read_table(out / "heatmap.parquet").num_rows > 0
    assert (out / "heatmap.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"{events.num_rows} events" in printed and "µs per frame" in printed


def test_roadlens_ode_names_the_bad_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    detections = tmp_path / "d.parquet"
    pq.write_table(synthetic_detections(10), detections)
    rules = tmp_path / "rules.yaml"
    rules.write_text(textwrap.dedent(RULES).replace("min: 15", "min: many"))
    code = main(
        ["ode", "--detections", str(detections), "--rules", str(rules), "--out", str(tmp_path)]
    )
    assert code == 2
    assert "crowded" in capsys.readouterr().err


def test_roadlens_ode_writes_what_the_pipeline_writes_for_the_same_detections(
    tmp_path: Path,
) -> None:
    """The rule author's numbers are the pipeline's: same events, statistics and heat maps."""
    import pandas as pd
    import pyarrow as pa

    from roadlens.lake import (
        DETECTIONS_TABLE,
        EVENT_STATS_TABLE,
        EVENTS_TABLE,
        FRAMES_TABLE,
        HEATMAPS_TABLE,
        ParquetLake,
    )
    from roadlens.ode import stage
    from roadlens.registry import VideoRecord
    from roadlens.schema import FRAMES, conform
    from roadlens.synth.tables import DEFAULT_START

    video_id, source_id = "veh-01--clip-0001", "veh-01"
    detections = synthetic_detections(1_500, video_id=video_id, source_id=source_id, per_frame=15)
    # Every sampled frame at 5 fps, with and without boxes (the last 20 have none).
    numbers = range(detections.column("frame_number").to_numpy().max() + 21)
    frames = conform(
        pa.table(
            {
                "video_id": [video_id] * len(numbers),
                "frame_number": list(numbers),
                "pts_sec": [n / 5.0 for n in numbers],
                "captured_at": [DEFAULT_START + pd.Timedelta(seconds=n / 5.0) for n in numbers],
                "width": [1280] * len(numbers),
                "height": [720] * len(numbers),
                "image_path": pa.nulls(len(numbers), pa.string()),
            }
        ),
        FRAMES,
    )
    date = DEFAULT_START.date().isoformat()
    lake = ParquetLake(tmp_path / "lake")
    where = {"date": date, "source_id": source_id, "video_id": video_id}
    lake.write_video(DETECTIONS_TABLE, detections, **where)
    lake.write_video(FRAMES_TABLE, frames, **where)
    record = VideoRecord(
        video_id=video_id,
        source_id=source_id,
        vehicle_id=source_id,
        session_id=None,
        path=str(tmp_path / "gone.mp4"),  # no video: the heat map PNG is skipped
        size_bytes=1,
        mtime_ns=1,
        capture_start=DEFAULT_START.to_pydatetime(),
        capture_date=date,
        capture_time_source="container",
        gps_path=None,
        registered_at=DEFAULT_START.to_pydatetime(),
    )
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(textwrap.dedent(RULES))
    rules = parse_rules(textwrap.dedent(RULES))
    stage.evaluate_video(lake, record, rules, continuity=None)
    stage.stats_for_video(lake, record)
    stage.heatmaps_for_video(lake, record)

    out = tmp_path / "out"
    args = ["ode", "--rules", str(rules_path), "--out", str(out)]
    args += ["--detections", str(lake.find_video(DETECTIONS_TABLE, video_id)[0])]
    assert main([*args, "--frames", str(lake.find_video(FRAMES_TABLE, video_id)[0])]) == 0

    for table, written in (
        (EVENTS_TABLE, "events.parquet"),
        (EVENT_STATS_TABLE, "event_stats.parquet"),
        (HEATMAPS_TABLE, "heatmap.parquet"),
    ):
        mine = pq.read_table(out / written)
        theirs = lake.read_video(table, video_id).select(mine.column_names)
        assert mine.num_rows > 0, table
        assert mine.to_pylist() == theirs.to_pylist(), table
