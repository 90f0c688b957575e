"""Areas and test points, numpy in and numpy out (supervision style, but vectorized).

Coordinates are pixels, or normalized to [0, 1] of the frame (``normalized=True``), which
are resolved per row from the frame size, so one rule serves sources of any resolution.
Image coordinates: x right, y down.

Example:
    >>> import numpy as np
    >>> line = Line((0, 10), (100, 10), in_side="right")
    >>> line.signed_distance(np.array([50.0, 50.0]), np.array([15.0, 5.0])).tolist()
    [5.0, -5.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import shapely

if TYPE_CHECKING:
    from roadlens.ode.rules import AreaSpec

ANCHORS = (
    "center",
    "top_left",
    "top_center",
    "top_right",
    "center_left",
    "center_right",
    "bottom_left",
    "bottom_center",
    "bottom_right",
)
# (fraction of width, fraction of height) from the top-left corner for each anchor.
ANCHOR_FRACTIONS = {
    "center": (0.5, 0.5),
    "top_left": (0.0, 0.0),
    "top_center": (0.5, 0.0),
    "top_right": (1.0, 0.0),
    "center_left": (0.0, 0.5),
    "center_right": (1.0, 0.5),
    "bottom_left": (0.0, 1.0),
    "bottom_center": (0.5, 1.0),
    "bottom_right": (1.0, 1.0),
}


def anchor_points(
    x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, anchor: str
) -> tuple[np.ndarray, np.ndarray]:
    """The test point ``(u, v)`` of each box for one of the 9 named anchors.

    >>> u, v = anchor_points(np.array([0.0]), np.array([0.0]), np.array([10.0]),
    ...                      np.array([20.0]), "bottom_center")
    >>> float(u[0]), float(v[0])
    (5.0, 20.0)
    """
    if anchor not in ANCHOR_FRACTIONS:
        raise ValueError(f"unknown anchor {anchor!r}; one of {', '.join(ANCHORS)}")
    fx, fy = ANCHOR_FRACTIONS[anchor]
    x1, y1 = np.asarray(x1, np.float64), np.asarray(y1, np.float64)
    x2, y2 = np.asarray(x2, np.float64), np.asarray(y2, np.float64)
    return x1 + fx * (x2 - x1), y1 + fy * (y2 - y1)


def _scale(
    n: int, width: np.ndarray | float | None, height: np.ndarray | float | None
) -> tuple[np.ndarray, np.ndarray]:
    w = np.ones(n) if width is None else np.broadcast_to(np.asarray(width, np.float64), (n,))
    h = np.ones(n) if height is None else np.broadcast_to(np.asarray(height, np.float64), (n,))
    return w, h


class Line:
    """A segment p1 -> p2 (or the infinite line through them, ``extend=True``).

    ``in_side`` names the positive side walking p1 -> p2 in image coordinates (y down):
    ``"right"`` (DSL's IN) or ``"left"`` (supervision's ``in``).

    >>> Line((0, 0), (0, 100), in_side="left").signed_distance(
    ...     np.array([5.0]), np.array([50.0])).tolist()
    [5.0]
    """

    def __init__(
        self,
        p1: Sequence[float],
        p2: Sequence[float],
        *,
        extend: bool = False,
        in_side: Literal["left", "right"] = "right",
        normalized: bool = False,
    ) -> None:
        if tuple(p1) == tuple(p2):
            raise ValueError("a line needs two distinct points")
        self.p1, self.p2 = tuple(map(float, p1)), tuple(map(float, p2))
        self.extend, self.in_side, self.normalized = extend, in_side, normalized

    def endpoints(
        self,
        n: int,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-row pixel endpoints ``(ax, ay, bx, by)``, resolved from the frame size."""
        if not self.normalized:
            (ax, ay), (bx, by) = self.p1, self.p2
            return np.full(n, ax), np.full(n, ay), np.full(n, bx), np.full(n, by)
        w, h = _scale(n, width, height)
        return self.p1[0] * w, self.p1[1] * h, self.p2[0] * w, self.p2[1] * h

    def signed_distance(
        self,
        u: np.ndarray,
        v: np.ndarray,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Pixel distance from the infinite line, positive on ``in_side``."""
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        ax: float | np.ndarray
        ay: float | np.ndarray
        bx: float | np.ndarray
        by: float | np.ndarray
        if not self.normalized:
            # Pixel endpoints are scalars: no per-row endpoint arrays, one fused expression
            # (the same arithmetic, so the same floats as the per-row form below).
            (ax, ay), (bx, by) = self.p1, self.p2
            dx, dy = bx - ax, by - ay
            norm = float(np.hypot(dx, dy))
            s = v - ay  # in place from here: 1M-row temporaries cost more than the math
            s *= dx
            t = u - ax
            t *= dy
            s -= t
            s /= norm
            if self.in_side != "right":
                np.negative(s, out=s)
            return s
        ax, ay, bx, by = self.endpoints(len(u), width, height)
        dx, dy = bx - ax, by - ay
        # cross(p2 - p1, a - p1) > 0 is the right-hand side when y points down.
        cross = dx * (v - ay) - dy * (u - ax)
        s = cross / np.hypot(dx, dy)
        return s if self.in_side == "right" else -s

    def along(
        self,
        u: np.ndarray,
        v: np.ndarray,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Projection parameter t of each point on p1 -> p2 (0 at p1, 1 at p2)."""
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        ax, ay, bx, by = self.endpoints(len(u), width, height)
        dx, dy = bx - ax, by - ay
        return ((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy)

    def within_bounds(
        self,
        u: np.ndarray,
        v: np.ndarray,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """True where the point projects onto the segment (always True when extended)."""
        if self.extend:
            return np.ones(len(np.asarray(u)), dtype=bool)
        t = self.along(u, v, width, height)
        return (t >= 0.0) & (t <= 1.0)


class Polyline:
    """Connected segments; each is a :class:`Line` with the same ``in_side`` convention.

    >>> len(Polyline([(0, 0), (10, 0), (10, 10)]).segments)
    2
    """

    def __init__(
        self,
        points: Sequence[Sequence[float]],
        *,
        in_side: Literal["left", "right"] = "right",
        normalized: bool = False,
    ) -> None:
        if len(points) < 2:
            raise ValueError("a polyline needs at least two points")
        self.points = [tuple(map(float, p)) for p in points]
        self.in_side, self.normalized = in_side, normalized
        self.segments = [
            Line(a, b, in_side=in_side, normalized=normalized)
            for a, b in zip(self.points[:-1], self.points[1:], strict=True)
        ]


class Polygon:
    """A polygon zone.

    The geometric questions ignore ``mode``: :meth:`contains` (points in the polygon or
    on its boundary), :meth:`touches_boxes` and :meth:`covers_boxes`. The zone questions
    apply it: :meth:`selects` and :meth:`selects_boxes` pass what is inside the polygon
    (``mode="include"``) or outside it (``mode="exclude"``).

    >>> zone = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], mode="exclude")
    >>> u, v = np.array([5.0, 15.0]), np.array([5.0, 5.0])
    >>> zone.contains(u, v).tolist(), zone.selects(u, v).tolist()
    ([True, False], [False, True])
    """

    def __init__(
        self,
        points: Sequence[Sequence[float]],
        *,
        mode: Literal["include", "exclude"] = "include",
        normalized: bool = False,
    ) -> None:
        if len(points) < 3:
            raise ValueError("a polygon needs at least three points")
        self.points = [tuple(map(float, p)) for p in points]
        self.mode, self.normalized = mode, normalized
        self.geometry = shapely.Polygon(self.points)
        if not self.geometry.is_valid:
            raise ValueError(f"polygon is not valid (self-intersecting?): {self.points}")
        self.boundary = self.geometry.exterior
        shapely.prepare(self.geometry)
        # An axis-aligned rectangle (the usual region of interest) is its own bounding box:
        # the closed box test is then exact (inside or on the boundary) and needs no GEOS.
        self.is_box = bool(shapely.equals(self.geometry, shapely.box(*self.geometry.bounds)))

    def _norm(
        self,
        u: np.ndarray,
        v: np.ndarray,
        width: np.ndarray | float | None,
        height: np.ndarray | float | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        if not self.normalized:
            return u, v
        # Scaling is affine, so testing normalized points against the normalized polygon
        # is exact and needs no per-frame-size geometry.
        w, h = _scale(len(u), width, height)
        return u / w, v / h

    def contains(
        self,
        u: np.ndarray,
        v: np.ndarray,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """True where the point is in the polygon or on its boundary, whatever ``mode``."""
        uu, vv = self._norm(u, v, width, height)
        # A cheap bounding-box test first: shapely only sees the points that may be inside.
        x0, y0, x1, y1 = self.geometry.bounds
        in_box = (uu >= x0) & (uu <= x1) & (vv >= y0) & (vv <= y1)
        if self.is_box:
            return in_box
        cand = np.flatnonzero(in_box)
        out = np.zeros(len(uu), dtype=bool)
        out[cand] = shapely.intersects_xy(self.geometry, uu[cand], vv[cand])
        return out

    def selects(
        self,
        u: np.ndarray,
        v: np.ndarray,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
        *,
        mode: Literal["include", "exclude"] | None = None,
    ) -> np.ndarray:
        """True where the point passes the zone: in the polygon (include) or not in it
        (exclude). ``mode`` overrides the polygon's own."""
        inside = self.contains(u, v, width, height)
        return inside if (mode or self.mode) == "include" else ~inside

    def touches_boxes(
        self,
        x1: np.ndarray,
        y1: np.ndarray,
        x2: np.ndarray,
        y2: np.ndarray,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """True where some part of the box is in the polygon or on its boundary (overlap,
        containment either way, touching), whatever ``mode``."""
        a, b = self._norm(x1, y1, width, height)
        c, d = self._norm(x2, y2, width, height)
        x0, y0, x1, y1 = self.geometry.bounds
        # Boxes off the polygon's bounding box cannot touch it: no geometry built for them.
        cand = np.flatnonzero((c >= x0) & (a <= x1) & (d >= y0) & (b <= y1))
        out = np.zeros(len(a), dtype=bool)
        out[cand] = shapely.intersects(
            self.geometry, shapely.box(a[cand], b[cand], c[cand], d[cand])
        )
        return out

    def covers_boxes(
        self,
        x1: np.ndarray,
        y1: np.ndarray,
        x2: np.ndarray,
        y2: np.ndarray,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """True where the whole box is in the polygon (its boundary counts as in), whatever
        ``mode``."""
        a, b = self._norm(x1, y1, width, height)
        c, d = self._norm(x2, y2, width, height)
        x0, y0, x1, y1 = self.geometry.bounds
        # Only boxes within the polygon's bounding box can be covered by it.
        cand = np.flatnonzero((a >= x0) & (c <= x1) & (b >= y0) & (d <= y1))
        out = np.zeros(len(a), dtype=bool)
        out[cand] = shapely.covers(self.geometry, shapely.box(a[cand], b[cand], c[cand], d[cand]))
        return out

    def signed_distance(
        self,
        u: np.ndarray,
        v: np.ndarray,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Distance to the boundary, positive inside (in the polygon's own units: pixels,
        or normalized units for a normalized polygon)."""
        uu, vv = self._norm(u, v, width, height)
        d = shapely.distance(self.boundary, shapely.points(uu, vv))
        return np.where(shapely.intersects_xy(self.geometry, uu, vv), d, -d)

    def selects_boxes(
        self,
        x1: np.ndarray,
        y1: np.ndarray,
        x2: np.ndarray,
        y2: np.ndarray,
        anchor: str,
        width: np.ndarray | float | None = None,
        height: np.ndarray | float | None = None,
        *,
        mode: Literal["include", "exclude"] | None = None,
    ) -> np.ndarray:
        """True where the box passes the zone by ``anchor`` (one of the 9 points, see
        :meth:`selects`, or ``"any"``: some part of the box in the polygon for include,
        some part outside it for exclude). ``mode`` overrides the polygon's own.

        >>> zone = Polygon([(0, 0), (10, 0), (10, 10), (0, 10)], mode="exclude")
        >>> box = [np.array([8.0])] * 2 + [np.array([18.0])] * 2  # half in, half out
        >>> zone.selects_boxes(*box, "any").tolist(), zone.selects_boxes(*box, "center").tolist()
        ([True], [True])
        >>> zone.selects_boxes(*box, "top_left").tolist()
        [False]
        """
        if anchor == "any":
            if (mode or self.mode) == "include":
                return self.touches_boxes(x1, y1, x2, y2, width, height)
            return ~self.covers_boxes(x1, y1, x2, y2, width, height)
        u, v = anchor_points(x1, y1, x2, y2, anchor)
        return self.selects(u, v, width, height, mode=mode)


Area = Line | Polyline | Polygon


def build_area(spec: AreaSpec) -> Area:
    """The geometry object for a validated :class:`roadlens.ode.rules.AreaSpec`."""
    # Validation guarantees the points of the spec's kind.
    kind = spec.kind
    if kind == "line":
        assert spec.line is not None
        p1, p2 = spec.line
        return Line(p1, p2, extend=spec.extend, in_side=spec.in_side, normalized=spec.normalized)
    if kind == "polyline":
        assert spec.polyline is not None
        return Polyline(spec.polyline, in_side=spec.in_side, normalized=spec.normalized)
    assert spec.polygon is not None
    return Polygon(spec.polygon, mode=spec.mode, normalized=spec.normalized)
