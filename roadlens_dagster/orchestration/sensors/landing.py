"""The landing sensor: new ready files become micro-batch runs of their capture date.

A file is ready when a ``<name>.done`` (or ``<stem>.done``) marker sits next to it, or its
size and modification time have not changed for ``ready_after_s`` seconds. The cursor
remembers every file already requested (by path, size and mtime) and files still
settling, so nothing is requested twice; each tick takes at most ``max_files_per_tick``
files, oldest first, so a first tick over a full folder stays small.

Latency settings (docs/live.md, "Latency"):

- ``ROADLENS_SENSOR_INTERVAL_S``: the sensor's ``minimum_interval_seconds``, read when the
  code location is loaded (default 15). The daemon's sensor loop passes every 5 s (a
  Dagster constant), so nothing ticks faster than that; live deployments set 1, which
  ticks on every pass. Exactly 5 skips a pass whenever the loop comes back a few
  milliseconds early (elapsed 4.99 s < 5), turning some waits into 10 s.
- ``ROADLENS_MICROBATCH_EXECUTOR``: ``in_process`` (default) or ``multiprocess``, read at
  every tick (:func:`roadlens_dagster.orchestration.jobs.microbatch_executor`): the executor the requested
  runs use. In-process saves one Python process start per step.
- ``ROADLENS_MICROBATCH_MAX_QUEUED`` (default 1, 0 = off): back-pressure. While this many
  micro-batch runs still wait in the run queue, a tick requests nothing and the new
  chunks stay ready for a later tick, which takes all of them in one run. Dagster never
  merges queued runs, so without it a host that cannot keep up with its cameras piles
  up one small run per tick, each paying the fixed cost of a run, and the queue wait
  grows without bound; with it the batches grow instead.
"""

import json
import time
from collections import defaultdict
from collections.abc import Mapping

import dagster as dg

from roadlens.registry import batch_run_key, list_candidates, probe_video_record
from roadlens.settings import env_number
from roadlens.video import VideoError
from roadlens_dagster.assets.batch import batch_run_config
from roadlens_dagster.assets.jobs_config import JOB_ASSET_NAMES
from roadlens_dagster.orchestration.jobs import gpu_run_tags, microbatch_execution_config, spine_job
from roadlens_dagster.resources import SourcesResource

SENSOR_INTERVAL_ENV = "ROADLENS_SENSOR_INTERVAL_S"
DEFAULT_SENSOR_INTERVAL_S = 15
MAX_QUEUED_ENV = "ROADLENS_MICROBATCH_MAX_QUEUED"
DEFAULT_MAX_QUEUED = 1
MICROBATCH_TAGS = {"lane": "microbatch"}
WAITING = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED]


def sensor_interval_s(environ: Mapping[str, str] | None = None) -> int:
    """The landing sensor's minimum interval: ``$ROADLENS_SENSOR_INTERVAL_S`` or 15 seconds.

    Whole seconds (Dagster's ``minimum_interval_seconds`` is an int), at least 1. Blank means
    the default; anything else that is not a positive integer raises, so the code location
    fails to load instead of ticking at an interval nobody asked for.

    >>> sensor_interval_s({}), sensor_interval_s({"ROADLENS_SENSOR_INTERVAL_S": "5"})
    (15, 5)
    """
    return env_number(SENSOR_INTERVAL_ENV, DEFAULT_SENSOR_INTERVAL_S, minimum=1, env=environ)


def max_queued_microbatches(environ: Mapping[str, str] | None = None) -> int:
    """``$ROADLENS_MICROBATCH_MAX_QUEUED`` (default 1): queued micro-batches that hold a tick.

    0 turns the back-pressure off. Anything but a whole number >= 0 raises.

    >>> max_queued_microbatches({}), max_queued_microbatches({"ROADLENS_MICROBATCH_MAX_QUEUED": "0"})
    (1, 0)
    """
    return env_number(MAX_QUEUED_ENV, DEFAULT_MAX_QUEUED, minimum=0, env=environ)


def waiting_microbatches(instance: dg.DagsterInstance) -> int:
    """Micro-batch runs created but not launched yet (``NOT_STARTED`` or ``QUEUED``)."""
    return instance.get_runs_count(dg.RunsFilter(tags=MICROBATCH_TAGS, statuses=WAITING))


SOURCE_TAG = "roadlens/source"


def plan_ready(
    cursor: dict, candidates: list, *, now: float, ready_after_s: float, limit: int
) -> tuple[list, dict]:
    """Pick the ready, not-yet-requested candidates; return them and the next cursor."""
    done: dict[str, list[int]] = dict(cursor.get("done", {}))
    settling: dict[str, list[float]] = dict(cursor.get("settling", {}))
    ready: list = []
    for c in candidates:
        key = str(c.path)
        signature = [c.size, c.mtime_ns]
        if done.get(key) == signature:
            continue
        seen = settling.get(key)
        if c.has_marker or (seen and seen[:2] == signature and now - seen[2] >= ready_after_s):
            if len(ready) < limit:
                ready.append(c)
                settling.pop(key, None)
            continue
        if not seen or seen[:2] != signature:
            settling[key] = [c.size, c.mtime_ns, now]
    return ready, {"done": done, "settling": settling}


@dg.sensor(
    job=spine_job,
    minimum_interval_seconds=sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Registers new ready videos of the landing folder (a .done marker, or a file that "
        "stopped growing) and requests one spine_job run per capture date and source; "
        "files that are not videos are skipped once and named in the tick."
    ),
)
def landing_sensor(
    context: dg.SensorEvaluationContext, sources: SourcesResource
) -> dg.SensorResult:
    """Register new ready videos and request one micro-batch run per capture date and source.

    Each run of ``spine_job`` gets the batch's videos as config of every asset, the
    ``lane: microbatch`` tag (the run queue's micro-batch limit) and the executor named by
    ``ROADLENS_MICROBATCH_EXECUTOR`` (default in-process). While
    ``ROADLENS_MICROBATCH_MAX_QUEUED`` micro-batch runs are queued, nothing is requested.
    """
    execution = microbatch_execution_config()
    max_queued = max_queued_microbatches()
    waiting = waiting_microbatches(context.instance) if max_queued else 0
    held = bool(max_queued) and waiting >= max_queued
    cursor = json.loads(context.cursor) if context.cursor else {}
    landing = sources.landing()
    # Held: take nothing (limit 0), but keep the settling clocks of unmarked files going.
    ready, next_cursor = plan_ready(
        cursor,
        list_candidates(landing),
        now=time.time(),
        ready_after_s=sources.ready_after_s,
        limit=0 if held else sources.max_files_per_tick,
    )
    # One run per (capture date, source): the run queue allows one run per source at a
    # time (tag roadlens/source), so a live source's chunks are processed in order and each
    # chunk finds its predecessor's detections for continuity (docs/live.md).
    batches: dict[tuple[str, str], list] = defaultdict(list)
    rejected: list[str] = []
    for candidate in ready:
        try:
            record = probe_video_record(
                candidate.path, landing_root=landing, sources=sources.sources()
            )
        except (VideoError, ValueError, OSError) as exc:
            rejected.append(f"{candidate.path}: {exc}")
            context.log.warning(f"skipping {candidate.path}: {exc}")
        else:
            batches[record.capture_date, record.source_id].append(record)
        next_cursor["done"][str(candidate.path)] = [candidate.size, candidate.mtime_ns]
    requests = [
        dg.RunRequest(
            run_key=batch_run_key(date, [r.video_id for r in records]),
            partition_key=date,
            run_config={
                **batch_run_config(
                    [r.video_id for r in records],
                    [r.path for r in records],
                    assets=JOB_ASSET_NAMES,
                ),
                **execution,
            },
            tags={
                **MICROBATCH_TAGS,
                **gpu_run_tags(),
                SOURCE_TAG: source_id,
                "roadlens/videos": str(len(records)),
            },
        )
        for (date, source_id), records in sorted(batches.items())
    ]
    if held:
        skip = (
            f"{waiting} micro-batch run(s) still queued ({MAX_QUEUED_ENV}={max_queued}): "
            "new videos wait for a later tick and go into one batch"
        )
    else:
        skip = "no new ready videos"
    if rejected:
        # Bad files are taken off the list for good (until they change): say which and why.
        skip = f"{len(rejected)} file(s) skipped: " + "; ".join(rejected)
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(next_cursor, sort_keys=True),
        skip_reason=None if requests else skip,
    )
