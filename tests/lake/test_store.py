"""The Parquet lake's file layout and atomic per-video writes, and DuckDB views over it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roadlens import pipeline
from roadlens.enrich import SourceIdentity, enrich_detections
from roadlens.ids import video_id_for
from roadlens.lake import CATALOG, SINK_TABLES, ParquetLake
from roadlens.lake import store as lake_store
from roadlens.registry import VideoRecord
from roadlens.schema import DETECTIONS, RAW_DETECTIONS, VIDEOS, conform
from roadlens.sinks.duckdb_views import connect, query
from tests.conftest import REPO

DATE = "2026-05-04"
START = datetime(2026, 5, 4, 8, 30, tzinfo=UTC)
ANALYST_VIEWS = {"detections_hourly", "tracks", "video_summary"}


def _rows(n: int, *, offset: int = 0) -> pa.Table:
    return pa.table({"frame_number": pa.array(range(offset, offset + n), pa.int64())})


def _raw(video_id: str, frames: int, boxes_per_frame: int = 2) -> pa.Table:
    rows = []
    for f in range(frames):
        for b in range(boxes_per_frame):
            rows.append(
                {
                    "video_id": video_id,
                    "frame_number": f * 6,
                    "pts_sec": f * 0.2,
                    "class_id": b % 2,
                    "class_name": ("car", "person")[b % 2],
                    "confidence": 0.5 + 0.1 * b,
                    "x1": 10.0 + 50 * b,
                    "y1": 20.0,
                    "x2": 40.0 + 50 * b,
                    "y2": 80.0,
                    "frame_width": 640,
                    "frame_height": 360,
                    "track_id": b + 1,
                }
            )
    return pa.Table.from_pylist(rows, schema=RAW_DETECTIONS)


def _detections(video_id: str, source_id: str, frames: int = 3, **kwargs: object) -> pa.Table:
    table = enrich_detections(
        _raw(video_id, frames),
        identity=SourceIdentity(source_id, source_id, "session-a"),
        capture_start=kwargs.get("start", START),  # type: ignore[arg-type]
        track=None,
        model_name="test-model",
        model_sha256="0" * 64,
        ingested_at=START + timedelta(hours=1),
    )
    assert table.schema.equals(DETECTIONS)
    return table


def _video_row(video_id: str, source_id: str) -> pa.Table:
    row = {
        "video_id": video_id,
        "source_id": source_id,
        "vehicle_id": source_id,
        "session_id": "session-a",
        "path": f"landing/{source_id}/session-a/{video_id}.mp4",
        "size_bytes": 1234,
        "mtime_ns": 1,
        "capture_start": START,
        "capture_date": DATE,
        "capture_time_source": "creation_time",
        "gps_path": None,
        "registered_at": START + timedelta(hours=1),
    }
    return conform(pa.Table.from_pylist([row]), VIDEOS)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _views(con) -> set[str]:
    return {
        r[0]
        for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }


# -- layout and atomic writes ------------------------------------------------------------


def test_write_video_path_layout(lake: ParquetLake) -> None:
    stats = lake.write_video("frames", _rows(5), date=DATE, source_id="veh-01", video_id="clip-a")
    expected = lake.root / "frames" / f"date={DATE}" / "source_id=veh-01" / "clip-a.parquet"
    assert (
        stats.path
        == expected
        == lake.video_path("frames", date=DATE, source_id="veh-01", video_id="clip-a")
    )
    assert stats.rows == 5 and stats.bytes == expected.stat().st_size > 0
    assert _files(lake.root / "frames") == [f"date={DATE}/source_id=veh-01/clip-a.parquet"]
    assert lake.tables() == ["frames"]


def test_partition_columns_live_in_the_path_not_the_file(lake: ParquetLake) -> None:
    table = (
        _rows(3)
        .append_column("source_id", pa.array(["veh-01"] * 3))
        .append_column("date", pa.array([DATE] * 3))
    )
    stats = lake.write_video("frames", table, date=DATE, source_id="veh-01", video_id="clip-a")
    assert pq.read_schema(stats.path).names == ["frame_number"]


def test_rewrite_replaces_the_video_file(lake: ParquetLake) -> None:
    lake.write_video("frames", _rows(10), date=DATE, source_id="veh-01", video_id="clip-a")
    stats = lake.write_video(
        "frames", _rows(4, offset=100), date=DATE, source_id="veh-01", video_id="clip-a"
    )
    assert lake.find_video("frames", "clip-a") == [stats.path]
    back = lake.read_video("frames", "clip-a")
    assert back.num_rows == 4  # replaced, not appended
    assert back.column("frame_number").to_pylist() == [100, 101, 102, 103]


def test_writing_video_b_never_touches_video_a(lake: ParquetLake) -> None:
    a = lake.write_video("frames", _rows(3), date=DATE, source_id="veh-01", video_id="clip-a")
    before = (a.path.read_bytes(), a.path.stat().st_mtime_ns, a.path.stat().st_ino)
    b = lake.write_video("frames", _rows(7), date=DATE, source_id="veh-01", video_id="clip-b")
    lake.write_video("frames", _rows(8), date=DATE, source_id="veh-01", video_id="clip-b")
    assert a.path.parent == b.path.parent
    assert (a.path.read_bytes(), a.path.stat().st_mtime_ns, a.path.stat().st_ino) == before
    assert lake.read_date("frames", DATE).num_rows == 3 + 8


def test_staging_is_outside_every_table_and_empty_after_writes(lake: ParquetLake) -> None:
    for i, table_name in enumerate(("frames", "raw_detections", "clips")):
        lake.write_video(table_name, _rows(2 + i), date=DATE, source_id="veh-01", video_id="v1")
        lake.write_video(table_name, _rows(1), date=DATE, source_id="veh-01", video_id="v1")
    staging = lake.staging.resolve()
    for table_name in lake.tables():
        table_root = (lake.root / table_name).resolve()
        assert table_root not in staging.parents and staging != table_root
    assert staging.parent == lake.root.resolve()
    assert "_staging" not in lake.tables()
    assert not staging.exists() or list(staging.iterdir()) == []
    # DuckDB's ** glob would also read a file left in a table's tree; none is there.
    assert query(lake.root, "SELECT count(*) AS n FROM frames").frame.n[0] == 1


def test_failed_write_leaves_old_file_and_empty_staging(
    lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake.write_video("frames", _rows(3), date=DATE, source_id="veh-01", video_id="clip-a")

    def half_write(table: pa.Table, where: Path, **_: object) -> None:
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(lake_store.pq, "write_table", half_write)
    with pytest.raises(OSError, match="disk full"):
        lake.write_video("frames", _rows(9), date=DATE, source_id="veh-01", video_id="clip-a")
    monkeypatch.undo()
    assert lake.read_video("frames", "clip-a").num_rows == 3
    assert list(lake.staging.iterdir()) == []


def test_date_correction_leaves_exactly_one_file(lake: ParquetLake) -> None:
    lake.write_video("frames", _rows(3), date="2026-05-03", source_id="veh-01", video_id="clip-a")
    lake.write_video("frames", _rows(2), date="2026-05-03", source_id="veh-01", video_id="clip-b")
    stats = lake.write_video("frames", _rows(4), date=DATE, source_id="veh-01", video_id="clip-a")
    assert lake.find_video("frames", "clip-a") == [stats.path]
    assert f"date={DATE}" in stats.path.as_posix()
    assert lake.read_date("frames", "2026-05-03").num_rows == 2  # clip-b untouched
    assert lake.read_date("frames", DATE).num_rows == 4


def test_read_video_restores_partition_columns(lake: ParquetLake) -> None:
    lake.write_video("frames", _rows(3), date=DATE, source_id="veh-02", video_id="clip-a")
    back = lake.read_video("frames", "clip-a")
    assert back.column_names == ["frame_number", "source_id", "date"]
    assert set(back.column("source_id").to_pylist()) == {"veh-02"}
    assert set(back.column("date").to_pylist()) == {DATE}
    assert lake.has_video("frames", "clip-a") and not lake.has_video("frames", "nope")
    with pytest.raises(FileNotFoundError, match="nope"):
        lake.read_video("frames", "nope")
    assert lake.read_date("frames", "2026-01-01") is None


def test_same_slug_ids_of_two_sources_keep_both_files(lake: ParquetLake) -> None:
    # "a--b-c" (source a, file b-c) and "a-b--c" (source a-b, file c) are different videos.
    first, second = video_id_for("a", "b-c"), video_id_for("a-b", "c")
    assert first != second
    lake.write_video("frames", _rows(2), date=DATE, source_id="a", video_id=first)
    lake.write_video("frames", _rows(5), date=DATE, source_id="a-b", video_id=second)
    assert lake.read_video("frames", first).num_rows == 2
    assert lake.read_video("frames", second).num_rows == 5
    assert lake.read_date("frames", DATE).num_rows == 7


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_id", "../escape"),
        ("video_id", "a/b"),
        ("video_id", ""),
        ("video_id", ".."),
        ("source_id", "veh 01"),
        ("date", "2026/05/04"),
        ("table", "frames/../x"),
    ],
)
def test_unsafe_path_segments_are_rejected(lake: ParquetLake, field: str, value: str) -> None:
    args = {"table": "frames", "date": DATE, "source_id": "veh-01", "video_id": "clip-a"}
    args[field] = value
    with pytest.raises(ValueError, match=field):
        lake.write_video(
            args["table"],
            _rows(1),
            date=args["date"],
            source_id=args["source_id"],
            video_id=args["video_id"],
        )
    assert not lake.root.exists() or _files(lake.root) == []


def _record(video_id: str, *, mtime_ns: int, registered_at: datetime) -> VideoRecord:
    return VideoRecord(
        video_id=video_id,
        source_id="veh-01",
        vehicle_id="veh-01",
        session_id="session-a",
        path=f"landing/veh-01/session-a/{video_id}.mp4",
        size_bytes=1000,
        mtime_ns=mtime_ns,
        capture_start=START,
        capture_date=DATE,
        capture_time_source="container",
        gps_path=None,
        registered_at=registered_at,
    )


def test_registering_again_keeps_registered_at_of_an_unchanged_file(lake: ParquetLake) -> None:
    first = START + timedelta(hours=1)
    pipeline.register(lake, _record("veh-01--a", mtime_ns=1, registered_at=first))
    pipeline.register(
        lake, _record("veh-01--a", mtime_ns=1, registered_at=first + timedelta(days=1))
    )
    (kept,) = pipeline.registered_videos(lake, DATE)
    assert kept.registered_at == first
    # A changed file (new mtime) is a new registration.
    later = first + timedelta(days=2)
    pipeline.register(lake, _record("veh-01--a", mtime_ns=2, registered_at=later))
    (changed,) = pipeline.registered_videos(lake, DATE)
    assert changed.registered_at == later and changed.mtime_ns == 2
    assert len(lake.find_video(pipeline.VIDEOS_TABLE, "veh-01--a")) == 1


# -- DuckDB ------------------------------------------------------------------------------


def _two_source_lake(lake: ParquetLake) -> dict[str, int]:
    counts = {}
    for source_id, video, frames in (("veh-01", "a", 3), ("veh-01", "b", 2), ("veh-02", "c", 4)):
        video_id = video_id_for(source_id, video)
        table = _detections(video_id, source_id, frames)
        lake.write_video("detections", table, date=DATE, source_id=source_id, video_id=video_id)
        counts[source_id] = counts.get(source_id, 0) + table.num_rows
    return counts


def test_duckdb_view_types_and_source_pruning(lake: ParquetLake) -> None:
    counts = _two_source_lake(lake)
    con = connect(lake.root)
    try:
        assert "detections" in _views(con)
        types = con.execute(
            "SELECT typeof(date), typeof(source_id) FROM detections LIMIT 1"
        ).fetchone()
        assert types == ("DATE", "VARCHAR")
        total = con.execute("SELECT count(*) FROM detections").fetchone()[0]
        assert total == sum(counts.values())
        by_source = con.execute(
            "SELECT source_id, count(*) FROM detections WHERE date = DATE '2026-05-04' GROUP BY 1"
        ).fetchall()
        assert dict(by_source) == counts
        rows = con.execute("SELECT DISTINCT source_id FROM detections WHERE source_id = 'veh-02'")
        assert rows.fetchall() == [("veh-02",)]
        plan = "\n".join(
            str(r[-1])
            for r in con.execute(
                "EXPLAIN ANALYZE SELECT count(*) FROM detections WHERE source_id = 'veh-02'"
            ).fetchall()
        )
        read = re.search(r"Total Files Read:\s*(\d+)", plan)
        if read:  # the profile names the files read in DuckDB >= 1.2
            assert int(read.group(1)) == 1, plan
    finally:
        con.close()


def test_duckdb_detection_ids_round_trip(lake: ParquetLake) -> None:
    _two_source_lake(lake)
    ids = query(lake.root, "SELECT detection_id FROM detections").frame.detection_id
    assert ids.is_unique and len(ids) == lake.read_date("detections", DATE).num_rows


def test_analyst_views_need_their_base_tables(lake: ParquetLake) -> None:
    con = connect(lake.root)
    assert _views(con) == set()  # empty lake: no views at all
    con.close()

    lake.write_video(
        "videos",
        _video_row("veh-01--a", "veh-01"),
        date=DATE,
        source_id="veh-01",
        video_id="veh-01--a",
    )
    con = connect(lake.root)
    assert _views(con) == {"videos"}  # video_summary needs detections too
    con.close()

    _two_source_lake(lake)
    con = connect(lake.root)
    try:
        assert _views(con) == {"videos", "detections"} | ANALYST_VIEWS
        hourly = con.execute("SELECT sum(detections) FROM detections_hourly").fetchone()[0]
        assert hourly == con.execute("SELECT count(*) FROM detections").fetchone()[0]
        tracks = con.execute("SELECT count(*) FROM tracks").fetchone()[0]
        assert (
            tracks
            == con.execute(
                "SELECT count(DISTINCT (video_id, track_id)) FROM detections"
            ).fetchone()[0]
        )
        summary = con.execute(
            "SELECT video_id, detections FROM video_summary ORDER BY video_id"
        ).fetchall()
        assert summary == [("veh-01--a", 3 * 2)]
    finally:
        con.close()


def test_analyst_views_with_detections_only(lake: ParquetLake) -> None:
    _two_source_lake(lake)
    con = connect(lake.root)
    try:
        assert _views(con) == {"detections", "detections_hourly", "tracks"}
    finally:
        con.close()


def test_a_file_of_the_previous_schema_version_is_read_as_the_current_one(tmp_path: Path) -> None:
    from roadlens.schema import DETECTIONS, table_version
    from roadlens.synth.tables import synthetic_detections

    lake = ParquetLake(tmp_path / "lake")
    current = synthetic_detections(50, video_id="veh-01--old", seed=3)
    # Version 0 of detections, as an older writer left it: no lat/lon columns.
    old = current.drop_columns(["lat", "lon"]).replace_schema_metadata(
        {"table": "detections", "schema_version": str(table_version(DETECTIONS) - 1)}
    )
    lake.write_video(
        "detections", old, date="2026-05-04", source_id="veh-01", video_id="veh-01--old"
    )
    read = lake.read_video("detections", "veh-01--old")
    assert {"lat", "lon", "source_id", "date"} <= set(read.column_names)
    assert read.column("lat").null_count == read.num_rows == 50
    assert set(read.column("schema_version").to_pylist()) == {table_version(DETECTIONS)}
    assert read.column("detection_id").to_pylist() == current.column("detection_id").to_pylist()
    # The current version is read untouched.
    lake.write_video(
        "detections", current, date="2026-05-04", source_id="veh-01", video_id="veh-01--new"
    )
    assert (
        lake.read_video("detections", "veh-01--new").column("lat").null_count
        == current.column("lat").null_count
    )


def test_the_lake_lists_its_files_ids_dates_and_locations(lake: ParquetLake) -> None:
    lake.write_video("frames", _rows(3), date=DATE, source_id="veh-01", video_id="a")
    lake.write_video("frames", _rows(2), date=DATE, source_id="veh-02", video_id="b")
    lake.write_video("frames", _rows(1), date="2026-05-05", source_id="veh-01", video_id="c")
    assert lake.video_ids("frames", DATE) == ["a", "b"]
    assert lake.dates("frames") == [DATE, "2026-05-05"]
    assert lake.locations("frames") == {
        "a": (DATE, "veh-01"),
        "b": (DATE, "veh-02"),
        "c": ("2026-05-05", "veh-01"),
    }
    assert [p.stem for p in lake.source_files("frames", DATE, "veh-01")] == ["a"]
    assert lake.has_files("frames") and not lake.has_files("events")
    assert lake.delete_video("frames", "b") == 1 and lake.video_ids("frames", DATE) == ["a"]
    assert lake.delete_video("frames", "b") == 0


def test_media_paths_come_from_the_lake_and_refuse_unsafe_segments(lake: ParquetLake) -> None:
    media = lake.root / "media"
    assert lake.frames_dir(DATE, "v") == media / "frames" / f"date={DATE}" / "v"
    assert lake.event_media_dir(DATE, "v") == media / "events" / f"date={DATE}" / "v"
    assert (
        lake.heatmap_png(DATE, "v", "dwell")
        == media / "heatmaps" / f"date={DATE}" / "v" / "dwell.png"
    )
    lake.heatmap_png(DATE, "v", "dwell").parent.mkdir(parents=True)
    lake.heatmap_png(DATE, "v", "dwell").write_bytes(b"png")
    assert lake.heatmap_pngs("v") == [lake.heatmap_png(DATE, "v", "dwell")]
    assert lake.videos_with_heatmaps() == {"v"}
    for unsafe in ("../x", "a/b", ""):
        with pytest.raises(ValueError, match="not a safe path segment"):
            lake.event_media_dir(DATE, unsafe)
        with pytest.raises(ValueError, match="not a safe path segment"):
            lake.heatmap_pngs("v", unsafe)


def test_the_catalogue_knows_every_exported_table_and_its_columns() -> None:
    for name, schema in SINK_TABLES.items():
        entry = CATALOG[name]
        assert entry.schema is schema and entry.time_column in schema.names
        assert all(c in schema.names for c in entry.id_columns)
        assert schema.metadata[b"table"].decode() == name


def test_nothing_outside_the_lake_package_builds_a_lake_path() -> None:
    """Hive globs and media folders are spelt only in roadlens/lake (issue: one lake)."""
    repo = REPO
    spelt = re.compile(r"""["'](?:date=\*|source_id=\*)|/ ["']media["']""")
    offenders = [
        f"{path.relative_to(repo)}:{number}"
        for folder in ("roadlens", "roadlens_dagster")
        for path in sorted((repo / folder).rglob("*.py"))
        # The file sink lays out its own export folder (not the lake) the same way.
        if path.relative_to(repo).parts[:2] != ("roadlens", "lake") and path.name != "files.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if spelt.search(line)
    ]
    assert offenders == []
