"""The landing sensor: readiness (marker or settled), cursor, per-tick cap and bad files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from roadlens.registry import DONE_MARKER, Candidate, batch_run_key, list_candidates
from roadlens_dagster.orchestration.jobs import MICROBATCH_EXECUTOR_ENV
from roadlens_dagster.orchestration.sensors.landing import (
    MAX_QUEUED_ENV,
    SENSOR_INTERVAL_ENV,
    landing_sensor,
    max_queued_microbatches,
    plan_ready,
    sensor_interval_s,
    waiting_microbatches,
)
from roadlens_dagster.resources import SourcesResource
from tests.conftest import CAPTURE_DATE, REPO, SESSION_ID, VEHICLE_ID, LandingClips, copy_clip

# Every asset of the spine job gets the same micro-batch: the spine, the ODE stage, the sinks.
SPINE = (
    "videos",
    "frames",
    "raw_detections",
    "detections",
    "events",
    "event_stats",
    "heatmaps",
    "pg_detections",
    "mongo_detections",
    "kafka_detections",
    "file_detections",
    "pg_events",
    "mongo_events",
    "kafka_events",
    "mqtt_events",
    "amqp_events",
    "file_events",
)


# -- plan_ready (pure) ---------------------------------------------------------------------


def _cand(name: str, *, size: int = 100, mtime: int = 1, marker: bool = False) -> Candidate:
    return Candidate(Path("landing") / name, size, mtime, marker)


def test_plan_marker_is_ready_at_once() -> None:
    ready, cursor = plan_ready(
        {}, [_cand("a.mp4", marker=True)], now=0.0, ready_after_s=10, limit=5
    )
    assert [c.path.name for c in ready] == ["a.mp4"]
    assert cursor == {"done": {}, "settling": {}}  # the sensor records "done" after registering


def test_plan_unmarked_file_settles_first() -> None:
    files = [_cand("a.mp4")]
    ready, cursor = plan_ready({}, files, now=100.0, ready_after_s=10, limit=5)
    assert ready == [] and cursor["settling"] == {"landing/a.mp4": [100, 1, 100.0]}
    ready, cursor = plan_ready(cursor, files, now=105.0, ready_after_s=10, limit=5)
    assert ready == []  # unchanged but not long enough
    ready, cursor = plan_ready(cursor, files, now=110.0, ready_after_s=10, limit=5)
    assert [c.path.name for c in ready] == ["a.mp4"] and cursor["settling"] == {}


def test_plan_growing_file_restarts_its_clock() -> None:
    _, cursor = plan_ready({}, [_cand("a.mp4", size=100)], now=0.0, ready_after_s=10, limit=5)
    grown = [_cand("a.mp4", size=200, mtime=2)]
    ready, cursor = plan_ready(cursor, grown, now=20.0, ready_after_s=10, limit=5)
    assert ready == [] and cursor["settling"]["landing/a.mp4"] == [200, 2, 20.0]
    ready, _ = plan_ready(cursor, grown, now=30.0, ready_after_s=10, limit=5)
    assert [c.size for c in ready] == [200]


def test_plan_skips_done_files_unless_they_changed() -> None:
    cursor = {"done": {"landing/a.mp4": [100, 1]}, "settling": {}}
    ready, _ = plan_ready(cursor, [_cand("a.mp4", marker=True)], now=0, ready_after_s=0, limit=5)
    assert ready == []
    replaced = [_cand("a.mp4", size=300, mtime=9, marker=True)]
    ready, _ = plan_ready(cursor, replaced, now=0, ready_after_s=0, limit=5)
    assert [c.size for c in ready] == [300]


def test_plan_limit_keeps_the_rest_for_later() -> None:
    files = [_cand(f"{i}.mp4", mtime=i, marker=i % 2 == 0) for i in range(6)]
    _, cursor = plan_ready({}, files, now=0.0, ready_after_s=5, limit=2)
    ready, cursor = plan_ready(cursor, files, now=10.0, ready_after_s=5, limit=2)
    assert [c.path.name for c in ready] == ["0.mp4", "1.mp4"]  # oldest first, cap 2
    # the unmarked files over the cap are still settling, so they stay eligible
    assert set(cursor["settling"]) == {"landing/3.mp4", "landing/5.mp4"}


def test_plan_does_not_mutate_the_cursor_it_gets() -> None:
    cursor = {"done": {"landing/x.mp4": [1, 1]}, "settling": {}}
    snapshot = json.dumps(cursor)
    plan_ready(cursor, [_cand("a.mp4")], now=0.0, ready_after_s=5, limit=2)
    assert json.dumps(cursor) == snapshot


# -- the sensor over a real landing folder --------------------------------------------------


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    path = tmp_path / "landing"
    path.mkdir()
    return path


def _place(
    clips: LandingClips, landing: Path, index: int, *, marker: bool, name: str | None = None
) -> Path:
    folder = landing / VEHICLE_ID / SESSION_ID
    video = copy_clip(clips.clips[index], folder, name=name)
    if marker:
        (folder / f"{video.name}{DONE_MARKER}").touch()
    return video


def _tick(
    instance: dg.DagsterInstance,
    landing: Path,
    cursor: str | None = None,
    *,
    ready_after_s: float = 0.0,
    max_files: int = 50,
) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor,
        instance=instance,
        resources={
            "sources": SourcesResource(
                landing_dir=str(landing),
                ready_after_s=ready_after_s,
                max_files_per_tick=max_files,
            )
        },
    )
    result = landing_sensor(context)
    assert isinstance(result, dg.SensorResult)
    return result


def _requested(result: dg.SensorResult) -> list[tuple[str, list[str], list[str]]]:
    """(partition, video ids, paths) of each run request, checking the config is consistent."""
    out = []
    for request in result.run_requests or []:
        ops = request.run_config["ops"]
        assert set(ops) == set(SPINE)
        batches = [ops[name]["config"] for name in SPINE]
        assert all(b == batches[0] for b in batches)
        ids, paths = batches[0]["video_ids"], batches[0]["paths"]
        assert request.run_key == batch_run_key(request.partition_key, ids)
        assert request.tags["roadlens/videos"] == str(len(ids))
        # One source per run (video ids are "<source>--<stem>"): the queue runs a source's
        # batches one at a time, in order.
        assert {i.split("--")[0] for i in ids} == {request.tags["roadlens/source"]}
        # Micro-batches run in-process unless the environment says otherwise.
        executor = os.environ.get(MICROBATCH_EXECUTOR_ENV, "").strip() or "in_process"
        assert request.run_config["execution"] == {"config": {executor: {}}}
        out.append((request.partition_key, ids, paths))
    return out


def _ids(result: dg.SensorResult) -> list[str]:
    return sorted(v for _, ids, _ in _requested(result) for v in ids)


@pytest.mark.slow
def test_marked_file_is_requested_on_first_tick(
    dashcam_clip_dir: LandingClips, landing: Path, instance: dg.DagsterInstance
) -> None:
    video = _place(dashcam_clip_dir, landing, 0, marker=True)
    result = _tick(instance, landing, ready_after_s=3600)
    assert _requested(result) == [(CAPTURE_DATE, ["veh-01--drive-0000"], [str(video.resolve())])]
    assert result.run_requests[0].tags["lane"] == "microbatch"
    cursor = json.loads(result.cursor)
    assert cursor["done"] == {
        str(video.resolve()): [video.stat().st_size, video.stat().st_mtime_ns]
    }


@pytest.mark.slow
def test_unmarked_file_waits_until_settled(
    dashcam_clip_dir: LandingClips, landing: Path, instance: dg.DagsterInstance
) -> None:
    _place(dashcam_clip_dir, landing, 0, marker=False)
    first = _tick(instance, landing, ready_after_s=0.0)
    assert _requested(first) == [] and first.skip_reason
    assert list(json.loads(first.cursor)["settling"]) == [str(list_candidates(landing)[0].path)]
    # Still settling under a long quiet period.
    held = _tick(instance, landing, first.cursor, ready_after_s=3600)
    assert _requested(held) == []
    second = _tick(instance, landing, first.cursor, ready_after_s=0.0)
    assert _ids(second) == ["veh-01--drive-0000"]
    assert json.loads(second.cursor)["settling"] == {}


@pytest.mark.slow
def test_files_are_never_requested_twice_and_new_ones_come_alone(
    dashcam_clip_dir: LandingClips, landing: Path, instance: dg.DagsterInstance
) -> None:
    _place(dashcam_clip_dir, landing, 0, marker=True)
    first = _tick(instance, landing)
    assert _ids(first) == ["veh-01--drive-0000"]
    again = _tick(instance, landing, first.cursor)
    assert _requested(again) == []
    cursor = again.cursor
    assert json.loads(cursor) == json.loads(first.cursor)

    second = _place(dashcam_clip_dir, landing, 1, marker=True)
    newer = _tick(instance, landing, cursor)
    assert _requested(newer) == [(CAPTURE_DATE, ["veh-01--drive-0001"], [str(second.resolve())])]
    last = _tick(instance, landing, newer.cursor)
    assert _requested(last) == []


@pytest.mark.slow
def test_max_files_per_tick_caps_and_the_rest_follow(
    dashcam_clip_dir: LandingClips, landing: Path, instance: dg.DagsterInstance
) -> None:
    videos = [
        _place(dashcam_clip_dir, landing, i % 2, marker=True, name=f"drive-{i:04d}")
        for i in range(3)
    ]
    for i, video in enumerate(videos):  # deterministic "oldest first" order
        os.utime(video, ns=(1_700_000_000_000_000_000 + i, 1_700_000_000_000_000_000 + i))
    first = _tick(instance, landing, max_files=2)
    assert _ids(first) == ["veh-01--drive-0000", "veh-01--drive-0001"]
    assert len(first.run_requests) == 1  # one micro-batch per capture date
    second = _tick(instance, landing, first.cursor, max_files=2)
    assert _ids(second) == ["veh-01--drive-0002"]
    third = _tick(instance, landing, second.cursor, max_files=2)
    assert _requested(third) == []


@pytest.mark.slow
def test_corrupt_file_is_skipped_without_breaking_the_tick(
    dashcam_clip_dir: LandingClips, landing: Path, instance: dg.DagsterInstance
) -> None:
    folder = landing / VEHICLE_ID / SESSION_ID
    folder.mkdir(parents=True)
    bad = folder / "broken.mp4"
    bad.write_text("this is not a video\n" * 50)
    (folder / f"broken.mp4{DONE_MARKER}").touch()
    empty = folder / "empty.mp4"
    empty.touch()
    (folder / f"empty{DONE_MARKER}").touch()  # the <stem>.done form
    _place(dashcam_clip_dir, landing, 0, marker=True)

    result = _tick(instance, landing)
    assert _ids(result) == ["veh-01--drive-0000"]
    done = json.loads(result.cursor)["done"]
    assert str(bad.resolve()) in done and str(empty.resolve()) in done  # not retried every tick
    assert _requested(_tick(instance, landing, result.cursor)) == []


@pytest.mark.slow
def test_only_corrupt_files_gives_a_skip(landing: Path, instance: dg.DagsterInstance) -> None:
    bad = landing / "broken.mp4"
    bad.write_text("not a video")
    (landing / f"broken.mp4{DONE_MARKER}").touch()
    result = _tick(instance, landing)
    assert _requested(result) == [] and result.skip_reason
    # The tick names the bad file and its problem instead of "no new ready videos".
    assert f"1 file(s) skipped: {bad.resolve()}:" in result.skip_reason.skip_message


@pytest.mark.slow
def test_executor_of_the_requested_runs_follows_the_environment(
    dashcam_clip_dir: LandingClips,
    landing: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _place(dashcam_clip_dir, landing, 0, marker=True)
    monkeypatch.setenv(MICROBATCH_EXECUTOR_ENV, "multiprocess")
    (request,) = _tick(instance, landing).run_requests
    assert request.run_config["execution"] == {"config": {"multiprocess": {}}}
    monkeypatch.delenv(MICROBATCH_EXECUTOR_ENV)
    (request,) = _tick(instance, landing).run_requests
    assert request.run_config["execution"] == {"config": {"in_process": {}}}


def test_unknown_executor_fails_the_tick_before_it_moves_the_cursor(
    landing: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MICROBATCH_EXECUTOR_ENV, "threads")
    with pytest.raises(ValueError, match=MICROBATCH_EXECUTOR_ENV):
        _tick(instance, landing)


# -- the interval ---------------------------------------------------------------------------


def test_sensor_interval_from_the_environment() -> None:
    assert sensor_interval_s({}) == 15
    assert sensor_interval_s({SENSOR_INTERVAL_ENV: ""}) == 15
    assert sensor_interval_s({SENSOR_INTERVAL_ENV: " 5 "}) == 5
    for bad in ("0", "-3", "2.5", "fast"):
        with pytest.raises(ValueError, match=SENSOR_INTERVAL_ENV):
            sensor_interval_s({SENSOR_INTERVAL_ENV: bad})


def test_sensor_interval_is_read_when_the_code_location_loads() -> None:
    """A fresh process with the variable set defines the sensor with that interval."""
    import subprocess
    import sys

    code = (
        "from roadlens_dagster.orchestration.sensors.landing import landing_sensor;"
        "print(landing_sensor.minimum_interval_seconds)"
    )
    env = {**os.environ, SENSOR_INTERVAL_ENV: "7", "PYTHONWARNINGS": "ignore"}
    root = REPO
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7"]


# -- back-pressure ---------------------------------------------------------------------------


def _run(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus, lane: str = "microbatch"
) -> str:
    """A run of spine_job in ``status`` with the ``lane`` tag, as the daemon would see it."""
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="roadlens_dagster.orchestration.definitions")
    )
    run = instance.add_run(
        dg.DagsterRun(
            job_name="spine_job",
            run_id=f"{status.value.lower()}-{len(instance.get_runs())}",
            status=status,
            tags={"lane": lane},
            remote_job_origin=RemoteJobOrigin(
                RemoteRepositoryOrigin(location, "__repository__"), "spine_job"
            ),
        )
    )
    return run.run_id


def _queued_microbatch(instance: dg.DagsterInstance) -> str:
    """A micro-batch run waiting in the run queue."""
    return _run(instance, dg.DagsterRunStatus.QUEUED)


def test_max_queued_from_the_environment() -> None:
    assert max_queued_microbatches({}) == 1
    assert max_queued_microbatches({MAX_QUEUED_ENV: "0"}) == 0
    assert max_queued_microbatches({MAX_QUEUED_ENV: " 3 "}) == 3
    for bad in ("-1", "one", "1.5"):
        with pytest.raises(ValueError, match=MAX_QUEUED_ENV):
            max_queued_microbatches({MAX_QUEUED_ENV: bad})


def test_only_waiting_micro_batches_count(instance: dg.DagsterInstance) -> None:
    assert waiting_microbatches(instance) == 0
    _queued_microbatch(instance)
    _run(instance, dg.DagsterRunStatus.NOT_STARTED)  # created, about to be queued
    _run(instance, dg.DagsterRunStatus.STARTED)  # launched: no longer waiting
    _run(instance, dg.DagsterRunStatus.SUCCESS)
    _run(instance, dg.DagsterRunStatus.QUEUED, lane="batch")  # the nightly lane
    assert waiting_microbatches(instance) == 2


@pytest.mark.slow
def test_queued_micro_batch_holds_new_videos_for_one_bigger_batch(
    dashcam_clip_dir: LandingClips,
    landing: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MAX_QUEUED_ENV, raising=False)
    queued = _queued_microbatch(instance)
    first = _place(dashcam_clip_dir, landing, 0, marker=True)
    held = _tick(instance, landing)
    assert _requested(held) == []
    assert held.skip_reason is not None and "still queued" in held.skip_reason.skip_message
    assert json.loads(held.cursor)["done"] == {}, "held videos must stay eligible"
    # Another chunk arrives while the queue is still full: still held.
    _place(dashcam_clip_dir, landing, 1, marker=True)
    still = _tick(instance, landing, held.cursor)
    assert _requested(still) == []
    # The queued run is launched (leaves the queue): both videos go out in one run.
    instance.delete_run(queued)
    released = _tick(instance, landing, still.cursor)
    assert _ids(released) == ["veh-01--drive-0000", "veh-01--drive-0001"]
    assert len(released.run_requests) == 1
    assert str(first.resolve()) in json.loads(released.cursor)["done"]


@pytest.mark.slow
def test_back_pressure_can_be_switched_off(
    dashcam_clip_dir: LandingClips,
    landing: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _queued_microbatch(instance)
    _queued_microbatch(instance)
    _place(dashcam_clip_dir, landing, 0, marker=True)
    monkeypatch.setenv(MAX_QUEUED_ENV, "3")  # two queued, three allowed: not held
    assert _ids(_tick(instance, landing)) == ["veh-01--drive-0000"]
    monkeypatch.setenv(MAX_QUEUED_ENV, "0")  # off
    assert _ids(_tick(instance, landing)) == ["veh-01--drive-0000"]
    monkeypatch.setenv(MAX_QUEUED_ENV, "2")  # two queued: held
    assert _requested(_tick(instance, landing)) == []


def test_held_tick_keeps_the_settling_clock_of_unmarked_files(
    landing: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MAX_QUEUED_ENV, raising=False)
    _queued_microbatch(instance)
    (landing / "growing.mp4").write_bytes(b"\0" * 100)
    held = _tick(instance, landing, ready_after_s=10.0)
    assert _requested(held) == []
    assert list(json.loads(held.cursor)["settling"]) == [str((landing / "growing.mp4").resolve())]


@pytest.mark.slow
def test_each_source_gets_its_own_run_so_its_chunks_run_in_order(
    dashcam_clip_dir: LandingClips, landing: Path, instance: dg.DagsterInstance
) -> None:
    for index, source in enumerate(("cam-a", "cam-b")):
        folder = landing / source
        video = copy_clip(dashcam_clip_dir.clips[index], folder)
        (folder / f"{video.name}{DONE_MARKER}").touch()
    result = _tick(instance, landing)
    runs = _requested(result)
    assert len(runs) == 2
    assert sorted(r.tags["roadlens/source"] for r in result.run_requests) == ["cam-a", "cam-b"]


@pytest.mark.slow
def test_runs_on_a_gpu_carry_its_index_for_the_queue(
    dashcam_clip_dir: LandingClips,
    landing: Path,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _place(dashcam_clip_dir, landing, 0, marker=True)
    monkeypatch.setenv("ROADLENS_DEVICE", "cuda:1")
    first = _tick(instance, landing)
    assert [r.tags.get("roadlens/gpu") for r in first.run_requests] == ["1"]
    _place(dashcam_clip_dir, landing, 1, marker=True)
    monkeypatch.setenv("ROADLENS_DEVICE", "cpu")
    second = _tick(instance, landing, first.cursor)
    assert len(second.run_requests) == 1 and "roadlens/gpu" not in second.run_requests[0].tags
