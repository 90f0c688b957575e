"""The spine: ``videos`` -> ``frames`` -> ``raw_detections`` -> ``detections``.

Each asset writes the lake table of the same name (:mod:`roadlens.lake.catalog`).

Each asset is partitioned by capture date and processes the videos named in its run
config (a sensor micro-batch) or every video of the date that is not done yet (the
nightly backfill). Writes are explicit, one Parquet file per video, so any re-run is
idempotent and micro-batches of one date never clash.
"""

from collections import Counter

import dagster as dg

from roadlens import pipeline
from roadlens.lake import FRAMES_TABLE, RAW_DETECTIONS_TABLE, VIDEOS_TABLE
from roadlens.registry import list_candidates, probe_video_record, video_id_of
from roadlens.video import VideoError
from roadlens_dagster.assets.batch import VideoBatch, outcome_metadata
from roadlens_dagster.assets.quality import gate_check_result, gate_check_spec, publish_quarantine
from roadlens_dagster.orchestration.partitions import capture_date
from roadlens_dagster.resources import (
    DetectorResource,
    LakeResource,
    SinksResource,
    SourcesResource,
)

GROUP = "spine"
DETECTOR_POOL = "detector"  # one slot per instance (dagster.yaml): one model in memory


@dg.asset(partitions_def=capture_date, group_name=GROUP, kinds={"parquet"})
def videos(
    context: dg.AssetExecutionContext,
    config: VideoBatch,
    lake: LakeResource,
    sources: SourcesResource,
) -> dg.MaterializeResult:
    """The registry of discovered videos: id, source, path, size, capture time and its origin."""
    store = lake.lake()
    date = context.partition_key
    landing = sources.landing()
    if config.paths:
        paths = config.paths
    elif config.video_ids:
        paths = []  # already registered by the caller (sensor or ingest)
    else:
        # Nightly: every file in the landing folder that is not registered under any date yet.
        paths = [
            str(c.path)
            for c in list_candidates(landing)
            if not store.has_video(VIDEOS_TABLE, video_id_of(c.path, landing, sources.sources()))
        ]
    outcomes: list[pipeline.StageOutcome] = []
    skipped: Counter[str] = Counter()
    unreadable: dict[str, str] = {}
    for path in paths:
        try:
            record = probe_video_record(
                path,
                landing_root=landing,
                sources=sources.sources(),
                source_id=config.source_id or None,
                gps_path=config.gps or None,
            )
        except (ValueError, OSError) as exc:  # VideoError and GpsError are ValueErrors
            context.log.error(f"cannot register {path}: {exc}")
            unreadable[path] = str(exc)
            continue
        if record.capture_date != date:
            skipped["other date"] += 1
            continue
        outcomes.append(pipeline.register(store, record))
    context.log.info(f"{date}: registered {len(outcomes)} videos")
    metadata = outcome_metadata(outcomes, skipped=dict(skipped), unreadable=unreadable)
    # A bad file never stops the batch: it is logged as an error and listed in the
    # metadata (``unreadable``), and the good ones go on through the graph.
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=capture_date,
    group_name=GROUP,
    deps=[videos],
    kinds={"opencv", "parquet"},
    check_specs=[gate_check_spec("frames", "frames_valid", blocking=False)],
)
def frames(
    context: dg.AssetExecutionContext,
    config: VideoBatch,
    lake: LakeResource,
    sources: SourcesResource,
    sinks: SinksResource,
) -> dg.MaterializeResult:
    """Frames sampled at the configured rate by container timestamps: JPEGs plus an index table."""
    store = lake.lake()
    outcomes, failed = [], {}
    for record in pipeline.select_videos(
        store, context.partition_key, config.video_ids, force=config.force
    ):
        try:
            camera = sources.camera(record.path, sample_fps=config.sample_fps, kind=config.camera)
            outcome = pipeline.extract_frames(
                store, record, camera=camera, jpeg_quality=sources.jpeg_quality
            )
        except (VideoError, FileNotFoundError, ValueError) as exc:
            # Keep going: the other videos' frames are good and stay written.
            context.log.error(str(exc))
            failed[record.video_id] = str(exc)
            continue
        for warning in outcome.extra.get("warnings", []):
            context.log.warning(warning)
        context.log.info(f"{record.video_id}: {outcome.rows} frames in {outcome.seconds:.2f}s")
        outcomes.append(outcome)
    partial = [o.video_id for o in outcomes if o.extra.get("partial")]
    metadata = outcome_metadata(outcomes, partial_videos=partial, failed_videos=failed)
    publish_quarantine(context, sinks, store, "frames", [o.video_id for o in outcomes])
    # Videos that cannot be decoded fail the check and are listed; the others go on.
    check = gate_check_result(
        outcomes, asset="frames", name="frames_valid", blocking=False, failed_videos=failed
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


@dg.asset(
    partitions_def=capture_date,
    group_name=GROUP,
    deps=[frames],
    kinds={"pytorch", "parquet"},
    pool=DETECTOR_POOL,
)
def raw_detections(
    context: dg.AssetExecutionContext,
    config: VideoBatch,
    lake: LakeResource,
    detector: DetectorResource,
    sources: SourcesResource,
) -> dg.MaterializeResult:
    """YOLO boxes with track ids, one file per video, decoded once as a bounded stream.

    The backend that ran and the model's full class map are in the metadata.
    """
    store = lake.lake()
    weights = detector.resolved_weights()
    if weights.note:
        context.log.warning(weights.note)
    model = detector.get_detector()
    outcomes = []
    for record in pipeline.select_videos(
        store,
        context.partition_key,
        config.video_ids,
        force=config.force,
        needs=FRAMES_TABLE,
    ):

        def progress(done: int, total: int, fps: float, video_id: str = record.video_id) -> None:
            context.log.info(f"{video_id}: {done}/{total} frames, {fps:.1f} frames/s")

        camera = sources.camera(record.path, sample_fps=config.sample_fps, kind=config.camera)
        outcome = pipeline.detect_video(store, record, model, camera=camera, progress=progress)
        for warning in outcome.extra.get("warnings", []):
            context.log.warning(warning)
        outcomes.append(outcome)
    per_class: Counter[str] = Counter()
    for o in outcomes:
        per_class.update(o.extra.get("per_class", {}))
    return dg.MaterializeResult(
        metadata=outcome_metadata(
            outcomes,
            per_class=dict(per_class),
            backend=model.backend,
            model=model.model_name,
            model_sha256=model.model_sha256,
            model_classes={str(k): v for k, v in sorted(model.class_names.items())},
            demo_fallback=weights.note or "no",
        )
    )


@dg.asset(
    partitions_def=capture_date,
    group_name=GROUP,
    deps=[raw_detections],
    kinds={"pandas", "parquet"},
    check_specs=[gate_check_spec("detections", "detections_valid", blocking=True)],
)
def detections(
    context: dg.AssetExecutionContext,
    config: VideoBatch,
    lake: LakeResource,
    sources: SourcesResource,
    sinks: SinksResource,
) -> dg.MaterializeResult:
    """Detections with GPS (interpolated per frame), vehicle/session ids and deterministic ids.

    Rows that fail the detections suite go to ``quarantine_detections`` instead.
    """
    store = lake.lake()
    outcomes = [
        pipeline.enrich_video(store, record, max_gap_s=sources.max_gps_gap_s)
        for record in pipeline.select_videos(
            store,
            context.partition_key,
            config.video_ids,
            force=config.force,
            needs=RAW_DETECTIONS_TABLE,
        )
    ]
    warnings = [w for o in outcomes for w in o.extra.get("warnings", [])]
    for warning in warnings:
        context.log.warning(warning)
    publish_quarantine(context, sinks, store, "detections", [o.video_id for o in outcomes])
    check = gate_check_result(outcomes, asset="detections", name="detections_valid", blocking=True)
    return dg.MaterializeResult(
        metadata=outcome_metadata(outcomes, warnings=warnings), check_results=[check]
    )


SPINE = (videos, frames, raw_detections, detections)
