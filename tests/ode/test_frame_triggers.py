"""Frame-level and temporal ODE triggers: hand-built scenarios with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadlens.ode.frame_triggers import FRAME_TRIGGERS
from roadlens.ode.hits import HIT_COLUMNS

T0 = pd.Timestamp("2026-05-04T08:00:00Z")


def make_frames(n: int, video: str = "v", stride: int = 2, dt: float = 1.0) -> pd.DataFrame:
    """``n`` sampled frames every ``stride`` source frames, ``dt`` seconds apart."""
    fr = pd.DataFrame(
        {
            "video_id": video,
            "frame_number": np.arange(n, dtype=np.int64) * stride,
            "pts_sec": np.arange(n) * dt,
        }
    )
    fr["captured_at"] = (T0 + pd.to_timedelta(fr["pts_sec"], unit="s")).astype(
        "datetime64[us, UTC]"
    )
    return fr


def make_dets(rows: list[tuple], frames: pd.DataFrame) -> pd.DataFrame:
    """Detections from ``(video, frame_number, track_id, class, w, h)`` on ``frames``' times."""
    d = pd.DataFrame(rows, columns=["video_id", "frame_number", "track_id", "class_name", "w", "h"])
    d = d.merge(frames, on=["video_id", "frame_number"], how="left", validate="m:1")
    assert d["pts_sec"].notna().all(), "a detection names a frame that is not sampled"
    d["track_id"] = d["track_id"].astype("Int64")
    d["confidence"] = np.float32(0.9)
    d["x1"] = np.float32(10)
    d["y1"] = np.float32(10)
    d["x2"] = (10 + d["w"]).astype(np.float32)
    d["y2"] = (10 + d["h"]).astype(np.float32)
    d["detection_id"] = [f"d{i:03d}" for i in range(len(d))]
    return d.drop(columns=["w", "h"])


def run(kind: str, dets: pd.DataFrame, frames: pd.DataFrame, **params) -> pd.DataFrame:
    out = FRAME_TRIGGERS[kind](dets, frames, **params)
    assert list(out.columns) == list(HIT_COLUMNS)
    return out


@pytest.fixture
def scene() -> tuple[pd.DataFrame, pd.DataFrame]:
    """10 frames (stride 2, 1 s apart). Counts per frame: 0 2 1 0 0 1 2 0 0 0.

    track 1 (car 10x10) on frames 2, 4, 10, 12; track 2 (bus 50x10) on frame 2;
    track 3 (car 5x10) on frame 12.
    """
    fr = make_frames(10)
    rows = [
        ("v", 2, 1, "car", 10, 10),
        ("v", 2, 2, "bus", 50, 10),
        ("v", 4, 1, "car", 10, 10),
        ("v", 10, 1, "car", 10, 10),
        ("v", 12, 1, "car", 20, 10),
        ("v", 12, 3, "car", 5, 10),
    ]
    return make_dets(rows, fr), fr


def test_registry_has_every_kind() -> None:
    assert set(FRAME_TRIGGERS) == {
        "always",
        "occurrence",
        "instance",
        "absence",
        "count",
        "summation",
        "new_high",
        "new_low",
        "smallest",
        "largest",
        "earliest",
        "latest",
        "persistence",
        "custom",
    }


def test_always_fires_on_every_frame(scene) -> None:
    dets, fr = scene
    out = run("always", dets, fr)
    assert out["frame_number"].tolist() == fr["frame_number"].tolist()
    assert out["value"].tolist() == [0, 2, 1, 0, 0, 1, 2, 0, 0, 0]
    assert out["track_id"].isna().all()
    assert out.loc[1, "detection_ids"] == ["d000", "d001"]


def test_occurrence(scene) -> None:
    dets, fr = scene
    out = run("occurrence", dets, fr)
    assert out["frame_number"].tolist() == [2, 4, 10, 12]
    assert out["value"].tolist() == [2, 1, 1, 2]
    per = run("occurrence", dets, fr, per_detection=True)
    assert len(per) == len(dets)
    assert per["detection_ids"].map(len).eq(1).all()


def test_instance_first_sighting_and_suppression(scene) -> None:
    dets, fr = scene
    out = run("instance", dets, fr)
    assert list(zip(out["frame_number"], out["track_id"], strict=True)) == [(2, 1), (2, 2), (12, 3)]
    # track 1 unseen from pts 2 to pts 5 (3 s): fires again with S <= 3, not with S = 3.5.
    again = run("instance", dets, fr, suppression_s=3.0)
    assert list(zip(again["frame_number"], again["track_id"], strict=True)) == [
        (2, 1),
        (2, 2),
        (10, 1),
        (12, 3),
    ]
    assert again.loc[2, "value"] == 3.0
    assert len(run("instance", dets, fr, suppression_s=3.5)) == 3


def test_instance_ignores_untracked(scene) -> None:
    dets, fr = scene
    dets = dets.assign(track_id=pd.array([pd.NA] * len(dets), dtype="Int64"))
    assert run("instance", dets, fr).empty


def test_absence_fires_on_frames_with_no_detections(scene) -> None:
    dets, fr = scene
    out = run("absence", dets, fr)
    assert out["frame_number"].tolist() == [0, 6, 8, 14, 16, 18]
    assert out["value"].tolist() == [0, 0, 1, 0, 1, 2]
    # Held for 2 s: the run 14..18 starts at pts 7, so only pts 9 qualifies.
    assert run("absence", dets, fr, duration_s=2.0)["frame_number"].tolist() == [18]


def test_absence_on_a_video_without_any_detection(scene) -> None:
    dets, fr = scene
    other = make_frames(4, video="w")
    both = pd.concat([fr, other], ignore_index=True)
    out = run("absence", dets, both)
    w = out[out["video_id"] == "w"]
    assert w["frame_number"].tolist() == [0, 2, 4, 6]
    assert w["value"].tolist() == [0, 1, 2, 3]  # the run does not leak from video v


def test_absence_run_is_by_sampled_frames_not_frame_number(scene) -> None:
    # The sampling stride is 2: frames 14, 16, 18 are consecutive samples.
    dets, fr = scene
    out = run("absence", dets, fr, duration_s=1.0)
    assert out["frame_number"].tolist() == [8, 16, 18]


def test_count_min_max_inclusive(scene) -> None:
    dets, fr = scene
    assert run("count", dets, fr, min=2)["frame_number"].tolist() == [2, 12]
    assert run("count", dets, fr, min=1, max=1)["frame_number"].tolist() == [4, 10]
    assert len(run("count", dets, fr, min=0, max=0)) == 6  # empty frames fire with min 0


def test_count_per_class(scene) -> None:
    dets, fr = scene
    out = run("count", dets, fr, min=1, per_class=True)
    got = list(zip(out["frame_number"], out["direction"], out["value"], strict=True))
    assert got == [(2, "bus", 1), (2, "car", 1), (4, "car", 1), (10, "car", 1), (12, "car", 2)]
    zero = run("count", dets, fr, min=0, max=0, per_class=True, classes=["truck"])
    assert len(zero) == len(fr) and (zero["direction"] == "truck").all()


def test_summation_every_frame(scene) -> None:
    dets, fr = scene
    out = run("summation", dets, fr)
    assert len(out) == len(fr)
    assert out["value"].sum() == len(dets)
    per = run("summation", dets, fr, per_class=True)
    assert len(per) == 2 * len(fr)
    assert per.groupby("direction")["value"].sum().to_dict() == {"bus": 1, "car": 5}


def test_new_high_and_new_low() -> None:
    fr = make_frames(6)
    counts = [1, 3, 2, 4, 0, 0]
    rows = [("v", f * 2, None, "car", 5, 5) for f, n in enumerate(counts) for _ in range(n)]
    dets = make_dets(rows, fr)
    assert run("new_high", dets, fr)["value"].tolist() == [3, 4]
    assert run("new_high", dets, fr, preset=0)["value"].tolist() == [1, 3, 4]
    assert run("new_high", dets, fr, preset=3)["value"].tolist() == [4]
    low = run("new_low", dets, fr)
    assert low["frame_number"].tolist() == [8]  # 0 < 1; the next 0 is not strictly lower
    # Per video: another video starts its own running max.
    fr2 = pd.concat([fr, make_frames(2, video="w")], ignore_index=True)
    dets2 = make_dets([*rows, ("w", 0, None, "car", 5, 5), ("w", 2, None, "car", 5, 5)], fr2)
    dets2 = pd.concat([dets2, dets2[dets2["video_id"] == "w"].iloc[1:]], ignore_index=True)
    dets2["detection_id"] = [f"x{i}" for i in range(len(dets2))]
    w = run("new_high", dets2, fr2)
    assert w[w["video_id"] == "w"]["value"].tolist() == [2]


def test_smallest_and_largest(scene) -> None:
    dets, fr = scene
    small = run("smallest", dets, fr)
    assert small["frame_number"].tolist() == [2, 4, 10, 12]
    assert small["track_id"].tolist() == [1, 1, 1, 3]
    assert small["value"].tolist() == [100, 100, 100, 50]
    large = run("largest", dets, fr)
    assert large["track_id"].tolist() == [2, 1, 1, 1]
    assert large["value"].tolist() == [500, 100, 100, 200]
    assert large["detection_ids"].tolist() == [["d001"], ["d002"], ["d003"], ["d004"]]


def test_earliest_and_latest(scene) -> None:
    dets, fr = scene
    early = run("earliest", dets, fr)
    assert early["track_id"].tolist() == [1, 1, 1, 1]  # frame 2: tie → smallest track id
    assert early["value"].tolist() == [0, 1, 4, 5]
    late = run("latest", dets, fr)
    assert late["track_id"].tolist() == [1, 1, 1, 3]
    assert late["value"].tolist() == [0, 1, 4, 0]


def test_persistence_since_first(scene) -> None:
    dets, fr = scene
    out = run("persistence", dets, fr, min_s=1, max_s=4)
    assert list(zip(out["frame_number"], out["track_id"], out["value"], strict=True)) == [
        (4, 1, 1.0),
        (10, 1, 4.0),
    ]


def test_persistence_continuous_with_gap_tolerance() -> None:
    fr = make_frames(10)  # pts 0..9
    seen = [0, 1, 2, 4, 5, 8, 9]  # gap of one sample (pts 2→4), gap of two (5→8)
    dets = make_dets([("v", f * 2, 7, "car", 5, 5) for f in seen], fr)
    strict = run("persistence", dets, fr, measure="continuous")
    assert strict["value"].tolist() == [0, 1, 2, 0, 1, 0, 1]
    tolerant = run("persistence", dets, fr, measure="continuous", gap_s=2.0)
    assert tolerant["value"].tolist() == [0, 1, 2, 4, 5, 0, 1]
    assert run("persistence", dets, fr, measure="continuous", gap_s=3.0)["value"].max() == 9
    held = run("persistence", dets, fr, measure="continuous", gap_s=2.0, min_s=4)
    assert held["frame_number"].tolist() == [8, 10]
    with pytest.raises(ValueError, match="measure"):
        run("persistence", dets, fr, measure="total")


def my_trigger(dets: pd.DataFrame, frames: pd.DataFrame, *, n: int) -> pd.DataFrame:
    """A vectorized custom trigger: frames with exactly ``n`` cars."""
    cars = dets[dets["class_name"] == "car"].groupby(["video_id", "frame_number"]).size()
    hit = cars[cars == n].reset_index(name="value")
    return hit.merge(frames, on=["video_id", "frame_number"])


def test_custom_by_import_path(scene) -> None:
    dets, fr = scene
    out = run("custom", dets, fr, function="tests.ode.test_frame_triggers:my_trigger", n=2)
    assert out["frame_number"].tolist() == [12]
    with pytest.raises(ValueError, match=r"package\.module:function"):
        run("custom", dets, fr, function="no_colon")
    with pytest.raises(ValueError, match="nowhere"):
        run("custom", dets, fr, function="tests.nowhere:fn")


@pytest.mark.parametrize("kind", sorted(k for k in FRAME_TRIGGERS if k != "custom"))
def test_inputs_not_mutated_and_order_free(scene, kind: str) -> None:
    dets, fr = scene
    d0, f0 = dets.copy(deep=True), fr.copy(deep=True)
    out = run(kind, dets, fr)
    pd.testing.assert_frame_equal(dets, d0)
    pd.testing.assert_frame_equal(fr, f0)
    # Shuffled inputs give the same hits: order never changes results.
    shuffled = run(kind, dets.sample(frac=1, random_state=1), fr.sample(frac=1, random_state=2))
    pd.testing.assert_frame_equal(out, shuffled)


@pytest.mark.parametrize("kind", sorted(k for k in FRAME_TRIGGERS if k != "custom"))
def test_no_detections(kind: str) -> None:
    fr = make_frames(3)
    dets = make_dets([], fr)
    out = run(kind, dets, fr)
    expected = {"always": 3, "absence": 3, "summation": 3, "count": 3}.get(kind, 0)
    assert len(out) == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=25))
def test_property_counts_partition_frames(counts: list[int]) -> None:
    """summation sees every frame; absence and occurrence partition the frames."""
    fr = make_frames(len(counts))
    rows = [("v", f * 2, None, "car", 5, 5) for f, n in enumerate(counts) for _ in range(n)]
    dets = make_dets(rows, fr)
    assert run("summation", dets, fr)["value"].tolist() == counts
    occ = set(run("occurrence", dets, fr)["frame_number"])
    absent = set(run("absence", dets, fr)["frame_number"])
    assert occ.isdisjoint(absent) and occ | absent == set(fr["frame_number"])
    highs = run("new_high", dets, fr, preset=-1)["value"].tolist()
    assert highs == sorted(set(highs)) and (not highs or highs[-1] == max(counts))


def test_frames_missing_from_the_frame_list_are_added(scene) -> None:
    dets, fr = scene
    short = fr[fr["frame_number"] != 12]  # a detection names frame 12
    out = run("always", dets, short)
    assert out["frame_number"].tolist() == fr["frame_number"].tolist()
