"""``roadlens``: query the lake, evaluate against synthetic truth, run the services.

The domain commands; ``roadlens ingest`` and ``roadlens demo`` run the Dagster job and live
beside it (:mod:`roadlens_dagster.cli`, the ``roadlens`` entry point, adds them here).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeAlias

import duckdb
import numpy as np

from roadlens.settings import roadlens_home

if TYPE_CHECKING:
    from roadlens.sinks.settings import SinkSettings

# What a command group receives to add its commands to ``roadlens`` (see :func:`main`).
# argparse has no public name for it; a string, since the class is not generic at run time.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
CommandAdder: TypeAlias = Callable[[Subcommands], None]


def lake_root(args: argparse.Namespace) -> Path:
    """The lake of a command: ``--lake``, else ``$ROADLENS_LAKE``, else ``$ROADLENS_HOME/lake``."""
    return Path(args.lake or os.environ.get("ROADLENS_LAKE") or roadlens_home() / "lake").resolve()


def cmd_query(args: argparse.Namespace) -> int:
    from roadlens.sinks.duckdb_views import query

    lake = lake_root(args)
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

    lake = ParquetLake(lake_root(args))
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


def cmd_ode(args: argparse.Namespace) -> int:
    """Evaluate a rule file over any detections table, outside Dagster (the rule author's loop).

    Events, statistics and heat maps come from the functions the pipeline's stage uses
    (:mod:`roadlens.ode.stage`), so a rule author sees the numbers the pipeline will write.
    """
    import pyarrow.parquet as pq

    from roadlens.live.continuity import evaluate_with_context
    from roadlens.ode import load_rules
    from roadlens.ode.heatmap import render_png
    from roadlens.ode.stage import event_stats_of, frames_of, heatmaps_of

    rules = load_rules(args.rules)
    detections = pq.read_table(args.detections).to_pandas()
    # A lake file keeps its partition columns in its path (.../source_id=<id>/<video>.parquet).
    parent = Path(args.detections).resolve().parent.name
    if "source_id" not in detections and parent.startswith("source_id="):
        detections["source_id"] = parent.removeprefix("source_id=")
    detections["track_id"] = detections["track_id"].astype("Int64")
    given = pq.read_table(args.frames).to_pandas() if args.frames else None
    frames = given if given is not None else frames_of(detections)
    started = time.perf_counter()
    # No previous chunk here: the pipeline's evaluation without continuity context.
    events = evaluate_with_context(detections, given, rules, None)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, out / "events.parquet")
    events_df = events.to_pandas()
    pq.write_table(event_stats_of(events_df, frames), out / "event_stats.parquet")
    if len(detections):
        first = detections.iloc[0]
        maps = heatmaps_of(
            detections,
            frames,
            video_id=str(first["video_id"]),
            source_id=str(first["source_id"]),
            captured_at=frames["captured_at"].min(),
        )
        pq.write_table(maps.table, out / "heatmap.parquet")
        w, h = int(first["frame_width"]), int(first["frame_height"])
        render_png(maps.dwell, np.zeros((h, w, 3), np.uint8), out / "heatmap.png", units="s/frame")
    per_rule = events_df["rule_id"].value_counts().sort_index().to_dict() if len(events_df) else {}
    print(
        f"{len(rules.rules)} rules (sha256 {rules.sha256()[:12]}) over {len(detections)} detections "
        f"in {seconds:.2f}s ({seconds / max(len(frames), 1) * 1e6:.0f} µs per frame): "
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
        cache_dir=str(roadlens_home()),
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


def build_parser(*extensions: CommandAdder) -> argparse.ArgumentParser:
    """The ``roadlens`` parser: each of ``extensions`` adds its commands first."""
    parser = argparse.ArgumentParser(
        prog="roadlens",
        description="RoadLens: road video to data. Ingest videos, query the lake, serve it.",
    )
    parser.add_argument(
        "--lake", help="lake folder (default $ROADLENS_LAKE or $ROADLENS_HOME/lake)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add_commands in extensions:
        add_commands(sub)

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

    from roadlens.detect.weights import DEMO_WEIGHTS

    p = sub.add_parser("train-demo", help="train the demo detector on synthetic scenes")
    p.add_argument("--out", default=str(DEMO_WEIGHTS))
    p.add_argument("--work-dir", default=str(roadlens_home() / "train"))
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--imgsz", type=int, default=512)
    p.set_defaults(func=cmd_train_demo)

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


def main(argv: list[str] | None = None, *extensions: CommandAdder) -> int:
    """Run one ``roadlens`` command: one line and a non-zero status on error, never a trace."""
    args = build_parser(*extensions).parse_args(argv)
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
