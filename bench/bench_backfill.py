"""Backfills at scale: 10,000 partitions, a backfill over all of them, and the cost per partition.

What a fleet team does when it re-processes history: register the partitions, ask Dagster
for a backfill over all of them, and let the backfill daemon turn it into runs. This
script measures each step on a throw-away SQLite instance (the embedded default) and, when
a server answers at ``--postgres-url`` (default ``ROADLENS_BENCH_POSTGRES_URL`` or the local
server), on a fresh PostgreSQL database (the production storage), then the orchestration
overhead per partition of running a slice of a near-no-op asset against calling the same
function directly:

1. register 10,000 dynamic partitions (one per video id, ``instance.add_dynamic_partitions``)
   and read them back;
2. create a backfill over all 10,000 video partitions, and over 10,000 daily partitions
   (27.4 years of capture dates), through the same API the UI and GraphQL use
   (``PartitionBackfill.from_asset_partitions`` + ``instance.add_backfill``);
3. the backfill daemon (``execute_backfill_iteration``) over ``--queue-slice`` of those
   partitions with a ``QueuedRunCoordinator``: the daemon's own cost of turning partitions
   into queued runs, without executing them;
4. a slice of ``--slice`` partitions executed: the function called directly, one in-process
   run per partition (``execute_in_process``), one run for the whole slice
   (``BackfillPolicy.single_run``, a partition-range run), the daemon path end to end
   (backfill iterations with runs launched synchronously in-process), and ``--mp-slice``
   partitions with the multiprocess executor (a subprocess per step, as ``dagster dev``
   runs them).

Overhead per partition = (Dagster seconds - direct seconds) / partitions.

Why dynamic per-video partitions at all, when the platform partitions by capture date
(DESIGN.md)? Because that is what a user reaching for 10,000 partitions would try first;
the figures show what it costs and why ``capture_date`` stays the partition (see
``docs/scale_out.md``).

Usage:
    .venv/bin/python bench/bench_backfill.py [--partitions 10000] [--slice 50] [--mp-slice 10]
        [--queue-slice 200] [--rounds 3] [--postgres-url URL] [--json out.json]
"""

import argparse
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_backfill_id
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.backfill import execute_backfill_iteration

from bench.common import Method, format_spread, interleave
from roadlens.ids import video_id_for

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
LOCATION_NAME = "bench_backfill"

VIDEO_PARTITIONS = dg.DynamicPartitionsDefinition(name="bench_video_ids")
"""One partition per video id: the per-video layout whose cost this script measures."""

DAILY_END = date(2026, 1, 1)
DAILY_10K = dg.DailyPartitionsDefinition(
    start_date=(DAILY_END - timedelta(days=10_000)).isoformat(),
    end_date=DAILY_END.isoformat(),
    timezone="UTC",
)
"""Exactly 10,000 capture dates (1998-08-16 up to 2025-12-31), the platform's real layout."""

SYNC_LAUNCHER = {
    "module": "dagster._core.launcher.sync_in_memory_run_launcher",
    "class": "SyncInMemoryRunLauncher",
}
DEFAULT_COORDINATOR = {
    "module": "dagster._core.run_coordinator",
    "class": "DefaultRunCoordinator",
}
QUEUED_COORDINATOR = {
    "module": "dagster._core.run_coordinator",
    "class": "QueuedRunCoordinator",
}


def digest(video_id: str) -> str:
    """The near-no-op unit of work: 16 hex digits of a SHA-256 of the partition key."""
    return hashlib.sha256(video_id.encode()).hexdigest()[:16]


@dg.asset(partitions_def=VIDEO_PARTITIONS)
def video_digest(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """One run per video partition (the default multi-run backfill policy)."""
    return dg.MaterializeResult(metadata={"digest": digest(context.partition_key)})


@dg.asset(partitions_def=VIDEO_PARTITIONS, backfill_policy=dg.BackfillPolicy.single_run())
def video_digest_batch(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """One run for a whole range of video partitions (a single-run backfill)."""
    digests = [digest(key) for key in context.partition_keys]
    return dg.MaterializeResult(metadata={"videos": len(digests)})


@dg.asset(partitions_def=DAILY_10K)
def date_digest(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """The same work over capture dates."""
    return dg.MaterializeResult(metadata={"digest": digest(context.partition_key)})


bench_defs = dg.Definitions(
    assets=[video_digest, video_digest_batch, date_digest],
    jobs=[
        dg.define_asset_job(
            "video_digest_job", selection=[video_digest], executor_def=dg.in_process_executor
        ),
        dg.define_asset_job(
            "video_digest_mp_job", selection=[video_digest], executor_def=dg.multiprocess_executor
        ),
        dg.define_asset_job(
            "video_digest_batch_job",
            selection=[video_digest_batch],
            executor_def=dg.in_process_executor,
        ),
    ],
    # Runs that the backfill daemon launches (the implicit asset job) execute in process.
    executor=dg.in_process_executor,
)


def video_digest_mp_job() -> dg.JobDefinition:
    """The multiprocess job, resolved: the target of ``dg.reconstructable``."""
    return bench_defs.resolve_job_def("video_digest_mp_job")


def bench_video_ids(count: int, *, vehicles: int = 40) -> list[str]:
    """``count`` video ids as the registry makes them: ``<vehicle>--drive-<n>``."""
    return [video_id_for(f"veh-{i % vehicles:02d}", f"drive {i:05d}") for i in range(count)]


def register_videos(instance: dg.DagsterInstance, video_ids: Sequence[str]) -> None:
    """Add one dynamic partition per video id (idempotent: known keys are skipped)."""
    instance.add_dynamic_partitions(VIDEO_PARTITIONS.name, list(video_ids))


@contextmanager
def backfill_workspace(instance: dg.DagsterInstance) -> Iterator[WorkspaceProcessContext]:
    """A daemon workspace holding :data:`bench_defs` in process (no gRPC server)."""
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name="bench.bench_backfill",
            attribute="bench_defs",
            working_directory=str(REPO),
        ),
        location_name=LOCATION_NAME,
    )
    with create_test_daemon_workspace_context(
        InProcessWorkspaceLoadTarget(origin), instance
    ) as context:
        yield context


def create_asset_backfill(
    context: WorkspaceProcessContext,
    asset_key: dg.AssetKey,
    partition_keys: Sequence[str],
    *,
    title: str = "bench backfill",
) -> str:
    """Record a backfill of ``partition_keys`` of ``asset_key``, as the UI does; return its id."""
    instance = context.instance
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=context.create_request_context().asset_graph,
        partition_names=list(partition_keys),
        asset_selection=[asset_key],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=None,
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def backfill_run_count(instance: dg.DagsterInstance, backfill_id: str) -> int:
    """How many runs the backfill daemon has created for ``backfill_id`` so far."""
    return instance.get_runs_count(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))


def run_backfill_iterations(
    context: WorkspaceProcessContext,
    backfill_id: str,
    *,
    until: Callable[[PartitionBackfill], bool] | None = None,
    max_iterations: int = 20,
) -> tuple[PartitionBackfill, int]:
    """Run the backfill daemon's iteration until ``until(backfill)`` holds.

    By default, until the backfill leaves REQUESTED (completed, failed or canceled).
    Returns the backfill and the number of iterations it took; raises when an iteration
    reports an error or the condition still fails after ``max_iterations``.
    """
    logger = logging.getLogger("bench_backfill")
    instance = context.instance
    done = until or (lambda b: b.status != BulkActionStatus.REQUESTED)
    for iteration in range(1, max_iterations + 1):
        errors = [e for e in execute_backfill_iteration(context, logger) if e is not None]
        if errors:
            raise RuntimeError(f"backfill iteration failed: {errors[0].to_string()}")
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        if done(backfill):
            return backfill, iteration
    raise RuntimeError(f"backfill {backfill_id} not done after {max_iterations} iterations")


# --- the benchmark --------------------------------------------------------------------------


@dataclass
class Row:
    """One measured line: what, how many partitions, wall seconds, and per-partition figures."""

    name: str
    partitions: int
    seconds: float
    ms_per_partition: float
    overhead_ms_per_partition: float | None = None
    ratio_vs_direct: float | None = None
    spread: str = ""


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def _row(name: str, count: int, seconds: float, direct: float | None = None) -> Row:
    row = Row(name, count, seconds, 1000 * seconds / count)
    if direct is not None:
        row.overhead_ms_per_partition = 1000 * (seconds - direct * count) / count
        row.ratio_vs_direct = seconds / (direct * count) if direct > 0 else None
    return row


@contextmanager
def _instance(home: Path, **overrides: Any) -> Iterator[dg.DagsterInstance]:
    home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home), overrides=overrides or None) as instance:
        yield instance


@contextmanager
def _postgres_database(url: str) -> Iterator[str]:
    """A fresh database on the server at ``url`` (psycopg2 URL for dagster-postgres), dropped after."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"bench_backfill_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        parts = urlsplit(url)
        yield urlunsplit(parts._replace(scheme="postgresql+psycopg2", path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scheduling_rows(
    instance: dg.DagsterInstance, ids: Sequence[str], queue_slice: int, storage: str
) -> list[Row]:
    """Steps 1-3 on ``instance``: register, read back, create backfills, queue runs."""
    rows: list[Row] = []
    count = len(ids)
    seconds, _ = _timed(lambda: register_videos(instance, ids))
    rows.append(_row(f"[{storage}] register dynamic partitions", count, seconds))
    seconds, keys = _timed(lambda: instance.get_dynamic_partitions(VIDEO_PARTITIONS.name))
    assert list(keys) == list(ids)
    rows.append(_row(f"[{storage}] read them back", count, seconds))
    seconds, _ = _timed(lambda: register_videos(instance, ids))
    rows.append(_row(f"[{storage}] register again (all known: no-op)", count, seconds))

    with backfill_workspace(instance) as context:
        seconds, _ = _timed(lambda: create_asset_backfill(context, video_digest.key, ids))
        rows.append(_row(f"[{storage}] create backfill, video partitions", count, seconds))
        dates = DAILY_10K.get_partition_keys()
        seconds, _ = _timed(lambda: create_asset_backfill(context, date_digest.key, dates))
        rows.append(_row(f"[{storage}] create backfill, daily partitions", len(dates), seconds))
        # The daemon works on every REQUESTED backfill: cancel the big ones, then time
        # the daemon turning ``queue_slice`` partitions into queued runs.
        for backfill in instance.get_backfills():
            instance.update_backfill(backfill.with_status(BulkActionStatus.CANCELED))
        backfill_id = create_asset_backfill(context, video_digest.key, ids[:queue_slice])
        seconds, (_, iterations) = _timed(
            lambda: run_backfill_iterations(
                context,
                backfill_id,
                until=lambda b: backfill_run_count(instance, b.backfill_id) >= queue_slice,
            )
        )
        assert backfill_run_count(instance, backfill_id) == queue_slice
        rows.append(_row(f"[{storage}] daemon: partitions -> queued runs", queue_slice, seconds))
        rows[-1].name += f" ({iterations} it.)"
    return rows


def run_bench(
    *,
    partitions: int,
    slice_size: int,
    mp_slice: int,
    queue_slice: int,
    workdir: Path,
    rounds: int = 3,
    postgres_url: str | None = None,
) -> list[Row]:
    """Measure every step; return the rows of the report (see the module docstring)."""
    rows: list[Row] = []
    ids = bench_video_ids(partitions)
    video_slice = ids[:slice_size]
    warm_key = ids[-1]  # outside every timed slice

    # Direct: the same function over the slice, best of 5 (it is microseconds).
    direct_total = min(_timed(lambda: [digest(k) for k in video_slice])[0] for _ in range(5))
    direct = direct_total / slice_size
    rows.append(_row("direct call of the asset's work", slice_size, direct_total))

    # 1-3: registration, backfill creation, the daemon queueing runs (not running them).
    with _instance(workdir / "queued", run_coordinator=QUEUED_COORDINATOR) as instance:
        rows += scheduling_rows(instance, ids, queue_slice, "sqlite")
    if postgres_url:
        with (
            _postgres_database(postgres_url) as url,
            _instance(
                workdir / "postgres",
                run_coordinator=QUEUED_COORDINATOR,
                storage={"postgres": {"postgres_url": url}},
            ) as instance,
        ):
            rows += scheduling_rows(instance, ids, queue_slice, "postgres")

    # 4: executing a slice. Each method is warmed up once on a partition outside the slice,
    # then the methods run in interleaved rounds (machine drift hits all alike); medians.
    with ExitStack() as stack:
        inproc = stack.enter_context(_instance(workdir / "inproc"))
        daemon = stack.enter_context(
            _instance(
                workdir / "daemon",
                run_coordinator=DEFAULT_COORDINATOR,
                run_launcher=SYNC_LAUNCHER,
            )
        )
        multi = stack.enter_context(_instance(workdir / "mp"))
        for instance in (inproc, daemon, multi):
            register_videos(instance, ids)
        workspace = stack.enter_context(backfill_workspace(daemon))
        job = bench_defs.resolve_job_def("video_digest_job")
        batch_job = bench_defs.resolve_job_def("video_digest_batch_job")
        recon = dg.reconstructable(video_digest_mp_job)

        def per_partition_runs(keys: Sequence[str]) -> None:
            for key in keys:
                assert job.execute_in_process(instance=inproc, partition_key=key).success

        def ranged_run(keys: Sequence[str]) -> None:
            tags = {
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            }
            assert batch_job.execute_in_process(instance=inproc, tags=tags).success

        def daemon_backfill(keys: Sequence[str]) -> None:
            backfill_id = create_asset_backfill(workspace, video_digest.key, keys)
            backfill, _ = run_backfill_iterations(workspace, backfill_id)
            assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, backfill.status

        def multiprocess_runs(keys: Sequence[str]) -> None:
            for key in keys:
                tags = {"dagster/partition": key}
                with dg.execute_job(recon, instance=multi, tags=tags) as result:
                    assert result.success

        plans: list[tuple[str, Callable[[Sequence[str]], None], Sequence[str]]] = [
            ("in-process run per partition", per_partition_runs, video_slice),
            ("one in-process run for the slice (single_run)", ranged_run, video_slice),
            ("backfill daemon end to end (runs in process)", daemon_backfill, video_slice),
        ]
        if mp_slice > 0:
            plans.append(("multiprocess run per partition", multiprocess_runs, ids[:mp_slice]))
        for _, fn, _ in plans:
            fn([warm_key])
        timings = interleave(
            [Method(name, partial(fn, keys)) for name, fn, keys in plans],
            rounds,
            warm_up=False,
        )
        for name, _, keys in plans:
            timing = timings[name]
            rows.append(_row(name, len(keys), timing.median, direct))
            rows[-1].spread = format_spread(timing)
    return rows


def _reachable_postgres(url: str) -> str | None:
    """``url`` when a PostgreSQL server answers there, else None (the rows are skipped)."""
    if not url:
        return None
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # no server: report SQLite only
        print(f"PostgreSQL rows skipped: {exc}", file=sys.stderr)
        return None
    return url


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(rows: list[Row]) -> None:
    cores = os.cpu_count()
    print(
        f"# bench_backfill: dagster {dg.__version__}, Python {platform.python_version()}, "
        f"{cores} cores"
    )
    header = (
        f"{'step':58} {'parts':>6} {'seconds':>9} {'ms/part':>9} {'overhead':>9} "
        f"{'x direct':>10} {'spread':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.name:58} {r.partitions:>6} {r.seconds:>9.3f} {r.ms_per_partition:>9.3f} "
            f"{_fmt(r.overhead_ms_per_partition, '9.2f'):>9} "
            f"{_fmt(r.ratio_vs_direct, '10.0f'):>10} {r.spread:>10}"
        )
    print(
        "overhead = (Dagster seconds - direct seconds) / partitions, in ms; execution rows are "
        "medians of interleaved rounds, spread = min-max / median"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=10_000)
    parser.add_argument("--slice", type=int, default=50, help="partitions executed per method")
    parser.add_argument("--mp-slice", type=int, default=10, help="partitions run multiprocess")
    parser.add_argument(
        "--queue-slice", type=int, default=200, help="partitions the timed daemon queues as runs"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of the execution rows")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROADLENS_BENCH_POSTGRES_URL", DEFAULT_PG),
        help="server for the PostgreSQL instance-storage rows ('' to skip)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    # Dagster re-logs Python warnings (beta APIs, an un-awaited coroutine at run teardown)
    # on every run; they would drown the report.
    warnings.simplefilter("ignore")
    logging.getLogger("dagster").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        rows = run_bench(
            partitions=args.partitions,
            slice_size=args.slice,
            mp_slice=args.mp_slice,
            queue_slice=args.queue_slice,
            workdir=Path(tmp),
            rounds=args.rounds,
            postgres_url=_reachable_postgres(args.postgres_url),
        )
    print_report(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
