"""Spatial triggers on hand-built tracks with known answers, a property test, and parity
with supervision's LineZone."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roadlens.ode import spatial
from roadlens.ode.geometry import Line, Polygon, Polyline

START = pd.Timestamp("2026-05-04T10:00:00Z")
BOX_W, BOX_H = 20.0, 40.0


def make_dets(
    tracks: dict[int, Sequence[tuple[float, float]]],
    *,
    fps: float = 10.0,
    start: dict[int, int] | None = None,
    classes: dict[int, str] | None = None,
    size: dict[int, tuple[float, float]] | None = None,
    video_id: str = "cam-1--clip-0001",
) -> pd.DataFrame:
    """Detections whose box's bottom-centre follows ``tracks[tid]`` one sample per frame.

    ``start[tid]`` is the track's first sample index (default 0); frame i is at i/fps s.
    """
    rows = []
    for tid, points in tracks.items():
        s0 = (start or {}).get(tid, 0)
        w, h = (size or {}).get(tid, (BOX_W, BOX_H))
        for i, (u, v) in enumerate(points):
            f = s0 + i
            rows.append(
                {
                    "detection_id": f"d-{tid}-{f:05d}",
                    "video_id": video_id,
                    "source_id": "cam-1",
                    "frame_number": f,
                    "pts_sec": f / fps,
                    "captured_at": START + pd.Timedelta(seconds=f / fps),
                    "class_name": (classes or {}).get(tid, "car"),
                    "confidence": 0.9,
                    "x1": u - w / 2,
                    "y1": v - h,
                    "x2": u + w / 2,
                    "y2": v,
                    "frame_width": 1280,
                    "frame_height": 720,
                    "track_id": tid,
                    "lat": 52.5,
                    "lon": 13.4 + f * 1e-5,
                    "model_sha256": "ab" * 32,
                }
            )
    df = pd.DataFrame(rows)
    df["track_id"] = df["track_id"].astype("Int64")
    df["captured_at"] = df["captured_at"].astype("datetime64[us, UTC]")
    return df


def vertical(v_values: Sequence[float], u: float = 500.0) -> list[tuple[float, float]]:
    return [(u, float(v)) for v in v_values]


LINE = Line((100, 300), (900, 300), in_side="right")  # "in" = below the line (moving down)


def counts(hits: pd.DataFrame) -> tuple[int, int]:
    return int((hits["direction"] == "in").sum()), int((hits["direction"] == "out").sum())


# --- cross ---------------------------------------------------------------------------------


def test_car_crosses_once_in_then_once_out() -> None:
    down = np.arange(200, 420, 20)  # 200 .. 400: crosses 300 moving down
    track = vertical(list(down) + list(down[::-1]))
    hits = spatial.cross(make_dets({1: track}), None, LINE)
    assert hits["direction"].tolist() == ["in", "out"]
    assert hits["track_id"].tolist() == [1, 1]
    # Each hit names the samples on either side of the line.
    assert all(len(ids) == 2 for ids in hits["detection_ids"])


def test_subframe_crossing_time_is_interpolated() -> None:
    # v goes 290 -> 330 between t=0.1 and t=0.2: the line (300) is a quarter of the way.
    track = vertical([280, 290, 330, 340])
    hits = spatial.cross(make_dets({7: track}), None, LINE)
    assert hits["pts_sec"].tolist() == pytest.approx([0.1 + 0.25 * 0.1])
    assert hits["frame_number"].tolist() == [2]  # the first sample on the new side
    expected = START + pd.Timedelta(seconds=0.125)
    assert hits["captured_at"].iloc[0] == expected


def test_jitter_on_the_line_does_not_double_count_with_pixel_hysteresis() -> None:
    jitter = [297, 303, 298, 302, 297, 304, 299, 301]
    track = vertical([250, 270, 290, *jitter, 320, 340, 360])
    no_h = spatial.cross(make_dets({1: track}), None, LINE)
    with_h = spatial.cross(make_dets({1: track}), None, LINE, hysteresis_px=5)
    assert len(no_h) > 2  # every jitter flip counts without hysteresis
    assert counts(with_h) == (1, 0)


def test_one_sample_flicker_is_refuted_by_the_future() -> None:
    # A tracker glitch puts the box 20 px over the line for one sample (0.1 s), then the
    # car really crosses much later.
    track = vertical([250, 260, 320, 260, 255, 250, 260, 270, 280, 290, 310, 320, 330, 340])
    plain = spatial.cross(make_dets({1: track}), None, LINE, hysteresis_px=5)
    confirmed = spatial.cross(make_dets({1: track}), None, LINE, hysteresis_px=5, hysteresis_s=0.5)
    assert counts(plain) == (2, 1)
    assert counts(confirmed) == (1, 0)
    assert confirmed["pts_sec"].iloc[0] == pytest.approx(0.95)  # the real crossing


def test_crossing_beside_the_segment_is_not_counted_unless_extended() -> None:
    track = vertical(range(200, 420, 20), u=1000.0)  # passes right of x = 900
    assert spatial.cross(make_dets({1: track}), None, LINE).empty
    extended = Line((100, 300), (900, 300), extend=True)
    assert counts(spatial.cross(make_dets({1: track}), None, extended)) == (1, 0)


def test_once_per_track_and_direction_filter() -> None:
    down, up = list(range(200, 420, 20)), list(range(400, 180, -20))
    dets = make_dets({1: vertical(down + up + down)})
    assert counts(spatial.cross(dets, None, LINE)) == (2, 1)
    assert counts(spatial.cross(dets, None, LINE, count="once")) == (1, 0)
    assert counts(spatial.cross(dets, None, LINE, directions=["out"])) == (0, 1)


def test_polygon_boundary_crossing_enters_and_exits() -> None:
    zone = Polygon([(400, 250), (600, 250), (600, 350), (400, 350)])
    track = vertical(range(200, 420, 20))  # enters at 250, leaves at 350
    hits = spatial.cross(make_dets({1: track}), None, zone)
    assert hits["direction"].tolist() == ["in", "out"]
    assert hits["pts_sec"].tolist() == pytest.approx([0.25, 0.75])


def test_polyline_each_segment_crosses() -> None:
    lane = Polyline([(0, 300), (500, 300), (500, 600)], in_side="right")
    dets = make_dets(
        {1: vertical(range(200, 420, 20), u=250), 2: [(400 + 20 * i, 450) for i in range(11)]}
    )
    hits = spatial.cross(dets, None, lane)
    assert hits.groupby("track_id")["direction"].agg(list).to_dict() == {1: ["in"], 2: ["out"]}


def test_untracked_detections_never_cross() -> None:
    dets = make_dets({1: vertical(range(200, 420, 20))})
    dets["track_id"] = pd.array([pd.NA] * len(dets), dtype="Int64")
    assert spatial.cross(dets, None, LINE).empty


side_runs = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=1, max_value=4)), min_size=1, max_size=12
)


@settings(max_examples=150, deadline=None)
@given(
    runs=side_runs,
    hysteresis_px=st.sampled_from([0.0, 3.0, 8.0]),
    hysteresis_s=st.sampled_from([0.0, 0.15, 0.5]),
    noise=st.lists(st.floats(min_value=-15, max_value=15), min_size=60, max_size=60),
)
def test_track_ending_on_its_starting_side_has_net_zero_crossings(
    runs: list[tuple[bool, int]],
    hysteresis_px: float,
    hysteresis_s: float,
    noise: list[float],
) -> None:
    # Runs of samples below/above the line, plus jitter, then back to the starting side.
    first_below = runs[0][0]
    runs = [*runs, (first_below, 1)]
    v = []
    for below, n in runs:
        v += [300 + (30 if below else -30)] * n
    v = [x + noise[i % len(noise)] for i, x in enumerate(v)]
    v[-1] = 300 + (40 if first_below else -40)  # surely on the starting side at the end
    v[0] = v[-1]
    hits = spatial.cross(
        make_dets({1: vertical(v)}),
        None,
        LINE,
        hysteresis_px=hysteresis_px,
        hysteresis_s=hysteresis_s,
    )
    n_in, n_out = counts(hits)
    assert n_in == n_out
    # Directions alternate: a track cannot cross "in" twice without crossing "out".
    d = hits["direction"].tolist()
    assert all(a != b for a, b in itertools.pairwise(d))


# --- supervision parity --------------------------------------------------------------------


def _supervision_counts(dets: pd.DataFrame, start: tuple, end: tuple) -> tuple[int, int]:
    sv = pytest.importorskip("supervision")
    zone = sv.LineZone(
        start=sv.Point(*start),
        end=sv.Point(*end),
        triggering_anchors=[sv.Position.BOTTOM_CENTER],
        minimum_crossing_threshold=1,
    )
    for _, frame in dets.sort_values("frame_number").groupby("frame_number"):
        zone.trigger(
            sv.Detections(
                xyxy=frame[["x1", "y1", "x2", "y2"]].to_numpy(np.float32),
                tracker_id=frame["track_id"].to_numpy(np.int64),
                class_id=np.zeros(len(frame), dtype=int),
            )
        )
    return zone.in_count, zone.out_count


def test_same_counts_as_supervision_line_zone() -> None:
    rng = np.random.default_rng(3)
    tracks, starts = {}, {}
    for tid in range(1, 41):
        # Monotone vertical moves (no flicker): some cross down, some up, some twice
        # (down then back up), some never reach the line.
        u = float(rng.uniform(150, 850))
        kind = tid % 4
        v = np.linspace(150, 450, int(rng.integers(6, 20)))
        if kind == 1:
            v = v[::-1]
        elif kind == 2:
            v = np.r_[v, v[::-1][1:]]
        elif kind == 3:
            v = np.linspace(150, 280, 8)
        tracks[tid] = [(u + float(i) * 0.5, float(y)) for i, y in enumerate(v)]
        starts[tid] = int(rng.integers(0, 30))
    dets = make_dets(tracks, start=starts)
    start, end = (100, 300), (900, 300)
    # supervision's "in" is the left of start -> end: our in_side="left" with the same
    # anchor (bottom_center), no hysteresis, every crossing counted.
    ours = spatial.cross(dets, None, Line(start, end, in_side="left"), anchor="bottom_center")
    theirs = _supervision_counts(dets, start, end)
    assert counts(ours) == theirs
    assert sum(theirs) > 20


def _supervision_zone_hits(dets: pd.DataFrame, polygon: np.ndarray) -> dict[int, int]:
    """In-zone detections per frame through supervision's PolygonZone, frame by frame."""
    sv = pytest.importorskip("supervision")
    zone = sv.PolygonZone(polygon=polygon, triggering_anchors=[sv.Position.BOTTOM_CENTER])
    per_frame = {}
    for number, frame in dets.sort_values("frame_number").groupby("frame_number"):
        inside = zone.trigger(
            sv.Detections(
                xyxy=frame[["x1", "y1", "x2", "y2"]].to_numpy(np.float32),
                tracker_id=frame["track_id"].to_numpy(np.int64),
                class_id=np.zeros(len(frame), dtype=int),
            )
        )
        per_frame[int(number)] = int(inside.sum())
    return per_frame


def test_same_counts_as_supervision_polygon_zone() -> None:
    # supervision tests a rasterized mask at rounded anchors, so the zone is a rectangle
    # and the boxes sit on whole pixels: there both semantics coincide exactly (on slanted
    # edges the mask differs from the exact polygon by design).
    rng = np.random.default_rng(5)
    tracks = {
        tid: [
            (float(u), float(v))
            for u, v in zip(
                np.round(np.linspace(rng.uniform(50, 950), rng.uniform(50, 950), 25)),
                np.round(np.linspace(rng.uniform(50, 550), rng.uniform(50, 550), 25)),
                strict=True,
            )
        ]
        for tid in range(1, 31)
    }
    dets = make_dets(tracks)
    corners = np.array([[300, 150], [700, 150], [700, 450], [300, 450]])
    ours = spatial.zone(dets, None, Polygon([tuple(map(float, c)) for c in corners]))
    theirs = _supervision_zone_hits(dets, corners)
    mine = ours.groupby("frame_number").size().to_dict()
    assert {f: mine.get(f, 0) for f in theirs} == theirs
    assert sum(theirs.values()) > 50


# --- zone ---------------------------------------------------------------------------------------


def test_zone_hits_and_exclusion() -> None:
    zone = Polygon([(400, 250), (600, 250), (600, 350), (400, 350)])
    dets = make_dets({1: vertical(range(200, 420, 20))})
    inside = spatial.zone(dets, None, zone)
    assert inside["frame_number"].tolist() == [3, 4, 5, 6, 7]
    outside = spatial.zone(dets, None, zone, mode="exclude")
    assert len(outside) == len(dets) - 5
    # "any": the 40 px tall box touches the zone from v=260 (top 220 < 250 ... ) onwards.
    anyp = spatial.zone(dets, None, zone, anchor="any")
    assert anyp["frame_number"].tolist() == [3, 4, 5, 6, 7, 8, 9]


# --- pairs ----------------------------------------------------------------------------------


def _pair_scene() -> pd.DataFrame:
    return make_dets(
        {
            1: [(100, 100), (100, 100)],  # person
            2: [(110, 100), (300, 100)],  # car: overlaps person in frame 0 only
            3: [(105, 95), (105, 95)],  # bag: inside the person box (containment)
        },
        classes={1: "person", 2: "car", 3: "bag"},
        size={1: (20, 40), 2: (20, 40), 3: (6, 6)},
    )


def test_intersection_area_iou_and_containment() -> None:
    dets = _pair_scene()
    area = spatial.intersection(dets, None, class_a=["person"], class_b=["car", "bag"])
    got = {
        (ids[0][:5], ids[1][:5], f)
        for ids, f in zip(area["detection_ids"], area["frame_number"], strict=True)
    }
    assert got == {("d-1-0", "d-2-0", 0), ("d-1-0", "d-3-0", 0), ("d-1-0", "d-3-0", 1)}
    car = area[area["detection_ids"].str[1].str.startswith("d-2")]
    assert car["value"].tolist() == [10 * 40]  # 10 px wide overlap, full height
    iou = spatial.intersection(
        dets, None, class_a=["person"], class_b=["car"], measure="iou", min_value=0.3
    )
    assert iou["value"].tolist() == pytest.approx([400 / 1200])
    contains = spatial.intersection(
        dets, None, class_a=["person"], class_b=["car", "bag"], measure="contains"
    )
    assert len(contains) == 2 and set(contains["detection_ids"].str[1].str[:3]) == {"d-3"}


def test_intersection_same_class_counts_each_pair_once() -> None:
    dets = make_dets({1: [(100, 100)], 2: [(110, 100)], 3: [(115, 100)]})
    hits = spatial.intersection(dets, None, class_a=["car"], class_b=["car"])
    assert len(hits) == 3  # pairs 1-2, 1-3, 2-3


def test_distance_band_pixels_and_percent() -> None:
    dets = make_dets(
        {1: [(100, 100)] * 3, 2: [(130, 100), (160, 100), (300, 100)]},
        classes={1: "person", 2: "car"},
    )
    inside = spatial.distance(dets, None, class_a=["person"], class_b=["car"], max=60)
    assert inside["value"].tolist() == [30.0, 60.0]
    outside = spatial.distance(
        dets, None, class_a=["person"], class_b=["car"], max=60, fire="outside"
    )
    assert outside["value"].tolist() == [200.0]
    pct = spatial.distance(
        dets, None, class_a=["person"], class_b=["car"], unit="pct_width", min=200, max=300
    )
    assert pct["value"].tolist() == [300.0]  # 60 px = 300 % of a 20 px wide box


# --- motion ------------------------------------------------------------------------------------


def test_direction_of_travel() -> None:
    right = [(100 + 10 * i, 300) for i in range(5)]
    down = [(500, 100 + 10 * i) for i in range(5)]
    dets = make_dets({1: right, 2: down})
    east = spatial.direction(dets, None, min_deg=-20, max_deg=20)  # wraps through 0
    assert set(east["track_id"]) == {1} and len(east) == 4
    south = spatial.direction(dets, None, min_deg=70, max_deg=110)
    assert set(south["track_id"]) == {2}
    assert south["value"].tolist() == pytest.approx([90.0] * 4)


def test_speed_pixels_and_metres() -> None:
    dets = make_dets({1: [(100 + 10 * i, 300) for i in range(5)]})  # 10 px per 0.1 s
    px = spatial.speed(dets, None, min=50)
    assert px["value"].tolist() == pytest.approx([100.0] * 4)
    mps = spatial.speed(dets, None, min=4, metres_per_pixel=0.05)
    assert mps["value"].tolist() == pytest.approx([5.0] * 4)
    # Over a 0.2 s window the second sample has no reference yet.
    windowed = spatial.speed(dets, None, window_s=0.2)
    assert windowed["pts_sec"].tolist() == pytest.approx([0.2, 0.3, 0.4])
    assert windowed["value"].tolist() == pytest.approx([100.0] * 3)


def test_stopped_for_at_least() -> None:
    moving = [(100 + 20 * i, 300) for i in range(5)]
    parked = [(180, 300)] * 25  # 2.5 s at rest
    dets = make_dets({1: moving + parked})
    hits = spatial.stopped(dets, None, max_speed=5, min_seconds=2.0)
    # The stop starts at the last moving sample (t = 0.4 s); 2 s later is t = 2.4 s.
    assert hits["pts_sec"].iloc[0] == pytest.approx(2.4)
    assert hits["pts_sec"].iloc[-1] == pytest.approx(2.9)
    assert hits["value"].iloc[-1] == pytest.approx(2.5)


# --- ground-plane speed: homography and ground points ---------------------------------------

SCALE_H = [[0.05, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 1.0]]  # x: 0.05 m/px, y: 0.1 m/px
# A road seen in perspective: a 3.5 m lane, 30 m long, as a trapezoid in the image.
ROAD_IMG = [(400.0, 700.0), (880.0, 700.0), (700.0, 400.0), (580.0, 400.0)]
ROAD_WORLD = [(0.0, 0.0), (3.5, 0.0), (3.5, 30.0), (0.0, 30.0)]
ROAD_POINTS = [(i, w) for i, w in zip(ROAD_IMG, ROAD_WORLD, strict=True)]


def test_speed_homography_scales_axes_separately() -> None:
    down = [(300, 100 + 2 * i) for i in range(5)]  # 2 px per 0.1 s = 20 px/s in y
    right = [(300 + 2 * i, 100) for i in range(5)]  # 20 px/s in x
    dets = make_dets({1: down, 2: right})
    hits = spatial.speed(dets, None, homography=SCALE_H)
    by_track = hits.groupby("track_id")["value"].agg(list).to_dict()
    assert by_track[1] == pytest.approx([2.0] * 4)  # 20 px/s * 0.1 m/px
    assert by_track[2] == pytest.approx([1.0] * 4)  # 20 px/s * 0.05 m/px
    # metres_per_pixel cannot tell the axes apart: both tracks read the same.
    single = spatial.speed(dets, None, metres_per_pixel=0.1)
    assert single["value"].tolist() == pytest.approx([2.0] * 8)
    fast = spatial.speed(dets, None, homography=SCALE_H, min=1.5)
    assert set(fast["track_id"]) == {1}


def test_speed_ground_points_matches_cv2_perspective() -> None:
    import cv2

    h_cv, _ = cv2.findHomography(np.array(ROAD_IMG), np.array(ROAD_WORLD))
    h_ours = spatial.homography_from_points(ROAD_POINTS)
    np.testing.assert_allclose(h_ours, h_cv / h_cv[2, 2], rtol=1e-9, atol=1e-12)
    # A car driving up the lane centre: equal pixel steps, growing ground steps.
    track = [(640.0, 690.0 - 25.0 * i) for i in range(12)]
    dets = make_dets({1: track})
    hits = spatial.speed(dets, None, ground_points=ROAD_POINTS)
    pts = np.array(track, dtype=np.float64).reshape(-1, 1, 2)
    ground = cv2.perspectiveTransform(pts, h_cv).reshape(-1, 2)
    expected = np.hypot(*np.diff(ground, axis=0).T) / 0.1
    assert hits["value"].to_numpy() == pytest.approx(expected, rel=1e-9)
    assert expected[-1] > 2 * expected[0]  # perspective: far pixels cover more ground
    # The same through the explicit matrix, and through the windowed reference.
    as_matrix = spatial.speed(dets, None, homography=h_cv.tolist())
    assert as_matrix["value"].to_numpy() == pytest.approx(expected, rel=1e-9)
    windowed = spatial.speed(dets, None, ground_points=ROAD_POINTS, window_s=0.3)
    exp_w = np.hypot(*(ground[3:] - ground[:-3]).T) / 0.3
    assert windowed["value"].to_numpy() == pytest.approx(exp_w, rel=1e-9)


def test_homography_from_more_than_four_points_is_least_squares() -> None:
    import cv2

    h_true = np.array([[0.02, 0.001, -3.0], [0.0005, 0.05, -10.0], [0.0, 0.0008, 1.0]])
    rng = np.random.default_rng(7)
    img = rng.uniform([0, 300], [1280, 720], size=(12, 2))
    world = cv2.perspectiveTransform(img.reshape(-1, 1, 2), h_true).reshape(-1, 2)
    h = spatial.homography_from_points(list(zip(img.tolist(), world.tolist(), strict=True)))
    np.testing.assert_allclose(h, h_true, rtol=1e-7, atol=1e-10)


def test_stopped_with_ground_points() -> None:
    # 1 px per 0.1 s near the bottom of the image is 0.27..0.3 m/s on the ground.
    crawl = [(640.0, 690.0 - 1.0 * i) for i in range(25)]
    dets = make_dets({1: crawl})
    hits = spatial.stopped(dets, None, max_speed=0.5, min_seconds=2.0, ground_points=ROAD_POINTS)
    assert not hits.empty
    assert hits["pts_sec"].iloc[0] == pytest.approx(2.0)  # stop starts at t = 0
    assert spatial.stopped(
        dets, None, max_speed=0.25, min_seconds=2.0, ground_points=ROAD_POINTS
    ).empty
    # In px/s the same track (10 px/s) is nowhere near stopped.
    assert spatial.stopped(dets, None, max_speed=0.5, min_seconds=2.0).empty


COLLINEAR_4 = [((0, 0), (0, 0)), ((1, 0), (1, 0)), ((2, 0), (2, 0)), ((0, 1), (0, 1))]
COLLINEAR_WORLD = [((0, 0), (0, 0)), ((1, 0), (1, 0)), ((1, 1), (2, 0)), ((0, 1), (0, 1))]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"homography": [[1, 2, 3], [2, 4, 6], [0, 0, 1]]}, "singular"),
        ({"homography": [[1, 0], [0, 1]]}, "3 rows of 3"),
        ({"ground_points": ROAD_POINTS[:3]}, "at least 4"),
        ({"ground_points": COLLINEAR_4}, "degenerate"),  # 3 image points on a line, 4 too
        ({"ground_points": COLLINEAR_WORLD}, "degenerate"),  # 3 world points on a line
        ({"metres_per_pixel": 0.1, "homography": SCALE_H}, "at most one"),
    ],
)
def test_bad_ground_transform_is_rejected(kwargs: dict, match: str) -> None:
    dets = make_dets({1: [(100, 100), (110, 100)]})
    with pytest.raises(ValueError, match=match):
        spatial.speed(dets, None, **kwargs)


def test_to_ground_is_vectorized_and_nan_on_horizon() -> None:
    h = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.01, -1.0]])  # horizon at v = 100
    x, y = spatial.to_ground(np.array([10.0, 10.0]), np.array([200.0, 100.0]), h)
    assert (x[0], y[0]) == pytest.approx((10.0, 200.0))
    assert np.isnan(x[1]) and np.isnan(y[1])


def test_rule_file_homography_reaches_the_trigger() -> None:
    from roadlens.ode.engine import evaluate_hits
    from roadlens.ode.rules import parse_rules

    rs = parse_rules(
        {
            "rules": [
                {
                    "id": "fast",
                    "firing": {"mode": "level"},
                    "trigger": {"speed": {"min": 1.5, "homography": SCALE_H}},
                },
                {
                    "id": "road",
                    "firing": {"mode": "level"},
                    "trigger": {"speed": {"ground_points": [list(p) for p in ROAD_POINTS]}},
                },
            ]
        }
    )
    dets = make_dets({1: [(300, 100 + 2 * i) for i in range(5)]})
    hits = evaluate_hits(dets, None, rs)
    assert hits["fast"]["value"].tolist() == pytest.approx([2.0] * 4)
    h = spatial.homography_from_points(ROAD_POINTS)
    x, y = spatial.to_ground(np.array([300.0, 300.0]), np.array([100.0, 102.0]), h)
    assert hits["road"]["value"].iloc[0] == pytest.approx(np.hypot(x[1] - x[0], y[1] - y[0]) / 0.1)
