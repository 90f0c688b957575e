"""File export sink: JSONL/CSV (+gzip) round trips, rotation, atomic per-video replace."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from roadlens.sinks.base import SinkError, table_fingerprint
from roadlens.sinks.encode import json_lines
from roadlens.sinks.files import FileExportSink, csv_lines, plan_parts
from roadlens.synth.tables import synthetic_detections, synthetic_events

VIDEO = "veh-01--clip-0001"


def part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*"))


def raw_text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode()


@pytest.mark.parametrize("file_format", ["jsonl", "jsonl.gz", "csv", "csv.gz"])
@pytest.mark.parametrize("table", ["detections", "events"])
def test_round_trip_every_format(tmp_path: Path, file_format: str, table: str) -> None:
    data = synthetic_detections(3_000) if table == "detections" else synthetic_events(300)
    sink = FileExportSink(tmp_path, file_format=file_format)
    result = sink.write_video(table, VIDEO, data, export_id="run-1", fingerprint="fp-1")

    assert result.rows == data.num_rows
    assert sink.read_video(table, VIDEO).equals(data)
    folder = tmp_path / table / "date=2026-05-04" / "source_id=veh-01" / VIDEO
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert (manifest["export_id"], manifest["fingerprint"], manifest["rows"]) == (
        "run-1",
        "fp-1",
        data.num_rows,
    )
    assert [f["name"] for f in manifest["files"]] == [p.name for p in part_files(folder)]
    for entry in manifest["files"]:
        content = (folder / entry["name"]).read_bytes()
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
        assert len(content) == entry["bytes"]
        assert entry["name"].endswith("." + file_format)
    assert result.bytes == sum(f["bytes"] for f in manifest["files"])


def test_jsonl_lines_are_the_message_sinks_json(tmp_path: Path) -> None:
    events = synthetic_events(50)
    sink = FileExportSink(tmp_path, file_format="jsonl")
    sink.write_video("events", VIDEO, events, export_id="r")
    (part,) = part_files(sink.find_video("events", VIDEO)[0])

    lines = raw_text(part).splitlines()
    assert lines == json_lines(events).to_pylist()
    first = json.loads(lines[0])
    assert first["event_id"] == events["event_id"][0].as_py()
    assert first["captured_at"] == "2026-05-04T10:00:00.000000Z"
    assert first["attributes"] == json.loads(events["attributes"][0].as_py())  # an object


def test_csv_reads_with_the_standard_library(tmp_path: Path) -> None:
    events = synthetic_events(20).to_pandas()
    events.loc[3, "rule_name"] = 'Cars, "quoted"\nand a newline'
    events.loc[4, "direction"] = ""  # an empty string, distinct from null
    events.loc[5, "direction"] = None
    table = pa.Table.from_pandas(events, preserve_index=False)
    sink = FileExportSink(tmp_path, file_format="csv")
    sink.write_video("events", VIDEO, table, export_id="r")
    (part,) = part_files(sink.find_video("events", VIDEO)[0])

    rows = list(csv.DictReader(io.StringIO(raw_text(part), newline="")))
    assert list(rows[0]) == table.column_names
    assert len(rows) == 20
    assert rows[3]["rule_name"] == 'Cars, "quoted"\nand a newline'
    assert rows[0]["captured_at"] == "2026-05-04T10:00:00.000000Z"
    assert json.loads(rows[1]["detection_ids"]) == ["det-1"]
    assert json.loads(rows[1]["attributes"]) == json.loads(table["attributes"][1].as_py())
    # Null and "" are told apart by quoting ("" is quoted, null is an empty field).
    back = sink.read_video("events", VIDEO)
    assert back["direction"][4].as_py() == "" and back["direction"][5].as_py() is None
    assert back.equals(table.cast(back.schema))


@pytest.mark.parametrize("file_format", ["jsonl", "csv", "csv.gz"])
def test_rotation_by_size(tmp_path: Path, file_format: str) -> None:
    data = synthetic_detections(2_000)
    rotate = 64 * 1024
    sink = FileExportSink(tmp_path, file_format=file_format, rotate_bytes=rotate)
    result = sink.write_video("detections", VIDEO, data, export_id="r")

    folder = sink.find_video("detections", VIDEO)[0]
    parts = part_files(folder)
    assert len(parts) == result.extra["files"] >= 5
    texts = [raw_text(p) for p in parts]
    sizes = [len(t.encode()) for t in texts]
    assert max(sizes) <= rotate  # counted before compression, header included
    # Greedy: each part but the last is full (the next row would not have fit).
    line_sizes = pc.binary_length(csv_lines(data) if "csv" in file_format else json_lines(data))
    first_rows = [0]
    for text in texts[:-1]:
        rows = text.count("\n") - (1 if "csv" in file_format else 0)
        first_rows.append(first_rows[-1] + rows)
    for size, next_row in zip(sizes[:-1], first_rows[1:], strict=True):
        assert size + line_sizes[next_row].as_py() + (0 if "csv" in file_format else 1) > rotate
    assert sink.read_video("detections", VIDEO).equals(data)  # union, in order


def test_rotation_by_time_breaks_at_window_edges(tmp_path: Path) -> None:
    # 400 events, one every 0.5 s from 10:00:00: 200 s, i.e. 4 one-minute windows.
    events = synthetic_events(400, start=pd.Timestamp("2026-05-04T10:00:30Z"))
    sink = FileExportSink(tmp_path, file_format="jsonl.gz", rotate_seconds=60)
    sink.write_video("events", VIDEO, events, export_id="r")

    manifest = sink.manifest("events", VIDEO)
    assert manifest is not None
    files = manifest["files"]
    assert [(f["first"], f["last"]) for f in files] == [
        ("2026-05-04T10:00:30.000000Z", "2026-05-04T10:00:59.500000Z"),
        ("2026-05-04T10:01:00.000000Z", "2026-05-04T10:01:59.500000Z"),
        ("2026-05-04T10:02:00.000000Z", "2026-05-04T10:02:59.500000Z"),
        ("2026-05-04T10:03:00.000000Z", "2026-05-04T10:03:49.500000Z"),
    ]
    assert [f["rows"] for f in files] == [60, 120, 120, 100]
    assert sink.read_video("events", VIDEO).equals(events)


def test_plan_parts_gives_an_oversized_row_its_own_part() -> None:
    import numpy as np

    offsets = np.array([0, 3, 103, 106, 109])  # row 1 is 100 bytes
    assert plan_parts(offsets, None, 10) == [(0, 1), (1, 2), (2, 4)]


def test_rewrite_replaces_without_stale_parts(tmp_path: Path) -> None:
    sink = FileExportSink(tmp_path, file_format="csv", rotate_bytes=32 * 1024)
    big = synthetic_detections(1_000)
    small = synthetic_detections(40, seed=1)  # about 15 KB: one part
    sink.write_video("detections", VIDEO, big, export_id="r1", fingerprint=table_fingerprint(big))
    folder = sink.find_video("detections", VIDEO)[0]
    assert len(part_files(folder)) > 3

    sink.write_video(
        "detections", VIDEO, small, export_id="r2", fingerprint=table_fingerprint(small)
    )

    assert sink.find_video("detections", VIDEO) == [folder]
    assert [p.name for p in part_files(folder)] == ["part-00000.csv"]
    assert sink.read_video("detections", VIDEO).equals(small)
    assert sink.committed("detections", [VIDEO]) == {VIDEO: table_fingerprint(small)}
    assert [p.name for p in (tmp_path / "_staging").iterdir()] == ["locks"]


def test_rewrite_under_another_date_moves_the_video(tmp_path: Path) -> None:
    sink = FileExportSink(tmp_path, file_format="jsonl")
    sink.write_video("events", VIDEO, synthetic_events(10), export_id="r1")
    moved = synthetic_events(10, start=pd.Timestamp("2026-05-05T08:00:00Z"))
    sink.write_video("events", VIDEO, moved, export_id="r2")

    (folder,) = sink.find_video("events", VIDEO)
    assert folder.parent.parent.name == "date=2026-05-05"
    assert not (tmp_path / "events" / "date=2026-05-04").exists()
    assert sink.read_video("events", VIDEO).equals(moved)


def test_empty_table_removes_the_video(tmp_path: Path) -> None:
    sink = FileExportSink(tmp_path)
    events = synthetic_events(10)
    sink.write_video("events", VIDEO, events, export_id="r1", fingerprint="fp")
    sink.write_video("events", "veh-01--clip-0002", events.slice(0, 0), export_id="r1")
    other = synthetic_events(5, video_id="veh-01--clip-0002")
    sink.write_video("events", "veh-01--clip-0002", other, export_id="r1", fingerprint="fp2")

    result = sink.write_video("events", VIDEO, events.slice(0, 0), export_id="r2")

    assert result.rows == 0 and result.extra["files"] == 0
    assert sink.find_video("events", VIDEO) == []
    assert sink.committed("events", [VIDEO, "veh-01--clip-0002"]) == {"veh-01--clip-0002": "fp2"}
    assert sink.read_video("events", "veh-01--clip-0002").equals(other)  # sibling untouched


def test_committed_reports_only_written_videos(tmp_path: Path) -> None:
    sink = FileExportSink(tmp_path)
    for n, video in enumerate(["veh-01--a", "veh-01--b"]):
        data = synthetic_events(3 + n, video_id=video)
        sink.write_video("events", video, data, export_id="r", fingerprint=table_fingerprint(data))

    found = sink.committed("events", ["veh-01--a", "veh-01--b", "veh-01--never"])
    assert found == {
        "veh-01--a": table_fingerprint(synthetic_events(3, video_id="veh-01--a")),
        "veh-01--b": table_fingerprint(synthetic_events(4, video_id="veh-01--b")),
    }
    assert sink.committed("detections", ["veh-01--a"]) == {}


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    sink = FileExportSink(tmp_path, file_format="csv.gz")
    data = synthetic_events(100)
    sink.write_video("events", VIDEO, data, export_id="r1")
    first = sink.manifest("events", VIDEO)
    sink.write_video("events", VIDEO, data, export_id="r2")
    second = sink.manifest("events", VIDEO)
    assert first is not None and second is not None
    assert [f["sha256"] for f in first["files"]] == [f["sha256"] for f in second["files"]]


@pytest.mark.parametrize(
    ("video_id", "source_id"), [("../escape", "veh-01"), ("veh-01--ok", "a/../../b")]
)
def test_unsafe_ids_are_rejected(tmp_path: Path, video_id: str, source_id: str) -> None:
    sink = FileExportSink(tmp_path / "export")
    data = synthetic_events(3, video_id=video_id, source_id=source_id)
    with pytest.raises(SinkError, match="not a safe path segment"):
        sink.write_video("events", video_id, data, export_id="r")
    with pytest.raises(SinkError, match="not a safe path segment"):
        sink.write_video("events", "../escape", data.slice(0, 0), export_id="r")
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "locks" not in p.parts]
    assert written == []


def test_failed_write_keeps_the_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = FileExportSink(tmp_path, file_format="jsonl.gz", rotate_bytes=16 * 1024)
    old = synthetic_events(200)
    sink.write_video("events", VIDEO, old, export_id="r1", fingerprint="old")
    calls = {"n": 0}
    real_compress = gzip.compress

    def failing_compress(data: bytes, **kw: object) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_compress(data, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("roadlens.sinks.files.gzip.compress", failing_compress)
    with pytest.raises(SinkError, match="disk full"):
        sink.write_video("events", VIDEO, synthetic_events(300, seed=2), export_id="r2")

    assert sink.read_video("events", VIDEO).equals(old)
    assert sink.committed("events", [VIDEO]) == {VIDEO: "old"}
    assert [p.name for p in (tmp_path / "_staging").iterdir()] == ["locks"]


def test_bad_settings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="unknown format"):
        FileExportSink(tmp_path, file_format="parquet")
    with pytest.raises(SinkError, match="rotate_bytes"):
        FileExportSink(tmp_path, rotate_bytes=0)
