"""Known-answer tests of roadlens.ode.accumulate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from roadlens.ode import accumulate as acc
from roadlens.schema import EVENT_STATS
from roadlens.synth.tables import synthetic_events

START = pd.Timestamp("2026-05-04T10:00:00Z")


def events(rows: list[tuple[str, float, str, str]], video: str = "vid") -> pd.DataFrame:
    """Events ``(rule_id, minutes after START, class_name, direction)``, value 2.0 each."""
    rule, minutes, cls, direction = (list(c) for c in zip(*rows, strict=True))
    offset = pd.to_timedelta(np.asarray(minutes, float), unit="min")
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "video_id": video,
            "source_id": "src",
            "rule_id": rule,
            "class_name": cls,
            "direction": direction,
            "captured_at": START + offset,
            "pts_sec": offset.total_seconds(),
            "value": 2.0,
            "track_id": np.arange(len(rows)),
        }
    )


def test_binned_counts_at_known_times():
    ev = events(
        [
            ("line", 0.5, "car", "in"),
            ("line", 4.9, "car", "in"),
            ("line", 5.0, "car", "out"),
            ("line", 16.0, "car", "in"),
            ("line", 16.5, "truck", "in"),
        ]
    )
    stats = acc.binned_counts(ev)
    assert list(stats.columns) == EVENT_STATS.names
    five = stats[(stats.bin_minutes == 5) & (stats.class_name == "car")]
    car_in = five[five.direction == "in"].set_index("bin_start")["count"]
    bins = START + pd.to_timedelta([0, 5, 10, 15], unit="min")
    assert car_in.index.tolist() == bins.tolist()  # empty 5 and 10 filled with zero
    assert car_in.tolist() == [2, 0, 0, 1]
    car_out = five[five.direction == "out"].set_index("bin_start")["count"]
    assert car_out.tolist() == [0, 1, 0, 0]
    quarter = stats[(stats.bin_minutes == 15) & (stats.class_name == "car")]
    assert quarter.groupby("bin_start")["count"].sum().tolist() == [3, 1]
    hour = stats[stats.bin_minutes == 60]
    assert hour["count"].sum() == 5 and hour["value"].sum() == 10.0
    assert set(hour["bin_start"]) == {START}


def test_binned_counts_by_rule_only_and_no_fill_and_span():
    ev = events([("a", 1, "car", "in"), ("a", 12, "bus", "out"), ("b", 2, "car", "in")])
    stats = acc.binned_counts(ev, minutes=(5,), by=("rule_id",), fill_empty=False)
    assert stats["class_name"].isna().all() and stats["direction"].isna().all()
    assert stats[["rule_id", "count"]].values.tolist() == [["a", 1], ["a", 1], ["b", 1]]
    filled = acc.binned_counts(ev, minutes=(5,), by=("rule_id",))
    assert filled.groupby("rule_id")["count"].apply(list).to_dict() == {
        "a": [1, 0, 1],
        "b": [1, 0, 0],  # every key covers the video's range, not only its own
    }
    spanned = acc.binned_counts(
        ev, minutes=(5,), by=("rule_id",), span=(START, START + pd.Timedelta(minutes=29))
    )
    assert (spanned.groupby("rule_id").size() == 6).all()
    with pytest.raises(ValueError, match="rule_id"):
        acc.binned_counts(ev, by=("class_name",))


def test_binned_counts_conform_to_event_stats():
    table = acc.stats_table(acc.binned_counts(synthetic_events(5_000)))
    assert table.schema.equals(EVENT_STATS, check_metadata=False)
    five = table.filter(table.column("bin_minutes").to_numpy() == 5)
    assert sum(five.column("count").to_pylist()) == 5_000
    # 5,000 events every 0.5 s = 41.7 minutes: bins 10:00..10:40.
    assert len(set(five.column("bin_start").to_pylist())) == 9


def test_occupancy_running_in_minus_out():
    ev = events(
        [
            ("zone", 0, "car", "in"),
            ("zone", 1, "car", "in"),
            ("zone", 2, "car", "out"),
            ("zone", 3, "car", "in"),
            ("other", 1, "car", "out"),
            ("zone", 4, "car", "out"),
            ("zone", 5, "car", "out"),
            ("zone", 6, "car", "out"),
        ]
    )
    occ = acc.occupancy(ev)
    zone = occ[occ.rule_id == "zone"]
    assert zone["occupancy"].tolist() == [1, 2, 1, 2, 1, 0, -1]
    assert occ[occ.rule_id == "other"]["occupancy"].tolist() == [-1]
    clamped = acc.occupancy(ev, floor_zero=True)
    assert clamped[clamped.rule_id == "zone"]["occupancy"].tolist() == [1, 2, 1, 2, 1, 0, 0]
    shifted = acc.occupancy(ev, initial=3)
    assert shifted[shifted.rule_id == "zone"]["occupancy"].iloc[0] == 4


def test_occupancy_per_bin_fills_and_carries():
    ev = events([("z", 0, "car", "in"), ("z", 1, "car", "in"), ("z", 11, "car", "out")])
    bins = acc.occupancy(ev, minutes=5)
    assert bins["in"].tolist() == [2, 0, 0]
    assert bins["out"].tolist() == [0, 0, 1]
    assert bins["net"].tolist() == [2, 0, -1]
    assert bins["occupancy"].tolist() == [2.0, 2.0, 1.0]  # carried through the empty bin


def test_od_matrix_three_tracks_known_orders():
    # Track 1: N -> E; track 2: N -> S -> W (passes S); track 3: S -> N, sampled with gaps
    # and re-visiting N; track 4 only ever in E (no trip); untracked rows and null zones
    # (outside every zone) are ignored.
    hits = pd.DataFrame(
        {
            "video_id": "v",
            "track_id": pd.array([1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, None], dtype="Int64"),
            "pts_sec": [0, 1, 2, 0, 1, 2, 3, 0, 1, 5, 9, 0, 0],
            "zone": ["N", "N", "E", "N", None, "S", "W", "S", "N", "N", "N", "E", "N"],
        }
    )
    long = acc.od_matrix(hits)
    assert long[["origin", "destination", "count"]].values.tolist() == [
        ["N", "E", 1],
        ["N", "W", 1],
        ["S", "N", 1],
    ]
    wide = acc.od_matrix(hits, wide=True)
    assert wide.loc["N", "E"] == 1 and wide.loc["S", "N"] == 1 and wide.loc["N", "N"] == 0
    pairs = acc.od_matrix(hits, pairs="consecutive")
    assert pairs[["origin", "destination", "count"]].values.tolist() == [
        ["N", "E", 1],
        ["N", "S", 1],
        ["S", "N", 1],
        ["S", "W", 1],
    ]
    single = acc.od_matrix(hits, include_single=True)
    assert ["E", "E", 1] in single[["origin", "destination", "count"]].values.tolist()
    # With a re-entry gap of 2 s, track 3 re-enters N twice: S -> N -> N -> N.
    reentry = acc.od_matrix(hits, pairs="consecutive", max_gap_s=2.0)
    assert ["N", "N", 2] in reentry[["origin", "destination", "count"]].values.tolist()
    entries = acc.zone_entries(hits)
    assert entries[entries.track_id == 2]["zone"].tolist() == ["N", "S", "W"]
    assert entries[entries.track_id == 2]["seq"].tolist() == [0, 1, 2]


def test_empty_inputs_give_empty_outputs():
    ev = events([("a", 1, "car", "in")]).iloc[:0]
    stats = acc.binned_counts(ev)
    assert len(stats) == 0 and list(stats.columns) == EVENT_STATS.names
    assert len(acc.occupancy(ev)) == 0
    hits = pd.DataFrame({"video_id": [], "track_id": [], "pts_sec": [], "zone": []})
    assert len(acc.od_matrix(hits)) == 0


def test_naive_span_is_read_as_utc():
    ev = events([("a", 1, "car", "in")])
    naive = (pd.Timestamp("2026-05-04T10:00"), pd.Timestamp("2026-05-04T10:14"))
    assert len(acc.binned_counts(ev, minutes=(5,), by=("rule_id",), span=naive)) == 3
