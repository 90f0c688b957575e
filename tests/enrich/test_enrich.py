"""GPS reading and interpolation, source identity, and detection enrichment."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from roadlens.enrich import (
    GpsError,
    GpsWarning,
    SourceConfigError,
    SourceIdentity,
    enrich_detections,
    find_gps_sidecar,
    identity_from_path,
    interpolate_track,
    load_sources,
    read_gps_track,
    resolve_capture_start,
)
from roadlens.ids import time_ordered_uuids
from roadlens.schema import DETECTIONS, RAW_DETECTIONS, SCHEMA_VERSION

T0 = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)


def _track(seconds: list[float], **columns: list[float]) -> pd.DataFrame:
    n = len(seconds)
    return pd.DataFrame(
        {
            "t": pd.Series(
                [T0 + timedelta(seconds=s) for s in seconds], dtype="datetime64[us, UTC]"
            ),
            "lat": columns.get("lat", [48.0] * n),
            "lon": columns.get("lon", [11.0 + 0.001 * s for s in seconds]),
            "heading_deg": columns.get("heading_deg", [90.0] * n),
            "speed_mps": columns.get("speed_mps", [10.0] * n),
        }
    )


def _times(*seconds: float) -> pd.Series:
    return pd.Series([T0 + timedelta(seconds=s) for s in seconds]).dt.as_unit("us")


def _circular_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- interpolation -------------------------------------------------------------------------


def test_interpolate_small_gap_values_and_age() -> None:
    track = _track([0, 4], lat=[48.0, 48.004], speed_mps=[10.0, 14.0])
    out = interpolate_track(track, _times(1.0, 3.5), max_gap_s=5.0)
    assert out["lat"].tolist() == pytest.approx([48.001, 48.0035])
    assert out["speed_mps"].tolist() == pytest.approx([11.0, 13.5])
    assert out["gps_age_s"].tolist() == pytest.approx([1.0, 0.5])
    assert out["heading_deg"].tolist() == pytest.approx([90.0, 90.0])


def test_interpolate_nulls_inside_large_gap_and_beyond_ends() -> None:
    track = _track([0, 1, 2, 20, 21])
    times = _times(-2.0, -6.0, 0.5, 2.0, 3.0, 10.0, 19.9, 24.0, 27.0)
    out = interpolate_track(track, times, max_gap_s=5.0)
    lat_known = out["lat"].notna().tolist()
    # before first (2 s: clamp), too early, inside, on a fix, then 18 s gap, clamp, too late
    assert lat_known == [True, False, True, True, False, False, False, True, False]
    gps_fields = ["lat", "lon", "heading_deg", "speed_mps"]
    assert out.loc[~out["lat"].notna(), gps_fields].isna().all().all()  # every GPS field is null
    assert out["gps_age_s"][5] == pytest.approx(8.0)  # ...but the age of the nearest fix is kept
    assert out["gps_age_s"][0] == pytest.approx(2.0)
    assert out["lon"][0] == pytest.approx(11.0)  # clamped to the first fix
    assert out["gps_age_s"][2] == pytest.approx(0.5)
    assert out["gps_age_s"][3] == 0.0
    assert out["lon"][7] == pytest.approx(11.021)  # clamped to the last fix
    assert out["gps_age_s"][7] == pytest.approx(3.0)


def test_interpolate_keeps_index_and_handles_unsorted_duplicate_track() -> None:
    track = _track([2, 0, 1, 1], lon=[11.002, 11.0, 99.0, 11.001])
    times = _times(0.5, 1.5)
    times.index = pd.Index([10, 20])
    out = interpolate_track(track, times)
    assert out.index.tolist() == [10, 20]
    # the duplicate at t=1 keeps its last row (11.001), not 99.0
    assert out["lon"].tolist() == pytest.approx([11.0005, 11.0015])


def test_interpolate_heading_wraps_around_north() -> None:
    track = _track([0, 2, 4], heading_deg=[350.0, 10.0, 350.0])
    out = interpolate_track(track, _times(1.0, 3.0, 0.5))
    assert _circular_diff(out["heading_deg"][0], 0.0) < 1e-9
    assert _circular_diff(out["heading_deg"][1], 0.0) < 1e-9
    assert _circular_diff(out["heading_deg"][2], 355.0) < 0.1
    assert ((out["heading_deg"] >= 0) & (out["heading_deg"] < 360)).all()


def test_interpolate_empty_track_and_numpy_times() -> None:
    times = np.array(["2026-05-01T10:00:00"], dtype="datetime64[us]")
    out = interpolate_track(_track([]), times)
    assert len(out) == 1
    assert out.isna().all().all()
    out = interpolate_track(_track([0, 1]), times)
    assert out["gps_age_s"][0] == 0.0


# --- CSV -----------------------------------------------------------------------------------


def test_csv_with_iso_timestamps_aliases_and_cleaning(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "a.csv",
        "Timestamp,Latitude,Longitude,Course,Speed_MPS\n"
        "2026-05-01T10:00:02Z,48.002,11.0,-90,5\n"
        "2026-05-01T10:00:00Z,48.000,11.0,0,4\n"
        "2026-05-01T10:00:01Z,48.001,11.0,0,4\n"
        "2026-05-01T10:00:01Z,48.0015,11.0,0,4.5\n"  # duplicate time: last one wins
        "2026-05-01T10:00:03Z,0,0,0,0\n"  # no fix yet
        "2026-05-01T10:00:04Z,95,11,0,0\n"  # out of range
        "2026-05-01T10:00:05Z,,11,0,0\n",
    )
    track = read_gps_track(path)
    assert list(track.columns) == ["t", "lat", "lon", "heading_deg", "speed_mps"]
    assert str(track["t"].dtype) == "datetime64[us, UTC]"
    assert track["t"].tolist() == [T0 + timedelta(seconds=s) for s in (0, 1, 2)]
    assert track["lat"].tolist() == [48.0, 48.0015, 48.002]
    assert track["heading_deg"].tolist() == [0.0, 0.0, 270.0]
    assert track["speed_mps"].tolist() == [4.0, 4.5, 5.0]


def test_csv_epoch_seconds_and_naive_timezone(tmp_path: Path) -> None:
    path = _write(tmp_path, "b.csv", f"timestamp,lat,lon\n{T0.timestamp()},48,11\n")
    track = read_gps_track(path)
    assert track["t"].tolist() == [T0]
    assert track["speed_mps"].isna().all() and track["heading_deg"].isna().all()
    naive = _write(tmp_path, "c.csv", "time,lat,lon\n2026-05-01 12:00:00,48,11\n")
    assert read_gps_track(naive, tz="Europe/Berlin")["t"].tolist() == [T0]


def test_csv_relative_t_sec_needs_start(tmp_path: Path) -> None:
    path = _write(tmp_path, "rel.csv", "t_sec,lat,lon,speed\n0,48,11,3\n1.5,48.001,11,3\n")
    with pytest.raises(GpsError, match=r"rel\.csv.*start="):
        read_gps_track(path)
    track = read_gps_track(path, start=T0)
    assert track["t"].tolist() == [T0, T0 + timedelta(seconds=1.5)]


def test_csv_errors_name_file_and_problem(tmp_path: Path) -> None:
    missing = _write(tmp_path, "nolat.csv", "timestamp,lon\n2026-05-01T10:00:00Z,11\n")
    with pytest.raises(GpsError, match=r"nolat\.csv.*missing required column.*\blat\b"):
        read_gps_track(missing)
    with pytest.raises(GpsError, match=r"empty\.csv.*empty"):
        read_gps_track(_write(tmp_path, "empty.csv", ""))
    bad_time = _write(tmp_path, "bad.csv", "timestamp,lat,lon\nyesterday,48,11\n")
    with pytest.raises(GpsError, match=r"bad\.csv.*unparseable.*'yesterday'"):
        read_gps_track(bad_time)
    no_fix = _write(tmp_path, "nofix.csv", "timestamp,lat,lon\n2026-05-01T10:00:00Z,0,0\n")
    with pytest.raises(GpsError, match=r"nofix\.csv.*no valid fixes"):
        read_gps_track(no_fix)
    with pytest.raises(GpsError, match=r"x\.kml.*unknown GPS file type"):
        read_gps_track(tmp_path / "x.kml")


# --- GPX -----------------------------------------------------------------------------------

GPX11 = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1"
     xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2">
  <trk><trkseg>{points}</trkseg></trk>
</gpx>"""


def _gpx_point(second: int, lon: float, extra: str = "") -> str:
    stamp = (T0 + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'<trkpt lat="48.0" lon="{lon}"><time>{stamp}</time>{extra}</trkpt>'


def test_gpx_without_course_derives_eastward_heading_and_speed(tmp_path: Path) -> None:
    points = "".join(_gpx_point(s, 11.0 + 0.0001 * s) for s in range(4))
    track = read_gps_track(_write(tmp_path, "east.gpx", GPX11.format(points=points)))
    assert len(track) == 4
    assert track["heading_deg"].tolist() == pytest.approx([90.0] * 4, abs=0.01)
    # 0.0001° of longitude at 48° N is about 7.44 m, one per second
    assert track["speed_mps"].tolist() == pytest.approx([7.44] * 4, abs=0.01)


def test_gpx_extensions_and_gpx10_course_speed(tmp_path: Path) -> None:
    ext = "<extensions><gpxtpx:TrackPointExtension><gpxtpx:speed>3.5</gpxtpx:speed>"
    ext += "<gpxtpx:course>45</gpxtpx:course></gpxtpx:TrackPointExtension></extensions>"
    points = _gpx_point(0, 11.0, ext) + _gpx_point(1, 11.0001, ext)
    track = read_gps_track(_write(tmp_path, "ext.gpx", GPX11.format(points=points)))
    assert track["speed_mps"].tolist() == [3.5, 3.5]
    assert track["heading_deg"].tolist() == [45.0, 45.0]

    gpx10 = (
        '<gpx version="1.0" xmlns="http://www.topografix.com/GPX/1/0"><trk><trkseg>'
        + _gpx_point(0, 11.0, "<course>180.5</course><speed>2</speed>")
        + _gpx_point(1, 11.0001, "<course>181</course><speed>2.5</speed>")
        + "</trkseg></trk></gpx>"
    )
    track = read_gps_track(_write(tmp_path, "old.GPX", gpx10))
    assert track["heading_deg"].tolist() == [180.5, 181.0]
    assert track["speed_mps"].tolist() == [2.0, 2.5]


def test_gpx_errors(tmp_path: Path) -> None:
    with pytest.raises(GpsError, match=r"broken\.gpx.*not valid"):
        read_gps_track(_write(tmp_path, "broken.gpx", "<gpx><trk>"))
    with pytest.raises(GpsError, match=r"notime\.gpx.*<time>"):
        read_gps_track(
            _write(tmp_path, "notime.gpx", GPX11.format(points='<trkpt lat="1" lon="2"/>'))
        )


# --- NMEA ----------------------------------------------------------------------------------


def _nmea(body: str) -> str:
    checksum = 0
    for char in body.encode():
        checksum ^= char
    return f"${body}*{checksum:02X}"


def test_nmea_rmc_gga_and_bad_checksum(tmp_path: Path) -> None:
    lines = [
        _nmea("GPRMC,100000.00,A,4807.038,N,01131.000,E,10.0,84.4,010526,,,A"),
        _nmea("GPGGA,100000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        _nmea("GPGSV,3,1,11,03,03,111,00,04,15,270,00,06,01,010,00,13,06,292,00"),
        _nmea("GNGGA,100001.00,4807.040,N,01131.010,E,1,08,0.9,545.4,M,46.9,M,,"),
        _nmea("GPRMC,100002.00,A,4807.042,S,01131.020,W,0,0,010526,,,A")[:-2] + "00",
        _nmea("GPRMC,100003.00,V,,,,,,,010526,,,N"),  # no fix: ignored, not an error
        "garbage line",
        _nmea("GNRMC,100004.00,A,4807.044,N,01131.030,E,20.0,90.0,010526,,,A"),
    ]
    path = _write(tmp_path, "drive.nmea", "\r\n".join(lines) + "\r\n")
    with pytest.warns(GpsWarning, match=r"drive\.nmea.*skipped 1 of 6"):
        track = read_gps_track(path)
    assert track["t"].tolist() == [T0 + timedelta(seconds=s) for s in (0, 1, 4)]
    assert track["lat"][0] == pytest.approx(48 + 7.038 / 60)
    assert track["lon"][0] == pytest.approx(11 + 31.0 / 60)
    # RMC and GGA of the same second merge: the RMC's speed survives the later GGA
    assert track["speed_mps"][0] == pytest.approx(10.0 * 1852 / 3600)
    assert track["heading_deg"][0] == pytest.approx(84.4)
    assert math.isnan(track["speed_mps"][1])  # GGA only
    assert track["speed_mps"][2] == pytest.approx(20.0 * 1852 / 3600)


def test_nmea_gga_only_needs_date_and_wraps_midnight(tmp_path: Path) -> None:
    gga = _nmea("GPGGA,235959.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")
    path = _write(tmp_path, "gga.nma", gga + "\n")
    with pytest.raises(GpsError, match=r"gga\.nma.*date="):
        read_gps_track(path)
    track = read_gps_track(path, date=date(2026, 5, 1))
    assert track["t"].tolist() == [datetime(2026, 5, 1, 23, 59, 59, tzinfo=UTC)]

    lines = [
        _nmea("GPRMC,235959.00,A,4807.038,N,01131.000,E,1.0,0,300426,,,A"),
        _nmea("GPGGA,000000.00,4807.039,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
    ]
    track = read_gps_track(_write(tmp_path, "midnight.log", "\n".join(lines)))
    assert track["t"].tolist()[1] == datetime(2026, 5, 1, tzinfo=UTC)


# --- detections ----------------------------------------------------------------------------


def _raw(video_id: str = "veh-01--clip") -> pa.Table:
    # Deliberately unsorted; frame 0 has two cars and a person, frame 5 one car.
    rows = {
        "video_id": [video_id] * 4,
        "frame_number": [5, 0, 0, 0],
        "pts_sec": [1.0, 0.0, 0.0, 0.0],
        "class_id": [2, 2, 0, 2],
        "class_name": ["car", "car", "person", "car"],
        "confidence": [0.9, 0.8, 0.7, 0.6],
        "x1": [10.0, 300.0, 500.0, 100.0],
        "y1": [20.0, 40.0, 50.0, 60.0],
        "x2": [30.0, 340.0, 520.0, 140.0],
        "y2": [80.0, 90.0, 120.0, 100.0],
        "frame_width": [640] * 4,
        "frame_height": [360] * 4,
        "track_id": [7, None, None, 3],
    }
    return pa.table(rows, schema=RAW_DETECTIONS)


def _enrich(raw: pa.Table, track: pd.DataFrame | None = None) -> pa.Table:
    return enrich_detections(
        raw,
        identity=SourceIdentity("veh-01", "VAN-17", None),
        capture_start=T0,
        track=track,
        model_name="yolo-test",
        model_sha256="ab" * 32,
        ingested_at=T0 + timedelta(hours=1),
    )


def test_enrich_conforms_ranks_and_sorts() -> None:
    out = _enrich(_raw())
    assert out.schema.equals(DETECTIONS, check_metadata=True)
    frame = out.to_pandas()
    assert frame["frame_number"].tolist() == [0, 0, 0, 5]
    assert frame["class_id"].tolist() == [0, 2, 2, 2]
    assert frame["x1"].tolist() == [500.0, 100.0, 300.0, 10.0]
    assert frame["anchor_u"].tolist() == [510.0, 120.0, 320.0, 20.0]
    assert frame["anchor_v"].tolist() == [120.0, 100.0, 90.0, 80.0]
    assert (frame["schema_version"] == SCHEMA_VERSION).all()
    assert frame["captured_at"].tolist()[-1] == T0 + timedelta(seconds=1)
    assert frame["vehicle_id"].unique().tolist() == ["VAN-17"]
    assert frame["session_id"].isna().all() and frame["lat"].isna().all()
    # index = rank in frame by (class_id, x1, y1): person 0, car@100 1, car@300 2
    keys = ["veh-01--clip:0:0", "veh-01--clip:0:1", "veh-01--clip:0:2", "veh-01--clip:5:0"]
    ms = frame["captured_at"].astype("int64").to_numpy() // 1000
    assert frame["detection_id"].tolist() == time_ordered_uuids(ms, keys).tolist()


def test_enrich_ids_are_deterministic_time_ordered_uuidv8() -> None:
    first, second = _enrich(_raw()), _enrich(_raw())
    ids = first.column("detection_id").to_pylist()
    assert ids == second.column("detection_id").to_pylist()
    assert len(set(ids)) == len(ids)
    other = _enrich(_raw("veh-01--other")).column("detection_id").to_pylist()
    assert not set(ids) & set(other)
    captured = first.column("captured_at").to_pylist()
    assert [i for _, i in sorted(zip(captured, ids, strict=True))] == sorted(ids)
    for value in ids:
        assert value[14] == "8"  # version nibble
        assert int(value[19], 16) >> 2 == 0b10  # RFC 4122 variant bits


def test_enrich_input_order_does_not_change_ids() -> None:
    raw = _raw()
    shuffled = raw.take([2, 0, 3, 1])
    assert _enrich(raw).equals(_enrich(shuffled))


def test_enrich_with_track_fills_gps_and_nulls_gaps() -> None:
    track = _track([0.0, 0.5])  # frame 5 at 1.0 s is 0.5 s after the last fix
    out = _enrich(_raw(), track).to_pandas()
    assert out["lat"].tolist() == pytest.approx([48.0] * 4)
    assert out["gps_age_s"].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.5])
    far = _enrich(_raw(), _track([100.0, 101.0])).to_pandas()
    assert far[["lat", "lon", "heading_deg", "speed_mps"]].isna().all().all()
    assert far["gps_age_s"].notna().all()  # how stale the nearest fix is stays known


def test_enrich_empty_input() -> None:
    out = _enrich(RAW_DETECTIONS.empty_table())
    assert out.num_rows == 0
    assert out.schema.equals(DETECTIONS, check_metadata=True)


# --- sources -------------------------------------------------------------------------------


def test_identity_from_path_conventions(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    assert identity_from_path(landing / "Van 17" / "Morning Run" / "a.mp4", landing) == (
        SourceIdentity("van-17", "van-17", "morning-run")
    )
    assert identity_from_path(landing / "cam_3" / "a.mp4", landing) == SourceIdentity(
        "cam_3", None, None
    )
    assert identity_from_path(landing / "a.mp4", landing) == SourceIdentity("default", None, None)
    with pytest.raises(ValueError, match="not inside the landing folder"):
        identity_from_path(tmp_path / "elsewhere" / "a.mp4", landing)


def test_sources_yaml_matching(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (tmp_path / "tracks").mkdir()
    config_path = _write(
        tmp_path,
        "sources.yaml",
        f"""
sources:
  - source_id: veh-01
    vehicle_id: VAN-17
    match: "cam1/**"
    gps: none
  - source_id: Dash Cam
    match: "*/trip-*/*.mp4"
    session_id: fixed
    gps: tracks/all.gpx
    timezone: Europe/Berlin
  - source_id: abs
    match: "{tmp_path.as_posix()}/other/*.mp4"
""",
    )
    config = load_sources(config_path)
    assert config.identify(landing / "cam1" / "s1" / "a.mp4", landing) == SourceIdentity(
        "veh-01", "VAN-17", "s1"
    )
    assert config.identify(landing / "cam2" / "trip-9" / "b.mp4", landing) == SourceIdentity(
        "dash-cam", "cam2", "fixed"
    )
    assert config.identify(tmp_path / "other" / "c.mp4", landing).source_id == "abs"
    # no rule matches: the path convention decides
    assert config.identify(landing / "cam2" / "d.mp4", landing) == SourceIdentity(
        "cam2", None, None
    )
    assert config.gps_path_for(landing / "cam1" / "s1" / "a.mp4", landing) is None
    gps = config.gps_path_for(landing / "cam2" / "trip-9" / "b.mp4", landing)
    assert gps == tmp_path / "tracks" / "all.gpx"
    assert config.rule_for(landing / "cam2" / "trip-9" / "b.mp4", landing).timezone == (
        "Europe/Berlin"
    )


def test_sources_yaml_errors(tmp_path: Path) -> None:
    unknown = _write(tmp_path, "s1.yaml", "sources:\n  - source_id: a\n    vehicle: X\n")
    with pytest.raises(SourceConfigError, match=r"s1\.yaml.*sources\[0\].*'vehicle'"):
        load_sources(unknown)
    broken = _write(tmp_path, "s2.yaml", "sources: [\n")
    with pytest.raises(SourceConfigError, match=r"s2\.yaml.*invalid YAML"):
        load_sources(broken)
    bad_tz = _write(tmp_path, "s3.yaml", "sources:\n  - source_id: a\n    timezone: Mars/Base\n")
    with pytest.raises(SourceConfigError, match=r"s3\.yaml.*Mars/Base"):
        load_sources(bad_tz)
    no_id = _write(tmp_path, "s4.yaml", "sources:\n  - match: 'a/**'\n")
    with pytest.raises(SourceConfigError, match=r"s4\.yaml.*source_id"):
        load_sources(no_id)
    assert load_sources(_write(tmp_path, "s5.yaml", "")).rules == ()


def test_find_gps_sidecar_order_and_case(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    video.touch()
    assert find_gps_sidecar(video) is None
    (tmp_path / "clip.NMEA").touch()
    assert find_gps_sidecar(video) == tmp_path / "clip.NMEA"
    (tmp_path / "clip.GPX").touch()
    (tmp_path / "clip2.csv").touch()  # another stem
    assert find_gps_sidecar(video) == tmp_path / "clip.GPX"
    (tmp_path / "clip.csv").touch()
    assert find_gps_sidecar(video) == tmp_path / "clip.csv"


def test_resolve_capture_start_preference() -> None:
    track = _track([3.0, 4.0])
    container = datetime(2026, 5, 1, 9, 0, 0)  # naive: UTC
    assert resolve_capture_start(container, track, 0.0, 60.0) == (
        container.replace(tzinfo=UTC),
        "container",
    )
    cest = datetime(2026, 5, 1, 11, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    start, source = resolve_capture_start(cest, None, 0.0, 60.0)
    assert (start, source) == (datetime(2026, 5, 1, 9, 0, 0, tzinfo=UTC), "container")
    assert start.tzinfo is UTC
    unset = datetime(1904, 1, 1, tzinfo=UTC)  # MP4 zero date
    assert resolve_capture_start(unset, track, 0.0, 60.0) == (T0 + timedelta(seconds=3), "gps")
    start, source = resolve_capture_start(None, None, T0.timestamp(), 90.0)
    assert (start, source) == (T0 - timedelta(seconds=90), "mtime")
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)


def test_sources_yaml_names_a_rule_file_per_source(tmp_path: Path) -> None:
    from roadlens.enrich import load_sources
    from roadlens.enrich.sources import SourceConfigError

    (tmp_path / "cam7.yaml").write_text("version: 1\nrules: []\n")
    good = tmp_path / "sources.yaml"
    good.write_text("sources:\n  - {source_id: cam-7, match: 'cam7/**', rules: cam7.yaml}\n")
    config = load_sources(good)
    landing = tmp_path / "landing"
    assert config.rules_path_for(landing / "cam7" / "a.mp4", landing) == tmp_path / "cam7.yaml"
    assert config.rules_path_for(landing / "other" / "a.mp4", landing) is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - {source_id: cam-7, rules: missing.yaml}\n")
    with pytest.raises(SourceConfigError, match=r"sources\[0\]: 'rules' file .*missing.yaml"):
        load_sources(bad)
