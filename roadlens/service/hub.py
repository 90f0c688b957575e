"""Bounded WebSocket fan-out of live detections and events.

Each connected client has a subscription (tables, source ids, rule ids) and a bounded
queue of outgoing messages that one sender task drains. :meth:`Hub.publish` runs on the
event loop, never awaits, and only ``put_nowait``\\ s: a client whose queue is full (in
messages, or in bytes) is a slow client and is dropped (its connection is closed with code 1008, policy violation),
so one stalled reader never delays the others or grows the server's memory.

A message carries every row of one published batch that matches the client::

    {"type": "events", "origin": "lake" | "kafka", "published_ms": 1763719200123,
     "rows": [{...}, ...]}

``published_ms`` is when the batch was published upstream (the lake file's modification
time, or the Kafka record's timestamp), so a client can measure end-to-end latency.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from roadlens.lake import DETECTIONS_TABLE, EVENTS_TABLE

LIVE_TABLES = (EVENTS_TABLE, DETECTIONS_TABLE)
DROP_CODE = 1008  # policy violation: the client did not keep up


@dataclass(frozen=True)
class Row:
    """One row ready to send: its routing keys and its JSON text (encoded once)."""

    source_id: str | None
    rule_id: str | None
    json: str


class Subscribe(BaseModel):
    """A client's ``{"action": "subscribe", ...}`` message (replaces its subscription).

    Empty ``sources``/``rules`` mean all; ``rules`` narrows events only.
    """

    model_config = ConfigDict(extra="forbid")

    action: str = Field(pattern="^subscribe$")
    tables: list[str] = Field(default_factory=lambda: ["events"], max_length=2)
    sources: list[str] = Field(default_factory=list, max_length=1000)
    rules: list[str] = Field(default_factory=list, max_length=1000)


@dataclass
class Subscription:
    tables: frozenset[str]
    sources: frozenset[str] = frozenset()
    rules: frozenset[str] = frozenset()

    def wants(self, table: str, row: Row) -> bool:
        if table not in self.tables:
            return False
        if self.sources and row.source_id not in self.sources:
            return False
        return not (table == "events" and self.rules and row.rule_id not in self.rules)


@dataclass(eq=False)
class Client:
    """One connection's state; ``dropped`` is set when the hub gave up on it."""

    id: int
    queue: asyncio.Queue[str]
    subscription: Subscription | None = None
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    delivered_rows: int = 0
    queued_bytes: int = 0

    async def next_message(self) -> str:
        """The next queued message (for the sender task), releasing its bytes."""
        text = await self.queue.get()
        self.queued_bytes -= len(text)
        return text


class Hub:
    """The set of connected clients and the fan-out; use from the event loop thread only."""

    def __init__(self, queue_size: int = 256, queue_bytes: int = 64 << 20) -> None:
        if queue_size < 1 or queue_bytes < 1:
            raise ValueError("queue_size and queue_bytes must be at least 1")
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.clients: set[Client] = set()
        self.dropped = 0
        self.published_rows = 0
        self._ids = itertools.count(1)

    def register(self) -> Client:
        client = Client(next(self._ids), asyncio.Queue(maxsize=self.queue_size))
        self.clients.add(client)
        return client

    def unregister(self, client: Client) -> None:
        self.clients.discard(client)

    def send(self, client: Client, message: dict[str, Any]) -> None:
        """Queue a control message (ack, error, pong) for one client, dropping it when full."""
        self._offer(client, json.dumps(message))

    def _offer(self, client: Client, text: str) -> bool:
        if client.dropped.is_set():
            return False
        if client.queued_bytes + len(text) > self.queue_bytes and not client.queue.empty():
            self.drop(client)
            return False
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.drop(client)
            return False
        client.queued_bytes += len(text)
        return True

    def drop(self, client: Client) -> None:
        """Give up on a slow client: its handler closes the socket with :data:`DROP_CODE`."""
        if not client.dropped.is_set():
            client.dropped.set()
            self.dropped += 1
        self.clients.discard(client)

    def publish(
        self, table: str, rows: Sequence[Row], *, origin: str, published_ms: int | None
    ) -> int:
        """Queue ``rows`` of ``table`` for every subscribed client; return clients reached."""
        if not rows:
            return 0
        self.published_rows += len(rows)
        head = json.dumps({"type": table, "origin": origin, "published_ms": published_ms})[:-1]
        reached = 0
        cache: dict[tuple[frozenset[str], frozenset[str]], tuple[str, int] | None] = {}
        for client in list(self.clients):
            sub = client.subscription
            if sub is None or table not in sub.tables:
                continue
            key = (sub.sources, sub.rules if table == "events" else frozenset())
            if key not in cache:
                matched = [r.json for r in rows if sub.wants(table, r)]
                cache[key] = (
                    (f'{head}, "rows": [{",".join(matched)}]}}', len(matched)) if matched else None
                )
            entry = cache[key]
            if entry is not None and self._offer(client, entry[0]):
                client.delivered_rows += entry[1]
                reached += 1
        return reached


def subscription_from(
    tables: Iterable[str], sources: Iterable[str], rules: Iterable[str]
) -> Subscription:
    """A :class:`Subscription`, or ValueError naming an unknown table."""
    tables = frozenset(tables)
    unknown = tables - set(LIVE_TABLES)
    if unknown or not tables:
        raise ValueError(f"tables must be among {list(LIVE_TABLES)}, got {sorted(tables)}")
    return Subscription(tables, frozenset(sources), frozenset(rules))
