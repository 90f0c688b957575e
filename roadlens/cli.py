"""``roadlens``: ingest videos, query the lake, evaluate against synthetic truth, run the demo."""

from __future__ import annotations

import argparse
import errno
import io
import json
import os
import re
import signal
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import duckdb
import numpy as np

if TYPE_CHECKING:
    import dagster as dg

    from roadlens.registry import VideoRecord
    from roadlens.sinks.settings import SinkSettings

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _home() -> Path:
    return Path(os.environ.get("ROADLENS_HOME", ".roadlens")).resolve()


def _lake_root(args: argparse.Namespace) -> Path:
    return Path(args.lake or os.environ.get("ROADLENS_LAKE") or _home() / "lake").resolve()


def _prepare_dagster_home() -> Path:
    """Default ``DAGSTER_HOME`` to ``$ROADLENS_HOME/dagster`` with the project's embedded config."""
    home = Path(os.environ.get("DAGSTER_HOME") or _home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() and (PROJECT_ROOT / "dagster.yaml").exists():
        config.write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _import_definitions() -> dg.Definitions:
    # The code location lives next to the package in a source checkout.
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    from orchestration.definitions import defs

    return defs


def ingest(
    paths: list[str],
    *,
    lake_root: Path,
    landing: Path | None = None,
    gps: str | None = None,
    source_id: str | None = None,
    force: bool = False,
    detector_overrides: dict[str, Any] | None = None,
    quiet: bool = False,
    log_level: str = "INFO",
    rules: str | None = None,
    sample_fps: float | None = None,
    camera: str | None = None,
) -> dict[str, Any]:
    """Register ``paths`` and materialize the whole job for their capture dates; return a summary."""
    import dagster as dg

    defs = _import_definitions()
    from assets.batch import batch_run_config
    from assets.jobs_config import JOB_ASSET_NAMES
    from assets.ode import ODE_ASSETS
    from assets.sinks import SINK_ASSETS
    from resources import DetectorResource, LakeResource, SinksResource, SourcesResource
    from resources.rules import RulesResource
    from roadlens.registry import VIDEO_SUFFIXES, register_video

    files: list[Path] = []
    bad_files: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.exists():
            files.append(path)
        else:
            # A named file that is not there never stops the others: say what is true.
            bad_files[raw] = _missing(path)
            if not quiet:
                print(f"roadlens: skipping {raw}: {bad_files[raw]}", file=sys.stderr)
    not_found = len(bad_files)
    if not files:
        if bad_files:
            raise FileNotFoundError(
                "roadlens ingest: nothing to ingest: "
                + "; ".join(f"{p}: {why}" for p, why in bad_files.items())
            )
        raise ValueError(f"roadlens ingest: no video files in {paths}")
    if gps and len(files) > 1:
        raise ValueError(
            "roadlens ingest: --gps names one track, so give exactly one video with it"
        )
    landing = (landing or Path(os.path.commonpath([f.resolve().parent for f in files]))).resolve()
    sources = SourcesResource(landing_dir=str(landing))
    if camera or sample_fps:
        from roadlens.camera import CameraProfile

        CameraProfile.of(camera, sample_fps=sample_fps)  # a bad --kind/--fps fails before work
    _preflight(rules)
    detector = DetectorResource(**(detector_overrides or {}))
    if detector.remote_config() is None:
        # Weights are checked (and yolo11n.pt fetched) before any video is touched.
        weights = detector.resolved_weights()
        if weights.note and not quiet:
            print(f"roadlens: warning: {weights.note}", file=sys.stderr)
    by_date: dict[str, list[VideoRecord]] = defaultdict(list)
    for f in files:
        try:
            record = register_video(
                f,
                landing_root=landing,
                sources=sources.sources(),
                source_id=source_id,
                gps_path=gps,
            )
        except (ValueError, OSError) as exc:  # VideoError and GpsError are ValueErrors
            # One bad file never stops the batch: name it, go on, exit non-zero at the end.
            bad_files[str(f)] = str(exc)
            if not quiet:
                print(f"roadlens: skipping {f}: {exc}", file=sys.stderr)
            continue
        by_date[record.capture_date].append(record)
    by_path = {r.video_id: str(r.path) for rs in by_date.values() for r in rs}
    from orchestration.run_hygiene import open_instance

    instance = open_instance()
    # The same asset definitions the code location serves; resources are bound per call.
    from assets.spine import SPINE

    assert all(defs.resolve_assets_def(a.key) for a in (*SPINE, *ODE_ASSETS, *SINK_ASSETS))
    assets = [*SPINE, *ODE_ASSETS, *SINK_ASSETS]
    resources = {
        "lake": LakeResource(root=str(lake_root)),
        "sources": sources,
        "detector": detector,
        "sinks": SinksResource(),
        "rules": RulesResource(path=rules or ""),
    }
    summary: dict[str, Any] = {
        "dates": {},
        "lake": str(lake_root),
        "dagster_home": os.environ["DAGSTER_HOME"],
        "bad_files": bad_files,
    }
    from assets.spine import DETECTOR_POOL
    from orchestration.run_hygiene import owner_tags, reclaim_dead_runs, slot_holders

    for line in reclaim_dead_runs(instance):
        print(f"roadlens: {line}", file=sys.stderr)
    for date, records in sorted(by_date.items()):
        started = time.perf_counter()
        holders = slot_holders(instance, DETECTOR_POOL)
        if holders and not quiet:
            print(
                f"roadlens: the {DETECTOR_POOL} slot is held by run {', '.join(holders)} "
                "(another ingest on this home): detection waits until it ends",
                file=sys.stderr,
            )
        result = dg.materialize(
            assets,
            partition_key=date,
            resources=resources,
            instance=instance,
            run_config={
                **batch_run_config(
                    [r.video_id for r in records],
                    [r.path for r in records],
                    force=force,
                    source_id=source_id or "",
                    gps=gps or "",
                    sample_fps=sample_fps or 0.0,
                    camera=camera or "",
                    assets=JOB_ASSET_NAMES,
                ),
                "loggers": {"console": {"config": {"log_level": log_level}}},
            },
            tags={"lane": "ingest", **owner_tags()},
        )
        summary["dates"][date] = _run_summary(result, time.perf_counter() - started)
        for video_id, why in summary["dates"][date]["failed_videos"].items():
            bad_files[by_path.get(video_id, video_id)] = why
        if not quiet:
            print(format_summary(date, summary["dates"][date]))
    if bad_files and not quiet:
        print(
            f"roadlens: {len(bad_files)} of {len(files) + not_found} files could not be processed:"
        )
        for name, why in bad_files.items():
            print(f"  {name}: {why}")
    return summary


def _missing(path: Path) -> str:
    """Why ``path`` cannot be read: a symlink loop, a dangling link, or nothing there."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return "symlink loop"
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symlink loop"
            return f"broken symlink (its target {os.readlink(path)} does not exist)"
    return "no such file or folder"


def _preflight(rules: str | None) -> None:
    """Settings that can never work fail here, all at once, before any video is decoded."""
    from assets.quality import max_quarantine_share
    from resources.rules import RulesResource
    from roadlens.sinks.settings import SinkSettings

    settings = SinkSettings.from_env()
    problems = settings.problems()
    if not problems:
        problems += _unreachable_sinks(settings)
    try:
        max_quarantine_share()
    except ValueError as exc:
        problems.append(str(exc))
    resource = RulesResource(path=rules or "")
    try:
        resource.rule_set()
    except FileNotFoundError:
        problems.append(f"rules: {resource.rules_path()}: no such file")
    except (ValueError, OSError) as exc:
        problems.append(f"rules: {resource.rules_path()}: {exc}")
    if problems:
        raise ValueError("settings that cannot work:\n  " + "\n  ".join(problems))


# Sinks connected to once before the work: each answers (or refuses a login) in well under a
# second. Kafka is left out on purpose: while its broker is down records are spooled and
# replayed later, so an unreachable broker must not stop an ingest.
PREFLIGHT_SINKS = ("postgres", "mqtt", "amqp")


def _unreachable_sinks(settings: SinkSettings) -> list[str]:
    """One line per switched-on sink of :data:`PREFLIGHT_SINKS` that cannot be connected to."""
    from roadlens.sinks.base import SinkError
    from roadlens.sinks.settings import open_sink

    found = []
    for name in PREFLIGHT_SINKS:
        if not settings.enabled(name):
            continue
        try:
            open_sink(name, settings).close()
        except SinkError as exc:
            found.append(f"{settings.env_var(name)}: {exc}")
    return found


def _node_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    mats = result.asset_materializations_for_node(node)
    return {k: v.value for k, v in mats[-1].metadata.items()} if mats else {}


def _sink_summary(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    from assets.sinks import SINK_ASSET_NAMES

    sinks = {}
    for node in SINK_ASSET_NAMES:
        meta = _node_metadata(result, node)
        if meta:
            sinks[node] = meta
    return sinks


def _run_summary(result: dg.ExecuteInProcessResult, seconds: float) -> dict[str, Any]:
    meta = {
        node: _node_metadata(result, node)
        for node in ("videos", "frames", "raw_detections", "detections", "events")
    }
    heatmap_meta = _node_metadata(result, "heatmaps")
    frames = meta["frames"].get("per_video", {})
    dets = meta["raw_detections"].get("per_video", {})
    enriched = meta["detections"].get("per_video", {})
    per_class: Counter[str] = Counter()
    for v in dets.values():
        per_class.update(v.get("per_class", {}))
    rows = sum(v["rows"] for v in enriched.values())
    gps_rows = sum(v["rows"] * v.get("gps_coverage", 0.0) for v in enriched.values())
    return {
        "run_id": result.run_id,
        "failed_videos": dict(meta["frames"].get("failed_videos", {})),
        "videos": len(frames),
        "frames": sum(v["rows"] for v in frames.values()),
        "partial_videos": [k for k, v in frames.items() if v.get("partial")],
        "detections": rows,
        "per_class": dict(sorted(per_class.items())),
        "tracks": sum(v.get("tracks", 0) for v in dets.values()),
        "gps_coverage": gps_rows / rows if rows else 0.0,
        "warnings": list(meta["detections"].get("warnings", [])),
        "backend": meta["raw_detections"].get("backend", "?"),
        "model": meta["raw_detections"].get("model", "?"),
        "demo_fallback": meta["raw_detections"].get("demo_fallback", "no"),
        "decode_stopped": {
            k: v["decode_stopped"] for k, v in dets.items() if v.get("decode_stopped")
        },
        "seconds": {
            "frames": sum(v["seconds"] for v in frames.values()),
            "detections": sum(v["seconds"] for v in dets.values()),
            "model": sum(v.get("model_seconds", 0.0) for v in dets.values()),
            "enrich": sum(v["seconds"] for v in enriched.values()),
            "run_total": seconds,
        },
        "outputs": meta["detections"].get("files", []),
        "events": meta["events"].get("per_rule", {}),
        "rules": meta["events"].get("rules_path", ""),
        "heatmap_png": str(heatmap_meta.get("png", "")),
        "sinks": _sink_summary(result),
        "checks": _check_summary(result),
    }


def _check_summary(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """Each asset check's verdict and, for the quality gates, rows and quarantined rows."""
    checks = {}
    for evaluation in result.get_asset_check_evaluations():
        meta = {k: v.value for k, v in evaluation.metadata.items()}
        checks[evaluation.check_name] = {
            "passed": evaluation.passed,
            "rows": meta.get("rows"),
            "quarantined": meta.get("quarantined"),
        }
    return checks


def format_summary(date: str, s: dict[str, Any]) -> str:
    secs = s["seconds"]
    lines = [
        f"capture date {date}: {s['videos']} videos, run {s['run_id']}",
        f"  frames sampled     {s['frames']}"
        + (f"  (partial: {', '.join(s['partial_videos'])})" if s["partial_videos"] else ""),
        f"  detections         {s['detections']}  "
        + ", ".join(f"{k}={v}" for k, v in s["per_class"].items()),
        f"  tracks             {s['tracks']}",
        f"  GPS coverage       {s['gps_coverage']:.0%}",
        *(f"  warning            {w}" for w in s.get("warnings", [])),
        f"  detector           {s.get('model', '?')} on {s['backend']}"
        + (" (DEMO MODEL: no real detector)" if s.get("demo_fallback", "no") != "no" else ""),
        f"  seconds per stage  frames {secs['frames']:.2f} | detections {secs['detections']:.2f} "
        f"(model {secs['model']:.2f}) | enrich {secs['enrich']:.2f} | run total {secs['run_total']:.2f}",
    ]
    lines += [f"  decode stopped     {why}" for why in s.get("decode_stopped", {}).values()]
    lines += [f"  output             {p}" for p in s["outputs"]]
    events = s.get("events", {})
    lines.append(
        f"  rule events        {sum(events.values())}  "
        + (", ".join(f"{k}={v}" for k, v in sorted(events.items())) or "(no rule fired)")
        + (f"  [{Path(s['rules']).name}]" if s.get("rules") else "")
    )
    if s.get("heatmap_png"):
        lines.append(f"  heat map           {s['heatmap_png']}")
    if s.get("checks"):
        lines.append(
            "  quality checks     "
            + " | ".join(
                f"{name} {'passed' if c['passed'] else 'FAILED'}"
                + (f" ({c['quarantined']} of {c['rows']} rows quarantined)" if c["rows"] else "")
                for name, c in s["checks"].items()
            )
        )
    for node, meta in s.get("sinks", {}).items():
        if "skipped" in meta:
            lines.append(f"  {node:<18} off ({meta['skipped'].split(': ', 1)[-1]})")
        else:
            lines.append(
                f"  {node:<18} {meta['rows']} rows, {meta['videos_written']} videos written, "
                f"{meta['videos_unchanged']} unchanged, {meta['seconds']:.2f}s -> {meta['target']}"
            )
    return "\n".join(lines)


def cmd_ingest(args: argparse.Namespace) -> int:
    _prepare_dagster_home()
    overrides = {
        k: v
        for k, v in {"weights": args.weights, "backend": args.backend, "imgsz": args.imgsz}.items()
        if v
    }
    summary = ingest(
        args.paths,
        lake_root=_lake_root(args),
        landing=Path(args.landing) if args.landing else None,
        gps=args.gps,
        source_id=args.source_id,
        force=args.force,
        detector_overrides=overrides,
        rules=args.rules,
        sample_fps=args.fps,
        camera=args.kind,
    )
    print(
        f'lake: {_lake_root(args)}  (query it: roadlens query "SELECT * FROM detections LIMIT 5")'
    )
    return 1 if summary["bad_files"] else 0


def cmd_query(args: argparse.Namespace) -> int:
    from roadlens.sinks.duckdb_views import query

    lake = _lake_root(args)
    if not lake.is_dir():
        raise FileNotFoundError(f"lake folder not found: {lake} (ingest a video first, or --lake)")
    result = query(lake, args.sql)
    if args.format == "csv":
        print(result.frame.to_csv(index=False), end="")
    elif args.format == "json":
        print(result.frame.to_json(orient="records", date_format="iso"))
    else:
        with_pd_options = result.frame.to_string(index=False, max_rows=args.max_rows)
        print(with_pd_options)
        print(f"({len(result.frame)} rows, {result.seconds * 1000:.1f} ms)", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from roadlens.detect.evaluate import evaluate_detections, load_truth
    from roadlens.lake import FRAMES_TABLE, RAW_DETECTIONS_TABLE, ParquetLake
    from roadlens.sinks.duckdb_views import connect

    lake = ParquetLake(_lake_root(args))
    con = connect(lake.root)
    where = "" if not args.video_ids else "WHERE video_id IN (SELECT unnest(?))"
    params = [args.video_ids] if args.video_ids else []
    videos = con.execute(
        f"SELECT video_id, path FROM videos {where} ORDER BY video_id", params
    ).fetchall()
    if not videos:
        print("roadlens eval: no matching videos in the lake; ingest some first", file=sys.stderr)
        return 2
    reports = {}
    for video_id, path in videos:
        try:
            truth = load_truth(path)
        except FileNotFoundError as exc:
            print(f"skip {video_id}: {exc}", file=sys.stderr)
            continue
        preds = lake.read_video(RAW_DETECTIONS_TABLE, video_id).to_pandas()
        frames = lake.read_video(FRAMES_TABLE, video_id).column("frame_number").to_numpy()
        report = evaluate_detections(preds, truth, frames=frames, iou_threshold=args.iou)
        reports[video_id] = report.to_dict()
        print(f"== {video_id}\n{report.format()}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0 if reports else 2


def cmd_synth(args: argparse.Namespace) -> int:
    from roadlens.synth import render_drive_set

    clips = render_drive_set(
        args.out,
        vehicle_id=args.vehicle_id,
        session_id=args.session_id,
        clips=args.clips,
        seconds=args.seconds,
        fps=args.fps,
        seed=args.seed,
        view=args.view,
    )
    for clip in clips:
        print(f"{clip.video_path}  {clip.frames} frames, {len(clip.truth)} truth boxes")
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    from roadlens.detect.train import train_demo_detector

    result = train_demo_detector(
        args.out, work_dir=args.work_dir, epochs=args.epochs, imgsz=args.imgsz
    )
    print(json.dumps({"weights": str(result.weights), **result.metrics}, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from roadlens.synth import render_drive_set

    home = _home()
    landing = home / "landing"
    print(
        f"rendering {args.clips} synthetic dashcam clips of {args.seconds:.0f} s into {landing} ..."
    )
    clips = render_drive_set(landing, clips=args.clips, seconds=args.seconds, seed=args.seed)
    _prepare_dagster_home()
    print("running the spine (videos -> frames -> raw_detections -> detections) in-process ...")
    from roadlens.detect.weights import DEMO_WEIGHTS

    # Synthetic scenes get the detector trained on them; real footage gets a COCO model.
    ingest(
        [str(c.video_path) for c in clips],
        lake_root=_lake_root(args),
        landing=landing,
        force=True,
        detector_overrides={"weights": str(DEMO_WEIGHTS)},
    )
    from roadlens.sinks.duckdb_views import query

    top = query(
        _lake_root(args),
        "SELECT class_name, count(*) AS n, count(DISTINCT (video_id, track_id)) AS tracks "
        "FROM detections GROUP BY 1 ORDER BY 2 DESC",
    ).frame
    print("\nDuckDB over the lake:\n" + top.to_string(index=False))
    print(
        f"\nlake: {_lake_root(args)}\ndagster home: {os.environ['DAGSTER_HOME']}  (make ui to browse runs)"
    )
    return 0


def cmd_ode(args: argparse.Namespace) -> int:
    """Evaluate a rule file over any detections table, outside Dagster (the rule author's loop)."""
    import pyarrow.parquet as pq

    from roadlens.ode import load_rules
    from roadlens.ode.accumulate import binned_counts, stats_table
    from roadlens.ode.engine import evaluate_to_table
    from roadlens.ode.heatmap import image_grid, render_png, to_table

    rules = load_rules(args.rules)
    detections = pq.read_table(args.detections).to_pandas()
    # A lake file keeps its partition columns in its path (.../source_id=<id>/<video>.parquet).
    parent = Path(args.detections).resolve().parent.name
    if "source_id" not in detections and parent.startswith("source_id="):
        detections["source_id"] = parent.removeprefix("source_id=")
    detections["track_id"] = detections["track_id"].astype("Int64")
    frames = pq.read_table(args.frames).to_pandas() if args.frames else None
    started = time.perf_counter()
    events = evaluate_to_table(detections, frames, rules)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, out / "events.parquet")
    events_df = events.to_pandas()
    pq.write_table(stats_table(binned_counts(events_df)), out / "event_stats.parquet")
    grid = image_grid(detections, weight="dwell", segments=True)
    first = detections.iloc[0] if len(detections) else None
    if first is not None:
        pq.write_table(
            to_table(
                grid,
                video_id=str(first["video_id"]),
                source_id=str(first["source_id"]),
                heatmap_id="dwell",
                weight="dwell",
                captured_at=detections["captured_at"].min(),
            ),
            out / "heatmap.parquet",
        )
        w, h = int(first["frame_width"]), int(first["frame_height"])
        background = np.zeros((h, w, 3), np.uint8)
        render_png(grid, background, out / "heatmap.png", units="s")
    per_rule = events_df["rule_id"].value_counts().sort_index().to_dict() if len(events_df) else {}
    frames_n = (
        frames["frame_number"].nunique()
        if frames is not None
        else detections[["video_id", "frame_number"]].drop_duplicates().shape[0]
    )
    print(
        f"{len(rules.rules)} rules (sha256 {rules.sha256()[:12]}) over {len(detections)} detections "
        f"in {seconds:.2f}s ({seconds / max(frames_n, 1) * 1e6:.0f} µs per frame): "
        f"{events.num_rows} events"
    )
    for rule_id, n in per_rule.items():
        print(f"  {rule_id:<32} {n}")
    print(f"wrote {out}/events.parquet, event_stats.parquet, heatmap.parquet, heatmap.png")
    return 0


def _sink_settings() -> SinkSettings:
    from roadlens.sinks.settings import SinkSettings

    return SinkSettings.from_env()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from roadlens.redact import redact
    from roadlens.sinks.postgres import upgrade

    settings = _sink_settings()
    url = args.url or settings.postgres_url
    if not url:
        raise ValueError("roadlens db upgrade: set ROADLENS_POSTGRES_URL (or pass --url)")
    schema = args.schema or settings.postgres_schema
    applied = upgrade(url, schema)
    target = f"{redact(url)} schema {schema}"
    if applied:
        print(f"applied {len(applied)} migrations to {target}: " + ", ".join(applied))
    else:
        print(f"{target} is up to date")
    return 0


def _kafka_bootstrap(args: argparse.Namespace) -> str:
    bootstrap = args.bootstrap or _sink_settings().kafka_bootstrap
    if not bootstrap:
        raise ValueError("set ROADLENS_KAFKA_BOOTSTRAP (or pass --bootstrap)")
    return bootstrap


def cmd_tail(args: argparse.Namespace) -> int:
    from roadlens.sinks.kafka import tail, topic_name

    prefix = args.prefix or _sink_settings().kafka_prefix
    topics = [topic_name(prefix, t) for t in args.tables]
    for message in tail(
        _kafka_bootstrap(args),
        topics,
        from_beginning=args.from_beginning,
        dedupe=not args.no_dedupe,
        max_messages=args.max_messages,
        timeout_s=args.timeout,
        group_id=args.group,
    ):
        print(json.dumps(message, default=str), flush=True)
    return 0


def cmd_replay_spool(args: argparse.Namespace) -> int:
    from roadlens.sinks.kafka import replay_spool

    spool = Path(args.spool_dir) if args.spool_dir else Path(_sink_settings().spool_dir) / "kafka"
    report = replay_spool(_kafka_bootstrap(args), spool)
    print(json.dumps(report, indent=2, default=str))
    # Records still spooled mean the broker is not back: say so in the exit status.
    return 1 if report.get("remaining") else 0


def cmd_record(args: argparse.Namespace) -> int:
    import shlex

    from roadlens.live import RecorderConfig, record_until_signalled

    config = RecorderConfig(
        source=args.source,
        out_dir=args.out,
        chunk_seconds=args.chunk_seconds,
        source_id=args.source_id,
        codec=args.codec,
        realtime=not args.no_realtime,
        input_format=args.input_format,
        input_options=shlex.split(args.input_options or ""),
        io_timeout_s=args.io_timeout,
        reconnect_max_s=args.reconnect_max,
        max_reconnects=args.max_reconnects,
        ffmpeg=args.ffmpeg,
    )
    status = record_until_signalled(config)
    print(f"roadlens record: {status.state}, {status.chunks_closed} chunks", file=sys.stderr)
    return 0 if status.state == "STOPPED" else 1


def cmd_detect_server(args: argparse.Namespace) -> int:
    from roadlens.detect.server import ServerConfig, parse_sizes, serve

    config = ServerConfig(
        weights=args.weights or os.environ.get("ROADLENS_WEIGHTS") or ServerConfig.weights,
        device=args.device,
        backend=args.backend,
        imgsz=args.imgsz,
        min_conf=args.min_conf,
        max_batch=args.max_batch,
        max_inflight=args.max_inflight,
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        api_key_env=args.api_key_env,
        warmup=parse_sizes(args.warmup),
        cache_dir=str(_home()),
    )
    serve(config, host=args.host, port=args.port)
    return 0


def cmd_detect_test(args: argparse.Namespace) -> int:
    from roadlens.detect.remote import RemoteConfig, connectivity_test

    config = RemoteConfig(
        url=args.url,
        request_format=args.format,
        timeout_s=args.timeout,
        api_key_env=args.api_key_env,
    )
    report = connectivity_test(config, rounds=args.rounds)
    print(report.format())
    return 0 if report.ok else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from roadlens.service.server import serve
    from roadlens.service.settings import ServiceSettings

    serve(args.host, args.port, ServiceSettings.from_env(lake_root=args.lake))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roadlens", description=__doc__)
    parser.add_argument(
        "--lake", help="lake folder (default $ROADLENS_LAKE or $ROADLENS_HOME/lake)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="register videos and run the spine for their capture dates")
    p.add_argument("paths", nargs="+", help="video files or folders")
    p.add_argument(
        "--gps",
        help="GPS track (CSV, GPX, NMEA) for a single video; default: sidecar with the same stem",
    )
    p.add_argument(
        "--source-id", help="source id (default: from sources YAML or the folder layout)"
    )
    p.add_argument("--landing", help="landing root for the <vehicle>/<session>/<file> convention")
    p.add_argument(
        "--weights",
        help="ultralytics weights: .pt, .onnx, an OpenVINO folder, .engine "
        "(default $ROADLENS_WEIGHTS, else yolo11n.pt)",
    )
    p.add_argument(
        "--fps", type=float, help="frames sampled per second of video (default: the source's)"
    )
    p.add_argument(
        "--kind",
        choices=["dashcam", "fixed"],
        help="camera kind, for sampling and tracking defaults (default: the source's, else dashcam)",
    )
    p.add_argument("--backend", choices=["auto", "pytorch", "openvino", "onnx"])
    p.add_argument("--imgsz", type=int)
    p.add_argument("--force", action="store_true", help="reprocess videos that are done")
    p.add_argument("--rules", help="ODE rule file (default $ROADLENS_RULES or rules/examples.yaml)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("query", help="run SQL with DuckDB over the lake views")
    p.add_argument("sql")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--max-rows", type=int, default=60)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("eval", help="compare detections with synthetic ground truth")
    p.add_argument("video_ids", nargs="*")
    p.add_argument("--iou", type=float, default=0.5)
    p.add_argument("--json", help="also write the reports to this file")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("synth", help="render synthetic clips into a landing folder")
    p.add_argument("out")
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--view", choices=["dashcam", "roadside"], default="dashcam")
    p.add_argument("--vehicle-id", default="veh-01")
    p.add_argument("--session-id", default="session-a")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train-demo", help="train the demo detector on synthetic scenes")
    p.add_argument("--out", default=str(PROJECT_ROOT / "models" / "roadlens-det.pt"))
    p.add_argument("--work-dir", default=str(_home() / "train"))
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--imgsz", type=int, default=512)
    p.set_defaults(func=cmd_train_demo)

    p = sub.add_parser("demo", help="render a sample drive and run the whole spine on it")
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ode", help="evaluate a rule file over a detections table, outside Dagster")
    p.add_argument("--detections", required=True, help="detections Parquet (the lake's contract)")
    p.add_argument("--rules", required=True, help="rule file (YAML)")
    p.add_argument("--out", required=True, help="folder for events, statistics and heat maps")
    p.add_argument("--frames", help="frames Parquet, so absence sees frames with no detection")
    p.set_defaults(func=cmd_ode)

    p = sub.add_parser("db", help="PostgreSQL sink maintenance")
    db = p.add_subparsers(dest="db_command", required=True)
    q = db.add_parser("upgrade", help="apply pending migrations from roadlens/sql/postgres/")
    q.add_argument("--url", help="default $ROADLENS_POSTGRES_URL")
    q.add_argument("--schema", help="default $ROADLENS_POSTGRES_SCHEMA or roadlens")
    q.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("tail", help="print the Kafka topics' messages as JSON lines")
    p.add_argument(
        "tables", nargs="*", default=["detections", "events"], help="default: detections events"
    )
    p.add_argument("--bootstrap", help="default $ROADLENS_KAFKA_BOOTSTRAP")
    p.add_argument("--prefix", help="topic prefix (default $ROADLENS_KAFKA_PREFIX or roadlens)")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    p.add_argument("--no-dedupe", action="store_true", help="also print repeated ids")
    p.add_argument("--max-messages", type=int, help="stop after this many messages")
    p.add_argument("--timeout", type=float, default=5.0, help="stop after this many idle seconds")
    p.add_argument("--group", help="consumer group id (default: a throwaway group)")
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("replay-spool", help="send Kafka records spooled while the broker was down")
    p.add_argument("--bootstrap", help="default $ROADLENS_KAFKA_BOOTSTRAP")
    p.add_argument("--spool-dir", help="default $ROADLENS_HOME/spool/kafka")
    p.set_defaults(func=cmd_replay_spool)

    p = sub.add_parser("record", help="chunk a live source into MP4 files in a landing folder")
    p.add_argument("--source", required=True, help="rtsp/http/udp/... URL, device or file")
    p.add_argument("--out", required=True, help="output folder, normally <landing>/<source_id>")
    p.add_argument("--chunk-seconds", type=float, default=10.0)
    p.add_argument("--source-id", help="chunk name prefix (default: the --out folder's name)")
    p.add_argument("--codec", default="auto", help="auto, copy, reencode or an ffmpeg encoder")
    p.add_argument("--no-realtime", action="store_true", help="read a file source at full speed")
    p.add_argument("--input-format", help="ffmpeg input format (-f), e.g. v4l2, lavfi")
    p.add_argument("--input-options", help='extra ffmpeg input options, e.g. "-rtsp_transport tcp"')
    p.add_argument("--io-timeout", type=float, default=5.0, help="network read timeout (s)")
    p.add_argument("--reconnect-max", type=float, default=30.0, help="back-off cap (s)")
    p.add_argument("--max-reconnects", type=int, help="give up after N failed reconnects")
    p.add_argument("--ffmpeg", help="ffmpeg binary (default: imageio-ffmpeg's)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("serve", help="REST and WebSocket API over the lake (docs/service.md)")
    p.add_argument("--host", default="127.0.0.1", help="non-loopback needs API keys")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("detect-server", help="serve the detector over HTTP (no tracking)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8766, help="default 8766 (serve uses 8765)")
    p.add_argument("--weights", help="default $ROADLENS_WEIGHTS or roadlens/models/roadlens-det.pt")
    p.add_argument("--device", default="cpu", help="cpu, cuda:0, ...")
    p.add_argument("--backend", choices=["auto", "pytorch", "openvino", "onnx"], default="auto")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--min-conf", type=float, default=0.01, help="the model's own threshold")
    p.add_argument("--max-batch", type=int, default=32, help="frames per request at most")
    p.add_argument("--max-inflight", type=int, default=4, help="admitted requests; more get 503")
    p.add_argument("--max-body-mb", type=float, default=64.0)
    p.add_argument("--api-key-env", help="require the key held by this environment variable")
    p.add_argument("--warmup", default="640x360", help="frame sizes to load first, or none")
    p.set_defaults(func=cmd_detect_server)

    p = sub.add_parser("detect-test", help="test a detection provider: health, info, latency")
    p.add_argument("--url", required=True, help="provider base URL, e.g. http://gpu-box:8766")
    p.add_argument("--format", choices=["multipart", "json"], default="multipart")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--rounds", type=int, default=3, help="synthetic-frame round trips")
    p.add_argument("--api-key-env", help="environment variable holding the API key")
    p.set_defaults(func=cmd_detect_test)
    return parser


class _NoStackTraces(io.TextIOBase):
    """stderr without stack traces: Dagster's console log prints one under every failed
    step; the run's event log keeps it (Dagster UI), the user reads the one-line cause.
    ``ROADLENS_DEBUG=1`` shows them."""

    _STARTS = ("Stack Trace:", "Traceback (most recent call last):")
    _RECORD = re.compile(r"^(\x1b\[[0-9;]*m)*(\d{4}-\d{2}-\d{2} |roadlens)")

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.skipping = False
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        if self.skipping and not self._RECORD.match(line):
            return
        self.skipping = False
        if line.strip() in self._STARTS:
            self.skipping = True
            self.target.write("  (stack trace left out: it is in the run's Dagster event log)\n")
            return
        self.target.write(line + "\n")

    def flush(self) -> None:
        self.target.flush()


def _interrupted(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was caused by, an interrupt (SIGINT, or SIGTERM turned into one)."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, KeyboardInterrupt) or type(exc).__name__ == (
            "DagsterExecutionInterruptedError"
        ):
            return True
        exc = getattr(exc, "user_exception", None) or exc.__cause__ or exc.__context__
        seen += 1
    return False


INTERRUPTED = (
    "roadlens: interrupted: the run is marked failed; videos finished before the interrupt "
    "stay in the lake, re-run the command to finish the rest"
)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    # Dagster stops a run cleanly on SIGINT (at the next safe point); SIGTERM goes that way.
    os.kill(os.getpid(), signal.SIGINT)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    stderr = sys.stderr
    if os.environ.get("ROADLENS_DEBUG") != "1":
        sys.stderr = _NoStackTraces(stderr)
    try:
        return _run(args)
    finally:
        sys.stderr.flush()
        sys.stderr = stderr


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except Exception as exc:
        return _report(exc)
    except BaseException as exc:  # Dagster's interrupt error is a BaseException
        if not _interrupted(exc):
            raise
        print(INTERRUPTED, file=sys.stderr)
        return 130


def _report(exc: Exception) -> int:
    """One line on stderr for an error that ended a command; its exit status."""
    if _interrupted(exc):
        print(INTERRUPTED, file=sys.stderr)
        return 130
    if isinstance(exc, FileNotFoundError | ValueError):
        print(f"roadlens: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, OSError):  # a read-only home or lake, a full disk, ...
        print(f"roadlens: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    if isinstance(exc, duckdb.Error):
        print(f"roadlens: query failed: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, RuntimeError):  # SinkError and friends: the message names sink and target
        print(f"roadlens: {exc}", file=sys.stderr)
        return 1
    # A step's own error (bad weights, a video that cannot be read) reaches Dagster's
    # wrapper; the user sees the cause, not the wrapper's traceback.
    cause = getattr(exc, "user_exception", None) or exc.__cause__
    if isinstance(cause, FileNotFoundError | ValueError | RuntimeError):
        print(f"roadlens: error: {cause}", file=sys.stderr)
        return 2
    if isinstance(cause, OSError):
        print(f"roadlens: error: {_os_error(cause)}", file=sys.stderr)
        return 2
    raise exc


def _os_error(exc: OSError) -> str:
    """``<path>: <reason>`` for an operating-system error, e.g. a folder that is read-only."""
    if exc.filename is None:
        return str(exc)
    return f"{exc.filename}: {exc.strerror or type(exc).__name__}"


if __name__ == "__main__":
    sys.exit(main())
