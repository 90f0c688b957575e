"""RabbitMQ sink against the real broker (``amqp_url``).

Each test uses its own exchange (deleted afterwards) and exclusive, auto-deleted queues.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pika
import pyarrow as pa
import pytest

from roadlens.sinks.amqp import AmqpSink, routing_key_column
from roadlens.sinks.base import SinkError, table_fingerprint
from roadlens.synth.tables import synthetic_detections, synthetic_events
from tests.services import free_port

VIDEO = "veh-01--clip-0001"


@dataclass(frozen=True)
class Message:
    routing_key: str
    properties: pika.BasicProperties
    body: bytes

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Broker:
    """A blocking connection for declaring test queues and reading them back."""

    def __init__(self, url: str, exchange: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.exchange = exchange

    def queue(self, binding: str = "#") -> str:
        """An exclusive queue bound to the exchange (which must exist)."""
        name = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.channel.queue_bind(name, self.exchange, binding)
        return name

    def drain(self, queue: str, limit: int = 1_000_000) -> list[Message]:
        messages = []
        while len(messages) < limit:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            messages.append(Message(method.routing_key, properties, body))
        return messages

    def close(self) -> None:
        if self.connection.is_open:
            self.channel.exchange_delete(self.exchange)
            self.connection.close()


@pytest.fixture
def exchange() -> str:
    return f"rltest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def broker(amqp_url: str, exchange: str) -> Iterator[Broker]:
    broker = Broker(amqp_url, exchange)
    yield broker
    broker.close()


def with_password(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


def two_rule_events(rows: int) -> pa.Table:
    events = synthetic_events(rows)
    rules = ["stop-line" if i % 3 else "speeding" for i in range(rows)]
    return events.set_column(events.schema.get_field_index("rule_id"), "rule_id", [rules])


def test_every_message_arrives_equal_to_the_input(
    amqp_url: str, exchange: str, broker: Broker, tmp_path: Path
) -> None:
    events = two_rule_events(500)
    with AmqpSink(amqp_url, exchange=exchange, state_dir=tmp_path) as sink:
        queue = broker.queue("#")
        result = sink.write_video("events", VIDEO, events, export_id="run-1")

    got = broker.drain(queue)
    assert len(got) == 500 and result.extra["confirmed"] == 500
    assert result.bytes == sum(len(m.body) for m in got)
    rows = events.to_pylist()
    # One channel, one queue: the broker keeps the publish order.
    assert [m.properties.message_id for m in got] == [r["event_id"] for r in rows]
    for message, row in zip(got, rows, strict=True):
        payload = message.payload
        assert message.routing_key == f"events.veh-01.{row['rule_id']}"
        assert payload["event_id"] == row["event_id"]
        assert payload["captured_at"] == row["captured_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert payload["attributes"] == json.loads(row["attributes"])
        assert payload["detection_ids"] == row["detection_ids"]
        assert (payload["lat"], payload["lon"]) == (row["lat"], row["lon"])
        props = message.properties
        assert props.delivery_mode == 2
        assert props.content_type == "application/json"
        assert props.headers == {
            "schema_version": 1,
            "video_id": VIDEO,
            "table": "events",
            "export_id": "run-1",
        }


def test_confirms_latency_and_manifest(
    amqp_url: str, exchange: str, broker: Broker, tmp_path: Path
) -> None:
    detections = synthetic_detections(5_000)
    fingerprint = table_fingerprint(detections)
    with AmqpSink(amqp_url, exchange=exchange, state_dir=tmp_path, window=500) as sink:
        queue = broker.queue("detections.#")
        assert sink.committed("detections", [VIDEO]) == {}
        result = sink.write_video(
            "detections", VIDEO, detections, export_id="run-1", fingerprint=fingerprint
        )
        assert result.extra["confirmed"] == 5_000 and result.extra["routing_keys"] == 1
        assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
        assert sink.committed("detections", [VIDEO, "other"]) == {VIDEO: fingerprint}
        # Writes reuse the connection; delivery tags keep counting on the same channel.
        again = sink.write_video("detections", VIDEO, detections, export_id="run-2")
        assert again.extra["confirmed"] == 5_000

        empty = sink.write_video("detections", VIDEO, detections.slice(0, 0), export_id="r3")
        assert (empty.rows, empty.extra["confirmed"]) == (0, 0)
        assert sink.committed("detections", [VIDEO]) == {}
    assert len(broker.drain(queue)) == 10_000  # at-least-once: a re-write re-sends


def test_transient_messages_when_asked(
    amqp_url: str, exchange: str, broker: Broker, tmp_path: Path
) -> None:
    with AmqpSink(amqp_url, exchange=exchange, persistent=False, state_dir=tmp_path) as sink:
        queue = broker.queue()
        sink.write_video("events", VIDEO, synthetic_events(3), export_id="r")
    assert {m.properties.delivery_mode for m in broker.drain(queue)} == {1}


def test_routing_keys_select_rules(
    amqp_url: str, exchange: str, broker: Broker, tmp_path: Path
) -> None:
    events = two_rule_events(30)
    with AmqpSink(amqp_url, exchange=exchange, state_dir=tmp_path) as sink:
        everything = broker.queue("events.#")
        speeding = broker.queue("events.*.speeding")
        sink.write_video("events", VIDEO, events, export_id="r")
    assert len(broker.drain(everything)) == 30
    expected = [r["event_id"] for r in events.to_pylist() if r["rule_id"] == "speeding"]
    assert [m.payload["event_id"] for m in broker.drain(speeding)] == expected


def test_unroutable_messages_fail_the_write(
    amqp_url: str, exchange: str, broker: Broker, tmp_path: Path
) -> None:
    with AmqpSink(amqp_url, exchange=exchange, state_dir=tmp_path) as sink:
        broker.queue("events.#")  # nothing bound for detections
        with pytest.raises(SinkError) as caught:
            sink.write_video("detections", VIDEO, synthetic_detections(50), export_id="r")
        message = str(caught.value)
        assert "detections video 'veh-01--clip-0001'" in message
        assert "50 of 50 messages were unroutable" in message
        assert "['detections.veh-01']" in message
        assert sink.committed("detections", [VIDEO]) == {}
        # The connection is still good for routable data.
        assert sink.write_video("events", VIDEO, synthetic_events(5), export_id="r").rows == 5


def test_wrong_credentials_error_hides_the_password(amqp_url: str, tmp_path: Path) -> None:
    url = with_password(amqp_url, "guest", "wrong-s3cret")
    with pytest.raises(SinkError) as caught:
        AmqpSink(url, state_dir=tmp_path, timeout_s=10)
    message = str(caught.value)
    assert message.startswith("amqp (amqp://guest:***@")
    assert "ACCESS_REFUSED" in message or "Authentication" in message
    assert "wrong-s3cret" not in message


def test_wrong_port_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="cannot connect") as caught:
        AmqpSink(f"amqp://guest:pw-s3cret@127.0.0.1:{free_port()}/%2F", state_dir=tmp_path)
    assert "pw-s3cret" not in str(caught.value)


def test_exchange_of_another_type_is_reported(
    amqp_url: str, exchange: str, broker: Broker, tmp_path: Path
) -> None:
    broker.channel.exchange_declare(exchange, "fanout", durable=True)
    with pytest.raises(SinkError, match="PRECONDITION_FAILED"):
        AmqpSink(amqp_url, exchange=exchange, state_dir=tmp_path)


def test_a_failed_write_reconnects_on_the_next(
    amqp_url: str, exchange: str, broker: Broker, tmp_path: Path
) -> None:
    events = synthetic_events(20)
    with AmqpSink(amqp_url, exchange=exchange, mandatory=False, state_dir=tmp_path) as sink:
        broker.channel.exchange_delete(exchange)  # publishing now closes the channel (404)
        with pytest.raises(SinkError, match="NOT_FOUND"):
            sink.write_video("events", VIDEO, events, export_id="r1")
        assert sink.committed("events", [VIDEO]) == {}
        result = sink.write_video("events", VIDEO, events, export_id="r2", fingerprint="fp")
        assert result.extra["confirmed"] == 20
        assert sink.committed("events", [VIDEO]) == {VIDEO: "fp"}


def test_routing_keys_keep_one_word_per_id() -> None:
    events = synthetic_events(2, source_id="cam.3")
    events = events.set_column(
        events.schema.get_field_index("rule_id"), "rule_id", [["zone.a", "plain"]]
    )
    assert routing_key_column("events", events).to_pylist() == [
        "events.cam_3.zone_a",
        "events.cam_3.plain",
    ]


def test_an_idle_connection_is_renewed(
    amqp_url: str, exchange: str, broker: Broker, tmp_path: Path
) -> None:
    # Between writes nothing services the connection, so heartbeats lapse (1 s here) and the
    # connection dies; the next write must notice and reconnect instead of failing.
    url = amqp_url + ("&" if "?" in amqp_url else "?") + "heartbeat=1"
    with AmqpSink(url, exchange=exchange, state_dir=tmp_path) as sink:
        queue = broker.queue()
        sink.write_video("events", VIDEO, synthetic_events(10), export_id="r1")
        time.sleep(3.5)
        result = sink.write_video("events", VIDEO, synthetic_events(10), export_id="r2")
    assert result.extra["confirmed"] == 10
    assert len(broker.drain(queue)) == 20
