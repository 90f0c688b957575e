"""roadlens.live: chunk a file, a UDP stream and a restarted stream with the real ffmpeg.

Everything runs the bundled ffmpeg for real: the source clip is written by OpenCV, the
live source is a second ffmpeg process streaming MPEG-TS over loopback UDP.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadlens.live import (
    STATUS_FILE,
    Recorder,
    RecorderConfig,
    RecorderState,
    backoff_delay,
    build_command,
    chunk_name,
    chunk_start_from_name,
    read_chunk_marker,
    read_status,
    source_kind,
)
from roadlens.redact import redact
from roadlens.registry import list_candidates, probe_video_record
from roadlens.video import probe
from roadlens.video.ffmpeg import ffmpeg_exe

FPS = 10
SECONDS = 8
FFMPEG = ffmpeg_exe()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8 s, 10 fps synthetic clip (a box moving across a grey road) from OpenCV."""
    path = tmp_path_factory.mktemp("src") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (320, 240))
    for i in range(FPS * SECONDS):
        frame = np.full((240, 320, 3), 60, np.uint8)
        cv2.rectangle(frame, (i * 3, 100), (i * 3 + 40, 140), (0, 200, 255), -1)
        cv2.putText(frame, str(i), (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    assert probe(path).frame_count == FPS * SECONDS
    return path


def _published(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.mp4") if not p.name.startswith("."))


def _hidden_work_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".roadlens-"))


def _container_start(path: Path) -> float:
    """The demuxer's start time of ``path`` (ffmpeg's ``start:`` in its input summary)."""
    info = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    match = re.search(r"start: (-?[0-9.]+)", info.stderr)
    assert match, info.stderr
    return float(match.group(1))


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- pure helpers ---------------------------------------------------------------------


def test_chunk_names_round_trip_and_sort_by_time() -> None:
    start = datetime(2026, 11, 21, 10, 30, 0, 123999, tzinfo=UTC)
    name = chunk_name("cam-1", start)
    assert name == "cam-1-20261121T103000.123Z.mp4"
    assert chunk_start_from_name(name) == start.replace(microsecond=123000)
    later = chunk_name("cam-1", start + timedelta(seconds=10))
    assert sorted([later, name]) == [name, later]
    assert chunk_start_from_name("clip.mp4") is None


def test_source_kinds_and_redaction() -> None:
    assert source_kind("rtsp://cam/live") == "network"
    assert source_kind("udp://127.0.0.1:5000") == "network"
    assert source_kind("/dev/video0") == "device"
    assert source_kind("testsrc2", "lavfi") == "device"
    assert source_kind("drive.mp4") == "file"
    assert redact("rtsp://admin:hunter2@cam/live") == "rtsp://admin:***@cam/live"
    redacted = redact("https://cam/live.m3u8?token=s3cret&ch=2")
    assert "s3cret" not in redacted and "ch=2" in redacted


def test_backoff_grows_is_capped_and_jittered() -> None:
    import random

    rng = random.Random(7)
    delays = [backoff_delay(n, 0.5, 8.0, rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(8.0, 0.5 * 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 8.0 and delays[-1] >= 4.0
    assert len({round(backoff_delay(5, 1.0, 30.0, rng), 6) for _ in range(20)}) > 10


def test_command_keeps_each_chunk_at_time_zero(tmp_path: Path) -> None:
    config = RecorderConfig("udp://127.0.0.1:5000", tmp_path, chunk_seconds=4, io_timeout_s=2)
    cmd = build_command(config, "copy", tmp_path / "l.csv", tmp_path / "p-%05d.mp4", "ffmpeg")
    joined = " ".join(cmd)
    assert "-f segment -segment_time 4 -reset_timestamps 1 -segment_format mp4" in joined
    assert "-timeout 2000000" in joined and "-re" not in cmd and "-c:v copy" in joined
    cmd = build_command(
        RecorderConfig("clip.mp4", tmp_path, chunk_seconds=2),
        "libx264",
        tmp_path / "l.csv",
        tmp_path / "p-%05d.mp4",
        "ffmpeg",
    )
    assert "-re" in cmd and "expr:gte(t,n_forced*2)" in cmd


# --- recording with the real ffmpeg ---------------------------------------------------


def test_file_source_real_time_chunks_are_marked_probeable_and_timed(
    clip: Path, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    out = landing / "cam-1"
    seen = []
    before = datetime.now(UTC)
    recorder = Recorder(
        RecorderConfig(str(clip), out, chunk_seconds=2, codec="reencode"),
        on_chunk=seen.append,
        log=None,
    )
    t0 = time.monotonic()
    status = recorder.run()
    elapsed = time.monotonic() - t0
    after = datetime.now(UTC)

    assert elapsed >= SECONDS - 1.0, "-re must read the file at its native pace"
    assert status.state == RecorderState.STOPPED
    chunks = _published(out)
    assert len(chunks) >= 3 and len(chunks) == status.chunks_closed == len(seen)
    assert _hidden_work_files(out) == []
    infos = [probe(c) for c in chunks]
    for info in infos[:-1]:
        assert info.duration_s == pytest.approx(2.0, abs=0.15)
    # -reset_timestamps 1: every chunk starts at time 0 (capture time = start + pts),
    # not at its offset in the stream behind an empty edit.
    assert all(_container_start(c) < 0.05 for c in chunks)
    assert sum(i.duration_s for i in infos) == pytest.approx(SECONDS, abs=0.25)

    starts, stream_starts = [], []
    for path, info in zip(chunks, infos, strict=True):
        assert Path(f"{path}.done").is_file(), f"{path.name} has no .done marker"
        marker = read_chunk_marker(path)
        assert marker is not None and marker.source_id == "cam-1"
        assert chunk_start_from_name(path.name) == marker.capture_start
        # Whole seconds in the container, milliseconds in the name and the marker.
        assert info.creation_time == marker.capture_start.replace(microsecond=0)
        assert before - timedelta(seconds=1) <= marker.capture_start <= after
        starts.append(marker.capture_start)
        stream_starts.append(marker.stream_start_s)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(g == pytest.approx(2.0, abs=0.35) for g in gaps), gaps
    # One ffmpeg run, one anchor: chunk times are exactly their stream offsets apart (to the
    # millisecond of the names), so consecutive chunks never overlap.
    offsets = [b - a for a, b in itertools.pairwise(stream_starts)]
    assert gaps == pytest.approx(offsets, abs=0.002), (gaps, offsets)
    assert [c.capture_start for c in seen] == starts
    assert status.last_chunk == chunks[-1].name and status.codec == "libx264"

    # The landing sensor's view: every chunk ready by marker; the registry takes the
    # capture start from the marker (milliseconds), which agrees with the container time.
    candidates = list_candidates(landing)
    assert [c.path.name for c in candidates] == [c.name for c in chunks]
    assert all(c.has_marker for c in candidates)
    record = probe_video_record(chunks[1], landing_root=landing)
    assert record.source_id == "cam-1" and record.capture_time_source == "live"
    assert record.capture_start == starts[1]
    assert probe(chunks[1]).creation_time == starts[1].replace(microsecond=0)


def test_copy_that_mp4_cannot_hold_falls_back_to_reencoding(tmp_path: Path) -> None:
    raw = tmp_path / "raw.avi"
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         "testsrc2=size=160x120:rate=10", "-t", "3", "-c:v", "rawvideo", "-pix_fmt", "bgr24",
         str(raw)],
        check=True,
    )  # fmt: skip
    out = tmp_path / "raw-cam"
    status = Recorder(
        RecorderConfig(str(raw), out, chunk_seconds=1, realtime=False), log=None
    ).run()
    assert status.state == RecorderState.STOPPED
    assert status.codec in ("libx264", "mpeg4") and status.ffmpeg_runs == 2
    assert "rawvideo" in (status.last_error or "")
    chunks = _published(out)
    assert len(chunks) == 3 and all(Path(f"{c}.done").exists() for c in chunks)
    assert sum(probe(c).duration_s for c in chunks) == pytest.approx(3.0, abs=0.2)
    assert _hidden_work_files(out) == []


def test_unreadable_file_source_ends_in_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    status = Recorder(RecorderConfig(str(bad), tmp_path / "bad"), log=None).run()
    assert status.state == RecorderState.ERROR
    assert status.last_error and "ffmpeg exited" in status.last_error
    assert read_status(tmp_path / "bad").state == "ERROR"
    assert _published(tmp_path / "bad") == []
    with pytest.raises(FileNotFoundError):
        Recorder(RecorderConfig(str(tmp_path / "missing.mp4"), tmp_path / "x"))


def _stream(clip: Path, port: int) -> subprocess.Popen:
    """A live source: ffmpeg loops the clip in real time as H.264 MPEG-TS over UDP."""
    return subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
         "-readrate_initial_burst", "0", "-stream_loop", "-1", "-i", str(clip),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "0",
         "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_udp_stream_reconnects_heartbeats_and_stops_cleanly(clip: Path, tmp_path: Path) -> None:
    port = _free_udp_port()
    out = tmp_path / "landing" / "udp-cam"
    source = f"udp://127.0.0.1:{port}?overrun_nonfatal=1"
    recorder = Recorder(
        RecorderConfig(
            source,
            out,
            chunk_seconds=1,
            io_timeout_s=1.0,
            input_options=["-analyzeduration", "500000", "-probesize", "100000"],
            reconnect_base_s=0.2,
            reconnect_max_s=1.0,
            heartbeat_s=0.5,
        ),
        log=None,
    )
    states: list[str] = []

    def state() -> str:
        current = read_status(out).state
        if not states or states[-1] != current:
            states.append(current)
        return current

    streamer = _stream(clip, port)
    try:
        recorder.start()
        _wait_for(lambda: (out / STATUS_FILE).exists(), 5, "the status file")
        _wait_for(lambda: state() == "RUNNING", 10, "RUNNING")
        _wait_for(lambda: len(_published(out)) >= 2, 10, "two chunks from the stream")
        beat = read_status(out).last_heartbeat
        time.sleep(1.2)
        assert read_status(out).last_heartbeat > beat, "heartbeat must advance"

        # The source dies: the recorder notices, keeps the chunks, and reconnects.
        streamer.send_signal(signal.SIGKILL)
        streamer.wait()
        _wait_for(lambda: state() == "RECONNECTING", 8, "RECONNECTING")
        before_restart = len(_published(out))
        dropped = read_status(out)
        assert dropped.reconnect_attempts >= 1 and dropped.last_error
        time.sleep(1.0)  # a retry or two against the silent port
        assert state() == "RECONNECTING"

        streamer = _stream(clip, port)
        _wait_for(lambda: state() == "RUNNING", 10, "RUNNING after the restart")
        _wait_for(
            lambda: len(_published(out)) >= before_restart + 2, 10, "chunks after the restart"
        )
        time.sleep(0.5)  # stop in the middle of a chunk
    finally:
        final = recorder.stop(timeout=20)
        streamer.kill()
        streamer.wait()

    assert final.state == RecorderState.STOPPED and read_status(out).state == "STOPPED"
    assert states[:1] in (["STARTING"], ["RUNNING"])
    assert [s for s in states if s != "STARTING"][:3] == ["RUNNING", "RECONNECTING", "RUNNING"]
    chunks = _published(out)
    assert final.chunks_closed == len(chunks) and final.last_chunk == chunks[-1].name
    assert final.ffmpeg_runs >= 2
    assert _hidden_work_files(out) == []
    starts = []
    for path in chunks:
        assert Path(f"{path}.done").is_file(), f"{path.name} not marked"
        info = probe(path)
        assert info.frame_count > 0
        starts.append(read_chunk_marker(path).capture_start)
    assert starts == sorted(starts)
    runs = {read_chunk_marker(p).ffmpeg_run for p in chunks}
    assert len(runs) >= 2, "chunks must come from before and after the reconnect"
    last = read_chunk_marker(chunks[-1])
    assert last.duration_s < 1.5, "the last, partial chunk is closed on stop"
    status_json = json.loads((out / STATUS_FILE).read_text())
    assert status_json["source"] == source and status_json["pid"] == os.getpid()


def test_cli_record_stops_on_sigterm_and_marks_the_last_chunk(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-cam"
    proc = subprocess.Popen(
        [sys.executable, "-m", "roadlens.cli", "record", "--source", str(clip),
         "--out", str(out), "--chunk-seconds", "2", "--codec", "reencode"],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: len(_published(out)) >= 1, 20, "the first chunk")
        time.sleep(0.6)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    status = read_status(out)
    assert status.state == "STOPPED"
    chunks = _published(out)
    assert 2 <= len(chunks) < 4 and status.chunks_closed == len(chunks)
    assert all(Path(f"{c}.done").exists() for c in chunks)
    assert math.isclose(probe(chunks[0]).duration_s, 2.0, abs_tol=0.15)
    assert probe(chunks[-1]).duration_s < 1.95, "the chunk open at SIGTERM is closed early"
    assert err.count("chunk ") >= len(chunks), "one progress line per closed chunk"
    assert "STOPPED" in err


def test_silent_source_gives_up_after_max_reconnects_and_guards_its_folder(
    tmp_path: Path,
) -> None:
    out = tmp_path / "silent-cam"
    config = RecorderConfig(
        f"udp://127.0.0.1:{_free_udp_port()}",
        out,
        io_timeout_s=0.5,
        connect_timeout_s=3.0,
        reconnect_base_s=0.2,
        reconnect_max_s=0.4,
        max_reconnects=2,
    )
    recorder = Recorder(config, log=None)
    recorder.start()
    _wait_for(lambda: (out / STATUS_FILE).exists(), 5, "the status file")
    with pytest.raises(RuntimeError, match="another recorder"):
        Recorder(dataclasses.replace(config), log=None)._check_folder_free()
    assert recorder.wait(timeout=20), "a silent source must give up after max_reconnects"
    status = recorder.status
    assert status.state == RecorderState.ERROR
    assert status.reconnect_attempts == 2 and status.ffmpeg_runs == 3
    assert "gave up after 2 reconnects" in (status.last_error or "")
    assert status.chunks_closed == 0 and _published(out) == []
    assert _hidden_work_files(out) == []
