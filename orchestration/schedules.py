"""The nightly backfill: yesterday's videos that are not done yet."""

import dagster as dg

from orchestration.jobs import spine_job

nightly_spine_schedule = dg.build_schedule_from_partitioned_job(
    spine_job,
    hour_of_day=2,
    minute_of_hour=0,
    name="nightly_spine_schedule",
    description="At 02:00 UTC, process every video captured the previous day that is not done yet.",
)
