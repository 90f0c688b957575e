"""The code location loads and wires assets, job, schedule and sensor as documented."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from roadlens_dagster.orchestration.definitions import defs
from roadlens_dagster.orchestration.partitions import capture_date

SPINE_KEYS = {"videos", "frames", "raw_detections", "detections"}
DETECTION_SINK_KEYS = {"pg_detections", "mongo_detections", "kafka_detections", "file_detections"}
EVENT_SINK_KEYS = {
    "pg_events",
    "mongo_events",
    "kafka_events",
    "mqtt_events",
    "amqp_events",
    "file_events",
}
SINK_KEYS = DETECTION_SINK_KEYS | EVENT_SINK_KEYS
ODE_KEYS = {"events", "event_stats", "heatmaps"}


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_keys_groups_and_lineage() -> None:
    specs = {
        spec.key.to_user_string(): spec
        for spec in defs.resolve_all_asset_specs()
        if spec.key.to_user_string() != "rule_files"  # the observable source, checked below
    }
    assert set(specs) == SPINE_KEYS | ODE_KEYS | SINK_KEYS
    groups = {key: spec.group_name for key, spec in specs.items()}
    assert groups == {
        **dict.fromkeys(SPINE_KEYS, "spine"),
        **dict.fromkeys(ODE_KEYS, "ode"),
        **dict.fromkeys(SINK_KEYS, "sinks"),
    }
    upstream = {
        key: {d.asset_key.to_user_string() for d in spec.deps} for key, spec in specs.items()
    }
    assert upstream == {
        "videos": set(),
        "frames": {"videos"},
        "raw_detections": {"frames"},
        "detections": {"raw_detections"},
        "events": {"detections", "rule_files"},
        "event_stats": {"events"},
        "heatmaps": {"detections"},
        **{key: {"detections"} for key in DETECTION_SINK_KEYS},
        **{key: {"events"} for key in EVENT_SINK_KEYS},
    }


def test_every_asset_that_writes_the_lake_is_named_like_its_table() -> None:
    """Asset keys, lake tables and sink tables share one name (issue: names that match)."""
    from roadlens.lake import CATALOG, SINK_TABLES

    data_assets = SPINE_KEYS | ODE_KEYS
    assert data_assets <= set(CATALOG)
    for key in SINK_KEYS:
        _, table = key.split("_", 1)
        assert table in data_assets & set(SINK_TABLES), key


def test_sink_assets_retry_with_backoff() -> None:
    for key in SINK_KEYS:
        policy = defs.resolve_assets_def(key).op.retry_policy
        assert policy is not None and policy.max_retries >= 2
        assert policy.backoff == dg.Backoff.EXPONENTIAL


@pytest.mark.parametrize("key", sorted(SPINE_KEYS | ODE_KEYS | SINK_KEYS))
def test_every_asset_is_partitioned_by_daily_capture_date(key: str) -> None:
    spec = next(s for s in defs.resolve_all_asset_specs() if s.key.to_user_string() == key)
    assert spec.partitions_def == capture_date
    assert isinstance(spec.partitions_def, dg.DailyPartitionsDefinition)
    assert spec.partitions_def.timezone == "UTC"
    assert spec.partitions_def.has_partition_key("2026-05-04")


def test_capture_date_includes_today() -> None:
    # end_offset=1: the sensor can run videos captured today.
    before = datetime.now(UTC).date().isoformat()
    last = capture_date.get_last_partition_key()
    assert last in {before, datetime.now(UTC).date().isoformat()}


def test_spine_job_selects_the_spine_the_ode_stage_and_the_sinks() -> None:
    job = defs.resolve_job_def("spine_job")
    assert job.partitions_def == capture_date
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert keys == SPINE_KEYS | ODE_KEYS | SINK_KEYS


def test_nightly_schedule_runs_at_two_for_the_previous_day() -> None:
    schedule = defs.get_repository_def().get_schedule_def("nightly_spine_schedule")
    assert schedule.job_name == "spine_job"
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone in (None, "UTC")
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 5, 5, 2, 0, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        )
        result = schedule.evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests or []] == ["2026-05-04"]


def test_landing_sensor_targets_the_spine_job() -> None:
    from roadlens_dagster.orchestration.sensors.landing import sensor_interval_s

    sensor = defs.get_repository_def().get_sensor_def("landing_sensor")
    assert sensor.job_name == "spine_job"
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert {"sources"} <= set(sensor.required_resource_keys)
    assert sensor.minimum_interval_seconds == sensor_interval_s()


@pytest.mark.parametrize("executor", ["in_process", "multiprocess"])
def test_micro_batch_execution_config_is_valid_for_the_spine_job(executor: str) -> None:
    """The sensor's ``execution`` block picks an executor that spine_job really offers."""
    from roadlens_dagster.assets.batch import batch_run_config
    from roadlens_dagster.assets.jobs_config import JOB_ASSET_NAMES
    from roadlens_dagster.orchestration.jobs import microbatch_execution_config

    job = defs.resolve_job_def("spine_job")
    config = {
        **batch_run_config(["veh-01--a"], ["/landing/a.mp4"], assets=JOB_ASSET_NAMES),
        **microbatch_execution_config(executor),  # type: ignore[arg-type]
    }
    resolved = dg.validate_run_config(job, config)
    assert list(resolved["execution"]["multi_or_in_process_executor"]) == [executor]
    # Without the block (the nightly schedule, backfills) the job runs multiprocess.
    plain = dg.validate_run_config(job, batch_run_config([], assets=JOB_ASSET_NAMES))
    assert list(plain["execution"]["multi_or_in_process_executor"]) == ["multiprocess"]


def test_micro_batch_executor_comes_from_the_environment() -> None:
    from roadlens_dagster.orchestration.jobs import MICROBATCH_EXECUTOR_ENV, microbatch_executor

    assert microbatch_executor({}) == "in_process"
    assert microbatch_executor({MICROBATCH_EXECUTOR_ENV: " "}) == "in_process"
    assert microbatch_executor({MICROBATCH_EXECUTOR_ENV: "Multiprocess"}) == "multiprocess"
    assert microbatch_executor({MICROBATCH_EXECUTOR_ENV: "in-process"}) == "in_process"
    with pytest.raises(ValueError, match=MICROBATCH_EXECUTOR_ENV):
        microbatch_executor({MICROBATCH_EXECUTOR_ENV: "celery"})


def test_resources_are_bound() -> None:
    repo = defs.get_repository_def()
    assert {"lake", "sources", "detector", "sinks", "rules"} <= set(repo.get_top_level_resources())


def test_rule_files_are_an_observable_source_upstream_of_the_events_only() -> None:
    graph = defs.resolve_asset_graph()
    key = dg.AssetKey("rule_files")
    node = graph.get(key)
    assert node.is_observable and not node.is_materializable
    downstream = {k.to_user_string() for k in node.child_keys}
    assert downstream == {"events"}
    observe = defs.resolve_job_def("rule_files_job")
    assert [n.name for n in observe.nodes_in_topological_order] == ["rule_files"]
    sensor = defs.get_repository_def().get_sensor_def("rule_files_sensor")
    assert sensor.job_name == "rule_files_job"


def test_quality_checks_guard_the_tables_and_block_the_sinks() -> None:
    job = defs.resolve_job_def("spine_job")
    checks = {k.name: k for k in job.asset_layer.asset_graph.asset_check_keys}
    assert set(checks) == {"frames_valid", "detections_valid", "events_valid", "detections_drift"}
    graph = defs.resolve_asset_graph()
    blocking = {name for name, key in checks.items() if graph.get_check_spec(key).blocking}
    assert blocking == {"detections_valid", "events_valid"}
    assert checks["detections_valid"].asset_key == dg.AssetKey("detections")
    assert checks["events_valid"].asset_key == dg.AssetKey("events")


def test_the_code_location_loads_without_preview_beta_or_deprecation_warnings() -> None:
    """RoadLens silences only the preview features it uses on purpose (roadlens_dagster.previews)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    probe = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    import roadlens_dagster.orchestration.definitions\n"
        "print([f'{w.category.__name__}: {w.message}' for w in seen\n"
        "       if w.category.__name__ in ('PreviewWarning', 'BetaWarning')\n"
        "       or (w.category is DeprecationWarning and 'roadlens' in w.filename)])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_every_sensor_and_schedule_says_what_it_does() -> None:
    repo = defs.get_repository_def()
    described = {d.name: d.description for d in (*repo.sensor_defs, *repo.schedule_defs)}
    assert described and all(len(text or "") > 40 for text in described.values()), described
    assert defs.resolve_job_def("spine_job").partitions_def == capture_date
