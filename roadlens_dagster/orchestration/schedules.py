"""The nightly backfill: yesterday's videos that are not done yet."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from roadlens_dagster.orchestration.jobs import gpu_run_tags, spine_job


@dg.schedule(
    job=spine_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    name="nightly_spine_schedule",
    description="At 02:00 UTC, process every video captured the previous day that is not done yet.",
)
def nightly_spine_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Request yesterday's partition.

    ``build_schedule_from_partitioned_job`` would request the last partition, which for
    ``capture_date`` (``end_offset=1``, so the sensor can run today's videos) is today's.
    """
    now = context.scheduled_execution_time or datetime.now(UTC)
    day = (now.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"nightly:{day}", partition_key=day, tags=gpu_run_tags())
