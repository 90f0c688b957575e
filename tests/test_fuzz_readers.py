"""Fuzz the readers with malformed input: only their documented errors may come out.

- video probe / sampling: ``VideoError`` (a file that is not there: ``FileNotFoundError``);
  the ``frames`` stage writes nothing to the lake for a video that fails;
- GPS sidecars (CSV, GPX, NMEA): ``GpsError``; a track that is read obeys the track
  contract (sorted unique UTC times, lat/lon in range, never NaN);
- ODE rule files: ``RuleError``; ``sources.yaml``: ``SourceConfigError``.

Hypothesis settings keep each target to 40-80 examples (the whole file runs in ~20 s).
"""

from __future__ import annotations

import copy
import io
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadlens import pipeline
from roadlens.enrich.gps import GpsError, read_gps_track
from roadlens.enrich.sources import SourceConfigError, load_sources
from roadlens.lake import ParquetLake
from roadlens.ode.rules import RuleError, load_rules
from roadlens.registry import VideoRecord
from roadlens.video import VideoError, mp4, probe
from tests.conftest import REPO

EXAMPLES = REPO / "roadlens_dagster" / "rules" / "examples.yaml"
START = datetime(2026, 5, 4, 8, 30, tzinfo=UTC)
# Readers warn about losses (partial decodes, dropped fixes): expected under fuzzing.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
# ROADLENS_FUZZ_EXAMPLES=2000 explores further, with fresh random examples on each run.
_DEEP = int(os.environ.get("ROADLENS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_DEEP or 60,
    deadline=None,
    derandomize=not _DEEP,  # CI runs the same examples every time: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh folder per example (function-scoped fixtures do not reset between examples)."""
    with tempfile.TemporaryDirectory(prefix="roadlens-fuzz-") as folder:
        yield Path(folder)


# --- a real clip to cut and mutate ----------------------------------------------------------


def _render_clip() -> bytes:
    with scratch() as folder:
        path = folder / "clip.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 24))
        assert writer.isOpened()
        rng = np.random.default_rng(0)
        for _ in range(12):
            writer.write(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        writer.release()
        return path.read_bytes()


CLIP = _render_clip()


def _box_offsets(data: bytes) -> list[int]:
    """Offsets of every box header, containers walked (where mutations hurt most)."""
    found: list[int] = []
    f = io.BytesIO(data)

    def walk(start: int, end: int, depth: int) -> None:
        for box in mp4.iter_boxes(f, start, end):
            found.append(box.offset)
            if depth < 6 and box.type in ("moov", "trak", "mdia", "minf", "stbl", "edts", "dinf"):
                walk(box.payload_offset, min(box.end, len(data)), depth + 1)

    walk(0, len(data), 0)
    return found


BOXES = _box_offsets(CLIP)


def mutate_boxes(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Overwrite a box header's size or type: (box index, field 0=size/1=type, value)."""
    out = bytearray(data)
    for index, field, value in edits:
        offset = BOXES[index % len(BOXES)]
        if field == 0:
            struct.pack_into(">I", out, offset, value % 2**32)
        else:
            struct.pack_into(">I", out, offset + 4, value % 2**32)
    return bytes(out)


video_bytes = st.one_of(
    st.binary(min_size=0, max_size=2048),
    st.integers(0, len(CLIP)).map(lambda n: CLIP[:n]),
    st.lists(
        st.tuples(
            st.integers(0, 10_000),
            st.integers(0, 1),
            st.one_of(st.sampled_from([0, 1, 7, 8, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)),
        ),
        min_size=1,
        max_size=4,
    ).map(lambda edits: mutate_boxes(CLIP, edits)),
    st.tuples(st.integers(0, len(CLIP) - 1), st.binary(min_size=1, max_size=64)).map(
        lambda cut: CLIP[: cut[0]] + cut[1] + CLIP[cut[0] + len(cut[1]) :]
    ),
)


@FUZZ
@given(data=video_bytes, suffix=st.sampled_from([".mp4", ".mov", ".avi"]))
def test_probe_raises_only_video_error(data: bytes, suffix: str) -> None:
    with scratch() as folder:
        path = folder / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            info = probe(path)
        except VideoError as exc:
            assert str(path) in str(exc)
            return
        assert info.width > 0 and info.height > 0
        assert info.rotation in (0, 90, 180, 270)
        assert info.size_bytes == len(data)
        # The box readers never raise on what FFmpeg accepted either.
        mp4.read_video_codecs(path)


def _record(path: Path) -> VideoRecord:
    return VideoRecord(
        video_id="fuzz--clip",
        source_id="fuzz",
        vehicle_id=None,
        session_id=None,
        path=str(path),
        size_bytes=path.stat().st_size,
        mtime_ns=path.stat().st_mtime_ns,
        capture_start=START,
        capture_date=START.date().isoformat(),
        capture_time_source="container",
        gps_path=None,
        registered_at=START,
    )


@settings(FUZZ, max_examples=_DEEP or 40)
@given(data=video_bytes)
def test_failed_frame_extraction_writes_nothing(data: bytes) -> None:
    with scratch() as folder:
        path = folder / "landing" / "clip.mp4"
        path.parent.mkdir()
        path.write_bytes(data)
        lake = ParquetLake(folder / "lake")
        record = _record(path)
        try:
            outcome = pipeline.extract_frames(lake, record, target_fps=5.0)
        except VideoError:
            assert not lake.has_video(pipeline.FRAMES_TABLE, record.video_id)
            assert not lake.frames_dir(record.capture_date, record.video_id).exists()
            assert [p for p in folder.joinpath("lake").rglob("*") if p.is_file()] == []
            return
        frames = lake.read_video(pipeline.FRAMES_TABLE, record.video_id)
        assert frames.num_rows == outcome.rows > 0
        # The default keeps no JPEGs: the index is all that is written.
        assert frames.column("image_path").null_count == frames.num_rows
        assert not lake.frames_dir(record.capture_date, record.video_id).exists()
        assert not any(p.is_file() for p in lake.staging.rglob("*"))


# --- GPS sidecars -----------------------------------------------------------------------------

CSV_OK = (
    "timestamp,lat,lon,heading,speed\n"
    "2026-05-01T10:00:00Z,48.0,11.0,90,10\n"
    "2026-05-01T10:00:01Z,48.0001,11.0002,91,10.5\n"
    "2026-05-01T10:00:02Z,48.0002,11.0004,92,11\n"
)
GPX_OK = (
    '<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1">'
    "<trk><trkseg>"
    '<trkpt lat="48.0" lon="11.0"><time>2026-05-01T10:00:00Z</time></trkpt>'
    '<trkpt lat="48.0001" lon="11.0002"><time>2026-05-01T10:00:01Z</time>'
    "<extensions><speed>10.5</speed><course>91</course></extensions></trkpt>"
    '<trkpt lat="48.0002" lon="11.0004"><time>2026-05-01T10:00:02Z</time></trkpt>'
    "</trkseg></trk></gpx>"
)


def _nmea(body: str) -> str:
    checksum = 0
    for byte in body.encode():
        checksum ^= byte
    return f"${body}*{checksum:02X}"


NMEA_OK = "\n".join(
    [
        _nmea("GPRMC,100000.00,A,4807.038,N,01131.000,E,10.0,84.4,010526,,,A"),
        _nmea("GPGGA,100000.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"),
        _nmea("GNRMC,100001.00,A,4807.040,N,01131.010,E,10.2,84.0,010526,,,A"),
        _nmea("GPGGA,100002.00,4807.042,N,01131.020,E,1,08,0.9,545.4,M,46.9,M,,"),
    ]
)

# Characters that matter to the three formats, plus arbitrary text.
NASTY = st.sampled_from(
    [",", "\n", "\r", '"', "<", ">", "/", "*", "$", "-", ".", "e", "nan", "inf", "Z",
     "+25:00", "9999", "99999999999999999999", "\x00", "é", "&amp;", "<!--", "]]>", " "]
)  # fmt: skip
TEXT_PIECE = st.one_of(NASTY, st.text(max_size=8))


def mutate_text(base: str) -> st.SearchStrategy[str]:
    """A strategy of ``base`` with 1-5 pieces inserted, replaced or deleted."""
    edit = st.tuples(st.integers(0, len(base)), st.integers(0, 12), TEXT_PIECE)

    def apply(edits: list[tuple[int, int, str]]) -> str:
        text = base
        for at, cut, piece in edits:
            at = min(at, len(text))
            text = text[:at] + piece + text[at + cut :]
        return text

    return st.lists(edit, min_size=1, max_size=5).map(apply)


def _csv_rows() -> st.SearchStrategy[str]:
    cell = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-(10**15), 10**15).map(str),
        st.sampled_from(["", "2026-05-01T10:00:00Z", "2026-02-30T25:61:00", "1746093600", "x"]),
        st.text(max_size=6).filter(lambda s: "\n" not in s and "\r" not in s),
    )
    header = st.lists(
        st.sampled_from(["timestamp", "time", "t_sec", "lat", "latitude", "lon", "lng", "speed",
                         "speed_kmh", "heading", "course", "junk"]),
        min_size=1, max_size=6,
    )  # fmt: skip
    return header.flatmap(
        lambda cols: st.lists(
            st.lists(cell, min_size=len(cols), max_size=len(cols)).map(
                lambda row: ",".join(c.replace(",", ";") for c in row)
            ),
            max_size=8,
        ).map(lambda rows: "\n".join([",".join(cols), *rows]) + "\n")
    )


def _nmea_sentences() -> st.SearchStrategy[str]:
    field = st.one_of(
        st.sampled_from(["", "A", "V", "N", "S", "E", "W", "0", "1", "100000.00", "010526",
                         "4807.038", "9130.0", "01131.000", "18100.0", "-1", "nan", "999999"]),
        st.text(alphabet="0123456789.-ENSWAV", max_size=10),
    )  # fmt: skip
    sentence = st.tuples(
        st.sampled_from(["GPRMC", "GNRMC", "GPGGA", "GNGGA", "GPGSV"]),
        st.lists(field, min_size=0, max_size=14),
        st.booleans(),
    ).map(lambda s: _nmea(",".join([s[0], *s[1]])) if s[2] else "$" + ",".join([s[0], *s[1]]))
    return st.lists(sentence, min_size=1, max_size=10).map("\n".join)


def check_track_contract(track: Any) -> None:
    assert list(track.columns) == ["t", "lat", "lon", "heading_deg", "speed_mps"]
    assert len(track) > 0
    assert str(track["t"].dtype) == "datetime64[us, UTC]"
    assert track["t"].notna().all()
    assert track["t"].is_monotonic_increasing and track["t"].is_unique
    assert track["lat"].between(-90, 90).all() and track["lon"].between(-180, 180).all()
    heading = track["heading_deg"].dropna()
    assert heading.between(0, 360).all() and (heading < 360).all()
    assert (track["speed_mps"].dropna() >= 0).all()


def _read_gps(name: str, text: str, **kwargs: Any) -> None:
    with scratch() as folder:
        path = folder / name
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            track = read_gps_track(path, **kwargs)
        except GpsError as exc:
            assert str(path) in str(exc)
            return
        check_track_contract(track)


@FUZZ
@given(text=st.one_of(mutate_text(CSV_OK), _csv_rows(), st.text(max_size=300)))
def test_csv_track_raises_only_gps_error(text: str) -> None:
    _read_gps("track.csv", text, start=START)


@FUZZ
@given(text=st.one_of(mutate_text(GPX_OK), st.text(max_size=300)))
def test_gpx_track_raises_only_gps_error(text: str) -> None:
    _read_gps("track.gpx", text)


@FUZZ
@given(text=st.one_of(mutate_text(NMEA_OK), _nmea_sentences(), st.text(max_size=300)))
def test_nmea_track_raises_only_gps_error(text: str) -> None:
    _read_gps("track.nmea", text, date=START.date())


# --- rule files and sources.yaml -------------------------------------------------------------

EXAMPLES_TEXT = EXAMPLES.read_text(encoding="utf-8")
EXAMPLES_TREE = yaml.safe_load(EXAMPLES_TEXT)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["stop-line", "crosswalk", "car", "person", "in", "out", "always", "right"]),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.sampled_from(
            ["id", "trigger", "rules", "areas", "criteria", "line", "polygon", "cross", "enter",
             "count", "classes", "window_s", "schedule", "actions", "version"])), inner, max_size=4),
    ),
    max_leaves=12,
)  # fmt: skip


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path into a YAML tree (the root included)."""
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _paths(value, (*prefix, i))


TREE_PATHS = [p for p in _paths(EXAMPLES_TREE) if p]


def replace_at(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    tree = copy.deepcopy(tree)
    node = tree
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return tree


_DELETE = object()

rule_trees = st.lists(
    st.tuples(st.sampled_from(TREE_PATHS), st.one_of(st.just(_DELETE), yaml_values)),
    min_size=1,
    max_size=3,
).map(lambda edits: _apply_edits(EXAMPLES_TREE, edits))


def _apply_edits(tree: Any, edits: list[tuple[tuple[Any, ...], Any]]) -> Any:
    for path, value in edits:
        try:
            tree = replace_at(tree, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier edit removed the path
            continue
    return tree


def _dump(tree: Any) -> str:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


@contextmanager
def _file(name: str, text: str) -> Iterator[Path]:
    with scratch() as folder:
        path = folder / name
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        yield path


def _only(error: type[Exception], call: Callable[[], object], path: Path) -> None:
    try:
        call()
    except error as exc:
        assert str(path) in str(exc)


@settings(FUZZ, max_examples=_DEEP or 80)
@given(tree=rule_trees)
def test_mutated_example_rules_raise_only_rule_error(tree: Any) -> None:
    with _file("rules.yaml", _dump(tree)) as path:
        _only(RuleError, lambda: load_rules(path), path)


@FUZZ
@given(
    text=st.one_of(
        yaml_values.map(_dump),
        mutate_text(EXAMPLES_TEXT),
        st.text(max_size=200),
    )
)
def test_random_rule_documents_raise_only_rule_error(text: str) -> None:
    with _file("rules.yaml", text) as path:
        _only(RuleError, lambda: load_rules(path), path)


SOURCES_OK = (
    "sources:\n"
    "  - source_id: veh-01\n"
    "    vehicle_id: VAN-17\n"
    "    match: 'cam1/**'\n"
    "    gps: sidecar\n"
    "    timezone: Europe/Berlin\n"
)


@FUZZ
@given(
    text=st.one_of(
        mutate_text(SOURCES_OK),
        yaml_values.map(lambda v: _dump({"sources": [v]})),
        yaml_values.map(_dump),
    )
)
def test_sources_yaml_raises_only_source_config_error(text: str) -> None:
    with _file("sources.yaml", text) as path:
        _only(SourceConfigError, lambda: load_sources(path), path)


def test_the_fuzzers_start_from_valid_input() -> None:
    """The seeds parse: otherwise the mutations above would test nothing but the errors."""
    assert len(BOXES) > 10
    with _file("rules.yaml", EXAMPLES_TEXT) as path:
        assert load_rules(path).rules
    with _file("sources.yaml", SOURCES_OK) as path:
        assert load_sources(path).rules
    for name, text in (("a.csv", CSV_OK), ("a.gpx", GPX_OK), ("a.nmea", NMEA_OK)):
        with _file(name, text) as path:
            check_track_contract(read_gps_track(path))
    with _file("clip.mp4", "") as path:
        path.write_bytes(CLIP)
        assert probe(path).frame_count == 12
    assert os.path.exists(EXAMPLES)


# Found by fuzzing: a scalar that is not a string used to raise TypeError from list().
@pytest.mark.parametrize(("key", "value"), [("weekdays", None), ("windows", None), ("weekdays", 5)])
def test_schedule_of_the_wrong_type_is_a_rule_error(key: str, value: Any) -> None:
    tree = copy.deepcopy(EXAMPLES_TREE)
    rule = next(r for r in tree["rules"] if isinstance(r.get("schedule"), dict))
    rule["schedule"][key] = value
    with _file("rules.yaml", _dump(tree)) as path, pytest.raises(RuleError, match="schedule"):
        load_rules(path)
