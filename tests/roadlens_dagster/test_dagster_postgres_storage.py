"""Dagster's own storage in PostgreSQL (dagster-postgres), from deploy/dagster.yaml.

Each test creates a fresh database on the test server, points a temporary DAGSTER_HOME at
the instance file, materializes a tiny asset and then reads the run and its
materialization back out of PostgreSQL's tables, not through Dagster's API alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from tests.conftest import REPO

INSTANCE_YAML = REPO / "deploy" / "dagster.yaml"


def _with_database(url: str, database: str) -> str:
    """``url`` pointing at ``database`` through SQLAlchemy's psycopg2 driver.

    dagster-postgres is written for psycopg2; SQLAlchemy 2.1 maps a bare ``postgresql://``
    to psycopg 3, under which its ``NOTIFY run_events, :id`` fails (see the instance file).
    """
    return urlunsplit(urlsplit(url)._replace(scheme="postgresql+psycopg2", path=f"/{database}"))


@pytest.fixture
def dagster_db(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped (with its connections) afterwards."""
    name = f"roadlens_dagster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(postgres_url, name)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _materialize_in() -> tuple[str, str]:
    """Materialize one asset with ``DagsterInstance.get()``; return (run id, asset name)."""
    asset_name = f"pg_storage_probe_{uuid.uuid4().hex[:6]}"

    @dg.asset(name=asset_name)
    def probe() -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"rows": 3})

    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        result = dg.materialize([probe], instance=instance)
        assert result.success
        # Dagster reads it back too (through PostgreSQL).
        event = instance.get_latest_materialization_event(dg.AssetKey(asset_name))
        assert event is not None and event.run_id == result.run_id
        return result.run_id, asset_name


def _assert_stored(url: str, run_id: str, asset_name: str) -> None:
    with psycopg.connect(url.replace("+psycopg2", "", 1)) as conn:
        status = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        assert status == ("SUCCESS",)
        materializations = conn.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s "
            "AND dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key LIKE %s",
            (run_id, f"%{asset_name}%"),
        ).fetchone()
        assert materializations == (1,)
        keys = conn.execute(
            "SELECT count(*) FROM asset_keys WHERE asset_key LIKE %s", (f"%{asset_name}%",)
        ).fetchone()
        assert keys == (1,)


@pytest.mark.postgres
def test_instance_yaml_stores_runs_and_materializations_in_postgres(
    dagster_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_db)

    run_id, asset_name = _materialize_in()

    _assert_stored(dagster_db, run_id, asset_name)
    # Nothing went to SQLite files under DAGSTER_HOME.
    assert not list(home.rglob("*.db"))


@pytest.mark.postgres
def test_a_plain_postgresql_url_works_with_the_pinned_sqlalchemy(
    dagster_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyproject pins sqlalchemy<2.1, which still maps postgresql:// to psycopg2.
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    plain = dagster_db.replace("+psycopg2", "", 1)
    assert plain.startswith("postgresql://")
    monkeypatch.setenv("DAGSTER_PG_URL", plain)
    run_id, asset_name = _materialize_in()
    _assert_stored(plain, run_id, asset_name)


@pytest.mark.postgres
def test_postgres_db_fields_variant(
    dagster_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``postgres_db`` form documented in the instance file works the same way."""
    config = yaml.safe_load(INSTANCE_YAML.read_text())
    parts = urlsplit(dagster_db)
    config["storage"] = {
        "postgres": {
            "postgres_db": {
                "username": {"env": "DAGSTER_PG_USER"},
                "hostname": {"env": "DAGSTER_PG_HOST"},
                "db_name": {"env": "DAGSTER_PG_DB"},
                "port": parts.port or 5432,
                "scheme": "postgresql+psycopg2",
            }
        }
    }
    if parts.password:
        config["storage"]["postgres"]["postgres_db"]["password"] = {"env": "DAGSTER_PG_PASSWORD"}
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", parts.password)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_USER", parts.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_HOST", parts.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_DB", parts.path.lstrip("/"))

    run_id, asset_name = _materialize_in()

    _assert_stored(dagster_db, run_id, asset_name)


def test_instance_yaml_keeps_secrets_out_and_limits_in() -> None:
    """The file names the URL by environment variable and keeps the embedded run limits.

    Production adds limits of its own (tests/roadlens_dagster/test_deploy.py checks them in a live instance).
    """
    config = yaml.safe_load(INSTANCE_YAML.read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    embedded = yaml.safe_load(
        (INSTANCE_YAML.parents[1] / "roadlens_dagster" / "dagster.yaml").read_text()
    )
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    for limit in embedded["concurrency"]["runs"]["tag_concurrency_limits"]:
        assert limit in limits or any(
            {**limit, "limit": other["limit"]} == other and other["limit"] >= limit["limit"]
            for other in limits
        ), limit
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["run_retries"]["enabled"] and config["run_retries"]["max_retries"] >= 1
