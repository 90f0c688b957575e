"""Live ingestion: chunk a camera or stream into MP4 files for the landing folder.

:class:`Recorder` runs ffmpeg's segment muxer on a source, publishes every closed chunk
as ``<out>/<source_id>-<UTC start>Z.mp4`` with its capture start in the MP4 creation
time and a ``.done`` marker, reconnects live sources with back-off, and keeps a
status/heartbeat file (``<out>/_status.json``). See ``docs/live.md``.

Example:
    ```python
    from roadlens.live import Recorder, RecorderConfig

    recorder = Recorder(RecorderConfig("rtsp://camera.example/stream", "landing/cam-1"))
    recorder.start()
    ...
    recorder.stop()
    ```
"""

from __future__ import annotations

from roadlens.live.record import (
    Chunk,
    ChunkMarker,
    Recorder,
    RecorderConfig,
    backoff_delay,
    build_command,
    chunk_name,
    chunk_start_from_name,
    read_chunk_marker,
    record_until_signalled,
    source_kind,
)
from roadlens.live.status import (
    STATUS_FILE,
    RecorderState,
    RecorderStatus,
    read_status,
)
from roadlens.redact import redact

__all__ = [
    "STATUS_FILE",
    "Chunk",
    "ChunkMarker",
    "Recorder",
    "RecorderConfig",
    "RecorderState",
    "RecorderStatus",
    "backoff_delay",
    "build_command",
    "chunk_name",
    "chunk_start_from_name",
    "read_chunk_marker",
    "read_status",
    "record_until_signalled",
    "redact",
    "source_kind",
]
