"""MongoDB sink tests. mongomock: no MongoDB server can run on these machines.

Every test but the last runs against ``mongomock``, which has no time-series collections:
the sink falls back to a regular collection there (labelled in each write's ``extra``) and
the write protocol (insert tagged documents, commit marker, delete stale, lease lock) is
exercised as is. The last test runs against a real server when ``ROADLENS_TEST_MONGO_URL``
is set and checks the time-series collection and a ``$geoNear`` query.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import mongomock
import numpy as np
import pyarrow as pa
import pytest
from pymongo.errors import AutoReconnect

from roadlens.schema import EVENT_STATS
from roadlens.sinks.base import SinkError, table_fingerprint
from roadlens.sinks.mongo import LOCKS, MARKERS, MongoSink, to_documents
from roadlens.synth.tables import synthetic_detections, synthetic_events

VIDEO = "veh-01--clip-0001"


@pytest.fixture
def client() -> mongomock.MongoClient:
    return mongomock.MongoClient(tz_aware=True)


@pytest.fixture
def sink(client: mongomock.MongoClient) -> Iterator[MongoSink]:
    with MongoSink(client, "roadlens_test", lock_wait_s=2.0) as sink:
        yield sink


def by_time(table: pa.Table, id_name: str) -> pa.Table:
    return table.sort_by([("captured_at", "ascending"), (id_name, "ascending")])


def stored(sink: MongoSink, table: str, video_id: str = VIDEO) -> int:
    """Every document of the video, committed or not (what a careless reader sees)."""
    return sink.db[table].count_documents({"meta.video_id": video_id})


def test_documents_equal_the_input_rows(sink: MongoSink) -> None:
    data = synthetic_detections(3_000)
    result = sink.write_video("detections", VIDEO, data, export_id="run-1", fingerprint="fp")

    assert result.rows == 3_000 and stored(sink, "detections") == 3_000
    assert sink.read_video("detections", VIDEO).equals(by_time(data, "detection_id"))
    # The mongomock fallback is labelled, never silent.
    assert result.extra["collection"].startswith("regular (mongomock")


def test_document_shape_meta_and_geojson(sink: MongoSink) -> None:
    data = synthetic_detections(500)
    sink.write_video("detections", VIDEO, data, export_id="run-1")
    rows = data.to_pylist()
    docs = {d["detection_id"]: d for d in sink.db["detections"].find({})}

    row = rows[7]
    doc = docs[row["detection_id"]]
    assert doc["meta"] == {
        "source_id": "veh-01",
        "vehicle_id": "veh-01",
        "session_id": "session-a",
        "class_name": row["class_name"],
        "video_id": VIDEO,
        "export_id": "run-1",
        "write_id": doc["meta"]["write_id"],
    }
    assert doc["captured_at"] == row["captured_at"]
    assert doc["loc"] == {"type": "Point", "coordinates": [row["lon"], row["lat"]]}
    assert "lat" not in doc and "class_name" not in doc  # lives in loc / meta
    assert doc["x1"] == float(str(np.float32(row["x1"])))  # shortest float32 text
    no_fix = [r for r in rows if r["lat"] is None]
    assert no_fix, "the synthetic data should hold detections without a GPS fix"
    assert all("loc" not in docs[r["detection_id"]] for r in no_fix)
    indexes = sink.db["detections"].index_information()
    assert "loc_2dsphere" in indexes and "meta.video_id_1_captured_at_1" in indexes


def test_events_keep_attributes_as_subdocuments(sink: MongoSink) -> None:
    events = synthetic_events(40)
    sink.write_video("events", VIDEO, events, export_id="run-1")
    doc = sink.db["events"].find_one({"event_id": events["event_id"][0].as_py()})
    assert doc is not None
    assert doc["meta"]["rule_id"] == "stop-line"
    assert isinstance(doc["attributes"], dict) and doc["attributes"]["line"] == "stop-line"
    assert doc["detection_ids"] == ["det-0"]
    assert sink.read_video("events", VIDEO).equals(by_time(events, "event_id"))


def test_event_stats_use_bin_start(sink: MongoSink) -> None:
    start = datetime(2026, 5, 4, 10, tzinfo=UTC)
    stats = pa.table(
        {
            "schema_version": [1, 1],
            "video_id": [VIDEO, VIDEO],
            "source_id": ["veh-01", "veh-01"],
            "rule_id": ["stop-line", "stop-line"],
            "class_name": ["car", "car"],
            "direction": ["in", "out"],
            "bin_minutes": [15, 15],
            "bin_start": [start, start + timedelta(minutes=15)],
            "count": [3, 4],
            "value": [None, 2.5],
        }
    ).cast(EVENT_STATS)
    sink.write_video("event_stats", VIDEO, stats, export_id="r")
    doc = sink.db["event_stats"].find_one({"count": 4})
    assert doc is not None and doc["bin_start"] == start + timedelta(minutes=15)
    assert doc["meta"]["direction"] == "out" and "loc" not in doc
    back = sink.read_video("event_stats", VIDEO)
    assert back.sort_by("count").equals(stats)


def test_rewrite_leaves_one_copy(sink: MongoSink) -> None:
    data = synthetic_detections(1_000)
    sink.write_video("detections", VIDEO, data, export_id="run-1", fingerprint="a")
    result = sink.write_video("detections", VIDEO, data, export_id="run-2", fingerprint="b")

    assert stored(sink, "detections") == 1_000
    assert result.extra["stale_deleted"] == 1_000
    assert {d["meta"]["export_id"] for d in sink.db["detections"].find({})} == {"run-2"}
    assert sink.committed("detections", [VIDEO]) == {VIDEO: "b"}


def test_shrink_removes_stale_documents(sink: MongoSink) -> None:
    sink.write_video("detections", VIDEO, synthetic_detections(1_000), export_id="run-1")
    small = synthetic_detections(60, seed=3)
    sink.write_video("detections", VIDEO, small, export_id="run-2")

    assert stored(sink, "detections") == 60
    assert sink.read_video("detections", VIDEO).equals(by_time(small, "detection_id"))


def test_empty_table_removes_the_video(sink: MongoSink) -> None:
    events = synthetic_events(30)
    sibling = synthetic_events(5, video_id="veh-01--clip-0002")
    sink.write_video("events", VIDEO, events, export_id="run-1", fingerprint="fp")
    sink.write_video("events", "veh-01--clip-0002", sibling, export_id="run-1", fingerprint="s")

    result = sink.write_video("events", VIDEO, events.slice(0, 0), export_id="run-2")

    assert result.rows == 0 and result.extra["stale_deleted"] == 30
    assert stored(sink, "events") == 0
    assert sink.committed("events", [VIDEO, "veh-01--clip-0002"]) == {"veh-01--clip-0002": "s"}
    assert sink.read_video("events", VIDEO).num_rows == 0
    assert stored(sink, "events", "veh-01--clip-0002") == 5


def test_crash_between_insert_and_marker(sink: MongoSink, monkeypatch: pytest.MonkeyPatch) -> None:
    old = synthetic_events(50)
    new = synthetic_events(80, seed=9)
    sink.write_video("events", VIDEO, old, export_id="run-1", fingerprint=table_fingerprint(old))

    def crash(*args: object, **kwargs: object) -> None:
        raise AutoReconnect("connection lost before the marker was written")

    with monkeypatch.context() as patch:
        patch.setattr(sink, "_commit", crash)
        with pytest.raises(SinkError, match="events video 'veh-01--clip-0001'"):
            sink.write_video("events", VIDEO, new, export_id="run-2", fingerprint="never")

    # The orphans are in the collection, but the committed filter still selects the old rows.
    assert stored(sink, "events") == 130
    committed = sink.db["events"].count_documents(sink.committed_filter("events", VIDEO))
    assert committed == 50
    assert sink.read_video("events", VIDEO).equals(by_time(old, "event_id"))
    assert sink.committed("events", [VIDEO]) == {VIDEO: table_fingerprint(old)}
    assert sink.db[LOCKS].count_documents({}) == 0  # the lease was released

    sink.write_video("events", VIDEO, new, export_id="run-3", fingerprint="new")
    assert stored(sink, "events") == 80
    assert sink.read_video("events", VIDEO).equals(by_time(new, "event_id"))


def test_retry_with_the_same_export_id_leaves_one_copy(
    sink: MongoSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A retried Dagster step reuses its run id: the per-attempt write_id keeps them apart.
    events = synthetic_events(20)
    with monkeypatch.context() as patch:
        patch.setattr(sink, "_commit", lambda *a, **k: (_ for _ in ()).throw(AutoReconnect("x")))
        with pytest.raises(SinkError):
            sink.write_video("events", VIDEO, events, export_id="run-1")
    sink.write_video("events", VIDEO, events, export_id="run-1")
    assert stored(sink, "events") == 20


def test_lock_contention(client: mongomock.MongoClient, sink: MongoSink) -> None:
    impatient = MongoSink(client, "roadlens_test", lock_wait_s=0.3)
    events = synthetic_events(10)
    with sink.video_lock("events", VIDEO, export_id="other-run"):
        began = time.monotonic()
        with pytest.raises(SinkError, match="locked by export 'other-run'"):
            impatient.write_video("events", VIDEO, events, export_id="run-2")
        assert time.monotonic() - began >= 0.3
        # Another video is not blocked.
        other = synthetic_events(3, video_id="veh-01--clip-0002")
        impatient.write_video("events", "veh-01--clip-0002", other, export_id="run-2")
    impatient.write_video("events", VIDEO, events, export_id="run-2")
    assert stored(sink, "events") == 10


def test_a_waiting_writer_proceeds_after_release(
    client: mongomock.MongoClient, sink: MongoSink
) -> None:
    held = threading.Event()
    released_at: list[float] = []

    def holder() -> None:
        with sink.video_lock("events", VIDEO, export_id="slow-run"):
            held.set()
            time.sleep(0.4)
            released_at.append(time.monotonic())

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    waiter = MongoSink(client, "roadlens_test", lock_wait_s=5.0)
    waiter.write_video("events", VIDEO, synthetic_events(5), export_id="run-2")
    finished = time.monotonic()
    thread.join()
    assert released_at and finished >= released_at[0]
    assert stored(sink, "events") == 5


def test_an_expired_lock_is_taken_over(sink: MongoSink) -> None:
    sink.db[LOCKS].insert_one(
        {
            "_id": f"events:{VIDEO}",
            "owner": "crashed-writer",
            "export_id": "crashed-run",
            "expires_at": datetime.now(UTC) - timedelta(seconds=1),
        }
    )
    began = time.monotonic()
    sink.write_video("events", VIDEO, synthetic_events(5), export_id="run-2")
    assert time.monotonic() - began < 1.0
    assert sink.db[LOCKS].count_documents({}) == 0


def test_a_stolen_lease_aborts_before_the_commit(
    client: mongomock.MongoClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = MongoSink(client, "roadlens_test", batch_size=100)
    old = synthetic_events(10)
    sink.write_video("events", VIDEO, old, export_id="run-1", fingerprint="old")
    real_insert = mongomock.collection.Collection.insert_many
    calls = {"n": 0}

    def insert_then_lose_lease(self: object, docs: object, *args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:  # our lease expired and another writer took it
            client["roadlens_test"][LOCKS].update_one(
                {"_id": f"events:{VIDEO}"}, {"$set": {"owner": "someone-else"}}
            )
        return real_insert(self, docs, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(mongomock.collection.Collection, "insert_many", insert_then_lose_lease)
    with pytest.raises(SinkError, match="lost the write lock"):
        sink.write_video("events", VIDEO, synthetic_events(300, seed=4), export_id="run-2")
    assert sink.committed("events", [VIDEO]) == {VIDEO: "old"}
    assert sink.read_video("events", VIDEO).equals(by_time(old, "event_id"))


def test_committed_reads_the_markers(sink: MongoSink) -> None:
    a = synthetic_events(3, video_id="veh-01--a")
    b = synthetic_events(4, video_id="veh-01--b")
    sink.write_video("events", "veh-01--a", a, export_id="r", fingerprint=table_fingerprint(a))
    sink.write_video("events", "veh-01--b", b, export_id="r", fingerprint=table_fingerprint(b))

    assert sink.committed("events", ["veh-01--a", "veh-01--b", "veh-01--never"]) == {
        "veh-01--a": table_fingerprint(a),
        "veh-01--b": table_fingerprint(b),
    }
    assert sink.committed("detections", ["veh-01--a"]) == {}
    marker = sink.db[MARKERS].find_one({"_id": "events:veh-01--b"})
    assert marker is not None and (marker["rows"], marker["export_id"]) == (4, "r")


def test_bad_coordinates_are_rejected_before_any_insert(sink: MongoSink) -> None:
    events = synthetic_events(5).to_pylist()
    events[2]["lat"] = 95.0
    table = pa.Table.from_pylist(events, schema=synthetic_events(0).schema)
    with pytest.raises(SinkError, match=r"1 rows have coordinates outside .* lat=95"):
        sink.write_video("events", VIDEO, table, export_id="r")
    assert stored(sink, "events") == 0


def test_to_documents_shares_one_meta_per_series() -> None:
    docs = to_documents("detections", synthetic_detections(100), export_id="r", write_id="w")
    assert len({id(d["meta"]) for d in docs}) == 5  # one per class: five series


def test_unreachable_server_error_hides_the_password() -> None:
    url = "mongodb://roadlens:s3cret-pw@127.0.0.1:1/?directConnection=true"
    with pytest.raises(SinkError) as caught:
        MongoSink.from_url(url, timeout_s=0.3)
    message = str(caught.value)
    assert message.startswith("mongo (mongodb://roadlens:***@127.0.0.1:1/")
    assert "cannot connect" in message and "s3cret" not in message


def test_real_server_timeseries_and_geonear(real_mongo_url: str) -> None:
    database = f"roadlens_test_{uuid.uuid4().hex[:8]}"
    with MongoSink.from_url(real_mongo_url, database) as sink:
        try:
            data = synthetic_detections(2_000)
            result = sink.write_video("detections", VIDEO, data, export_id="run-1")
            assert result.extra["collection"] == "timeseries"
            (info,) = sink.db.list_collections(filter={"name": "detections"})
            assert info["type"] == "timeseries"
            assert info["options"]["timeseries"]["timeField"] == "captured_at"
            assert info["options"]["timeseries"]["metaField"] == "meta"

            sink.write_video("detections", VIDEO, data, export_id="run-2")
            assert stored(sink, "detections") == 2_000
            assert sink.read_video("detections", VIDEO).equals(by_time(data, "detection_id"))

            near = list(
                sink.collection("detections").aggregate(
                    [
                        {
                            "$geoNear": {
                                "near": {"type": "Point", "coordinates": [13.4, 52.5]},
                                "key": "loc",
                                "distanceField": "distance_m",
                                "maxDistance": 50.0,
                            }
                        },
                        {"$limit": 50},
                    ]
                )
            )
            assert near and all(d["distance_m"] <= 50.0 for d in near)
            distances = [d["distance_m"] for d in near]
            assert distances == sorted(distances)
        finally:
            sink.client.drop_database(database)
