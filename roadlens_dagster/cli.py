"""``roadlens ingest`` and ``roadlens demo``: the commands that run the Dagster job.

They sit beside the code location they run; :func:`main` (the ``roadlens`` entry point)
adds them to the domain commands of :mod:`roadlens.cli`, which imports no Dagster.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadlens import cli
from roadlens.settings import roadlens_home
from roadlens.sinks.registry import SINKS

if TYPE_CHECKING:
    import dagster as dg

    from roadlens.registry import VideoRecord
    from roadlens.sinks.settings import SinkSettings

# The embedded instance's settings, package data of this package.
EMBEDDED_INSTANCE = Path(__file__).with_name("dagster.yaml")


def prepare_dagster_home() -> Path:
    """Default ``DAGSTER_HOME`` to ``$ROADLENS_HOME/dagster`` with the embedded instance config
    (``dagster.yaml`` of this package: pools, run queue lanes)."""
    home = Path(os.environ.get("DAGSTER_HOME") or roadlens_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(EMBEDDED_INSTANCE.read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


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

    from roadlens.registry import VIDEO_SUFFIXES, probe_video_record
    from roadlens_dagster.assets.batch import batch_run_config
    from roadlens_dagster.assets.jobs_config import JOB_ASSET_NAMES
    from roadlens_dagster.assets.ode import ODE_ASSETS
    from roadlens_dagster.assets.sinks import SINK_ASSETS
    from roadlens_dagster.orchestration.definitions import defs
    from roadlens_dagster.resources import (
        DetectorResource,
        LakeResource,
        SinksResource,
        SourcesResource,
    )
    from roadlens_dagster.resources.rules import RulesResource

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
            record = probe_video_record(
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
    from roadlens_dagster.orchestration.run_hygiene import open_instance

    instance = open_instance()
    # The same asset definitions the code location serves; resources are bound per call.
    from roadlens_dagster.assets.spine import SPINE

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
    from roadlens_dagster.assets.spine import DETECTOR_POOL
    from roadlens_dagster.orchestration.run_hygiene import (
        owner_tags,
        reclaim_dead_runs,
        slot_holders,
    )

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
    from roadlens.sinks.settings import SinkSettings
    from roadlens_dagster.assets.quality import max_quarantine_share
    from roadlens_dagster.resources.rules import RulesResource

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


# Sinks connected to once before the work (the registry's ``preflight``): each answers, or
# refuses a login, in well under a second. Kafka is not one: it spools while its broker is down.
PREFLIGHT_SINKS = tuple(name for name, spec in SINKS.items() if spec.preflight)


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
    from roadlens_dagster.assets.sinks import SINK_ASSET_NAMES

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
    prepare_dagster_home()
    overrides = {
        k: v
        for k, v in {"weights": args.weights, "backend": args.backend, "imgsz": args.imgsz}.items()
        if v
    }
    summary = ingest(
        args.paths,
        lake_root=cli.lake_root(args),
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
        f'lake: {cli.lake_root(args)}  (query it: roadlens query "SELECT * FROM detections LIMIT 5")'
    )
    return 1 if summary["bad_files"] else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from roadlens.synth import render_drive_set

    home = roadlens_home()
    landing = home / "landing"
    print(
        f"rendering {args.clips} synthetic dashcam clips of {args.seconds:.0f} s into {landing} ..."
    )
    clips = render_drive_set(landing, clips=args.clips, seconds=args.seconds, seed=args.seed)
    prepare_dagster_home()
    print("running the spine (videos -> frames -> raw_detections -> detections) in-process ...")
    from roadlens.detect.weights import DEMO_WEIGHTS

    # Synthetic scenes get the detector trained on them; real footage gets a COCO model.
    ingest(
        [str(c.video_path) for c in clips],
        lake_root=cli.lake_root(args),
        landing=landing,
        force=True,
        detector_overrides={"weights": str(DEMO_WEIGHTS)},
    )
    from roadlens.sinks.duckdb_views import query

    top = query(
        cli.lake_root(args),
        "SELECT class_name, count(*) AS n, count(DISTINCT (video_id, track_id)) AS tracks "
        "FROM detections GROUP BY 1 ORDER BY 2 DESC",
    ).frame
    print("\nDuckDB over the lake:\n" + top.to_string(index=False))
    print(
        f"\nlake: {cli.lake_root(args)}\ndagster home: {os.environ['DAGSTER_HOME']}  (make ui to browse runs)"
    )
    return 0


def add_commands(sub: cli.Subcommands) -> None:
    """Add ``ingest`` and ``demo`` to the ``roadlens`` command line."""
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
    p.add_argument(
        "--rules",
        help="ODE rule file (default $ROADLENS_RULES or roadlens_dagster/rules/examples.yaml)",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("demo", help="render a sample drive and run the whole spine on it")
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--seconds", type=float, default=12.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def main(argv: list[str] | None = None) -> int:
    """The ``roadlens`` command: the domain commands plus ``ingest`` and ``demo``."""
    return cli.main(argv, add_commands)


if __name__ == "__main__":
    sys.exit(main())
