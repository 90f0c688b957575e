"""Drawing of the synthetic road users and signs inside a pixel box.

Each drawer paints one object so that it fills its box ``(x1, y1, x2, y2)``: the box is
the ground truth. Shapes are simple but distinct per class (wheels and windows on cars,
a tall cargo box on trucks, head and legs on people, a red octagon on a pole, a lamp
housing) so that a small detector can learn them from a few hundred frames.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Box = tuple[float, float, float, float]
Color = tuple[int, int, int]

CLASS_NAMES: tuple[str, ...] = ("person", "car", "truck", "stop sign", "traffic light")
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

CAR_COLORS: tuple[Color, ...] = (
    (40, 40, 200),
    (200, 60, 30),
    (230, 230, 230),
    (30, 30, 30),
    (60, 160, 60),
    (0, 200, 240),
    (150, 150, 150),
    (120, 40, 120),
    (20, 90, 160),
)
TRUCK_COLORS: tuple[Color, ...] = ((235, 235, 235), (50, 120, 200), (60, 60, 160), (40, 150, 150))
CLOTH_COLORS: tuple[Color, ...] = (
    (200, 50, 50),
    (50, 50, 200),
    (40, 40, 40),
    (60, 180, 220),
    (180, 180, 60),
    (120, 60, 160),
)


def _pts(*xy: tuple[float, float]) -> np.ndarray:
    return np.round(np.array(xy, dtype=np.float64) * 16).astype(np.int32)


def _rect(img: np.ndarray, x1: float, y1: float, x2: float, y2: float, color: Color) -> None:
    # Sub-pixel fill (shift=4) keeps far, small objects from flickering between frames.
    cv2.fillPoly(img, [_pts((x1, y1), (x2, y1), (x2, y2), (x1, y2))], color, cv2.LINE_AA, 4)


def _ellipse(img: np.ndarray, cx: float, cy: float, rx: float, ry: float, color: Color) -> None:
    cv2.ellipse(
        img,
        (round(cx * 16), round(cy * 16)),
        (max(1, round(rx * 16)), max(1, round(ry * 16))),
        0,
        0,
        360,
        color,
        -1,
        cv2.LINE_AA,
        4,
    )


def draw_car(
    img: np.ndarray, box: Box, color: Color, *, side: bool = False, phase: float = 0.0
) -> None:
    """A car seen from behind (dashcam) or from the side (roadside camera)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    dark = (25, 25, 25)
    glass = (90, 70, 50)
    if side:
        _rect(img, x1, y1 + 0.42 * h, x2, y2 - 0.18 * h, color)
        cabin = _pts(
            (x1 + 0.2 * w, y1 + 0.45 * h),
            (x1 + 0.32 * w, y1),
            (x1 + 0.7 * w, y1),
            (x1 + 0.85 * w, y1 + 0.45 * h),
        )
        cv2.fillPoly(img, [cabin], color, cv2.LINE_AA, 4)
        _rect(img, x1 + 0.33 * w, y1 + 0.08 * h, x1 + 0.5 * w, y1 + 0.4 * h, glass)
        _rect(img, x1 + 0.53 * w, y1 + 0.08 * h, x1 + 0.69 * w, y1 + 0.4 * h, glass)
        for cx in (x1 + 0.2 * w, x1 + 0.8 * w):
            _ellipse(img, cx, y2 - 0.17 * h, 0.11 * w, 0.17 * h, dark)
            _ellipse(img, cx, y2 - 0.17 * h, 0.05 * w, 0.08 * h, (160, 160, 160))
        return
    _rect(img, x1 + 0.04 * w, y2 - 0.16 * h, x1 + 0.2 * w, y2, dark)
    _rect(img, x2 - 0.2 * w, y2 - 0.16 * h, x2 - 0.04 * w, y2, dark)
    _rect(img, x1, y1 + 0.4 * h, x2, y2 - 0.1 * h, color)
    cabin = _pts(
        (x1 + 0.08 * w, y1 + 0.42 * h),
        (x1 + 0.2 * w, y1),
        (x2 - 0.2 * w, y1),
        (x2 - 0.08 * w, y1 + 0.42 * h),
    )
    cv2.fillPoly(img, [cabin], color, cv2.LINE_AA, 4)
    _rect(img, x1 + 0.2 * w, y1 + 0.08 * h, x2 - 0.2 * w, y1 + 0.38 * h, glass)
    _rect(img, x1 + 0.03 * w, y1 + 0.5 * h, x1 + 0.18 * w, y1 + 0.62 * h, (30, 30, 220))
    _rect(img, x2 - 0.18 * w, y1 + 0.5 * h, x2 - 0.03 * w, y1 + 0.62 * h, (30, 30, 220))
    _rect(img, x1 + 0.38 * w, y1 + 0.66 * h, x2 - 0.38 * w, y1 + 0.76 * h, (235, 235, 235))


def draw_truck(
    img: np.ndarray, box: Box, color: Color, *, side: bool = False, phase: float = 0.0
) -> None:
    """A box truck: a tall cargo body over a dark chassis."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    dark = (25, 25, 25)
    if side:
        _rect(img, x1, y1, x1 + 0.72 * w, y2 - 0.2 * h, color)
        _rect(img, x1 + 0.74 * w, y1 + 0.3 * h, x2, y2 - 0.2 * h, (70, 70, 160))
        _rect(img, x1 + 0.8 * w, y1 + 0.36 * h, x2 - 0.04 * w, y1 + 0.55 * h, (90, 70, 50))
        _rect(img, x1, y2 - 0.24 * h, x2, y2 - 0.16 * h, (60, 60, 60))
        for cx in (x1 + 0.15 * w, x1 + 0.55 * w, x1 + 0.87 * w):
            _ellipse(img, cx, y2 - 0.11 * h, 0.06 * w, 0.11 * h, dark)
        return
    _rect(img, x1 + 0.05 * w, y2 - 0.1 * h, x1 + 0.25 * w, y2, dark)
    _rect(img, x2 - 0.25 * w, y2 - 0.1 * h, x2 - 0.05 * w, y2, dark)
    _rect(img, x1, y1, x2, y2 - 0.14 * h, color)
    _rect(img, x1, y2 - 0.16 * h, x2, y2 - 0.08 * h, (60, 60, 60))
    cv2.line(
        img,
        (round((x1 + x2) / 2), round(y1 + 0.04 * h)),
        (round((x1 + x2) / 2), round(y2 - 0.18 * h)),
        (120, 120, 120),
        1,
    )
    _rect(img, x1 + 0.04 * w, y2 - 0.26 * h, x1 + 0.14 * w, y2 - 0.19 * h, (30, 30, 220))
    _rect(img, x2 - 0.14 * w, y2 - 0.26 * h, x2 - 0.04 * w, y2 - 0.19 * h, (30, 30, 220))


def draw_person(
    img: np.ndarray, box: Box, color: Color, *, side: bool = False, phase: float = 0.0
) -> None:
    """A walking person: head, torso, arms and legs that swing with ``phase``."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    skin = (140, 170, 210)
    legs = (60, 50, 40)
    _ellipse(img, cx, y1 + 0.07 * h, 0.22 * w, 0.07 * h, skin)
    _rect(img, cx - 0.3 * w, y1 + 0.14 * h, cx + 0.3 * w, y1 + 0.55 * h, color)
    swing = 0.5 * w * np.sin(phase)
    thick = max(1, round(0.22 * w))
    hip = (round(cx), round(y1 + 0.53 * h))
    cv2.line(img, hip, (round(cx - 0.25 * w + swing), round(y2)), legs, thick, cv2.LINE_AA)
    cv2.line(img, hip, (round(cx + 0.25 * w - swing), round(y2)), legs, thick, cv2.LINE_AA)
    arm = max(1, round(0.15 * w))
    shoulder_y = round(y1 + 0.18 * h)
    cv2.line(
        img,
        (round(cx - 0.3 * w), shoulder_y),
        (round(x1 + swing * 0.5), round(y1 + 0.5 * h)),
        color,
        arm,
        cv2.LINE_AA,
    )
    cv2.line(
        img,
        (round(cx + 0.3 * w), shoulder_y),
        (round(x2 - swing * 0.5), round(y1 + 0.5 * h)),
        color,
        arm,
        cv2.LINE_AA,
    )


def draw_stop_sign(
    img: np.ndarray, box: Box, color: Color, *, side: bool = False, phase: float = 0.0
) -> None:
    """A red octagon with a white rim and a white bar for the lettering."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    r = (x2 - x1) / 2
    angles = np.radians(22.5 + 45 * np.arange(8))
    outer = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], axis=1)
    inner = np.stack([cx + 0.85 * r * np.cos(angles), cy + 0.85 * r * np.sin(angles)], axis=1)
    cv2.fillPoly(img, [np.round(outer * 16).astype(np.int32)], (240, 240, 240), cv2.LINE_AA, 4)
    cv2.fillPoly(img, [np.round(inner * 16).astype(np.int32)], (30, 20, 200), cv2.LINE_AA, 4)
    _rect(img, cx - 0.6 * r, cy - 0.14 * r, cx + 0.6 * r, cy + 0.14 * r, (240, 240, 240))


def draw_traffic_light(
    img: np.ndarray, box: Box, color: Color, *, side: bool = False, phase: float = 0.0
) -> None:
    """A dark lamp housing with red, amber and green lamps; ``phase`` picks the lit one."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    _rect(img, x1, y1, x2, y2, (35, 35, 35))
    lit = int(phase) % 3
    lamps = ((40, 40, 230), (30, 190, 240), (80, 220, 60))
    for i, lamp in enumerate(lamps):
        shade = lamp if i == lit else (lamp[0] // 4, lamp[1] // 4, lamp[2] // 4)
        _ellipse(img, (x1 + x2) / 2, y1 + (i + 0.5) * h / 3, 0.32 * w, 0.32 * w, shade)


Drawer = Callable[..., None]
DRAWERS: dict[str, Drawer] = {
    "person": draw_person,
    "car": draw_car,
    "truck": draw_truck,
    "stop sign": draw_stop_sign,
    "traffic light": draw_traffic_light,
}
