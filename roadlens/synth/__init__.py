"""Procedural road scenes with ground truth and GPS tracks, for demos, tests and training."""

from roadlens.synth.dataset import DatasetSpec, build_yolo_dataset
from roadlens.synth.render import SynthClip, gps_track, render_clip, render_drive_set, write_gpx
from roadlens.synth.scene import Scene, SceneFrame
from roadlens.synth.sprites import CLASS_IDS, CLASS_NAMES

__all__ = [
    "CLASS_IDS",
    "CLASS_NAMES",
    "DatasetSpec",
    "Scene",
    "SceneFrame",
    "SynthClip",
    "build_yolo_dataset",
    "gps_track",
    "render_clip",
    "render_drive_set",
    "write_gpx",
]
