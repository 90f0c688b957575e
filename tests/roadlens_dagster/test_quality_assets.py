"""The quality gate in the pipeline and as Dagster asset checks.

A hand-built lake (registered videos with raw detections, no detector) goes through the
real ``detections`` asset and the real file sink asset: bad rows land in the
quarantine (lake and PostgreSQL), never in the export; a partition with too many bad rows
fails its blocking check and its sink does not run, while another partition's run is
unaffected; the drift check reads its own history.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from roadlens import pipeline
from roadlens.lake import ParquetLake
from roadlens.quality.gate import gate, quarantine_table_name, read_quarantine
from roadlens.registry import VideoRecord
from roadlens.schema import RAW_DETECTIONS
from roadlens_dagster.assets.batch import batch_run_config
from roadlens_dagster.assets.checks import detections_drift
from roadlens_dagster.assets.sinks import SINK_ASSETS
from roadlens_dagster.assets.spine import detections
from roadlens_dagster.resources import LakeResource, SinksResource, SourcesResource

SINK_ENV = (
    "ROADLENS_POSTGRES_URL",
    "ROADLENS_MONGO_URL",
    "ROADLENS_KAFKA_BOOTSTRAP",
    "ROADLENS_MQTT_URL",
    "ROADLENS_AMQP_URL",
    "ROADLENS_EXPORT_DIR",
)
FILE_DETECTIONS = next(a for a in SINK_ASSETS if a.key.to_user_string() == "file_detections")


def _record(video_id: str, date: str) -> VideoRecord:
    start = datetime.fromisoformat(f"{date}T08:00:00+00:00")
    return VideoRecord(
        video_id=video_id,
        source_id="veh-01",
        vehicle_id="veh-01",
        session_id="s1",
        path=f"landing/veh-01/{video_id}.mp4",
        size_bytes=1000,
        mtime_ns=0,
        capture_start=start,
        capture_date=date,
        capture_time_source="container",
        gps_path=None,
        registered_at=start + timedelta(hours=1),
    )


def _raw(video_id: str, frames: int, *, bad_every: int = 0) -> pa.Table:
    """Two boxes per sampled frame; every ``bad_every``-th row has confidence 1.5."""
    rows = []
    for f in range(frames):
        for b in range(2):
            n = len(rows)
            rows.append(
                {
                    "video_id": video_id,
                    "frame_number": f * 6,
                    "pts_sec": f * 0.2,
                    "class_id": b,
                    "class_name": ("car", "person")[b],
                    "confidence": 1.5 if bad_every and n % bad_every == 0 else 0.6,
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


def _add_video(lake: ParquetLake, video_id: str, date: str, *, bad_every: int) -> None:
    record = _record(video_id, date)
    pipeline.register(lake, record)
    lake.write_video(
        pipeline.RAW_DETECTIONS_TABLE,
        _raw(video_id, 50, bad_every=bad_every),
        date=date,
        source_id=record.source_id,
        video_id=video_id,
    )


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in SINK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROADLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ROADLENS_EXPORT_DIR", str(tmp_path / "export"))
    monkeypatch.setenv("ROADLENS_QUALITY_ENGINE", "gx")
    return tmp_path


def _run(lake: ParquetLake, date: str, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [detections, FILE_DETECTIONS],
        partition_key=date,
        instance=instance,
        resources={
            "lake": LakeResource(root=str(lake.root)),
            "sources": SourcesResource(),
            "sinks": SinksResource(),
        },
        run_config=batch_run_config([], assets=("detections", "file_detections")),
        raise_on_error=False,
    )


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_gate_quarantines_bad_rows_and_a_clean_rerun_clears_them(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path / "lake")
    from roadlens.synth.tables import synthetic_detections

    table = synthetic_detections(400, video_id="veh-01--a", seed=1)
    conf = table.column("confidence").to_numpy(zero_copy_only=False).copy()
    conf[[3, 50, 51]] = 1.7
    dirty = table.set_column(
        table.schema.get_field_index("confidence"), "confidence", pa.array(conf, pa.float32())
    )
    kwargs = {"video_id": "veh-01--a", "date": "2026-05-04", "source_id": "veh-01"}
    result = gate(lake, "detections", dirty, **kwargs)
    bad_ids = {table.column("detection_id")[i].as_py() for i in (3, 50, 51)}
    assert result.quarantined == 3 and result.good.num_rows == 397
    assert bad_ids.isdisjoint(result.good.column("detection_id").to_pylist())
    quarantined = read_quarantine(lake, "detections", "veh-01--a")
    assert set(quarantined.column("row_id").to_pylist()) == bad_ids
    assert all(
        any("confidence" in r for r in reasons)
        for reasons in quarantined.column("reasons").to_pylist()
    )
    # Nothing good lost: good + quarantined = everything, in the original order.
    assert result.good.column("detection_id").to_pylist() == [
        d for d in table.column("detection_id").to_pylist() if d not in bad_ids
    ]
    clean = gate(lake, "detections", table, **kwargs)
    assert clean.quarantined == 0
    assert not lake.find_video(quarantine_table_name("detections"), "veh-01--a")


def test_a_failing_blocking_check_stops_the_sinks_of_its_partition_only(
    env: Path, postgres_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROADLENS_POSTGRES_URL", postgres_url)
    monkeypatch.setenv("ROADLENS_POSTGRES_SCHEMA", pg_schema)
    lake = ParquetLake(env / "lake")
    _add_video(lake, "veh-01--good", "2026-05-04", bad_every=50)  # 2 of 100 rows: 2 %
    _add_video(lake, "veh-01--bad", "2026-05-05", bad_every=4)  # 25 of 100 rows: 25 %
    with dg.instance_for_test() as instance:
        good = _run(lake, "2026-05-04", instance)
        bad = _run(lake, "2026-05-05", instance)

    assert good.success
    check = _check(good, "detections_valid")
    assert check.passed and check.metadata["quarantined"].value == 2
    exported = [p for p in (env / "export").rglob("*") if p.is_file() and "detections" in str(p)]
    assert exported, "the good partition's detections reach the file sink"
    text = "".join(p.read_bytes().decode(errors="ignore") for p in exported if p.suffix != ".gz")
    import gzip

    text += "".join(gzip.decompress(p.read_bytes()).decode() for p in exported if p.suffix == ".gz")
    assert "veh-01--good" in text and "veh-01--bad" not in text
    assert '"confidence":1.5' not in text

    failed = _check(bad, "detections_valid")
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["quarantined"].value == 25
    # The blocking check stopped the sink step of this partition's run.
    assert "file_detections" not in {
        e.step_key for e in bad.all_events if e.is_step_success or e.is_step_start
    }
    # Nothing good was lost: the 75 good rows are in the lake, the 25 bad ones in both
    # quarantines, with their reasons.
    assert lake.read_video(pipeline.DETECTIONS_TABLE, "veh-01--bad").num_rows == 75
    q = read_quarantine(lake, "detections", "veh-01--bad")
    assert q.num_rows == 25
    assert pc.all(pc.greater(pc.list_value_length(q.column("reasons")), 0)).as_py()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            f"SELECT video_id, count(*), min(row_json->>'confidence') FROM \"{pg_schema}\".quarantine "
            "WHERE table_name = 'detections' GROUP BY video_id ORDER BY video_id"
        ).fetchall()
    assert rows == [("veh-01--bad", 25, "1.5"), ("veh-01--good", 2, "1.5")]


def test_the_drift_check_compares_with_its_own_history(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROADLENS_QUALITY_ENGINE", "pandas")
    lake = ParquetLake(env / "lake")
    dates = [f"2026-05-0{d}" for d in range(1, 8)]
    for date in dates:
        _add_video(lake, f"veh-01--{date}", date, bad_every=0)
        # The drift check reads the partition's frames too: one row per sampled frame.
        frames = pa.table(
            {
                "video_id": [f"veh-01--{date}"] * 50,
                "frame_number": [f * 6 for f in range(50)],
                "pts_sec": [f * 0.2 for f in range(50)],
                "captured_at": pa.array(
                    [
                        datetime(2026, 5, 1, tzinfo=UTC) + timedelta(seconds=f * 0.2)
                        for f in range(50)
                    ],
                    pa.timestamp("us", tz="UTC"),
                ),
                "width": [640] * 50,
                "height": [360] * 50,
                "image_path": [""] * 50,
            }
        )
        lake.write_video(
            pipeline.FRAMES_TABLE, frames, date=date, source_id="veh-01", video_id=f"veh-01--{date}"
        )
    # The last day sees only cars: its class mix drifts from the history's 50/50.
    last = dates[-1]
    raw = lake.read_video(pipeline.RAW_DETECTIONS_TABLE, f"veh-01--{last}")
    raw = raw.set_column(
        raw.schema.get_field_index("class_name"),
        "class_name",
        pa.array(["car"] * raw.num_rows),
    ).drop_columns(["source_id", "date"])
    lake.write_video(
        pipeline.RAW_DETECTIONS_TABLE,
        raw,
        date=last,
        source_id="veh-01",
        video_id=f"veh-01--{last}",
    )

    resources = {
        "lake": LakeResource(root=str(lake.root)),
        "sources": SourcesResource(),
        "sinks": SinksResource(),
    }
    verdicts = {}
    with dg.instance_for_test() as instance:
        for date in dates:
            result = dg.materialize(
                [detections, detections_drift],
                partition_key=date,
                instance=instance,
                resources=resources,
                run_config=batch_run_config([], assets=("detections",)),
            )
            check = _check(result, "detections_drift")
            verdicts[date] = (check.passed, check.metadata["history_points"].value)
            if date == last:
                drifted = check.metadata["drifted"].value
                metrics = check.metadata["metrics"].value
    # Each day sees the earlier days as history; too little history passes with a note.
    assert [v[1] for v in verdicts.values()] == list(range(7))
    assert all(v[0] for d, v in verdicts.items() if d != last)
    assert verdicts[last][0] is False and "class_mix" in drifted
    assert json.dumps(metrics)  # JSON-able for the UI


def test_the_quarantine_is_one_duckdb_view_over_every_stage(tmp_path: Path) -> None:
    from roadlens.sinks.duckdb_views import query
    from roadlens.synth.tables import synthetic_detections, synthetic_events

    lake = ParquetLake(tmp_path / "lake")
    kwargs = {"date": "2026-05-04", "source_id": "veh-01", "engine": "pandas"}
    dets = synthetic_detections(100, video_id="veh-01--q", seed=2)
    conf = dets.column("confidence").to_numpy(zero_copy_only=False).copy()
    conf[:4] = -1.0
    dets = dets.set_column(dets.schema.get_field_index("confidence"), "confidence", pa.array(conf))
    gate(lake, "detections", dets, video_id="veh-01--q", **kwargs)
    events = synthetic_events(20, video_id="veh-01--q", seed=2)
    lat = events.column("lat").to_numpy(zero_copy_only=False).copy()
    lat[:2] = 123.0
    events = events.set_column(events.schema.get_field_index("lat"), "lat", pa.array(lat))
    gate(lake, "events", events, video_id="veh-01--q", **kwargs)
    result = query(
        lake.root,
        "SELECT table_name, count(*) AS n FROM quarantine GROUP BY table_name ORDER BY table_name",
    )
    assert result.frame.to_dict("records") == [
        {"table_name": "detections", "n": 4},
        {"table_name": "events", "n": 2},
    ]
