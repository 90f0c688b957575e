"""The ODE stage: ``events`` (with their media) -> ``event_stats``, and ``heatmaps``, per
video of the date. Each asset writes the lake table of the same name.

The rule file is configuration (``RulesResource``); its sha256 is in every event row and
in the metadata, and a video whose events already come from the same rules and the same
detections is skipped unless ``force`` is set, so changing one rule re-evaluates every
video on the next run while an unchanged rule set costs one hash per video.
"""

import hashlib
import json
from collections import Counter

import dagster as dg

from roadlens import pipeline
from roadlens.lake import EVENTS_TABLE, ParquetLake
from roadlens.ode import stage
from roadlens.ode.rules import RuleSet
from roadlens.registry import VideoRecord
from roadlens_dagster.assets.batch import VideoBatch, outcome_metadata
from roadlens_dagster.assets.quality import gate_check_result, gate_check_spec, publish_quarantine
from roadlens_dagster.assets.spine import detections
from roadlens_dagster.orchestration.partitions import capture_date
from roadlens_dagster.previews import known_previews
from roadlens_dagster.resources import LakeResource, SinksResource, SourcesResource
from roadlens_dagster.resources.rules import RulesResource

GROUP = "ode"


def rule_file_hashes(rules: RulesResource, sources: SourcesResource) -> dict[str, str]:
    """sha256 of the deployment's rule set and of every source's own rule file, by path."""
    paths = [rules.rules_path(), *(r.rules for r in sources.sources().rules if r.rules)]
    return {str(p): rules.rule_set(p).sha256() for p in dict.fromkeys(paths)}


def rule_set_version(hashes: dict[str, str]) -> str:
    """One short version for a set of rule files (order-independent)."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


# Observable source assets are a Dagster beta feature; the rule files need one.
with known_previews():

    @dg.observable_source_asset(
        group_name=GROUP,
        description=(
            "The ODE rule files (the deployment's and each source's own). Observing them records "
            "their combined sha256 as the data version, so editing a rule marks events and "
            "everything downstream of it stale, and nothing upstream."
        ),
    )
    def rule_files(rules: RulesResource, sources: SourcesResource) -> dg.ObserveResult:
        """Validates every rule file (a bad file fails the observation, naming rule and field)."""
        hashes = rule_file_hashes(rules, sources)
        return dg.ObserveResult(
            data_version=dg.DataVersion(rule_set_version(hashes)),
            metadata={
                "rule_files": dg.MetadataValue.json(hashes),
                "rules_path": dg.MetadataValue.path(str(rules.rules_path())),
            },
        )


def _rule_set_for(record: VideoRecord, rules: RulesResource, sources: SourcesResource) -> RuleSet:
    """A source's own rule file (``rules:`` in sources.yaml), else the deployment's."""
    path = sources.sources().rules_path_for(record.path, sources.landing())
    return rules.rule_set(path)


def _videos(store: ParquetLake, date: str, config: VideoBatch) -> list[VideoRecord]:
    """The batch's videos of the date that have enriched detections."""
    records = pipeline.registered_videos(store, date)
    if config.video_ids:
        wanted = set(config.video_ids)
        records = [r for r in records if r.video_id in wanted]
    return [r for r in records if pipeline.is_done(store, r.video_id)]


@dg.asset(
    partitions_def=capture_date,
    group_name=GROUP,
    deps=[detections, rule_files],
    kinds={"pandas", "opencv", "parquet"},
    check_specs=[gate_check_spec("events", "events_valid", blocking=True)],
)
def events(
    context: dg.AssetExecutionContext,
    config: VideoBatch,
    lake: LakeResource,
    rules: RulesResource,
    sources: SourcesResource,
    sinks: SinksResource,
) -> dg.MaterializeResult:
    """Rule events per video, evaluated as whole-column pandas over its detections and frames,
    with each rule's capture and actions: frame/crop JPEGs, clips, annotated video and
    notifications, named in the events' ``media_paths``.

    Media paths derive from event ids, so a re-run overwrites; notifications keep a ledger,
    so a re-run does not notify twice.
    """
    store = lake.lake()
    default_rules = rules.rule_set()  # validated up front: a bad file fails the step at once
    outcomes, current = [], []
    hashes: Counter[str] = Counter()
    for record in _videos(store, context.partition_key, config):
        rule_set = _rule_set_for(record, rules, sources)
        hashes[rule_set.sha256()] += 1
        if not config.force and stage.events_are_current(store, record.video_id, rule_set):
            current.append(record.video_id)
            continue
        outcome = stage.evaluate_video(store, record, rule_set)
        context.log.info(
            f"{record.video_id}: {outcome.rows} events, {outcome.extra.get('media_files', 0)} "
            f"media files in {outcome.seconds:.2f}s"
        )
        outcomes.append(outcome)
    per_rule: Counter[str] = Counter()
    for o in outcomes:
        per_rule.update(o.extra.get("per_rule", {}))
    publish_quarantine(context, sinks, store, "events", [o.video_id for o in outcomes])
    check = gate_check_result(outcomes, asset="events", name="events_valid", blocking=True)
    return dg.MaterializeResult(
        check_results=[check],
        metadata=outcome_metadata(
            outcomes,
            per_rule=dict(per_rule),
            rules_path=str(rules.rules_path()),
            rule_set_sha256=default_rules.sha256(),
            rule_sets_used=dict(hashes),
            rules=len(default_rules.rules),
            videos_current=current,
        ),
    )


@dg.asset(partitions_def=capture_date, group_name=GROUP, deps=[events], kinds={"pandas"})
def event_stats(
    context: dg.AssetExecutionContext, config: VideoBatch, lake: LakeResource
) -> dg.MaterializeResult:
    """Event counts per rule, class and direction in 5, 15 and 60-minute bins."""
    store = lake.lake()
    outcomes = [
        stage.stats_for_video(store, record)
        for record in _videos(store, context.partition_key, config)
        if store.has_video(EVENTS_TABLE, record.video_id)
    ]
    return dg.MaterializeResult(metadata=outcome_metadata(outcomes))


@dg.asset(
    partitions_def=capture_date,
    group_name=GROUP,
    deps=[detections],
    kinds={"numpy", "parquet"},
)
def heatmaps(
    context: dg.AssetExecutionContext, config: VideoBatch, lake: LakeResource
) -> dg.MaterializeResult:
    """Dwell and unique-track heat maps per video (image grid, geo grid, PNG overlay)."""
    store = lake.lake()
    outcomes = [
        stage.heatmaps_for_video(store, record)
        for record in _videos(store, context.partition_key, config)
    ]
    metadata = outcome_metadata(outcomes)
    pngs = [o.extra["png"] for o in outcomes if "png" in o.extra]
    if pngs:
        metadata["png"] = dg.MetadataValue.path(str(pngs[0]))
    return dg.MaterializeResult(metadata=metadata)


ODE_ASSETS = (events, event_stats, heatmaps)
