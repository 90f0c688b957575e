"""The landing sensor: new ready files become micro-batch runs of their capture date.

A file is ready when a ``<name>.done`` (or ``<stem>.done``) marker sits next to it, or its
size and modification time have not changed for ``ready_after_s`` seconds. The cursor
remembers every file already requested (by path, size and mtime) and files still
settling, so nothing is requested twice; each tick takes at most ``max_files_per_tick``
files, oldest first, so a first tick over a full folder stays small.
"""

import json
import time
from collections import defaultdict

import dagster as dg

from assets.batch import batch_run_config
from assets.jobs_config import JOB_ASSET_NAMES
from orchestration.jobs import spine_job
from resources import SourcesResource
from roadlens.registry import batch_run_key, list_candidates, register_video
from roadlens.video import VideoError


def plan_ready(
    cursor: dict, candidates: list, *, now: float, ready_after_s: float, limit: int
) -> tuple[list, dict]:
    """Pick the ready, not-yet-requested candidates; return them and the next cursor."""
    done: dict[str, list[int]] = dict(cursor.get("done", {}))
    settling: dict[str, list[float]] = dict(cursor.get("settling", {}))
    ready = []
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
    job=spine_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.STOPPED
)
def landing_sensor(
    context: dg.SensorEvaluationContext, sources: SourcesResource
) -> dg.SensorResult:
    """Register new ready videos and request one micro-batch run per capture date."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    landing = sources.landing()
    ready, next_cursor = plan_ready(
        cursor,
        list_candidates(landing),
        now=time.time(),
        ready_after_s=sources.ready_after_s,
        limit=sources.max_files_per_tick,
    )
    by_date: dict[str, list] = defaultdict(list)
    for candidate in ready:
        try:
            record = register_video(candidate.path, landing_root=landing, sources=sources.sources())
        except (VideoError, ValueError, OSError) as exc:
            context.log.warning(f"skipping {candidate.path}: {exc}")
        else:
            by_date[record.capture_date].append(record)
        next_cursor["done"][str(candidate.path)] = [candidate.size, candidate.mtime_ns]
    requests = [
        dg.RunRequest(
            run_key=batch_run_key(date, [r.video_id for r in records]),
            partition_key=date,
            run_config=batch_run_config(
                [r.video_id for r in records],
                [r.path for r in records],
                assets=JOB_ASSET_NAMES,
            ),
            tags={"lane": "microbatch", "roadlens/videos": str(len(records))},
        )
        for date, records in sorted(by_date.items())
    ]
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(next_cursor, sort_keys=True),
        skip_reason=None if requests else "no new ready videos",
    )
