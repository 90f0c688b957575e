"""Start and stop live sources' recorders inside the server process.

Each started source gets one :class:`roadlens.live.Recorder` (a background thread driving
ffmpeg) writing chunks to ``<landing>/<source_id>/``, where the landing sensor picks them
up. The status returned by the API is always read from the recorder's status file
(``_status.json``, rewritten every heartbeat), so it is also right for a recorder that
``roadlens record`` runs in another process.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from roadlens.live import Recorder, RecorderConfig, RecorderState, RecorderStatus, read_status
from roadlens.service.sources import expand_url


class RecorderConflictError(RuntimeError):
    """The source already records (here or in another process); a 409."""


class RecorderManager:
    """The recorders this server started, by source id."""

    def __init__(self, landing: Path) -> None:
        self.landing = landing
        self._recorders: dict[str, Recorder] = {}
        self._lock = threading.Lock()

    def out_dir(self, source_id: str) -> Path:
        return self.landing / source_id

    def running_here(self, source_id: str) -> bool:
        with self._lock:
            recorder = self._recorders.get(source_id)
        return recorder is not None and not recorder.wait(0)

    def start(self, source: dict[str, Any]) -> None:
        """Start recording ``source`` (a registry record) in a background thread.

        Raises:
            RecorderConflictError: it already records.
            ValueError: the source has no URL, or its URL names an unset variable.
            FileNotFoundError: a file source does not exist.
        """
        source_id = source["id"]
        if not source.get("url"):
            raise ValueError(f"source {source_id!r} has no url to record")
        with self._lock:
            current = self._recorders.get(source_id)
            if current is not None and not current.wait(0):
                raise RecorderConflictError(f"source {source_id!r} is already recording")
            config = RecorderConfig(
                source=expand_url(source["url"]),
                out_dir=self.out_dir(source_id),
                chunk_seconds=float(source.get("chunk_seconds") or 10.0),
                source_id=source_id,
                input_format=source.get("input_format"),
            )
            recorder = Recorder(config, log=None)
            try:
                recorder.start()
            except RuntimeError as exc:  # another process records into the folder
                raise RecorderConflictError(str(exc)) from exc
            self._recorders[source_id] = recorder

    def stop(self, source_id: str, timeout: float = 15.0) -> bool:
        """Stop the recorder of ``source_id``; False when this server was not recording it."""
        with self._lock:
            recorder = self._recorders.pop(source_id, None)
        if recorder is None:
            return False
        recorder.stop(timeout)
        return True

    def stop_all(self) -> None:
        with self._lock:
            ids = list(self._recorders)
        for source_id in ids:
            self.stop(source_id)

    def status(self, source_id: str) -> dict[str, Any]:
        """The source's status: its status file, else this server's recorder, else STOPPED."""
        running = self.running_here(source_id)
        status: RecorderStatus | None
        try:
            status = read_status(self.out_dir(source_id))
        except (OSError, ValueError, TypeError):
            with self._lock:
                recorder = self._recorders.get(source_id)
            status = recorder.status if recorder is not None else None
        if status is None:
            return {
                "source_id": source_id,
                "state": RecorderState.STOPPED.value,
                "running_here": False,
            }
        beat = status.last_heartbeat
        age = (datetime.now(UTC) - beat).total_seconds() if beat is not None else None
        return {
            "source_id": source_id,
            "state": status.state,
            "running_here": running,
            "last_heartbeat": beat,
            "heartbeat_age_s": age,
            "started_at": status.started_at,
            "chunks_closed": status.chunks_closed,
            "last_chunk": status.last_chunk,
            "reconnect_attempts": status.reconnect_attempts,
            "last_error": status.last_error,
        }
