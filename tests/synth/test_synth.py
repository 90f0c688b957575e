"""The procedural scenes: deterministic, geometrically sane, with consistent GPS."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from roadlens.enrich import haversine_m, read_gps_track
from roadlens.synth import CLASS_NAMES, Scene, gps_track, render_clip
from roadlens.video import probe


def _render(view: str, seed: int, seconds: float = 2.0) -> tuple[list[np.ndarray], pd.DataFrame]:
    scene = Scene.create(view, seed=seed)
    frames = list(scene.frames(seconds=seconds, fps=10))
    return [f.image for f in frames], pd.concat([f.boxes for f in frames], ignore_index=True)


@pytest.mark.parametrize("view", ["dashcam", "roadside"])
def test_same_seed_same_pixels_and_truth(view: str) -> None:
    images_a, truth_a = _render(view, seed=11)
    images_b, truth_b = _render(view, seed=11)
    _, truth_c = _render(view, seed=12)
    assert all(np.array_equal(a, b) for a, b in zip(images_a, images_b, strict=True))
    pd.testing.assert_frame_equal(truth_a, truth_b)
    assert not truth_a.equals(truth_c)


@pytest.mark.parametrize("view", ["dashcam", "roadside"])
def test_truth_boxes_are_inside_the_frame_and_named(view: str) -> None:
    _, truth = _render(view, seed=4, seconds=4.0)
    assert len(truth) > 0
    assert truth.x1.ge(0).all() and truth.y1.ge(0).all()
    assert truth.x2.le(639).all() and truth.y2.le(359).all()
    assert (truth.x2 > truth.x1).all() and (truth.y2 - truth.y1 >= 8).all()
    assert set(truth.class_name) <= set(CLASS_NAMES)
    assert truth.visibility.between(0.45, 1.0).all()
    assert not truth.duplicated(["frame_number", "track_id"]).any()


def test_dashcam_objects_grow_as_the_camera_approaches_static_signs() -> None:
    _, truth = _render("dashcam", seed=8, seconds=8.0)
    static = truth[truth.class_name.isin(["stop sign", "traffic light"])]
    assert not static.empty, "seed 8 should show a roadside sign"
    heights = static.assign(h=static.y2 - static.y1).groupby("track_id").h
    # A static sign approached by a moving camera only gets bigger.
    growing = heights.apply(lambda h: bool(np.all(np.diff(h.to_numpy()) >= -0.5)))
    assert growing.all()


def test_roadside_view_has_people_crossing() -> None:
    _, truth = _render("roadside", seed=5, seconds=6.0)
    people = truth[truth.class_name == "person"]
    assert people.track_id.nunique() >= 2
    assert set(truth.class_name) & {"car", "truck"}


def test_gps_track_agrees_with_its_speed() -> None:
    track = gps_track(30, speed_mps=15.0, seed=3)
    step = haversine_m(
        track.lat.to_numpy()[:-1],
        track.lon.to_numpy()[:-1],
        track.lat.to_numpy()[1:],
        track.lon.to_numpy()[1:],
    )
    mean_speed = (track.speed.to_numpy()[:-1] + track.speed.to_numpy()[1:]) / 2
    # Heading changes a little within a second, so the chord is a hair shorter than the arc.
    np.testing.assert_allclose(step, mean_speed, rtol=0.03)


def test_render_clip_writes_video_truth_and_sidecars(tmp_path) -> None:
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    clip = render_clip(tmp_path / "drive.mp4", seconds=2.0, fps=30, seed=2, start=start)
    info = probe(clip.video_path)
    assert info.frame_count == 60 and info.fps == pytest.approx(30)
    assert info.creation_time == start
    assert clip.truth_path.exists() and len(pd.read_parquet(clip.truth_path)) == len(clip.truth)
    for path in (clip.gps_csv_path, clip.gps_gpx_path):
        track = read_gps_track(path)
        assert track.t.iloc[0] == pd.Timestamp(start)
        assert len(track) == 3 and track.heading_deg.notna().all()


def test_unknown_view_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown synth view 'aerial'"):
        Scene.create("aerial")  # type: ignore[arg-type]
