"""A test-only job for the Celery executor: four independent assets that report where they ran.

Celery workers rebuild the job from this module (``dg.reconstructable(celery_probe_job)``),
so it must stay importable as ``tests.celery_jobs`` from the repository root and must not
depend on pytest fixtures.
"""

from __future__ import annotations

import os
import socket
import time

import dagster as dg

from roadlens_dagster.orchestration.executors import roadlens_celery_executor

PROBE_KEYS = ("probe_a", "probe_b", "probe_c", "probe_d")
STEP_SECONDS = 1.0


def _probe_factory(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, group_name="celery_probe")
    def _probe() -> dg.MaterializeResult:
        """Sleep a little so the steps overlap, then report the process that ran it."""
        time.sleep(STEP_SECONDS)
        return dg.MaterializeResult(
            metadata={
                "pid": dg.MetadataValue.int(os.getpid()),
                "ppid": dg.MetadataValue.int(os.getppid()),
                "hostname": dg.MetadataValue.text(socket.gethostname()),
            }
        )

    return _probe


PROBES = [_probe_factory(name) for name in PROBE_KEYS]

probe_defs = dg.Definitions(
    assets=PROBES,
    jobs=[
        dg.define_asset_job(
            "celery_probe_job",
            selection=dg.AssetSelection.groups("celery_probe"),
            executor_def=roadlens_celery_executor,
        )
    ],
)


def celery_probe_job() -> dg.JobDefinition:
    """The probe job, resolved; the target of ``dg.reconstructable`` in tests and workers."""
    return probe_defs.resolve_job_def("celery_probe_job")
