"""The DuckDB ``events_by_rule`` view over the lake's events."""

from __future__ import annotations

from roadlens.lake import ParquetLake
from roadlens.sinks.duckdb_views import query
from roadlens.synth.tables import synthetic_events


def test_events_by_rule_counts_per_direction_and_hour(lake: ParquetLake) -> None:
    events = synthetic_events(9_000)  # one every 0.5 s: 75 minutes from 10:00
    lake.write_video(
        "events", events, date="2026-05-04", source_id="veh-01", video_id="veh-01--clip-0001"
    )
    frame = query(
        lake.root,
        "SELECT hour, direction, events, rule_sets FROM events_by_rule ORDER BY hour, direction",
    ).frame
    directions = events.column("direction").to_pylist()
    assert frame["events"].sum() == 9_000
    assert frame.groupby("direction")["events"].sum().to_dict() == {
        "in": directions.count("in"),
        "out": directions.count("out"),
    }
    assert sorted({str(h)[11:16] for h in frame["hour"]}) == ["10:00", "11:00"]
    assert set(frame["rule_sets"]) == {1}
