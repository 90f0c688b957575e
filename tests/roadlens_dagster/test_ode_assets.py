"""The ODE assets in Dagster: events, statistics and heat maps per video, rules as lineage.

Runs the real spine on the synthetic dashcam clips once (module fixture), then the ODE
assets with rule files written by the tests.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from roadlens.lake import EVENT_STATS_TABLE, EVENTS_TABLE, HEATMAPS_TABLE, ParquetLake
from roadlens.ode import load_rules
from roadlens.registry import probe_video_record
from roadlens_dagster.assets.batch import SPINE_ASSETS, batch_run_config
from roadlens_dagster.assets.jobs_config import ODE_ASSET_NAMES
from roadlens_dagster.assets.ode import ODE_ASSETS
from roadlens_dagster.assets.spine import SPINE
from roadlens_dagster.resources import (
    DetectorResource,
    LakeResource,
    SinksResource,
    SourcesResource,
)
from roadlens_dagster.resources.rules import RulesResource
from tests.conftest import CAPTURE_DATE, LandingClips

pytestmark = pytest.mark.slow

RULES_V1 = """
version: 1
rules:
  - id: cars-seen
    name: Cars in view
    criteria: {classes: [car]}
    trigger: {occurrence: {}}
    firing: {mode: edge}
  - id: busy-frame
    name: At least two vehicles
    criteria: {classes: [car, truck]}
    trigger: {count: {min: 2}}
    firing: {mode: level}
"""
RULES_V2 = RULES_V1.replace("min: 2", "min: 3")


@pytest.fixture(scope="module")
def spine_lake(
    dashcam_clip_dir: LandingClips,
    detector_weights: Path,
    roadlens_home_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ParquetLake, list[str], Path]]:
    """The spine materialized for both clips; yields the lake, video ids and a tmp folder."""
    tmp = tmp_path_factory.mktemp("ode-assets")
    lake = ParquetLake(tmp / "lake")
    landing = dashcam_clip_dir.landing
    records = [probe_video_record(p, landing_root=landing) for p in dashcam_clip_dir.paths]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROADLENS_HOME", str(roadlens_home_dir))
        mp.setenv("YOLO_OFFLINE", "1")
        result = dg.materialize(
            list(SPINE),
            partition_key=CAPTURE_DATE,
            resources={
                "lake": LakeResource(root=str(lake.root)),
                "sources": SourcesResource(landing_dir=str(landing)),
                "detector": DetectorResource(weights=str(detector_weights), conf=0.01),
                "sinks": SinksResource(),
            },
            run_config=batch_run_config(
                [r.video_id for r in records], [r.path for r in records], assets=SPINE_ASSETS
            ),
        )
        assert result.success
        yield lake, [r.video_id for r in records], tmp


def _run_ode(
    lake: ParquetLake,
    rules: Path,
    *,
    force: bool = False,
    sources: SourcesResource | None = None,
) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        list(ODE_ASSETS),
        partition_key=CAPTURE_DATE,
        resources={
            "lake": LakeResource(root=str(lake.root)),
            "rules": RulesResource(path=str(rules)),
            "sources": sources or SourcesResource(),
            "sinks": SinksResource(),
        },
        run_config=batch_run_config([], force=force, assets=ODE_ASSET_NAMES),
    )
    assert result.success
    return result


def _meta(result: dg.ExecuteInProcessResult, node: str) -> dict:
    mats = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mats[-1].metadata.items()}


def test_events_carry_the_rule_and_model_hashes_and_skip_when_current(
    spine_lake: tuple[ParquetLake, list[str], Path],
) -> None:
    lake, video_ids, tmp = spine_lake
    rules_path = tmp / "rules-v1.yaml"
    rules_path.write_text(textwrap.dedent(RULES_V1))
    expected_hash = load_rules(rules_path).sha256()

    first = _meta(_run_ode(lake, rules_path), "events")
    assert first["videos"] == len(video_ids)
    assert first["rule_set_sha256"] == expected_hash
    events = lake.read_date(EVENTS_TABLE, CAPTURE_DATE)
    assert events is not None and events.num_rows == first["rows"] > 0
    assert set(events.column("rule_set_sha256").to_pylist()) == {expected_hash}
    detections = lake.read_date("detections", CAPTURE_DATE)
    assert set(events.column("model_sha256").to_pylist()) == set(
        detections.column("model_sha256").to_pylist()
    )
    # Edge firing: "cars-seen" fires once per run of frames with a car, never more often
    # than frames with a car exist.
    car_frames = detections.filter(pc.equal(detections["class_name"], "car"))
    n_car_frames = len(
        set(
            zip(
                car_frames["video_id"].to_pylist(),
                car_frames["frame_number"].to_pylist(),
                strict=True,
            )
        )
    )
    cars_seen = events.filter(pc.equal(events["rule_id"], "cars-seen")).num_rows
    assert 1 <= cars_seen <= n_car_frames

    # The same rules again: nothing to do.
    again = _meta(_run_ode(lake, rules_path), "events")
    assert again["videos"] == 0
    assert sorted(again["videos_current"]) == sorted(video_ids)


def test_changing_one_rule_re_evaluates_and_changes_only_that_rule(
    spine_lake: tuple[ParquetLake, list[str], Path],
) -> None:
    lake, video_ids, tmp = spine_lake
    v1, v2 = tmp / "a-v1.yaml", tmp / "a-v2.yaml"
    v1.write_text(textwrap.dedent(RULES_V1))
    v2.write_text(textwrap.dedent(RULES_V2))
    _run_ode(lake, v1, force=True)
    before = lake.read_date(EVENTS_TABLE, CAPTURE_DATE)
    rerun = _meta(_run_ode(lake, v2), "events")
    assert rerun["videos"] == len(video_ids)  # the rule hash changed, so every video re-ran
    after = lake.read_date(EVENTS_TABLE, CAPTURE_DATE)

    def rule_rows(table, rule_id):
        return table.filter(pc.equal(table["rule_id"], rule_id))

    assert (
        rule_rows(after, "cars-seen")["event_id"].to_pylist()
        == rule_rows(before, "cars-seen")["event_id"].to_pylist()
    )
    busy_before = rule_rows(before, "busy-frame").num_rows
    busy_after = rule_rows(after, "busy-frame").num_rows
    assert busy_after <= busy_before  # min 3 vehicles is stricter than min 2


def test_stats_sum_to_the_events_and_heatmaps_are_written(
    spine_lake: tuple[ParquetLake, list[str], Path],
) -> None:
    lake, video_ids, tmp = spine_lake
    rules_path = tmp / "rules-stats.yaml"
    rules_path.write_text(textwrap.dedent(RULES_V1))
    result = _run_ode(lake, rules_path, force=True)
    events = lake.read_date(EVENTS_TABLE, CAPTURE_DATE)
    stats = lake.read_date(EVENT_STATS_TABLE, CAPTURE_DATE)
    assert stats is not None
    for minutes in (5, 15, 60):
        per_bin = stats.filter(pc.equal(stats["bin_minutes"], minutes))
        assert pc.sum(per_bin["count"]).as_py() == events.num_rows
    maps = lake.read_date(HEATMAPS_TABLE, CAPTURE_DATE)
    assert maps is not None
    assert {"dwell", "tracks", "geo-dwell"} <= set(maps.column("heatmap_id").to_pylist())
    meta = _meta(result, "heatmaps")
    assert Path(str(meta["png"])).exists()
    record_png = Path(str(meta["png"]))
    assert record_png.suffix == ".png" and record_png.stat().st_size > 1000
    assert record_png.parent.name in video_ids
    record = _record(lake, record_png.parent.name)
    assert lake.heatmap_png(record.capture_date, record.video_id, "dwell") == record_png


def _record(lake: ParquetLake, video_id: str):
    from roadlens.pipeline import registered_videos

    return next(r for r in registered_videos(lake, CAPTURE_DATE) if r.video_id == video_id)


def test_an_invalid_rule_file_fails_the_step_naming_rule_and_field(
    spine_lake: tuple[ParquetLake, list[str], Path],
) -> None:
    lake, _, tmp = spine_lake
    bad = tmp / "bad.yaml"
    bad.write_text(RULES_V1.replace("classes: [car]}", "classes: [car], confidence_min: 2}"))
    result = dg.materialize(
        [ODE_ASSETS[0]],
        partition_key=CAPTURE_DATE,
        resources={
            "lake": LakeResource(root=str(lake.root)),
            "rules": RulesResource(path=str(bad)),
            "sinks": SinksResource(),
            "sources": SourcesResource(),
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = str(failure.step_failure_data.error)
    assert "cars-seen" in text and "confidence_min" in text


def test_events_carry_their_captured_frames_once_per_event(
    spine_lake: tuple[ParquetLake, list[str], Path],
) -> None:
    lake, _, tmp = spine_lake
    rules_path = tmp / "rules-capture.yaml"
    rules_path.write_text(
        textwrap.dedent(RULES_V1).replace(
            "    firing: {mode: edge}",
            "    firing: {mode: edge}\n    capture: {frame: true, crop: true}",
        )
    )
    _run_ode(lake, rules_path, force=True)
    media = lake.read_date(EVENTS_TABLE, CAPTURE_DATE)
    assert media is not None
    captured = media.filter(pc.equal(media["rule_id"], "cars-seen"))
    paths = [p for row in captured["media_paths"].to_pylist() for p in row]
    assert len(paths) == 2 * captured.num_rows > 0  # a frame and a crop per event
    assert all(Path(p).exists() and Path(p).stat().st_size > 0 for p in paths)
    # Other rules asked for nothing.
    others = media.filter(pc.not_equal(media["rule_id"], "cars-seen"))
    assert all(not row for row in others["media_paths"].to_pylist())
    # A re-run overwrites the same files: no new ones appear.
    media_root = lake.root / "media" / "events"
    before = sorted(media_root.rglob("*.jpg"))
    _run_ode(lake, rules_path, force=True)
    assert sorted(media_root.rglob("*.jpg")) == before


def test_a_source_can_bring_its_own_rule_file(
    spine_lake: tuple[ParquetLake, list[str], Path], dashcam_clip_dir: LandingClips
) -> None:
    lake, video_ids, tmp = spine_lake
    deployment, own = tmp / "deploy.yaml", tmp / "veh-01-rules.yaml"
    deployment.write_text(textwrap.dedent(RULES_V1))
    own.write_text(textwrap.dedent(RULES_V2))
    sources_yaml = tmp / "sources.yaml"
    sources_yaml.write_text(
        "sources:\n  - source_id: veh-01\n    match: 'veh-01/**'\n    rules: veh-01-rules.yaml\n"
    )
    sources = SourcesResource(
        landing_dir=str(dashcam_clip_dir.landing), sources_yaml=str(sources_yaml)
    )
    meta = _meta(_run_ode(lake, deployment, force=True, sources=sources), "events")
    own_hash = load_rules(own).sha256()
    assert meta["rule_sets_used"] == {own_hash: len(video_ids)}
    events = lake.read_date(EVENTS_TABLE, CAPTURE_DATE)
    assert set(events.column("rule_set_sha256").to_pylist()) == {own_hash}
