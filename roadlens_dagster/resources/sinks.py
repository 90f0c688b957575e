"""The server-backed sinks, switched on by environment variables (credentials never in config)."""

from __future__ import annotations

import dagster as dg

from roadlens.sinks.base import Sink
from roadlens.sinks.settings import SinkSettings, open_sink


class SinksResource(dg.ConfigurableResource):
    """Reads ``ROADLENS_POSTGRES_URL``, ``ROADLENS_MONGO_URL``, ``ROADLENS_KAFKA_BOOTSTRAP``, ...

    URLs (and the credentials inside them) are read from the environment at run time only,
    so they never reach run config, logs or metadata. Fields here are non-secret overrides;
    empty means "take the environment's value or the default".
    """

    postgres_schema: str = ""
    kafka_prefix: str = ""
    kafka_format: str = ""

    def settings(self) -> SinkSettings:
        base = SinkSettings.from_env()
        overrides = {
            k: v
            for k, v in {
                "postgres_schema": self.postgres_schema,
                "kafka_prefix": self.kafka_prefix,
                "kafka_format": self.kafka_format,
            }.items()
            if v
        }
        return SinkSettings(**{**base.__dict__, **overrides}) if overrides else base

    def open(self, name: str) -> Sink:
        return open_sink(name, self.settings())
