"""A pinhole camera over a flat ground plane, shared by the dashcam and roadside scenes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """A camera ``height_m`` above the ground, pitched down by ``pitch_deg``.

    World axes: ``x`` to the right, ``y`` up, ``z`` forward (metres). The camera sits at
    ``(0, height_m, 0)``.

    Example:
        >>> cam = PinholeCamera(width=640, height=360, focal_px=500, height_m=1.4)
        >>> u, v = cam.project(np.array([0.0]), np.array([0.0]), np.array([10.0]))
        >>> float(u[0]), round(float(v[0]), 1)
        (320.0, 250.0)
    """

    width: int
    height: int
    focal_px: float
    height_m: float
    pitch_deg: float = 0.0

    @property
    def horizon_v(self) -> float:
        """Image row of the horizon."""
        return self.height / 2 - self.focal_px * np.tan(np.radians(self.pitch_deg))

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points to pixel coordinates ``(u, v)``; ``v`` grows downwards."""
        pitch = np.radians(self.pitch_deg)
        depth = -(y - self.height_m) * np.sin(pitch) + z * np.cos(pitch)
        down = -(y - self.height_m) * np.cos(pitch) - z * np.sin(pitch)
        depth = np.maximum(depth, 1e-3)
        u = self.width / 2 + self.focal_px * x / depth
        v = self.height / 2 + self.focal_px * down / depth
        return u, v

    def depth(self, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Distance along the optical axis, for painter's ordering and scaling."""
        pitch = np.radians(self.pitch_deg)
        return -(y - self.height_m) * np.sin(pitch) + z * np.cos(pitch)

    def billboard(
        self, x: float, z: float, width_m: float, bottom_m: float, top_m: float
    ) -> tuple[float, float, float, float]:
        """Pixel box ``(x1, y1, x2, y2)`` of an upright rectangle facing the camera."""
        xs = np.array([x - width_m / 2, x + width_m / 2, x - width_m / 2, x + width_m / 2])
        ys = np.array([bottom_m, bottom_m, top_m, top_m])
        zs = np.full(4, z)
        u, v = self.project(xs, ys, zs)
        return float(u.min()), float(v.min()), float(u.max()), float(v.max())
