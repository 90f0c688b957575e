"""MQTT sink: one JSON message per row, published with QoS 0, 1 or 2 and acknowledged.

Topics are ``<prefix>/<table>/<source_id>``, and ``<prefix>/events/<source_id>/<rule_id>``
for rule events, so a consumer can subscribe to one camera (``roadlens/detections/veh-01``)
or one rule everywhere (``roadlens/events/+/stop-line``). Payloads are the rows encoded in
bulk by :func:`roadlens.sinks.encode.json_lines`; each carries ``schema_version``,
``video_id`` and its deterministic ``detection_id``/``event_id``.

Delivery is at-least-once: a write returns only after the broker acknowledged every
QoS >= 1 message (PUBACK/PUBCOMP), or raises :class:`SinkError` with the counts. A broker
cannot take messages back, so a re-write sends the video again and consumers dedupe by
id. What was last sent completely is kept in a :class:`~roadlens.sinks.state.LocalManifest`
for :meth:`MqttSink.committed`.

Example:
    >>> with MqttSink("mqtt://127.0.0.1:1883", qos=1) as sink:  # doctest: +SKIP
    ...     sink.write_video("events", "veh-01--clip", events, export_id="run-1").extra["acked"]
    42
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import pyarrow as pa
import pyarrow.compute as pc

from roadlens.redact import redact, scrub
from roadlens.sinks.base import (
    SinkConfigError,
    SinkError,
)
from roadlens.sinks.broker import BrokerSink, Published
from roadlens.sinks.encode import iter_bytes, json_lines
from roadlens.sinks.state import LocalManifest, default_state_dir

# CONNACK reason codes no retry changes: unsupported protocol version, client id not valid,
# bad user name or password, not authorized (MQTT 3.1.1's codes 1, 2, 4, 5 map onto these).
_LOGIN_REFUSALS = frozenset({132, 133, 134, 135})

# Characters that are wildcards or separators in MQTT topic names.
_TOPIC_UNSAFE = r"[/+#\x00]"


def topic_column(table: str, data: pa.Table, prefix: str) -> pa.Array:
    """The topic of every row: ``prefix/table/source_id`` (+ ``/rule_id`` for events).

    Wildcards and separators inside ids become ``_`` so that one id is one topic level.
    """
    levels = [pc.replace_substring_regex(data.column("source_id"), _TOPIC_UNSAFE, "_")]
    if table == "events":
        levels.append(pc.replace_substring_regex(data.column("rule_id"), _TOPIC_UNSAFE, "_"))
    joined = pc.binary_join_element_wise(f"{prefix}/{table}", *levels, "/")
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


class _Acks:
    """Publish -> acknowledgement bookkeeping shared with paho's network thread."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.acked = 0
        self.failed = 0
        self.wake_at = 1 << 62
        self.sent_at: dict[int, float] = {}  # mid -> publish time, until acknowledged
        self.early: dict[int, float] = {}  # mid -> ack time, when the ack beat the bookkeeping
        self.latencies: list[float] = []

    def on_publish(self, mid: int, failed: bool) -> None:
        now = time.perf_counter()
        with self.cond:
            started = self.sent_at.pop(mid, None)
            if started is None:
                self.early[mid] = now
            else:
                self.latencies.append(now - started)
            self.acked += 1
            self.failed += failed
            if self.acked >= self.wake_at:
                self.cond.notify_all()

    def sent(self, mid: int, started: float) -> None:
        with self.cond:
            acked_at = self.early.pop(mid, None)
            if acked_at is None:
                self.sent_at[mid] = started
            else:
                self.latencies.append(acked_at - started)

    def wait_until(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` acks arrived, failing after ``timeout_s`` without progress."""
        with self.cond:
            self.wake_at = count
            while self.acked < count:
                before = self.acked
                self.cond.wait_for(lambda: self.acked >= count, timeout=timeout_s)
                if self.acked == before:
                    return False
            return True


class MqttSink(BrokerSink):
    """Publishes rows as JSON to an MQTT broker (paho-mqtt 2.x; MQTT 5, or 3.1.1).

    ``url`` is ``mqtt://[user:password@]host[:port]`` (``mqtts://`` for TLS). ``qos`` 1 or 2
    waits for the broker's acknowledgement of every message; 0 waits until every message
    was written to the socket. ``retain=True`` makes the broker keep the last message of
    each topic for late subscribers. ``timeout_s`` bounds connecting and any wait without
    a single acknowledgement. At most ``max_inflight`` messages are unacknowledged at the
    protocol level, never more than the broker's MQTT 5 Receive Maximum.
    """

    name = "mqtt"

    def __init__(
        self,
        url: str,
        *,
        topic_prefix: str = "roadlens",
        qos: int = 1,
        retain: bool = False,
        client_id: str | None = None,
        state_dir: str | Path | None = None,
        timeout_s: float = 30.0,
        max_inflight: int = 20,
        keepalive_s: int = 60,
        protocol: str = "5",
    ) -> None:
        if qos not in (0, 1, 2):
            raise SinkConfigError(f"mqtt: qos must be 0, 1 or 2, not {qos!r}")
        if protocol not in ("5", "3.1.1"):
            raise SinkConfigError(f"mqtt: protocol must be '5' or '3.1.1', not {protocol!r}")
        if not topic_prefix or any(c in topic_prefix for c in "+#\x00"):
            raise SinkConfigError(
                f"mqtt: topic prefix {topic_prefix!r} is empty or holds a wildcard"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise SinkConfigError(f"mqtt: {redact(url)} is not an mqtt:// or mqtts:// URL")
        self.url = url
        self.topic_prefix = topic_prefix.rstrip("/")
        self.qos = qos
        self.retain = retain
        self.timeout_s = timeout_s
        self.protocol = protocol
        self.max_inflight = max_inflight
        if protocol == "3.1.1" and qos == 2:
            # An MQTT 3.1.1 broker cannot announce how many QoS 2 messages it holds open;
            # Mosquitto keeps max_inflight_messages (20 by default) and silently drops the
            # rest while still acknowledging them (measured: 40 of 100 arrived at 64).
            self.max_inflight = min(max_inflight, 20)
        self._tls = parts.scheme in ("mqtts", "ssl")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (8883 if self._tls else 1883)
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._client_id = client_id or f"roadlens-{uuid.uuid4().hex[:12]}"
        self._keepalive_s = keepalive_s
        self.manifest = LocalManifest(
            default_state_dir() if state_dir is None else state_dir,
            "mqtt",
            scope=f"{self._host}:{self._port}/{self.topic_prefix}",
        )
        self._client: mqtt.Client | None = None
        self._acks = _Acks()
        self._connack = threading.Event()  # set by the CONNACK, whatever it says
        self._refused: str = ""
        self._refused_for_good = False
        self._receive_maximum = 65535
        self._connect()

    @property
    def window(self) -> int:
        """Messages published but not yet acknowledged before the writer waits.

        paho scans every in-flight message on each acknowledgement and queues the rest,
        so a few times the in-flight limit is the sweet spot (measured: 20-64 in flight
        and 4x that outstanding about 17-20 k msg/s; 1000 in flight about 9 k msg/s).
        """
        return 4 * self._inflight

    @property
    def _inflight(self) -> int:
        return max(1, min(self.max_inflight, self._receive_maximum))

    # --- connection -------------------------------------------------------------------

    @property
    def target(self) -> str:
        return redact(self.url)

    def _error(self, message: str) -> SinkError:
        return SinkError(f"mqtt ({self.target}): {scrub(message, self.url)}")

    def _connect(self) -> None:
        inflight = self._inflight
        client = self._open(inflight)
        if self._inflight < inflight:
            # paho cannot lower its in-flight limit on a live connection, and the broker
            # just announced a Receive Maximum below ours: reconnect within it.
            self._shut(client)
            client = self._open(self._inflight)
        self._client = client

    def _open(self, inflight: int) -> mqtt.Client:
        v5 = self.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            clean_session=None if v5 else True,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        if self._user is not None:
            client.username_pw_set(self._user, self._password)
        if self._tls:
            client.tls_set()
        client.max_inflight_messages_set(inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        self._connack.clear()
        self._refused, self._refused_for_good = "", False
        try:
            client.connect(self._host, self._port, keepalive=self._keepalive_s)
        except (OSError, ValueError) as exc:
            raise self._error(f"cannot connect: {exc}") from None
        client.loop_start()
        if not self._connack.wait(self.timeout_s):
            self._shut(client)
            raise self._error(f"no answer (CONNACK) within {self.timeout_s:g}s")
        if self._refused:
            self._shut(client)
            error = self._error(f"the broker refused the connection: {self._refused}")
            if self._refused_for_good:
                raise SinkConfigError(str(error))
            raise error
        return client

    @staticmethod
    def _shut(client: mqtt.Client) -> None:
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._refused_for_good = reason_code.value in _LOGIN_REFUSALS
            # Stop paho from retrying a login that the broker refuses.
            client.disconnect()
        else:
            # MQTT 5 brokers announce how many QoS 1/2 messages they take in flight
            # (Mosquitto: max_inflight_messages, 20 by default); sending more gets QoS 2
            # messages dropped or the connection closed, and paho does not enforce it.
            self._receive_maximum = int(getattr(properties, "ReceiveMaximum", 65535))
        self._connack.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        self._acks.on_publish(mid, bool(reason_code.is_failure))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            self._shut(client)

    # --- writes -------------------------------------------------------------------------

    def manifest_fields(self) -> dict[str, object]:
        return {"qos": self.qos}

    def nothing_published(self) -> Published:
        return Published(extra=self._figures(acked=0, topics=0))

    def _figures(self, *, acked: int, topics: int) -> dict[str, object]:
        return {
            "qos": self.qos,
            "retain": self.retain,
            "acked": acked,
            "topics": topics,
            "inflight": self._inflight,
        }

    def publish(self, table: str, video_id: str, data: pa.Table, export_id: str) -> Published:
        """Publish one message per row and wait for every acknowledgement."""
        if self._client is None:
            self._connect()
        client = self._client
        assert client is not None
        topic_array = topic_column(table, data, self.topic_prefix)
        topics = topic_array.to_pylist()
        payloads = list(iter_bytes(json_lines(data)))
        acks = self._acks = _Acks()
        total = len(payloads)
        dropped = 0
        for index, (topic, payload) in enumerate(zip(topics, payloads, strict=True)):
            if index - acks.acked >= self.window and not acks.wait_until(
                index - self.window // 2, self.timeout_s
            ):
                self._abandon()
                raise self._error(
                    f"{table} video {video_id!r}: the broker stopped acknowledging: "
                    f"{acks.acked} of {index} sent ({total} to send) acknowledged, "
                    f"none in {self.timeout_s:g}s"
                )
            started = time.perf_counter()
            try:
                info = client.publish(topic, payload, qos=self.qos, retain=self.retain)
            except (ValueError, OSError) as exc:  # paho: bad topic, payload over 256 MB, ...
                self._abandon()
                raise self._error(f"{table} video {video_id!r}: publish failed: {exc}") from None
            if info.rc == mqtt.MQTT_ERR_NO_CONN and self.qos == 0:
                # QoS 0 while disconnected is dropped by paho; QoS >= 1 is queued and
                # sent after paho reconnects.
                dropped += 1
                acks.on_publish(info.mid, True)
            elif info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._abandon()
                raise self._error(
                    f"{table} video {video_id!r}: publish failed: {mqtt.error_string(info.rc)}"
                )
            acks.sent(info.mid, started)
        if not acks.wait_until(total, self.timeout_s):
            self._abandon()
            raise self._error(
                f"{table} video {video_id!r}: {acks.acked} of {total} messages acknowledged; "
                f"none more in {self.timeout_s:g}s (QoS {self.qos})"
            )
        if acks.failed:
            raise self._error(
                f"{table} video {video_id!r}: {acks.failed} of {total} messages were not "
                f"delivered (QoS {self.qos}{', dropped while disconnected' if dropped else ''})"
            )
        return Published(
            sum(map(len, payloads)),
            acks.latencies,
            self._figures(acked=acks.acked, topics=len(pc.unique(topic_array))),
        )

    def _abandon(self) -> None:
        # paho would keep re-sending the unacknowledged messages of a failed write in the
        # background; drop the session so the next write starts clean (it re-sends all).
        self.close()
