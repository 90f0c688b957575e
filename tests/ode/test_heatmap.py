"""Known-answer tests of roadlens.ode.heatmap on hand-built tracks."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from roadlens.ode import heatmap as hm
from roadlens.schema import HEATMAPS
from roadlens.synth.tables import synthetic_detections, synthetic_events

START = pd.Timestamp("2026-05-04T10:00:00Z")


def dets(
    rows: list[tuple[int | None, float, float, float]], *, width: int = 100, height: int = 100
):
    """Detections ``(track_id, pts_sec, u, v)`` with a zero-size box at (u, v)."""
    track, pts, u, v = (list(c) for c in zip(*rows, strict=True))
    pts_arr = np.asarray(pts, float)
    return pd.DataFrame(
        {
            "detection_id": [f"d{i}" for i in range(len(rows))],
            "video_id": "vid",
            "source_id": "src",
            "track_id": pd.array(track, dtype="Int64"),
            "pts_sec": pts_arr,
            "frame_number": np.round(pts_arr * 10).astype(np.int64),
            "captured_at": START + pd.to_timedelta(pts_arr, unit="s"),
            "x1": np.asarray(u, np.float32),
            "x2": np.asarray(u, np.float32),
            "y1": np.asarray(v, np.float32),
            "y2": np.asarray(v, np.float32),
            "frame_width": width,
            "frame_height": height,
        }
    )


def test_dwell_counts_each_sample_for_its_time_step():
    # Track 1 sits in cell (0, 0) for samples at 0, 1 and 3 s; the sampling step (median
    # step of the frames 0, 1, 2, 3 s) is 1 s, so the last sample holds for 1 s:
    # 1 + 2 + 1 = 4 s. Track 2 (one sample, at 2 s) holds 1 s in (1, 1).
    d = dets([(1, 0.0, 5, 5), (1, 1.0, 5, 5), (2, 2.0, 15, 15), (1, 3.0, 5, 5)])
    grid = hm.image_grid(d, grid=(10, 10))
    expected = np.zeros((10, 10), np.float32)
    expected[0, 0] = 4.0
    expected[1, 1] = 1.0
    np.testing.assert_allclose(grid, expected)
    assert grid.dtype == np.float32


def test_uneven_sampling_is_fair():
    # Same 2 s of presence, once sampled at 10 Hz and once at 1 Hz: same dwell.
    fast = dets([(1, t / 10, 5, 5) for t in range(20)])
    slow = dets([(1, 0.0, 5, 5), (1, 1.0, 5, 5)])
    assert hm.image_grid(fast, grid=(10, 10)).sum() == pytest.approx(2.0, rel=1e-6)
    assert hm.image_grid(slow, grid=(10, 10)).sum() == pytest.approx(2.0)


def test_single_track_crossing_known_cells_with_segments():
    # One track moving right along row 0 from x=5 to x=45 in one 1 s jump (a low frame
    # rate): the cells in between get their share of the second by path length.
    d = dets([(1, 0.0, 5, 5), (1, 1.0, 45, 5), (9, 0.0, 95, 95)])
    plain = hm.image_grid(d, grid=(10, 10))
    assert plain[0].tolist()[:5] == [1.0, 0.0, 0.0, 0.0, 1.0]  # a gap without segments
    grid = hm.image_grid(d, grid=(10, 10), segments=True)
    np.testing.assert_allclose(grid[0, :5], [0.125, 0.25, 0.25, 0.25, 1.125])
    assert grid[9, 9] == pytest.approx(1.0)
    assert grid.sum() == pytest.approx(plain.sum())  # segments move time, never create it


def test_long_diagonal_jump_fills_every_cell_between():
    d = dets([(1, 0.0, 5, 5), (1, 2.0, 95, 95)])
    grid = hm.image_grid(d, grid=(10, 10), segments=True)
    assert (np.diag(grid) > 0).all()
    assert np.count_nonzero(grid) == 10
    assert grid.sum() == pytest.approx(2.0 + 2.0)  # 2 s of segment + the last sample's step


def test_max_gap_breaks_segments():
    d = dets([(1, 0.0, 5, 5), (1, 10.0, 95, 5)] + [(2, float(t), 5, 95) for t in range(11)])
    grid = hm.image_grid(d, grid=(10, 10), segments=True, max_gap_s=5.0)
    assert grid[0, 1:9].sum() == 0  # no path drawn across a 10 s tracker gap
    assert grid[0, 0] == pytest.approx(1.0)  # the gap sample holds one step only


def test_unique_tracks_count_a_track_once_per_cell():
    d = dets(
        [(1, t, 5, 5) for t in range(5)]
        + [(2, 0.0, 5, 5), (2, 1.0, 15, 5)]
        + [(None, 0.0, 5, 5)]  # untracked: not a visitor
    )
    grid = hm.image_grid(d, grid=(10, 10), weight="tracks")
    assert grid[0, 0] == 2.0
    assert grid[0, 1] == 1.0
    assert grid.sum() == 3.0
    moving = dets([(1, 0.0, 5, 5), (1, 1.0, 45, 5)])
    seg = hm.image_grid(moving, grid=(10, 10), weight="tracks", segments=True)
    assert seg[0, :5].tolist() == [1.0] * 5


def test_events_weighting_splits_an_event_over_its_detections():
    d = dets([(1, 0.0, 5, 5), (1, 1.0, 15, 5), (2, 0.0, 95, 95)])
    events = pd.DataFrame({"detection_ids": [["d0", "d1"], ["d2"], ["d2"]]})
    grid = hm.image_grid(d, grid=(10, 10), weight="events", events=events)
    assert grid[0, 0] == 0.5 and grid[0, 1] == 0.5 and grid[9, 9] == 2.0
    with pytest.raises(ValueError, match="events="):
        hm.image_grid(d, weight="events")


def test_normalization_by_exposure():
    # Two objects always present over 4 sampled frames (0.5 s apart).
    d = dets([(k, t * 0.5, 5 + 10 * k, 5) for t in range(4) for k in (1, 2)])
    raw = hm.image_grid(d, grid=(10, 10))
    assert raw.sum() == pytest.approx(4.0)  # 2 objects x 4 frames x 0.5 s
    per_second = hm.image_grid(d, grid=(10, 10), normalize="seconds")
    assert per_second.sum() == pytest.approx(2.0)  # mean objects present
    assert per_second[0, 1] == pytest.approx(1.0)  # track 1 always in its cell
    per_frame = hm.image_grid(d, grid=(10, 10), normalize="frames")
    assert per_frame.sum() == pytest.approx(1.0)  # seconds per sampled frame
    half = hm.image_grid(d, grid=(10, 10), normalize="seconds", exposure=4.0)
    assert half.sum() == pytest.approx(1.0)


def test_anchor_choice_and_frame_edge():
    box = pd.DataFrame(
        {"video_id": "v", "track_id": [1], "pts_sec": [0.0], "frame_number": [0],
         "x1": [0.0], "y1": [0.0], "x2": [100.0], "y2": [100.0],
         "frame_width": 100, "frame_height": 100}
    )  # fmt: skip
    assert hm.image_grid(box, grid=(4, 4))[3, 2] == 1.0  # bottom centre on the edge: kept
    assert hm.image_grid(box, grid=(4, 4), anchor="top_left")[0, 0] == 1.0
    assert hm.image_grid(box, grid=(4, 4), anchor="center")[2, 2] == 1.0
    with pytest.raises(ValueError, match="unknown anchor"):
        hm.image_grid(box, anchor="middle")


def test_unsorted_and_multi_video_input_match_sorted():
    table = synthetic_detections(4_000, per_frame=10)
    other = synthetic_detections(4_000, per_frame=10, video_id="veh-01--clip-0002", seed=1)
    both = pa.concat_tables([table, other])
    perm = np.random.default_rng(0).permutation(both.num_rows)
    for kwargs in ({}, {"segments": True}, {"weight": "tracks", "segments": True}):
        a = hm.image_grid(table, grid=(16, 9), **kwargs) + hm.image_grid(
            other, grid=(16, 9), **kwargs
        )
        b = hm.image_grid(both.take(pa.array(perm)), grid=(16, 9), **kwargs)
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_arrow_and_pandas_inputs_agree():
    table = synthetic_detections(2_000)
    a = hm.image_grid(table, grid=(16, 9), segments=True)
    b = hm.image_grid(table.to_pandas(), grid=(16, 9), segments=True)
    np.testing.assert_allclose(a, b)


def test_table_round_trip_is_sparse_and_conforms():
    grid = np.zeros((9, 16), np.float32)
    grid[0, 3] = 2.5
    grid[8, 15] = 1.0
    table = hm.to_table(
        grid, video_id="vid", source_id="src", heatmap_id="dwell-all", weight="dwell",
        captured_at=START,
    )  # fmt: skip
    assert table.schema.equals(HEATMAPS, check_metadata=False)
    assert table.num_rows == 2
    assert table.column("row").to_pylist() == [0, 8]
    assert table.column("col").to_pylist() == [3, 15]
    np.testing.assert_array_equal(hm.from_table(table), grid)
    other = hm.to_table(
        grid, video_id="vid", source_id="src", heatmap_id="x", weight="dwell", captured_at=START
    )
    two = pa.concat_tables([table, other])
    with pytest.raises(ValueError, match="pass heatmap_id"):
        hm.from_table(two)
    np.testing.assert_array_equal(hm.from_table(two, heatmap_id="x"), grid)


def test_geo_grid_and_geo_table():
    d = pd.DataFrame(
        {"video_id": "v", "track_id": [1, 1, 2, 3], "pts_sec": [0.0, 1.0, 1.0, 2.0],
         "lat": [52.50001, 52.50002, 52.50101, np.nan], "lon": [13.40001, 13.40002, 13.4, 13.4]}
    )  # fmt: skip
    cells = hm.geo_grid(d, cell_deg=0.001)
    assert cells["count"].tolist() == [2.0, 1.0]
    assert cells["dwell"].tolist() == [2.0, 1.0]
    assert cells["lat"].iloc[0] == pytest.approx(52.5005)
    assert cells["cell_id"].iloc[0] == "deg0.001:52500:13400"
    table = hm.to_table(
        cells, video_id="v", source_id="s", heatmap_id="geo", weight="dwell", captured_at=START
    )
    assert table.column("space").to_pylist() == ["geo", "geo"]
    assert table.column("row").null_count == 2
    assert table.schema.equals(HEATMAPS, check_metadata=False)


def test_geo_grid_h3_cells_match_h3():
    import h3

    res = 9
    home = h3.latlng_to_cell(52.5, 13.4, res)
    # Three fixes inside one resolution-9 cell (~170 m across): within ~1 m of its centre.
    c_lat, c_lon = h3.cell_to_latlng(home)
    far = (52.52, 13.45)  # ~4 km away: a different cell
    far_cell = h3.latlng_to_cell(*far, res)
    assert far_cell != home
    d = pd.DataFrame(
        {"video_id": "v", "track_id": [1, 1, 1, 2, 3],
         "pts_sec": [0.0, 0.5, 2.0, 1.0, 0.0],
         "lat": [c_lat, c_lat + 1e-5, c_lat - 1e-5, far[0], np.nan],
         "lon": [c_lon, c_lon + 1e-5, c_lon, far[1], 13.4]}
    )  # fmt: skip
    for lat, lon in zip(d["lat"][:3], d["lon"][:3], strict=True):
        assert h3.latlng_to_cell(lat, lon, res) == home
    cells = hm.geo_grid(d, h3=True, h3_resolution=res).set_index("cell_id")
    assert sorted(cells.index) == sorted([home, far_cell])  # the NaN fix is dropped
    assert cells.loc[home, "count"] == 3.0
    assert cells.loc[far_cell, "count"] == 1.0
    # Dwell is the same per-sample step geo_grid's square cells use: the sum per cell.
    square = hm.geo_grid(d, cell_deg=1.0)
    assert cells["dwell"].sum() == pytest.approx(square["dwell"].sum())
    steps = hm.track_steps(d)[0]
    assert cells.loc[home, "dwell"] == pytest.approx(steps[:3].sum())
    assert cells.loc[far_cell, "dwell"] == pytest.approx(steps[3])
    for cell_id, row in cells.iterrows():
        lat, lon = h3.cell_to_latlng(cell_id)
        assert (row["lat"], row["lon"]) == pytest.approx((lat, lon))
        assert h3.get_resolution(cell_id) == res
    table = hm.to_table(
        cells.reset_index(), video_id="v", source_id="s", heatmap_id="h3", weight="dwell",
        captured_at=START,
    )  # fmt: skip
    assert table.schema.equals(HEATMAPS, check_metadata=False)
    assert sorted(table.column("cell_id").to_pylist()) == sorted([home, far_cell])


def test_geo_grid_h3_resolution_and_empty():
    import h3

    d = pd.DataFrame({"video_id": "v", "track_id": [1, 1], "pts_sec": [0.0, 1.0],
                      "lat": [52.5, 52.5009], "lon": [13.4, 13.4]})  # fmt: skip
    fine = hm.geo_grid(d, h3=True, h3_resolution=12)  # ~10 m cells: two of them
    coarse = hm.geo_grid(d, h3=True, h3_resolution=5)  # ~8 km cells: one
    assert len(fine) == 2 and len(coarse) == 1
    assert coarse["cell_id"].iloc[0] == h3.latlng_to_cell(52.5, 13.4, 5)
    assert coarse["count"].iloc[0] == 2.0
    with pytest.raises(ValueError, match="h3_resolution"):
        hm.geo_grid(d, h3=True, h3_resolution=16)
    none = hm.geo_grid(d.assign(lat=np.nan), h3=True)
    assert none.empty and list(none.columns) == ["cell_id", "lat", "lon", "count", "dwell"]


def test_render_png_has_expected_size_and_legend(tmp_path):
    grid = np.zeros((9, 16), np.float32)
    grid[4, 8] = 3.0
    grid[0, 0] = 1.0
    background = np.full((180, 320, 3), 128, np.uint8)
    path = tmp_path / "heat.png"
    out = hm.render_png(grid, background, path, alpha=0.5, units="s")
    image = cv2.imread(str(path))
    assert image.shape == (180, 320 + 90, 3)
    np.testing.assert_array_equal(image, out)
    # Empty cells keep the frame; the hottest cell is coloured.
    assert (image[100, 10] == 128).all()
    assert not (image[4 * 20 + 10, 8 * 20 + 10] == 128).all()
    legend = image[:, 320:]
    assert (legend == 255).mean() > 0.3  # a white panel
    bar = legend[30:150, 10:20].reshape(-1, 3)
    assert len(np.unique(bar, axis=0)) > 10  # a colour ramp
    assert (legend[:20] < 100).any()  # text (the value range) drawn at the top
    no_legend = hm.render_png(grid, background, tmp_path / "plain.png", legend=False)
    assert no_legend.shape == (180, 320, 3)


def test_synthetic_events_table_as_event_weights():
    table = synthetic_detections(2_000)
    events = synthetic_events(10).to_pandas()
    ids = table.column("detection_id").to_pylist()
    events["detection_ids"] = [[ids[i * 7]] for i in range(10)]
    grid = hm.image_grid(table, grid=(16, 9), weight="events", events=events)
    assert grid.sum() == pytest.approx(10.0)


def test_empty_detections_give_an_empty_grid_and_table():
    empty = dets([(1, 0.0, 5, 5)]).iloc[:0]
    for weight in ("dwell", "tracks"):
        grid = hm.image_grid(empty, grid=(4, 3), weight=weight, frame_size=(100, 100))
        assert grid.shape == (3, 4) and grid.sum() == 0
    table = hm.to_table(
        np.zeros((3, 4), np.float32), video_id="v", source_id="s", heatmap_id="h",
        weight="dwell", captured_at=START,
    )  # fmt: skip
    assert table.num_rows == 0 and table.schema.equals(HEATMAPS, check_metadata=False)
