"""The drift check: a partition's detections against the recent history of the same check.

Metrics come from :func:`roadlens.quality.drift.drift_metrics` over every enriched
detection and sampled frame of the partition; the baseline is the median of the metrics
that the last evaluations of this check recorded for other partitions (its history in
Dagster's event log, so no extra store). A drift is a warning: the data may be right (a
night drive has fewer detections), but someone should look.
"""

import json

import dagster as dg

from roadlens.lake import DETECTIONS_TABLE, FRAMES_TABLE
from roadlens.quality.drift import compare, drift_metrics
from roadlens_dagster.assets.spine import detections
from roadlens_dagster.orchestration.partitions import capture_date
from roadlens_dagster.previews import known_previews
from roadlens_dagster.resources import LakeResource

HISTORY_LIMIT = 30  # evaluations read back; enough for a month of daily partitions
METRICS_KEY = "metrics"


def _history(context: dg.AssetCheckExecutionContext, partition: str) -> list[dict]:
    """Metrics recorded by earlier evaluations of this check on other partitions."""
    key = dg.AssetCheckKey(dg.AssetKey("detections"), "detections_drift")
    records = context.instance.event_log_storage.get_asset_check_execution_history(
        key, limit=HISTORY_LIMIT
    )
    seen: dict[str, dict] = {}
    for record in records:  # newest first: keep each partition's latest evaluation
        if record.partition == partition or record.partition in seen or record.event is None:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        value = evaluation.metadata.get(METRICS_KEY)
        if value is not None:
            seen[record.partition or ""] = dict(value.value)
    return list(seen.values())


# A partitioned check (one verdict per capture date) is a Dagster preview feature.
with known_previews():

    @dg.asset_check(
        asset=detections,
        name="detections_drift",
        blocking=False,
        partitions_def=capture_date,
        description=(
            "Class mix, tracker-id churn per minute, share of frames without detections, GPS "
            "coverage and detections per frame, against the median of recent partitions."
        ),
    )
    def detections_drift(
        context: dg.AssetCheckExecutionContext, lake: LakeResource
    ) -> dg.AssetCheckResult:
        store = lake.lake()
        partition = context.partition_key
        detections = store.read_date(DETECTIONS_TABLE, partition)
        frames = store.read_date(FRAMES_TABLE, partition)
        if detections is None or frames is None:
            return dg.AssetCheckResult(
                passed=True,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"note": dg.MetadataValue.text(f"no detections or frames on {partition}")},
            )
        metrics = drift_metrics(detections.to_pandas(), frames.to_pandas())
        history = _history(context, partition)
        report = compare(metrics, history)
        meta = report.as_metadata()
        return dg.AssetCheckResult(
            passed=report.passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                METRICS_KEY: dg.MetadataValue.json(json.loads(json.dumps(metrics, default=float))),
                "history_points": dg.MetadataValue.int(len(history)),
                "drifted": dg.MetadataValue.json(report.drifted),
                "report": dg.MetadataValue.json(meta),
            },
        )


QUALITY_CHECKS = (detections_drift,)
__all__ = ["QUALITY_CHECKS", "detections_drift"]
