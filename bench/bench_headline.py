"""Headline benchmark: RoadLens on a real 1080p30 drive against the machine's floor and a peer.

Issue "Real footage at real scale" asks whether ``roadlens ingest`` runs close to what
this machine can do at best on real footage, and how far ahead of the script a user
would write instead it is. One run measures, on the same file and the same weights:

1. **The input**: a drive of ``--minutes`` (default 5) of 1080p30 made from the shared
   ``dashcam.mp4`` with the ffmpeg that ``imageio-ffmpeg`` ships (``-stream_loop -1``,
   ``scale=1920:1080``, libx264 ``veryfast`` CRF 23, no audio). It is cached in
   ``bench/results/cache/`` (git-ignored) under a name holding its parameters and the
   source's hash, so reruns don't re-encode. Longer drives (a multiple of 5 minutes, e.g.
   ``--minutes 60``) are the 5-minute file concatenated with ffmpeg's concat demuxer and
   ``-c copy`` (no re-encode); every drive is checked to probe as ``minutes * 1800``
   frames with strictly increasing decode timestamps and evenly spaced presentation ones.
2. **The floor**: (a) the fastest decode of the frames sampled at 5 fps among the ffmpeg
   CLI (``-vf fps=5 -pix_fmt bgr24 -f rawvideo -`` into a null sink), OpenCV
   ``grab()``/``retrieve()`` at stride 6 and PyAV (``thread_type=AUTO``, only every 6th
   frame converted to bgr24); each decoder's seconds are reported, the minimum counts.
   (b) The model alone over the same sampled frames, decoded beforehand into a bounded
   buffer (``--buffer`` frames, decoded and inferred in turn, never at once) so only the
   model is timed, loaded and warmed up untimed, two ways: ultralytics
   ``YOLO(yolo11n_int8_openvino_model).predict(frame, imgsz=640, conf=0.25, iou=0.5)``
   (OpenVINO LATENCY, one frame at a time) and RoadLens's ``OpenVINOEngine`` (the same
   pre- and post-processing, THROUGHPUT hint, requests in flight); the faster counts.
   Floor = fastest decode + fastest model: what a process that did nothing but decode and
   infer would need.
3. **RoadLens end to end**: ``roadlens ingest <drive> --source-id bench-cam --rules <a
   file with one cross rule>`` in a subprocess with a fresh ``ROADLENS_HOME``, the shared
   weights (``ROADLENS_WEIGHTS``), the PostgreSQL sink on (a fresh database, dropped
   afterwards) and the Kafka sink on (a Tansu broker started here). Wall time, the peak
   of the RSS summed over the whole process tree (psutil, every 0.1 s), CPU seconds, the
   lake's size as a share of the video's bytes and, from the printed summary, the seconds
   per stage and the detection stage's share spent inside the model.
4. **The peer**: plain ultralytics ``YOLO(w).track(source, vid_stride=6, stream=True,
   imgsz=640, conf=0.25, iou=0.5)`` with its boxes collected into a pyarrow table and
   written to Parquet, in a subprocess measured the same way.

Targets: e2e / floor <= 1.1, peer / e2e >= 2, model share >= 0.8, peak RSS <= 2.5 GB,
lake <= 10 % of the video. The machine is shared, so the load average at the start and
end is recorded; the steps run one after the other, not interleaved (each takes minutes),
so expect some noise between them.

Shared data is read from ``<repo>/../shared/data`` and ``<repo>/../shared/models`` unless
``ROADLENS_SHARED_DATA`` / ``ROADLENS_SHARED_MODELS`` point elsewhere;
``ROADLENS_BENCH_CACHE`` moves the drive cache, ``ROADLENS_BENCH_POSTGRES_URL`` names the
server (default the local one, database ``test``).

Usage:
    .venv/bin/python bench/bench_headline.py [--minutes 5] [--skip-floor] [--skip-peer]
        [--keep] [--buffer 64] [--out bench/results/headline] [--prepare-only]

Writes ``<out>.md`` and ``<out>.json`` (default ``bench/results/headline``, or
``headline-<N>min`` when ``--minutes`` is not 5).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Before ultralytics is imported anywhere: no downloads, no settings chatter.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED_DATA = Path(os.environ.get("ROADLENS_SHARED_DATA") or REPO.parent / "shared" / "data")
SHARED_MODELS = Path(os.environ.get("ROADLENS_SHARED_MODELS") or REPO.parent / "shared" / "models")
CACHE = Path(os.environ.get("ROADLENS_BENCH_CACHE") or REPO / "bench" / "results" / "cache")
RESULTS = REPO / "bench" / "results"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
SOURCE_CLIP = "dashcam.mp4"
WEIGHTS_NAME = "yolo11n_int8_openvino_model"
BIN = Path(sys.executable).parent

WIDTH, HEIGHT, FPS = 1920, 1080, 30
SAMPLE_FPS = 5
STRIDE = FPS // SAMPLE_FPS
CRF, PRESET = 23, "veryfast"
BASE_MINUTES = 5
IMGSZ, CONF, IOU = 640, 0.25, 0.5
GB = 1e9

TARGETS = {  # name: (comparison, goal)
    "e2e / floor": ("<=", 1.1),
    "peer / e2e": (">=", 2.0),
    "model share": (">=", 0.8),
    "peak RSS GB": ("<=", 2.5),
    "lake % of video": ("<=", 10.0),
}

RULES_YAML = """\
# One counting line across the full width at 60 % of the height (the headline's cross rule).
version: 1
areas:
  count-line:
    line: [[0.0, 0.6], [1.0, 0.6]]
    normalized: true
    extend: true
    in_side: right
rules:
  - id: vehicles-cross-count-line
    name: Vehicles crossing the count line
    criteria: {classes: [car, truck, bus, motorcycle]}
    anchor: center
    trigger: {cross: {line: count-line}}
"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the input drive ---------------------------------------------------------------------


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_frames(minutes: float) -> int:
    return round(minutes * 60 * FPS)


def drive_path(minutes: float, source: Path) -> Path:
    """The cache file of a drive: its parameters and the source's hash are in its name."""
    tag = sha256_of(source)[:12]
    return CACHE / f"drive-{minutes:g}min-{HEIGHT}p{FPS}-{PRESET}-crf{CRF}-{tag}.mp4"


def run_ffmpeg(args: Sequence[str], what: str) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-v", "error", "-nostdin", "-y", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg ({what}) failed with {done.returncode}:\n{done.stderr[-3000:]}")


def encode_drive(source: Path, minutes: float, out: Path) -> None:
    seconds = minutes * 60
    log(f"encoding a {minutes:g}-minute {HEIGHT}p{FPS} drive from {source.name} (takes minutes)")
    partial = out.with_suffix(".partial.mp4")
    run_ffmpeg(
        ["-stream_loop", "-1", "-i", str(source), "-vf", f"scale={WIDTH}:{HEIGHT}",
         "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-an", "-t", f"{seconds:g}",
         str(partial)],
        "encode",
    )  # fmt: skip
    os.replace(partial, out)


def concat_drive(base: Path, copies: int, out: Path) -> None:
    log(f"concatenating {copies} copies of {base.name} (-c copy, no re-encode)")
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{base.resolve()}'\n" for _ in range(copies)))
    partial = out.with_suffix(".partial.mp4")
    try:
        run_ffmpeg(
            ["-fflags", "+genpts", "-f", "concat", "-safe", "0", "-i", str(listing),
             "-c", "copy", str(partial)],
            "concat",
        )  # fmt: skip
        os.replace(partial, out)
    finally:
        listing.unlink(missing_ok=True)


@dataclass
class DriveCheck:
    """What the drive's container says and what demuxing every packet found."""

    frames_header: int
    packets: int
    dts_monotonic: bool
    pts_uniform: bool
    width: int
    height: int
    fps: float
    duration_s: float


def check_drive(path: Path) -> DriveCheck:
    """Demux every video packet: count them, check dts rise and pts are evenly spaced."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        last = None
        monotonic = True
        pts: list[int] = []
        for packet in container.demux(stream):
            if packet.dts is None:
                continue  # the flush packet
            if last is not None and packet.dts <= last:
                monotonic = False
            last = packet.dts
            if packet.pts is not None:
                pts.append(packet.pts)
        steps = np.unique(np.diff(np.sort(np.asarray(pts)))) if len(pts) > 1 else np.array([])
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        return DriveCheck(
            frames_header=int(stream.frames),
            packets=len(pts),
            dts_monotonic=monotonic,
            pts_uniform=len(steps) <= 1,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(stream.average_rate or 0),
            duration_s=duration,
        )


def prepare_drive(minutes: float) -> tuple[Path, DriveCheck]:
    source = SHARED_DATA / SOURCE_CLIP
    if not source.is_file():
        raise FileNotFoundError(
            f"the shared clip {SOURCE_CLIP} is missing; set ROADLENS_SHARED_DATA to its folder"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    out = drive_path(minutes, source)
    if out.exists():
        log(f"drive cached: {out.name}")
    elif minutes > BASE_MINUTES and minutes % BASE_MINUTES == 0:
        base, _ = prepare_drive(BASE_MINUTES)
        concat_drive(base, int(minutes // BASE_MINUTES), out)
    else:
        encode_drive(source, minutes, out)
    check = check_drive(out)
    want = expected_frames(minutes)
    problems = []
    if check.frames_header != want or check.packets != want:
        problems.append(f"{check.frames_header} frames in the header, {check.packets} packets")
    if not check.dts_monotonic:
        problems.append("decode timestamps not strictly increasing")
    if not check.pts_uniform:
        problems.append("presentation timestamps not evenly spaced")
    if (check.width, check.height) != (WIDTH, HEIGHT):
        problems.append(f"{check.width}x{check.height}")
    if problems:
        bad = out.with_suffix(".bad.mp4")
        os.replace(out, bad)
        raise RuntimeError(f"{out.name}: expected {want} frames, got {'; '.join(problems)}")
    log(
        f"drive: {check.packets} frames, {check.width}x{check.height} @ {check.fps:g} fps, "
        f"{out.stat().st_size / 1e6:.1f} MB, timestamps monotonic"
    )
    return out, check


# -- the floor ---------------------------------------------------------------------------


def decode_ffmpeg_cli(path: Path) -> int:
    """ffmpeg's own fps filter and bgr24 conversion, written into a null sink."""
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-vf", f"fps={SAMPLE_FPS}",
           "-pix_fmt", "bgr24", "-f", "rawvideo", "-"]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return 0  # frames are discarded; the count is not known here


def decode_opencv(path: Path) -> int:
    import cv2

    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    delivered = index = 0
    try:
        while capture.grab():
            if index % STRIDE == 0:
                ok, _ = capture.retrieve()
                delivered += ok
            index += 1
    finally:
        capture.release()
    return delivered


def iter_pyav(path: Path) -> Iterator[Any]:
    """Every ``STRIDE``-th frame as a bgr24 array; the others decoded, never converted."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index % STRIDE == 0:
                yield frame.to_ndarray(format="bgr24")


def decode_pyav(path: Path) -> int:
    return sum(1 for _ in iter_pyav(path))


DECODERS = {
    "ffmpeg CLI (-vf fps=5, bgr24, null sink)": decode_ffmpeg_cli,
    "OpenCV grab/retrieve stride 6": decode_opencv,
    "PyAV thread AUTO, every 6th to bgr24": decode_pyav,
}


def load_yolo(weights: Path) -> Any:
    from ultralytics import YOLO

    return YOLO(str(weights), task="detect")


def ultralytics_runner(weights: Path) -> Any:
    """Frames in, box counts out: ``YOLO(weights).predict`` one frame at a time."""
    model = load_yolo(weights)

    def run(images: list[Any]) -> int:
        found = 0
        for image in images:
            found += len(model.predict(image, imgsz=IMGSZ, conf=CONF, iou=IOU, verbose=False)[0])
        return found

    return run


def engine_runner(weights: Path) -> Any:
    """The same with RoadLens's OpenVINOEngine (THROUGHPUT hint, requests in flight)."""
    from roadlens.detect.openvino_engine import OpenVINOEngine, ir_file

    xml = ir_file(weights)
    assert xml is not None, f"{weights} is not an OpenVINO export"
    engine = OpenVINOEngine(xml)

    def run(images: list[Any]) -> int:
        pairs = enumerate(images)
        return sum(len(b) for _, b in engine.run(pairs, conf=CONF, iou=IOU))

    return run


MODEL_RUNNERS = {
    "ultralytics predict (LATENCY)": ultralytics_runner,
    "RoadLens OpenVINOEngine (THROUGHPUT)": engine_runner,
}


def model_floor(path: Path, weights: Path, buffer: int, runner: str) -> dict[str, Any]:
    """Seconds inside the model over the sampled frames; decoding happens between chunks."""
    frames = iter_pyav(path)
    first = next(frames)
    began = time.perf_counter()
    run = MODEL_RUNNERS[runner](weights)
    run([first])  # compile, warm up
    load_s = time.perf_counter() - began
    seconds = cpu = 0.0
    count = boxes = 0
    chunk = [first]
    exhausted = False
    next_note = 500
    while chunk:
        started, own0 = time.perf_counter(), time.process_time()
        boxes += run(chunk)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - own0
        count += len(chunk)
        chunk = []
        while not exhausted and len(chunk) < buffer:
            try:
                chunk.append(next(frames))
            except StopIteration:
                exhausted = True
        if count >= next_note and chunk:
            log(f"  model: {count} frames, {seconds / count * 1e3:.1f} ms/frame")
            next_note += 500
    del run
    gc.collect()
    return {
        "runner": runner,
        "seconds": seconds,
        "cpu_s": cpu,
        "frames": count,
        "ms_per_frame": seconds / count * 1e3 if count else float("nan"),
        "boxes": boxes,
        "load_and_warmup_s": load_s,
    }


def measure_floor(path: Path, weights: Path, buffer: int) -> dict[str, Any]:
    decode: dict[str, dict[str, float]] = {}
    for name, decoder in DECODERS.items():
        log(f"floor: decoding with {name}")
        cpu0, own0 = children_cpu(), time.process_time()
        started = time.perf_counter()
        delivered = decoder(path)
        wall = time.perf_counter() - started
        cpu = children_cpu() - cpu0 + time.process_time() - own0
        decode[name] = {"seconds": wall, "frames": delivered, "cpu_s": cpu}
        log(f"  {wall:.1f} s, {cpu:.1f} CPU s" + (f", {delivered} frames" if delivered else ""))
    fastest = min(decode, key=lambda k: decode[k]["seconds"])
    models = {}
    for runner in MODEL_RUNNERS:
        log(f"floor: model alone on the sampled frames with {runner} (only the model timed)")
        models[runner] = model_floor(path, weights, buffer, runner)
        got = models[runner]
        log(f"  {got['seconds']:.1f} s, {got['cpu_s']:.1f} CPU s for {got['frames']} frames")
    model = min(models.values(), key=lambda m: m["seconds"])
    return {
        "models": models,
        "decode": decode,
        "decode_min_s": decode[fastest]["seconds"],
        "decode_min_method": fastest,
        "model": model,
        "floor_s": decode[fastest]["seconds"] + model["seconds"],
        "floor_cpu_s": decode[fastest]["cpu_s"] + model["cpu_s"],
    }


# -- subprocesses: wall, CPU and the process tree's peak RSS -----------------------------


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_rss(root: Any) -> list[tuple[str, int]]:
    """``(name, RSS)`` of ``root`` and of each of its descendants (names only, no paths)."""
    import psutil

    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    found = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            found.append((process.name(), process.memory_info().rss))
    return found


@dataclass
class ProcessRun:
    """One measured subprocess."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_tree_rss: int
    peak_single_rss: int
    peak_processes: list[tuple[str, int]]
    log_tail: str = ""


def run_measured(
    cmd: Sequence[str], *, env: dict[str, str], log_path: Path, label: str
) -> ProcessRun:
    """Run ``cmd`` with output to ``log_path``; poll the tree's RSS every 0.1 s."""
    import psutil

    cpu0 = children_cpu()
    peak = peak_single = 0
    peak_processes: list[tuple[str, int]] = []
    with log_path.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        root = psutil.Process(process.pid)
        next_note = started + 30
        while process.poll() is None:
            processes = tree_rss(root)
            total = sum(rss for _, rss in processes)
            if total > peak:
                peak, peak_processes = total, processes
            peak_single = max([peak_single, *(rss for _, rss in processes)])
            now = time.perf_counter()
            if now >= next_note:
                log(f"  {label}: {now - started:.0f} s, RSS now {total / GB:.2f} GB, peak "
                    f"{peak / GB:.2f} GB")  # fmt: skip
                next_note = now + 30
            time.sleep(0.1)
        wall = time.perf_counter() - started
    tail = log_path.read_text(errors="replace")[-6000:]
    return ProcessRun(
        process.returncode, wall, children_cpu() - cpu0, peak, peak_single, peak_processes, tail
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROADLENS_", "DAGSTER_"))}
    env.update(YOLO_OFFLINE="1", YOLO_VERBOSE="False", **extra)
    return env


def dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def lake_breakdown(lake: Path) -> dict[str, int]:
    """Bytes of each table of the lake (and of each kind of media), largest first."""
    parts: dict[str, int] = {}
    if not lake.exists():
        return parts
    for child in lake.iterdir():
        if child.is_dir() and child.name == "media":
            for kind in child.iterdir():
                parts[f"media/{kind.name}"] = dir_bytes(kind) if kind.is_dir() else 0
        else:
            parts[child.name] = dir_bytes(child) if child.is_dir() else child.stat().st_size
    return dict(sorted(parts.items(), key=lambda kv: -kv[1]))


def dagster_steps(dagster_home: Path, run_ids: Sequence[str]) -> dict[str, float]:
    """Wall seconds of every asset step of the ingest runs, from the run's own storage."""
    import warnings

    from bench.bench_live_latency import step_seconds

    steps: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import dagster as dg

        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            for run_id in run_ids:
                for key, seconds in step_seconds(instance, run_id).items():
                    steps[key] = steps.get(key, 0.0) + seconds
    return dict(sorted(steps.items(), key=lambda kv: -kv[1]))


# -- RoadLens end to end -----------------------------------------------------------------

_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def parse_summary(text: str) -> dict[str, Any]:
    """Whatever the ``roadlens ingest`` summary says, field by field; missing fields omitted."""
    out: dict[str, Any] = {}
    stages: dict[str, float] = {}
    sinks: dict[str, str] = {}
    start = text.find("capture date ")  # the summary follows Dagster's own log lines
    for line in text[max(start, 0) :].splitlines():
        stripped = line.strip()
        if "seconds per stage" in stripped:
            rest = stripped.split("seconds per stage", 1)[1]
            for name, value in re.findall(r"([A-Za-z][A-Za-z_ ]*?)\s+" + _NUMBER, rest):
                stages[name.strip().replace(" ", "_")] = stages.get(
                    name.strip().replace(" ", "_"), 0.0
                ) + float(value)
        elif m := re.match(r"capture date .*, run ([0-9a-f-]{36})", stripped):
            out.setdefault("run_ids", []).append(m.group(1))
        elif m := re.match(r"frames sampled\s+(\d+)", stripped):
            out["frames_sampled"] = out.get("frames_sampled", 0) + int(m.group(1))
        elif m := re.match(r"detections\s+(\d+)", stripped):
            out["detections"] = out.get("detections", 0) + int(m.group(1))
        elif m := re.match(r"tracks\s+(\d+)", stripped):
            out["tracks"] = out.get("tracks", 0) + int(m.group(1))
        elif m := re.match(r"backend\s+(\S+)", stripped):
            out["backend"] = m.group(1)
        elif m := re.match(r"detector\s+(.+)$", stripped):
            out["detector"] = m.group(1)
        elif m := re.match(r"rule events\s+(\d+)", stripped):
            out["rule_events"] = out.get("rule_events", 0) + int(m.group(1))
        elif m := re.match(r"((?:pg|postgres|kafka)_\w+)\s+(.*)$", stripped):
            sinks[m.group(1)] = re.sub(r"\s*->.*$", "", m.group(2))  # no targets (URLs)
    if stages:
        out["stages_s"] = stages
    if sinks:
        out["sinks"] = sinks
    detections_s, model_s = stages.get("detections"), stages.get("model")
    if detections_s and model_s is not None:
        out["model_share"] = model_s / detections_s
    return out


def postgres_rows(url: str) -> dict[str, int]:
    """Rows of each RoadLens table in the benchmark's database (empty when unreadable)."""
    import psycopg

    counts: dict[str, int] = {}
    with contextlib.suppress(Exception), psycopg.connect(url, connect_timeout=5) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'roadlens' "
            "AND table_name IN ('detections', 'events')"
        ).fetchall()
        for (table,) in tables:
            row = conn.execute(f'SELECT count(*) FROM roadlens."{table}"').fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def measure_roadlens(drive: Path, weights: Path, workdir: Path, pg_url: str) -> dict[str, Any]:
    from bench.bench_live_latency import drop_database, fresh_database, start_tansu

    home = workdir / "roadlens_home"
    home.mkdir()
    rules = workdir / "headline-rules.yaml"
    rules.write_text(RULES_YAML)
    tansu, bootstrap = start_tansu(workdir)
    database, _ = fresh_database(pg_url)
    db_url = urlunsplit(urlsplit(pg_url)._replace(path=f"/{database}"))
    result: dict[str, Any] = {}
    try:
        try:
            from roadlens.sinks.kafka import ensure_topics

            ensure_topics(bootstrap, "roadlens", ["detections", "events"])
        except Exception as exc:  # the sink may create them itself; note and go on
            result["note_topics"] = f"ensure_topics failed: {exc}"
        env = clean_env(
            ROADLENS_HOME=str(home),
            ROADLENS_WEIGHTS=str(weights),
            ROADLENS_POSTGRES_URL=db_url,
            ROADLENS_KAFKA_BOOTSTRAP=bootstrap,
            YOLO_CONFIG_DIR=str(home / "ultralytics"),
        )
        cmd = [str(BIN / "roadlens"), "ingest", str(drive), "--source-id", "bench-cam",
               "--rules", str(rules)]  # fmt: skip
        log("RoadLens: roadlens ingest <drive> --source-id bench-cam --rules <cross rule> "
            "(PostgreSQL and Kafka sinks on)")  # fmt: skip
        run = run_measured(cmd, env=env, log_path=workdir / "ingest.log", label="ingest")
        lake = home / "lake"
        result.update(
            returncode=run.returncode,
            wall_s=run.wall_s,
            cpu_s=run.cpu_s,
            peak_tree_rss=run.peak_tree_rss,
            peak_single_rss=run.peak_single_rss,
            peak_processes=[[name, rss] for name, rss in run.peak_processes],
            lake_bytes=dir_bytes(lake) if lake.exists() else 0,
            lake_breakdown=lake_breakdown(lake),
            home_bytes=dir_bytes(home),
            summary=parse_summary((workdir / "ingest.log").read_text(errors="replace")),
            postgres_rows=postgres_rows(db_url),
        )
        run_ids = result["summary"].get("run_ids", [])
        if run_ids:
            try:
                result["dagster_steps_s"] = dagster_steps(home / "dagster", run_ids)
            except Exception as exc:  # the run storage is a bonus; its absence is a note
                result["note_steps"] = f"step stats unreadable: {exc}"
        if run.returncode != 0:
            result["error_tail"] = run.log_tail
            log(f"  roadlens ingest FAILED with {run.returncode}; output tail:\n{run.log_tail}")
        else:
            log(f"  {run.wall_s:.1f} s wall, peak tree RSS {run.peak_tree_rss / GB:.2f} GB")
            summary = (workdir / "ingest.log").read_text(errors="replace")
            start = summary.rfind("capture date ")
            if start >= 0:
                print(re.sub(r"(->|output|heat map)\s+\S*/", r"\1 .../", summary[start:]))
    finally:
        tansu.kill()
        tansu.wait()
        with contextlib.suppress(Exception):
            drop_database(pg_url, database)
    return result


# -- the peer ----------------------------------------------------------------------------


def peer_worker(source: str, out: str, weights: str) -> int:
    """What a user would write: ultralytics tracking at 5 fps, boxes into one Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ultralytics import YOLO

    model = YOLO(weights, task="detect")
    columns: dict[str, list[Any]] = {
        k: []
        for k in ("frame", "track_id", "class_id", "class_name", "conf", "x1", "y1", "x2", "y2")
    }
    frames = 0
    for index, result in enumerate(
        model.track(
            source, vid_stride=STRIDE, stream=True, imgsz=IMGSZ, conf=CONF, iou=IOU, verbose=False
        )
    ):
        frames += 1
        boxes = result.boxes
        n = len(boxes)
        if not n:
            continue
        xyxy = boxes.xyxy.cpu().numpy()
        ids = boxes.id.cpu().numpy().astype(int).tolist() if boxes.id is not None else [-1] * n
        classes = boxes.cls.cpu().numpy().astype(int).tolist()
        columns["frame"] += [index * STRIDE] * n
        columns["track_id"] += ids
        columns["class_id"] += classes
        columns["class_name"] += [result.names[c] for c in classes]
        columns["conf"] += boxes.conf.cpu().numpy().tolist()
        for i, name in enumerate(("x1", "y1", "x2", "y2")):
            columns[name] += xyxy[:, i].tolist()
    pq.write_table(pa.table(columns), out)
    print(json.dumps({"frames": frames, "rows": len(columns["frame"])}), flush=True)
    return 0


def measure_peer(drive: Path, weights: Path, workdir: Path) -> dict[str, Any]:
    out = workdir / "peer.parquet"
    env = clean_env(YOLO_CONFIG_DIR=str(workdir / "peer-ultralytics"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "_peer", str(drive), str(out),
           str(weights)]  # fmt: skip
    log("peer: YOLO(w).track(drive, vid_stride=6, stream=True) -> Parquet, in a subprocess")
    run = run_measured(cmd, env=env, log_path=workdir / "peer.log", label="peer")
    result: dict[str, Any] = {
        "returncode": run.returncode,
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "peak_tree_rss": run.peak_tree_rss,
        "peak_single_rss": run.peak_single_rss,
        "parquet_bytes": out.stat().st_size if out.exists() else 0,
    }
    for line in reversed(run.log_tail.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                result.update(json.loads(line))
            break
    if run.returncode != 0:
        result["error_tail"] = run.log_tail
        log(f"  peer FAILED with {run.returncode}:\n{run.log_tail}")
    else:
        log(f"  {run.wall_s:.1f} s wall, peak tree RSS {run.peak_tree_rss / GB:.2f} GB")
    return result


# -- report ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ram = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    os_name = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gb": round(ram / 2**30, 1),
        "os": f"{os_name}, kernel {platform.release()}, {platform.machine()}",
        "python": platform.python_version(),
    }


def tool_versions() -> dict[str, str]:
    from bench.common import versions

    found = versions("ultralytics", "openvino", "cv2", "av", "torch", "pyarrow")
    with contextlib.suppress(Exception):
        first = subprocess.run(
            [ffmpeg_exe(), "-version"], capture_output=True, text=True
        ).stdout.splitlines()[0]
        found["ffmpeg"] = first.split()[2] if len(first.split()) > 2 else first
    return found


def verdict(name: str, value: float | None) -> dict[str, Any]:
    comparison, goal = TARGETS[name]
    if value is None or value != value:  # None or NaN
        return {"target": name, "value": None, "goal": f"{comparison} {goal:g}", "met": None}
    met = value <= goal if comparison == "<=" else value >= goal
    margin = (goal - value) if comparison == "<=" else (value - goal)
    return {
        "target": name,
        "value": value,
        "goal": f"{comparison} {goal:g}",
        "met": met,
        "margin": margin,  # > 0: room left; < 0: how far off
        "margin_pct_of_goal": margin / goal * 100,
    }


def ratios(report: dict[str, Any]) -> list[dict[str, Any]]:
    floor = report.get("floor") or {}
    e2e = report.get("roadlens") or {}
    peer = report.get("peer") or {}
    ok = e2e.get("returncode") == 0
    e2e_s = e2e.get("wall_s") if ok else None
    peer_s = peer.get("wall_s") if peer.get("returncode") == 0 else None
    floor_s = floor.get("floor_s")
    video_bytes = report["video"]["bytes"]
    return [
        verdict("e2e / floor", e2e_s / floor_s if e2e_s and floor_s else None),
        verdict("peer / e2e", peer_s / e2e_s if e2e_s and peer_s else None),
        verdict("model share", e2e.get("summary", {}).get("model_share") if ok else None),
        verdict("peak RSS GB", e2e["peak_tree_rss"] / GB if ok else None),
        verdict("lake % of video", e2e["lake_bytes"] / video_bytes * 100 if ok else None),
    ]


def fmt(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value}{unit}"


def human_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def markdown(report: dict[str, Any]) -> str:
    v, m = report["video"], report["machine"]
    lines = [
        f"# Headline: RoadLens on a {v['minutes']:g}-minute {v['resolution']} drive",
        "",
        f"Measured {report['date']} by `bench/bench_headline.py`"
        + (f" {report['options']}" if report["options"] else "")
        + ". Load average (1/5/15 min) at start "
        + " / ".join(f"{x:.2f}" for x in report["load"]["start"])
        + ", at end "
        + " / ".join(f"{x:.2f}" for x in report["load"]["end"])
        + ". The steps run one after the other on a shared machine: expect noise.",
        "",
        "| what | value |",
        "| --- | --- |",
        f"| video | {v['minutes']:g} min, {v['resolution']} @ {v['fps']:g} fps, "
        f"{v['frames']:,} frames, {v['bytes']:,} bytes ({v['bytes'] / 1e6:.1f} MB), "
        f"H.264 {PRESET} CRF {CRF} from {SOURCE_CLIP} |",
        f"| machine | {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB RAM, {m['os']} |",
        f"| versions | {', '.join(f'{k} {x}' for k, x in report['versions'].items())} |",
        f"| weights | {WEIGHTS_NAME} (imgsz {IMGSZ}, conf {CONF}, iou {IOU}), sampling "
        f"{SAMPLE_FPS} fps (every {STRIDE}th frame) |",
    ]
    floor = report.get("floor")
    if floor:
        for name, d in floor["decode"].items():
            best = " (fastest)" if name == floor["decode_min_method"] else ""
            frames = f", {d['frames']:,} frames" if d["frames"] else ""
            lines.append(
                f"| floor: decode, {name} | {d['seconds']:.1f} s ({d['cpu_s']:.0f} CPU s)"
                f"{frames}{best} |"
            )
        fastest_model = floor["model"]["runner"]
        for runner, model in floor["models"].items():
            best = " (fastest)" if runner == fastest_model else ""
            lines.append(
                f"| floor: model alone, {runner} | {model['seconds']:.1f} s "
                f"({model['cpu_s']:.0f} CPU s), "
                f"{model['frames']:,} frames, {model['ms_per_frame']:.1f} ms/frame, "
                f"{model['boxes']:,} boxes (load + warm-up {model['load_and_warmup_s']:.1f} s, "
                f"untimed){best} |"
            )
        lines += [
            f"| **floor** (fastest decode + model) | **{floor['floor_s']:.1f} s** "
            f"({floor['floor_cpu_s']:.0f} CPU s) |",
        ]
    else:
        lines.append("| floor | skipped (--skip-floor) |")
    e2e = report.get("roadlens")
    if e2e:
        s = e2e.get("summary", {})
        if e2e.get("returncode") == 0:
            lines += [
                f"| **RoadLens e2e wall** | **{e2e['wall_s']:.1f} s** ({e2e['cpu_s']:.0f} CPU s) |",
                f"| RoadLens peak RSS (process tree sum) | {e2e['peak_tree_rss'] / GB:.2f} GB "
                f"(largest single process {e2e['peak_single_rss'] / GB:.2f} GB) |",
                f"| RoadLens lake | {e2e['lake_bytes']:,} bytes = "
                f"{e2e['lake_bytes'] / v['bytes'] * 100:.1f} % of the video |",
            ]
            top = e2e.get("lake_breakdown", {})
            if top:
                parts = ", ".join(f"{k} {human_bytes(n)}" for k, n in list(top.items())[:4])
                lines.append(f"| RoadLens lake, largest parts | {parts} |")
            at_peak = sorted(e2e.get("peak_processes", []), key=lambda p: -p[1])
            if at_peak:
                procs = ", ".join(f"{n} {r / GB:.2f} GB" for n, r in at_peak[:5])
                lines.append(f"| RoadLens processes at the RSS peak | {procs} |")
        else:
            lines.append(f"| RoadLens e2e | FAILED (exit {e2e.get('returncode')}) |")
        if s.get("stages_s"):
            stages = ", ".join(f"{k} {x:.1f} s" for k, x in s["stages_s"].items())
            lines.append(f"| RoadLens stages (its summary) | {stages} |")
        if "model_share" in s:
            lines.append(
                f"| RoadLens model share of the detection stage | {s['model_share']:.2f} |"
            )
        steps = e2e.get("dagster_steps_s", {})
        if steps:
            ranked = [(k, x) for k, x in steps.items() if k != "(run)"]
            shown = ", ".join(f"{k} {x:.1f} s" for k, x in ranked[:6])
            lines.append(
                f"| RoadLens Dagster steps (wall) | run {steps.get('(run)', float('nan')):.1f} s: "
                f"{shown}, rest {sum(x for _, x in ranked[6:]):.1f} s |"
            )
            model_s, detect_step = s.get("stages_s", {}).get("model"), steps.get("raw_detections")
            if model_s is not None and detect_step:
                lines.append(
                    f"| RoadLens model / detections step wall | {model_s / detect_step:.2f} |"
                )
        work = [f"{k.replace('_', ' ')} {s[k]:,}" for k in
                ("frames_sampled", "detections", "tracks", "rule_events") if k in s]  # fmt: skip
        if "backend" in s:
            work.append(f"backend {s['backend']}")
        if "detector" in s:
            work.append(f"detector {s['detector']}")
        if work:
            lines.append(f"| RoadLens work | {', '.join(work)} |")
        if s.get("sinks") or e2e.get("postgres_rows"):
            sinks = "; ".join(f"{k}: {x}" for k, x in s.get("sinks", {}).items())
            rows = ", ".join(f"{k} {n:,}" for k, n in e2e.get("postgres_rows", {}).items())
            lines.append(f"| RoadLens sinks | {sinks or 'n/a'}; rows in PostgreSQL: {rows} |")
    else:
        lines.append("| RoadLens e2e | not run |")
    peer = report.get("peer")
    if peer and peer.get("returncode") == 0:
        lines += [
            f"| **peer** (ultralytics track, vid_stride 6, Parquet) wall | "
            f"**{peer['wall_s']:.1f} s** ({peer['cpu_s']:.0f} CPU s), "
            f"{fmt(peer.get('frames'), 0)} frames, {fmt(peer.get('rows'), 0)} boxes |",
            f"| peer peak RSS (process tree sum) | {peer['peak_tree_rss'] / GB:.2f} GB |",
        ]
    elif peer:
        lines.append(f"| peer | FAILED (exit {peer.get('returncode')}) |")
    else:
        lines.append("| peer | skipped (--skip-peer) |")
    if floor and e2e and e2e.get("returncode") == 0 and floor.get("floor_cpu_s"):
        lines.append(
            f"| e2e / floor in CPU seconds (informative, less load-sensitive) | "
            f"{e2e['cpu_s'] / floor['floor_cpu_s']:.2f} |"
        )
    if peer and peer.get("returncode") == 0 and e2e and e2e.get("returncode") == 0:
        lines.append(
            f"| peer / e2e in CPU seconds (informative, less load-sensitive) | "
            f"{peer['cpu_s'] / e2e['cpu_s']:.2f} |"
        )
    lines += ["", "| target | value | goal | verdict | margin |", "| --- | --- | --- | --- | --- |"]
    for t in report["targets"]:
        if t["met"] is None:
            lines.append(f"| {t['target']} | n/a | {t['goal']} | not measured | |")
            continue
        word = "met" if t["met"] else "**missed**"
        lines.append(
            f"| {t['target']} | {t['value']:.2f} | {t['goal']} | {word} | "
            f"{t['margin']:+.2f} ({t['margin_pct_of_goal']:+.0f} % of goal) |"
        )
    lines += [
        "",
        "Margin > 0 is room left, < 0 how far off. Peak RSS sums RSS over the process tree "
        "every 0.1 s (shared pages counted per process). Wall times include process start, "
        "imports and model loading for RoadLens and the peer, not for the floor. The floor "
        "adds decode and model run one after the other; a pipeline that overlaps them on "
        "several cores can finish below it. CPU seconds: user + system of the process tree "
        "(children as reaped), or of this process's threads for the in-process floor parts.",
    ]
    if v["minutes"] < BASE_MINUTES:
        lines.append(
            f"Note: a drive under {BASE_MINUTES} minutes is a smoke test, not the headline."
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_peer"]:
        return peer_worker(*argv[1:4])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=BASE_MINUTES, help="drive length")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-roadlens", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument(
        "--prepare-only", action="store_true", help="build and check the drive, then stop"
    )
    parser.add_argument(
        "--buffer", type=int, default=64, help="frames decoded ahead of the model floor"
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("ROADLENS_BENCH_POSTGRES_URL", DEFAULT_PG)
    )
    parser.add_argument("--out", type=Path, help="output stem (.md and .json)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    out = args.out or RESULTS / (
        "headline" if args.minutes == BASE_MINUTES else f"headline-{args.minutes:g}min"
    )
    weights = SHARED_MODELS / WEIGHTS_NAME
    if not weights.is_dir():
        print(f"no {WEIGHTS_NAME} under the shared models; set ROADLENS_SHARED_MODELS")
        return 1

    load_start = os.getloadavg()
    log(f"{os.cpu_count()} cores, load {load_start[0]:.2f} / {load_start[1]:.2f} / "
        f"{load_start[2]:.2f}")  # fmt: skip
    drive, check = prepare_drive(args.minutes)
    if args.prepare_only:
        return 0
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "options": " ".join(
            [f"--minutes {args.minutes:g}"]
            + [f"--{k.replace('_', '-')}" for k in ("skip_floor", "skip_peer") if getattr(args, k)]
        ),
        "video": {
            "minutes": args.minutes,
            "resolution": f"{check.width}x{check.height}",
            "fps": check.fps,
            "frames": check.packets,
            "bytes": drive.stat().st_size,
            "check": asdict(check),
        },
        "machine": machine(),
        "versions": tool_versions(),
        "load": {"start": list(load_start)},
    }
    if not args.skip_floor:
        report["floor"] = measure_floor(drive, weights, args.buffer)
    workdir = Path(tempfile.mkdtemp(prefix="roadlens-headline-"))
    try:
        if not args.skip_roadlens:
            report["roadlens"] = measure_roadlens(drive, weights, workdir, args.postgres_url)
        if not args.skip_peer:
            report["peer"] = measure_peer(drive, weights, workdir)
    finally:
        if args.keep:
            log(f"kept the work folder: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["load"]["end"] = list(os.getloadavg())
    report["targets"] = ratios(report)
    text = markdown(report)
    print("\n" + text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    log(f"wrote {out.with_suffix('.md').name} and {out.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
