"""Asset checks: Great Expectations gates on frames, detections and events, and drift.

The gates themselves run inside the stages (``roadlens.quality.gate``): bad rows go to the
lake's quarantine before the write, so they can never reach a sink. The asset reports
the gate's verdict as a check result of the same step:

* ``frames_valid`` (warning) and ``detections_valid`` / ``events_valid`` (blocking): fail
  when an expectation about the batch as a whole failed (timestamps running backwards)
  or when more than ``ROADLENS_MAX_QUARANTINE_SHARE`` (default 0.05) of the rows had to
  be quarantined. A failed blocking check stops the assets downstream of it in that run
  (the sinks) for that partition only; other partitions' runs go on.
* ``detections_drift`` (warning, its own step): the partition's class mix, tracker-id
  churn, empty-frame share, GPS coverage and detections per frame against the median of
  the last evaluations of the same check on other partitions (the check's history).

Quarantined rows are also written to PostgreSQL's ``quarantine`` table when the
PostgreSQL sink is on, in the gated step itself, so they are there even when the check
blocks the sinks.
"""

from collections.abc import Mapping, Sequence

import dagster as dg

from roadlens.lake import ParquetLake
from roadlens.pipeline import StageOutcome
from roadlens.quality.gate import read_quarantine
from roadlens.settings import env_number
from roadlens.sinks.base import SinkError
from roadlens_dagster.orchestration.partitions import capture_date
from roadlens_dagster.previews import known_previews
from roadlens_dagster.resources.sinks import SinksResource

DEFAULT_MAX_QUARANTINE_SHARE = 0.05


def max_quarantine_share() -> float:
    """``$ROADLENS_MAX_QUARANTINE_SHARE`` in [0, 1], default 0.05."""
    return env_number(
        "ROADLENS_MAX_QUARANTINE_SHARE",
        DEFAULT_MAX_QUARANTINE_SHARE,
        kind=float,
        minimum=0,
        maximum=1,
    )


def gate_check_spec(asset: str, name: str, *, blocking: bool) -> dg.AssetCheckSpec:
    what = "stops the sinks for the partition" if blocking else "warns"
    with known_previews():  # partitioned checks: one verdict per capture date
        return dg.AssetCheckSpec(
            name,
            asset=asset,
            blocking=blocking,
            partitions_def=capture_date,
            description=(
                f"Great Expectations suite on every {asset} row written in the step; bad rows "
                f"are quarantined, and a batch-level failure or a quarantined share above "
                f"ROADLENS_MAX_QUARANTINE_SHARE {what}."
            ),
        )


def gate_check_result(
    outcomes: Sequence[StageOutcome],
    *,
    asset: str,
    name: str,
    blocking: bool,
    failed_videos: Mapping[str, str] | None = None,
) -> dg.AssetCheckResult:
    """The check verdict over the step's videos, from each outcome's ``extra["quality"]``;
    any of ``failed_videos`` (video id: why it could not be processed) fails it."""
    gates = {o.video_id: o.extra["quality"] for o in outcomes if "quality" in o.extra}
    rows = sum(g["rows"] for g in gates.values())
    quarantined = sum(g["quarantined"] for g in gates.values())
    share = quarantined / rows if rows else 0.0
    limit = max_quarantine_share()
    batch = {v: g["batch_failures"] for v, g in gates.items() if g["batch_failures"]}
    failed: dict[str, int] = {}
    for g in gates.values():
        for reason, count in g["failed_expectations"].items():
            failed[reason] = failed.get(reason, 0) + int(count or 0)
    passed = not batch and share <= limit and not failed_videos
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        metadata={
            "videos": dg.MetadataValue.int(len(gates)),
            "rows": dg.MetadataValue.int(rows),
            "quarantined": dg.MetadataValue.int(quarantined),
            "quarantined_share": dg.MetadataValue.float(round(float(share), 6)),
            "max_quarantined_share": dg.MetadataValue.float(float(limit)),
            "failed_expectations": dg.MetadataValue.json(failed),
            "batch_failures": dg.MetadataValue.json(batch),
            "failed_videos": dg.MetadataValue.json(dict(failed_videos or {})),
            "validation_seconds": dg.MetadataValue.float(
                round(sum((g["validation_seconds"] for g in gates.values()), 0.0), 4)
            ),
        },
    )


def publish_quarantine(
    context: dg.AssetExecutionContext,
    sinks: SinksResource,
    lake: ParquetLake,
    table: str,
    video_ids: Sequence[str],
) -> int:
    """Replace the videos' quarantine rows of ``table`` in PostgreSQL when it is on.

    Returns the rows written. A PostgreSQL failure is logged, not raised: the lake's
    quarantine holds the rows either way, and the sink asset reports the outage.
    """
    settings = sinks.settings()
    if not settings.enabled("postgres") or not video_ids:
        return 0
    written = 0
    try:
        with sinks.open("postgres") as target:
            for video_id in video_ids:
                rows = read_quarantine(lake, table, video_id)
                written += target.replace_quarantine(table, video_id, rows).rows  # type: ignore[attr-defined]
    except SinkError as exc:
        context.log.error(f"quarantine of {table} not written to PostgreSQL: {exc}")
    return written
