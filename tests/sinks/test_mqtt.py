"""MQTT sink against the real Mosquitto broker (``mqtt_url``), plus a fake broker for failures.

Each test publishes under its own random topic prefix, so runs never see each other's
messages; retained messages are cleared afterwards.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pyarrow as pa
import pytest

from roadlens.sinks.base import SinkError, table_fingerprint
from roadlens.sinks.mqtt import MqttSink, topic_column
from roadlens.synth.tables import synthetic_detections, synthetic_events
from tests.services import free_port

VIDEO = "veh-01--clip-0001"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Subscriber:
    """A paho client subscribed (and SUBACKed) to ``topic`` that collects messages."""

    def __init__(self, url: str, topic: str, qos: int = 2) -> None:
        parts = urlsplit(url)
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex)
        if parts.username:
            self.client.username_pw_set(parts.username, parts.password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()
        self.client.subscribe(topic, qos=qos)
        assert subscribed.wait(10), "no SUBACK from the broker"

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(msg.topic, msg.payload, msg.qos, bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return f"rltest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def subscriber(mqtt_url: str, prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url, f"{prefix}/#")
    yield sub
    sub.close()


def two_rule_events(rows: int) -> pa.Table:
    events = synthetic_events(rows)
    rules = ["stop-line" if i % 3 else "speeding" for i in range(rows)]
    return events.set_column(events.schema.get_field_index("rule_id"), "rule_id", [rules])


def test_every_event_arrives_equal_to_the_input(
    mqtt_url: str, prefix: str, subscriber: Subscriber, tmp_path: Path
) -> None:
    events = two_rule_events(300)
    with MqttSink(mqtt_url, topic_prefix=prefix, qos=1, state_dir=tmp_path) as sink:
        result = sink.write_video("events", VIDEO, events, export_id="run-1")

    got = subscriber.wait_for(300)
    assert len(got) == 300
    assert result.extra["acked"] == 300 and result.extra["topics"] == 2
    assert result.bytes == sum(len(m.payload) for m in got)
    by_id = {json.loads(m.payload)["event_id"]: m for m in got}
    for row in events.to_pylist():
        message = by_id[row["event_id"]]
        payload = json.loads(message.payload)
        assert message.topic == f"{prefix}/events/veh-01/{row['rule_id']}"
        assert payload["schema_version"] == 1 and payload["video_id"] == VIDEO
        assert payload["captured_at"] == row["captured_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert payload["attributes"] == json.loads(row["attributes"])
        assert payload["detection_ids"] == row["detection_ids"]
        assert (payload["lat"], payload["lon"], payload["value"]) == (
            row["lat"],
            row["lon"],
            row["value"],
        )
    # One publisher, one topic: the broker keeps the input order.
    stop_line = [json.loads(m.payload)["event_id"] for m in got if m.topic.endswith("stop-line")]
    expected = [r["event_id"] for r in events.to_pylist() if r["rule_id"] == "stop-line"]
    assert stop_line == expected


def test_qos1_acks_latency_and_manifest(mqtt_url: str, prefix: str, tmp_path: Path) -> None:
    detections = synthetic_detections(2_000)
    fingerprint = table_fingerprint(detections)
    with MqttSink(mqtt_url, topic_prefix=prefix, qos=1, state_dir=tmp_path) as sink:
        assert sink.committed("detections", [VIDEO]) == {}
        result = sink.write_video(
            "detections", VIDEO, detections, export_id="run-1", fingerprint=fingerprint
        )
        assert result.extra["acked"] == 2_000
        assert 0 < result.latency_ms["p50"] <= result.latency_ms["p99"] <= result.latency_ms["max"]
        assert sink.committed("detections", [VIDEO, "other"]) == {VIDEO: fingerprint}

        # An empty write sends nothing and forgets the video.
        empty = sink.write_video("detections", VIDEO, detections.slice(0, 0), export_id="run-2")
        assert (empty.rows, empty.extra["acked"]) == (0, 0)
        assert sink.committed("detections", [VIDEO]) == {}

    # The manifest outlives the connection (a new process finds it).
    with MqttSink(mqtt_url, topic_prefix=prefix, state_dir=tmp_path) as sink:
        sink.write_video("detections", VIDEO, detections, export_id="r", fingerprint=fingerprint)
    with MqttSink(mqtt_url, topic_prefix=prefix, state_dir=tmp_path) as again:
        assert again.committed("detections", [VIDEO]) == {VIDEO: fingerprint}
    # ... but only for the same destination.
    with MqttSink(mqtt_url, topic_prefix=prefix + "-x", state_dir=tmp_path) as elsewhere:
        assert elsewhere.committed("detections", [VIDEO]) == {}


@pytest.mark.parametrize(("qos", "protocol"), [(0, "5"), (2, "5"), (2, "3.1.1")])
def test_other_qos_levels_deliver_everything(
    mqtt_url: str, prefix: str, subscriber: Subscriber, tmp_path: Path, qos: int, protocol: str
) -> None:
    # 300 QoS 2 messages with 64 asked in flight: Mosquitto holds 20 QoS 2 messages open
    # and silently drops the rest, so the sink must stay within the broker's limit.
    events = synthetic_events(300)
    with MqttSink(
        mqtt_url,
        topic_prefix=prefix,
        qos=qos,
        protocol=protocol,
        max_inflight=64,
        state_dir=tmp_path,
    ) as sink:
        result = sink.write_video("events", VIDEO, events, export_id="r")
    got = subscriber.wait_for(300, timeout=10)
    assert result.extra["acked"] == 300
    assert sorted(json.loads(m.payload)["event_id"] for m in got) == sorted(
        events["event_id"].to_pylist()
    )
    assert {m.qos for m in got} == {qos}


def test_retain_keeps_the_last_message_per_topic(
    mqtt_url: str, prefix: str, tmp_path: Path
) -> None:
    events = two_rule_events(10)
    with MqttSink(mqtt_url, topic_prefix=prefix, retain=True, state_dir=tmp_path) as sink:
        sink.write_video("events", VIDEO, events, export_id="r")
    late = Subscriber(mqtt_url, f"{prefix}/#")
    try:
        got = late.wait_for(2, timeout=5)
        time.sleep(0.2)  # nothing more should come
        got = late.wait_for(2, timeout=0)
        last = {}
        for row in events.to_pylist():
            last[f"{prefix}/events/veh-01/{row['rule_id']}"] = row["event_id"]
        assert {m.topic: json.loads(m.payload)["event_id"] for m in got} == last
        assert all(m.retain for m in got) and len(got) == 2
    finally:
        late.close()
        cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        parts = urlsplit(mqtt_url)
        cleaner.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        cleaner.loop_start()
        for topic in {m.topic for m in got}:
            cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        cleaner.disconnect()
        cleaner.loop_stop()


def test_not_retained_by_default(
    mqtt_url: str, prefix: str, subscriber: Subscriber, tmp_path: Path
) -> None:
    with MqttSink(mqtt_url, topic_prefix=prefix, state_dir=tmp_path) as sink:
        sink.write_video("events", VIDEO, synthetic_events(3), export_id="r")
    assert len(subscriber.wait_for(3)) == 3
    late = Subscriber(mqtt_url, f"{prefix}/#")
    try:
        assert late.wait_for(1, timeout=0.5) == []
    finally:
        late.close()


def test_wrong_port_gives_a_clear_error(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(SinkError) as caught:
        MqttSink(f"mqtt://roadlens:pw-s3cret@127.0.0.1:{port}", state_dir=tmp_path)
    message = str(caught.value)
    assert message.startswith(f"mqtt (mqtt://roadlens:***@127.0.0.1:{port}): cannot connect")
    assert "pw-s3cret" not in message


class FakeBroker:
    """Accepts one client, answers CONNECT with ``connack`` and ignores everything else."""

    def __init__(self, connack: bytes) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connack = connack
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                conn.recv(4096)  # CONNECT
                conn.sendall(self.connack)
                while conn.recv(65536):  # PUBLISH packets, never acknowledged
                    pass
        except OSError:
            pass  # the client hung up or the test closed the server

    def close(self) -> None:
        self.server.close()


def test_missing_acknowledgements_fail_with_counts(tmp_path: Path) -> None:
    broker = FakeBroker(connack=b"\x20\x03\x00\x00\x00")  # MQTT 5 CONNACK: success
    try:
        sink = MqttSink(f"mqtt://127.0.0.1:{broker.port}", timeout_s=0.5, state_dir=tmp_path)
        with pytest.raises(SinkError, match=r"events video .*: 0 of 10 messages acknowledged"):
            sink.write_video("events", VIDEO, synthetic_events(10), export_id="r")
        assert sink.committed("events", [VIDEO]) == {}
        sink.close()
    finally:
        broker.close()


def test_refused_login_is_reported(tmp_path: Path) -> None:
    broker = FakeBroker(connack=b"\x20\x03\x00\x87\x00")  # 0x87: not authorized
    try:
        with pytest.raises(SinkError, match="refused the connection: Not authorized") as caught:
            MqttSink(f"mqtt://u:pw-s3cret@127.0.0.1:{broker.port}", state_dir=tmp_path)
        assert "pw-s3cret" not in str(caught.value)
    finally:
        broker.close()


def test_topic_levels_never_hold_wildcards() -> None:
    events = synthetic_events(2)
    events = events.set_column(
        events.schema.get_field_index("rule_id"), "rule_id", [["a/b+c#d", "plain"]]
    )
    assert topic_column("events", events, "p").to_pylist() == [
        "p/events/veh-01/a_b_c_d",
        "p/events/veh-01/plain",
    ]
    detections = synthetic_detections(1)
    assert topic_column("detections", detections, "p").to_pylist() == ["p/detections/veh-01"]
