"""Reliability of `roadlens ingest` as a process: kills, signals, races and bad files in a batch.

Every test runs the real CLI in a subprocess on real clips (``../shared/data``) with the real
COCO detector (``../shared/models``), against a fresh ``ROADLENS_HOME``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, shared_data, shared_model

pytestmark = pytest.mark.slow

DETECTING = "frames/s"  # the detections step's progress lines


def _env(home: Path) -> dict[str, str]:
    return {
        "ROADLENS_HOME": str(home),
        "ROADLENS_WEIGHTS": str(shared_model()),
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(home / "ultralytics"),
        "PATH": "/usr/bin:/bin",
    }


def _landed(tmp_path: Path, name: str, *clips: str) -> Path:
    """A landing folder ``<tmp>/<name>/cam`` with links to shared clips."""
    folder = tmp_path / name / "cam"
    folder.mkdir(parents=True)
    for clip in clips:
        (folder / clip).symlink_to(shared_data(clip))
    return folder


def _cli(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``roadlens ARGS`` in a subprocess on ``home``, with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "roadlens_dagster.cli", *args],
        cwd=REPO,
        env={**_env(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ingest(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return _cli(home, "ingest", *args, timeout=timeout)


class _Running:
    """`roadlens ingest` in the background, its merged output collected line by line."""

    def __init__(self, home: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "roadlens_dagster.cli", "ingest", *args],
            cwd=REPO,
            env=_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never printed {text!r}:\n{''.join(self.lines)[-3000:]}")
            time.sleep(0.2)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, "".join(self.lines)


def test_a_killed_ingest_never_blocks_the_next(tmp_path: Path) -> None:
    """SIGKILL during detection, then ingest again: the dead run is failed, its slot freed."""
    home = tmp_path / "home"
    long_run = _Running(home, str(_landed(tmp_path, "a", "roadside.mp4")), "--fps", "30")
    long_run.wait_for(DETECTING)
    long_run.process.kill()
    long_run.finish()
    started = time.monotonic()
    again = _ingest(home, str(_landed(tmp_path, "b", "dashcam.mp4")), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "marked failed and its pool slots freed" in again.stderr
    assert "pid" in again.stderr
    # Within seconds of a normal ingest: nothing waited for the dead run's slot.
    assert time.monotonic() - started < 120
    assert list((home / "lake" / "detections").rglob("*dashcam*.parquet"))


def test_sigterm_stops_cleanly_with_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    run = _Running(home, str(_landed(tmp_path, "a", "roadside.mp4")), "--fps", "30")
    run.wait_for(DETECTING)
    run.process.send_signal(signal.SIGTERM)
    code, output = run.finish()
    assert code == 130, output[-3000:]
    assert "Traceback" not in output
    assert sum("roadlens: interrupted" in line for line in output.splitlines()) == 1
    # The next run on the same home is not held up by the interrupted one.
    again = _ingest(home, str(_landed(tmp_path, "b", "dashcam.mp4")), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]


def test_two_ingests_at_once_on_a_fresh_home_both_succeed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = _Running(home, str(_landed(tmp_path, "a", "dashcam.mp4")))
    second = _Running(home, str(_landed(tmp_path, "b", "roadside.mp4")), "--source-id", "other")
    for run in (first, second):
        code, output = run.finish(timeout=600)
        assert code == 0, output[-3000:]
        assert "Traceback" not in output
    names = {p.name for p in (home / "lake" / "detections").rglob("*.parquet")}
    assert any("dashcam" in n for n in names) and any("roadside" in n for n in names)


def test_a_bad_file_never_stops_the_batch(tmp_path: Path) -> None:
    """A good clip, random bytes and an empty file: the good one is processed in full."""
    home = tmp_path / "home"
    folder = _landed(tmp_path, "mixed", "dashcam.mp4")
    (folder / "noise.mp4").write_bytes(os.urandom(200_000))
    (folder / "empty.mp4").write_bytes(b"")
    done = _ingest(home, str(folder))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr + done.stdout
    for bad in ("noise.mp4", "empty.mp4"):
        assert f"skipping {folder / bad}" in done.stderr
        assert f"  {folder / bad}: " in done.stdout  # the summary lists it
    assert "2 of 3 files could not be processed" in done.stdout
    detections = list((home / "lake" / "detections").rglob("*.parquet"))
    events = list((home / "lake" / "events").rglob("*.parquet"))
    assert len(detections) == len(events) == 1
    assert detections[0].stem == events[0].stem and detections[0].stem.endswith("dashcam")
    assert pq.read_table(detections[0]).num_rows > 0


@pytest.mark.parametrize(
    "url",
    [
        "postgres:S3cretPW@127.0.0.1:5432/postgres",  # no scheme
        "postgresql://postgres:S3cretPW@127.0.0.1:1/postgres",  # nothing listening
        "host=127.0.0.1 port=1 user=postgres password=S3cretPW dbname=postgres",
    ],
)
def test_no_password_in_any_output_of_a_failing_command(tmp_path: Path, url: str) -> None:
    done = _cli(tmp_path / "home", "db", "upgrade", env={"ROADLENS_POSTGRES_URL": url})
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert output.strip() and "Traceback" not in output
    for line in output.splitlines():
        assert "S3cretPW" not in line


def test_settings_that_cannot_work_fail_before_any_video_is_decoded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        "ROADLENS_EXPORT_DIR": str(tmp_path / "export"),
        "ROADLENS_EXPORT_FORMAT": "xml",
        "ROADLENS_MQTT_URL": "mqtt://127.0.0.1:1",
        "ROADLENS_MQTT_QOS": "7",
        "ROADLENS_POSTGRES_URL": "postgres:S3cretPW@127.0.0.1:5432/postgres",
        "ROADLENS_MAX_QUARANTINE_SHARE": "2",
    }
    started = time.monotonic()
    dashcam = str(_landed(tmp_path, "a", "dashcam.mp4"))
    done = _cli(home, "ingest", dashcam, "--rules", str(tmp_path / "missing.yaml"), env=env)
    assert done.returncode == 2
    assert time.monotonic() - started < 60  # no decode, no detection, no retries
    for named in (
        "ROADLENS_EXPORT_FORMAT=xml",
        "ROADLENS_MQTT_QOS=7",
        "ROADLENS_POSTGRES_URL=postgres:***@",
        "ROADLENS_MAX_QUARANTINE_SHARE",
        "missing.yaml: no such file",
    ):
        assert named in done.stderr
    assert "S3cretPW" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not (home / "lake").exists() or not list((home / "lake").rglob("*.parquet"))


def test_named_files_that_are_not_there_are_named_truthfully_and_skipped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = _landed(tmp_path, "a", "dashcam.mp4")
    loop_a, loop_b = tmp_path / "loop-a.mp4", tmp_path / "loop-b.mp4"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    dangling = tmp_path / "gone.mp4"
    dangling.symlink_to(tmp_path / "never-there.mp4")
    done = _ingest(home, str(folder / "dashcam.mp4"), str(loop_a), str(dangling), "missing.mp4")
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"skipping {loop_a}: symlink loop" in done.stderr
    assert f"skipping {dangling}: broken symlink" in done.stderr
    assert "skipping missing.mp4: no such file or folder" in done.stderr
    assert "3 of 4 files could not be processed" in done.stdout
    assert list((home / "lake" / "detections").rglob("*dashcam*.parquet"))


def test_a_query_on_a_missing_lake_says_so(tmp_path: Path) -> None:
    done = _cli(tmp_path, "--lake", str(tmp_path / "nowhere"), "query", "SELECT 1")
    assert done.returncode == 2
    assert f"lake folder not found: {tmp_path / 'nowhere'}" in done.stderr
    assert "pg_settings" not in done.stderr and "Traceback" not in done.stderr


def test_tail_to_an_unreachable_broker_names_it_in_one_line(tmp_path: Path) -> None:
    done = _cli(tmp_path, "tail", "--bootstrap", "user:S3cretPW@127.0.0.1:1", "--timeout", "2")
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        "roadlens: kafka: cannot reach user:***@127.0.0.1:1: " + lines[0].split(": ", 3)[3]
    ]
    assert "rdkafka" not in done.stderr and "S3cretPW" not in done.stderr


def test_operating_system_errors_are_one_line_naming_the_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from roadlens.cli import _report

    assert _report(PermissionError(13, "Permission denied", "/srv/roadlens/lake")) == 2
    assert capsys.readouterr().err == "roadlens: error: /srv/roadlens/lake: Permission denied\n"


def test_a_gps_sidecar_from_another_time_is_a_warning_with_both_ranges(tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = _landed(tmp_path, "a", "dashcam.mp4")
    track = tmp_path / "other-year.csv"
    track.write_text(
        "timestamp,lat,lon\n2019-03-01T10:00:00Z,48.0,11.0\n2019-03-01T10:00:30Z,48.001,11.001\n"
    )
    done = _ingest(home, str(folder / "dashcam.mp4"), "--gps", str(track))
    assert done.returncode == 0, done.stderr[-3000:]
    warning = next(line for line in done.stdout.splitlines() if "warning" in line)
    assert str(track) in warning and "do not overlap the video" in warning
    assert "2019-03-01T10:00:00+00:00 to 2019-03-01T10:00:30+00:00" in warning
    assert "GPS coverage       0%" in done.stdout


@pytest.mark.parametrize(
    ("variable", "url", "named"),
    [
        ("ROADLENS_POSTGRES_URL", "postgresql://postgres:S3cretPW@127.0.0.1:1/postgres", "port 1"),
        ("ROADLENS_AMQP_URL", "amqp://guest:S3cretPW@127.0.0.1:5672/%2F", "ACCESS_REFUSED"),
        ("ROADLENS_MQTT_URL", "mqtt://user:S3cretPW@127.0.0.1:1", "Connection refused"),
    ],
)
def test_a_sink_that_cannot_be_reached_stops_ingest_before_any_decode(
    tmp_path: Path, variable: str, url: str, named: str
) -> None:
    home = tmp_path / "home"
    started = time.monotonic()
    dashcam = str(_landed(tmp_path, "a", "dashcam.mp4"))
    done = _cli(home, "ingest", dashcam, env={variable: url})
    assert done.returncode == 2, done.stderr[-2000:]
    assert time.monotonic() - started < 60  # no detection, no retries
    assert f"{variable}: " in done.stderr and named in done.stderr
    assert "S3cretPW" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not list((home / "lake").rglob("*.parquet")) if (home / "lake").exists() else True
