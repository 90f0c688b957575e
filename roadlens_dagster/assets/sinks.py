"""Sink assets: one per (sink, table), e.g. ``pg_detections``, ``kafka_detections``.

Each reads the partition's videos from the lake and hands them, one video at a time, to a
:class:`roadlens.sinks.base.Sink`, which replaces that video's rows. A video whose
content fingerprint the sink already holds is skipped (the nightly run re-exports only
what changed); ``force`` re-sends everything. A sink whose URL is unset is skipped with a
visible note. A video that fails is reported and the rest still go out; the step then
fails so a re-run (idempotent) finishes the job.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from roadlens.sinks.base import SinkConfigError, SinkError, SinkWrite, table_fingerprint
from roadlens.sinks.registry import SINKS, SinkSpec
from roadlens_dagster.assets.batch import VideoBatch
from roadlens_dagster.assets.ode import events
from roadlens_dagster.assets.spine import detections
from roadlens_dagster.orchestration.partitions import capture_date
from roadlens_dagster.resources import LakeResource
from roadlens_dagster.resources.sinks import SinksResource

GROUP = "sinks"

# Dagster retries a failed sink step (broker restart, lost connection) with backoff;
# every write is idempotent per video, so a retry is always safe.
SINK_RETRY = dg.RetryPolicy(
    max_retries=3, delay=1.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass(frozen=True)
class ExportPlan:
    """Which of a date's videos a sink run writes, and which it skips as already there."""

    write: list[str]
    unchanged: list[str]


def plan_export(
    available: Sequence[str],
    requested: Sequence[str],
    fingerprints: dict[str, str],
    committed: dict[str, str],
    *,
    force: bool,
) -> ExportPlan:
    """Named videos (or all available ones) minus those the sink holds with equal content."""
    chosen = [v for v in requested if v in set(available)] if requested else list(available)
    write = [v for v in chosen if force or committed.get(v) != fingerprints[v]]
    return ExportPlan(write, [v for v in chosen if v not in set(write)])


def sink_metadata(
    writes: list[SinkWrite], *, target: str, plan: ExportPlan, failed: dict[str, str]
) -> dict[str, dg.MetadataValue]:
    """Rows, bytes, seconds and latency percentiles for the Dagster UI."""
    rows = sum(w.rows for w in writes)
    seconds = sum((w.seconds for w in writes), 0.0)
    meta: dict[str, dg.MetadataValue] = {
        "target": dg.MetadataValue.text(target),
        "videos_written": dg.MetadataValue.int(len(writes)),
        "videos_unchanged": dg.MetadataValue.int(len(plan.unchanged)),
        "rows": dg.MetadataValue.int(rows),
        "bytes": dg.MetadataValue.int(sum(w.bytes for w in writes)),
        "seconds": dg.MetadataValue.float(round(seconds, 4)),
        "rows_per_s": dg.MetadataValue.float(round(rows / seconds, 1) if seconds > 0 else 0.0),
        "per_video": dg.MetadataValue.json({w.video_id: w.as_dict() for w in writes}),
    }
    for pct in ("p50", "p95", "p99", "max"):
        values = [w.latency_ms[pct] for w in writes if pct in w.latency_ms]
        if values:
            # The worst video's percentile: a conservative figure for the whole run.
            meta[f"latency_{pct}_ms"] = dg.MetadataValue.float(round(max(values), 3))
    if failed:
        meta["failed_videos"] = dg.MetadataValue.json(failed)
    return meta


def build_sink_asset(spec: SinkSpec, upstream: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The asset that keeps the sink's table in step with the lake table that ``upstream``
    writes (both named like the asset)."""
    sink = spec.name
    table = upstream.key.to_user_string()
    name = f"{spec.asset_prefix}_{table}"

    @dg.asset(
        name=name,
        partitions_def=capture_date,
        group_name=GROUP,
        deps=[upstream],
        kinds={spec.kind},
        pool=f"sink_{sink}",
        retry_policy=SINK_RETRY,
        description=f"Every video's {table} of the date, replaced in the {sink} sink.",
    )
    def _sink_asset(
        context: dg.AssetExecutionContext,
        config: VideoBatch,
        lake: LakeResource,
        sinks: SinksResource,
    ) -> dg.MaterializeResult:
        settings = sinks.settings()
        if not settings.enabled(sink):
            note = f"{sink} sink is off: set {settings.env_var(sink)} to switch it on"
            context.log.info(note)
            return dg.MaterializeResult(
                metadata={"skipped": dg.MetadataValue.text(note), "rows": dg.MetadataValue.int(0)}
            )
        store = lake.lake()
        date = context.partition_key
        available = store.video_ids(table, date)
        chosen = [v for v in config.video_ids if v in available] if config.video_ids else available
        data = {v: store.read_video(table, v) for v in chosen}
        fingerprints = {v: table_fingerprint(t) for v, t in data.items()}
        writes: list[SinkWrite] = []
        failed: dict[str, str] = {}
        # Unique per attempt: a step retry inside one run must not reuse the tag of the
        # attempt it replaces (the Mongo sink deletes every tag but the committed one).
        export_id = f"{context.run_id}.{uuid.uuid4().hex[:8]}"
        try:
            opened = sinks.open(sink)
        except SinkConfigError as exc:
            # Settings that can never work: fail now, without the retries.
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        with opened as target:
            plan = plan_export(
                available,
                config.video_ids,
                fingerprints,
                target.committed(table, chosen),
                force=config.force,
            )
            for video_id in plan.write:
                try:
                    result = target.write_video(
                        table,
                        video_id,
                        data[video_id],
                        export_id=export_id,
                        fingerprint=fingerprints[video_id],
                    )
                except SinkError as exc:
                    # Keep going: the other videos still go out; the step fails below.
                    context.log.error(str(exc))
                    failed[video_id] = str(exc)
                    continue
                context.log.info(
                    f"{video_id}: {result.rows} rows to {sink} in {result.seconds:.2f}s"
                )
                writes.append(result)
        metadata = sink_metadata(writes, target=settings.target(sink), plan=plan, failed=failed)
        if failed:
            raise dg.Failure(
                description=f"{len(failed)} of {len(plan.write)} videos did not reach {sink}: "
                + "; ".join(failed.values()),
                metadata=metadata,
            )
        return dg.MaterializeResult(metadata=metadata)

    return _sink_asset


# One asset per (sink, table) of the registry, detections' first.
SINK_ASSETS = tuple(
    build_sink_asset(spec, upstream)
    for upstream in (detections, events)
    for spec in SINKS.values()
    if upstream.key.to_user_string() in spec.tables
)
SINK_ASSET_NAMES = tuple(a.key.to_user_string() for a in SINK_ASSETS)
