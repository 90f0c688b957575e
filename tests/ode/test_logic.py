"""ODE firing (edge/level, cooldown, limits), composition and schedules: known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadlens.ode.hits import HIT_COLUMNS, conform_hits
from roadlens.ode.logic import all_of, any_of, fire, for_at_least, intervals, not_of, sequence
from roadlens.ode.schedule import Schedule, ScheduleError, parse_schedule

T0 = pd.Timestamp("2026-05-04T08:00:00Z")


def make_frames(n: int, video: str = "v", stride: int = 3, dt: float = 0.5) -> pd.DataFrame:
    fr = pd.DataFrame(
        {
            "video_id": video,
            "frame_number": np.arange(n, dtype=np.int64) * stride,
            "pts_sec": np.arange(n) * dt,
        }
    )
    fr["captured_at"] = T0 + pd.to_timedelta(fr["pts_sec"], unit="s")
    return fr


def make_hits(
    frames: pd.DataFrame, ords: list[int], track: int | None = None, video: str = "v", **cols
) -> pd.DataFrame:
    """Hits on the sampled frames at positions ``ords`` of ``video``."""
    f = frames[frames["video_id"] == video].reset_index(drop=True).iloc[ords].copy()
    f["track_id"] = pd.array([track] * len(f), dtype="Int64")
    f["detection_ids"] = [[f"{video}-{track}-{o}"] for o in ords]
    for k, v in cols.items():
        f[k] = v
    return conform_hits(f.reset_index(drop=True))


def ords_of(hits: pd.DataFrame, frames: pd.DataFrame) -> list[int]:
    stride = int(frames["frame_number"].iloc[1] - frames["frame_number"].iloc[0])
    return (hits["frame_number"] // stride).tolist()


# --------------------------------------------------------------------------- fire


def test_edge_vs_level() -> None:
    fr = make_frames(20)
    h = make_hits(fr, [0, 1, 2, 5, 6, 9, 12, 13, 14, 15])
    assert len(fire(h, fr, mode="level")) == 10
    edge = fire(h, fr, mode="edge")
    assert ords_of(edge, fr) == [0, 5, 9, 12]
    assert list(edge.columns) == list(HIT_COLUMNS)
    with pytest.raises(ValueError, match="mode"):
        fire(h, fr, mode="rising")


def test_edge_consecutive_means_adjacent_samples() -> None:
    # Frame numbers jump by 3 and one sample (frame 9) was dropped: frames 6 and 12 are
    # consecutive samples, so the run 0..12 is one run.
    fr = make_frames(6).drop(index=3).reset_index(drop=True)
    h = conform_hits(fr.iloc[[0, 1, 2, 3]].assign(track_id=pd.NA))
    assert fire(h, fr, mode="edge")["frame_number"].tolist() == [0]


def test_edge_per_subject_and_direction() -> None:
    fr = make_frames(10)
    h = pd.concat(
        [
            make_hits(fr, [0, 1, 2], track=1),
            make_hits(fr, [1, 2, 3], track=2),
            make_hits(fr, [4, 5], track=1, direction="in"),
            make_hits(fr, [0, 1, 2, 3, 4, 5]),  # frame-level
        ]
    )
    edge = fire(h, fr, mode="edge")
    tracks = edge["track_id"].fillna(-1).tolist()
    got = list(zip(ords_of(edge, fr), tracks, edge["direction"].fillna("").tolist(), strict=True))
    assert got == [(0, -1, ""), (0, 1, ""), (1, 2, ""), (4, 1, "in")]


def test_cooldown_in_stream_time() -> None:
    fr = make_frames(21)  # pts 0..10 every 0.5 s
    h = make_hits(fr, list(range(21)))
    out = fire(h, fr, mode="level", cooldown_s=3.0)
    assert out["pts_sec"].tolist() == [0.0, 3.0, 6.0, 9.0]
    # The cooldown counts from the previous *fired* hit, per subject.
    two = pd.concat([make_hits(fr, [0, 4, 7], track=1), make_hits(fr, [1, 2], track=2)])
    out = fire(two, fr, mode="level", cooldown_s=2.0)
    assert list(zip(out["pts_sec"], out["track_id"], strict=True)) == [(0, 1), (0.5, 2), (2, 1)]


def test_cooldown_after_edge() -> None:
    fr = make_frames(20)
    h = make_hits(fr, [0, 1, 3, 4, 10])  # edges at 0, 3 (pts 1.5), 10 (pts 5)
    assert ords_of(fire(h, fr, mode="edge", cooldown_s=2.0), fr) == [0, 10]


def test_limits_per_rule_and_per_track() -> None:
    fr = make_frames(10)
    h = pd.concat(
        [make_hits(fr, [0, 2, 4, 6], track=1), make_hits(fr, [1, 3, 5], track=2)],
        ignore_index=True,
    )
    assert ords_of(fire(h, fr, mode="level", max_events=3), fr) == [0, 1, 2]
    per = fire(h, fr, mode="level", max_per_track=2)
    assert ords_of(per, fr) == [0, 1, 2, 3]
    both = fire(h, fr, mode="level", max_per_track=1, max_events=5)
    assert ords_of(both, fr) == [0, 1]
    frame_level = make_hits(fr, [0, 1, 2])
    assert len(fire(frame_level, fr, mode="level", max_per_track=1)) == 3  # no track: exempt


def test_fire_on_empty_hits() -> None:
    fr = make_frames(3)
    assert fire(make_hits(fr, []), fr).empty


def _reference_fire(ords: list[int], pts: list[float], mode: str, cooldown: float) -> list[int]:
    """Plain-Python reference for one subject."""
    kept, last_kept, prev = [], None, None
    for o, t in zip(ords, pts, strict=True):
        is_edge = prev is None or o - prev > 1
        prev = o
        if mode == "edge" and not is_edge:
            continue
        if last_kept is not None and t - last_kept < cooldown - 1e-9:
            continue
        kept.append(o)
        last_kept = t
    return kept


@settings(max_examples=80, deadline=None)
@given(
    st.sets(st.integers(0, 39), max_size=40),
    st.sets(st.integers(0, 39), max_size=40),
    st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0]),
)
def test_property_fire(a: set[int], b: set[int], cooldown: float) -> None:
    fr = make_frames(40)
    h = pd.concat([make_hits(fr, sorted(a), track=1), make_hits(fr, sorted(b), track=2)])
    h0 = h.copy(deep=True)
    level = fire(h, fr, mode="level")
    edge = fire(h, fr, mode="edge")
    key = ["frame_number", "track_id"]
    lv = set(map(tuple, level[key].astype(object).to_numpy()))
    ed = set(map(tuple, edge[key].astype(object).to_numpy()))
    assert ed <= lv == set(map(tuple, h[key].astype(object).to_numpy()))  # never invents
    pd.testing.assert_frame_equal(h, h0)
    for mode in ("edge", "level"):
        out = fire(h, fr, mode=mode, cooldown_s=cooldown)
        for track, s in ((1, a), (2, b)):
            got = ords_of(out[out["track_id"] == track], fr)
            o = sorted(s)
            assert got == _reference_fire(o, [x * 0.5 for x in o], mode, cooldown)


# --------------------------------------------------------------------------- composition


def test_all_any_not_frame_level() -> None:
    fr = make_frames(8)
    a = make_hits(fr, [0, 1, 2, 3])
    b = pd.concat([make_hits(fr, [2, 3], track=5), make_hits(fr, [3, 4], track=6)])
    both = all_of(a, b)
    assert ords_of(both, fr) == [2, 3]
    assert both["track_id"].isna().all() and both["value"].tolist() == [2, 2]
    assert both.loc[1, "detection_ids"] == ["v-None-3", "v-5-3", "v-6-3"]
    assert ords_of(any_of(a, b), fr) == [0, 1, 2, 3, 4]
    assert any_of(a, b)["value"].tolist() == [1, 1, 2, 2, 1]
    neg = not_of(any_of(a, b), fr)
    assert ords_of(neg, fr) == [5, 6, 7]
    assert neg["detection_ids"].map(len).eq(0).all()


def test_all_of_per_track() -> None:
    fr = make_frames(8)
    in_zone = pd.concat([make_hits(fr, [0, 1, 2, 3], track=1), make_hits(fr, [2, 3], track=2)])
    slow = pd.concat([make_hits(fr, [3, 4], track=1), make_hits(fr, [2], track=2)])
    out = all_of(in_zone, slow, per_track=True)
    assert list(zip(ords_of(out, fr), out["track_id"], strict=True)) == [(2, 2), (3, 1)]
    assert len(any_of(in_zone, slow, per_track=True)) == 7
    with pytest.raises(ValueError, match="frame-level"):
        all_of(in_zone, make_hits(fr, [1]), per_track=True)


def test_not_of_per_track() -> None:
    fr = make_frames(4)
    universe = pd.concat([make_hits(fr, [0, 1, 2], track=1), make_hits(fr, [1], track=2)])
    helmet = make_hits(fr, [1], track=1)
    out = not_of(helmet, fr, per_track=True, universe=universe)
    assert list(zip(ords_of(out, fr), out["track_id"], strict=True)) == [(0, 1), (1, 2), (2, 1)]
    with pytest.raises(ValueError, match="universe"):
        not_of(helmet, fr, per_track=True)


def test_for_at_least() -> None:
    fr = make_frames(20)  # 0.5 s apart
    h = make_hits(fr, [0, 1, 2, 3, 4, 8, 9, 10, 15])
    out = for_at_least(h, fr, 1.5)
    assert ords_of(out, fr) == [3, 4]
    assert out["value"].tolist() == [1.5, 2.0]
    assert ords_of(for_at_least(h, fr, 1.0), fr) == [2, 3, 4, 10]
    assert len(for_at_least(h, fr, 0)) == len(h)
    assert for_at_least(make_hits(fr, []), fr, 1).empty


def test_intervals() -> None:
    fr = make_frames(20)
    h = pd.concat([make_hits(fr, [0, 1, 2, 7], track=1), make_hits(fr, [5, 6], track=2)])
    iv = intervals(h, fr)
    assert iv[["track_id", "start_frame", "end_frame", "n_frames"]].values.tolist() == [
        [1, 0, 6, 3],
        [1, 21, 21, 1],
        [2, 15, 18, 2],
    ]
    assert iv["duration_s"].tolist() == [1.0, 0.0, 0.5]


def test_sequence_within_window() -> None:
    fr = make_frames(40)  # 0.5 s apart
    a = pd.concat([make_hits(fr, [0], track=1), make_hits(fr, [10], track=2)])
    b = pd.concat(
        [
            make_hits(fr, [4, 30], track=1),  # 2 s after A (ok), 15 s after (too late)
            make_hits(fr, [12], track=3),  # another track
            make_hits(fr, [10], track=2),  # same instant as A: not "then"
        ]
    )
    out = sequence(a, b, within_s=5.0)
    assert list(zip(ords_of(out, fr), out["track_id"], out["value"], strict=True)) == [(4, 1, 2.0)]
    assert out.loc[0, "detection_ids"] == ["v-1-0", "v-1-4"]
    # Without per_track, any track's A counts: track 2 at 5 s follows track 1's A at 0 s
    # (W inclusive), track 3 at 6 s follows track 2's A at 5 s.
    loose = sequence(a, b, within_s=5.0, per_track=False)
    assert ords_of(loose, fr) == [4, 10, 12]
    assert loose["value"].tolist() == [2.0, 5.0, 1.0]
    assert ords_of(sequence(a, b, within_s=20.0), fr) == [4, 30]


def test_sequence_per_video() -> None:
    fr = pd.concat([make_frames(10), make_frames(10, video="w")], ignore_index=True)
    a = make_hits(fr, [0], track=1, video="v")
    b = make_hits(fr, [2], track=1, video="w")
    assert sequence(a, b, within_s=10).empty


def test_composition_never_mutates() -> None:
    fr = make_frames(10)
    a = make_hits(fr, [0, 1, 2], track=1)
    b = make_hits(fr, [2, 3], track=1)
    copies = [x.copy(deep=True) for x in (fr, a, b)]
    all_of(a, b, per_track=True)
    any_of(a, b)
    not_of(a, fr)
    for_at_least(a, fr, 1)
    sequence(a, b, within_s=2)
    intervals(a, fr)
    fire(a, fr, cooldown_s=1, max_events=1)
    for x, y in zip((fr, a, b), copies, strict=True):
        pd.testing.assert_frame_equal(x, y)


# --------------------------------------------------------------------------- schedules


def utc(*stamps: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(stamps), utc=True)).astype("datetime64[us, UTC]")


def test_schedule_across_dst_change() -> None:
    # Europe/Berlin switches to summer time on Sunday 2026-03-29 (02:00 → 03:00).
    s = parse_schedule({"windows": ["07:00-09:30"], "timezone": "Europe/Berlin"})
    times = utc(
        "2026-03-28T05:30Z",  # 06:30 CET: before
        "2026-03-28T06:00Z",  # 07:00 CET: start, inclusive
        "2026-03-28T08:29Z",  # 09:29 CET: in
        "2026-03-28T08:30Z",  # 09:30 CET: end, exclusive
        "2026-03-29T05:00Z",  # 07:00 CEST: in (the UTC window moved an hour earlier)
        "2026-03-29T07:29Z",  # 09:29 CEST: in
        "2026-03-29T07:45Z",  # 09:45 CEST: out, though in by winter time
    )
    assert s.mask(times).tolist() == [False, True, True, False, True, True, False]


def test_schedule_weekdays_wrap_and_dates() -> None:
    s = parse_schedule(
        {
            "windows": "22:00-06:00",
            "weekdays": "fri",
            "timezone": "UTC",
            "exclude_dates": ["2026-05-15"],
        }
    )
    times = utc(
        "2026-05-08T23:00Z",  # Fri 23:00: in
        "2026-05-09T02:00Z",  # Sat 02:00: Friday's night window
        "2026-05-09T23:00Z",  # Sat 23:00: out
        "2026-05-08T02:00Z",  # Fri 02:00: Thursday's window: out
        "2026-05-16T02:00Z",  # the night of Fri 15 May, excluded
    )
    assert s.mask(times).tolist() == [True, True, False, False, False]
    d = parse_schedule({"dates": ["2026-05-01..2026-05-31", "2026-07-04"], "weekdays": "mon-fri"})
    times = utc("2026-05-04T12:00Z", "2026-05-09T12:00Z", "2026-06-01T12:00Z", "2026-07-04T1:00Z")
    assert d.mask(times).tolist() == [True, False, False, False]  # 4 July 2026 is a Saturday
    assert parse_schedule({"weekdays": "fri-mon"}).weekdays == frozenset({4, 5, 6, 0})


def test_schedule_naive_nat_and_filter() -> None:
    s = Schedule(windows=((8 * 3600, 9 * 3600),))
    naive = pd.Series(pd.to_datetime(["2026-05-04T08:30", None]))
    assert s.mask(naive).tolist() == [True, False]
    hits = make_hits(make_frames(3), [0, 1, 2])
    assert len(s.filter(hits)) == 3  # 08:00:00-08:00:01 UTC


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"windows": ["7-9"]}, r"windows\[0\]"),
        ({"windows": ["07:00-25:00"]}, r"windows\[0\]"),
        ({"windows": ["08:00-08:00"]}, "empty"),
        ({"weekdays": ["funday"]}, r"weekdays\[0\]"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"dates": ["2026-05-10..2026-05-01"]}, r"dates\[0\]"),
        ({"exclude_dates": ["yesterday"]}, r"exclude_dates\[0\]"),
        ({"window": "07:00-08:00"}, "unknown field"),
    ],
)
def test_schedule_errors_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ScheduleError, match=field):
        parse_schedule(spec)


def test_fire_is_order_free() -> None:
    fr = make_frames(30)
    h = pd.concat(
        [make_hits(fr, [0, 1, 2, 9, 10, 20], track=1), make_hits(fr, [3, 4, 5, 6], track=2)],
        ignore_index=True,
    )
    kw = {"mode": "edge", "cooldown_s": 4.0, "max_events": 3}
    expected = fire(h, fr, **kw)
    shuffled = fire(h.sample(frac=1, random_state=3), fr.sample(frac=1, random_state=4), **kw)
    pd.testing.assert_frame_equal(expected, shuffled)
    assert ords_of(expected, fr) == [0, 3, 9]


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(0, 19)), st.sets(st.integers(0, 19)), st.sets(st.integers(0, 19)))
def test_property_boolean_algebra(a: set[int], b: set[int], c: set[int]) -> None:
    """all ⊆ each child ⊆ any; not(any) is the complement of any among sampled frames."""
    fr = make_frames(20)
    kids = [make_hits(fr, sorted(s)) for s in (a, b, c)]
    assert set(ords_of(all_of(*kids), fr)) == a & b & c
    assert set(ords_of(any_of(*kids), fr)) == a | b | c
    assert set(ords_of(not_of(any_of(*kids), fr), fr)) == set(range(20)) - (a | b | c)
    runs = intervals(kids[0], fr)
    assert runs["n_frames"].sum() == len(a)
    with pytest.raises(ValueError, match="at least one"):
        all_of()
