"""Which sinks are switched on, read from environment variables only.

A sink is on when its URL is set; credentials live in those URLs and therefore only in
the environment, never in config files, logs or metadata (use :func:`redact`).

=========================  =====================================  ==================
variable                   meaning                                default
=========================  =====================================  ==================
ROADLENS_POSTGRES_URL      ``postgresql://user:pw@host:5432/db``  (off)
ROADLENS_POSTGRES_SCHEMA   schema for the RoadLens tables         ``roadlens``
ROADLENS_MONGO_URL         ``mongodb://host:27017``               (off)
ROADLENS_MONGO_DB          database name                          ``roadlens``
ROADLENS_KAFKA_BOOTSTRAP   ``host:9092[,host:9092]``              (off)
ROADLENS_KAFKA_PREFIX      topic prefix                           ``roadlens``
ROADLENS_KAFKA_FORMAT      ``json`` or ``protobuf``               ``json``
ROADLENS_MQTT_URL          ``mqtt://user:pw@host:1883``           (off)
ROADLENS_MQTT_PREFIX       topic prefix                           ``roadlens``
ROADLENS_MQTT_QOS          0, 1 or 2                              ``1``
ROADLENS_AMQP_URL          ``amqp://user:pw@host:5672/vhost``     (off)
ROADLENS_AMQP_EXCHANGE     topic exchange name                    ``roadlens``
ROADLENS_EXPORT_DIR        folder for CSV/JSONL file export       (off)
ROADLENS_EXPORT_FORMAT     ``jsonl`` or ``csv`` (+ ``.gz``)       ``jsonl.gz``
=========================  =====================================  ==================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from roadlens.redact import redact
from roadlens.settings import roadlens_home
from roadlens.sinks.base import Sink, SinkConfigError, SinkError
from roadlens.sinks.registry import SINKS

# The sinks, in the order they are listed and written (the registry is their one list).
SINK_NAMES = tuple(SINKS)


@dataclass(frozen=True)
class SinkSettings:
    """Connection settings of every sink; empty URL = sink off."""

    postgres_url: str = field(default="", repr=False)  # may hold a password
    postgres_schema: str = "roadlens"
    mongo_url: str = field(default="", repr=False)  # may hold a password
    mongo_db: str = "roadlens"
    kafka_bootstrap: str = field(default="", repr=False)
    kafka_prefix: str = "roadlens"
    kafka_format: str = "json"
    mqtt_url: str = field(default="", repr=False)  # may hold a password
    mqtt_prefix: str = "roadlens"
    mqtt_qos: str = "1"
    amqp_url: str = field(default="", repr=False)  # may hold a password
    amqp_exchange: str = "roadlens"
    export_dir: str = ""
    export_format: str = "jsonl.gz"
    spool_dir: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SinkSettings:
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(f"ROADLENS_{f.name.upper()}", "").strip()
            if raw:
                values[f.name] = raw
        if "spool_dir" not in values:
            values["spool_dir"] = str(roadlens_home(env) / "spool")
        return cls(**values)

    def target(self, name: str) -> str:
        """Where sink ``name`` writes, with credentials redacted; empty when it is off."""
        url: str = getattr(self, SINKS[name].switch)
        return redact(url) if url else ""

    def enabled(self, name: str) -> bool:
        return bool(self.target(name))

    def problems(self) -> list[str]:
        """What can never work in the switched-on sinks' settings, one line per variable.

        Checked before any video is touched, without connecting: a bad format, QoS, schema
        name or URL scheme fails the run at once instead of after detection and retries.

        >>> SinkSettings(mqtt_url="mqtt://broker", mqtt_qos="7").problems()
        ['ROADLENS_MQTT_QOS=7: use 0, 1 or 2']
        >>> SinkSettings(postgres_url="app:pw@db:5432/x").problems()[0][:53]
        'ROADLENS_POSTGRES_URL=app:***@db:5432/x: use postgres'
        """
        from roadlens.sinks.files import FORMATS
        from roadlens.sinks.kafka import VALUE_FORMATS
        from roadlens.sinks.postgres import validate_schema

        found = []
        for spec in SINKS.values():
            url = getattr(self, spec.switch)
            if not spec.url_schemes or not url:
                continue
            if spec.name == "postgres" and "=" in url and "://" not in url:
                continue  # a libpq key=value string
            scheme = url.split("://", 1)[0].lower() if "://" in url else ""
            if scheme not in spec.url_schemes:
                found.append(f"{spec.env_var}={redact(url)}: use {spec.url_example}")
        if self.postgres_url:
            try:
                validate_schema(self.postgres_schema)
            except Exception as exc:
                found.append(f"ROADLENS_POSTGRES_SCHEMA={self.postgres_schema}: {exc}")
        if self.kafka_bootstrap and self.kafka_format not in VALUE_FORMATS:
            found.append(
                f"ROADLENS_KAFKA_FORMAT={self.kafka_format}: use one of {', '.join(VALUE_FORMATS)}"
            )
        if self.mqtt_url and self.mqtt_qos not in {"0", "1", "2"}:
            found.append(f"ROADLENS_MQTT_QOS={self.mqtt_qos}: use 0, 1 or 2")
        if self.export_dir and self.export_format not in FORMATS:
            found.append(
                f"ROADLENS_EXPORT_FORMAT={self.export_format}: use one of {', '.join(FORMATS)}"
            )
        return found

    def env_var(self, name: str) -> str:
        """The variable that switches sink ``name`` on (for "skipped" notes)."""
        return SINKS[name].env_var


def open_sink(name: str, settings: SinkSettings) -> Sink:
    """Connect sink ``name``; raises :class:`SinkError` when it is off or unreachable."""
    if name not in SINK_NAMES:
        raise SinkError(f"unknown sink {name!r}; expected one of {list(SINK_NAMES)}")
    if not settings.enabled(name):
        raise SinkError(f"sink {name} is off: set {settings.env_var(name)}")
    spec = SINKS[name]
    bad = [p for p in settings.problems() if p.startswith(spec.env_prefix)]
    if bad:
        raise SinkConfigError(f"{name}: " + "; ".join(bad))
    return spec.open(settings)
