"""The Dagster sink assets: skip what is off or unchanged, export the rest, fail loudly.

The lake is filled with synthetic detections (no detector needed); the sinks are the real
ones: files on disk, PostgreSQL on the local server, Kafka on a Tansu broker.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from roadlens.lake import ParquetLake
from roadlens.synth.tables import synthetic_detections
from roadlens_dagster.assets.batch import batch_run_config
from roadlens_dagster.assets.sinks import SINK_ASSET_NAMES, SINK_ASSETS, plan_export
from roadlens_dagster.resources import LakeResource, SinksResource

DATE = "2026-05-04"
VIDEOS = ("veh-01--clip-0001", "veh-01--clip-0002")
SINK_ENV = (
    "ROADLENS_POSTGRES_URL",
    "ROADLENS_MONGO_URL",
    "ROADLENS_KAFKA_BOOTSTRAP",
    "ROADLENS_MQTT_URL",
    "ROADLENS_AMQP_URL",
    "ROADLENS_EXPORT_DIR",
)


def test_plan_writes_new_and_changed_videos_and_skips_unchanged() -> None:
    fingerprints = {"a": "1", "b": "2", "c": "3"}
    plan = plan_export(["a", "b", "c"], [], fingerprints, {"a": "1", "b": "old"}, force=False)
    assert plan.write == ["b", "c"]
    assert plan.unchanged == ["a"]


def test_plan_honours_named_videos_and_force() -> None:
    fingerprints = {"a": "1", "b": "2"}
    plan = plan_export(["a", "b"], ["b", "zz"], fingerprints, {"b": "2"}, force=False)
    assert (plan.write, plan.unchanged) == ([], ["b"])
    forced = plan_export(["a", "b"], ["b"], fingerprints, {"b": "2"}, force=True)
    assert (forced.write, forced.unchanged) == (["b"], [])


@pytest.fixture
def filled_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ParquetLake:
    """A lake with two videos' detections on DATE and every sink URL unset."""
    for name in SINK_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROADLENS_HOME", str(tmp_path / "home"))
    lake = ParquetLake(tmp_path / "lake")
    for seed, video_id in enumerate(VIDEOS):
        table = synthetic_detections(2_000 + 500 * seed, video_id=video_id, seed=seed)
        lake.write_video("detections", table, date=DATE, source_id="veh-01", video_id=video_id)
    return lake


def _materialize(
    lake: ParquetLake, names: tuple[str, ...], *, video_ids: list[str] | None = None, force=False
) -> dg.ExecuteInProcessResult:
    selected = [a for a in SINK_ASSETS if a.key.to_user_string() in names]
    return dg.materialize(
        selected,
        partition_key=DATE,
        resources={"lake": LakeResource(root=str(lake.root)), "sinks": SinksResource()},
        run_config=batch_run_config(video_ids or [], force=force, assets=names),
        raise_on_error=False,
    )


def _meta(result: dg.ExecuteInProcessResult, node: str) -> dict:
    mats = result.asset_materializations_for_node(node)
    assert mats, f"{node} did not materialize"
    return {k: v.value for k, v in mats[-1].metadata.items()}


def test_sinks_without_a_url_are_skipped_with_a_note(filled_lake: ParquetLake) -> None:
    result = _materialize(filled_lake, SINK_ASSET_NAMES)
    assert result.success
    notes = {name: _meta(result, name)["skipped"] for name in SINK_ASSET_NAMES}
    assert "ROADLENS_POSTGRES_URL" in notes["pg_detections"]
    assert "ROADLENS_KAFKA_BOOTSTRAP" in notes["kafka_detections"]
    assert "ROADLENS_MONGO_URL" in notes["mongo_detections"]
    assert "ROADLENS_EXPORT_DIR" in notes["file_detections"]


def test_file_export_writes_once_then_skips_unchanged_videos(
    filled_lake: ParquetLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from roadlens.sinks.files import FileExportSink

    export = tmp_path / "export"
    monkeypatch.setenv("ROADLENS_EXPORT_DIR", str(export))
    first = _meta(_materialize(filled_lake, ("file_detections",)), "file_detections")
    assert first["videos_written"] == 2
    assert first["rows"] == 2_000 + 2_500
    assert first["bytes"] > 0 and first["seconds"] > 0

    second = _meta(_materialize(filled_lake, ("file_detections",)), "file_detections")
    assert (second["videos_written"], second["videos_unchanged"]) == (0, 2)

    # A changed video (e.g. re-detected with another model) goes out again, alone.
    changed = synthetic_detections(300, video_id=VIDEOS[0], seed=9)
    filled_lake.write_video(
        "detections", changed, date=DATE, source_id="veh-01", video_id=VIDEOS[0]
    )
    third = _meta(_materialize(filled_lake, ("file_detections",)), "file_detections")
    assert (third["videos_written"], third["videos_unchanged"]) == (1, 1)
    assert third["rows"] == 300
    sink = FileExportSink(export)
    assert set(sink.committed("detections", list(VIDEOS))) == set(VIDEOS)


@pytest.mark.postgres
def test_pg_detections_hold_exactly_the_lake_rows_after_any_number_of_runs(
    filled_lake: ParquetLake, postgres_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    monkeypatch.setenv("ROADLENS_POSTGRES_URL", postgres_url)
    monkeypatch.setenv("ROADLENS_POSTGRES_SCHEMA", pg_schema)
    for force in (False, False, True):
        result = _materialize(filled_lake, ("pg_detections",), force=force)
        assert result.success
    meta = _meta(result, "pg_detections")
    assert meta["videos_written"] == 2 and meta["rows"] == 4_500
    assert meta["latency_p50_ms"] >= 0
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            f'SELECT video_id, count(*), count(DISTINCT detection_id) FROM "{pg_schema}".detections '
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert rows == [(VIDEOS[0], 2_000, 2_000), (VIDEOS[1], 2_500, 2_500)]


def test_kafka_detections_reach_the_topic_once_per_id(
    filled_lake: ParquetLake, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from roadlens.sinks.kafka import tail, topic_name

    prefix = f"t{abs(hash(filled_lake.root)) % 10**8}"
    monkeypatch.setenv("ROADLENS_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("ROADLENS_KAFKA_PREFIX", prefix)
    result = _materialize(filled_lake, ("kafka_detections",), video_ids=[VIDEOS[0]])
    assert result.success
    assert _meta(result, "kafka_detections")["rows"] == 2_000
    # Forced re-run: sent again; a consumer deduping by detection_id still sees one copy.
    assert _materialize(
        filled_lake, ("kafka_detections",), video_ids=[VIDEOS[0]], force=True
    ).success
    seen = list(
        tail(kafka_bootstrap, [topic_name(prefix, "detections")], dedupe=True, timeout_s=10.0)
    )
    expected = filled_lake.read_video("detections", VIDEOS[0]).column("detection_id")
    assert sorted(m["value"]["detection_id"] for m in seen) == sorted(expected.to_pylist())


def test_a_sink_that_cannot_be_reached_fails_the_step_and_names_it(
    filled_lake: ParquetLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROADLENS_POSTGRES_URL", "postgresql://roadlens:s3cret@127.0.0.1:9/roadlens")
    result = _materialize(filled_lake, ("pg_detections",))
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = str(failure.step_failure_data.error)
    assert "postgres" in text.lower()
    assert "s3cret" not in text


def test_a_sink_setting_that_can_never_work_fails_once_without_retries(
    filled_lake: ParquetLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROADLENS_EXPORT_DIR", str(tmp_path / "export"))
    monkeypatch.setenv("ROADLENS_EXPORT_FORMAT", "xml")
    result = _materialize(filled_lake, ("file_detections",))
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "ROADLENS_EXPORT_FORMAT=xml" in str(failure.step_failure_data.user_failure_data)
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    ("asset", "env", "refused"),
    [
        ("amqp_events", "ROADLENS_AMQP_URL", "wrong-password"),
        ("pg_detections", "ROADLENS_POSTGRES_URL", "no-such-role"),
    ],
)
def test_a_server_that_refuses_the_login_fails_once_without_retries(
    filled_lake: ParquetLake,
    amqp_url: str,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    asset: str,
    env: str,
    refused: str,
) -> None:
    from urllib.parse import urlsplit

    # The real local servers, asked with a login they refuse: a retry cannot change that.
    if env == "ROADLENS_AMQP_URL":
        parts = urlsplit(amqp_url)
        url = parts._replace(netloc=f"guest:{refused}@{parts.hostname}:{parts.port or 5672}")
    else:
        parts = urlsplit(postgres_url)
        url = parts._replace(netloc=f"{refused}@{parts.hostname}:{parts.port or 5432}")
    monkeypatch.setenv(env, url.geturl())
    result = _materialize(filled_lake, (asset,))
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = next(e for e in result.all_events if e.is_step_failure)
    text = str(failure.step_failure_data.user_failure_data or failure.step_failure_data.error)
    assert "cannot connect" in text
    assert refused not in text or env == "ROADLENS_POSTGRES_URL"  # a password never shows


def test_video_rows_must_match_the_video(filled_lake: ParquetLake) -> None:
    from roadlens.sinks.base import SinkBase, SinkError

    other = synthetic_detections(10, video_id="veh-01--other")
    with pytest.raises(SinkError, match="hold other videos"):
        SinkBase().prepare("detections", VIDEOS[0], other)
    with pytest.raises(SinkError, match="unknown table"):
        SinkBase().prepare("nope", VIDEOS[0], pa.table({"a": [1]}))


def test_event_sinks_export_the_lake_events_to_mqtt_and_amqp(
    filled_lake: ParquetLake, mqtt_url: str, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from roadlens.synth.tables import synthetic_events

    captures: dict[str, list[str]] = {}
    for seed, video_id in enumerate(VIDEOS):
        events = synthetic_events(40 + seed, video_id=video_id, seed=seed)
        # The events table carries its media paths to every sink.
        paths = [[f"media/{video_id}/{e}-frame.jpg"] for e in events["event_id"].to_pylist()]
        captures.update(zip(events["event_id"].to_pylist(), paths, strict=True))
        events = events.set_column(
            events.schema.get_field_index("media_paths"),
            "media_paths",
            pa.array(paths, pa.list_(pa.string())),
        )
        filled_lake.write_video("events", events, date=DATE, source_id="veh-01", video_id=video_id)
    import pika

    monkeypatch.setenv("ROADLENS_MQTT_URL", mqtt_url)
    monkeypatch.setenv("ROADLENS_AMQP_URL", amqp_url)
    exchange = f"roadlens-test-{abs(hash(filled_lake.root)) % 10**8}"
    monkeypatch.setenv("ROADLENS_AMQP_EXCHANGE", exchange)
    # A consumer's queue bound to the events (unroutable messages fail the write on purpose).
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, routing_key="events.#")
    try:
        result = _materialize(filled_lake, ("mqtt_events", "amqp_events"))
        assert result.success
        assert channel.queue_declare(queue, passive=True).method.message_count == 81
        _, _, body = channel.basic_get(queue, auto_ack=True)
        message = json.loads(body)
        assert message["media_paths"] == captures[message["event_id"]]
    finally:
        channel.exchange_delete(exchange)
        connection.close()
    for node in ("mqtt_events", "amqp_events"):
        meta = _meta(result, node)
        assert (meta["videos_written"], meta["rows"]) == (2, 81)
        assert meta["latency_p99_ms"] >= meta["latency_p50_ms"] >= 0
    # Unchanged events are not sent twice.
    again = _materialize(filled_lake, ("mqtt_events",))
    assert _meta(again, "mqtt_events")["videos_unchanged"] == 2
