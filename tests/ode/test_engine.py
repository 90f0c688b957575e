"""The engine end to end: EVENTS contract, determinism, rule-order independence, criteria,
firing, composition and schedules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from roadlens.ode import evaluate, evaluate_to_table, parse_rules
from roadlens.ode.engine import evaluate_hits
from roadlens.schema import EVENTS
from tests.ode.test_spatial import START, make_dets, vertical

AREAS = {
    "stop-line": {"line": [[100, 300], [900, 300]], "in_side": "right"},
    "box": {"polygon": [[400, 250], [600, 250], [600, 350], [400, 350]]},
    "left-quarter": {"polygon": [[0, 0], [0.25, 0], [0.25, 1], [0, 1]], "normalized": True},
    "far": {"polygon": [[1000, 0], [1200, 0], [1200, 700], [1000, 700]]},
}


def scene() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two cars crossing the stop line (one goes back), a person standing in the box, and
    ten empty frames at the end of the video."""
    down = list(range(200, 420, 20))
    dets = make_dets(
        {
            1: vertical(down),
            2: vertical(down + down[::-1], u=520),
            3: vertical([300] * 15, u=450),
            4: vertical(range(200, 260, 20), u=100),  # short track, far left
        },
        start={1: 0, 2: 3, 3: 0, 4: 2},
        classes={3: "person"},
    )
    n = int(dets["frame_number"].max()) + 11
    frames = pd.DataFrame(
        {
            "video_id": "cam-1--clip-0001",
            "frame_number": np.arange(n),
            "pts_sec": np.arange(n) / 10.0,
            "captured_at": (START + pd.to_timedelta(np.arange(n) / 10.0, unit="s")).astype(
                "datetime64[us, UTC]"
            ),
        }
    )
    return dets, frames


RULES = {
    "areas": AREAS,
    "rules": [
        {
            "id": "crossings",
            "criteria": {"classes": ["car"]},
            "trigger": {"cross": {"line": "stop-line", "hysteresis_px": 3}},
        },
        {
            "id": "box-entries",
            "trigger": {"zone": {"zone": "box"}},
            "firing": {"mode": "edge"},
        },
        {"id": "empty", "trigger": {"absence": {}}, "firing": {"mode": "edge"}},
        {
            "id": "person-in-box",
            "criteria": {"classes": ["person"]},
            "area": "box",
            "trigger": {"occurrence": {}},
            "firing": {"mode": "level", "max_events": 3},
        },
        {
            "id": "near",
            "trigger": {"distance": {"class_a": ["person"], "class_b": ["car"], "max": 80}},
        },
        {"id": "moving", "emit": False, "trigger": {"speed": {"min": 50}}},
        {
            "id": "moving-in-box",
            "trigger": {"all": {"rules": ["moving", "box-entries"], "per_track": True}},
        },
    ],
}


def test_events_follow_the_contract() -> None:
    dets, frames = scene()
    events = evaluate(dets, frames, parse_rules(RULES))
    assert list(events.columns) == EVENTS.names
    table = evaluate_to_table(dets, frames, parse_rules(RULES))
    assert table.schema.equals(EVENTS, check_metadata=False)
    assert table.num_rows == len(events)
    assert events["event_id"].is_unique
    assert set(events["rule_set_sha256"]) == {parse_rules(RULES).sha256()}
    assert set(events["model_sha256"]) == {"ab" * 32}  # from the detections
    assert "moving" not in set(events["rule_id"])  # emit: false


def test_known_answers() -> None:
    dets, frames = scene()
    ev = evaluate(dets, frames, parse_rules(RULES))
    by_rule = ev.groupby("rule_id")
    cross = by_rule.get_group("crossings")
    assert sorted(zip(cross["track_id"], cross["direction"], strict=True)) == [
        (1, "in"),
        (2, "in"),
        (2, "out"),
    ]
    assert set(cross["class_name"]) == {"car"}
    assert cross["lat"].notna().all() and cross["lon"].notna().all()
    # Track 1 enters the box once, track 2 twice (down, then back up), the person is in it
    # from its first frame.
    entries = by_rule.get_group("box-entries")
    assert entries.groupby("track_id").size().to_dict() == {1: 1, 2: 2, 3: 1}
    # Absence: the ten frames after the last detection, one edge.
    empty = by_rule.get_group("empty")
    assert empty["frame_number"].tolist() == [int(dets["frame_number"].max()) + 1]
    assert empty["track_id"].isna().all() and empty["source_id"].tolist() == ["cam-1"]
    assert len(by_rule.get_group("person-in-box")) == 3  # max_events
    near = by_rule.get_group("near")
    assert set(near["track_id"]) == {3}
    assert all(len(ids) == 2 for ids in near["detection_ids"])
    # Composite: moving (speed >= 50 px/s) and in the box, per track.
    assert set(by_rule.get_group("moving-in-box")["track_id"]) == {1, 2}


def test_rule_order_never_changes_results() -> None:
    dets, frames = scene()
    rules = parse_rules(RULES)
    base = evaluate(dets, frames, rules)
    rng = np.random.default_rng(0)
    for _ in range(3):
        shuffled = dict(
            RULES, rules=[RULES["rules"][i] for i in rng.permutation(len(RULES["rules"]))]
        )
        other = evaluate(dets, frames, parse_rules(shuffled))
        # The hash names the file as written (order included); everything else is equal.
        pd.testing.assert_frame_equal(
            base.drop(columns="rule_set_sha256"), other.drop(columns="rule_set_sha256")
        )


def test_inputs_are_not_modified_and_reruns_are_identical() -> None:
    dets, frames = scene()
    before_d, before_f = dets.copy(deep=True), frames.copy(deep=True)
    a = evaluate(dets, frames, parse_rules(RULES))
    b = evaluate(dets, frames, parse_rules(RULES))
    pd.testing.assert_frame_equal(dets, before_d)
    pd.testing.assert_frame_equal(frames, before_f)
    pd.testing.assert_frame_equal(a, b)


def test_model_hash_argument_overrides() -> None:
    dets, frames = scene()
    ev = evaluate(dets, frames, parse_rules(RULES), model_sha256="cd" * 32)
    assert set(ev["model_sha256"]) == {"cd" * 32}


def test_criteria_filter_before_the_trigger() -> None:
    dets, frames = scene()
    rules = {
        "areas": AREAS,
        "rules": [
            {
                "id": "long-cars",
                "criteria": {"classes": ["car"], "min_track_frames": 5},
                "trigger": {"instance": {}},
            },
            {
                "id": "sparse",
                "criteria": {"classes": ["person"], "every_nth_frame": 5},
                "trigger": {"occurrence": {}},
                "firing": {"mode": "level"},
            },
            {
                "id": "left",
                "area": "left-quarter",
                "anchor": "bottom_center",
                "trigger": {"instance": {}},
            },
        ],
    }
    ev = evaluate(dets, frames, parse_rules(rules))
    assert set(ev.loc[ev["rule_id"] == "long-cars", "track_id"]) == {1, 2}  # 4 is short
    assert ev.loc[ev["rule_id"] == "sparse", "frame_number"].tolist() == [0, 5, 10]
    assert set(ev.loc[ev["rule_id"] == "left", "track_id"]) == {4}  # u = 100 < 0.25 * 1280


def test_cooldown_and_limits() -> None:
    dets, frames = scene()
    rules = {
        "rules": [
            {
                "id": "person",
                "criteria": {"classes": ["person"]},
                "trigger": {"occurrence": {}},
                "firing": {"mode": "level", "cooldown_s": 0.5},
            }
        ]
    }
    ev = evaluate(dets, frames, parse_rules(rules))
    assert ev["pts_sec"].tolist() == pytest.approx([0.0, 0.5, 1.0])


def test_schedule_applies_on_captured_at() -> None:
    dets, frames = scene()
    # START is 10:00 UTC = 12:00 in Berlin (summer time) on a Monday.
    rule = {"id": "x", "trigger": {"instance": {}}}
    on = parse_rules(
        {"rules": [dict(rule, schedule={"timezone": "Europe/Berlin", "windows": ["11:00-13:00"]})]}
    )
    off = parse_rules(
        {"rules": [dict(rule, schedule={"timezone": "Europe/Berlin", "windows": ["13:00-14:00"]})]}
    )
    assert len(evaluate(dets, frames, on)) == 4
    assert evaluate(dets, frames, off).empty


def test_sequence_zone_then_line() -> None:
    dets, frames = scene()
    rules = {
        "areas": AREAS,
        "rules": [
            {"id": "in-box", "emit": False, "trigger": {"zone": {"zone": "box"}}},
            {"id": "in-far", "emit": False, "trigger": {"zone": {"zone": "far"}}},
            {"id": "cross", "emit": False, "trigger": {"cross": {"line": "stop-line"}}},
            {
                "id": "box-then-cross",
                "trigger": {"sequence": {"first": "in-box", "then": "cross", "within_s": 1.0}},
                "firing": {"mode": "level"},
            },
            {
                "id": "far-then-cross",
                "trigger": {"sequence": {"first": "in-far", "then": "cross", "within_s": 1.0}},
            },
        ],
    }
    ev = evaluate(dets, frames, parse_rules(rules))
    # The line runs through the box: every crossing comes 0.1-0.2 s after the box entry.
    got = ev.loc[ev["rule_id"] == "box-then-cross", ["track_id", "direction"]]
    assert sorted(got.values.tolist()) == [[1, "in"], [2, "in"], [2, "out"]]
    assert (ev["rule_id"] == "far-then-cross").sum() == 0  # nobody visits "far"


def test_empty_inputs_and_missing_columns() -> None:
    dets, frames = scene()
    empty = evaluate(dets.iloc[:0], frames.iloc[:0], parse_rules(RULES))
    assert empty.empty and list(empty.columns) == EVENTS.names
    assert pa.Table.from_pandas(empty, schema=EVENTS, preserve_index=False).num_rows == 0
    with pytest.raises(ValueError, match="lack columns"):
        evaluate(dets.drop(columns="track_id"), frames, parse_rules(RULES))


def test_evaluate_hits_without_frames_table() -> None:
    dets, _ = scene()
    hits = evaluate_hits(dets, None, parse_rules(RULES))
    assert set(hits) == {r["id"] for r in RULES["rules"] if r.get("emit", True)}
    assert hits["empty"].empty  # no frame without detections is known without frames


def near_line(dets: pd.DataFrame, frames: pd.DataFrame, *, band: float) -> pd.DataFrame:
    """A custom trigger for the test below: detections whose bottom is near y = 300."""
    rows = dets[(dets["y2"] - 300).abs() <= band]
    return rows[["video_id", "frame_number", "pts_sec", "captured_at", "track_id"]]


def test_custom_trigger_by_import_path() -> None:
    dets, frames = scene()
    rules = {
        "rules": [
            {
                "id": "near-line",
                "criteria": {"classes": ["car"]},
                "trigger": {"custom": {"function": "tests.ode.test_engine:near_line", "band": 5}},
                "firing": {"mode": "edge"},
            }
        ]
    }
    ev = evaluate(dets, frames, parse_rules(rules))
    assert ev.groupby("track_id").size().to_dict() == {1: 1, 2: 2}
    with pytest.raises(Exception, match="function"):
        parse_rules({"rules": [{"id": "c", "trigger": {"custom": {"band": 5}}}]})
