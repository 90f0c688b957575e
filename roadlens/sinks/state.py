"""A local manifest of what a sink last wrote, for sinks that cannot be queried.

A broker (MQTT, RabbitMQ, Kafka) keeps no record a writer can read back, so such a sink
answers :meth:`~roadlens.sinks.base.Sink.committed` from small JSON files on local disk:
one per (sink, table, video), written only after every message of the write was
acknowledged, and replaced atomically (:func:`roadlens.atomic.write_text_atomic`) so a
crash never leaves a half-written entry.

The folder is scoped to the destination (broker address, topic prefix or exchange), so
pointing a sink at another broker does not claim videos that were only sent elsewhere.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     manifest = LocalManifest(tmp, "mqtt", scope="127.0.0.1:1883/roadlens")
    ...     path = manifest.put("events", "veh-01--clip", export_id="run-1", fingerprint="ab12", rows=3)
    ...     committed = manifest.get("events", ["veh-01--clip", "other"])
    ...     where = path.relative_to(tmp).as_posix()
    >>> committed
    {'veh-01--clip': 'ab12'}
    >>> where
    'mqtt/127.0.0.1_1883_roadlens-f8e891d7/events/veh-01--clip.json'
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from roadlens.atomic import write_text_atomic
from roadlens.lake import safe_segment
from roadlens.settings import roadlens_home

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_state_dir() -> Path:
    """``$ROADLENS_HOME/sink-state`` (``.roadlens/sink-state`` when ROADLENS_HOME is unset)."""
    return roadlens_home() / "sink-state"


def scope_key(scope: str) -> str:
    """A readable, path-safe and collision-free folder name for ``scope``.

    >>> scope_key("127.0.0.1:1883/roadlens")
    '127.0.0.1_1883_roadlens-f8e891d7'
    """
    readable = _UNSAFE.sub("_", scope).strip("._-")[:60] or "default"
    digest = hashlib.blake2b(scope.encode(), digest_size=4).hexdigest()
    return f"{readable}-{digest}"


class LocalManifest:
    """One JSON file per (table, video) under ``root/<sink>/<scope>/<table>/``."""

    def __init__(self, root: str | Path, sink: str, *, scope: str = "") -> None:
        self.folder = Path(root) / safe_segment(sink, "sink")
        if scope:
            self.folder = self.folder / scope_key(scope)

    def path(self, table: str, video_id: str) -> Path:
        return (
            self.folder
            / safe_segment(table, "table")
            / f"{safe_segment(video_id, 'video_id')}.json"
        )

    def entry(self, table: str, video_id: str) -> dict[str, object] | None:
        """The whole entry of one video, or None when there is none (or it is unreadable)."""
        try:
            return json.loads(self.path(table, video_id).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            # An unreadable entry is treated as "not committed": the video is sent again,
            # which at-least-once consumers tolerate; claiming it was sent would lose data.
            return None

    def get(self, table: str, video_ids: Sequence[str]) -> dict[str, str]:
        """``{video_id: fingerprint}`` for each of ``video_ids`` that has an entry."""
        found: dict[str, str] = {}
        for video_id in video_ids:
            entry = self.entry(table, video_id)
            if entry is not None:
                found[video_id] = str(entry.get("fingerprint", ""))
        return found

    def put(
        self,
        table: str,
        video_id: str,
        *,
        export_id: str,
        fingerprint: str,
        rows: int,
        **extra: object,
    ) -> Path:
        """Record a completed write of ``video_id``, replacing any earlier entry atomically."""
        path = self.path(table, video_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "table": table,
            "video_id": video_id,
            "export_id": export_id,
            "fingerprint": fingerprint,
            "rows": rows,
            "written_at": datetime.now(UTC).isoformat(),
            **extra,
        }
        return write_text_atomic(path, json.dumps(entry, sort_keys=True))

    def remove(self, table: str, video_id: str) -> bool:
        """Forget ``video_id`` (True when there was an entry)."""
        try:
            self.path(table, video_id).unlink()
        except FileNotFoundError:
            return False
        return True
