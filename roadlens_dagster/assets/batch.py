"""Run configuration shared by the spine assets: which videos of the date to process."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from roadlens.pipeline import StageOutcome

SPINE_ASSETS = ("videos", "frames", "raw_detections", "detections")


class VideoBatch(dg.Config):
    """The micro-batch: ``paths`` to register and/or ``video_ids`` to process.

    Empty lists mean the whole date: every ready file of the date in the landing folder
    is registered, and every registered video that is not done yet is processed
    (all of them with ``force``).
    """

    paths: list[str] = []
    video_ids: list[str] = []
    force: bool = False
    source_id: str = ""
    gps: str = ""
    sample_fps: float = 0.0
    camera: str = ""


def batch_run_config(
    video_ids: list[str],
    paths: Iterable[str] = (),
    *,
    force: bool = False,
    source_id: str = "",
    gps: str = "",
    sample_fps: float = 0.0,
    camera: str = "",
    assets: Iterable[str] = SPINE_ASSETS,
) -> dict:
    """Run config that points every asset of the run (default: the spine) at one micro-batch."""
    batch = {
        "paths": list(paths),
        "video_ids": list(video_ids),
        "force": force,
        "source_id": source_id,
        "gps": gps,
        "sample_fps": sample_fps,
        "camera": camera,
    }
    return {"ops": {name: {"config": batch} for name in assets}}


def outcome_metadata(outcomes: list[StageOutcome], **totals: object) -> dict[str, dg.MetadataValue]:
    """Materialization metadata: totals plus a per-video table of rows, seconds and extras."""
    per_video = {
        o.video_id: {
            "rows": o.rows,
            "seconds": round(o.seconds, 3),
            **{k: v for k, v in o.extra.items() if k != "warnings"},
        }
        for o in outcomes
    }
    meta: dict[str, dg.MetadataValue] = {
        "videos": dg.MetadataValue.int(len(outcomes)),
        "rows": dg.MetadataValue.int(sum(o.rows for o in outcomes)),
        "seconds": dg.MetadataValue.float(round(sum((o.seconds for o in outcomes), 0.0), 3)),
        "per_video": dg.MetadataValue.json(per_video),
    }
    files = [str(o.write.path) for o in outcomes if o.write is not None]
    if files:
        meta["files"] = dg.MetadataValue.json(files)
    for key, value in totals.items():
        meta[key] = (
            dg.MetadataValue.json(value)
            if isinstance(value, dict | list)
            else dg.MetadataValue.text(str(value))
        )
    return meta
