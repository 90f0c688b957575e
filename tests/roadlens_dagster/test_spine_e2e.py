"""The whole spine on rendered dashcam clips: lake contents, metadata, idempotency, nightly, CLI.

Only plumbing is asserted (counts agree between lake tables and metadata, ids, re-runs);
the detector is still being trained, so detection quality is never checked. A low
confidence threshold makes boxes likely even from a young model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from roadlens import pipeline
from roadlens.lake import (
    DETECTIONS_TABLE,
    FRAMES_TABLE,
    RAW_DETECTIONS_TABLE,
    VIDEOS_TABLE,
    ParquetLake,
)
from roadlens.registry import VideoRecord, probe_video_record
from roadlens.sinks.duckdb_views import query
from roadlens_dagster.assets.batch import batch_run_config
from roadlens_dagster.assets.spine import SPINE
from roadlens_dagster.resources import (
    DetectorResource,
    LakeResource,
    SinksResource,
    SourcesResource,
)
from tests.conftest import CAPTURE_DATE, CLIP_FPS, CLIP_SECONDS, LandingClips, copy_clip

pytestmark = pytest.mark.slow

SAMPLE_FPS = 5.0
FRAMES_PER_VIDEO = int(CLIP_SECONDS * SAMPLE_FPS)  # 15 for a 3 s clip sampled at 5 fps
TABLES = (
    VIDEOS_TABLE,
    FRAMES_TABLE,
    RAW_DETECTIONS_TABLE,
    DETECTIONS_TABLE,
)
SORT_KEYS = {
    VIDEOS_TABLE: ["video_id"],
    FRAMES_TABLE: ["video_id", "frame_number"],
    RAW_DETECTIONS_TABLE: [
        "video_id",
        "frame_number",
        "class_id",
        "x1",
        "y1",
        "x2",
        "y2",
        "confidence",
    ],
    DETECTIONS_TABLE: ["detection_id"],
}
# Each spine asset writes the lake table of its own name.
NODE_TABLE = {table: table for table in TABLES}


# -- helpers ------------------------------------------------------------------------------


def _resources(lake_root: Path, landing: Path, weights: Path) -> dict:
    return {
        "lake": LakeResource(root=str(lake_root)),
        "sources": SourcesResource(landing_dir=str(landing), sample_fps=SAMPLE_FPS),
        "detector": DetectorResource(weights=str(weights), conf=0.01),
        "sinks": SinksResource(),
    }


def _materialize(
    instance: dg.DagsterInstance, resources: dict, run_config: dict | None
) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        list(SPINE),
        partition_key=CAPTURE_DATE,
        resources=resources,
        instance=instance,
        run_config=run_config,
    )
    assert result.success
    return result


def _meta(result: dg.ExecuteInProcessResult, node: str) -> dict:
    mats = result.asset_materializations_for_node(node)
    assert len(mats) == 1 and mats[0].partition == CAPTURE_DATE
    return {k: v.value for k, v in mats[0].metadata.items()}


def _sorted(lake: ParquetLake, table: str) -> pa.Table:
    data = lake.read_date(table, CAPTURE_DATE)
    assert data is not None, f"no {table} files for {CAPTURE_DATE}"
    return data.sort_by([(k, "ascending") for k in SORT_KEYS[table]])


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _changed_columns(a: pa.Table, b: pa.Table) -> set[str]:
    assert a.column_names == b.column_names and a.num_rows == b.num_rows
    return {name for name in a.column_names if not a.column(name).equals(b.column(name))}


@dataclass
class Snapshot:
    files: list[str]
    tables: dict[str, pa.Table]

    @classmethod
    def take(cls, lake: ParquetLake) -> Snapshot:
        return cls(_files(lake.root), {t: _sorted(lake, t) for t in TABLES})


@dataclass
class SpineRuns:
    clips: LandingClips
    lake: ParquetLake
    records: list[VideoRecord]
    first: dg.ExecuteInProcessResult
    first_snapshot: Snapshot
    rerun: dg.ExecuteInProcessResult
    rerun_snapshot: Snapshot
    nightly: dg.ExecuteInProcessResult
    nightly_force: dg.ExecuteInProcessResult
    force_snapshot: Snapshot
    extra: dict = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [r.video_id for r in self.records]


@pytest.fixture(scope="module")
def module_env(roadlens_home_dir: Path) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROADLENS_HOME", str(roadlens_home_dir))
        mp.setenv("YOLO_OFFLINE", "1")
        mp.setenv("YOLO_CONFIG_DIR", str(roadlens_home_dir / "ultralytics"))
        for name in ("ROADLENS_LAKE", "ROADLENS_LANDING", "ROADLENS_SOURCES", "ROADLENS_WEIGHTS"):
            mp.delenv(name, raising=False)
        yield roadlens_home_dir


@pytest.fixture(scope="module")
def spine(
    module_env: Path,
    dashcam_clip_dir: LandingClips,
    detector_weights: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> SpineRuns:
    """A sensor-style micro-batch of both clips, the same run again, then nightly runs."""
    lake = ParquetLake(tmp_path_factory.mktemp("spine") / "lake")
    landing = dashcam_clip_dir.landing
    records = [probe_video_record(p, landing_root=landing) for p in dashcam_clip_dir.paths]
    config = batch_run_config([r.video_id for r in records], [r.path for r in records])
    resources = _resources(lake.root, landing, detector_weights)
    with dg.instance_for_test() as instance:
        first = _materialize(instance, resources, config)
        first_snapshot = Snapshot.take(lake)
        rerun = _materialize(instance, resources, config)
        rerun_snapshot = Snapshot.take(lake)
        nightly = _materialize(instance, resources, None)
        nightly_force = _materialize(instance, resources, batch_run_config([], force=True))
        force_snapshot = Snapshot.take(lake)
    return SpineRuns(
        dashcam_clip_dir,
        lake,
        records,
        first,
        first_snapshot,
        rerun,
        rerun_snapshot,
        nightly,
        nightly_force,
        force_snapshot,
    )


# -- the first run ------------------------------------------------------------------------


def test_registered_ids_and_capture_metadata(spine: SpineRuns) -> None:
    assert spine.ids == ["veh-01--drive-0000", "veh-01--drive-0001"]
    videos = spine.first_snapshot.tables[VIDEOS_TABLE]
    assert videos.column("video_id").to_pylist() == spine.ids
    assert set(videos.column("capture_date").to_pylist()) == {CAPTURE_DATE}
    assert set(videos.column("date").to_pylist()) == {CAPTURE_DATE}
    assert set(videos.column("source_id").to_pylist()) == {"veh-01"}
    assert set(videos.column("session_id").to_pylist()) == {"session-a"}
    assert set(videos.column("capture_time_source").to_pylist()) == {"container"}
    assert all(p.endswith(".csv") for p in videos.column("gps_path").to_pylist())


def test_lake_holds_every_table_for_both_videos(spine: SpineRuns) -> None:
    for table in TABLES:
        files = spine.lake.find_video(table, spine.ids[0]) + spine.lake.find_video(
            table, spine.ids[1]
        )
        assert len(files) == 2, table
        for video_id, path in zip(spine.ids, files, strict=True):
            assert path == spine.lake.video_path(
                table, date=CAPTURE_DATE, source_id="veh-01", video_id=video_id
            )
    assert sorted(spine.lake.tables()) == sorted(TABLES)
    assert not spine.lake.staging.exists() or list(spine.lake.staging.iterdir()) == []


def test_frames_per_video_are_an_index_without_jpegs(spine: SpineRuns) -> None:
    frames = spine.first_snapshot.tables[FRAMES_TABLE]
    counts = pc.value_counts(frames.column("video_id")).to_pylist()
    assert {c["values"]: c["counts"] for c in counts} == dict.fromkeys(spine.ids, FRAMES_PER_VIDEO)
    step = round(CLIP_FPS / SAMPLE_FPS)
    for video_id in spine.ids:
        one = frames.filter(pc.equal(frames.column("video_id"), video_id))
        assert one.column("frame_number").to_pylist() == list(range(0, 90, step))
        # Sources keep no frame JPEGs by default; detection decodes from the video.
        assert one.column("image_path").null_count == one.num_rows
        record = next(r for r in spine.records if r.video_id == video_id)
        assert not spine.lake.frames_dir(record.capture_date, record.video_id).exists()


def test_detections_match_raw_detections(spine: SpineRuns) -> None:
    raw = spine.first_snapshot.tables[RAW_DETECTIONS_TABLE]
    det = spine.first_snapshot.tables[DETECTIONS_TABLE]
    assert det.num_rows == raw.num_rows
    for video_id in spine.ids:
        n_raw = spine.lake.read_video(RAW_DETECTIONS_TABLE, video_id).num_rows
        n_det = spine.lake.read_video(DETECTIONS_TABLE, video_id).num_rows
        assert n_det == n_raw
    ids = det.column("detection_id")
    assert pc.count_distinct(ids).as_py() == det.num_rows
    assert ids.null_count == 0
    frames = spine.first_snapshot.tables[FRAMES_TABLE]
    sampled = set(
        zip(frames["video_id"].to_pylist(), frames["frame_number"].to_pylist(), strict=True)
    )
    assert (
        set(zip(det["video_id"].to_pylist(), det["frame_number"].to_pylist(), strict=True))
        <= sampled
    )


def test_every_detection_has_gps(spine: SpineRuns) -> None:
    det = spine.first_snapshot.tables[DETECTIONS_TABLE]
    for column in ("lat", "lon"):
        assert det.column(column).null_count == 0, column
    assert set(det.column("source_id").to_pylist()) <= {"veh-01"}
    assert set(det.column("vehicle_id").to_pylist()) <= {"veh-01"}


def test_materialization_metadata_matches_the_lake(spine: SpineRuns) -> None:
    for node, table in NODE_TABLE.items():
        meta = _meta(spine.first, node)
        data = spine.first_snapshot.tables[table]
        assert meta["videos"] == 2, node
        assert meta["rows"] == data.num_rows, node
        per_video = meta["per_video"]
        assert sorted(per_video) == spine.ids
        for video_id, stats in per_video.items():
            rows = spine.lake.read_video(table, video_id).num_rows
            assert stats["rows"] == rows, (node, video_id)
        assert sorted(meta["files"]) == sorted(
            str(spine.lake.video_path(table, date=CAPTURE_DATE, source_id="veh-01", video_id=v))
            for v in spine.ids
        )
    per_class = _meta(spine.first, "raw_detections")["per_class"]
    assert sum(per_class.values()) == spine.first_snapshot.tables[RAW_DETECTIONS_TABLE].num_rows


# -- re-runs ------------------------------------------------------------------------------


def test_rerun_changes_no_files_and_no_ids(spine: SpineRuns) -> None:
    assert spine.rerun_snapshot.files == spine.first_snapshot.files
    before = spine.first_snapshot.tables[DETECTIONS_TABLE].column("detection_id")
    after = spine.rerun_snapshot.tables[DETECTIONS_TABLE].column("detection_id")
    assert set(after.to_pylist()) == set(before.to_pylist())
    for node, table in NODE_TABLE.items():
        assert _meta(spine.rerun, node)["rows"] == spine.first_snapshot.tables[table].num_rows


def test_rerun_tables_are_identical(spine: SpineRuns) -> None:
    for table in TABLES:
        before, after = spine.first_snapshot.tables[table], spine.rerun_snapshot.tables[table]
        assert _changed_columns(before, after) == set(), table
        assert before.equals(after), table


def test_rerun_keeps_registration_time(spine: SpineRuns) -> None:
    # Re-registering an unchanged file keeps its first registered_at, and the detections'
    # ingested_at comes from it, so a re-run reproduces identical rows.
    before = spine.first_snapshot.tables[VIDEOS_TABLE].column("registered_at")
    after = spine.rerun_snapshot.tables[VIDEOS_TABLE].column("registered_at")
    assert before.to_pylist() == after.to_pylist()
    det = spine.rerun_snapshot.tables[DETECTIONS_TABLE]
    videos = spine.rerun_snapshot.tables[VIDEOS_TABLE]
    registered = dict(zip(videos["video_id"].to_pylist(), after.to_pylist(), strict=True))
    assert all(
        ingested == registered[v]
        for v, ingested in zip(
            det["video_id"].to_pylist(), det["ingested_at"].to_pylist(), strict=True
        )
    )


def test_nightly_skips_done_videos(spine: SpineRuns) -> None:
    for node in NODE_TABLE:
        meta = _meta(spine.nightly, node)
        assert meta["videos"] == 0 and meta["rows"] == 0, node


def test_nightly_force_reprocesses_both(spine: SpineRuns) -> None:
    assert _meta(spine.nightly_force, "videos")["videos"] == 0  # nothing new to register
    for node in ("frames", "raw_detections", "detections"):
        meta = _meta(spine.nightly_force, node)
        assert meta["videos"] == 2 and sorted(meta["per_video"]) == spine.ids, node
        assert meta["rows"] == spine.rerun_snapshot.tables[NODE_TABLE[node]].num_rows, node
    # Forcing rewrites every file of the date with identical rows.
    assert spine.force_snapshot.files == spine.rerun_snapshot.files
    for table in TABLES:
        assert spine.force_snapshot.tables[table].equals(spine.rerun_snapshot.tables[table]), table


def test_duckdb_counts_match_the_lake(spine: SpineRuns) -> None:
    det = spine.force_snapshot.tables[DETECTIONS_TABLE]
    n = query(spine.lake.root, "SELECT count(*) AS n FROM detections").frame.n[0]
    assert n == det.num_rows
    frames = query(spine.lake.root, "SELECT count(*) AS n FROM frames").frame.n[0]
    assert frames == 2 * FRAMES_PER_VIDEO
    summary = query(
        spine.lake.root, "SELECT video_id, detections FROM video_summary ORDER BY video_id"
    ).frame
    assert summary.video_id.tolist() == spine.ids
    assert summary.detections.sum() == det.num_rows


# -- other ways in ------------------------------------------------------------------------


def test_nightly_registers_new_files_from_landing(
    roadlens_env: Path,
    dashcam_clip_dir: LandingClips,
    detector_weights: Path,
    tmp_path: Path,
) -> None:
    lake = ParquetLake(tmp_path / "lake")
    resources = _resources(lake.root, dashcam_clip_dir.landing, detector_weights)
    with dg.instance_for_test() as instance:
        result = _materialize(instance, resources, None)
    for node, table in NODE_TABLE.items():
        meta = _meta(result, node)
        assert meta["videos"] == 2, node
        assert meta["rows"] == lake.read_date(table, CAPTURE_DATE).num_rows, node
    assert lake.read_date(FRAMES_TABLE, CAPTURE_DATE).num_rows == 2 * FRAMES_PER_VIDEO


def test_cli_ingest_one_clip(
    roadlens_env: Path,
    dashcam_clip_dir: LandingClips,
    detector_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from roadlens_dagster.cli import ingest

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    lake_root = tmp_path / "lake"
    clip = dashcam_clip_dir.paths[1]
    summary = ingest(
        [str(clip)],
        lake_root=lake_root,
        landing=dashcam_clip_dir.landing,
        detector_overrides={"weights": str(detector_weights), "conf": 0.01},
        quiet=True,
    )
    assert list(summary["dates"]) == [CAPTURE_DATE]
    run = summary["dates"][CAPTURE_DATE]
    lake = ParquetLake(lake_root)
    assert run["videos"] == 1
    assert run["frames"] == FRAMES_PER_VIDEO == lake.read_date("frames", CAPTURE_DATE).num_rows
    assert run["detections"] == lake.read_video("detections", "veh-01--drive-0001").num_rows
    assert run["detections"] == lake.read_date("raw_detections", CAPTURE_DATE).num_rows
    n = query(lake_root, "SELECT count(*) AS n FROM detections").frame.n[0]
    assert n == run["detections"]
    assert run["outputs"] == [
        str(
            lake.video_path(
                "detections", date=CAPTURE_DATE, source_id="veh-01", video_id="veh-01--drive-0001"
            )
        )
    ]
    # ingest runs the whole job: the ODE stage writes its tables too (sinks are off here).
    assert lake.tables() == sorted([*TABLES, "events", "event_stats", "heatmaps"])
    events = lake.read_video("events", "veh-01--drive-0001")
    assert events.num_rows == sum(run["events"].values())
    assert Path(run["heatmap_png"]).exists()
    # The quality gates ran on every table and found the detector's rows clean.
    checks = run["checks"]
    assert set(checks) == {"frames_valid", "detections_valid", "events_valid"}
    assert all(c["passed"] and c["quarantined"] == 0 for c in checks.values())
    assert checks["detections_valid"]["rows"] == run["detections"]


def test_an_unreadable_named_file_never_stops_the_batch(
    roadlens_env: Path,
    dashcam_clip_dir: LandingClips,
    detector_weights: Path,
    tmp_path: Path,
) -> None:
    """A sensor batch naming a good clip and a broken file: the good one goes all the way."""
    landing = tmp_path / "landing"
    good = copy_clip(dashcam_clip_dir.clips[0], landing / "veh-01" / "session-a")
    bad = landing / "veh-01" / "session-a" / "broken.mp4"
    bad.write_text("not a video\n")
    lake = ParquetLake(tmp_path / "lake")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            list(SPINE),
            partition_key=CAPTURE_DATE,
            resources=_resources(lake.root, landing, detector_weights),
            instance=instance,
            run_config=batch_run_config(["veh-01--drive-0000"], [str(good), str(bad)]),
            raise_on_error=False,
        )
    assert result.success
    registered = [r.video_id for r in pipeline.registered_videos(lake, CAPTURE_DATE)]
    assert registered == ["veh-01--drive-0000"]
    assert lake.has_video(DETECTIONS_TABLE, "veh-01--drive-0000")
    videos = result.asset_materializations_for_node("videos")[0].metadata
    unreadable = videos["unreadable"].value
    assert list(unreadable) == [str(bad)] and "broken.mp4" in unreadable[str(bad)]
