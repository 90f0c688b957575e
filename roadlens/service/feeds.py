"""What feeds the WebSocket hub: a Kafka consumer, or a poller over the lake.

- :class:`KafkaFeed` (when ``ROADLENS_KAFKA_BOOTSTRAP`` is set): a thread with a
  confluent-kafka consumer assigned to the end of ``<prefix>.events.v1`` and
  ``<prefix>.detections.v1`` (no consumer group: every server sees every record), batching
  what each ``consume`` returns. Latency: the sink's producer linger plus the consumer's
  fetch wait (``fetch.wait.max.ms`` = 50), tens of milliseconds on loopback (measured by
  ``bench/bench_service.py``; see ``docs/service.md``).
- :class:`LakePoller` (otherwise): every ``poll_s`` seconds it stats the lake's
  ``<table>/date=*/source_id=*`` folders and reads only the Parquet files that are new or
  were replaced (by modification time, size and inode) since the last look. Files present
  at start are not replayed. Latency: up to ``poll_s`` (0.5 s by default) plus reading the
  file; each new file is one message, sent as soon as it is read (``published_ms``: its
  mtime). A re-run that rewrites a video's file publishes its rows again, so clients
  dedupe by ``event_id``/``detection_id`` (as with Kafka's at-least-once delivery).

Both deliver rows in the lake's column names; timestamps are ISO 8601 strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from roadlens.lake import ParquetLake, location
from roadlens.service.hub import LIVE_TABLES, Row

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

log = logging.getLogger(__name__)

Publish = Callable[[str, list[Row], str, int | None], None]
MAX_ROWS_PER_FILE = 100_000


def rows_from_table(table: pa.Table) -> list[Row]:
    """Encode every row of an Arrow table as JSON once (NaN becomes null)."""
    if table.num_rows == 0:
        return []
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    lines = frame.write_ndjson().splitlines()
    sources = table.column("source_id").to_pylist() if "source_id" in table.column_names else None
    rules = table.column("rule_id").to_pylist() if "rule_id" in table.column_names else None
    return [
        Row(sources[i] if sources else None, rules[i] if rules else None, line)
        for i, line in enumerate(lines)
    ]


def read_lake_file(path: Path, limit: int = MAX_ROWS_PER_FILE) -> pa.Table:
    """A lake file with ``source_id`` and ``date`` restored from its path (first ``limit`` rows)."""
    table = pq.read_table(path)
    if table.num_rows > limit:
        log.warning(
            "live feed: %s has %d rows; publishing the first %d", path, table.num_rows, limit
        )
        table = table.slice(0, limit)
    date, source_id = location(path)
    n = table.num_rows
    if "source_id" not in table.column_names:
        table = table.append_column("source_id", pa.array([source_id] * n, pa.string()))
    return table.append_column("date", pa.array([date] * n, pa.string()))


class LakePoller:
    """Notices new or replaced per-video files of the live tables in the lake."""

    def __init__(self, lake_root: Path, tables: tuple[str, ...] = LIVE_TABLES) -> None:
        self.lake_root = lake_root
        self.lake = ParquetLake(lake_root)
        self.tables = tables
        self._dirs: dict[Path, int] = {}
        self._files: dict[Path, tuple[int, int, int]] = {}

    def scan(self) -> list[tuple[str, Path, int]]:
        """(table, file, mtime in ms) of every file new or changed since the last scan."""
        changed: list[tuple[str, Path, int]] = []
        for table in self.tables:
            for date_dir in self.lake.date_dirs(table):
                try:
                    source_dirs = [d for d in date_dir.iterdir() if d.name.startswith("source_id=")]
                except OSError:
                    continue
                for source_dir in source_dirs:
                    try:
                        mtime = source_dir.stat().st_mtime_ns
                    except OSError:
                        continue
                    if self._dirs.get(source_dir) == mtime:
                        continue
                    self._dirs[source_dir] = mtime
                    for entry in os.scandir(source_dir):
                        if not entry.name.endswith(".parquet") or entry.name.startswith("."):
                            continue
                        st = entry.stat()
                        key = (st.st_mtime_ns, st.st_size, st.st_ino)
                        path = Path(entry.path)
                        if self._files.get(path) != key:
                            self._files[path] = key
                            changed.append((table, path, st.st_mtime_ns // 1_000_000))
        return changed

    def read(self, table: str, path: Path) -> list[Row] | None:
        """The rows of one changed file, or None when it cannot be read (yet)."""
        try:
            return rows_from_table(read_lake_file(path))
        except (OSError, pa.ArrowException) as exc:  # replaced again while reading
            log.warning("live feed: cannot read %s: %s", path, exc)
            self._files.pop(path, None)  # try again at the next poll
            return None

    async def run(self, publish: Publish, interval_s: float, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; each changed file is published as soon as it is read."""
        await asyncio.to_thread(self.scan)  # what exists at start is history, not live
        while not stop.is_set():
            try:
                changed = await asyncio.to_thread(self.scan)
            except Exception:  # keep the feed alive through a bad folder
                log.exception("live feed: lake poll failed")
                changed = []
            for table, path, mtime_ms in changed:
                rows = await asyncio.to_thread(self.read, table, path)
                if rows:
                    publish(table, rows, "lake", mtime_ms)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)


class KafkaFeed:
    """A consumer thread that hands each consumed batch to the event loop."""

    def __init__(self, bootstrap: str, prefix: str = "roadlens") -> None:
        from roadlens.sinks.kafka import topic_name

        self.bootstrap = bootstrap
        self.prefix = prefix
        self.topics = {topic_name(prefix, t): t for t in LIVE_TABLES}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: asyncio.AbstractEventLoop, publish: Publish) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(loop, publish), name="roadlens-kafka-feed", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _consumer(self) -> Consumer:
        from confluent_kafka import OFFSET_END, Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"roadlens-serve-{os.getpid()}-{id(self):x}",
                "enable.auto.commit": False,
                "auto.offset.reset": "latest",
                "fetch.wait.max.ms": 50,
                "enable.partition.eof": False,
            }
        )
        assignment = []
        for topic in self.topics:
            metadata = consumer.list_topics(topic, timeout=5).topics[topic]
            if metadata.error is not None:
                consumer.close()
                raise RuntimeError(f"kafka: cannot read topic {topic}: {metadata.error}")
            for p in sorted(metadata.partitions):
                # The current end, resolved now: a record produced once ``ready`` is set
                # is never skipped (OFFSET_END would resolve at the first fetch).
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                assignment.append(TopicPartition(topic, p, high if high >= 0 else OFFSET_END))
        consumer.assign(assignment)
        return consumer

    def _run(self, loop: asyncio.AbstractEventLoop, publish: Publish) -> None:
        consumer = None
        while not self._stop.is_set():
            if consumer is None:
                try:
                    self._ensure_topics()
                    consumer = self._consumer()
                    self.ready.set()
                except Exception as exc:  # broker down: retry, the REST API keeps working
                    log.warning("live feed: kafka not ready (%s); retrying", exc)
                    self._stop.wait(2.0)
                    continue
            # Wait for one record, then take whatever else has arrived without waiting:
            # ``consume(n, timeout)`` alone would hold a small batch until the timeout.
            first = consumer.poll(0.2)
            messages = [first] if first is not None else []
            if first is not None:
                messages += consumer.consume(num_messages=999, timeout=0)
            batches: dict[str, tuple[list[Row], int]] = {}
            for message in messages:
                if message.error() is not None:
                    continue
                table = self.topics.get(message.topic() or "")
                if not table:
                    continue
                row = _row_from_message(table, message)
                if row is None:
                    continue
                rows, first_ms = batches.setdefault(table, ([], message.timestamp()[1]))
                rows.append(row)
                batches[table] = (rows, min(first_ms, message.timestamp()[1]))
            for table, (rows, first_ms) in batches.items():
                loop.call_soon_threadsafe(publish, table, rows, "kafka", first_ms)
        if consumer is not None:
            consumer.close()

    def _ensure_topics(self) -> None:
        from roadlens.sinks.kafka import ensure_topics

        ensure_topics(self.bootstrap, self.prefix, list(LIVE_TABLES))


def _row_from_message(table: str, message: Message) -> Row | None:
    # A consumed message's headers are a list of (str, bytes or None), never a dict.
    pairs = cast("list[tuple[str, bytes | None]]", message.headers() or [])
    headers = {k: (v or b"").decode("utf-8", "replace") for k, v in pairs}
    payload = message.value() or b""
    try:
        if headers.get("content-type", "application/json") == "application/json":
            text = payload.decode("utf-8")
            value = json.loads(text)
        else:
            from roadlens.sinks.proto import decode_protobuf

            value = decode_protobuf(table, payload)
            text = json.dumps(value, default=str)
    except Exception as exc:  # one bad record must not stop the feed
        log.warning("live feed: undecodable %s record: %s", table, exc)
        return None
    if not isinstance(value, dict):
        return None
    return Row(value.get("source_id"), value.get("rule_id"), text)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
