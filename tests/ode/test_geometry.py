"""Geometry: anchors, line sides, bounds, polygons (pixel and normalized coordinates)."""

from __future__ import annotations

import numpy as np
import pytest

from roadlens.ode.geometry import ANCHORS, Line, Polygon, Polyline, anchor_points, build_area
from roadlens.ode.rules import AreaSpec


def test_anchor_points_all_nine() -> None:
    x1, y1, x2, y2 = (np.array([v]) for v in (10.0, 20.0, 30.0, 60.0))
    expected = {
        "center": (20, 40),
        "top_left": (10, 20),
        "top_center": (20, 20),
        "top_right": (30, 20),
        "center_left": (10, 40),
        "center_right": (30, 40),
        "bottom_left": (10, 60),
        "bottom_center": (20, 60),
        "bottom_right": (30, 60),
    }
    assert set(expected) == set(ANCHORS)
    for name, (u, v) in expected.items():
        uu, vv = anchor_points(x1, y1, x2, y2, name)
        assert (uu[0], vv[0]) == (u, v), name
    with pytest.raises(ValueError, match="unknown anchor"):
        anchor_points(x1, y1, x2, y2, "middle")


def test_line_sides_follow_image_coordinates() -> None:
    # Walking p1 -> p2 to the right (+x) with y down, the right-hand side is below (+y).
    right = Line((0, 100), (200, 100), in_side="right")
    left = Line((0, 100), (200, 100), in_side="left")
    u, v = np.array([50.0, 50.0, 50.0]), np.array([110.0, 90.0, 100.0])
    assert right.signed_distance(u, v).tolist() == [10.0, -10.0, 0.0]
    assert left.signed_distance(u, v).tolist() == [-10.0, 10.0, 0.0]


def test_line_bounds_and_extension() -> None:
    seg = Line((0, 0), (100, 0))
    inf = Line((0, 0), (100, 0), extend=True)
    u, v = np.array([-5.0, 0.0, 50.0, 100.0, 105.0]), np.zeros(5)
    assert seg.within_bounds(u, v).tolist() == [False, True, True, True, False]
    assert inf.within_bounds(u, v).all()
    assert seg.along(u, v).tolist() == [-0.05, 0.0, 0.5, 1.0, 1.05]


def test_normalized_line_resolves_per_frame_size() -> None:
    line = Line((0, 0.5), (1, 0.5), normalized=True)
    # The same pixel point is below the line in a 100 px frame and above in a 400 px one.
    s = line.signed_distance(np.array([10.0, 10.0]), np.array([60.0, 60.0]), 100, [100, 400])
    assert s.tolist() == [10.0, -140.0]


def test_polygon_include_exclude_and_boundary() -> None:
    square = [(0, 0), (10, 0), (10, 10), (0, 10)]
    inc, exc = Polygon(square), Polygon(square, mode="exclude")
    u, v = np.array([5.0, 10.0, 15.0]), np.array([5.0, 5.0, 5.0])
    assert inc.selects(u, v).tolist() == [True, True, False]  # the boundary is inside
    assert exc.selects(u, v).tolist() == [False, False, True]
    assert inc.selects(u, v, mode="exclude").tolist() == [False, False, True]
    assert exc.selects(u, v, mode="include").tolist() == [True, True, False]
    # contains is geometry: in the polygon or on its boundary, whatever the zone's mode.
    assert inc.contains(u, v).tolist() == exc.contains(u, v).tolist() == [True, True, False]
    assert inc.signed_distance(u, v).tolist() == [5.0, 0.0, -5.0]


def test_polygon_normalized() -> None:
    zone = Polygon([(0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5)], normalized=True)
    got = zone.contains(np.array([40.0, 40.0]), np.array([40.0, 40.0]), [100, 60], [100, 60])
    assert got.tolist() == [True, False]


def test_any_part_of_the_box() -> None:
    zone = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)])
    x1, y1 = np.array([8.0, 20.0, 2.0]), np.array([8.0, 20.0, 2.0])
    x2, y2 = np.array([18.0, 30.0, 4.0]), np.array([18.0, 30.0, 4.0])
    assert zone.selects_boxes(x1, y1, x2, y2, "any").tolist() == [True, False, True]
    assert zone.selects_boxes(x1, y1, x2, y2, "bottom_right").tolist() == [False, False, True]
    exc = Polygon(zone.points, mode="exclude")
    # Exclusion with "any": some part of the box is outside the polygon.
    assert exc.selects_boxes(x1, y1, x2, y2, "any").tolist() == [True, True, False]
    assert zone.selects_boxes(x1, y1, x2, y2, "any", mode="exclude").tolist() == [
        True,
        True,
        False,
    ]
    # The geometric box questions ignore the mode.
    for poly in (zone, exc):
        assert poly.touches_boxes(x1, y1, x2, y2).tolist() == [True, False, True]
        assert poly.covers_boxes(x1, y1, x2, y2).tolist() == [False, False, True]


def test_invalid_shapes() -> None:
    with pytest.raises(ValueError):
        Line((1, 1), (1, 1))
    with pytest.raises(ValueError):
        Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])  # a bow tie
    assert len(Polyline([(0, 0), (5, 0), (5, 5)]).segments) == 2


def test_build_area_from_spec() -> None:
    assert isinstance(build_area(AreaSpec(line=((0, 0), (1, 0)))), Line)
    assert isinstance(build_area(AreaSpec(polyline=[(0, 0), (1, 0), (1, 1)])), Polyline)
    poly = build_area(AreaSpec(polygon=[(0, 0), (1, 0), (1, 1)], mode="exclude"))
    assert isinstance(poly, Polygon) and poly.mode == "exclude"
