"""Scale-out with dagster-celery: steps of one run execute in separate Celery worker processes.

End to end against the local Redis (broker and result backend): the test starts two real
worker processes, each in its own process group and each with one execution slot, one
with plain ``celery -A dagster_celery.app worker`` and one with the documented
``dagster-celery worker start`` wrapper. It runs a job of four independent one-second
assets (``tests/celery_jobs.py``) with :data:`roadlens_dagster.orchestration.executors.roadlens_celery_executor`
against a SQLite-backed, non-ephemeral Dagster instance that the workers open from the
instance ref each task carries. Every step must run in one of the started workers, never
in the test process, and both workers must take part.

Isolation from other users of the same Redis: a separate database number
(``ROADLENS_TEST_REDIS_URL``, default database 13) and a queue name unique to the test,
deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml

from roadlens_dagster.orchestration.definitions import defs
from roadlens_dagster.orchestration.executors import (
    CELERY_BACKEND_ENV,
    CELERY_BROKER_ENV,
    CELERY_QUEUE_ENV,
    DEFAULT_CELERY_BROKER,
    CelerySettings,
    roadlens_celery_executor,
)
from tests.celery_jobs import PROBE_KEYS, celery_probe_job
from tests.conftest import REPO
from tests.services import skip_or_fail, tcp_reachable

BIN = Path(sys.executable).parent
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/13"
WORKER_START_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def redis_url() -> str:
    """A reachable Redis URL for the Celery tests (``ROADLENS_TEST_REDIS_URL``)."""
    url = os.environ.get("ROADLENS_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if not tcp_reachable(host, port):
        skip_or_fail(f"Redis not reachable at {host}:{port}; set ROADLENS_TEST_REDIS_URL")
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=5).ping()
    except redis.RedisError as exc:
        skip_or_fail(f"Redis at {host}:{port} refused the connection: {exc}")
    return url


# --- settings from the environment ---------------------------------------------------------


def test_settings_default_to_local_redis_and_the_dagster_queue() -> None:
    settings = CelerySettings.from_env({})
    assert settings == CelerySettings(DEFAULT_CELERY_BROKER, DEFAULT_CELERY_BROKER, "dagster")


def test_settings_read_the_roadlens_celery_variables() -> None:
    settings = CelerySettings.from_env(
        {
            CELERY_BROKER_ENV: "redis://broker:6379/2",
            CELERY_BACKEND_ENV: "redis://backend:6379/3",
            CELERY_QUEUE_ENV: "gpu",
        }
    )
    assert settings == CelerySettings("redis://broker:6379/2", "redis://backend:6379/3", "gpu")
    config = settings.executor_config()
    assert config["broker"] == "redis://broker:6379/2"
    assert config["backend"] == "redis://backend:6379/3"
    assert config["config_source"]["task_default_queue"] == "gpu"


def test_backend_defaults_to_the_broker() -> None:
    settings = CelerySettings.from_env({CELERY_BROKER_ENV: "redis://broker:6379/5"})
    assert settings.backend == "redis://broker:6379/5"


def _executor_app_args(run_config: dict) -> dict:
    """The Celery app arguments the configured executor would use for ``run_config``."""
    from dagster._core.definitions.executor_definition import ExecutorDefinition
    from dagster._core.executor.init import InitExecutorContext
    from dagster_celery.executor import CeleryExecutor

    job = celery_probe_job()
    executor_def: ExecutorDefinition = job.executor_def
    resolved = executor_def.apply_config_mapping(run_config)
    assert resolved.success, resolved.errors
    with dg.instance_for_test() as instance:
        executor = executor_def.executor_creation_fn(  # type: ignore[misc]
            InitExecutorContext(
                job=dg.reconstructable(celery_probe_job),
                executor_def=executor_def,
                executor_config=resolved.value["config"],
                instance=instance,
            )
        )
    assert isinstance(executor, CeleryExecutor)
    return executor.app_args()


def test_executor_reads_the_environment_at_run_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CELERY_BROKER_ENV, "redis://env-broker:6379/7")
    monkeypatch.delenv(CELERY_BACKEND_ENV, raising=False)
    monkeypatch.setenv(CELERY_QUEUE_ENV, "from-env")
    args = _executor_app_args({"config": {}})
    assert args["broker"] == "redis://env-broker:6379/7"
    assert args["backend"] == "redis://env-broker:6379/7"
    assert args["config_source"].task_default_queue == "from-env"


def test_run_config_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CELERY_BROKER_ENV, "redis://env-broker:6379/7")
    monkeypatch.setenv(CELERY_BACKEND_ENV, "redis://env-backend:6379/8")
    args = _executor_app_args(
        {"config": {"broker": "redis://explicit:6379/1", "queue": "explicit-q"}}
    )
    assert args["broker"] == "redis://explicit:6379/1"
    # An explicit broker keeps results there rather than on the environment's backend.
    assert args["backend"] == "redis://explicit:6379/1"
    assert args["config_source"].task_default_queue == "explicit-q"


def test_spine_job_celery_is_registered_with_the_celery_executor() -> None:
    job = defs.resolve_job_def("spine_job_celery")
    spine = defs.resolve_job_def("spine_job")
    assert job.executor_def.name == roadlens_celery_executor.name == "roadlens_celery"
    assert job.partitions_def == spine.partitions_def
    assert set(job.asset_layer.executable_asset_keys) == set(
        spine.asset_layer.executable_asset_keys
    )


# --- end to end: two real worker processes -------------------------------------------------


@dataclass
class Worker:
    """One Celery worker process group we started; ``pid`` is the process we spawned."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Terminate the whole process group (the CLI wrapper and the celery process)."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        else:
            # The leader exited; make sure nothing of its group lingers.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class CeleryCluster:
    settings: CelerySettings
    dagster_home: Path
    workers: list[Worker]


def _start(cmd: list[str], name: str, env: dict[str, str], log_path: Path) -> Worker:
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    try:
        process = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole in teardown
        )
    finally:
        log.close()
    return Worker(name, process, log_path)


def _wait_until_ready(settings: CelerySettings, workers: list[Worker]) -> None:
    """Ping the workers through the broker until every one of them answers."""
    from celery import Celery

    app = Celery("roadlens-test-ping", broker=settings.broker, backend=settings.backend)
    wanted = {f"{w.name}@{socket.gethostname()}" for w in workers}
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            for worker in workers:
                if worker.process.poll() is not None:
                    pytest.fail(f"worker {worker.name} exited early:\n{worker.log()[-3000:]}")
            replies = app.control.ping(destination=sorted(wanted), timeout=1.0) or []
            answered = {name for reply in replies for name in reply}
            if wanted <= answered:
                return
            time.sleep(0.5)
    finally:
        app.close()
    logs = "\n".join(f"--- {w.name}\n{w.log()[-2000:]}" for w in workers)
    pytest.fail(f"Celery workers did not answer within {WORKER_START_TIMEOUT}s:\n{logs}")


@pytest.fixture
def celery_cluster(redis_url: str, tmp_path: Path) -> Iterator[CeleryCluster]:
    """Two solo-pool Celery workers on a fresh queue of the test Redis; killed afterwards."""
    queue = f"roadlens-test-{uuid.uuid4().hex[:10]}"
    settings = CelerySettings(broker=redis_url, backend=redis_url, queue=queue)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH", "")])]
        ),
        # `dagster-celery worker start` runs `celery` from PATH: use this environment's.
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "DAGSTER_HOME": str(dagster_home),
        CELERY_BROKER_ENV: settings.broker,
        CELERY_BACKEND_ENV: settings.backend,
        CELERY_QUEUE_ENV: queue,
    }
    # One slot per worker (solo pool: the task runs in the worker process itself), so two
    # workers are two processes that steps can land on.
    worker_opts = ["--pool", "solo", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    suffix = uuid.uuid4().hex[:6]
    plain_name = f"rl-plain-{suffix}"
    cli_name = f"rl-cli-{suffix}"

    # Worker 1: the plain celery CLI, broker and backend on the command line.
    plain_cmd = [
        str(BIN / "celery"),
        "-A",
        "dagster_celery.app",
        "-b",
        settings.broker,
        "--result-backend",
        settings.backend,
        "worker",
        "-Q",
        queue,
        "-n",
        f"{plain_name}@%h",
        *worker_opts,
    ]
    # Worker 2: the dagster-celery wrapper with the executor's YAML config, as documented.
    config_yaml = tmp_path / "celery_config.yaml"
    config_yaml.write_text(
        yaml.safe_dump({"execution": {"config": settings.executor_config()}}, sort_keys=False)
    )
    cli_cmd = [
        str(BIN / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(config_yaml),
        "-q",
        queue,
        "-n",
        cli_name,
        "--",
        *worker_opts,
    ]
    import redis

    client = redis.Redis.from_url(redis_url)
    results_before = set(client.scan_iter("celery-task-meta-*"))
    workers: list[Worker] = []
    try:
        workers.append(_start(plain_cmd, plain_name, env, tmp_path / "worker-plain.log"))
        workers.append(_start(cli_cmd, cli_name, env, tmp_path / "worker-cli.log"))
        _wait_until_ready(settings, workers)
        yield CeleryCluster(settings, dagster_home, workers)
    finally:
        for worker in workers:
            worker.stop()
        # The queue, its bindings and the results this test's tasks left behind.
        leftovers = set(client.scan_iter(f"*{queue}*"))
        leftovers |= set(client.scan_iter("celery-task-meta-*")) - results_before
        if leftovers:
            client.delete(*leftovers)
        client.close()


# dagster-celery registers its task on the run process's app once per step submitted.
@pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered")
def test_steps_run_in_two_celery_worker_processes(
    celery_cluster: CeleryCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = celery_cluster.settings
    # The run process reads the same variables the workers were started with.
    monkeypatch.setenv(CELERY_BROKER_ENV, settings.broker)
    monkeypatch.setenv(CELERY_BACKEND_ENV, settings.backend)
    monkeypatch.setenv(CELERY_QUEUE_ENV, settings.queue)
    monkeypatch.setenv("DAGSTER_HOME", str(celery_cluster.dagster_home))

    with dg.instance_for_test(temp_dir=str(celery_cluster.dagster_home)) as instance:
        result = dg.execute_job(dg.reconstructable(celery_probe_job), instance=instance)
        assert result.success, [
            e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"
        ]

        materialized = {
            event.asset_key.to_user_string(): event.materialization.metadata
            for event in result.get_asset_materialization_events()
            if event.asset_key is not None
        }
        assert set(materialized) == set(PROBE_KEYS)
        step_pids = {key: meta["pid"].value for key, meta in materialized.items()}
        step_parents = {key: meta["ppid"].value for key, meta in materialized.items()}
        hostnames = {meta["hostname"].value for meta in materialized.values()}

        # The workers, not the run process, executed the steps ...
        assert os.getpid() not in step_pids.values()
        worker_pids = {w.pid for w in celery_cluster.workers}
        for key in PROBE_KEYS:
            assert step_pids[key] in worker_pids or step_parents[key] in worker_pids, (
                key,
                step_pids[key],
                step_parents[key],
                worker_pids,
            )
        # ... and both worker processes took part.
        assert len(set(step_pids.values())) >= 2, step_pids
        assert hostnames == {socket.gethostname()}

        # Every step was handed to a worker through the queue, as the engine events record.
        delegated = [
            e
            for e in instance.all_logs(result.run_id)
            if e.dagster_event is not None
            and e.dagster_event.event_type_value == "ENGINE_EVENT"
            and "in celery worker" in (e.dagster_event.message or "")
        ]
        assert len(delegated) == len(PROBE_KEYS)
        assert {e.step_key for e in delegated} == set(PROBE_KEYS)
