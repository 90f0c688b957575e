"""Executors that scale a run's steps out of the run process: Celery workers over Redis.

A run of a job that uses :data:`roadlens_celery_executor` does not execute its steps
itself: the run process plans the run, sends one Celery task per step to a queue and
gathers the events the workers send back. Any number of ``dagster-celery`` worker
processes, on this machine or others, take the tasks off the queue
(``docs/scale_out.md`` shows how to start them).

Broker, result backend and queue come from environment variables read when a run
starts (in the run process, not at import), so the same code location serves a laptop
and a cluster and a broker password never lands in code or run config:

- ``ROADLENS_CELERY_BROKER``: the broker URL (default ``redis://localhost:6379/0``);
- ``ROADLENS_CELERY_BACKEND``: the result backend (default: the broker URL);
- ``ROADLENS_CELERY_QUEUE``: the queue the steps go to (default ``dagster``, the queue
  that ``dagster-celery worker start`` listens on).

Explicit run config (``execution: config: {broker, backend, queue, ...}``) wins over the
environment. Workers must be started with the same broker, backend and queue, must be
able to import the code location (``roadlens_dagster.orchestration.definitions``) and must see the same
Dagster instance (``DAGSTER_HOME`` with PostgreSQL storage when they run on other
machines) and the same lake.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster_celery import celery_executor

from roadlens_dagster.orchestration.jobs import spine_job

CELERY_BROKER_ENV = "ROADLENS_CELERY_BROKER"
CELERY_BACKEND_ENV = "ROADLENS_CELERY_BACKEND"
CELERY_QUEUE_ENV = "ROADLENS_CELERY_QUEUE"
DEFAULT_CELERY_BROKER = "redis://localhost:6379/0"
DEFAULT_CELERY_QUEUE = "dagster"


@dataclass(frozen=True)
class CelerySettings:
    """Where the steps of a Celery-executed run go: broker, result backend and queue."""

    broker: str
    backend: str
    queue: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CelerySettings:
        """Read the ``ROADLENS_CELERY_*`` variables (from ``os.environ`` by default).

        Unset or blank variables fall back to the local Redis, the broker URL as result
        backend and the ``dagster`` queue.
        """
        env = os.environ if environ is None else environ
        broker = env.get(CELERY_BROKER_ENV, "").strip() or DEFAULT_CELERY_BROKER
        backend = env.get(CELERY_BACKEND_ENV, "").strip() or broker
        queue = env.get(CELERY_QUEUE_ENV, "").strip() or DEFAULT_CELERY_QUEUE
        return cls(broker=broker, backend=backend, queue=queue)

    def executor_config(
        self,
        *,
        include: list[str] | None = None,
        config_source: Mapping[str, Any] | None = None,
        retries: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Config for ``dagster_celery.celery_executor`` that sends every step to ``queue``.

        The queue is set as Celery's ``task_default_queue``, which the executor uses for
        every step without a ``dagster-celery/queue`` tag.
        """
        config: dict[str, Any] = {
            "broker": self.broker,
            "backend": self.backend,
            "config_source": {**(config_source or {}), "task_default_queue": self.queue},
        }
        if include:
            config["include"] = list(include)
        if retries is not None:
            config["retries"] = dict(retries)
        return config


_CELERY_RUN_CONFIG_SCHEMA: dict[str, dg.Field] = {
    "broker": dg.Field(
        dg.Noneable(dg.StringSource),
        is_required=False,
        default_value=None,
        description=f"Broker URL; default ${CELERY_BROKER_ENV} or {DEFAULT_CELERY_BROKER}.",
    ),
    "backend": dg.Field(
        dg.Noneable(dg.StringSource),
        is_required=False,
        default_value=None,
        description=f"Result backend URL; default ${CELERY_BACKEND_ENV} or the broker URL.",
    ),
    "queue": dg.Field(
        dg.Noneable(dg.StringSource),
        is_required=False,
        default_value=None,
        description=f"Queue for the steps; default ${CELERY_QUEUE_ENV} or 'dagster'.",
    ),
    "include": dg.Field(
        [str], is_required=False, description="Modules every worker should import."
    ),
    "config_source": dg.Field(
        dg.Noneable(dg.Permissive()),
        is_required=False,
        default_value=None,
        description="Further Celery settings (lowercase names), passed to celery.Celery().",
    ),
}


def _resolve_celery_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Fill the run config's blanks from the environment of the process that runs the run."""
    env = CelerySettings.from_env()
    broker = config.get("broker") or env.broker
    settings = CelerySettings(
        broker=broker,
        # An explicit broker without an explicit backend keeps results on that broker.
        backend=config.get("backend") or (env.backend if not config.get("broker") else broker),
        queue=config.get("queue") or env.queue,
    )
    return settings.executor_config(
        include=config.get("include"), config_source=config.get("config_source")
    )


roadlens_celery_executor: dg.ExecutorDefinition = celery_executor.configured(
    _resolve_celery_config,
    name="roadlens_celery",
    config_schema=_CELERY_RUN_CONFIG_SCHEMA,
    description=(
        "dagster-celery: one Celery task per step, broker/backend/queue from "
        f"${CELERY_BROKER_ENV}, ${CELERY_BACKEND_ENV}, ${CELERY_QUEUE_ENV}."
    ),
)
"""``dagster_celery.celery_executor`` configured from ``ROADLENS_CELERY_*`` at run start."""


spine_job_celery = dg.define_asset_job(
    "spine_job_celery",
    selection=spine_job.selection,
    executor_def=roadlens_celery_executor,
    description=(
        "The spine job with every step sent to Celery workers (see docs/scale_out.md); "
        "workers must share the Dagster instance and the lake."
    ),
    tags={"lane": "batch", "executor": "celery"},
)
