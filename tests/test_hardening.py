"""Bad input: damaged videos, dirty GPS, hostile names, unsafe YAML, SQL and credentials.

Every case gets a clear error (or warning) that names the input; see docs/hardening.md.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import struct
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from roadlens import pipeline
from roadlens.enrich import load_sources
from roadlens.enrich.gps import (
    GpsError,
    GpsWarning,
    interpolate_track,
    read_gps_track,
)
from roadlens.enrich.sources import SourceConfigError
from roadlens.ids import slugify, video_id_for
from roadlens.lake import ParquetLake, safe_segment
from roadlens.ode.rules import RuleError, load_rules
from roadlens.redact import redact
from roadlens.registry import probe_video_record, video_id_of
from roadlens.sinks.base import SinkError
from roadlens.sinks.settings import SinkSettings, open_sink
from roadlens.video import PartialVideoWarning, VideoError, mp4, probe, sample_video
from tests.conftest import REPO

START = datetime(2026, 5, 4, 8, 30, tzinfo=UTC)
T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
ROOT = REPO


def render(path: Path, fourcc: str = "mp4v", frames: int = 40, fps: float = 10.0) -> Path:
    """A small clip of noise frames (noise does not compress, so the file has some bulk)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    rng = np.random.default_rng(7)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    return path


def damage(path: Path, *, start: float, length: float) -> Path:
    """Zero ``length`` (a share of the file) bytes from ``start`` (a share of the file)."""
    data = bytearray(path.read_bytes())
    a, b = int(len(data) * start), int(len(data) * (start + length))
    data[a:b] = bytes(b - a)
    path.write_bytes(data)
    return path


# --- empty and non-video files ---------------------------------------------------------------

NOT_VIDEO = {
    "empty": b"",
    "text": b"meeting notes, definitely not a video\n" * 40,
    "random": np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "png": cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
}


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".avi"])
@pytest.mark.parametrize("kind", sorted(NOT_VIDEO))
def test_empty_and_non_video_files_fail_naming_the_file(
    tmp_path: Path, suffix: str, kind: str
) -> None:
    bad = tmp_path / f"clip {kind}{suffix}"
    bad.write_bytes(NOT_VIDEO[kind])
    expected = "file is empty" if kind == "empty" else "cannot open as video"
    with pytest.raises(VideoError, match=re.escape(f"{bad}: {expected}")):
        probe(bad)
    out = tmp_path / "frames"
    with pytest.raises(VideoError, match=re.escape(str(bad))):
        sample_video(bad, out_dir=out, video_id="v", start_time=START)
    assert not out.exists()  # nothing written for a file that never opened


def test_directory_named_like_a_video_is_not_found(tmp_path: Path) -> None:
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        probe(folder)


# --- truncated and corrupt videos ---------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "fourcc"), [(".avi", "MJPG"), (".avi", "XVID"), (".mp4", "mp4v")]
)
def test_corrupt_middle_keeps_what_decodes_and_is_partial(
    tmp_path: Path, suffix: str, fourcc: str
) -> None:
    clip = damage(render(tmp_path / f"bad {fourcc}{suffix}", fourcc), start=0.35, length=0.1)
    with pytest.warns(PartialVideoWarning, match=re.escape(f"{clip}: partial decode")):
        result = sample_video(clip, None, out_dir=tmp_path / "jpg", video_id="v", start_time=START)
    assert result.partial
    assert 0 < result.table.num_rows < 40
    assert result.table.num_rows == len(list((tmp_path / "jpg").glob("*.jpg")))
    assert result.frames_expected == 40 and result.frames_decoded < 0.98 * 40
    assert any(str(clip) in w for w in result.warnings)


def test_avi_cut_in_half_decodes_the_first_half(tmp_path: Path) -> None:
    whole = render(tmp_path / "whole.avi", "MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.warns(PartialVideoWarning, match=re.escape(str(cut))):
        result = sample_video(cut, None, out_dir=None, video_id="v", start_time=START)
    assert result.partial and 10 <= result.table.num_rows < 30
    # What did decode is the start of the video, in order.
    assert result.table.column("frame_number").to_pylist() == list(range(result.table.num_rows))


def test_mp4_cut_in_half_lost_its_index(tmp_path: Path) -> None:
    whole = render(tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(
        VideoError, match=re.escape(f"{cut}: cannot open as video (MP4/MOV without a moov")
    ):
        probe(cut)


def test_fake_ftyp_followed_by_garbage_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    garbage = np.random.default_rng(3).integers(0, 256, 8000, dtype=np.uint8).tobytes()
    fake.write_bytes(struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 512, b"isomiso2") + garbage)
    with pytest.raises(VideoError, match=re.escape(f"{fake}: cannot open as video (MP4/MOV")):
        probe(fake)


def test_unknown_codec_in_avi_names_the_codec(tmp_path: Path) -> None:
    clip = render(tmp_path / "clip.avi", "MJPG")
    clip.write_bytes(clip.read_bytes().replace(b"MJPG", b"ZZZZ"))
    with pytest.raises(
        VideoError,
        match=re.escape(f"{clip}: cannot open as video (unknown or unsupported video codec 'ZZZZ'"),
    ):
        probe(clip)


def test_unknown_codec_in_mp4_names_the_codec(tmp_path: Path) -> None:
    clip = render(tmp_path / "clip.mp4")
    assert mp4.read_video_codecs(clip) == ["mp4v"]
    # Without esds FFmpeg cannot fall back to the MPEG-4 object type, so the sample entry
    # type is all it has: an unknown FourCC.
    clip.write_bytes(clip.read_bytes().replace(b"mp4v", b"zzzz").replace(b"esds", b"free"))
    assert mp4.read_video_codecs(clip) == ["zzzz"]
    with pytest.raises(
        VideoError,
        match=re.escape(
            f"{clip}: cannot open as video (unknown or unsupported video codec 'zzzz')"
        ),
    ):
        probe(clip)


def test_box_sizes_past_the_end_of_the_file_do_not_crash_the_box_readers(tmp_path: Path) -> None:
    # A moov that claims 1 GiB and holds 3 bytes: reading its first child header hit EOF
    # mid-header and raised struct.error out of probe().
    cut = tmp_path / "cut moov.mp4"
    ftyp = struct.pack(">I4s4sI8s", 24, b"ftyp", b"isom", 512, b"isomiso2")
    cut.write_bytes(ftyp + struct.pack(">I4s", 1 << 30, b"moov") + b"\x00\x00\x00")
    assert mp4.read_creation_time(cut) is None
    assert mp4.read_rotation(cut) is None
    assert mp4.read_video_codecs(cut) == []
    with pytest.raises(VideoError, match=re.escape(f"{cut}: cannot open as video (MP4/MOV")):
        probe(cut)
    # A real clip whose moov runs past the end still yields what its boxes hold.
    clip = render(tmp_path / "clip.mp4")
    data = bytearray(clip.read_bytes())
    moov = mp4.find_box(io.BytesIO(bytes(data)), ("moov",))
    assert moov is not None
    struct.pack_into(">I", data, moov.offset, 1 << 30)
    clip.write_bytes(data + b"\x00\x00\x00\x40tr")  # and a child header cut short
    assert mp4.read_video_codecs(clip) == ["mp4v"]
    assert mp4.read_rotation(clip) == 0


# --- GPS ---------------------------------------------------------------------------------


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _nmea(body: str) -> str:
    checksum = 0
    for byte in body.encode():
        checksum ^= byte
    return f"${body}*{checksum:02X}"


@pytest.fixture
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_csv_nan_and_out_of_range_fixes_are_dropped_with_a_count(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "drive 1.csv",
        "timestamp,lat,lon\n"
        "2026-05-01T10:00:00Z,48.0,11.0\n"
        "2026-05-01T10:00:01Z,nan,11.0\n"
        "2026-05-01T10:00:02Z,91.0,11.0\n"
        "2026-05-01T10:00:03Z,48.0,-180.5\n"
        "2026-05-01T10:00:04Z,inf,11.0\n"
        "2026-05-01T10:00:05Z,48.0,\n"
        ",48.0,11.0\n"
        "2026-05-01T10:00:07Z,48.1,11.1\n",
    )
    with pytest.warns(GpsWarning, match=re.escape(f"{path}: dropped 6 of 8 fixes")):
        track = read_gps_track(path)
    assert track["t"].tolist() == [T0, T0 + timedelta(seconds=7)]
    assert track["lat"].tolist() == [48.0, 48.1]


def test_all_fixes_invalid_is_an_error_naming_file_and_count(
    tmp_path: Path, no_warnings: None
) -> None:
    path = _write(
        tmp_path,
        "bad.csv",
        "timestamp,lat,lon\n2026-05-01T10:00:00Z,120,0\n2026-05-01T10:00:01Z,0,0\n",
    )
    with pytest.raises(GpsError, match=re.escape(f"{path}: no valid fixes (every one of 2")):
        read_gps_track(path)


def test_unsorted_track_is_sorted_silently(tmp_path: Path, no_warnings: None) -> None:
    rows = [f"2026-05-01T10:00:0{s}Z,48.{s},11.0" for s in (3, 0, 2, 1)]
    path = _write(tmp_path, "shuffled.csv", "timestamp,lat,lon\n" + "\n".join(rows) + "\n")
    track = read_gps_track(path)
    assert track["t"].is_monotonic_increasing
    assert track["lat"].tolist() == [48.0, 48.1, 48.2, 48.3]


def test_duplicate_timestamps_collapse_to_the_last_with_a_warning(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "dups.csv",
        "timestamp,lat,lon\n"
        "2026-05-01T10:00:00Z,48.0,11.0\n"
        "2026-05-01T10:00:01Z,48.1,11.0\n"
        "2026-05-01T10:00:00Z,48.2,11.0\n"
        "2026-05-01T10:00:01Z,48.3,11.0\n"
        "2026-05-01T10:00:01Z,48.4,11.0\n",
    )
    with pytest.warns(GpsWarning, match=re.escape(f"{path}: collapsed 3 fixes")):
        track = read_gps_track(path)
    assert track["lat"].tolist() == [48.2, 48.4]


def test_gpx_out_of_range_and_untimed_points_are_counted(tmp_path: Path) -> None:
    points = [
        ('lat="48.0" lon="11.0"', "2026-05-01T10:00:00Z"),
        ('lat="-91" lon="11.0"', "2026-05-01T10:00:01Z"),
        ('lat="48.0" lon="NaN"', "2026-05-01T10:00:02Z"),
        ('lat="48.0" lon="11.1"', None),
        ('lat="48.1" lon="11.0"', "2026-05-01T10:00:04Z"),
    ]
    body = "".join(
        f"<trkpt {attrs}>{f'<time>{t}</time>' if t else ''}</trkpt>" for attrs, t in points
    )
    path = _write(
        tmp_path,
        "ride.gpx",
        f'<gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>{body}</trkseg></trk></gpx>',
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        track = read_gps_track(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, GpsWarning)]
    assert f"{path}: dropped 1 of 5 <trkpt> without a <time>" in messages
    assert any(m.startswith(f"{path}: dropped 2 of 4 fixes") for m in messages)
    assert track["lat"].tolist() == [48.0, 48.1]


def test_nmea_out_of_range_fix_is_dropped_with_a_count(tmp_path: Path) -> None:
    lines = [
        _nmea("GPRMC,100000.00,A,4807.038,N,01131.000,E,10.0,84.4,010526,,,A"),
        _nmea("GPRMC,100001.00,A,9130.000,N,01131.000,E,10.0,84.4,010526,,,A"),  # 91.5 N
        _nmea("GPRMC,100002.00,A,4807.040,N,19030.000,E,10.0,84.4,010526,,,A"),  # 190.5 E
        _nmea("GPRMC,100003.00,A,4807.042,N,01131.020,E,10.0,84.4,010526,,,A"),
    ]
    path = _write(tmp_path, "log.nmea", "\n".join(lines) + "\n")
    with pytest.warns(GpsWarning, match=re.escape(f"{path}: dropped 2 of 4 fixes")):
        track = read_gps_track(path)
    assert track["t"].tolist() == [T0, T0 + timedelta(seconds=3)]


def test_gps_path_that_is_a_folder_or_missing_is_a_gps_error(tmp_path: Path) -> None:
    folder = tmp_path / "track.csv"
    folder.mkdir()
    with pytest.raises(GpsError, match=re.escape(f"{folder}: not a regular file")):
        read_gps_track(folder)
    with pytest.raises(GpsError, match=re.escape(f"{tmp_path / 'none.gpx'}: file not found")):
        read_gps_track(tmp_path / "none.gpx")


def test_gpx_entity_expansion_bomb_is_refused_quickly(tmp_path: Path) -> None:
    entities = '<!ENTITY a0 "xxxxxxxxxxxxxxxx">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 16}">' for i in range(1, 9)
    )
    path = _write(
        tmp_path,
        "bomb.gpx",
        f'<?xml version="1.0"?><!DOCTYPE gpx [{entities}]>'
        '<gpx><trk><trkseg><trkpt lat="1" lon="1"><time>&a8;</time></trkpt></trkseg></trk></gpx>',
    )
    started = time.perf_counter()
    with pytest.raises(GpsError, match=re.escape(f"{path}: not valid GPX/XML")):
        read_gps_track(path)
    assert time.perf_counter() - started < 5


def test_no_interpolation_across_gaps_longer_than_max_gap(
    tmp_path: Path, no_warnings: None
) -> None:
    rows = ["2026-05-01T10:00:00Z,48.0,11.0", "2026-05-01T10:00:02Z,48.2,11.0",
            "2026-05-01T10:00:30Z,50.0,11.0", "2026-05-01T10:00:31Z,50.1,11.0"]  # fmt: skip
    track = read_gps_track(_write(tmp_path, "gap.csv", "timestamp,lat,lon\n" + "\n".join(rows)))
    seconds = [1.0, 10.0, 29.0, 30.5, 40.0]
    times = pd.Series([pd.Timestamp(T0) + pd.Timedelta(seconds=s) for s in seconds]).dt.as_unit(
        "us"
    )
    out = interpolate_track(track, times, max_gap_s=5.0)
    assert out["lat"][0] == pytest.approx(48.1)  # inside a 2 s step
    assert math.isnan(out["lat"][1]) and math.isnan(out["lat"][2])  # inside the 28 s gap
    assert out["gps_age_s"][1] == pytest.approx(8.0) and out["gps_age_s"][2] == pytest.approx(1.0)
    assert out["lat"][3] == pytest.approx(50.05)
    assert math.isnan(out["lat"][4])  # 9 s after the last fix
    # A wider tolerance bridges the gap (linear in time).
    wide = interpolate_track(track, times, max_gap_s=30.0)
    assert wide["lat"][1] == pytest.approx(48.2 + (50.0 - 48.2) * 8 / 28)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="max_gap_s"):
            interpolate_track(track, times, max_gap_s=bad)


# --- names: spaces, unicode, .. and separators -------------------------------------------


def _files_under(root: Path) -> list[Path]:
    return [Path(d) / f for d, _, files in os.walk(root) for f in files]


@pytest.mark.parametrize("source_id", ["../../etc", "a/b", "..\\..\\win", " Fahrzeug ß 2 "])
def test_hostile_source_ids_are_slugified_and_stay_in_the_lake(
    tmp_path: Path, source_id: str
) -> None:
    landing = tmp_path / "landing"
    (landing / "x").mkdir(parents=True)
    clip = render(landing / "x" / "Straße Nord 1.mp4", frames=10)
    lake = ParquetLake(tmp_path / "lake")
    record = probe_video_record(clip, landing_root=landing, source_id=source_id, now=START)
    again = probe_video_record(clip, landing_root=landing, source_id=source_id, now=START)
    assert record.video_id == again.video_id  # stable
    assert record.source_id == slugify(source_id)
    assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*", record.source_id)
    assert record.video_id.startswith(
        f"{record.source_id}--strae-nord-1-"
    )  # ß has no ASCII: hashed
    pipeline.register(lake, record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PartialVideoWarning)
        pipeline.extract_frames(lake, record, target_fps=5.0)
    root = lake.root.resolve()
    written = _files_under(tmp_path)
    assert all(p.resolve().is_relative_to(root) for p in written if landing not in p.parents)
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["lake", "landing"]
    row = lake.read_video("videos", record.video_id).to_pylist()[0]
    assert (row["video_id"], row["source_id"]) == (record.video_id, record.source_id)
    assert lake.read_video("frames", record.video_id).num_rows > 0


def test_unicode_folders_and_names_give_distinct_readable_ids(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    folder = landing / "Фургон 7" / "東京 セッション"
    folder.mkdir(parents=True)
    first = render(folder / "東京 1.mp4", frames=5)
    second = render(folder / "大阪 1.mp4", frames=5)
    ids = [video_id_of(p, landing) for p in (first, second)]
    assert ids[0] != ids[1]  # once both folded to "1": one video overwrote the other
    record = probe_video_record(first, landing_root=landing, now=START)
    assert record.video_id == ids[0]
    assert record.source_id == record.vehicle_id == slugify("Фургон 7")
    for value in (record.video_id, record.source_id, record.session_id or ""):
        assert safe_segment(value, "id") == value
    assert video_id_of(first, landing) == ids[0]  # stable across calls


@pytest.mark.parametrize("name", ["...mp4", "!!!.mp4", "-- .mp4"])
def test_file_name_without_letters_is_an_error_naming_the_file(tmp_path: Path, name: str) -> None:
    clip = render(tmp_path / name, frames=5)
    with pytest.raises(ValueError, match=re.escape(f"{clip}: cannot build a video id")):
        probe_video_record(clip, now=START)


@pytest.mark.parametrize(
    "value", ["../../etc", "a/b", "a\\b", "..", ".hidden", " x", "x\x00", "é", "-x", "x" * 300]
)
def test_safe_segment_refuses_anything_path_like(tmp_path: Path, value: str) -> None:
    lake = ParquetLake(tmp_path / "lake")
    with pytest.raises(ValueError, match=r"video_id .* is not a safe path segment"):
        lake.write_video("frames", _one_row(), date="2026-05-04", source_id="s", video_id=value)
    assert _files_under(tmp_path) == []


def _one_row() -> pa.Table:
    return pa.table({"frame_number": pa.array([1], pa.int64())})


def test_longest_ids_fit_the_file_name_limit(tmp_path: Path) -> None:
    # slugify caps each part at 120 characters, so a video id can reach 242.
    video_id = video_id_for("s" * 200, "v" * 200)
    assert len(video_id) == 242
    lake = ParquetLake(tmp_path / "lake")
    stats = lake.write_video(
        "frames", _one_row(), date="2026-05-04", source_id="s", video_id=video_id
    )
    assert stats.path.name == f"{video_id}.parquet"
    assert lake.read_video("frames", video_id).num_rows == 1


# --- YAML ---------------------------------------------------------------------------------

PYTHON_TAG = "!!python/object/apply:os.mkdir [{marker}]"


def test_every_yaml_read_in_roadlens_is_safe() -> None:
    unsafe = re.compile(
        r"yaml\.(load|load_all|full_load|unsafe_load|unsafe_load_all)\s*\(|Loader\s*=\s*yaml\.(Loader|FullLoader|UnsafeLoader)"
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "roadlens").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if unsafe.search(line)
    ]
    assert offenders == []


def test_python_tag_in_a_rule_file_is_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    rules = _write(
        tmp_path,
        "rules.yaml",
        f"rules:\n  - id: x\n    trigger: {PYTHON_TAG.format(marker=marker)}\n",
    )
    with pytest.raises(RuleError, match=re.escape(f"{rules}: not valid YAML")):
        load_rules(rules)
    assert not marker.exists()


def test_python_tag_in_sources_yaml_is_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    sources = _write(
        tmp_path, "sources.yaml", f"sources:\n  - source_id: {PYTHON_TAG.format(marker=marker)}\n"
    )
    with pytest.raises(SourceConfigError, match=re.escape(f"{sources}: invalid YAML")):
        load_sources(sources)
    assert not marker.exists()


# --- SQL identifiers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema", ["x; drop table y", 'roadlens"; DROP SCHEMA public; --', "Fleet"]
)
def test_hostile_schema_from_the_environment_is_refused_before_connecting(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import roadlens.sinks.postgres as postgres

    def no_connect(*args: object, **kwargs: object) -> None:
        raise AssertionError("connected before validating the schema name")

    monkeypatch.setattr(postgres.psycopg, "connect", no_connect)
    settings = SinkSettings.from_env(
        {
            "ROADLENS_POSTGRES_URL": "postgresql://app:hunter2-pw@127.0.0.1:1/db",
            "ROADLENS_POSTGRES_SCHEMA": schema,
            "ROADLENS_HOME": "unused",
        }
    )
    with pytest.raises(SinkError, match=re.escape(f"invalid schema name {schema!r}")) as failure:
        open_sink("postgres", settings)
    assert "hunter2-pw" not in str(failure.value)
    assert "ROADLENS_POSTGRES_SCHEMA" in str(failure.value)


# --- credentials --------------------------------------------------------------------------

SECRET = "Pw%40s3cret-" + uuid.uuid4().hex[:6]  # percent-encoded '@': both forms must vanish
SECRETS = (SECRET, SECRET.replace("%40", "@"), "s3cret-")


def _everything_said(exc: BaseException) -> str:
    """Message, repr and every chained exception, as a log handler would print them."""
    import traceback

    return "".join(traceback.format_exception(exc)) + repr(exc)


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("postgres", {"ROADLENS_POSTGRES_URL": f"postgresql://app:{SECRET}@127.0.0.1:1/db"}),
        ("amqp", {"ROADLENS_AMQP_URL": f"amqp://app:{SECRET}@127.0.0.1:1/%2F"}),
        ("mqtt", {"ROADLENS_MQTT_URL": f"mqtt://app:{SECRET}@127.0.0.1:1"}),
    ],
)
def test_unreachable_server_errors_and_logs_never_show_the_password(
    name: str, env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = SinkSettings.from_env({**env, "ROADLENS_HOME": str(tmp_path)})
    assert SECRET not in settings.target(name) and "***" in settings.target(name)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SinkError, match="cannot connect") as failure:
        open_sink(name, settings)
    said = _everything_said(failure.value) + caplog.text
    assert "127.0.0.1:1" in str(failure.value)
    assert [s for s in SECRETS if s in said] == []


def test_mongo_unreachable_never_shows_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from roadlens.sinks.mongo import MongoSink

    caplog.set_level(logging.DEBUG)
    with pytest.raises(SinkError, match="cannot connect") as failure:
        MongoSink.from_url(f"mongodb://app:{SECRET}@127.0.0.1:1/", timeout_s=0.3)
    said = _everything_said(failure.value) + caplog.text
    assert [s for s in SECRETS if s in said] == []


def test_kafka_sasl_password_never_shows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from roadlens.sinks.kafka import KafkaSink

    caplog.set_level(logging.DEBUG)
    plain = SECRET.replace("%40", "@")
    with pytest.raises(SinkError, match="cannot reach") as failure:
        KafkaSink(
            "127.0.0.1:1",
            spool_dir=tmp_path / "spool",
            connect_timeout_s=0.5,
            producer_config={
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": "app",
                "sasl.password": plain,
            },
        )
    said = _everything_said(failure.value) + caplog.text
    assert [s for s in SECRETS if s in said] == []


def test_redact_url_hides_credentials_without_a_scheme() -> None:
    # A Kafka bootstrap list has no scheme; every entry's password is hidden.
    redacted = redact("app:s3cret@broker:9092,other:s3cret2@b2:9093,b3:9094")
    assert "s3cret" not in redacted
    assert redacted == "app:***@broker:9092,other:***@b2:9093,b3:9094"


def test_sink_settings_repr_hides_urls() -> None:
    from roadlens.sinks.settings import SinkSettings

    settings = SinkSettings.from_env(
        {
            "ROADLENS_POSTGRES_URL": "postgresql://a:s3cret@h/db",
            "ROADLENS_KAFKA_BOOTSTRAP": "a:s3cret@h:1",
        }
    )
    assert "s3cret" not in repr(settings)


def test_duckdb_views_quote_hostile_table_folders(tmp_path: Path) -> None:
    from roadlens.sinks.duckdb_views import _identifier

    assert _identifier('x" AS SELECT 1; DROP TABLE y; --') == '"x"" AS SELECT 1; DROP TABLE y; --"'
