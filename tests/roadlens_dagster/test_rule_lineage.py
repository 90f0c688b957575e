"""The rule files are lineage: editing one marks the events stale, and only them.

``rule_files`` is an observable source upstream of ``events``; the sensor observes it
when the files' hash changes. No video is needed: the lake is empty, so ``events``
materializes with zero videos and still records the rule version it read.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from roadlens_dagster.assets.batch import batch_run_config
from roadlens_dagster.assets.jobs_config import ODE_ASSET_NAMES
from roadlens_dagster.assets.ode import ODE_ASSETS, rule_files
from roadlens_dagster.assets.spine import SPINE
from roadlens_dagster.orchestration.partitions import capture_date
from roadlens_dagster.orchestration.sensors import rule_files_job, rule_files_sensor
from roadlens_dagster.resources import (
    DetectorResource,
    LakeResource,
    SinksResource,
    SourcesResource,
)
from roadlens_dagster.resources.rules import RulesResource

RULES = """\
version: 1
rules:
  - id: cars
    name: Cars
    criteria: {classes: [car]}
    trigger: {occurrence: {}}
"""
DATE = "2026-05-04"
INPUT_TAG = "dagster/input_data_version/rule_files"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[dg.Definitions, dict, Path]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    resources = {
        "detector": DetectorResource(),
        "lake": LakeResource(root=str(tmp_path / "lake")),
        "rules": RulesResource(path=str(rules)),
        "sources": SourcesResource(landing_dir=str(tmp_path / "landing")),
        "sinks": SinksResource(),
    }
    ode_job = dg.define_asset_job(
        "ode", selection=list(ODE_ASSET_NAMES), partitions_def=capture_date
    )
    defs = dg.Definitions(
        assets=[*SPINE, rule_files, *ODE_ASSETS],
        jobs=[rule_files_job, ode_job],
        sensors=[rule_files_sensor],
        resources=resources,
    )
    return defs, resources, rules


def _tick(instance: dg.DagsterInstance, resources: dict, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    return rule_files_sensor(context)


def _observed(instance: dg.DagsterInstance) -> str:
    record = instance.get_latest_data_version_record(dg.AssetKey("rule_files"))
    assert record is not None
    return record.asset_observation.tags["dagster/data_version"]


def test_editing_a_rule_changes_the_observed_version_and_leaves_events_behind(
    setup: tuple[dg.Definitions, dict, Path],
) -> None:
    defs, resources, rules = setup
    with dg.instance_for_test() as instance:
        first = _tick(instance, resources, None)
        assert len(first.run_requests or []) == 1
        assert defs.resolve_job_def("rule_files_job").execute_in_process(instance=instance).success
        v1 = _observed(instance)
        assert v1 == first.cursor

        run = defs.resolve_job_def("ode").execute_in_process(
            instance=instance,
            partition_key=DATE,
            run_config=batch_run_config([], assets=ODE_ASSET_NAMES),
        )
        assert run.success
        events = instance.get_latest_materialization_event(dg.AssetKey("events"))
        assert events is not None
        # The events record the rule version they were computed from...
        assert events.asset_materialization.tags[INPUT_TAG] == v1
        # ...and nothing upstream of the events depends on the rules.
        detections = defs.resolve_asset_graph().get(dg.AssetKey("detections"))
        assert dg.AssetKey("rule_files") not in detections.parent_keys

        # Unchanged files: the sensor requests nothing.
        assert not _tick(instance, resources, first.cursor).run_requests

        rules.write_text(RULES.replace("classes: [car]", "classes: [car, truck]"))
        second = _tick(instance, resources, first.cursor)
        assert len(second.run_requests or []) == 1 and second.cursor != first.cursor
        assert defs.resolve_job_def("rule_files_job").execute_in_process(instance=instance).success
        v2 = _observed(instance)
        # A newer rule version than the one the events were computed from: Dagster shows
        # events (and what reads it) as stale for this partition.
        assert v2 != v1 == events.asset_materialization.tags[INPUT_TAG]


def test_an_invalid_edit_is_reported_and_not_observed(
    setup: tuple[dg.Definitions, dict, Path],
) -> None:
    _, resources, rules = setup
    with dg.instance_for_test() as instance:
        good = _tick(instance, resources, None)
        rules.write_text(RULES.replace("occurrence: {}", "occurrence: {bogus: 1}"))
        bad = _tick(instance, resources, good.cursor)
        assert not bad.run_requests and bad.cursor is None  # the last good version stays
        message = bad.skip_reason.skip_message if bad.skip_reason else ""
        assert "rule 'cars'" in message and "trigger.occurrence.bogus" in message
