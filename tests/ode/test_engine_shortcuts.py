"""The engine's shortcuts (crossings and zone entries straight to events, one shared track
order, frame positions and event assembly for all rules) give exactly the events of the
general path (trigger -> hits -> fire -> events, rule by rule)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from roadlens.ode import evaluate, parse_rules
from roadlens.ode.engine import evaluate_hits, frames_from_detections

W, H = 640, 360
START = pd.Timestamp("2026-11-21T08:00:00Z")


def tracks(frames: int = 300, per_frame: int = 12, *, seed: int = 3) -> pd.DataFrame:
    """Smooth tracks (60-frame lives) of cars and trucks moving across a 640x360 frame."""
    rng = np.random.default_rng(seed)
    frame = np.repeat(np.arange(frames), per_frame)
    slot = np.tile(np.arange(per_frame), frames)
    track = (frame // 60) * per_frame + slot
    n = int(track.max()) + 1
    x0, y0 = rng.uniform(0, W - 30, n), rng.uniform(0, H - 40, n)
    vx, vy = rng.uniform(-6, 6, n), rng.uniform(-4, 4, n)
    age = frame % 60
    x = np.clip(x0[track] + vx[track] * age, 0, W - 30)
    y = np.clip(y0[track] + vy[track] * age + rng.normal(0, 0.7, len(frame)), 0, H - 40)
    rows = len(frame)
    return pd.DataFrame(
        {
            "detection_id": [f"d{i:06d}" for i in range(rows)],
            "video_id": "cam-1--clip-0001",
            "source_id": "cam-1",
            "frame_number": frame * 3,
            "pts_sec": frame / 10.0,
            "captured_at": START + pd.to_timedelta(frame / 10.0, unit="s"),
            "class_name": np.where(track % 3 == 0, "truck", "car"),
            "confidence": rng.uniform(0.3, 1.0, rows),
            "x1": x,
            "y1": y,
            "x2": x + 30,
            "y2": y + 40,
            "track_id": (track + 1).astype(np.int64),
            "frame_width": W,
            "frame_height": H,
            "lat": 52.5 + y / 1e5,  # per detection: events must name the right one
            "lon": 13.4 + x / 1e5,
        }
    )


AREAS = {
    "a": {"line": [[0, 180], [640, 190]], "in_side": "left"},
    "b": {"line": [[100, 50], [500, 330]]},
    "c": {"line": [[320, 0], [330, 360]], "extend": True},
    "pl": {"polyline": [[0, 100], [300, 220], [640, 120]]},
    "box": {"polygon": [[150, 100], [450, 100], [450, 300], [150, 300]]},
    "tri": {"polygon": [[50, 50], [600, 80], [300, 350]]},
    "rect": {"polygon": [[0.1, 0.2], [0.6, 0.2], [0.6, 0.9], [0.1, 0.9]], "normalized": True},
    "side": {"polygon": [[0, 0], [200, 0], [200, 360], [0, 360]], "mode": "exclude"},
}
RULES = [
    {"id": "x-a", "trigger": {"cross": {"line": "a"}}},
    {"id": "x-b", "anchor": "center", "trigger": {"cross": {"line": "b", "hysteresis_px": 3}}},
    {
        "id": "x-c",
        "criteria": {"classes": ["car"], "min_track_seconds": 2},
        "trigger": {"cross": {"line": "c", "hysteresis_s": 0.5}},
    },
    {"id": "x-box", "trigger": {"cross": {"line": "box"}}, "firing": {"cooldown_s": 1}},
    {"id": "x-pl", "trigger": {"cross": {"line": "pl", "count": "once"}}},
    {"id": "x-in", "area": "tri", "trigger": {"cross": {"line": "a", "directions": ["in"]}}},
    {"id": "z-box", "trigger": {"zone": {"zone": "box"}}, "firing": {"mode": "edge"}},
    {
        "id": "z-tri",
        "criteria": {"confidence_min": 0.5},
        "trigger": {"zone": {"zone": "tri"}},
        "firing": {"mode": "edge", "cooldown_s": 2, "max_per_track": 2},
    },
    {
        "id": "z-any",
        "anchor": "any",
        "trigger": {"zone": {"zone": "tri"}},
        "firing": {"mode": "edge"},
    },
    {
        "id": "z-rect",
        "anchor": "top_left",
        "trigger": {"zone": {"zone": "rect"}},
        "firing": {"mode": "edge"},
    },
    {
        "id": "z-out",
        "trigger": {"zone": {"zone": "side"}},
        "firing": {"mode": "edge", "max_events": 40},
    },
    {
        "id": "z-level",
        "trigger": {"zone": {"zone": "box", "mode": "exclude"}},
        "firing": {"max_events": 300},
    },
    {
        "id": "z-read",
        "emit": False,
        "criteria": {"min_track_frames": 1},
        "trigger": {"zone": {"zone": "box"}},
        "firing": {"mode": "edge"},
    },
    {"id": "both", "trigger": {"all": {"rules": ["z-read", "x-a"], "per_track": True}}},
    {
        "id": "z-flip",
        "anchor": "center",
        "trigger": {"zone": {"zone": "tri", "mode": "exclude"}},
        "firing": {"mode": "edge"},
    },
    {"id": "count", "trigger": {"count": {"min": 10}}, "firing": {"mode": "edge"}},
]


def general(dets: pd.DataFrame, frames: pd.DataFrame | None, rules) -> pd.DataFrame:
    """Events through the general path only."""
    return evaluate(dets, frames, rules, shortcuts=False)


def scenarios():
    dets = tracks()
    yield "tracked", dets, frames_from_detections(dets)
    # More sampled frames than detections (empty frames at the end and in a gap).
    frames = pd.DataFrame({"video_id": "cam-1--clip-0001", "frame_number": np.arange(0, 960, 3)})
    frames["pts_sec"] = frames["frame_number"] / 30.0
    frames["captured_at"] = START + pd.to_timedelta(frames["pts_sec"], unit="s")
    gap = dets[(dets["frame_number"] < 300) | (dets["frame_number"] > 420)].reset_index(drop=True)
    yield "gap", gap, frames
    # A frames table missing some frames of the detections (shared positions are off).
    yield "short frames", dets, frames_from_detections(dets).iloc[::2].reset_index(drop=True)
    # Untracked detections (zone entries fall back), shuffled input order, two videos.
    mixed = dets.copy()
    mixed["track_id"] = mixed["track_id"].astype("Int64")
    mixed.loc[mixed.index % 17 == 0, "track_id"] = pd.NA
    other = dets.assign(
        video_id="cam-2--clip-0001",
        source_id="cam-2",
        detection_id=[f"e{i:06d}" for i in range(len(dets))],
        x1=dets["x1"][::-1].to_numpy(),
        x2=dets["x2"][::-1].to_numpy(),
    )
    both = pd.concat([mixed, other], ignore_index=True).sample(frac=1.0, random_state=1)
    yield "mixed", both.reset_index(drop=True), None


@pytest.mark.parametrize("name", ["tracked", "gap", "short frames", "mixed"])
def test_shortcuts_give_the_events_of_the_general_path(name: str) -> None:
    dets, frames = next((d, f) for n, d, f in scenarios() if n == name)
    rules = parse_rules({"areas": AREAS, "rules": RULES})
    fast = evaluate(dets, frames, rules)
    slow = general(dets, frames, rules)
    assert len(fast) > 100 and set(fast["rule_id"]) >= {"x-a", "z-box", "z-tri", "x-box"}
    pd.testing.assert_frame_equal(fast, slow, check_exact=True)


def test_fired_hits_keep_the_general_path_too() -> None:
    dets = tracks()
    rules = parse_rules({"areas": AREAS, "rules": RULES})
    fast = evaluate_hits(dets, None, rules)
    slow = evaluate_hits(dets, None, rules, shortcuts=False)
    assert fast.keys() == slow.keys()
    for rid in fast:
        pd.testing.assert_frame_equal(fast[rid], slow[rid], check_exact=True, obj=rid)
