"""The recorder's state machine and its status/heartbeat file.

Each recorded source has one JSON status file next to its chunks
(``<out>/_status.json``), rewritten atomically (:func:`roadlens.atomic.write_text_atomic`) on
every state change and at least once per heartbeat interval, so a reader (a sensor, a
REST service, ``cat``) never sees a half-written file.

Example:
    ```python
    from roadlens.live.status import read_status

    status = read_status("landing/cam-1")
    status.state, status.last_heartbeat, status.chunks_closed  # ('RUNNING', datetime(...), 12)
    ```
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from roadlens.atomic import write_text_atomic

STATUS_FILE = "_status.json"
"""Name of the status/heartbeat file inside a recorder's output folder."""


class RecorderState(StrEnum):
    """Lifecycle of one recorded source.

    ``STARTING`` until the first media arrives; ``RUNNING`` while media flows;
    ``RECONNECTING`` after a live source dropped, during the back-off and until media
    flows again; ``STOPPED`` after a requested stop or the end of a file source;
    ``ERROR`` when recording gave up (a file source failed, or ``max_reconnects`` was
    exceeded).
    """

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    RECONNECTING = "RECONNECTING"
    ERROR = "ERROR"
    STOPPED = "STOPPED"


@dataclass
class RecorderStatus:
    """A snapshot of one recorder, as written to the status file.

    Attributes:
        source_id: Source id; chunk names start with it.
        source: The source URL or path with any password or secret query parameter
            replaced by ``***``.
        state: One of :class:`RecorderState`'s values.
        started_at: When the recorder started (UTC).
        last_heartbeat: When this snapshot was written (UTC); advances at least once per
            heartbeat interval while the recorder is alive.
        chunks_closed: Chunks closed, published and marked ``.done`` so far.
        last_chunk: File name of the newest published chunk.
        last_chunk_start: Capture start (UTC) of the newest published chunk.
        reconnect_attempts: Reconnections attempted since the recorder started.
        last_error: Last failure (ffmpeg's last error line or the recorder's reason),
            secrets redacted; kept after recovery so an operator can see what happened.
        codec: ``"copy"`` or the encoder used (``"libx264"``, ``"mpeg4"``).
        chunk_seconds: Requested chunk length.
        ffmpeg_runs: ffmpeg processes started so far (1 + reconnects + codec fallbacks).
        pid: Process id of the recorder (not of ffmpeg).
        recorder_id: Random id of the :class:`~roadlens.live.Recorder` instance, so two
            recorders (even in one process) never share a folder.
    """

    source_id: str
    source: str
    state: str = RecorderState.STARTING.value
    started_at: datetime | None = None
    last_heartbeat: datetime | None = None
    chunks_closed: int = 0
    last_chunk: str | None = None
    last_chunk_start: datetime | None = None
    reconnect_attempts: int = 0
    last_error: str | None = None
    codec: str | None = None
    chunk_seconds: float = 0.0
    ffmpeg_runs: int = 0
    pid: int | None = None
    recorder_id: str | None = None

    def to_json(self) -> str:
        """Serialize to the status file's JSON (datetimes as ISO 8601 UTC, ``Z`` suffix)."""
        data = {k: (_iso(v) if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RecorderStatus:
        """Parse a status file's JSON; unknown keys are ignored, so newer writers are read."""
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in raw.items() if k in known}
        for key in ("started_at", "last_heartbeat", "last_chunk_start"):
            if data.get(key):
                data[key] = datetime.fromisoformat(data[key].replace("Z", "+00:00"))
        return cls(**data)


def write_status(out_dir: str | os.PathLike[str], status: RecorderStatus) -> Path:
    """Atomically (re)write ``<out_dir>/_status.json``; return its path."""
    path = Path(out_dir) / STATUS_FILE
    write_text_atomic(path, status.to_json())
    return path


def read_status(out_dir: str | os.PathLike[str]) -> RecorderStatus:
    """Read ``<out_dir>/_status.json``.

    Raises:
        FileNotFoundError: no recorder has written to ``out_dir`` yet.
    """
    return RecorderStatus.from_json((Path(out_dir) / STATUS_FILE).read_text())


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
