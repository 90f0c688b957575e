"""Every sink RoadLens writes to, one entry each: adding a sink is its module plus one entry.

An entry says what switches the sink on (a :class:`~roadlens.sinks.settings.SinkSettings`
field, read from ``ROADLENS_<FIELD>``), which lake tables it receives, how its URL must
look, whether an ingest connects to it before the work, how its Dagster assets are named
and shown, and how to open it. Settings checks, ``open_sink``, the ingest pre-flight and
the sink assets all read this table.

Example:
    >>> SINKS["postgres"].env_var, SINKS["postgres"].asset_names
    ('ROADLENS_POSTGRES_URL', ('pg_detections', 'pg_events'))
    >>> [name for name, spec in SINKS.items() if "events" in spec.tables and "detections" not in spec.tables]
    ['mqtt', 'amqp']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roadlens.lake import DETECTIONS_TABLE, EVENTS_TABLE

if TYPE_CHECKING:
    from roadlens.sinks.base import Sink
    from roadlens.sinks.settings import SinkSettings


@dataclass(frozen=True)
class SinkSpec:
    """One sink: its switch, tables, URL form, pre-flight, asset naming and opener."""

    name: str
    # The SinkSettings field whose value (a URL, a bootstrap list, a folder) switches it on.
    switch: str
    # The lake tables it receives; each gets one Dagster asset ``<asset_prefix>_<table>``.
    tables: tuple[str, ...]
    asset_prefix: str
    # The Dagster kind of its assets (the UI's icon).
    kind: str
    open: Callable[[SinkSettings], Sink]
    # URL schemes it accepts, with an example for the error message (none: not a URL).
    url_schemes: tuple[str, ...] = ()
    url_example: str = ""
    # Connected to once before an ingest decodes anything (answers in well under a second).
    preflight: bool = False

    @property
    def env_var(self) -> str:
        """The variable that switches the sink on."""
        return f"ROADLENS_{self.switch.upper()}"

    @property
    def env_prefix(self) -> str:
        """The prefix shared by all of the sink's variables, e.g. ``ROADLENS_MQTT_``."""
        return f"ROADLENS_{self.switch.split('_', 1)[0].upper()}_"

    @property
    def asset_names(self) -> tuple[str, ...]:
        """The names of its Dagster assets, one per table."""
        return tuple(f"{self.asset_prefix}_{table}" for table in self.tables)


def _postgres(settings: SinkSettings) -> Sink:
    from roadlens.sinks.postgres import PostgresSink

    return PostgresSink(settings.postgres_url, schema=settings.postgres_schema)


def _mongo(settings: SinkSettings) -> Sink:
    from roadlens.sinks.mongo import MongoSink

    return MongoSink.from_url(settings.mongo_url, database=settings.mongo_db)


def _kafka(settings: SinkSettings) -> Sink:
    from roadlens.sinks.kafka import KafkaSink

    return KafkaSink(
        settings.kafka_bootstrap,
        topic_prefix=settings.kafka_prefix,
        value_format=settings.kafka_format,
        spool_dir=Path(settings.spool_dir) / "kafka",
    )


def _mqtt(settings: SinkSettings) -> Sink:
    from roadlens.sinks.mqtt import MqttSink

    return MqttSink(
        settings.mqtt_url, topic_prefix=settings.mqtt_prefix, qos=int(settings.mqtt_qos)
    )


def _amqp(settings: SinkSettings) -> Sink:
    from roadlens.sinks.amqp import AmqpSink

    return AmqpSink(settings.amqp_url, exchange=settings.amqp_exchange)


def _files(settings: SinkSettings) -> Sink:
    from roadlens.sinks.files import FileExportSink

    return FileExportSink(settings.export_dir, file_format=settings.export_format)


_BOTH = (DETECTIONS_TABLE, EVENTS_TABLE)
# Detections go to the databases, Kafka and the file export; rule events go there too and
# to the MQTT and AMQP brokers (low volume, for IoT and workflow consumers). Kafka is not
# checked before an ingest: records for a broker that is down are spooled and replayed.
SINKS: dict[str, SinkSpec] = {
    spec.name: spec
    for spec in (
        SinkSpec(
            "postgres",
            "postgres_url",
            _BOTH,
            "pg",
            "postgres",
            _postgres,
            ("postgres", "postgresql"),
            "postgresql://user:password@host:port/db or a libpq key=value string",
            preflight=True,
        ),
        SinkSpec(
            "mongo",
            "mongo_url",
            _BOTH,
            "mongo",
            "mongodb",
            _mongo,
            ("mongodb", "mongodb+srv"),
            "mongodb://user:password@host:port",
        ),
        SinkSpec("kafka", "kafka_bootstrap", _BOTH, "kafka", "kafka", _kafka),
        SinkSpec(
            "mqtt",
            "mqtt_url",
            (EVENTS_TABLE,),
            "mqtt",
            "mqtt",
            _mqtt,
            ("mqtt", "mqtts", "tcp", "ssl", "ws", "wss"),
            "mqtt://user:password@host:1883",
            preflight=True,
        ),
        SinkSpec(
            "amqp",
            "amqp_url",
            (EVENTS_TABLE,),
            "amqp",
            "rabbitmq",
            _amqp,
            ("amqp", "amqps"),
            "amqp://user:password@host:5672/vhost",
            preflight=True,
        ),
        SinkSpec("files", "export_dir", _BOTH, "file", "csv", _files),
    )
}
