"""The write flow shared by the message-broker sinks (MQTT, AMQP).

A broker keeps no record of what it delivered, so a local manifest per sink and target
(:class:`~roadlens.sinks.state.LocalManifest`) says which videos were sent completely and
with which fingerprint: a video is written in full and then recorded, an empty table sends
nothing and forgets the video, and :meth:`BrokerSink.committed` reads the manifest. Each
broker supplies only how one video's rows are published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from roadlens.sinks.base import SinkBase, SinkWrite, Stopwatch, percentiles_ms
from roadlens.sinks.state import LocalManifest


@dataclass(frozen=True)
class Published:
    """What publishing one video's rows did: bytes sent, per-message latencies (seconds)
    and the broker's own figures for the write's metadata."""

    bytes: int = 0
    latencies_s: Sequence[float] | np.ndarray = ()
    extra: dict[str, object] = field(default_factory=dict)


class BrokerSink(SinkBase):
    """A sink that publishes one message per row and records complete videos locally."""

    manifest: LocalManifest

    def publish(self, table: str, video_id: str, data: pa.Table, export_id: str) -> Published:
        """Send every row of ``data`` and wait until the broker took all; raise otherwise."""
        raise NotImplementedError

    def manifest_fields(self) -> dict[str, object]:
        """Settings recorded with each sent video (a change of them shows in the manifest)."""
        return {}

    def nothing_published(self) -> Published:
        """The figures of a write that sent nothing (an empty table)."""
        return Published()

    def write_video(
        self, table: str, video_id: str, data: pa.Table, *, export_id: str, fingerprint: str = ""
    ) -> SinkWrite:
        """Publish ``data`` (one message per row) and record the video once all arrived.

        An empty table sends nothing and forgets the video in the manifest.
        """
        data = self.prepare(table, video_id, data)
        with Stopwatch() as watch:
            if data.num_rows == 0:
                self.manifest.remove(table, video_id)
                sent = self.nothing_published()
            else:
                sent = self.publish(table, video_id, data, export_id)
                self.manifest.put(
                    table,
                    video_id,
                    export_id=export_id,
                    fingerprint=fingerprint,
                    rows=data.num_rows,
                    **self.manifest_fields(),
                )
        return SinkWrite(
            sink=self.name,
            table=table,
            video_id=video_id,
            rows=data.num_rows,
            bytes=sent.bytes,
            seconds=watch.seconds,
            latency_ms=percentiles_ms(sent.latencies_s),
            extra=sent.extra,
        )

    def committed(self, table: str, video_ids: Sequence[str]) -> dict[str, str]:
        """Fingerprints of the videos last sent completely (from the local manifest)."""
        return self.manifest.get(table, video_ids)
