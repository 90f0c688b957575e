"""Kafka sink: one idempotent producer, bulk-encoded rows, nothing dropped silently.

Each row of a video's table becomes one message on ``<prefix>.<table>.v<schema version>``
(``roadlens.detections.v1``, ``roadlens.events.v1``), keyed by ``source_id`` (so one
camera's rows stay in order on one partition) and carrying one shared header list:
``schema_version``, ``video_id``, ``table``, ``export_id`` and ``content-type``
(``application/json`` by default, ``application/x-protobuf`` with ``value_format=
"protobuf"``; the schema is :mod:`roadlens.sinks.proto`).

Delivery: the producer is idempotent (``acks=all``) and retries inside librdkafka with
exponential backoff (100 ms doubling to 1.6 s) for ``delivery_timeout_s``; records that
still fail are re-sent by the sink up to ``attempts`` times with the same backoff between
rounds. Then records the broker *rejected* (e.g. ``INVALID_RECORD``) are isolated from
their batch and go to the dead-letter topic ``<prefix>.dlq.v1`` with ``dlq.*`` error
headers, and records that could not reach a broker go to a local spool file (Parquet,
one per table, video and export) that :func:`replay_spool` (``roadlens replay-spool``)
sends later; :meth:`KafkaSink.write_video` then raises :class:`KafkaSpoolError` (a
:class:`SinkError`). Every write checks ``delivered + dlq + spooled == rows``.

Kafka is a log: a re-run appends the video's rows again and an empty table deletes
nothing, so consumers dedupe by ``detection_id`` / ``event_id`` (:func:`tail` does). A
small local manifest per (table, video), written after a complete delivery, is what
:meth:`KafkaSink.committed` returns, so the Dagster assets can skip videos already sent.

Example:
    >>> with KafkaSink("127.0.0.1:9092", spool_dir=Path(".roadlens/spool/kafka")) as sink:  # doctest: +SKIP
    ...     sink.write_video("detections", "veh-01--clip", table, export_id="run-1").rows
    763
    >>> for message in tail("127.0.0.1:9092", [topic_name("roadlens", "detections")]):  # doctest: +SKIP
    ...     print(message["key"], message["value"]["detection_id"])
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from roadlens.atomic import atomic_path, write_text_atomic
from roadlens.lake import SINK_TABLES
from roadlens.redact import redact
from roadlens.schema import SCHEMA_VERSION, table_version
from roadlens.sinks.base import (
    SinkBase,
    SinkError,
    SinkWrite,
    id_column,
    percentiles_ms,
)
from roadlens.sinks.encode import json_lines
from roadlens.sinks.proto import CONTENT_TYPE as PROTOBUF_CONTENT_TYPE
from roadlens.sinks.proto import decode_protobuf, encode_protobuf_array

log = logging.getLogger(__name__)
# librdkafka's own log lines (one per failed connection attempt) go to Python logging at
# their level instead of raw to stderr; errors reach the user once, as a SinkError.
RDKAFKA_LOG = logging.getLogger("roadlens.kafka.librdkafka")
RDKAFKA_LOG.addHandler(logging.NullHandler())
RDKAFKA_LOG.propagate = os.environ.get("ROADLENS_DEBUG") == "1"

JSON_CONTENT_TYPE = "application/json"
VALUE_FORMATS = {"json": JSON_CONTENT_TYPE, "protobuf": PROTOBUF_CONTENT_TYPE}
DEFAULT_PARTITIONS = 3
# Explicit topic configs (Tansu accepts them at creation but its DescribeConfigs returns
# nothing, so they cannot be read back there; real Kafka applies and reports them).
DEFAULT_TOPIC_CONFIG: dict[str, str] = {
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 24 * 3600 * 1000),  # a week: consumers are expected to keep up
    "compression.type": "producer",  # keep the producer's lz4 batches as they are
    "max.message.bytes": str(1_048_588),  # Kafka's default, stated so it is explicit
}
BACKOFF_S = (0.1, 0.2, 0.4, 0.8, 1.6)  # between the sink's own attempts, as the Go seed did
CHUNK_ROWS = 65_536  # rows encoded per step; the next chunk encodes while this one is sent
# Records per produce block; poll(0) after each releases the GIL, so the encoder thread
# waits less (measured +7 % at 256 when the encoder held the GIL more often).
STEP = 256
FIRST_CHUNK_ROWS = 8_192  # a small first chunk: producing starts after ~20 ms, not ~150

_E = KafkaError
# Errors that mean "no broker took the record": retried, then spooled.
_UNREACHABLE = {
    _E._MSG_TIMED_OUT,
    _E._TIMED_OUT,
    _E._TRANSPORT,
    _E._ALL_BROKERS_DOWN,
    _E._PURGE_QUEUE,
    _E._PURGE_INFLIGHT,
    _E._RESOLVE,
    _E._DESTROY,
    _E.REQUEST_TIMED_OUT,
    _E.NETWORK_EXCEPTION,
}
# Errors about this producer's idempotence state: a new producer fixes them. (Tansu answers
# a sequence reset after a rejected batch with PRODUCER_FENCED, measured.)
_PRODUCER_STATE = {
    _E._FATAL,
    _E._FENCED,
    _E.PRODUCER_FENCED,
    _E.OUT_OF_ORDER_SEQUENCE_NUMBER,
    _E.UNKNOWN_PRODUCER_ID,
    _E.INVALID_PRODUCER_EPOCH,
    _E.INVALID_PRODUCER_ID_MAPPING,
}
# Transient broker-side states worth another attempt.
_TRANSIENT = {
    _E._UNKNOWN_TOPIC,
    _E._UNKNOWN_PARTITION,
    _E.UNKNOWN_TOPIC_OR_PART,
    _E.LEADER_NOT_AVAILABLE,
    _E.NOT_LEADER_FOR_PARTITION,
    _E.NOT_ENOUGH_REPLICAS,
    _E.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    _E.KAFKA_STORAGE_ERROR,
    _E.COORDINATOR_LOAD_IN_PROGRESS,
    _E.THROTTLING_QUOTA_EXCEEDED,
}


class KafkaSpoolError(SinkError):
    """Some records of a write could not reach a broker and were spooled to ``path``."""

    def __init__(
        self, message: str, *, rows: int, delivered: int, dlq: int, spooled: int, path: Path
    ) -> None:
        super().__init__(message)
        self.rows = rows
        self.delivered = delivered
        self.dlq = dlq
        self.spooled = spooled
        self.path = path


def topic_name(prefix: str, table: str) -> str:
    """The topic of ``table``: ``f"{prefix}.{table}.v{SCHEMA_VERSION}"``.

    >>> topic_name("roadlens", "detections")
    'roadlens.detections.v1'
    """
    return f"{prefix}.{table}.v{SCHEMA_VERSION}"


def dlq_topic_name(prefix: str) -> str:
    """The dead-letter topic shared by all tables: ``f"{prefix}.dlq.v1"``."""
    return f"{prefix}.dlq.v1"


def producer_settings(
    bootstrap: str, *, delivery_timeout_s: float = 30.0, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The librdkafka configuration of the sink's producer (``overrides`` win).

    lz4 measured 1.3x faster end to end than no compression on Tansu (1 M detections,
    ``bench/bench_sink_kafka.py``): the JSON compresses well, so fewer bytes cross to a
    broker that shares the CPU.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "logger": RDKAFKA_LOG,
        "client.id": "roadlens-kafka-sink",
        "enable.idempotence": True,  # implies acks=all, in-order, no duplicates on retry
        "acks": "all",
        "linger.ms": 20,
        "compression.type": "lz4",
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 200_000,  # bounded: produce() raises BufferError
        "queue.buffering.max.kbytes": 262_144,
        "delivery.timeout.ms": int(delivery_timeout_s * 1000),
        "retry.backoff.ms": 100,
        "retry.backoff.max.ms": 1_600,
        # Reconnect to a returning broker within a second (librdkafka's cap is 10 s).
        "reconnect.backoff.max.ms": 1_000,
        "partitioner": "murmur2_random",  # the Java client's key hashing
        # Successful deliveries are counted from the queue length, not one Python callback
        # per message (measured: 2x the produce rate); failures still report each record.
        "delivery.report.only.error": True,
    }
    config.update(overrides or {})
    return config


# --- topics --------------------------------------------------------------------------------


def _create_topics(
    admin: AdminClient,
    names: Sequence[str],
    *,
    partitions: int,
    replication_factor: int,
    config: Mapping[str, str],
    timeout_s: float,
) -> dict[str, str]:
    new = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=dict(config),
        )
        for name in names
    ]
    futures = admin.create_topics(new, request_timeout=timeout_s, operation_timeout=timeout_s)
    status: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s + 5)
            status[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise SinkError(f"kafka: cannot create topic {name}: {error.str()}") from exc
            status[name] = "exists"
    return status


def ensure_topics(
    bootstrap: str,
    prefix: str,
    tables: Iterable[str],
    partitions: int = DEFAULT_PARTITIONS,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    *,
    dlq: bool = True,
    timeout_s: float = 15.0,
    client_config: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Create the topics of ``tables`` (and the DLQ topic) unless they exist.

    Returns ``{topic: "created" | "exists"}``; an existing topic is left as it is (its
    partition count is not changed). ``config`` replaces :data:`DEFAULT_TOPIC_CONFIG`.

    >>> ensure_topics("127.0.0.1:9092", "roadlens", ["detections"])  # doctest: +SKIP
    {'roadlens.detections.v1': 'created', 'roadlens.dlq.v1': 'created'}
    """
    names = [topic_name(prefix, t) for t in tables]
    if dlq:
        names.append(dlq_topic_name(prefix))
    admin = AdminClient(
        {"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOG, **(client_config or {})}  # type: ignore[dict-item]
    )
    return _create_topics(
        admin,
        names,
        partitions=partitions,
        replication_factor=replication_factor,
        config=DEFAULT_TOPIC_CONFIG if config is None else config,
        timeout_s=timeout_s,
    )


# --- encoding ------------------------------------------------------------------------------


def _is_constant(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether every row holds the same value (nulls included)."""
    if len(column) <= 1:
        return True
    if column.null_count:
        return column.null_count == len(column)
    if pa.types.is_list(column.type) or pa.types.is_floating(column.type):
        return False
    return bool(pc.all(pc.equal(column, column[0])).as_py())


def encode_json_array(table: pa.Table, *, threads: int | None = None) -> pa.Array:
    """One compact JSON object per row (see :func:`roadlens.sinks.encode.json_lines`).

    ``threads`` is kept for callers that set it; polars sizes its own pool.

    >>> encode_json_array(pa.table({"a": [1, None], "b": ["x", "y"]})).to_pylist()
    ['{"a":1,"b":"x"}', '{"a":null,"b":"y"}']
    """
    return json_lines(table)


def encode_values(table: pa.Table, value_format: str, *, threads: int | None = None) -> pa.Array:
    """Message values of every row of a conformed sink table, in ``value_format``."""
    if value_format == "protobuf":
        return encode_protobuf_array(table)
    if value_format == "json":
        return encode_json_array(table, threads=threads)
    raise SinkError(f"kafka: unknown value format {value_format!r}; expected json or protobuf")


def _payload_bytes(values: pa.Array) -> int:
    return int(pc.sum(pc.binary_length(values)).as_py() or 0)


def _keys(column: pa.Array | pa.ChunkedArray) -> str | list[str | bytes | None]:
    """One key for a chunk whose rows share it (no per-row list), else one per row."""
    if _is_constant(column) and not column.null_count:
        return str(column[0].as_py())
    return [k if k is not None else "" for k in column.to_pylist()]


@dataclass
class _Chunk:
    keys: str | list[str | bytes | None]
    values: list[bytes]
    nbytes: int = 0


def _encoded_chunks(
    data: pa.Table, value_format: str, chunk_rows: int, stats: dict[str, float]
) -> Iterator[_Chunk]:
    """The table's messages chunk by chunk; chunk ``i + 1`` encodes while ``i`` is sent.

    polars and the numpy/Arrow encoders release the GIL, so encoding overlaps with the
    produce loop instead of adding to it.
    """

    def encode(offset: int, rows: int) -> _Chunk:
        started = time.perf_counter()
        part = data.slice(offset, rows)
        values = encode_values(part, value_format, threads=1).cast(pa.binary())
        chunk = _Chunk(_keys(part.column("source_id")), values.to_pylist(), _payload_bytes(values))
        stats["encode_s"] = stats.get("encode_s", 0.0) + time.perf_counter() - started
        return chunk

    bounds: list[tuple[int, int]] = []
    offset, size = 0, min(chunk_rows, FIRST_CHUNK_ROWS)
    while offset < data.num_rows:
        bounds.append((offset, size))
        offset, size = offset + size, chunk_rows
    if len(bounds) == 1:
        yield encode(*bounds[0])
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-encode") as pool:
        future = pool.submit(encode, *bounds[0])
        for following in [*bounds[1:], None]:
            chunk = future.result()
            if following is not None:
                future = pool.submit(encode, *following)
            yield chunk


# --- delivery ------------------------------------------------------------------------------


def _error_kind(error: KafkaError) -> str:
    """``unreachable``, ``producer`` (state; a new producer helps), ``transient`` or ``rejected``."""
    code = error.code()
    if code in _UNREACHABLE:
        return "unreachable"
    if code in _PRODUCER_STATE or error.fatal():
        return "producer"
    if code in _TRANSIENT or error.retriable():
        return "transient"
    if code < 0 and code not in (_E.MSG_SIZE_TOO_LARGE, _E._INVALID_ARG, _E._BAD_MSG):
        return "transient"  # other librdkafka-local errors: worth another attempt
    return "rejected"


@dataclass
class _Failed:
    """A record that some attempt did not deliver, with the last error it got."""

    key: bytes | str | None
    value: bytes
    error: KafkaError


@dataclass
class _Sent:
    produced: int = 0
    failed: list[_Failed] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    nbytes: int = 0

    @property
    def delivered(self) -> int:
        return self.produced - len(self.failed)


@dataclass
class _Outcome:
    rows: int
    delivered: int = 0
    dlq: int = 0
    spool: list[tuple[str, _Failed, list[tuple[str, bytes]]]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    latencies: list[float] = field(default_factory=list)
    nbytes: int = 0
    isolated: int = 0


class _Delivery:
    """One long-lived idempotent producer plus the sink's retry, isolation and DLQ logic."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        attempts: int,
        delivery_timeout_s: float,
        dlq_topic: str,
        ensure_topic: Callable[[str], None],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = dict(config)
        self.attempts = max(1, attempts)
        self.delivery_timeout_s = delivery_timeout_s
        self.dlq_topic = dlq_topic
        self.ensure_topic = ensure_topic
        self.sleep = sleep
        self._failures: list[tuple[KafkaError, Message]] = []
        self._fatal: KafkaError | None = None
        self.producer = self._new_producer()
        self._careful: Producer | None = None
        self.producers_created = 1
        # Set when a pass ended with records no broker took: the next pass starts with a
        # fresh producer (no reconnect backoff, new producer id) and re-created topics.
        self.suspect = False

    def _on_failure(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:  # only failures are reported (delivery.report.only.error)
            self._failures.append((error, message))

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
        log.debug("kafka client error: %s", error)

    def _new_producer(self) -> Producer:
        config = {**self.config, "on_delivery": self._on_failure, "error_cb": self._on_error}
        self._fatal = None
        return Producer(config)

    @property
    def careful(self) -> Producer:
        """A plain producer for isolating rejected records and for the DLQ.

        Not idempotent, one request in flight, no linger: a rejected batch then fails
        only itself, and no producer epoch is bumped afterwards (Tansu fences an
        idempotent producer whose batch it rejected, measured). It is used for a few
        records at a time, so the lost batching costs nothing; duplicates it might create
        on a retry are removed by the consumers' dedupe like any other.
        """
        if self._careful is None:
            config = {
                **self.config,
                "enable.idempotence": False,
                "max.in.flight.requests.per.connection": 1,
                "linger.ms": 0,
                "on_delivery": self._on_failure,
            }
            self._careful = Producer(config)
        return self._careful

    def renew(self) -> None:
        """Replace the producer (after a fatal or fenced state); pending records are purged."""
        old = self.producer
        try:
            old.purge(in_queue=True, in_flight=True, blocking=False)
            old.flush(0)
            old.close()
        except (KafkaException, RuntimeError):  # a fatal producer may refuse; dropped anyway
            pass
        self.producer = self._new_producer()
        self.producers_created += 1

    def warm_up(self, topics: Sequence[str], timeout_s: float) -> None:
        """Fetch metadata for ``topics`` now, so the first write does not wait for it."""
        for topic in topics:
            self.producer.list_topics(topic, timeout=timeout_s)

    def close(self) -> None:
        """Flush and close the producers (their connections end now, not at GC)."""
        for producer in (self.producer, self._careful):
            if producer is None:
                continue
            left = producer.flush(self.delivery_timeout_s)
            if left:
                # Only a write that raised mid-send leaves records here; say so loudly.
                log.error("kafka: closing with %d records unacknowledged (purged)", left)
                producer.purge(in_queue=True, in_flight=True, blocking=True)
                producer.flush(0)
            producer.close()
        self._careful = None

    # One pass: produce everything, then wait for the broker to take or fail every record.
    def send(
        self,
        topic: str,
        headers: list[tuple[str, bytes]],
        chunks: Iterable[_Chunk],
        *,
        expected: int,
        producer: Producer | None = None,
    ) -> _Sent:
        producer = producer or self.producer
        reported: list[tuple[KafkaError, Message]] = []
        self._failures = reported
        sent = _Sent()
        refused: list[_Failed] = []  # records produce() itself refused
        # Latency samples: (records enqueued before the sample, time it was produced).
        pending: deque[tuple[int, float]] = deque()
        step = max(1, min(STEP, expected // 512))
        enqueued = 0
        stop: KafkaError | None = None

        def observe(enqueued_now: int) -> None:
            # Every record of one write goes to its key's partition in order, so the first
            # ``enqueued - len(producer)`` records are done: a sample's latency is now - t.
            done = enqueued_now - len(producer)
            now = time.perf_counter()
            while pending and pending[0][0] < done:
                sent.latencies.append(now - pending.popleft()[1])

        def observe_from(base: int, done: int) -> None:
            observe(base + done)  # ``done`` records of a block whose first was number ``base``

        for chunk in chunks:
            sent.nbytes += chunk.nbytes
            keys, values = chunk.keys, chunk.values
            one_key = keys if isinstance(keys, str) else None  # the chunk's rows share it
            start, n = 0, len(values)
            while start < n:
                if stop is not None:
                    # The producer is unusable or the broker gone: the rest fails untried.
                    refused += [
                        _Failed(one_key if one_key is not None else keys[j], values[j], stop)
                        for j in range(start, n)
                    ]
                    break
                pending.append((enqueued, time.perf_counter()))
                count, start, stop = self._produce_block(
                    producer,
                    topic,
                    headers,
                    keys,
                    values,
                    start,
                    min(start + step, n),
                    refused,
                    functools.partial(observe_from, enqueued),
                )
                enqueued += count
                producer.poll(0)
                observe(enqueued)
                # Records are timing out: the broker is gone. Producing the rest would
                # only fill the queue and wait out delivery_timeout_s once per queue-full;
                # they fail now and go to the next attempt (or the spool) with the rest.
                stop = stop or self._broker_gone()
        self._drain(producer, lambda: observe(enqueued))
        # Every record produced here has a value (never None).
        sent.failed = refused + [_Failed(m.key(), cast(bytes, m.value()), e) for e, m in reported]
        sent.produced = enqueued + len(refused)
        self._failures = []
        if sent.produced != expected:
            raise SinkError(f"kafka: {topic}: {sent.produced} records handled, {expected} given")
        return sent

    def _broker_gone(self) -> KafkaError | None:
        """The failure of this pass that says no broker is taking records, if any."""
        if self._failures:
            error = self._failures[-1][0]
            if _error_kind(error) == "unreachable":
                return error
        return None

    def _produce_block(
        self,
        producer: Producer,
        topic: str,
        headers: list[tuple[str, bytes]],
        keys: str | list[str | bytes | None],
        values: list[bytes],
        start: int,
        end: int,
        refused: list[_Failed],
        observe: Callable[[int], None],
    ) -> tuple[int, int, KafkaError | None]:
        """Produce ``values[start:end]``; returns (enqueued, first index not tried, stop error)."""
        produce = producer.produce
        poll = producer.poll
        one_key = keys if isinstance(keys, str) else None  # the block's rows share it
        count = 0
        for j in range(start, end):
            key = one_key if one_key is not None else keys[j]
            while True:
                try:
                    produce(topic, values[j], key, headers=headers)  # type: ignore[arg-type]
                    count += 1
                    break
                except BufferError:
                    # Back-pressure: the bounded queue is full until the broker acks.
                    poll(0.005)
                    observe(count)
                    down = self._broker_gone()
                    if down is not None:
                        return count, j, down
                except KafkaException as exc:
                    error = exc.args[0]
                    refused.append(_Failed(key, values[j], error))
                    if _error_kind(error) == "producer" or self._fatal is not None:
                        return count, j + 1, error
                    break
        return count, end, None

    def _drain(self, producer: Producer, observe: Callable[[], None]) -> None:
        """Flush until every record is acked or failed; purge what outlives the timeout."""
        deadline = time.monotonic() + self.delivery_timeout_s + 5.0
        wait = 0.001
        while True:
            remaining = producer.flush(wait)
            observe()
            if remaining == 0:
                return
            if time.monotonic() > deadline:
                # librdkafka should have timed these out already; purge so each gets a
                # failure report (_PURGE_*) and is counted, never silently left behind.
                producer.purge(in_queue=True, in_flight=True, blocking=True)
                producer.flush(5.0)
                return
            wait = min(wait * 2, 0.05)

    # Attempts, isolation of rejected records, DLQ; returns what is left for the spool.
    def deliver(
        self, topic: str, headers: list[tuple[str, bytes]], chunks: Iterable[_Chunk], rows: int
    ) -> _Outcome:
        outcome = _Outcome(rows=rows)
        if self.suspect:
            self.renew()
            self._quietly_ensure(topic)
            self.suspect = False
        sent = self.send(topic, headers, chunks, expected=rows)
        outcome.attempts = 1
        outcome.latencies = sent.latencies
        outcome.nbytes = sent.nbytes
        outcome.delivered = sent.delivered
        rejected = [f for f in sent.failed if _error_kind(f.error) == "rejected"]
        failed = [f for f in sent.failed if _error_kind(f.error) != "rejected"]
        for attempt in range(2, self.attempts + 1):
            if not failed:
                break
            backoff = BACKOFF_S[min(attempt - 2, len(BACKOFF_S) - 1)]
            log.warning(
                "kafka: %s: %d records failed (%s); attempt %d of %d in %.1f s",
                topic,
                len(failed),
                failed[0].error.name(),
                attempt,
                self.attempts,
                backoff,
            )
            if self._fatal is not None or any(_error_kind(f.error) == "producer" for f in failed):
                self.renew()
            self.sleep(backoff)
            self._quietly_ensure(topic)  # a restarted broker may have lost the topic
            retry = self.send(topic, headers, [_records_chunk(failed)], expected=len(failed))
            outcome.attempts = attempt
            outcome.delivered += retry.delivered
            rejected += [f for f in retry.failed if _error_kind(f.error) == "rejected"]
            failed = [f for f in retry.failed if _error_kind(f.error) != "rejected"]
        # Rejected records, and records refused because a rejection fenced the producer,
        # are sorted out one careful send at a time: the good ones delivered, the bad ones
        # named, each alone, for the DLQ.
        suspects = rejected + [f for f in failed if _error_kind(f.error) == "producer"]
        failed = [f for f in failed if _error_kind(f.error) != "producer"]
        if suspects:
            delivered, rejected, more_failed = self._isolate(topic, headers, suspects)
            outcome.delivered += delivered
            failed += more_failed
        for f in failed:
            outcome.errors[f.error.name()] += 1
            outcome.spool.append((topic, f, headers))
        if rejected:
            for f in rejected:
                outcome.errors[f.error.name()] += 1
            outcome.dlq, dlq_failed = self._to_dlq(topic, headers, rejected, outcome.attempts)
            outcome.spool += dlq_failed
        # After a failure or a rejection, the next write starts with a fresh producer.
        self.suspect = bool(failed or suspects)
        return outcome

    def _quietly_ensure(self, topic: str) -> None:
        try:
            self.ensure_topic(topic)
        except (SinkError, KafkaException) as exc:
            log.debug("kafka: cannot ensure %s yet: %s", topic, exc)

    def _isolate(
        self, topic: str, headers: list[tuple[str, bytes]], records: list[_Failed]
    ) -> tuple[int, list[_Failed], list[_Failed]]:
        """Split rejected batches until each rejection names one record.

        A broker rejects a whole batch for one bad record (measured on Tansu: one
        ``INVALID_RECORD`` fails all ten records of its batch), so the records are re-sent
        by the careful producer in halves until every rejected group is a single record.
        Returns (delivered, rejected records, records that failed for other reasons).
        """
        delivered = 0
        singles: list[_Failed] = []
        other: list[_Failed] = []
        stack = [records]
        budget = 4 * len(records) + 16  # sends; bisection needs about 2 k log2(n / k)
        while stack:
            group = stack.pop()
            if budget <= 0:
                other += group  # give up isolating: nothing is lost, it is spooled
                continue
            budget -= 1
            chunk = [_records_chunk(group)]
            sent = self.send(topic, headers, chunk, expected=len(group), producer=self.careful)
            delivered += sent.delivered
            bad = [f for f in sent.failed if _error_kind(f.error) == "rejected"]
            other += [f for f in sent.failed if _error_kind(f.error) != "rejected"]
            if len(bad) == 1 or (bad and len(group) == 1):
                singles += bad
            elif bad:
                half = len(bad) // 2
                stack += [bad[half:], bad[:half]]
        return delivered, singles, other

    def _to_dlq(
        self, topic: str, headers: list[tuple[str, bytes]], records: list[_Failed], attempts: int
    ) -> tuple[int, list[tuple[str, _Failed, list[tuple[str, bytes]]]]]:
        """Send rejected records to the DLQ with error headers; return (sent, left over)."""
        delivered = 0
        left: list[tuple[str, _Failed, list[tuple[str, bytes]]]] = []
        by_error: dict[int, list[_Failed]] = {}
        for f in records:
            by_error.setdefault(f.error.code(), []).append(f)
        self._quietly_ensure(self.dlq_topic)
        for group in by_error.values():
            error = group[0].error
            dlq_headers = [
                *headers,
                ("dlq.original_topic", topic.encode()),
                ("dlq.error_code", str(error.code()).encode()),
                ("dlq.error_name", error.name().encode()),
                ("dlq.error_reason", error.str().encode()),
                ("dlq.attempts", str(attempts).encode()),
                ("dlq.at", datetime.now(UTC).isoformat().encode()),
            ]
            sent = self.send(
                self.dlq_topic,
                dlq_headers,
                [_records_chunk(group)],
                expected=len(group),
                producer=self.careful,
            )
            delivered += sent.delivered
            left += [(self.dlq_topic, f, dlq_headers) for f in sent.failed]
        return delivered, left


def _records_chunk(records: Sequence[_Failed]) -> _Chunk:
    return _Chunk(
        [f.key for f in records],
        [f.value for f in records],
        sum(len(f.value) for f in records),
    )


# --- spool and manifest --------------------------------------------------------------------

_SPOOL_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary(), nullable=False),
        pa.field(
            "headers",
            pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())])),
        ),
        pa.field("error", pa.string()),
    ]
)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(text: str) -> str:
    cleaned = _SAFE.sub("-", text).strip(".-")
    return cleaned[:150] or "unnamed"


def _to_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _write_spool(
    path: Path,
    records: Sequence[tuple[str, _Failed, list[tuple[str, bytes]]]],
    meta: dict[str, str],
) -> None:
    header_sets: list[list[tuple[str, bytes]]] = []
    index: dict[int, int] = {}
    header_index = np.empty(len(records), dtype=np.int64)
    for i, (_, _, headers) in enumerate(records):
        slot = index.get(id(headers))
        if slot is None:
            slot = index[id(headers)] = len(header_sets)
            header_sets.append(headers)
        header_index[i] = slot
    header_type = _SPOOL_SCHEMA.field("headers").type
    headers_column = pa.array(
        [[{"key": k, "value": v} for k, v in hs] for hs in header_sets], header_type
    ).take(pa.array(header_index))
    table = pa.table(
        {
            "topic": pa.array([t for t, _, _ in records], pa.string()),
            "key": pa.array([_to_bytes(f.key) for _, f, _ in records], pa.binary()),
            "value": pa.array([f.value for _, f, _ in records], pa.binary()),
            "headers": headers_column,
            "error": pa.array([f"{f.error.name()}: {f.error.str()}" for _, f, _ in records]),
        },
        schema=_SPOOL_SCHEMA.with_metadata({f"roadlens.{k}": v for k, v in meta.items()}),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, mode=0o600) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    text = json.dumps(dict(manifest), indent=1, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text, mode=0o600)


# --- the sink ------------------------------------------------------------------------------


class KafkaSink(SinkBase):
    """Sends each video's rows of a table to ``<prefix>.<table>.v1`` (see the module doc).

    ``delivery_timeout_s`` bounds one attempt (librdkafka's ``delivery.timeout.ms``); with
    ``attempts`` rounds a broker outage is waited out for up to ``attempts *
    delivery_timeout_s`` plus the backoff before records are spooled. Writes of one sink
    are serialized (one producer, exact per-write counts); open one sink per process.

    >>> sink = KafkaSink("127.0.0.1:9092", spool_dir=Path("spool/kafka"))  # doctest: +SKIP
    >>> sink.write_video("events", "veh-01--clip", events, export_id="run-7").extra["delivered"]  # doctest: +SKIP
    12
    """

    name = "kafka"

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "roadlens",
        value_format: str = "json",
        spool_dir: Path,
        partitions: int = DEFAULT_PARTITIONS,
        replication_factor: int = 1,
        topic_config: Mapping[str, str] | None = None,
        delivery_timeout_s: float = 30.0,
        attempts: int = 5,
        producer_config: Mapping[str, Any] | None = None,
        state_dir: Path | None = None,
        connect_timeout_s: float = 10.0,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        if value_format not in VALUE_FORMATS:
            raise SinkError(
                f"kafka: unknown value format {value_format!r}; expected json or protobuf"
            )
        if not bootstrap:
            raise SinkError("kafka: empty bootstrap servers; set ROADLENS_KAFKA_BOOTSTRAP")
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.value_format = value_format
        self.spool_dir = Path(spool_dir)
        self.state_dir = Path(state_dir) if state_dir else self.spool_dir.parent / "kafka-state"
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.topic_config = dict(DEFAULT_TOPIC_CONFIG if topic_config is None else topic_config)
        self.chunk_rows = max(1, chunk_rows)
        self._lock = threading.Lock()
        self._closed = False
        self._client_config = {
            k: v
            for k, v in (producer_config or {}).items()
            if k.startswith(("security.", "sasl.", "ssl.")) or k == "client.id"
        }
        self._admin = AdminClient(
            {"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOG, **self._client_config}  # type: ignore[dict-item]
        )
        config = producer_settings(
            bootstrap, delivery_timeout_s=delivery_timeout_s, overrides=producer_config
        )
        self._delivery = _Delivery(
            config,
            attempts=attempts,
            delivery_timeout_s=delivery_timeout_s,
            dlq_topic=dlq_topic_name(topic_prefix),
            ensure_topic=self._ensure_topic,
        )
        try:
            created = _create_topics(
                self._admin,
                [*(topic_name(topic_prefix, t) for t in SINK_TABLES), dlq_topic_name(topic_prefix)],
                partitions=partitions,
                replication_factor=replication_factor,
                config=self.topic_config,
                timeout_s=connect_timeout_s,
            )
            # Warm-up: metadata (and the idempotent producer id) before the first write,
            # which otherwise waits for them (research: p99 454 ms cold vs 7 ms warm).
            self._delivery.warm_up(list(created), connect_timeout_s)
        except (KafkaException, SinkError) as exc:
            self._delivery.close()
            reason = exc.args[0] if exc.args else exc
            raise SinkError(
                f"kafka: cannot reach or set up topics on {redact(bootstrap)}: {reason}"
            ) from exc
        self.topics = created

    def _ensure_topic(self, topic: str) -> None:
        # Short: while a broker is down this must not stall the retry loop.
        _create_topics(
            self._admin,
            [topic],
            partitions=self.partitions,
            replication_factor=self.replication_factor,
            config=self.topic_config,
            timeout_s=min(2.0, self._delivery.delivery_timeout_s),
        )

    def topic(self, table: str) -> str:
        return topic_name(self.topic_prefix, table)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._delivery.close()
        self._admin = None  # type: ignore[assignment]  # drops its connection now

    # -- state --------------------------------------------------------------------------

    def _manifest_path(self, table: str, video_id: str) -> Path:
        return self.state_dir / table / f"{_safe(video_id)}.json"

    def _spool_folder(self, table: str, video_id: str) -> Path:
        return self.spool_dir / table / _safe(video_id)

    def committed(self, table: str, video_ids: Sequence[str]) -> dict[str, str]:
        """Fingerprints of the videos whose last write was completely delivered here.

        Read from the local manifests (``state_dir``), and only for this sink's topic,
        broker and value format: that is what lets the Dagster assets skip videos already
        sent. A video whose records sit in the spool is not committed until replayed.
        """
        out: dict[str, str] = {}
        for video_id in video_ids:
            path = self._manifest_path(table, video_id)
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if (
                manifest.get("topic") == self.topic(table)
                and manifest.get("bootstrap") == redact(self.bootstrap)
                and manifest.get("value_format") == self.value_format
            ):
                out[video_id] = str(manifest.get("fingerprint", ""))
        return out

    def _drop_spool(self, table: str, video_id: str, keep: Path | None = None) -> int:
        """Remove the video's older spool files: this write re-sent all its rows."""
        removed = 0
        folder = self._spool_folder(table, video_id)
        for path in folder.glob("*.parquet") if folder.exists() else []:
            if path != keep:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- writing ------------------------------------------------------------------------

    def write_video(
        self, table: str, video_id: str, data: pa.Table, *, export_id: str, fingerprint: str = ""
    ) -> SinkWrite:
        """Send ``video_id``'s rows of ``table``; raise :class:`SinkError` if any were spooled.

        An empty table sends nothing (a log cannot delete; consumers dedupe by id) and
        is recorded as committed with 0 rows.
        """
        started = time.perf_counter()
        data = self.prepare(table, video_id, data)
        topic = self.topic(table)
        headers = [
            ("schema_version", str(table_version(SINK_TABLES[table])).encode()),
            ("video_id", video_id.encode()),
            ("table", table.encode()),
            ("export_id", export_id.encode()),
            ("content-type", VALUE_FORMATS[self.value_format].encode()),
        ]
        rows = data.num_rows
        manifest = {
            "export_id": export_id,
            "fingerprint": fingerprint,
            "rows": rows,
            "topic": topic,
            "bootstrap": redact(self.bootstrap),
            "value_format": self.value_format,
            "table": table,
            "video_id": video_id,
        }
        with self._lock:
            if self._closed:
                raise SinkError(f"kafka: {table} {video_id}: the sink is closed")
            if rows == 0:
                superseded = self._drop_spool(table, video_id)
                _write_manifest(self._manifest_path(table, video_id), {**manifest, "dlq": 0})
                return SinkWrite(
                    self.name,
                    table,
                    video_id,
                    0,
                    0,
                    time.perf_counter() - started,
                    extra={
                        "topic": topic,
                        "delivered": 0,
                        "note": "empty table: nothing sent (a log cannot delete; "
                        "consumers dedupe by id)",
                        "spool_files_superseded": superseded,
                    },
                )
            stats: dict[str, float] = {}
            chunks = _encoded_chunks(data, self.value_format, self.chunk_rows, stats)
            send_started = time.perf_counter()
            try:
                outcome = self._delivery.deliver(topic, headers, chunks, rows)
            except (pl.exceptions.PolarsError, pa.ArrowException, ValueError) as exc:
                # Bad input (e.g. attributes that are not JSON): what was sent stays sent,
                # the write fails, and a re-run sends the video again (consumers dedupe).
                self._delivery.producer.flush(self._delivery.delivery_timeout_s)
                raise SinkError(
                    f"kafka: {table} {video_id}: cannot encode rows as {self.value_format}: {exc}"
                ) from exc
            send_s = time.perf_counter() - send_started
            spooled = len(outcome.spool)
            if outcome.delivered + outcome.dlq + spooled != rows:
                # Never report success for records nobody can account for.
                raise SinkError(
                    f"kafka: {table} {video_id}: accounting error: {outcome.delivered} delivered "
                    f"+ {outcome.dlq} dlq + {spooled} spooled != {rows} rows"
                )
            seconds = time.perf_counter() - started
            extra: dict[str, object] = {
                "topic": topic,
                "value_format": self.value_format,
                "delivered": outcome.delivered,
                "dlq": outcome.dlq,
                "dlq_topic": self._delivery.dlq_topic,
                "spooled": spooled,
                "attempts": outcome.attempts,
                "encode_s": round(stats.get("encode_s", 0.0), 4),
                "send_s": round(send_s, 4),
                "messages_per_s": round(rows / seconds, 1) if seconds > 0 else 0.0,
            }
            if outcome.errors:
                extra["errors"] = dict(outcome.errors)
            if spooled:
                path = self._spool_folder(table, video_id) / f"{_safe(export_id)}.parquet"
                meta = {**{k: str(v) for k, v in manifest.items()}, "spooled": str(spooled)}
                meta["created_at"] = datetime.now(UTC).isoformat()
                _write_spool(path, outcome.spool, meta)
                self._drop_spool(table, video_id, keep=path)
                errors = ", ".join(f"{n} {name}" for name, n in outcome.errors.most_common(3))
                log.error("kafka: %s %s: %d records spooled to %s", table, video_id, spooled, path)
                raise KafkaSpoolError(
                    f"kafka: {table} {video_id}: {spooled} of {rows} records undeliverable to "
                    f"{redact(self.bootstrap)} after {outcome.attempts} attempts ({errors}); "
                    f"{outcome.delivered} delivered, {outcome.dlq} to {self._delivery.dlq_topic}; "
                    f"spooled to {path}. When the broker is back run `roadlens replay-spool` "
                    "or re-run the partition.",
                    rows=rows,
                    delivered=outcome.delivered,
                    dlq=outcome.dlq,
                    spooled=spooled,
                    path=path,
                )
            extra["spool_files_superseded"] = self._drop_spool(table, video_id)
            _write_manifest(self._manifest_path(table, video_id), {**manifest, "dlq": outcome.dlq})
            if outcome.dlq:
                log.warning(
                    "kafka: %s %s: %d records rejected by the broker went to %s",
                    table,
                    video_id,
                    outcome.dlq,
                    self._delivery.dlq_topic,
                )
            log.info(
                "kafka: %s %s: %d delivered in %.2f s (%.0f msg/s), %d dlq",
                table,
                video_id,
                outcome.delivered,
                seconds,
                rows / seconds if seconds else 0.0,
                outcome.dlq,
            )
            return SinkWrite(
                self.name,
                table,
                video_id,
                rows,
                outcome.nbytes,
                seconds,
                latency_ms=percentiles_ms(outcome.latencies),
                extra=extra,
            )


# --- replay --------------------------------------------------------------------------------


def replay_spool(
    bootstrap: str,
    spool_dir: Path | str,
    *,
    producer_config: Mapping[str, Any] | None = None,
    state_dir: Path | None = None,
    partitions: int = DEFAULT_PARTITIONS,
    delivery_timeout_s: float = 30.0,
    attempts: int = 5,
) -> dict[str, int]:
    """Send every spooled record again; delete a spool file once all its records are acked.

    Records go to the topic they were meant for, with their original headers plus
    ``replayed_at``; missing topics are created. Records the broker rejects go to the DLQ
    as in a write; a file with records that still cannot be delivered is rewritten to hold
    just those. A drained file marks its video committed (the manifest the write would
    have written). Returns counts: files, files_done, records, delivered, dlq, remaining.

    >>> replay_spool("127.0.0.1:9092", ".roadlens/spool/kafka")  # doctest: +SKIP
    {'files': 1, 'files_done': 1, 'records': 4000, 'delivered': 4000, 'dlq': 0, 'remaining': 0}
    """
    spool_dir = Path(spool_dir)
    state_dir = Path(state_dir) if state_dir else spool_dir.parent / "kafka-state"
    counts = {"files": 0, "files_done": 0, "records": 0, "delivered": 0, "dlq": 0, "remaining": 0}
    files = sorted(spool_dir.glob("*/*/*.parquet")) if spool_dir.exists() else []
    if not files:
        return counts
    client = {
        k: v
        for k, v in (producer_config or {}).items()
        if k.startswith(("security.", "sasl.", "ssl."))
    }
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOG, **client})  # type: ignore[dict-item]

    def ensure(topic: str) -> None:
        _create_topics(
            admin,
            [topic],
            partitions=partitions,
            replication_factor=1,
            config=DEFAULT_TOPIC_CONFIG,
            timeout_s=min(2.0, delivery_timeout_s),
        )

    delivery: _Delivery | None = None
    try:
        for index, path in enumerate(files):
            if counts["remaining"] and delivery is not None and delivery.suspect:
                # The broker is still unreachable: leave the other files for the next run
                # instead of waiting out every attempt for each of them.
                for later in files[index:]:
                    rows = pq.read_metadata(later).num_rows
                    counts["files"] += 1
                    counts["records"] += rows
                    counts["remaining"] += rows
                break
            table = pq.read_table(path)
            meta = {
                k.decode().removeprefix("roadlens."): v.decode()
                for k, v in (table.schema.metadata or {}).items()
                if k.startswith(b"roadlens.")
            }
            prefix = meta.get("topic", "").rsplit(".", 2)[0] or "roadlens"
            if delivery is None:
                config = producer_settings(
                    bootstrap, delivery_timeout_s=delivery_timeout_s, overrides=producer_config
                )
                delivery = _Delivery(
                    config,
                    attempts=attempts,
                    delivery_timeout_s=delivery_timeout_s,
                    dlq_topic=dlq_topic_name(prefix),
                    ensure_topic=ensure,
                )
            delivery.dlq_topic = dlq_topic_name(prefix)
            counts["files"] += 1
            counts["records"] += table.num_rows
            left: list[tuple[str, _Failed, list[tuple[str, bytes]]]] = []
            file_dlq = 0
            replayed_at = ("replayed_at", datetime.now(UTC).isoformat().encode())
            groups: dict[tuple[str, str], tuple[list[tuple[str, bytes]], list[int]]] = {}
            topics = table.column("topic").to_pylist()
            header_lists = table.column("headers").to_pylist()
            for i, (topic, hs) in enumerate(zip(topics, header_lists, strict=True)):
                headers = [(h["key"], h["value"]) for h in hs or []]
                group_key = (topic, json.dumps([[k, v.hex()] for k, v in headers]))
                groups.setdefault(group_key, (headers, []))[1].append(i)
            keys = table.column("key").to_pylist()
            values = table.column("value").to_pylist()
            for (topic, _), (headers, rows) in groups.items():
                with_replay = [*headers, replayed_at]
                try:
                    ensure(topic)
                except (SinkError, KafkaException) as exc:
                    log.debug("kafka: cannot ensure %s: %s", topic, exc)
                chunk = _Chunk([keys[i] for i in rows], [values[i] for i in rows])
                outcome = delivery.deliver(topic, with_replay, [chunk], len(rows))
                if outcome.delivered + outcome.dlq + len(outcome.spool) != len(rows):
                    raise SinkError(f"kafka: replay of {path}: accounting error")
                counts["delivered"] += outcome.delivered
                counts["dlq"] += outcome.dlq
                file_dlq += outcome.dlq
                # Keep the original headers (not the replay stamp) for the next replay.
                left += [(t, f, headers if t == topic else h) for t, f, h in outcome.spool]
            if left:
                counts["remaining"] += len(left)
                _write_spool(path, left, {**meta, "spooled": str(len(left))})
                continue
            path.unlink(missing_ok=True)
            counts["files_done"] += 1
            if meta.get("table") and meta.get("video_id"):
                manifest = {
                    k: meta.get(k, "")
                    for k in (
                        "export_id",
                        "fingerprint",
                        "topic",
                        "bootstrap",
                        "value_format",
                        "table",
                        "video_id",
                    )
                }
                manifest["rows"] = int(meta.get("rows", "0") or 0)
                manifest["dlq"] = file_dlq
                manifest["replayed_from"] = path.name
                _write_manifest(
                    state_dir / meta["table"] / f"{_safe(meta['video_id'])}.json", manifest
                )
    finally:
        if delivery is not None:
            delivery.close()
    log.info("kafka: replay of %s: %s", spool_dir, counts)
    return counts


# --- consuming -----------------------------------------------------------------------------


def _decode(message: Message) -> dict[str, Any]:
    headers = {
        k: (v.decode("utf-8", "replace") if v is not None else None)
        # A consumed message's headers are a list of (str, bytes or None), never a dict.
        for k, v in cast("list[tuple[str, bytes | None]]", message.headers() or [])
    }
    key = message.key()
    out: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp_ms": message.timestamp()[1],
        "key": key.decode("utf-8", "replace") if key is not None else None,
        "headers": headers,
        "value": None,
    }
    payload = message.value()
    try:
        if headers.get("content-type") == PROTOBUF_CONTENT_TYPE:
            out["value"] = decode_protobuf(headers.get("table") or "", payload or b"")
        else:
            out["value"] = json.loads(payload) if payload else None
    except Exception as exc:  # a consumer reports a bad record rather than stopping on it
        out["error"] = f"cannot decode value: {type(exc).__name__}: {exc}"
    return out


def tail(
    bootstrap: str,
    topics: Sequence[str],
    *,
    group_id: str | None = None,
    from_beginning: bool = True,
    dedupe: bool = True,
    max_messages: int | None = None,
    timeout_s: float = 5.0,
    join_timeout_s: float = 60.0,
    consumer_config: Mapping[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Decoded messages of ``topics`` until none arrives for ``timeout_s`` (or ``max_messages``).

    Each item holds topic, partition, offset, timestamp_ms, key, headers (``str`` values)
    and value (a dict, for JSON and Protobuf alike; see :func:`decode_protobuf`), plus
    ``error`` when a value cannot be decoded. With ``dedupe`` a row id
    (``detection_id``/``event_id``, chosen by the ``table`` header) is yielded once per
    topic: the at-least-once log read as exactly-once. Without ``group_id`` the partitions
    are assigned directly (no group, no commits); with one, the consumer joins the group
    (waiting up to ``join_timeout_s``) and commits exactly what it yielded or skipped.

    >>> for m in tail("127.0.0.1:9092", ["roadlens.events.v1"], max_messages=1):  # doctest: +SKIP
    ...     m["value"]["event_id"]
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group_id or f"roadlens-tail-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": bool(group_id),
        # Offsets are stored per handled message, so a max_messages stop loses nothing.
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest" if from_beginning else "latest",
        "enable.partition.eof": False,
    }
    if group_id:
        # A short session makes the group join take seconds rather than ~half of 45 s.
        config |= {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000}
    config |= {"logger": RDKAFKA_LOG} | dict(consumer_config or {})
    consumer = Consumer(config)
    seen: set[tuple[str, str]] = set()
    yielded = 0
    assigned = threading.Event()
    try:
        if group_id:
            consumer.subscribe(list(topics), on_assign=lambda _c, _p: assigned.set())
        else:
            assignment = []
            for topic in topics:
                try:
                    listed = consumer.list_topics(topic, timeout=max(timeout_s, 5.0))
                except KafkaException as exc:
                    raise SinkError(
                        f"kafka: cannot reach {redact(bootstrap)}: {exc.args[0].str()}"
                    ) from None
                metadata = listed.topics[topic]
                if metadata.error is not None:
                    raise SinkError(f"kafka: cannot read topic {topic}: {metadata.error}")
                start = OFFSET_BEGINNING if from_beginning else OFFSET_END
                assignment += [TopicPartition(topic, p, start) for p in sorted(metadata.partitions)]
            consumer.assign(assignment)
            assigned.set()
        started = time.monotonic()
        idle_since = started
        while max_messages is None or yielded < max_messages:
            want = 1000 if max_messages is None else min(1000, max_messages - yielded)
            batch = consumer.consume(num_messages=want, timeout=min(timeout_s, 1.0))
            if not batch:
                now = time.monotonic()
                if not assigned.is_set():
                    if now - started > join_timeout_s:
                        raise SinkError(
                            f"kafka: group {group_id} not joined in {join_timeout_s} s "
                            f"on {redact(bootstrap)}"
                        )
                    idle_since = now
                elif now - idle_since >= timeout_s:
                    return
                continue
            idle_since = time.monotonic()
            for message in batch:
                if message.error() is not None:
                    raise SinkError(f"kafka: consumer error: {message.error()}")
                decoded = _decode(message)
                if group_id:
                    consumer.store_offsets(message)
                if dedupe and isinstance(decoded["value"], dict):
                    column = id_column(decoded["headers"].get("table") or "")
                    row_id = decoded["value"].get(column) if column else None
                    if row_id is not None:
                        marker = (decoded["topic"], str(row_id))
                        if marker in seen:
                            continue
                        seen.add(marker)
                yield decoded
                yielded += 1
                if max_messages is not None and yielded >= max_messages:
                    return
    finally:
        consumer.close()
