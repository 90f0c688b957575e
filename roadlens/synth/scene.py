"""Procedural road scenes with per-frame ground truth.

Two views:

* ``dashcam``: a forward-facing camera in a moving car on a three-lane road; cars and
  trucks drive in the lanes, people walk on the pavements, stop signs and traffic lights
  stand at the roadside and come towards the camera with plausible perspective.
* ``roadside``: a fixed camera above a road that runs across the picture, with a
  crosswalk in the middle; cars and trucks cross from side to side, people walk over
  the crosswalk and along the pavements (for zone and line rules).

Everything is deterministic by seed.

Example:
    >>> scene = Scene.create("dashcam", seed=1)
    >>> frame = next(scene.frames(seconds=1.0, fps=10))
    >>> frame.image.shape, frame.boxes.columns[:3].tolist()
    ((360, 640, 3), ['frame_number', 'pts_sec', 'track_id'])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import pandas as pd

from roadlens.synth.camera import PinholeCamera
from roadlens.synth.sprites import (
    CAR_COLORS,
    CLASS_IDS,
    CLOTH_COLORS,
    DRAWERS,
    TRUCK_COLORS,
)

View = Literal["dashcam", "roadside"]

# Sizes in metres: (width seen from behind, width seen from the side, height above ground,
# height of the object's bottom). Signs sit on poles.
SIZES: dict[str, tuple[float, float, float, float]] = {
    "car": (1.8, 4.4, 1.5, 0.0),
    "truck": (2.5, 7.5, 3.4, 0.0),
    "person": (0.55, 0.55, 1.75, 0.0),
    "stop sign": (0.75, 0.75, 2.85, 2.1),
    "traffic light": (0.38, 0.38, 4.3, 3.3),
}
MIN_BOX_PX = 8.0
MIN_VISIBLE = 0.45


@dataclass
class Actor:
    """One road user or sign; positions in metres, velocities in m/s."""

    actor_id: int
    class_name: str
    x: float
    z: float
    vx: float
    vz: float
    color: tuple[int, int, int]
    side_view: bool = False
    phase: float = 0.0
    phase_rate: float = 0.0
    pole: bool = False


@dataclass
class SceneFrame:
    """A rendered frame and the ground-truth boxes of the objects visible in it."""

    frame_number: int
    pts_sec: float
    image: np.ndarray
    boxes: pd.DataFrame


@dataclass
class Scene:
    """A deterministic procedural scene; iterate :meth:`frames` to render it."""

    view: View
    seed: int
    camera: PinholeCamera
    rng: np.random.Generator
    actors: list[Actor] = field(default_factory=list)
    brightness: float = 1.0
    noise_sigma: float = 0.0
    ego_speed_mps: float = 14.0
    _next_id: int = 1
    _travelled_m: float = 0.0

    @classmethod
    def create(
        cls,
        view: View = "dashcam",
        *,
        seed: int = 0,
        width: int = 640,
        height: int = 360,
        vary_conditions: bool = False,
    ) -> Scene:
        """A scene of ``view`` at ``width``x``height``; ``vary_conditions`` alters light and noise."""
        if view not in ("dashcam", "roadside"):
            raise ValueError(f"unknown synth view {view!r}: use 'dashcam' or 'roadside'")
        rng = np.random.default_rng(seed)
        if view == "dashcam":
            camera = PinholeCamera(width, height, focal_px=0.8 * width, height_m=1.4, pitch_deg=2.0)
        else:
            camera = PinholeCamera(
                width, height, focal_px=0.9 * width, height_m=7.0, pitch_deg=13.0
            )
        scene = cls(view=view, seed=seed, camera=camera, rng=rng)
        if vary_conditions:
            scene.brightness = float(rng.uniform(0.55, 1.15))
            scene.noise_sigma = float(rng.uniform(0.0, 7.0))
        scene.ego_speed_mps = float(rng.uniform(10.0, 22.0)) if view == "dashcam" else 0.0
        scene._populate()
        return scene

    # -- actors -------------------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _spawn(self, z_range: tuple[float, float]) -> None:
        rng = self.rng
        if self.view == "dashcam":
            kind = rng.choice(
                ["car", "truck", "person", "stop sign", "traffic light"],
                p=[0.4, 0.15, 0.2, 0.12, 0.13],
            )
            z = float(rng.uniform(*z_range))
            if kind in ("car", "truck"):
                lane = float(rng.choice([-3.5, 0.0, 3.5]))
                speed = self.ego_speed_mps * float(rng.uniform(0.6, 1.15))
                if lane == 0.0:
                    z = max(z, 14.0)
                    speed = self.ego_speed_mps * float(rng.uniform(0.97, 1.08))
                colors = CAR_COLORS if kind == "car" else TRUCK_COLORS
                color = colors[int(rng.integers(len(colors)))]
                self.actors.append(
                    Actor(
                        self._new_id(),
                        str(kind),
                        lane + float(rng.normal(0, 0.2)),
                        z,
                        0.0,
                        speed,
                        color,
                    )
                )
            elif kind == "person":
                x = float(rng.choice([-1, 1]) * rng.uniform(6.0, 7.5))
                self.actors.append(
                    Actor(
                        self._new_id(),
                        "person",
                        x,
                        z,
                        0.0,
                        float(rng.choice([-1.4, 1.4])),
                        CLOTH_COLORS[int(rng.integers(len(CLOTH_COLORS)))],
                        phase_rate=6.0,
                    )
                )
            else:
                x = float(rng.uniform(6.0, 7.0)) * (
                    1 if kind == "stop sign" else float(rng.choice([-1, 1]))
                )
                self.actors.append(
                    Actor(
                        self._new_id(),
                        str(kind),
                        x,
                        z,
                        0.0,
                        0.0,
                        (0, 0, 0),
                        phase=float(rng.integers(3)),
                        pole=True,
                    )
                )
            return
        kind = rng.choice(["car", "truck", "person"], p=[0.5, 0.15, 0.35])
        half_width = 34.0 * self.camera.width / (2 * self.camera.focal_px) + 6.0
        if kind in ("car", "truck"):
            lane = int(rng.integers(4))
            direction = 1.0 if lane < 2 else -1.0
            z = 19.25 + 2.5 * lane
            colors = CAR_COLORS if kind == "car" else TRUCK_COLORS
            self.actors.append(
                Actor(
                    self._new_id(),
                    str(kind),
                    -direction * half_width,
                    z,
                    direction * float(rng.uniform(7.0, 14.0)),
                    0.0,
                    colors[int(rng.integers(len(colors)))],
                    side_view=True,
                )
            )
        elif rng.random() < 0.6:
            direction = float(rng.choice([-1.0, 1.0]))
            self.actors.append(
                Actor(
                    self._new_id(),
                    "person",
                    float(rng.uniform(-1.5, 1.5)),
                    23.0 - direction * 7.5,
                    0.0,
                    direction * float(rng.uniform(1.1, 1.7)),
                    CLOTH_COLORS[int(rng.integers(len(CLOTH_COLORS)))],
                    phase_rate=6.0,
                )
            )
        else:
            direction = float(rng.choice([-1.0, 1.0]))
            self.actors.append(
                Actor(
                    self._new_id(),
                    "person",
                    -direction * half_width,
                    float(rng.choice([16.8, 29.2])),
                    direction * float(rng.uniform(1.1, 1.7)),
                    0.0,
                    CLOTH_COLORS[int(rng.integers(len(CLOTH_COLORS)))],
                    phase_rate=6.0,
                )
            )

    def _populate(self) -> None:
        count = 7 if self.view == "dashcam" else 5
        for _ in range(count):
            if self.view == "dashcam":
                self._spawn((10.0, 90.0))
            else:
                self._spawn((0.0, 0.0))
                actor = self.actors[-1]
                # Start part-way through the crossing so the first frames are not empty.
                progress = float(self.rng.uniform(0.1, 0.9))
                if actor.vx:
                    actor.x = actor.x * (1 - 2 * progress)
                else:
                    actor.z = actor.z + np.sign(actor.vz) * 15.0 * progress

    def _step(self, dt: float) -> None:
        for actor in self.actors:
            actor.x += actor.vx * dt
            actor.z += (actor.vz - self.ego_speed_mps) * dt
            actor.phase += actor.phase_rate * dt
        if self.view == "dashcam":
            self._travelled_m += self.ego_speed_mps * dt
            self.actors = [a for a in self.actors if 3.0 < a.z < 130.0]
            if self.rng.random() < 1.6 * dt:
                self._spawn((95.0, 120.0))
        else:
            limit = 34.0 * self.camera.width / (2 * self.camera.focal_px) + 8.0
            self.actors = [a for a in self.actors if abs(a.x) < limit and 14.0 < a.z < 32.0]
            if self.rng.random() < 0.9 * dt:
                self._spawn((0.0, 0.0))

    # -- drawing ------------------------------------------------------------------------

    def _background(self) -> np.ndarray:
        cam = self.camera
        w, h = cam.width, cam.height
        img = np.empty((h, w, 3), dtype=np.uint8)
        horizon = int(np.clip(cam.horizon_v, 0, h))
        sky_top, sky_low = np.array([200, 150, 90]), np.array([235, 215, 190])
        ramp = np.linspace(0, 1, max(horizon, 1))[:, None]
        img[:horizon] = (sky_top * (1 - ramp) + sky_low * ramp).astype(np.uint8)[:, None, :]
        img[horizon:] = (70, 120, 80)

        def ground_poly(x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
            xs = np.array([x0, x1, x1, x0])
            zs = np.array([z0, z0, z1, z1])
            u, v = cam.project(xs, np.zeros(4), zs)
            return np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)

        if self.view == "dashcam":
            cv2.fillPoly(img, [ground_poly(-9.0, 9.0, 1.0, 400.0)], (150, 150, 145), cv2.LINE_AA, 4)
            cv2.fillPoly(img, [ground_poly(-5.6, 5.6, 1.0, 400.0)], (95, 95, 95), cv2.LINE_AA, 4)
            for x in (-5.4, 5.4):
                cv2.fillPoly(
                    img,
                    [ground_poly(x - 0.1, x + 0.1, 1.0, 400.0)],
                    (235, 235, 235),
                    cv2.LINE_AA,
                    4,
                )
        else:
            cv2.fillPoly(img, [ground_poly(-80, 80, 15.5, 30.5)], (150, 150, 145), cv2.LINE_AA, 4)
            cv2.fillPoly(img, [ground_poly(-80, 80, 18.0, 28.0)], (95, 95, 95), cv2.LINE_AA, 4)
            cv2.fillPoly(img, [ground_poly(-80, 80, 22.9, 23.1)], (40, 200, 230), cv2.LINE_AA, 4)
            for x in np.arange(-2.0, 2.0, 0.8):
                cv2.fillPoly(
                    img, [ground_poly(x, x + 0.45, 18.0, 28.0)], (235, 235, 235), cv2.LINE_AA, 4
                )
            for x in np.arange(-60.0, 60.0, 9.0):
                for z0 in (20.4, 25.4):
                    if abs(x) > 4:
                        cv2.fillPoly(
                            img,
                            [ground_poly(x, x + 3.0, z0, z0 + 0.15)],
                            (235, 235, 235),
                            cv2.LINE_AA,
                            4,
                        )
            for x in np.arange(-40.0, 40.0, 13.0):
                self._draw_pole(img, x + 3.0, 31.5, 6.0, (110, 110, 110))
        return img

    def _draw_pole(
        self, img: np.ndarray, x: float, z: float, top: float, color: tuple[int, int, int]
    ) -> None:
        u, v = self.camera.project(np.array([x, x]), np.array([0.0, top]), np.array([z, z]))
        thickness = max(1, round(0.08 * self.camera.focal_px / max(z, 1.0)))
        cv2.line(
            img,
            (round(u[0]), round(v[0])),
            (round(u[1]), round(v[1])),
            color,
            thickness,
            cv2.LINE_AA,
        )

    def _draw_lane_dashes(self, img: np.ndarray) -> None:
        cam = self.camera
        offset = self._travelled_m % 12.0
        starts = np.arange(-offset, 160.0, 12.0)
        starts = starts[starts + 3.0 > 1.5]
        for x in (-1.75, 1.75):
            for z0 in starts:
                z0c, z1 = max(z0, 1.5), z0 + 3.0
                xs = np.array([x - 0.08, x + 0.08, x + 0.08, x - 0.08])
                zs = np.array([z0c, z0c, z1, z1])
                u, v = cam.project(xs, np.zeros(4), zs)
                pts = np.round(np.stack([u, v], axis=1) * 16).astype(np.int32)
                cv2.fillPoly(img, [pts], (235, 235, 235), cv2.LINE_AA, 4)
        # Roadside poles give motion cues; they are not a labelled class.
        for z0 in np.arange(-(self._travelled_m % 25.0), 160.0, 25.0):
            if z0 > 4.0:
                self._draw_pole(img, -8.5, float(z0), 5.0, (90, 90, 90))

    def frames(self, *, seconds: float, fps: float) -> Iterator[SceneFrame]:
        """Render ``seconds`` of the scene at ``fps``; each frame carries its truth boxes."""
        background = self._background()
        count = round(seconds * fps)
        dt = 1.0 / fps
        for frame_number in range(count):
            img = background.copy()
            if self.view == "dashcam":
                self._draw_lane_dashes(img)
            yield SceneFrame(
                frame_number, frame_number * dt, *self._draw_actors(img, frame_number, dt)
            )
            self._step(dt)

    def _draw_actors(
        self, img: np.ndarray, frame_number: int, dt: float
    ) -> tuple[np.ndarray, pd.DataFrame]:
        cam = self.camera
        h, w = cam.height, cam.width
        ordered = sorted(self.actors, key=lambda a: -float(cam.depth(np.array(0.0), np.array(a.z))))
        owner = np.zeros((h, w), dtype=np.int32)
        placed: list[tuple[Actor, tuple[float, float, float, float], int]] = []
        for actor in ordered:
            back_w, side_w, top, bottom = SIZES[actor.class_name]
            width_m = side_w if actor.side_view else back_w
            box = cam.billboard(actor.x, actor.z, width_m, bottom, top)
            x1, y1, x2, y2 = box
            if x2 < 0 or x1 >= w or y2 < 0 or y1 >= h:
                continue
            if actor.pole:
                self._draw_pole(img, actor.x, actor.z, bottom + 0.05, (100, 100, 100))
            DRAWERS[actor.class_name](
                img, box, actor.color, side=actor.side_view, phase=actor.phase
            )
            cx1, cy1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
            cx2, cy2 = min(int(np.ceil(x2)), w), min(int(np.ceil(y2)), h)
            # Visibility counts occlusion within the frame; truncated objects stay labelled,
            # as in real datasets, so a truck half out of the picture is still a truck.
            area = max((cx2 - cx1) * (cy2 - cy1), 1)
            owner[cy1:cy2, cx1:cx2] = actor.actor_id
            placed.append(
                (actor, (max(x1, 0.0), max(y1, 0.0), min(x2, w - 1.0), min(y2, h - 1.0)), area)
            )
        rows = []
        ids, counts = np.unique(owner, return_counts=True)
        visible_px = dict(zip(ids.tolist(), counts.tolist(), strict=True))
        for actor, (x1, y1, x2, y2), area in placed:
            visible = visible_px.get(actor.actor_id, 0) / area
            if visible < MIN_VISIBLE or (y2 - y1) < MIN_BOX_PX or (x2 - x1) < 3.0:
                continue
            rows.append(
                (
                    actor.actor_id,
                    CLASS_IDS[actor.class_name],
                    actor.class_name,
                    x1,
                    y1,
                    x2,
                    y2,
                    min(visible, 1.0),
                )
            )
        if self.brightness != 1.0 or self.noise_sigma > 0:
            out = img.astype(np.float32) * self.brightness
            if self.noise_sigma > 0:
                out += self.rng.normal(0.0, self.noise_sigma, out.shape).astype(np.float32)
            img = np.clip(out, 0, 255).astype(np.uint8)
        boxes = pd.DataFrame(
            rows,
            columns=["track_id", "class_id", "class_name", "x1", "y1", "x2", "y2", "visibility"],
        )
        boxes.insert(0, "pts_sec", frame_number * dt)
        boxes.insert(0, "frame_number", frame_number)
        boxes = boxes[
            [
                "frame_number",
                "pts_sec",
                "track_id",
                "class_id",
                "class_name",
                "x1",
                "y1",
                "x2",
                "y2",
                "visibility",
            ]
        ]
        return img, boxes
