"""The one interface every server-backed sink implements.

A sink receives one video's rows of one table (an Arrow table conformed to a schema in
:mod:`roadlens.schema`) and makes the sink hold exactly those rows for that video:
writing a video again replaces its rows, and writing an empty table removes them. That
makes every write idempotent per video, so Dagster may retry or re-run any partition.

Each write returns a :class:`SinkWrite` with rows, bytes, seconds and latency
percentiles, which the Dagster assets turn into materialization metadata.

Example:
    >>> from roadlens.sinks.postgres import PostgresSink
    >>> with PostgresSink("postgresql://postgres@127.0.0.1/test") as sink:  # doctest: +SKIP
    ...     result = sink.write_video("detections", "veh-01--clip", table, export_id="run-1")
    >>> result.rows  # doctest: +SKIP
    763

    The file sink needs no server and keeps the same contract (an empty table removes the
    video):

    >>> import tempfile
    >>> from roadlens.sinks.files import FileExportSink
    >>> from roadlens.synth.tables import synthetic_detections
    >>> table = synthetic_detections(763, video_id="veh-01--clip")
    >>> with tempfile.TemporaryDirectory() as tmp, FileExportSink(tmp) as sink:
    ...     result = sink.write_video("detections", "veh-01--clip", table, export_id="run-1",
    ...                               fingerprint=table_fingerprint(table))
    ...     held = sink.committed("detections", ["veh-01--clip"])
    ...     _ = sink.write_video("detections", "veh-01--clip", table.slice(0, 0), export_id="run-2")
    ...     after_empty = sink.committed("detections", ["veh-01--clip"])
    >>> result.rows, held == {"veh-01--clip": table_fingerprint(table)}, after_empty
    (763, True, {})
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self, runtime_checkable

import numpy as np
import pyarrow as pa

from roadlens.lake import CATALOG, SINK_TABLES
from roadlens.schema import conform


class SinkError(RuntimeError):
    """A sink could not take a write; the message names the sink, table and video."""


class SinkConfigError(SinkError):
    """A sink's settings can never work (a bad format, QoS or URL): retrying cannot help."""


@dataclass(frozen=True)
class SinkWrite:
    """What one write of one video's rows did in one sink."""

    sink: str
    table: str
    video_id: str
    rows: int
    bytes: int
    seconds: float
    # Per-batch (databases) or per-message (brokers) latency percentiles in milliseconds.
    latency_ms: dict[str, float] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 4),
            "rows_per_s": round(self.rows_per_s, 1),
            **{f"latency_{k}_ms": round(v, 3) for k, v in self.latency_ms.items()},
            **self.extra,
        }


@runtime_checkable
class Sink(Protocol):
    """A destination that holds exactly one copy of each video's rows per table."""

    name: str

    def write_video(
        self, table: str, video_id: str, data: pa.Table, *, export_id: str, fingerprint: str = ""
    ) -> SinkWrite:
        """Replace ``video_id``'s rows of ``table`` with ``data`` (an empty table removes them).

        ``export_id`` names this attempt (the Dagster run id); ``fingerprint`` identifies
        the content (see :func:`table_fingerprint`) and is what :meth:`committed` returns.
        """
        ...

    def committed(self, table: str, video_ids: Sequence[str]) -> dict[str, str]:
        """The fingerprint last committed for each of ``video_ids`` that the sink holds."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class SinkBase:
    """Context-manager plumbing and input checks shared by the sinks."""

    name = "sink"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - overridden where there is a connection
        return None

    def prepare(self, table: str, video_id: str, data: pa.Table) -> pa.Table:
        """``data`` conformed to ``table``'s schema, checked to hold only ``video_id``'s rows."""
        if table not in SINK_TABLES:
            raise SinkError(
                f"{self.name}: unknown table {table!r}; expected one of {sorted(SINK_TABLES)}"
            )
        if not video_id:
            raise SinkError(f"{self.name}: {table}: empty video_id")
        data = conform(data, SINK_TABLES[table])
        if data.num_rows:
            ids = data.column("video_id").unique().to_pylist()
            if ids != [video_id]:
                raise SinkError(
                    f"{self.name}: {table} rows for video {video_id!r} hold other videos: "
                    f"{sorted(i for i in ids if i != video_id)[:3]}"
                )
        return data


def id_column(table: str) -> str:
    """The deterministic row id of ``table`` (consumers dedupe on it; ``""`` for none).

    >>> id_column("detections"), id_column("event_stats"), id_column("no-such-table")
    ('detection_id', '', '')
    """
    entry = CATALOG.get(table)
    return entry.row_id if entry is not None else ""


def table_fingerprint(data: pa.Table) -> str:
    """A short content hash of a table: equal rows give an equal fingerprint.

    Hashes the Arrow IPC stream of the table, so it is cheap (about 1 GB/s) and
    independent of the Parquet file it was read from.
    """
    digest = hashlib.blake2b(digest_size=12)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data.combine_chunks() if data.num_rows else data)
    digest.update(memoryview(sink.getvalue()))
    return digest.hexdigest()


def percentiles_ms(samples_s: Iterable[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99/max of latency samples given in seconds, in milliseconds."""
    values = np.asarray(list(samples_s) if not isinstance(samples_s, np.ndarray) else samples_s)
    if values.size == 0:
        return {}
    p50, p95, p99 = np.percentile(values, [50, 95, 99]) * 1000.0
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max() * 1000),
    }


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds``."""

    def __enter__(self) -> Self:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
