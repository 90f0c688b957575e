"""Sink settings come from the environment only, and never show a password."""

from __future__ import annotations

import pytest

from roadlens.redact import redact
from roadlens.sinks.base import SinkConfigError, SinkError, percentiles_ms
from roadlens.sinks.settings import SINK_NAMES, SinkSettings, open_sink


def test_every_sink_is_off_without_its_variable() -> None:
    settings = SinkSettings.from_env({"ROADLENS_HOME": "/tmp/x"})
    assert [n for n in SINK_NAMES if settings.enabled(n)] == []
    with pytest.raises(SinkError, match="set ROADLENS_KAFKA_BOOTSTRAP"):
        open_sink("kafka", settings)


def test_variables_map_to_fields_and_targets_are_redacted() -> None:
    env = {
        "ROADLENS_POSTGRES_URL": "postgresql://app:pa55word@db:5432/roads",
        "ROADLENS_POSTGRES_SCHEMA": "fleet",
        "ROADLENS_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
        "ROADLENS_KAFKA_FORMAT": "protobuf",
        "ROADLENS_HOME": "/srv/roadlens",
    }
    settings = SinkSettings.from_env(env)
    assert settings.postgres_schema == "fleet"
    assert settings.kafka_format == "protobuf"
    assert settings.spool_dir == "/srv/roadlens/spool"
    assert settings.target("postgres") == "postgresql://app:***@db:5432/roads"
    assert "pa55word" not in repr(settings.target("postgres"))
    assert settings.target("kafka") == "k1:9092,k2:9092"
    assert {n for n in SINK_NAMES if settings.enabled(n)} == {"postgres", "kafka"}


def test_bad_mqtt_qos_is_named() -> None:
    settings = SinkSettings.from_env({"ROADLENS_MQTT_URL": "mqtt://h:1", "ROADLENS_MQTT_QOS": "3"})
    with pytest.raises(SinkConfigError, match="ROADLENS_MQTT_QOS=3: use 0, 1 or 2"):
        open_sink("mqtt", settings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"ROADLENS_EXPORT_DIR": "/x", "ROADLENS_EXPORT_FORMAT": "xml"},
            "ROADLENS_EXPORT_FORMAT=xml",
        ),
        ({"ROADLENS_KAFKA_BOOTSTRAP": "h:9092", "ROADLENS_KAFKA_FORMAT": "avro"}, "KAFKA_FORMAT"),
        ({"ROADLENS_POSTGRES_URL": "app:S3cret@db/x"}, "ROADLENS_POSTGRES_URL=app:***@db/x"),
        (
            {"ROADLENS_POSTGRES_URL": "postgresql://db/x", "ROADLENS_POSTGRES_SCHEMA": "9x"},
            "SCHEMA",
        ),
        ({"ROADLENS_AMQP_URL": "http://h"}, "ROADLENS_AMQP_URL=http://h: use amqp://"),
        ({"ROADLENS_MONGO_URL": "h:27017"}, "ROADLENS_MONGO_URL=h:27017: use mongodb://"),
    ],
)
def test_settings_that_can_never_work_are_named_without_connecting(
    env: dict[str, str], named: str
) -> None:
    problems = SinkSettings.from_env(env).problems()
    assert len(problems) == 1 and named in problems[0]
    assert "S3cret" not in problems[0]


def test_good_settings_have_no_problems() -> None:
    env = {
        "ROADLENS_POSTGRES_URL": "host=db user=app password=x dbname=r",
        "ROADLENS_KAFKA_BOOTSTRAP": "user:pw@k1:9092,k2:9092",
        "ROADLENS_MQTT_URL": "mqtts://u:p@h:8883",
        "ROADLENS_AMQP_URL": "amqps://h/%2F",
        "ROADLENS_MONGO_URL": "mongodb+srv://cluster.example",
        "ROADLENS_EXPORT_DIR": "/x",
        "ROADLENS_EXPORT_FORMAT": "csv.gz",
    }
    assert SinkSettings.from_env(env).problems() == []


def test_redact_url_keeps_urls_without_password() -> None:
    assert redact("mqtt://127.0.0.1:1883") == "mqtt://127.0.0.1:1883"
    assert redact("amqp://guest:guest@h:5672/%2F") == "amqp://guest:***@h:5672/%2F"


def test_percentiles_are_in_milliseconds() -> None:
    stats = percentiles_ms([0.001] * 98 + [0.1, 0.2])
    assert stats["p50"] == pytest.approx(1.0)
    assert stats["max"] == pytest.approx(200.0)
    assert 1.0 < stats["p99"] <= 200.0
    assert percentiles_ms([]) == {}


def test_the_registry_is_the_one_list_of_sinks() -> None:
    """Settings, pre-flight and the Dagster assets all follow the registry's entries."""
    from dataclasses import fields

    from roadlens.sinks.registry import SINKS
    from roadlens_dagster.assets.sinks import SINK_ASSET_NAMES
    from roadlens_dagster.cli import PREFLIGHT_SINKS

    names = {f.name for f in fields(SinkSettings)}
    assert all(spec.switch in names for spec in SINKS.values())
    assert set(SINK_ASSET_NAMES) == {n for spec in SINKS.values() for n in spec.asset_names}
    assert set(PREFLIGHT_SINKS) == {"postgres", "mqtt", "amqp"}  # Kafka spools instead
    on = SinkSettings.from_env({spec.env_var: "x://h" for spec in SINKS.values()})
    assert [n for n in SINK_NAMES if on.enabled(n)] == list(SINKS)
