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
