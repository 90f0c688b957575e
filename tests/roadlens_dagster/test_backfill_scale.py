"""Backfills at scale: 10,000 registered partitions and a slice backfilled through the daemon path.

The workload is ``bench/bench_backfill.py``'s: a near-no-op asset partitioned by one
dynamic partition per video id. The tests register 10,000 video ids in a throw-away
SQLite instance, create asset backfills the way the UI does, and drive them with the
backfill daemon's own iteration (``execute_backfill_iteration``) with runs launched
synchronously in process, so no daemon or webserver has to be running. They check that
every partition exists, that a backfill records its whole target without creating runs
up front, and that a slice's materializations are recorded exactly once per partition,
for both the default one-run-per-partition policy and ``BackfillPolicy.single_run``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.workspace.context import WorkspaceProcessContext

from bench.bench_backfill import (
    DAILY_10K,
    DEFAULT_COORDINATOR,
    SYNC_LAUNCHER,
    VIDEO_PARTITIONS,
    backfill_run_count,
    backfill_workspace,
    bench_video_ids,
    create_asset_backfill,
    date_digest,
    digest,
    register_videos,
    run_backfill_iterations,
    video_digest,
    video_digest_batch,
)

pytestmark = pytest.mark.slow

PARTITIONS = 10_000
SLICE = slice(5_000, 5_020)  # 20 partitions from the middle of the registry


@pytest.fixture(scope="module")
def video_ids() -> list[str]:
    ids = bench_video_ids(PARTITIONS)
    assert len(set(ids)) == PARTITIONS
    return ids


@pytest.fixture
def instance(tmp_path: Path, video_ids: list[str]) -> Iterator[dg.DagsterInstance]:
    """A SQLite instance whose runs execute in process, as soon as they are submitted."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(
        temp_dir=str(home),
        overrides={"run_coordinator": DEFAULT_COORDINATOR, "run_launcher": SYNC_LAUNCHER},
    ) as instance:
        register_videos(instance, video_ids)
        yield instance


@pytest.fixture
def workspace(instance: dg.DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    with backfill_workspace(instance) as context:
        yield context


def _materialized_partitions(instance: dg.DagsterInstance, key: dg.AssetKey) -> Counter[str]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=PARTITIONS
    ).records
    return Counter(r.partition_key for r in records if r.partition_key is not None)


def test_ten_thousand_partitions_are_registered(
    instance: dg.DagsterInstance, video_ids: list[str]
) -> None:
    assert instance.get_dynamic_partitions(VIDEO_PARTITIONS.name) == video_ids
    keys = VIDEO_PARTITIONS.get_partition_keys(dynamic_partitions_store=instance)
    assert len(keys) == PARTITIONS
    assert instance.has_dynamic_partition(VIDEO_PARTITIONS.name, video_ids[-1])
    assert not instance.has_dynamic_partition(VIDEO_PARTITIONS.name, "veh-99--not-registered")
    # Registering again adds nothing: known ids are skipped.
    register_videos(instance, video_ids[:100])
    assert len(instance.get_dynamic_partitions(VIDEO_PARTITIONS.name)) == PARTITIONS


def test_a_backfill_over_every_partition_records_its_target_without_runs(
    workspace: WorkspaceProcessContext, video_ids: list[str]
) -> None:
    instance = workspace.instance
    videos_id = create_asset_backfill(workspace, video_digest.key, video_ids)
    dates = DAILY_10K.get_partition_keys()
    assert len(dates) == PARTITIONS
    dates_id = create_asset_backfill(workspace, date_digest.key, dates)

    for backfill_id, expected in ((videos_id, video_ids), (dates_id, dates)):
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None and backfill.status == BulkActionStatus.REQUESTED
        data = backfill.asset_backfill_data
        assert data is not None
        target = data.target_subset
        assert target.num_partitions_and_non_partitioned_assets == PARTITIONS
        (asset_key,) = target.asset_keys
        assert set(target.get_partitions_subset(asset_key).get_partition_keys()) == set(expected)
        assert backfill_run_count(instance, backfill_id) == 0
    assert instance.get_runs_count() == 0


def test_a_slice_is_materialized_exactly_once_per_partition(
    workspace: WorkspaceProcessContext, video_ids: list[str]
) -> None:
    instance = workspace.instance
    wanted = video_ids[SLICE]
    backfill_id = create_asset_backfill(workspace, video_digest.key, wanted)

    backfill, _ = run_backfill_iterations(workspace, backfill_id)

    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert sorted(r.tags["dagster/partition"] for r in runs) == sorted(wanted)
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert _materialized_partitions(instance, video_digest.key) == Counter(wanted)
    # Each partition's metadata is its own work's result.
    for key in wanted[:3]:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=video_digest.key, asset_partitions=[key]), limit=2
        ).records
        assert len(records) == 1
        materialization = records[0].asset_materialization
        assert materialization is not None
        assert materialization.metadata["digest"].value == digest(key)

    # More daemon iterations over a finished backfill change nothing.
    run_backfill_iterations(workspace, backfill_id, until=lambda b: True, max_iterations=2)
    assert backfill_run_count(instance, backfill_id) == len(wanted)
    assert _materialized_partitions(instance, video_digest.key) == Counter(wanted)


def test_a_single_run_backfill_covers_the_slice_in_one_run(
    workspace: WorkspaceProcessContext, video_ids: list[str]
) -> None:
    instance = workspace.instance
    wanted = video_ids[SLICE]
    backfill_id = create_asset_backfill(workspace, video_digest_batch.key, wanted)

    backfill, _ = run_backfill_iterations(workspace, backfill_id)

    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
    (run,) = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert run.tags["dagster/asset_partition_range_start"] == wanted[0]
    assert run.tags["dagster/asset_partition_range_end"] == wanted[-1]
    assert _materialized_partitions(instance, video_digest_batch.key) == Counter(wanted)
