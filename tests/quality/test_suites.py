"""The quality suites: each expectation family fails when it should, injected bad rows are
found by id with no false positives (GX and the pandas masks agree), and split is exact."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from roadlens.quality.suites import ID_COLUMNS, ValidationReport, pts_order, rules, split, validate
from roadlens.synth.tables import CLASS_NAMES, synthetic_detections, synthetic_events

ENGINES = ["gx", "pandas"]
CLASSES = list(CLASS_NAMES)
START = pd.Timestamp("2026-05-04T10:00:00Z")


def frames_df(n: int = 60, video_id: str = "veh-01--clip-0001") -> pd.DataFrame:
    """Sampled frames at 5 fps of a 30 fps clip, in the FRAMES contract's dtypes."""
    pts = np.arange(n) / 5.0
    return pd.DataFrame(
        {
            "video_id": video_id,
            "frame_number": np.arange(n, dtype=np.int64) * 6,
            "pts_sec": pts,
            "captured_at": START + pd.to_timedelta(pts, unit="s"),
            "width": np.full(n, 1280, np.int32),
            "height": np.full(n, 720, np.int32),
            "image_path": [f"frames/{i:06d}.jpg" for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def detections() -> pd.DataFrame:
    return synthetic_detections(2_000).to_pandas()  # 100 frames x 20 boxes


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    return synthetic_events(300).to_pandas()


def ids_at(frame: pd.DataFrame, table: str, positions: list[int]) -> set:
    cols = ID_COLUMNS[table]
    if len(cols) == 1:
        return set(frame[cols[0]].iloc[positions])
    return {tuple(r) for r in frame.iloc[positions][list(cols)].itertuples(index=False)}


def check(
    table: str,
    frame: pd.DataFrame,
    positions: list[int],
    reason: str,
    engine: str,
    known_classes: list[str] | None = CLASSES,
) -> ValidationReport:
    """Validate; exactly ``positions`` are bad, each with ``reason`` among its reasons."""
    report = validate(table, frame, known_classes=known_classes, engine=engine)
    assert report.bad_positions.tolist() == sorted(positions)
    assert set(report.bad_rows) == ids_at(frame, table, positions)
    for reasons in report.bad_rows.values():
        assert reason in reasons, reasons
    assert not report.passed
    assert any(o.reason == reason for o in report.row_failures)
    return report


# --- clean data ------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_clean_tables_pass(detections, events, engine) -> None:
    for table, frame in (("detections", detections), ("events", events), ("frames", frames_df())):
        report = validate(table, frame, known_classes=CLASSES, engine=engine)
        assert report.passed, report.as_metadata()
        assert report.bad_rows == {} and len(report.bad_positions) == 0
        assert report.rows == len(frame)
        assert all(o.unexpected_count in (0, None) for o in report.outcomes)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("table", ["frames", "detections", "events"])
def test_empty_tables_validate_cleanly(detections, events, table, engine) -> None:
    frame = {"frames": frames_df(), "detections": detections, "events": events}[table]
    report = validate(table, frame.iloc[:0], engine=engine)
    assert report.passed and report.rows == 0 and report.bad_rows == {}
    assert len(report.outcomes) == len(rules(table))
    good, bad = split(frame.iloc[:0], report)
    assert len(good) == 0 and len(bad) == 0 and "reasons" in bad.columns


def test_arrow_input_is_accepted() -> None:
    table = synthetic_detections(200)
    report = validate("detections", table, engine="gx")
    assert report.passed and report.rows == 200


def test_missing_column_and_unknown_table_raise(detections) -> None:
    with pytest.raises(ValueError, match=r"lacks columns \['confidence'\]"):
        validate("detections", detections.drop(columns=["confidence"]), engine="pandas")
    with pytest.raises(ValueError, match="no quality suite for table 'heatmaps'"):
        validate("heatmaps", detections)


def test_importing_suites_does_not_import_great_expectations() -> None:
    code = (
        "import sys, roadlens.quality.suites, roadlens.quality.quarantine, "
        "roadlens.quality.drift; print('great_expectations' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- one test per expectation family --------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_not_null(detections, engine) -> None:
    df = detections.copy()
    df.loc[[5, 77], "confidence"] = np.nan
    report = check(
        "detections", df, [5, 77], "confidence: expect_column_values_to_not_be_null", engine
    )
    counts = {o.reason: o.unexpected_count for o in report.row_failures}
    assert counts == {"confidence: expect_column_values_to_not_be_null": 2}


@pytest.mark.parametrize("engine", ENGINES)
def test_null_id_is_reported_under_none(detections, engine) -> None:
    df = detections.copy()
    df["detection_id"] = df["detection_id"].astype(object)
    df.loc[9, "detection_id"] = None
    report = validate("detections", df, engine=engine)
    assert report.bad_positions.tolist() == [9]
    assert report.bad_rows == {None: ["detection_id: expect_column_values_to_not_be_null"]}


@pytest.mark.parametrize("engine", ENGINES)
def test_unique_id_flags_both_copies_and_split_keeps_both(detections, engine) -> None:
    df = detections.copy()
    df.loc[40, "detection_id"] = df.loc[10, "detection_id"]
    report = check(
        "detections", df, [10, 40], "detection_id: expect_column_values_to_be_unique", engine
    )
    assert len(report.bad_rows) == 1  # one id, two rows
    good, bad = split(df, report)
    assert bad.index.tolist() == [10, 40] and len(good) == len(df) - 2


@pytest.mark.parametrize("engine", ENGINES)
def test_frames_are_unique_per_video_and_frame_number(engine) -> None:
    df = frames_df()
    other = frames_df(5, video_id="veh-01--clip-0002")  # same frame numbers, other video
    df = pd.concat([df, other, df.iloc[[3]]], ignore_index=True)
    bad = [3, len(df) - 1]
    report = check(
        "frames", df, bad, "video_id,frame_number: expect_compound_columns_to_be_unique", engine
    )
    assert set(report.bad_rows) == {("veh-01--clip-0001", 18)}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("confidence", 1.5, "confidence: expect_column_values_to_be_between [0, 1]"),
        ("confidence", -0.1, "confidence: expect_column_values_to_be_between [0, 1]"),
        ("frame_number", -6, "frame_number: expect_column_values_to_be_between [0, None]"),
        ("class_id", -1, "class_id: expect_column_values_to_be_between [0, None]"),
        ("lat", 91.0, "lat: expect_column_values_to_be_between [-90, 90]"),
        ("lon", -180.5, "lon: expect_column_values_to_be_between [-180, 180]"),
    ],
)
def test_value_ranges(detections, engine, column, value, reason) -> None:
    df = detections.copy()
    df.loc[[0, 1234], column] = value  # rows 0 and 1234 are the first of their frames
    check("detections", df, [0, 1234], reason, engine)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("x1", -1.0, "x1: expect_column_values_to_be_between [0, None]"),
        ("y1", -0.5, "y1: expect_column_values_to_be_between [0, None]"),
        ("x2", 1280.5, "x2: expect_column_pair_values_a_to_be_greater_than_b frame_width >= x2"),
        ("y2", 721.0, "y2: expect_column_pair_values_a_to_be_greater_than_b frame_height >= y2"),
        ("x2", 0.0, "x2: expect_column_pair_values_a_to_be_greater_than_b x2 > x1"),
        ("y2", 0.0, "y2: expect_column_pair_values_a_to_be_greater_than_b y2 > y1"),
    ],
)
def test_box_inside_the_frame(detections, engine, column, value, reason) -> None:
    df = detections.copy()
    df.loc[[3, 999], column] = value
    check("detections", df, [3, 999], reason, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_box_on_the_frame_edge_is_fine(detections, engine) -> None:
    df = detections.copy()
    df.loc[3, ["x1", "x2", "y1", "y2"]] = [0.0, 1280.0, 0.0, 720.0]
    assert validate("detections", df, engine=engine).passed


@pytest.mark.parametrize("engine", ENGINES)
def test_gps_may_be_null(detections, engine) -> None:
    assert detections["lat"].isna().any()  # the synthetic drive has GPS gaps
    df = detections.copy()
    df.loc[:50, ["lat", "lon"]] = np.nan
    assert validate("detections", df, engine=engine).passed


@pytest.mark.parametrize("engine", ENGINES)
def test_class_names_against_the_model(detections, events, engine) -> None:
    df = detections.copy()
    df.loc[[2, 1500], "class_name"] = "unicorn"
    reason = (
        "class_name: expect_column_values_to_be_in_set "
        "{car, person, stop sign, traffic light, truck}"
    )
    check("detections", df, [2, 1500], reason, engine)
    assert validate("detections", df, known_classes=None, engine=engine).passed
    ev = events.copy()
    ev.loc[7, "class_name"] = "unicorn"
    ev.loc[8, "class_name"] = None  # events may have no class
    check("events", ev, [7], reason, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_event_rules(events, engine) -> None:
    ev = events.copy()
    ev.loc[4, "trigger"] = None
    report = validate("events", ev, engine=engine)
    assert report.bad_rows == {
        ev.loc[4, "event_id"]: ["trigger: expect_column_values_to_not_be_null"]
    }
    ev = events.copy()
    ev.loc[11, "event_id"] = ev.loc[12, "event_id"]
    check("events", ev, [11, 12], "event_id: expect_column_values_to_be_unique", engine)


# --- time order --------------------------------------------------------------------------------

ORDER = "pts_sec: expect_column_values_to_be_in_set (out of frame_number order within the video)"
STEPS = "pts_sec: expect_column_min_to_be_between [0, None] (frame-to-frame steps within a video)"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_spike_frame_is_flagged_not_its_neighbours(engine) -> None:
    df = frames_df()
    df.loc[10, "pts_sec"] = 50.0  # a spike
    df.loc[30, "pts_sec"] = 0.1  # a dip
    report = check("frames", df, [10, 30], ORDER, engine)
    assert [o.reason for o in report.aggregate_failures] == [STEPS]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_detection_out_of_line_with_its_frame_is_flagged(detections, engine) -> None:
    df = detections.copy()
    df.loc[45, "pts_sec"] += 0.1  # row 45 is in frame 2 with 19 others
    report = check("detections", df, [45], ORDER, engine)
    assert report.aggregate_failures == []  # the frame's median time is intact


@pytest.mark.parametrize("engine", ENGINES)
def test_a_clock_reset_fails_the_batch_without_blaming_rows(engine) -> None:
    df = frames_df()
    df.loc[20:, "pts_sec"] -= 3.0  # the clock jumps back and stays
    report = validate("frames", df, engine=engine)
    assert report.bad_rows == {}
    assert [o.reason for o in report.aggregate_failures] == [STEPS]
    assert report.aggregate_failures[0].observed == pytest.approx(-2.8)
    assert not report.passed


def test_time_order_is_per_video_and_by_frame_number() -> None:
    a, b = frames_df(10, "a"), frames_df(10, "b")
    b["pts_sec"] += 100.0  # another video, later in its own clock
    mixed = pd.concat([b, a], ignore_index=True).sample(frac=1.0, random_state=1)
    in_order, step = pts_order(mixed)
    assert in_order.all()
    assert (step >= 0).all()


# --- many bad rows at once, GX and pandas agree ------------------------------------------------

INJECTIONS = [
    ("confidence", 1.01),
    ("confidence", np.nan),
    ("x1", -3.0),
    ("x2", 5000.0),
    ("y2", 0.0),
    ("lat", -95.0),
    ("lon", 200.0),
    ("class_name", "bicycle"),
    ("frame_number", -1),
    ("class_id", -2),
]


def test_fifty_injected_bad_rows_found_by_id_without_false_positives() -> None:
    df = synthetic_detections(20_000, seed=3).to_pandas()
    rng = np.random.default_rng(7)
    positions = rng.choice(len(df), size=50, replace=False)
    expected: dict[str, str] = {}
    for i, pos in enumerate(positions):
        column, value = INJECTIONS[i % len(INJECTIONS)]
        df.loc[pos, column] = value
        expected[df.loc[pos, "detection_id"]] = column
    reports = {e: validate("detections", df, known_classes=CLASSES, engine=e) for e in ENGINES}
    for report in reports.values():
        assert set(report.bad_rows) == set(expected)
        for row_id, column in expected.items():
            named = {reason.split(":")[0] for reason in report.bad_rows[row_id]}
            # A negative frame number also puts the row's time out of frame order.
            assert named == ({column, "pts_sec"} if column == "frame_number" else {column})
    gx, pandas = reports["gx"], reports["pandas"]
    assert gx.bad_rows == pandas.bad_rows
    assert gx.bad_positions.tolist() == pandas.bad_positions.tolist()
    assert [o.unexpected_count for o in gx.outcomes] == [
        o.unexpected_count for o in pandas.outcomes
    ]


# --- split and the report ---------------------------------------------------------------------


def test_split_is_exact(detections) -> None:
    df = detections.copy()
    df.index = df.index + 1000  # a non-default index is kept as it is
    df.loc[[1005, 1500, 1999], "confidence"] = 7.0
    df.loc[1500, "x1"] = -1.0
    report = validate("detections", df, engine="pandas")
    good, bad = split(df, report)
    assert bad.index.tolist() == [1005, 1500, 1999]
    assert len(good) + len(bad) == len(df)
    assert good.index.intersection(bad.index).empty
    assert list(bad.columns) == [*df.columns, "reasons"]
    assert list(good.columns) == list(df.columns)
    pd.testing.assert_frame_equal(bad.drop(columns="reasons"), df.loc[[1005, 1500, 1999]])
    assert sorted(bad.loc[1500, "reasons"]) == [
        "confidence: expect_column_values_to_be_between [0, 1]",
        "x1: expect_column_values_to_be_between [0, None]",
    ]
    good_again = validate("detections", good, engine="pandas")
    assert good_again.passed
    with pytest.raises(ValueError, match="rows"):
        split(df.iloc[:10], report)


def test_split_of_an_arrow_table() -> None:
    table = synthetic_detections(100)
    df = table.to_pandas()
    df.loc[4, "confidence"] = 2.0
    bad_table = pa.Table.from_pandas(df, preserve_index=False)
    good, bad = split(bad_table, validate("detections", bad_table, engine="gx"))
    assert bad.index.tolist() == [4] and len(good) == 99


def test_metadata_is_json_and_counts_failures(detections) -> None:
    df = detections.copy()
    df.loc[[1, 2, 3], "confidence"] = 3.0
    meta = validate("detections", df, engine="gx").as_metadata()
    text = json.dumps(meta)  # JSON-able as it is
    assert json.loads(text)["bad_rows"] == 3
    assert meta["passed"] is False and meta["engine"] == "gx"
    (failure,) = meta["failed_expectations"]
    assert failure["unexpected_count"] == 3 and failure["columns"] == ["confidence"]
    assert set(meta["sample_bad_ids"]) == set(df.loc[[1, 2, 3], "detection_id"])
    frames = frames_df()
    frames.loc[5, "width"] = 0
    sample = validate("frames", frames, engine="gx").as_metadata()["sample_bad_ids"]
    assert sample == [["veh-01--clip-0001", 30]]
    json.dumps(sample)


def test_gx_keeps_no_results_between_runs(detections) -> None:
    from roadlens.quality.suites import _gx_context

    df = detections.copy()
    df.loc[:99, "confidence"] = 2.0
    for _ in range(3):
        assert len(validate("detections", df, engine="gx").bad_rows) == 100
    assert _gx_context().validation_results_store.list_keys() == []


def test_events_of_one_frame_may_carry_different_interpolated_times() -> None:
    from roadlens.synth.tables import synthetic_events

    events = synthetic_events(6, video_id="veh-01--x", seed=4).to_pandas()
    # Two crossings detected on the same frame, interpolated to different sub-frame times.
    events.loc[1, "frame_number"] = events.loc[0, "frame_number"]
    events.loc[1, "pts_sec"] = events.loc[0, "pts_sec"] + 0.07
    report = validate("events", events, engine="pandas")
    assert report.passed, report.as_metadata()
