"""Runs launched in-process by the CLI: who owns them, and clean-up after one that died.

`roadlens ingest` and `roadlens demo` execute their runs in their own process. A process
killed mid-run (SIGKILL, OOM, power loss) cannot mark its run failed nor give back the
pool slot its step holds (the ``detector`` pool has one slot), so every later run would wait
for that slot for ever. Each such run is tagged with its host and process id;
:func:`reclaim_dead_runs` marks the ones whose process is gone failed and frees their slots.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

import dagster as dg

HOST_TAG = "roadlens/host"
PID_TAG = "roadlens/pid"

_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def open_instance() -> dg.DagsterInstance:
    """``DagsterInstance.get()``, with its SQLite storages created under a file lock.

    Two processes starting on a fresh ``DAGSTER_HOME`` would otherwise both create the
    tables and one would fail (``table alembic_version already exists``).
    """
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".roadlens-init.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            instance = dg.DagsterInstance.get()
            # Touch every storage so each creates its tables while the lock is held.
            instance.get_runs(limit=1)
            instance.event_log_storage.get_concurrency_keys()
            if instance.schedule_storage is not None:
                instance.schedule_storage.all_instigator_state()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return instance


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the run's executor."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def reclaim_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the unfinished runs of this host whose process is gone; free their slots.

    Returns one line per run reclaimed. Runs of other hosts or without the tags (launched
    by the daemon, whose run monitoring handles them) are left alone.
    """
    host = socket.gethostname()
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=_UNFINISHED, tags={HOST_TAG: host}),
    )
    reclaimed = []
    for run in runs:
        pid = int(run.tags.get(PID_TAG, "0") or 0)
        if pid <= 0 or pid == os.getpid() or _alive(pid):
            continue
        why = f"the process that ran it (pid {pid}) ended without finishing it"
        instance.report_run_failed(run, message=f"RoadLens: {why}")
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reclaimed.append(f"run {run.run_id} marked failed and its pool slots freed: {why}")
    return reclaimed


def slot_holders(instance: dg.DagsterInstance, pool: str) -> list[str]:
    """The runs holding a slot of ``pool`` now (empty where the storage has no pools)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    info = storage.get_concurrency_info(pool)
    return sorted({s.run_id for s in info.claimed_slots})
