"""Record a live source (RTSP/HTTP/UDP/... URL, capture device or file) into MP4 chunks.

One ffmpeg process (imageio-ffmpeg's bundled binary unless another is given) reads the
source and cuts it with the segment muxer into ``chunk_seconds`` MP4 files; the
:class:`Recorder` watches ffmpeg's segment list and publishes every closed segment into
the landing folder the sensor watches:

1. ffmpeg writes each segment under a hidden name (``.roadlens-part-*.mp4``), which
   :func:`roadlens.registry.list_candidates` skips, so an open segment is never picked up.
2. When the segment list (``-segment_list ... -segment_list_type csv``) names a segment,
   ffmpeg has closed it. The recorder computes its wall-clock start, writes it into the
   MP4 ``mvhd`` creation time (whole seconds, what :func:`roadlens.video.probe` reports
   and the registry uses), renames the file to ``<source_id>-<YYYYmmddTHHMMSS.fff>Z.mp4``
   (millisecond start in the name) and finally writes ``<chunk>.mp4.done``, a JSON marker
   with the exact start and duration. The sensor treats the marker as "ready".
3. On stop (:meth:`Recorder.stop`, SIGINT/SIGTERM in the CLI) ffmpeg gets SIGINT, writes
   the last segment's trailer and lists it; that chunk is published and marked too.

Timestamps: ``-reset_timestamps 1`` makes every chunk start at pts 0, so a frame's
capture time is ``chunk creation time + pts``, the rule the frame sampler already
applies. The chunk's start in stream time comes from the segment list; it is mapped to
wall-clock time by an anchor: the smallest ``wall clock - out_time`` over ffmpeg's
``-progress`` reports (every 0.5 s) of that ffmpeg run, i.e. the arrival time of the
stream's time zero, taken at the moment media arrived with the least delay. The anchor is
fixed when the run publishes its first chunk, so consecutive chunks of one run are exactly
their stream offsets apart and never overlap.

Live sources (network URLs, devices) reconnect after ffmpeg exits, with capped
exponential back-off and jitter; a file source ends normally (``STOPPED``). A per-source
status/heartbeat file (:mod:`roadlens.live.status`) tracks the state.

Example:
    ```python
    from roadlens.live import Recorder, RecorderConfig

    recorder = Recorder(RecorderConfig("rtsp://camera.example/stream", "landing/cam-1",
                                       chunk_seconds=10))
    recorder.start()          # background thread
    ...
    recorder.stop()           # closes and marks the last chunk
    recorder.status.chunks_closed
    ```
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Literal
from urllib.parse import urlsplit

from roadlens.atomic import write_text_atomic
from roadlens.ids import slugify
from roadlens.live.status import (
    RecorderState,
    RecorderStatus,
    read_status,
    write_status,
)
from roadlens.redact import redact
from roadlens.video import mp4
from roadlens.video.ffmpeg import ffmpeg_exe

DONE_SUFFIX = ".done"
PART_PREFIX = ".roadlens-part-"
LIST_PREFIX = ".roadlens-segments-"

NETWORK_SCHEMES = frozenset(
    {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp", "rist"}
)
# Protocols whose ``-timeout`` input option is an I/O timeout in microseconds: a silent
# source then ends ffmpeg cleanly (last segment written) instead of blocking forever.
_IO_TIMEOUT_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https", "udp", "tcp", "srt"})
# Input formats that capture from a device or generate a live signal.
DEVICE_FORMATS = frozenset(
    {"v4l2", "video4linux2", "avfoundation", "dshow", "gdigrab", "x11grab", "kmsgrab", "lavfi"}
)
# ffmpeg messages meaning "this codec cannot be stream-copied into MP4".
_COPY_FAILURES = (
    "could not find tag for codec",
    "not currently supported in container",
    "could not write header",
    "codec not supported",
)
_CHUNK_TIME = re.compile(r"-(\d{8}T\d{6}\.\d{3})Z\.mp4$")

SourceKind = Literal["network", "device", "file"]


def source_kind(source: str, input_format: str | None = None) -> SourceKind:
    """Classify a source: ``"network"`` URL, capture ``"device"`` or recorded ``"file"``.

    >>> source_kind("rtsp://cam/stream"), source_kind("/dev/video0"), source_kind("a.mp4")
    ('network', 'device', 'file')
    >>> source_kind("testsrc2=size=640x360", "lavfi")
    'device'
    """
    scheme = urlsplit(source).scheme.lower() if "://" in source else ""
    if scheme in NETWORK_SCHEMES:
        return "network"
    if (input_format or "").lower() in DEVICE_FORMATS or source.startswith("/dev/"):
        return "device"
    return "file"


def chunk_name(source_id: str, start: datetime) -> str:
    """File name of a chunk: ``<source_id>-<UTC start, millisecond precision>Z.mp4``.

    >>> chunk_name("cam-1", datetime(2026, 11, 21, 10, 30, 0, 123456, tzinfo=UTC))
    'cam-1-20261121T103000.123Z.mp4'
    """
    start = start.astimezone(UTC)
    return f"{source_id}-{start:%Y%m%dT%H%M%S}.{start.microsecond // 1000:03d}Z.mp4"


def chunk_start_from_name(name: str | os.PathLike[str]) -> datetime | None:
    """The UTC start encoded in a chunk name by :func:`chunk_name`, None if there is none.

    >>> chunk_start_from_name("cam-1-20261121T103000.123Z.mp4")
    datetime.datetime(2026, 11, 21, 10, 30, 0, 123000, tzinfo=datetime.timezone.utc)
    """
    match = _CHUNK_TIME.search(Path(name).name)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)


@dataclass(frozen=True)
class ChunkMarker:
    """Contents of a chunk's ``<chunk>.mp4.done`` marker.

    Attributes:
        capture_start: Wall-clock (UTC) time of the chunk's first frame, millisecond
            precision. The MP4 creation time holds the same instant floored to seconds.
        duration_s: Chunk duration from the segment list.
        source_id: Recorder's source id.
        chunk_index: Index of the chunk over the recorder's lifetime (0-based).
        stream_start_s: Start of the chunk in the ffmpeg run's stream time.
        ffmpeg_run: Which ffmpeg process (1-based) recorded it; a reconnect starts a new one.
        codec: ``"copy"`` or the encoder used.
    """

    capture_start: datetime
    duration_s: float
    source_id: str
    chunk_index: int
    stream_start_s: float
    ffmpeg_run: int
    codec: str

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["capture_start"] = _iso_ms(self.capture_start)
        return json.dumps(data, sort_keys=True) + "\n"


def read_chunk_marker(video_path: str | os.PathLike[str]) -> ChunkMarker | None:
    """The marker a recorder wrote next to ``video_path``; None if absent, empty or foreign.

    This is what the registry can use to take a live chunk's capture start with
    millisecond precision instead of the whole-second MP4 creation time.
    """
    marker = Path(f"{video_path}{DONE_SUFFIX}")
    try:
        raw = json.loads(marker.read_text())
        raw["capture_start"] = datetime.fromisoformat(raw["capture_start"].replace("Z", "+00:00"))
        return ChunkMarker(**raw)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


@dataclass(frozen=True)
class Chunk:
    """One published chunk.

    Attributes:
        path: The chunk's final path in the output folder.
        index: 0-based index over the recorder's lifetime.
        capture_start: Wall-clock (UTC) start, millisecond precision.
        duration_s: Duration from ffmpeg's segment list.
        size_bytes: File size.
        ffmpeg_run: Which ffmpeg process (1-based) recorded it.
    """

    path: Path
    index: int
    capture_start: datetime
    duration_s: float
    size_bytes: int
    ffmpeg_run: int


@dataclass
class RecorderConfig:
    """What to record and how; plain data, so a service can accept it as JSON.

    Attributes:
        source: Network URL (``rtsp://``, ``http(s)://``, ``udp://``, ``srt://``, ...),
            capture device (``/dev/video0``, or any input with ``input_format``) or file.
        out_dir: Output folder, normally ``<landing>/<source_id>/``; created if missing.
            One recorder per folder.
        chunk_seconds: Target chunk length. With stream copy a chunk can only end on a
            key frame, so chunks are at least this long and end on the first key frame
            after it; re-encoding forces key frames on the boundaries.
        source_id: Chunk name prefix; default: the slugified name of ``out_dir``.
        codec: ``"auto"`` (stream copy; re-encode if the codec cannot go into MP4),
            ``"copy"``, ``"reencode"`` (libx264 when this ffmpeg has it, else mpeg4) or an
            ffmpeg encoder name.
        realtime: Read a file source (or an ffmpeg ``lavfi`` generator) at its native
            frame rate (ffmpeg ``-re``), like a camera; default True. Ignored for live
            sources, which arrive in real time anyway.
        input_format: ffmpeg input format (``-f``), e.g. ``v4l2``, ``lavfi``.
        input_options: Extra ffmpeg input options placed before ``-i``, e.g.
            ``["-rtsp_transport", "tcp"]``.
        io_timeout_s: Network read timeout given to ffmpeg (``-timeout``): a silent
            source ends the ffmpeg run cleanly, with its last segment closed.
        stall_timeout_s: Watchdog: stop ffmpeg when its output time has not advanced
            for this long; default ``io_timeout_s + 5``.
        connect_timeout_s: Watchdog: stop ffmpeg when no media arrived this long after
            it started (ffmpeg first probes the input for up to ``-analyzeduration``).
        reconnect_base_s: First back-off delay after a live source dropped.
        reconnect_max_s: Back-off cap.
        max_reconnects: Consecutive failed connections before giving up (``ERROR``);
            None retries forever. A run that delivered media resets the count.
        heartbeat_s: Status file refresh interval.
        stop_timeout_s: How long a stop waits for ffmpeg to finish the last segment
            before killing it (the unfinished segment is then discarded).
        ffmpeg: ffmpeg executable; default :func:`roadlens.video.ffmpeg.ffmpeg_exe`
            (imageio-ffmpeg's bundled binary unless ``IMAGEIO_FFMPEG_EXE`` names another).
    """

    source: str
    out_dir: str | os.PathLike[str]
    chunk_seconds: float = 10.0
    source_id: str | None = None
    codec: str = "auto"
    realtime: bool | None = None
    input_format: str | None = None
    input_options: Sequence[str] = field(default_factory=tuple)
    io_timeout_s: float = 5.0
    stall_timeout_s: float | None = None
    connect_timeout_s: float = 20.0
    reconnect_base_s: float = 1.0
    reconnect_max_s: float = 30.0
    max_reconnects: int | None = None
    heartbeat_s: float = 1.0
    stop_timeout_s: float = 10.0
    ffmpeg: str | None = None


def backoff_delay(
    attempt: int, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Capped exponential back-off with "equal jitter" for the ``attempt``-th retry (1-based).

    The delay lies in ``[c/2, c]`` with ``c = min(max_s, base_s * 2**(attempt-1))``: it
    grows, never exceeds the cap, and many recorders that lost the same camera do not
    reconnect in lockstep.

    >>> 0.5 <= backoff_delay(1, 1.0, 30.0) <= 1.0, 15 <= backoff_delay(9, 1.0, 30.0) <= 30
    (True, True)
    """
    ceiling = min(max_s, base_s * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@lru_cache(maxsize=8)
def available_encoders(ffmpeg: str) -> frozenset[str]:
    """Names of the video encoders ``ffmpeg -encoders`` lists."""
    out = subprocess.run(
        [ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
    ).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0].startswith("V"):
            names.add(parts[1])
    return frozenset(names)


def pick_encoder(ffmpeg: str) -> str:
    """libx264 when ``ffmpeg`` has it, else the always-built-in mpeg4 encoder."""
    return "libx264" if "libx264" in available_encoders(ffmpeg) else "mpeg4"


def build_command(
    config: RecorderConfig, codec: str, segment_list: Path, pattern: Path, ffmpeg: str
) -> list[str]:
    """The ffmpeg command line of one recording run.

    Args:
        config: The recorder's configuration.
        codec: ``"copy"`` or an encoder name.
        segment_list: CSV file where ffmpeg lists every closed segment.
        pattern: Segment file pattern with one ``%05d``.
        ffmpeg: ffmpeg executable.
    """
    kind = source_kind(config.source, config.input_format)
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning"]
    generated = (config.input_format or "").lower() == "lavfi"  # as fast as it can
    if (kind == "file" or generated) and config.realtime is not False:
        cmd += ["-re", "-readrate_initial_burst", "0"]  # no 0.5 s burst: chunks start "now"
    scheme = urlsplit(config.source).scheme.lower() if kind == "network" else ""
    if scheme in _IO_TIMEOUT_SCHEMES:
        cmd += ["-timeout", str(int(config.io_timeout_s * 1_000_000))]
    if config.input_format:
        cmd += ["-f", config.input_format]
    cmd += [*config.input_options, "-i", config.source]
    cmd += ["-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1"]
    if codec == "copy":
        cmd += ["-c:v", "copy"]
    else:
        cmd += ["-c:v", codec, "-pix_fmt", "yuv420p"]
        if codec == "libx264":
            cmd += ["-preset", "veryfast", "-tune", "zerolatency", "-crf", "23"]
        elif codec == "mpeg4":
            cmd += ["-q:v", "4"]
        cmd += ["-force_key_frames", f"expr:gte(t,n_forced*{config.chunk_seconds:g})"]
    cmd += [
        "-f", "segment",
        "-segment_time", f"{config.chunk_seconds:g}",
        "-reset_timestamps", "1",
        "-segment_format", "mp4",
        "-segment_list", str(segment_list),
        "-segment_list_type", "csv",
        "-progress", "pipe:1",
        "-stats_period", "0.5",
        str(pattern).replace("%", "%%").replace("%%05d", "%05d"),
    ]  # fmt: skip
    return cmd


@dataclass
class _Run:
    """State of one ffmpeg process."""

    number: int
    codec: str
    process: subprocess.Popen[str]
    segment_list: Path
    started_wall: float
    started_mono: float
    anchor: float | None = None  # wall-clock epoch seconds of stream time 0
    # The anchor the run's first published chunk used: later chunks of the run keep it, so
    # their times follow the stream clock exactly (a later, better anchor would move them
    # up to a few tenths of a second earlier and overlap the chunk before).
    published_anchor: float | None = None
    last_out_s: float = -1.0
    last_advance_mono: float | None = None
    media_seen: bool = False
    listed: int = 0  # segment-list entries handled
    published: int = 0
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    watchdog: str | None = None


class Recorder:
    """Chunk one live source into MP4 files in a landing folder, with a status file.

    Use :meth:`run` to record in the calling thread until the source ends or
    :meth:`request_stop` is called (e.g. from a signal handler), or :meth:`start` /
    :meth:`stop` to record in a background thread. A Recorder runs once.

    Args:
        config: What to record; see :class:`RecorderConfig`.
        on_chunk: Called (in the recording thread) with every published :class:`Chunk`.
        log: Where progress lines go (one per closed chunk, one per state change);
            None for silence. Default stderr.

    Raises:
        FileNotFoundError: a file source does not exist.
        ValueError: ``chunk_seconds`` is not positive, or no usable source id.
    """

    def __init__(
        self,
        config: RecorderConfig,
        *,
        on_chunk: Callable[[Chunk], None] | None = None,
        log: IO[str] | None = sys.stderr,
    ) -> None:
        if not config.chunk_seconds > 0:
            raise ValueError(f"chunk_seconds must be positive, got {config.chunk_seconds}")
        self.config = config
        self.kind = source_kind(config.source, config.input_format)
        if self.kind == "file" and not Path(config.source).is_file():
            raise FileNotFoundError(f"{config.source}: no such video file")
        self.out_dir = Path(config.out_dir)
        self.source_id = slugify(config.source_id or self.out_dir.resolve().name)
        self.ffmpeg = config.ffmpeg or ffmpeg_exe()
        self.on_chunk = on_chunk
        self.log = log
        self.chunks: list[Chunk] = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        self._codec = self._initial_codec()
        self._status = RecorderStatus(
            source_id=self.source_id,
            source=redact(config.source),
            chunk_seconds=float(config.chunk_seconds),
            codec=self._codec,
            pid=os.getpid(),
            recorder_id=uuid.uuid4().hex[:12],
        )

    # -- public API ---------------------------------------------------------------------

    @property
    def status(self) -> RecorderStatus:
        """A copy of the current status."""
        with self._lock:
            return dataclasses.replace(self._status)

    @property
    def state(self) -> RecorderState:
        """The current state."""
        return RecorderState(self.status.state)

    def start(self) -> None:
        """Record in a background thread; returns at once.

        Raises:
            RuntimeError: the recorder was already started.
        """
        if self._thread is not None:
            raise RuntimeError("recorder already started")
        self._check_folder_free()
        self._thread = threading.Thread(
            target=self.run, name=f"recorder-{self.source_id}", daemon=True
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the recording loop to stop; returns at once (safe in a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> RecorderStatus:
        """Stop recording: ffmpeg closes the current chunk, which is published and marked.

        Waits up to ``timeout`` seconds (None: until done) when the recorder runs in a
        background thread started by :meth:`start`; returns the status.
        """
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return self.status

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until recording ended (file source finished, stopped or failed)."""
        return self._done.wait(timeout)

    def run(self) -> RecorderStatus:
        """Record until the source ends, :meth:`request_stop`, or giving up; return the status.

        The final state is ``STOPPED`` (requested stop, end of a file source) or
        ``ERROR`` (a file source failed, or ``max_reconnects`` consecutive failures).
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._check_folder_free()
        self._cleanup_leftovers()
        with self._lock:
            self._status.started_at = _now()
        self._write_status()
        heartbeat = threading.Thread(target=self._heartbeat, name="recorder-heartbeat", daemon=True)
        heartbeat.start()
        failures = 0
        runs = 0
        final = RecorderState.STOPPED
        try:
            while not self._stop.is_set():
                runs += 1
                run = self._run_ffmpeg(runs)
                if self._stop.is_set():
                    break
                rc = run.process.returncode
                error = run.watchdog or _last_error(run.stderr, rc)
                reason = self._copy_failure(run)
                if reason:
                    error = f"stream copy into MP4 failed: {reason}"
                    self._say(f"{error}; re-encoding")
                    self._codec = pick_encoder(self.ffmpeg)
                    with self._lock:
                        self._status.codec = self._codec
                        self._status.last_error = error
                    continue
                if self.kind == "file":
                    if rc == 0 and run.watchdog is None:
                        break
                    self._set_state(RecorderState.ERROR, error)
                    final = RecorderState.ERROR
                    break
                failures = 1 if run.media_seen else failures + 1
                limit = self.config.max_reconnects
                if limit is not None and failures > limit:
                    self._set_state(
                        RecorderState.ERROR, f"{error}; gave up after {limit} reconnects"
                    )
                    final = RecorderState.ERROR
                    break
                delay = backoff_delay(
                    failures, self.config.reconnect_base_s, self.config.reconnect_max_s, self._rng
                )
                with self._lock:
                    self._status.reconnect_attempts += 1
                self._set_state(RecorderState.RECONNECTING, error)
                self._say(f"source ended ({error}); reconnecting in {delay:.1f} s")
                self._stop.wait(delay)
        except Exception as exc:  # ffmpeg missing, folder unwritable: say so, then raise
            final = RecorderState.ERROR
            self._set_state(RecorderState.ERROR, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if final is RecorderState.STOPPED:
                self._set_state(RecorderState.STOPPED)
            self._done.set()
            heartbeat.join(timeout=5)
            self._write_status()
        return self.status

    # -- one ffmpeg run -----------------------------------------------------------------

    def _run_ffmpeg(self, number: int) -> _Run:
        segment_list = self.out_dir / f"{LIST_PREFIX}{number:04d}.csv"
        pattern = self.out_dir / f"{PART_PREFIX}{number:04d}-%05d.mp4"
        segment_list.unlink(missing_ok=True)
        cmd = build_command(self.config, self._codec, segment_list, pattern, self.ffmpeg)
        process = subprocess.Popen(
            [*_die_with_parent(), *cmd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop ffmpeg
        )
        run = _Run(number, self._codec, process, segment_list, time.time(), time.monotonic())
        with self._lock:
            self._status.ffmpeg_runs = number
        readers = [
            threading.Thread(target=self._read_progress, args=(run,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(run,), daemon=True),
        ]
        for reader in readers:
            reader.start()
        stall_s = self.config.stall_timeout_s or self.config.io_timeout_s + 5.0
        while process.poll() is None:
            self._publish_closed(run, final=False)
            if self._stop.is_set():
                self._terminate(run)
                break
            now = time.monotonic()
            if run.last_advance_mono is None:
                if now - run.started_mono > self.config.connect_timeout_s:
                    run.watchdog = f"no media within {self.config.connect_timeout_s:g} s"
            elif now - run.last_advance_mono > stall_s:
                run.watchdog = f"no media for {stall_s:g} s"
            if run.watchdog:
                self._terminate(run)
                break
            time.sleep(0.1)
        process.wait()
        for reader in readers:
            reader.join(timeout=5)
        self._publish_closed(run, final=True)
        self._discard_unfinished(number)
        segment_list.unlink(missing_ok=True)
        return run

    def _terminate(self, run: _Run) -> None:
        """SIGINT (ffmpeg writes the trailer); again after the grace period; then kill."""
        process = run.process
        grace = self.config.stop_timeout_s
        for sig, wait_s in ((signal.SIGINT, grace), (signal.SIGINT, 2.0), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                return
            try:
                process.send_signal(sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def _read_progress(self, run: _Run) -> None:
        """Parse ``-progress`` lines: track media flow and the wall-clock anchor."""
        assert run.process.stdout is not None
        for line in run.process.stdout:
            key, _, value = line.strip().partition("=")
            if key != "out_time_us" or not value.lstrip("-").isdigit():
                continue
            out_s = int(value) / 1_000_000
            wall = time.time()
            if out_s > 0:
                candidate = wall - out_s
                run.anchor = candidate if run.anchor is None else min(run.anchor, candidate)
            if out_s > run.last_out_s:
                run.last_out_s = out_s
                if out_s > 0:
                    run.last_advance_mono = time.monotonic()
                    if not run.media_seen:
                        run.media_seen = True
                        self._set_state(RecorderState.RUNNING)

    def _read_stderr(self, run: _Run) -> None:
        assert run.process.stderr is not None
        secret, shown = self.config.source, self._status.source
        for line in run.process.stderr:
            line = line.rstrip()
            if line:
                run.stderr.append(line.replace(secret, shown) if secret != shown else line)

    # -- publishing ---------------------------------------------------------------------

    def _publish_closed(self, run: _Run, *, final: bool) -> None:
        """Publish every segment the list names and that was not handled yet."""
        try:
            text = run.segment_list.read_text(errors="replace")
        except FileNotFoundError:
            return
        rows = [r for r in csv.reader(io.StringIO(text)) if len(r) >= 3]
        if not final and not text.endswith("\n"):
            rows = rows[:-1]  # the last line may be half-written
        for row in rows[run.listed :]:
            name, start_s, end_s = row[0], float(row[1]), float(row[2])
            part = self.out_dir / Path(name).name
            if not _is_complete_mp4(part):
                if not final:
                    return  # listed just before ffmpeg closed the file; next poll
                self._say(f"discarding unreadable segment {part.name}")
                part.unlink(missing_ok=True)
            elif end_s - start_s <= 1e-3:
                part.unlink(missing_ok=True)  # an empty segment (stopped at a boundary)
            else:
                self._publish(run, part, start_s, end_s - start_s)
            run.listed += 1

    def _publish(self, run: _Run, part: Path, start_s: float, duration_s: float) -> None:
        if run.published_anchor is None:
            run.published_anchor = run.anchor if run.anchor is not None else run.started_wall
        start = datetime.fromtimestamp(run.published_anchor + start_s, tz=UTC)
        start = start.replace(microsecond=start.microsecond // 1000 * 1000)
        final = self._free_name(chunk_name(self.source_id, start))
        mp4.write_creation_time(part, start)
        os.replace(part, final)
        index = len(self.chunks)
        marker = ChunkMarker(
            capture_start=start,
            duration_s=round(duration_s, 6),
            source_id=self.source_id,
            chunk_index=index,
            stream_start_s=start_s,
            ffmpeg_run=run.number,
            codec=run.codec,
        )
        write_text_atomic(final.with_name(final.name + DONE_SUFFIX), marker.to_json())
        chunk = Chunk(final, index, start, duration_s, final.stat().st_size, run.number)
        self.chunks.append(chunk)
        run.published += 1
        with self._lock:
            self._status.chunks_closed += 1
            self._status.last_chunk = final.name
            self._status.last_chunk_start = start
        self._write_status()
        self._say(f"chunk {index}: {final.name} {duration_s:.2f} s {chunk.size_bytes / 1e3:.0f} kB")
        if self.on_chunk is not None:
            try:
                self.on_chunk(chunk)
            except Exception as exc:  # a caller's bug must not stop the recording
                self._say(f"on_chunk callback failed: {type(exc).__name__}: {exc}")

    def _free_name(self, name: str) -> Path:
        path = self.out_dir / name
        n = 1
        while path.exists():
            path = self.out_dir / f"{name[:-4]}-{n}.mp4"
            n += 1
        return path

    def _discard_unfinished(self, number: int) -> None:
        """Remove segments of a finished run that ffmpeg never closed (it was killed)."""
        for part in self.out_dir.glob(f"{PART_PREFIX}{number:04d}-*.mp4"):
            self._say(f"discarding unfinished segment {part.name} (ffmpeg did not close it)")
            part.unlink(missing_ok=True)

    def _check_folder_free(self) -> None:
        """Refuse a folder whose status file shows another live recorder.

        Raises:
            RuntimeError: the status file was refreshed in the last 10 heartbeats (at
                least 15 s) by another recorder whose state is not final.
        """
        try:
            other = read_status(self.out_dir)
        except (OSError, ValueError, TypeError):
            return
        if other.recorder_id == self._status.recorder_id or other.state in ("STOPPED", "ERROR"):
            return
        fresh_s = max(15.0, 10 * self.config.heartbeat_s)
        beat = other.last_heartbeat
        if beat is not None and (_now() - beat).total_seconds() < fresh_s:
            raise RuntimeError(
                f"{self.out_dir}: another recorder (pid {other.pid}) is {other.state}; "
                "use one output folder per recorder"
            )

    def _cleanup_leftovers(self) -> None:
        """Remove hidden work files a crashed recorder left in the output folder."""
        for pattern in (f"{PART_PREFIX}*.mp4", f"{LIST_PREFIX}*.csv", f".*{DONE_SUFFIX}.*.tmp"):
            for path in self.out_dir.glob(pattern):
                path.unlink(missing_ok=True)

    def _copy_failure(self, run: _Run) -> str | None:
        """ffmpeg's complaint when ``auto`` stream copy failed because of the codec."""
        if self.config.codec != "auto" or run.codec != "copy" or run.media_seen:
            return None
        if run.process.returncode == 0:
            return None
        for line in run.stderr:
            if any(p in line.lower() for p in _COPY_FAILURES):
                return line.split("] ", 1)[-1]
        return None

    def _initial_codec(self) -> str:
        codec = self.config.codec
        if codec in ("auto", "copy"):
            return "copy"
        if codec == "reencode":
            return pick_encoder(self.ffmpeg)
        return codec

    # -- status ---------------------------------------------------------------------------

    def _set_state(self, state: RecorderState, error: str | None = None) -> None:
        with self._lock:
            changed = self._status.state != state.value
            self._status.state = state.value
            if error:
                self._status.last_error = error
        self._write_status()
        if changed:
            self._say(f"state {state.value}" + (f": {error}" if error else ""))

    def _write_status(self) -> None:
        with self._lock:
            self._status.last_heartbeat = _now()
            snapshot = dataclasses.replace(self._status)
            try:
                write_status(self.out_dir, snapshot)
            except OSError as exc:  # a full disk must not kill the recording
                self._say(f"cannot write status: {exc}")

    def _heartbeat(self) -> None:
        while not self._done.wait(self.config.heartbeat_s):
            self._write_status()

    def _say(self, message: str) -> None:
        if self.log is not None:
            print(f"roadlens record [{self.source_id}]: {message}", file=self.log, flush=True)


def record_until_signalled(
    config: RecorderConfig, *, log: IO[str] | None = sys.stderr
) -> RecorderStatus:
    """Run a :class:`Recorder` in this (main) thread until the source ends or SIGINT/SIGTERM.

    The first signal stops the recorder gracefully (the last chunk is closed and marked);
    the previous handlers are restored afterwards. This is ``roadlens record``.
    """
    recorder = Recorder(config, log=log)

    def on_signal(signum: int, _frame: object) -> None:
        recorder.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return recorder.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@functools.cache
def _die_with_parent() -> list[str]:
    """A command prefix (Linux, util-linux ``setpriv``): ffmpeg gets SIGTERM when the
    recording thread dies.

    Without it an ffmpeg whose recorder was killed (SIGKILL, OOM) would keep writing
    hidden segments forever; with it ffmpeg finishes its segment and exits, and the next
    recorder in the folder removes the unpublished leftovers. It is a prefix, not a
    ``preexec_fn``: Python code between fork and exec deadlocked once the process had
    other native threads (OpenVINO's), so ffmpeg never started.
    """
    tool = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [tool, "--pdeathsig", "TERM"] if tool else []


def _is_complete_mp4(path: Path) -> bool:
    """Whether ``path`` is a finished MP4: top-level boxes cover the file, moov present."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            boxes = list(mp4.iter_boxes(f))
    except OSError:
        return False
    types = {b.type for b in boxes}
    return bool(boxes) and boxes[-1].end == size and {"moov", "mdat"} <= types


def _last_error(lines: deque[str], rc: int | None) -> str:
    for line in reversed(lines):
        if line.strip():
            return f"ffmpeg exited with {rc}: {line.strip()}"
    return f"ffmpeg exited with {rc}"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso_ms(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


__all__ = [
    "Chunk",
    "ChunkMarker",
    "Recorder",
    "RecorderConfig",
    "backoff_delay",
    "build_command",
    "chunk_name",
    "chunk_start_from_name",
    "read_chunk_marker",
    "record_until_signalled",
    "source_kind",
]
