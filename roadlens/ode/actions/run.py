"""The per-video actions stage: each rule's capture and actions, then the events written.

:func:`run_actions` validates every rule (:mod:`~roadlens.ode.actions.specs`) and applies
capture (:mod:`~roadlens.ode.actions.snapshots`), record (:mod:`~roadlens.ode.actions.clips`),
annotate (:mod:`~roadlens.ode.actions.render`), notify (:mod:`~roadlens.ode.actions.notify`)
and custom (:mod:`~roadlens.ode.actions.plugins`) to the rule's events;
:func:`write_events_with_media` runs it for one video and writes that video's ``events`` file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from roadlens.lake import EVENTS_TABLE, ParquetLake, WriteStats
from roadlens.ode.actions.clips import record_clip
from roadlens.ode.actions.media import annotated_path, media_paths, prune_media, with_media
from roadlens.ode.actions.notify import notify_from_spec
from roadlens.ode.actions.plugins import custom
from roadlens.ode.actions.render import annotate
from roadlens.ode.actions.snapshots import capture
from roadlens.ode.actions.specs import AnnotateSpec, CustomSpec, NotifySpec, RecordSpec, plan_rules
from roadlens.schema import EVENTS, conform


def run_actions(
    events: pd.DataFrame,
    detections: pd.DataFrame,
    frames: pd.DataFrame,
    rules: object,
    *,
    lake_root: str | Path,
    date: str,
    video_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Apply each rule's ``capture`` and ``actions`` to that rule's events.

    Every rule's configuration is validated first
    (:class:`~roadlens.ode.actions.specs.ActionConfigError` names the rule and field), so a
    bad rule fails before any side effect. Returns the events with ``media_paths`` filled
    (frame, crop, clip, annotated video). Notifications use the sent-ledger under
    ``<lake>/media/events/date=<date>/<video_id>/_notified/``. Secrets (``password_env``,
    ``headers_env``) are read from ``env`` (default ``os.environ``).

    >>> events = run_actions(events, detections, frames, rules, lake_root=lake.root,
    ...                      date=record.capture_date, video_path=record.path)  # doctest: +SKIP
    """
    plans = plan_rules(rules)
    env = os.environ if env is None else env
    areas = getattr(rules, "areas", None)
    out = events.copy()
    if "media_paths" not in out.columns:
        out["media_paths"] = [[] for _ in range(len(out))]
    ledger_dir = ParquetLake(lake_root).event_media_ledger_dir(date)
    duration = None
    for rule_id, plan in plans.items():
        mine = out[out["rule_id"] == rule_id]
        if mine.empty:
            continue
        added: dict[str, list[str]] = {}
        if plan.capture is not None and (plan.capture.frame or plan.capture.crop):
            done = capture(
                mine,
                detections,
                frames,
                root=lake_root,
                date=date,
                frame=plan.capture.frame,
                crop=plan.capture.crop,
                margin=plan.capture.margin,
                jpeg_quality=plan.capture.jpeg_quality,
                video_path=video_path,
            )
            added.update(zip(done["event_id"], done["media_paths"], strict=True))
        for action in plan.actions:
            spec = action.spec
            if isinstance(spec, RecordSpec):
                if video_path is None:
                    raise ValueError(f"rule {rule_id!r} field 'actions': record needs video_path")
                if duration is None:
                    from roadlens.video import probe

                    duration = probe(video_path).duration_s
                for ev in mine[["event_id", "video_id", "pts_sec"]].itertuples(index=False):
                    clip = media_paths(lake_root, date, ev.video_id, ev.event_id).clip
                    record_clip(
                        video_path,
                        ev.pts_sec,
                        pre_s=spec.pre_s,
                        post_s=spec.post_s,
                        out=clip,
                        exact=spec.exact,
                        duration_s=duration,
                    )
                    added.setdefault(ev.event_id, []).append(str(clip))
            elif isinstance(spec, AnnotateSpec):
                for video_id, group in mine.groupby("video_id"):
                    target = annotated_path(lake_root, date, video_id, rule_id)
                    stored = frames[frames["video_id"] == video_id]
                    # Sources that keep no JPEGs are drawn over the decoded video itself.
                    kept = len(stored) and stored.get("image_path", pd.Series()).notna().all()
                    annotate(
                        stored if kept or video_path is None else video_path,
                        detections[detections["video_id"] == video_id],
                        group,
                        target,
                        areas=areas if spec.areas else None,
                        counters=spec.counters,
                    )
                    for eid in group["event_id"]:
                        added.setdefault(eid, []).append(str(target))
            elif isinstance(spec, NotifySpec):
                notify_from_spec(mine, spec, env, ledger_dir)
            elif isinstance(spec, CustomSpec):
                result = custom(mine, function=spec.function, **spec.params)
                if isinstance(result, pd.DataFrame) and {"event_id", "media_paths"} <= set(result):
                    for eid, paths in zip(result["event_id"], result["media_paths"], strict=True):
                        added.setdefault(eid, []).extend(list(paths))
        out = with_media(out, added)
    return out


def write_events_with_media(
    lake: ParquetLake,
    record: Any,
    events: pa.Table,
    rules: object,
    *,
    detections: pd.DataFrame,
    frames: pd.DataFrame,
    env: Mapping[str, str] | None = None,
) -> tuple[WriteStats, dict[str, object]]:
    """Run each rule's capture and actions (:func:`run_actions`) for one video's ``events``,
    write them as the video's ``events`` file with ``media_paths`` filled (the table's
    metadata kept), and return the write and what the media step did.

    ``record`` is the video's :class:`~roadlens.registry.VideoRecord` (its ``capture_date``
    is the media date, its ``path`` the source for clips). After the write, media files in
    the video's media folder that no current event references (events a rule change
    removed) are deleted (:func:`~roadlens.ode.actions.media.prune_media`); the
    ``_notified/`` ledger stays, so nothing is notified twice. ``extra["media_removed"]``
    counts them.

    >>> stats, extra = write_events_with_media(lake, record, events, rules,
    ...     detections=detections, frames=frames)  # doctest: +SKIP
    >>> extra["media_files"]  # doctest: +SKIP
    12
    """
    out = run_actions(
        events.to_pandas(),
        detections,
        frames,
        rules,
        lake_root=lake.root,
        date=record.capture_date,
        video_path=record.path,
        env=env,
    )
    table = conform(pa.Table.from_pandas(out, preserve_index=False), EVENTS)
    table = table.replace_schema_metadata(events.schema.metadata or table.schema.metadata)
    stats = lake.write_video(
        EVENTS_TABLE,
        table,
        date=record.capture_date,
        source_id=record.source_id,
        video_id=record.video_id,
    )
    files = sorted({p for paths in out["media_paths"] for p in paths})
    # Events a rule change removed leave their files behind: drop what no event references,
    # now that the new media and the table naming them are written.
    folder = lake.event_media_dir(record.capture_date, record.video_id)
    removed = prune_media(folder, files)
    return stats, {
        "media_files": len(files),
        "media_removed": len(removed),
        "events_with_media": int(sum(bool(len(p)) for p in out["media_paths"])),
        "media_dir": str(folder),
    }
