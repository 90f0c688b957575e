"""``/ws`` live feed over a real server: the lake poller, the Kafka (Tansu) consumer, per
source and per rule subscriptions, and the bounded fan-out that drops a slow client."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from roadlens.lake import ParquetLake
from roadlens.service import ServiceSettings, create_app
from roadlens.service.hub import Hub, Row, subscription_from
from roadlens.service.testing import ServerThread
from roadlens.synth.tables import synthetic_events

KEY = "ws-read-key"
DATE = "2026-05-04"


def _settings(home: Path, **overrides) -> ServiceSettings:
    values = dict(
        home=home,
        lake_root=home / "lake",
        landing=home / "landing",
        api_keys=f"{KEY}:read",
        rate_per_s=1000.0,
        burst=1000.0,
        poll_s=0.1,
    )
    return ServiceSettings(**(values | overrides))


def _events(video_id: str, source_id: str, rows: int = 30, seed: int = 0) -> pa.Table:
    table = synthetic_events(rows, video_id=video_id, source_id=source_id, seed=seed)
    rules = np.where(np.arange(rows) % 2 == 0, "speeding", "stop-line")
    return table.set_column(table.schema.get_field_index("rule_id"), "rule_id", pa.array(rules))


def _write(lake: ParquetLake, table: pa.Table, video_id: str, source_id: str) -> None:
    lake.write_video("events", table, date=DATE, source_id=source_id, video_id=video_id)


def _connect(url: str, query: str = "", **kwargs) -> ClientConnection:
    return connect(f"{url}?api_key={KEY}{query}", compression=None, max_size=None, **kwargs)


def _collect(ws: ClientConnection, want: int, timeout: float = 15.0) -> list[dict]:
    """Data messages until ``want`` rows arrived (or the timeout)."""
    messages, rows = [], 0
    deadline = time.monotonic() + timeout
    while rows < want and time.monotonic() < deadline:
        try:
            message = json.loads(ws.recv(timeout=max(0.05, deadline - time.monotonic())))
        except TimeoutError:
            break
        if "rows" in message:
            messages.append(message)
            rows += len(message["rows"])
    return messages


def _ids(messages: list[dict]) -> list[str]:
    return [r["event_id"] for m in messages for r in m["rows"]]


@pytest.fixture
def lake_server(tmp_path: Path):
    lake = ParquetLake(tmp_path / "lake")
    _write(lake, _events("veh-01--old", "veh-01"), "veh-01--old", "veh-01")  # history
    with ServerThread(create_app(_settings(tmp_path))) as server:
        yield server, lake


def test_lake_feed_pushes_new_rows_per_source_and_rule(lake_server) -> None:
    server, lake = lake_server
    by_source = _connect(server.ws_url, "&tables=events&sources=veh-02")
    assert json.loads(by_source.recv(5))["type"] == "subscribed"
    by_rule = _connect(server.ws_url)
    by_rule.send(json.dumps({"action": "subscribe", "tables": ["events"], "rules": ["speeding"]}))
    ack = json.loads(by_rule.recv(5))
    assert ack == {"type": "subscribed", "tables": ["events"], "sources": [], "rules": ["speeding"]}
    time.sleep(0.3)  # the poller has taken its first look
    one, two = _events("veh-01--new", "veh-01", seed=1), _events("veh-02--new", "veh-02", seed=2)
    written = time.time()
    _write(lake, one, "veh-01--new", "veh-01")
    _write(lake, two, "veh-02--new", "veh-02")

    got = _collect(by_source, want=two.num_rows)
    assert sorted(_ids(got)) == sorted(two.column("event_id").to_pylist())
    assert {m["origin"] for m in got} == {"lake"} and all(m["type"] == "events" for m in got)
    assert all(m["published_ms"] / 1000 >= written - 1 for m in got)

    speeding = [
        e
        for t in (one, two)
        for e, r in zip(
            t.column("event_id").to_pylist(), t.column("rule_id").to_pylist(), strict=True
        )
        if r == "speeding"
    ]
    got = _collect(by_rule, want=len(speeding))
    assert sorted(_ids(got)) == sorted(speeding)  # never the history, never stop-line
    assert all(r["rule_id"] == "speeding" for m in got for r in m["rows"])
    by_source.close()
    by_rule.close()


def test_control_messages_and_errors(lake_server) -> None:
    server, _ = lake_server
    with _connect(server.ws_url) as ws:
        ws.send(json.dumps({"action": "ping"}))
        assert json.loads(ws.recv(5)) == {"type": "pong"}
        ws.send("not json")
        assert json.loads(ws.recv(5))["type"] == "error"
        ws.send(json.dumps({"action": "subscribe", "tables": ["bogus"]}))
        error = json.loads(ws.recv(5))
        assert error["type"] == "error" and "tables" in error["detail"]
        ws.send(json.dumps({"action": "subscribe", "colour": "red"}))
        assert json.loads(ws.recv(5))["type"] == "error"


def test_websocket_needs_a_key(lake_server) -> None:
    server, _ = lake_server
    with pytest.raises(InvalidStatus) as excinfo:
        connect(server.ws_url, compression=None)
    assert excinfo.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        connect(f"{server.ws_url}?api_key=wrong", compression=None)
    with connect(server.ws_url, additional_headers={"X-API-Key": KEY}, compression=None) as ws:
        ws.send(json.dumps({"action": "ping"}))
        assert json.loads(ws.recv(5)) == {"type": "pong"}


def test_hub_drops_only_the_client_whose_queue_is_full() -> None:
    async def scenario() -> None:
        hub = Hub(queue_size=3, queue_bytes=1 << 20)
        reader, stalled = hub.register(), hub.register()
        for client in (reader, stalled):
            client.subscription = subscription_from(["events"], [], [])
        rows = [Row("cam-1", "r", '{"event_id": "e"}')]
        for _ in range(10):
            hub.publish("events", rows, origin="lake", published_ms=0)
            await reader.next_message()  # the reader keeps up; the other never reads
        assert stalled.dropped.is_set() and not reader.dropped.is_set()
        assert hub.dropped == 1 and hub.clients == {reader}
        assert reader.delivered_rows == 10 and reader.queued_bytes == 0
        # the byte bound: one message over it is sent to an empty queue, a second is not
        big = [Row("cam-1", "r", "x" * (1 << 20))]
        hub.publish("events", big, origin="lake", published_ms=0)
        assert not reader.dropped.is_set()
        hub.publish("events", big, origin="lake", published_ms=0)
        assert reader.dropped.is_set() and hub.dropped == 2

    asyncio.run(scenario())


def _slow_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up quickly
    sock.connect(("127.0.0.1", port))
    return sock


def test_slow_client_is_dropped_while_a_fast_one_keeps_receiving(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path / "lake")
    files, rows_per_file = 16, 4000
    with ServerThread(create_app(_settings(tmp_path, ws_queue=4))) as server:
        slow = _connect(
            server.ws_url, "&tables=events", sock=_slow_socket(server.port), max_queue=1
        )
        fast = _connect(server.ws_url, "&tables=events")
        assert json.loads(fast.recv(5))["type"] == "subscribed"
        received: list[str] = []
        done = threading.Event()

        def read_fast() -> None:
            while len(received) < files * rows_per_file:
                try:
                    message = json.loads(fast.recv(30))
                except (TimeoutError, ConnectionClosed):
                    break
                received.extend(r["event_id"] for r in message.get("rows", []))
            done.set()

        reader = threading.Thread(target=read_fast, daemon=True)
        reader.start()
        tables = [
            _events(f"veh-01--bulk-{i:02d}", "veh-01", rows=rows_per_file, seed=i)
            for i in range(files)
        ]
        time.sleep(0.3)
        written: list[str] = []
        for i, table in enumerate(tables):
            # about one 2.5 MB message per poll: a reader that keeps up never has 4 queued
            _write(lake, table, f"veh-01--bulk-{i:02d}", "veh-01")
            written += table.column("event_id").to_pylist()
            time.sleep(0.25)
        assert done.wait(90), "the fast client stalled"
        assert sorted(received) == sorted(written)
        health = httpx.get(f"{server.url}/health").json()
        assert health["websocket_dropped"] == 1 and health["websocket_clients"] == 1
        # the slow client, reading at last, gets what was buffered and then a 1008 close
        with pytest.raises(ConnectionClosed) as excinfo:
            while True:
                slow.recv(10)
        assert excinfo.value.rcvd is not None and excinfo.value.rcvd.code == 1008
        fast.close()


def test_kafka_feed_delivers_produced_events(tmp_path: Path, kafka_bootstrap: str) -> None:
    from roadlens.sinks.kafka import KafkaSink

    prefix = f"ws{int(time.time() * 1000) % 10**8}"
    settings = _settings(tmp_path, kafka_bootstrap=kafka_bootstrap, kafka_prefix=prefix)
    with ServerThread(create_app(settings)) as server:
        assert server.app.state.feed.ready.wait(30), "the Kafka feed did not connect"
        assert httpx.get(f"{server.url}/health").json()["live_feed"] == "kafka"
        ws = _connect(server.ws_url, "&tables=events&sources=veh-07")
        assert json.loads(ws.recv(5))["type"] == "subscribed"
        table = _events("veh-07--live", "veh-07", rows=25, seed=7)
        other = _events("veh-08--live", "veh-08", rows=5, seed=8)
        with KafkaSink(kafka_bootstrap, topic_prefix=prefix, spool_dir=tmp_path / "spool") as sink:
            produced = time.time()
            sink.write_video("events", "veh-08--live", other, export_id="t1")
            sink.write_video("events", "veh-07--live", table, export_id="t1")
        got = _collect(ws, want=table.num_rows, timeout=20)
        assert sorted(_ids(got)) == sorted(table.column("event_id").to_pylist())
        assert {m["origin"] for m in got} == {"kafka"}
        assert all(abs(m["published_ms"] / 1000 - produced) < 30 for m in got)
        ws.close()
