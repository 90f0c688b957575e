"""Asset jobs: the spine, the ODE stage and the sinks for one capture date.

``spine_job`` keeps Dagster's default executor for asset jobs
(``multi_or_in_process_executor``), so a run chooses how its steps execute through run
config: the nightly schedule and backfills run every step in its own process (the
default, ``multiprocess``), while the landing sensor's micro-batches ask for
``in_process`` (:func:`microbatch_execution_config`). A micro-batch holds one or a few
short chunks; starting a Python process per step (each one importing the code location,
torch and ultralytics, about 3 s here) would cost far more than the work itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal

import dagster as dg

spine_job = dg.define_asset_job(
    "spine_job",
    selection=dg.AssetSelection.groups("spine", "ode", "sinks"),
    description=(
        "Register, sample, detect and enrich the videos of one capture date, evaluate the ODE "
        "rules and heat maps, then export to every sink that is switched on."
    ),
    tags={"lane": "batch"},
)

MICROBATCH_EXECUTOR_ENV = "ROADLENS_MICROBATCH_EXECUTOR"
"""Environment variable naming the executor of micro-batch runs: ``in_process`` (default)
or ``multiprocess``."""

ExecutorName = Literal["in_process", "multiprocess"]
EXECUTORS: tuple[ExecutorName, ...] = ("in_process", "multiprocess")


def microbatch_executor(environ: Mapping[str, str] | None = None) -> ExecutorName:
    """The executor micro-batch runs use: ``$ROADLENS_MICROBATCH_EXECUTOR`` or ``in_process``.

    Blank means the default; any other value than the two executors raises, so a typo in a
    deployment fails the sensor tick visibly instead of silently changing the executor.

    >>> microbatch_executor({}), microbatch_executor({"ROADLENS_MICROBATCH_EXECUTOR": "multiprocess"})
    ('in_process', 'multiprocess')
    """
    env = os.environ if environ is None else environ
    value = env.get(MICROBATCH_EXECUTOR_ENV, "").strip().lower().replace("-", "_")
    if not value:
        return "in_process"
    if value not in EXECUTORS:
        raise ValueError(
            f"{MICROBATCH_EXECUTOR_ENV}={value!r}: expected one of {', '.join(EXECUTORS)}"
        )
    return value


def microbatch_execution_config(executor: ExecutorName | None = None) -> dict[str, dict]:
    """The ``execution`` run config that picks ``executor`` for a run of ``spine_job``.

    ``executor`` defaults to :func:`microbatch_executor` (the environment). Merge the result
    into the run config of a micro-batch ``RunRequest``:

    >>> microbatch_execution_config("in_process")
    {'execution': {'config': {'in_process': {}}}}
    """
    return {"execution": {"config": {executor or microbatch_executor(): {}}}}


GPU_TAG = "roadlens/gpu"
_CUDA = re.compile(r"(?:cuda(?::(\d+))?|(\d+))")


def gpu_run_tags(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{"roadlens/gpu": "<index>"}`` when detection runs on a CUDA device, else ``{}``.

    The device is ``$ROADLENS_DEVICE`` (``cuda:1``, ``cuda`` or ``1``). The run queue allows
    one run per GPU index (``deploy/dagster.yaml``), and on Kubernetes the tag sends the
    run to the GPU node pool (``deploy/k8s/gpu-run-tags.yaml``). ``auto`` and ``cpu`` add no
    tag: the daemon cannot tell whether a run pod will see a GPU.

    >>> gpu_run_tags({"ROADLENS_DEVICE": "cuda:1"}), gpu_run_tags({"ROADLENS_DEVICE": "cpu"})
    ({'roadlens/gpu': '1'}, {})
    """
    env = os.environ if environ is None else environ
    match = _CUDA.fullmatch(env.get("ROADLENS_DEVICE", "").strip().lower())
    if match is None:
        return {}
    return {GPU_TAG: match.group(1) or match.group(2) or "0"}
