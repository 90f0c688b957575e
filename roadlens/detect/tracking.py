"""Motion-gated multi-object tracking for sparsely sampled road video (numpy in, numpy out).

IoU trackers (SORT, ByteTrack) need a track's predicted box to overlap its next detection.
At 5-10 samples per second a vehicle near a roadside camera moves about its own height
between samples, and a track born on the previous sample has no velocity yet, so its box
does not overlap and the vehicle gets a new id on every sample. `MotionTracker` gates on
predicted motion instead:

* a constant-velocity Kalman filter per track on ``(cx, cy, w, h)`` whose noise is in box
  sizes and seconds, so one configuration serves any sampling rate and any distance; a new
  track starts with a wide velocity prior, so the filter's own uncertainty sets how far it
  may have moved by the next sample;
* association by the Mahalanobis distance of each detection to each track's prediction plus
  the log of the innovation volume (a likelihood: an uncertain track does not steal a
  detection from a certain one), solved optimally with the Jonker-Volgenant algorithm
  (``lap``), and bounded by hard gates: a largest jump in box sizes, no moving backwards
  against a track's observed heading (OC-SORT's observation-centric momentum) and, with
  ``class_groups``, no switching between unrelated classes;
* observation-centric recovery (OC-SORT): a track found again after missed samples is
  re-filtered from its last observation along a straight line to the new one, and a lost
  track whose prediction drifted is matched to a detection overlapping its last box;
* for dashcams, camera-motion compensation: a global similarity transform from sparse
  optical flow outside the detections (BoT-SORT's GMC) moves every track with the view.

`TrackerConfig.for_camera` gives the measured defaults for a ``fixed`` camera and a
``dashcam``; ``roadlens.camera.DEFAULT_SAMPLE_FPS`` the sampling rate each was validated at.

Example:
    >>> import numpy as np
    >>> tracker = MotionTracker(TrackerConfig.for_camera("fixed"), fps=5.0)
    >>> ids = []
    >>> for step in range(4):  # two cars 30 px tall moving 40 px per sample: no overlap
    ...     y = 20.0 + 40.0 * step
    ...     xyxy = np.array([[100, y, 140, y + 30], [300, y, 340, y + 30]], np.float32)
    ...     ids.append(tracker.update(xyxy, np.array([0.9, 0.8]), np.array([2, 2])).tolist())
    >>> ids
    [[1, 2], [1, 2], [1, 2], [1, 2]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import lap
import numpy as np

from roadlens.camera import CAMERA_KINDS

__all__ = [
    "SIMILAR_CLASSES",
    "MotionTracker",
    "TrackerConfig",
    "class_groups",
]

# Class names one object may be labelled with from sample to sample: a vehicle seen as a
# car, then a truck; a bicycle as a motorcycle. `class_groups` maps them to a model's ids.
SIMILAR_CLASSES: tuple[tuple[str, ...], ...] = (("car", "bus", "truck"), ("bicycle", "motorcycle"))


def class_groups(class_names: Mapping[int, str]) -> tuple[tuple[int, ...], ...]:
    """The `SIMILAR_CLASSES` groups of a model's ``{id: name}`` class map, as ids.

    >>> class_groups({1: "bicycle", 2: "car", 3: "motorcycle", 5: "bus", 7: "truck"})
    ((2, 5, 7), (1, 3))
    >>> class_groups({0: "sprite"})
    ()
    """
    ids_of = {name: i for i, name in class_names.items()}
    groups = (tuple(sorted(ids_of[n] for n in names if n in ids_of)) for names in SIMILAR_CLASSES)
    return tuple(g for g in groups if len(g) > 1)


_HISTORY = 4  # observations kept per track: the heading spans up to 3 sample intervals


@dataclass(frozen=True)
class TrackerConfig:
    """Every knob of `MotionTracker`; lengths are in box sizes, times in seconds.

    A box size is the box's width for horizontal terms and its height for vertical ones
    (the square root of its area for distances), so the same setting serves a car 10 px
    away on the horizon and one filling the frame.

    Attributes:
        min_confidence: Detections below this are ignored (never matched, id -1).
        new_track_confidence: Only detections at least this confident start a track.
        min_hits: Matched samples before a track's id is reported (1: from its first sample,
            so a crossing between a track's first two samples still counts).
        confirm_hits: Matched samples before a track may coast through missed samples; a
            younger track's velocity is too uncertain to predict it for long, so it is
            dropped at its first miss (a new one starts when the object is seen again).
        max_lost_s: Seconds a confirmed track is kept without a detection.
        measurement_noise: Standard deviation of a detected box's centre, in box sizes.
        size_noise: Standard deviation of a detected box's width and height, in box sizes.
        initial_speed: Standard deviation of a new track's speed, in box sizes per second:
            how far a track born on the previous sample may have moved (its search radius).
        motion_noise: Random walk of the velocity, in box sizes per second per square root
            of a second (continuous white-noise acceleration): how fast a track may change
            speed or heading, e.g. a vehicle speeding up in perspective as it approaches.
        size_motion_noise: The same for the rate of change of width and height.
        gate: Largest squared Mahalanobis distance (4 degrees of freedom, on the predicted
            centre and size) of a match. Loose, since truncated boxes at the frame's edge
            and class switches change the size: ``max_distance`` bounds the jump.
        max_distance: Largest distance between a track's predicted centre and a detection,
            in box sizes (the smaller of the two boxes): a hard bound however uncertain a
            coasting track has become.
        heading_min_speed: A track whose observed speed (over its last few observations,
            OC-SORT's observation-centric momentum) is at least this, in box sizes per
            second, has a heading: it cannot take a detection behind its last observation.
        heading_tolerance: How far behind its last observation, in box sizes, is still
            jitter and not going back.
        class_switch_cost: Added cost of matching a detection of another class.
        class_groups: Classes one object may be labelled with (e.g. `class_groups` of a model's class map);
            when given, a switch between classes not in one group is forbidden. Empty: any
            switch is allowed at ``class_switch_cost``.
        recovery_iou: A lost track whose prediction matched nothing takes a detection that
            overlaps its last observation by at least this IoU (OC-SORT's observation-
            centric recovery; 0 disables).
        re_update: Re-filter a track found again after misses from its last observation
            along a straight line to the new one (OC-SORT's observation-centric re-update).
        duplicate_iou: A detection overlapping a matched (or a more confident new)
            detection by at least this IoU starts no track: the detector's second box on one
            object (class-aware NMS can keep a car and a truck box on one vehicle).
        camera_motion: Compensate camera motion with a global similarity transform from
            sparse optical flow (reads the frame passed to `MotionTracker.update`).
        camera_motion_width: Frames are shrunk to this width (pixels) for the flow.
    """

    min_confidence: float = 0.1
    new_track_confidence: float = 0.25
    min_hits: int = 1
    confirm_hits: int = 3
    max_lost_s: float = 1.0
    measurement_noise: float = 0.05
    size_noise: float = 0.1
    initial_speed: float = 2.0
    motion_noise: float = 2.0
    size_motion_noise: float = 1.0
    gate: float = 30.0
    max_distance: float = 2.0
    heading_min_speed: float = 0.5
    heading_tolerance: float = 0.5
    class_switch_cost: float = 2.0
    class_groups: tuple[tuple[int, ...], ...] = ()
    recovery_iou: float = 0.3
    re_update: bool = True
    duplicate_iou: float = 0.7
    camera_motion: bool = False
    camera_motion_width: int = 160

    def __post_init__(self) -> None:
        positive = (
            "max_lost_s",
            "measurement_noise",
            "size_noise",
            "initial_speed",
            "gate",
            "max_distance",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"TrackerConfig.{name} must be positive")
        for name in ("motion_noise", "size_motion_noise", "class_switch_cost"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrackerConfig.{name} must not be negative")
        if self.min_hits < 1 or self.confirm_hits < 1:
            raise ValueError("TrackerConfig.min_hits and confirm_hits must be at least 1")
        if self.camera_motion_width < 16:
            raise ValueError("TrackerConfig.camera_motion_width must be at least 16")

    @classmethod
    def for_camera(cls, kind: str, **overrides: Any) -> TrackerConfig:
        """The defaults for a camera kind (one of `CAMERA_KINDS`), with ``overrides``.

        ``fixed``: a camera on a pole or gantry; a track's id is reported from its first
        sample, so a vehicle first detected right at a counting line still counts.
        ``dashcam``: a vehicle's camera; camera-motion compensation on, and a track's id is
        reported from its second matched sample, since a moving view makes more
        single-sample false positives.

        >>> TrackerConfig.for_camera("dashcam").camera_motion
        True
        >>> TrackerConfig.for_camera("fixed", max_lost_s=2.0).max_lost_s
        2.0
        """
        if kind not in CAMERA_KINDS:
            raise ValueError(f"unknown camera kind {kind!r}; one of {', '.join(CAMERA_KINDS)}")
        base = cls() if kind == "fixed" else cls(camera_motion=True, min_hits=2)
        return replace(base, **overrides)


class MotionTracker:
    """Track detections sample by sample; one instance per video stream.

    Args:
        config: The knobs, e.g. ``TrackerConfig.for_camera("dashcam")``.
        fps: Samples per second fed to `update` (the sampling rate, not the video's).

    Example:
        >>> import numpy as np
        >>> tracker = MotionTracker(fps=5.0)
        >>> box = np.array([[10, 10, 50, 40]], np.float32)
        >>> tracker.update(box, np.array([0.9]), np.array([0])).tolist()
        [1]
        >>> tracker.update(box + 4, np.array([0.9]), np.array([0])).tolist()
        [1]
        >>> tracker.update(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0)).tolist()
        []
    """

    def __init__(self, config: TrackerConfig = TrackerConfig(), fps: float = 5.0) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.config = config
        self.fps = float(fps)
        self.dt = 1.0 / self.fps
        self._max_misses = max(1, round(config.max_lost_s * self.fps))
        self._kf = _ConstantVelocity(self.dt, config)
        self._tracks = _Tracks.empty()
        self._next_id = 1
        self._step = 0
        self._group_of = _class_group_lookup(config.class_groups)
        self._camera = _CameraMotion(config.camera_motion_width) if config.camera_motion else None

    @property
    def active_tracks(self) -> int:
        """Tracks currently held (seen, or lost for at most ``max_lost_s``)."""
        return len(self._tracks.ids)

    def reset(self) -> None:
        """Forget every track, e.g. at a scene cut (ids keep counting up, so they stay
        unique per tracker)."""
        self._tracks = _Tracks.empty()
        if self._camera is not None:
            self._camera.reset()

    def update(
        self,
        xyxy: np.ndarray,
        confidence: np.ndarray,
        class_id: np.ndarray,
        image: np.ndarray | None = None,
    ) -> np.ndarray:
        """Advance one sample and return the track id of each input detection.

        Args:
            xyxy: ``(N, 4)`` boxes in pixels.
            confidence: ``(N,)`` detection confidences.
            class_id: ``(N,)`` class ids.
            image: The BGR (or grey) frame; only read with ``camera_motion`` on, where None
                means no compensation for this sample.

        Returns:
            ``(N,)`` int64: a stable positive id per detection, or -1 where the detection
            got no track yet (below ``min_confidence``, a duplicate box, or a track not yet
            seen ``min_hits`` times).
        """
        boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
        conf = np.asarray(confidence, np.float64).reshape(-1)
        cls = np.asarray(class_id).reshape(-1).astype(np.int64, copy=False)
        n = len(boxes)
        if len(conf) != n or len(cls) != n:
            raise ValueError(f"{n} boxes but {len(conf)} confidences and {len(cls)} class ids")
        cfg = self.config
        self._step += 1

        wh = boxes[:, 2:] - boxes[:, :2]
        usable = np.isfinite(boxes).all(1) & (wh > 0).all(1) & (conf >= cfg.min_confidence)
        det = np.flatnonzero(usable)
        z = np.concatenate([(boxes[det, :2] + boxes[det, 2:]) / 2, wh[det]], 1)
        det_conf, det_cls = conf[det], cls[det]

        t = self._tracks
        if self._camera is not None and image is not None:
            warp = self._camera.estimate(image, boxes[det])
            if warp is not None:
                t.warp(warp)
        t.mean, t.cov = self._kf.predict(t.mean, t.cov)

        rows, cols = _assign(self._motion_cost(z, det_cls))
        if cfg.recovery_iou > 0:
            rows, cols = self._recover(rows, cols, z, det_cls)
        self._update_matched(rows, z[cols], det_cls[cols])
        matched_t = np.zeros(len(t.ids), bool)
        matched_t[rows] = True
        t.misses[~matched_t] += 1

        # Drop young tracks at their first miss and old ones lost too long.
        alive = (t.misses == 0) | ((t.misses <= self._max_misses) & (t.hits >= cfg.confirm_hits))
        if not alive.all():
            rows = (np.cumsum(alive) - 1)[rows]  # matched tracks are alive: renumber
            t.keep(alive)

        # Start tracks from the confident leftovers that are not a second box on an object.
        matched_d = np.zeros(len(z), bool)
        matched_d[cols] = True
        births = np.flatnonzero(~matched_d & (det_conf >= cfg.new_track_confidence))
        if len(births) and cfg.duplicate_iou < 1:
            births = births[_not_duplicate(z[births], det_conf[births], z[cols], cfg.duplicate_iou)]
        first_new = len(t.ids)
        if len(births):
            t.append(*self._kf.initiate(z[births]), z[births], det_cls[births], self._step)

        # A track gets its public id once seen min_hits times.
        t_rows = np.concatenate([rows, np.arange(first_new, len(t.ids))])
        d_rows = np.concatenate([cols, births])
        due = (t.ids[t_rows] == 0) & (t.hits[t_rows] >= cfg.min_hits)
        if due.any():
            k = int(due.sum())
            t.ids[t_rows[due]] = np.arange(self._next_id, self._next_id + k)
            self._next_id += k
        out = np.full(n, -1, np.int64)
        ids = t.ids[t_rows]
        out[det[d_rows]] = np.where(ids > 0, ids, -1)
        return out

    # -- association -----------------------------------------------------------------

    def _class_ok(self, track_cls: np.ndarray, det_cls: np.ndarray) -> np.ndarray | bool:
        """``(T, D)`` whether a track of ``track_cls`` may take a detection of ``det_cls``."""
        if self._group_of is None:
            return True
        gt, gd = self._group_of(track_cls), self._group_of(det_cls)
        same = track_cls[:, None] == det_cls[None, :]
        return same | ((gt[:, None] == gd[None, :]) & (gt[:, None] >= 0))

    def _motion_cost(self, z: np.ndarray, det_cls: np.ndarray) -> np.ndarray:
        """``(T, D)`` negative log-likelihood of each detection under each track's
        prediction, ``inf`` where a gate forbids the pair."""
        t, cfg = self._tracks, self.config
        if not len(t.ids) or not len(z):
            return np.zeros((len(t.ids), len(z)))
        r = self._kf.measurement_var(t.mean)
        s = t.cov[:, 0] + r  # innovation variances: the filter's dimensions are independent
        y = z[None, :, :] - t.mean[:, None, :4]
        d2 = (y * y / s[:, None, :]).sum(2)
        # The log innovation volume relative to the measurement noise alone: 0 for a
        # perfectly known track, larger for an uncertain (new or coasting) one.
        volume = np.log(s / r).sum(1)
        cost = d2 + volume[:, None] + cfg.class_switch_cost * (t.cls[:, None] != det_cls[None, :])

        size_t = np.sqrt(np.prod(np.maximum(t.mean[:, 2:4], 1.0), 1))
        size_d = np.sqrt(np.prod(z[:, 2:4], 1))
        jump = np.hypot(y[..., 0], y[..., 1]) / np.minimum(size_t[:, None], size_d[None, :])
        ok = (d2 <= cfg.gate) & (jump <= cfg.max_distance) & self._class_ok(t.cls, det_cls)

        # Observation-centric momentum: a moving track does not go back.
        moving = t.moving
        if moving.any():
            size = np.sqrt(np.prod(np.maximum(t.last_obs[:, 2:], 1.0), 1))
            ahead = z[:, :2] @ t.heading.T - (t.last_obs[:, :2] * t.heading).sum(1)  # (D, T)
            ok &= ~moving[:, None] | (-cfg.heading_tolerance * size[:, None] <= ahead.T)
        return np.where(ok, cost, np.inf)

    def _recover(
        self, rows: np.ndarray, cols: np.ndarray, z: np.ndarray, det_cls: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Add matches of lost tracks to free detections overlapping their last box."""
        t = self._tracks
        lost = np.ones(len(t.ids), bool)
        lost[rows] = False
        lost = np.flatnonzero(lost & (t.misses > 0))
        free = np.ones(len(z), bool)
        free[cols] = False
        free = np.flatnonzero(free)
        if not len(lost) or not len(free):
            return rows, cols
        iou = _iou_xywh(t.last_obs[lost], z[free])
        ok = (iou >= self.config.recovery_iou) & self._class_ok(t.cls[lost], det_cls[free])
        r, c = _assign(np.where(ok, 1.0 - iou, np.inf))
        return np.concatenate([rows, lost[r]]), np.concatenate([cols, free[c]])

    # -- state -----------------------------------------------------------------------

    def _update_matched(self, rows: np.ndarray, z: np.ndarray, cls: np.ndarray) -> None:
        """Filter the matched tracks' observations (re-filtering those found again)."""
        if not len(rows):
            return
        t, kf = self._tracks, self._kf
        if self.config.re_update:
            back = np.flatnonzero(t.misses[rows] > 0)
            if len(back):
                r = rows[back]
                t.mean[r], t.cov[r] = self._re_predict(r, z[back])
        t.mean[rows], t.cov[rows] = kf.update(t.mean[rows], t.cov[rows], z)
        t.snap_mean[rows] = t.mean[rows]
        t.snap_cov[rows] = t.cov[rows]
        t.observe(rows, z, self._step, self.config.heading_min_speed * self.dt)
        t.cls[rows] = cls
        t.hits[rows] += 1
        t.misses[rows] = 0

    def _re_predict(self, rows: np.ndarray, z_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """OC-SORT's re-update, up to the new observation: from the state at the last
        observation, filter one virtual observation per missed sample on the straight
        line to the new one, and predict the present sample."""
        t, kf = self._tracks, self._kf
        gaps = t.misses[rows]
        mean, cov = t.snap_mean[rows], t.snap_cov[rows]
        start = t.last_obs[rows]
        for step in range(1, int(gaps.max()) + 1):
            live = step <= gaps
            m, c = kf.predict(mean[live], cov[live])
            obs = start[live] + (z_new[live] - start[live]) * (step / (gaps[live] + 1.0))[:, None]
            mean[live], cov[live] = kf.update(m, c, obs)
        return kf.predict(mean, cov)


@dataclass
class _Tracks:
    """Struct of arrays, one row per track (``ids`` 0 until reported)."""

    ids: np.ndarray
    mean: np.ndarray  # (T, 8) cx, cy, w, h and their rates (pixels, per second)
    cov: np.ndarray  # (T, 3, 4) per quantity: var(value), cov(value, rate), var(rate)
    snap_mean: np.ndarray  # state right after the last matched observation
    snap_cov: np.ndarray
    last_obs: np.ndarray  # (T, 4) last matched cx, cy, w, h
    hist: np.ndarray  # (T, K, 4) the last K observations, newest first
    hist_step: np.ndarray  # (T, K) sample number of each (-1: none)
    heading: np.ndarray  # (T, 2) unit direction of motion over the history
    moving: np.ndarray  # (T,) whether the track moves fast enough for a heading
    cls: np.ndarray
    hits: np.ndarray
    misses: np.ndarray  # samples since the last match

    @classmethod
    def empty(cls) -> _Tracks:
        return cls(
            ids=np.zeros(0, np.int64),
            mean=np.zeros((0, 8)),
            cov=np.zeros((0, 3, 4)),
            snap_mean=np.zeros((0, 8)),
            snap_cov=np.zeros((0, 3, 4)),
            last_obs=np.zeros((0, 4)),
            hist=np.zeros((0, _HISTORY, 4)),
            hist_step=np.zeros((0, _HISTORY), np.int64),
            heading=np.zeros((0, 2)),
            moving=np.zeros(0, bool),
            cls=np.zeros(0, np.int64),
            hits=np.zeros(0, np.int64),
            misses=np.zeros(0, np.int64),
        )

    def keep(self, mask: np.ndarray) -> None:
        for name in _TRACK_FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def append(
        self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray, cls: np.ndarray, step: int
    ) -> None:
        k = len(z)
        hist = np.zeros((k, _HISTORY, 4))
        hist[:, 0] = z
        hist_step = np.full((k, _HISTORY), -1, np.int64)
        hist_step[:, 0] = step
        new = {
            "ids": np.zeros(k, np.int64),
            "mean": mean,
            "cov": cov,
            "snap_mean": mean,
            "snap_cov": cov,
            "last_obs": z,
            "hist": hist,
            "hist_step": hist_step,
            "heading": np.zeros((k, 2)),
            "moving": np.zeros(k, bool),
            "cls": cls,
            "hits": np.ones(k, np.int64),
            "misses": np.zeros(k, np.int64),
        }
        for name in _TRACK_FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), new[name]]))

    def observe(self, rows: np.ndarray, z: np.ndarray, step: int, min_travel: float) -> None:
        """Record observations ``z`` of tracks ``rows`` at sample ``step``, and update
        their heading: the direction from the oldest kept observation, which counts when
        the track moved at least ``min_travel`` box sizes per sample since then."""
        self.last_obs[rows] = z
        hist = self.hist[rows]
        hist[:, 1:] = hist[:, :-1]
        hist[:, 0] = z
        hist_step = self.hist_step[rows]
        hist_step[:, 1:] = hist_step[:, :-1]
        hist_step[:, 0] = step
        self.hist[rows], self.hist_step[rows] = hist, hist_step
        oldest = (hist_step >= 0).sum(1) - 1
        delta = z[:, :2] - hist[np.arange(len(rows)), oldest, :2]
        dist = np.hypot(delta[:, 0], delta[:, 1])
        size = np.sqrt(np.prod(np.maximum(z[:, 2:], 1.0), 1))
        steps = step - hist_step[np.arange(len(rows)), oldest]
        self.heading[rows] = delta / np.maximum(dist, 1e-9)[:, None]
        self.moving[rows] = (steps > 0) & (dist >= min_travel * size * steps)

    def warp(self, affine: np.ndarray) -> None:
        """Move every track with the camera: ``affine`` (2, 3), a similarity transform,
        maps old pixels to new. Variances scale with it; the few degrees a camera turns
        between samples are ignored for them (the filter keeps x and y independent)."""
        if not len(self.ids):
            return
        a, shift = affine[:, :2], affine[:, 2]
        scale = float(np.sqrt(abs(np.linalg.det(a))))
        for name in ("mean", "snap_mean"):
            m = getattr(self, name).copy()
            m[:, 0:2] = m[:, 0:2] @ a.T + shift
            m[:, 4:6] = m[:, 4:6] @ a.T
            m[:, [2, 3, 6, 7]] *= scale
            setattr(self, name, m)
        self.cov = self.cov * scale**2
        self.snap_cov = self.snap_cov * scale**2
        for name in ("last_obs", "hist"):
            obs = getattr(self, name).copy()
            obs[..., 0:2] = obs[..., 0:2] @ a.T + shift
            obs[..., 2:4] *= scale
            setattr(self, name, obs)
        heading = self.heading @ a.T
        self.heading = heading / np.maximum(np.hypot(heading[:, 0], heading[:, 1]), 1e-9)[:, None]


_TRACK_FIELDS = tuple(f.name for f in fields(_Tracks))


class _ConstantVelocity:
    """Constant-velocity Kalman filter on ``(cx, cy, w, h)`` for many tracks at once.

    Each of the four measured quantities has its own (value, rate) filter: motion, noise
    and measurements never couple them, so the covariance is four 2x2 blocks, kept as
    ``(T, 3, 4)`` arrays (variance of the value, covariance, variance of the rate), and
    every step is a few elementwise numpy operations. Process noise is continuous
    white-noise acceleration, so ``motion_noise`` means the same at any sampling rate;
    every noise term scales with the box (its width for x and w, its height for y and
    h), so one setting serves near and far objects.
    """

    def __init__(self, dt: float, config: TrackerConfig) -> None:
        c = config
        self.dt = dt
        self.r_coef = np.array([c.measurement_noise] * 2 + [c.size_noise] * 2) ** 2
        self.v0_coef = np.array([c.initial_speed] * 2 + [c.initial_speed / 2] * 2) ** 2
        q = np.array([c.motion_noise] * 2 + [c.size_motion_noise] * 2) ** 2
        self.q_coef = np.stack([q * dt**3 / 3, q * dt**2 / 2, q * dt])  # (3, 4)

    @staticmethod
    def _sizes(mean: np.ndarray) -> np.ndarray:
        """``(T, 4)`` box size per measured quantity: w for x and w, h for y and h."""
        wh = np.maximum(mean[:, 2:4], 1.0)
        return np.concatenate([wh, wh], 1)

    def measurement_var(self, mean: np.ndarray) -> np.ndarray:
        """``(T, 4)`` variances of a detection of each track's predicted box."""
        return self._sizes(mean) ** 2 * self.r_coef

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.concatenate([z, np.zeros_like(z)], 1)
        s2 = self._sizes(mean) ** 2
        cov = np.zeros((len(z), 3, 4))
        cov[:, 0] = s2 * self.r_coef
        cov[:, 2] = s2 * self.v0_coef
        return mean, cov

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(mean):
            return mean, cov
        dt = self.dt
        q = self.q_coef * (self._sizes(mean) ** 2)[:, None, :]
        mean = mean.copy()
        mean[:, :4] += dt * mean[:, 4:]
        pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
        return mean, np.stack([pp + dt * (2 * pv + dt * vv), pv + dt * vv, vv], 1) + q

    def update(
        self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if not len(mean):
            return mean, cov
        pp, pv, vv = cov[:, 0], cov[:, 1], cov[:, 2]
        s = pp + self.measurement_var(mean)
        k_value, k_rate = pp / s, pv / s
        innovation = z - mean[:, :4]
        mean = mean + np.concatenate([k_value * innovation, k_rate * innovation], 1)
        return mean, np.stack([(1 - k_value) * pp, (1 - k_value) * pv, vv - k_rate * pv], 1)


def _assign(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal assignment (Jonker-Volgenant, ``lap``) over the finite pairs of ``cost``.

    Leaving a row and a column unmatched costs more than any allowed pair, so the result
    has the most matches possible and, among those, the cheapest.

    >>> rows, cols = _assign(np.array([[1.0, np.inf], [0.5, 2.0]]))
    >>> rows.tolist(), cols.tolist()
    ([0, 1], [0, 1])
    """
    finite = np.isfinite(cost)
    if not finite.any():
        empty = np.zeros(0, np.int64)
        return empty, empty
    limit = float(cost[finite].max()) + 1.0
    _, x, _ = lap.lapjv(cost, extend_cost=True, cost_limit=2.0 * limit * max(cost.shape))
    rows = np.flatnonzero(x >= 0)
    cols = x[rows].astype(np.int64)
    ok = finite[rows, cols]
    return rows[ok], cols[ok]


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of centre-size boxes."""
    a1, a2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b1, b2 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    lt = np.maximum(a1[:, None], b1[None])
    rb = np.minimum(a2[:, None], b2[None])
    inter = np.prod(np.clip(rb - lt, 0, None), 2)
    union = np.prod(a[:, 2:], 1)[:, None] + np.prod(b[:, 2:], 1)[None] - inter
    return inter / np.maximum(union, 1e-9)


def _not_duplicate(z: np.ndarray, conf: np.ndarray, matched: np.ndarray, thr: float) -> np.ndarray:
    """Mask of candidate boxes ``z`` that overlap (IoU >= ``thr``) neither a ``matched``
    box nor a more confident candidate (ties: the earlier one wins)."""
    keep = np.ones(len(z), bool)
    if len(matched):
        keep &= _iou_xywh(z, matched).max(1) < thr
    if len(z) > 1:
        order = np.arange(len(z))
        stronger = (conf[None, :] > conf[:, None]) | (
            (conf[None, :] == conf[:, None]) & (order[None, :] < order[:, None])
        )
        keep &= ~((_iou_xywh(z, z) >= thr) & stronger).any(1)
    return keep


def _class_group_lookup(
    groups: Sequence[Sequence[int]],
) -> Callable[[np.ndarray], np.ndarray] | None:
    """A vectorised ``class id -> group index`` (-1 for none), or None without groups."""
    if not groups:
        return None
    table = {int(c): g for g, members in enumerate(groups) for c in members}
    keys = np.array(sorted(table), np.int64)
    values = np.array([table[k] for k in keys.tolist()], np.int64)

    def lookup(cls: np.ndarray) -> np.ndarray:
        pos = np.clip(np.searchsorted(keys, cls), 0, len(keys) - 1)
        return np.where(keys[pos] == cls, values[pos], -1)

    return lookup


class _CameraMotion:
    """Global camera motion between consecutive samples (BoT-SORT's sparse-flow GMC).

    Corners outside the detections are tracked with pyramidal Lucas-Kanade on a shrunk
    grey frame, and a similarity transform (rotation, uniform scale, translation) is fitted
    to them with RANSAC.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self._prev: np.ndarray | None = None
        self._prev_mask: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = self._prev_mask = None

    def estimate(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray | None:
        """The ``(2, 3)`` affine from the previous frame's pixels to this one's, or None
        (first frame, a different frame size, or too little texture to tell)."""
        import cv2

        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        k = max(1.0, gray.shape[1] / self.width)
        if k > 1:
            size = (round(gray.shape[1] / k), round(gray.shape[0] / k))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        h, w = gray.shape
        mask = np.zeros_like(gray)
        mask[int(0.02 * h) : int(0.98 * h), int(0.02 * w) : int(0.98 * w)] = 255
        for x1, y1, x2, y2 in np.clip(boxes / k, 0, None).astype(np.int64).tolist():
            mask[y1:y2, x1:x2] = 0
        prev, prev_mask = self._prev, self._prev_mask
        self._prev, self._prev_mask = gray, mask
        if prev is None or prev.shape != gray.shape:
            return None
        corners = cv2.goodFeaturesToTrack(
            prev, maxCorners=200, qualityLevel=0.01, minDistance=3, blockSize=3, mask=prev_mask
        )
        if corners is None or len(corners) < 10:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(prev, gray, corners, None)
        ok = status.reshape(-1) == 1
        if ok.sum() < 10:
            return None
        affine, inliers = cv2.estimateAffinePartial2D(
            corners[ok], moved[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0
        )
        if affine is None or inliers is None or inliers.sum() < 10:
            return None
        affine = affine.astype(np.float64)
        affine[:, 2] *= k
        return affine
