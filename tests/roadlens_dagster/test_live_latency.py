"""Live latency: recorded chunks become micro-batch runs that reach the lake and Kafka.

The end-to-end test is the short version of ``bench/bench_live_latency.py``: a real
``dagster-daemon`` on a fresh PostgreSQL database with the production run queue, the
landing sensor started with ``dagster sensor start`` at a 5 s interval, the Kafka sink
pointed at Tansu, and a :class:`roadlens.live.Recorder` streaming a looping synthetic clip
in 2 s chunks. Every chunk must end up in the lake and on Kafka (as many messages as lake
rows), through in-process micro-batch runs, with every hop of its latency recorded in
order. The other tests check the bench's arithmetic and the instance file it derives.
"""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pytest

from bench.bench_live_latency import (
    PROD_YAML,
    SEGMENTS,
    ChunkTiming,
    LatencyConfig,
    instance_yaml,
    measure,
    percentiles,
    render_source,
    summarize,
)
from roadlens.sinks.kafka import ensure_topics

CHUNKS = 3
CHUNK_SECONDS = 2.0


# -- the bench's arithmetic ------------------------------------------------------------------


def test_segments_split_the_total_into_hops() -> None:
    t = ChunkTiming(
        "cam--a",
        closed=100.0,
        created=103.0,
        launched=104.0,
        started=108.0,
        lake=120.0,
        kafka=121.5,
    )
    seg = t.segments()
    assert seg == {
        "sensor": 3.0,
        "queue": 1.0,
        "start": 4.0,
        "to_lake": 12.0,
        "to_kafka": 1.5,
        "lake": 20.0,
        "kafka": 21.5,
    }
    assert seg["sensor"] + seg["queue"] + seg["start"] + seg["to_lake"] == seg["lake"]
    assert seg["lake"] + seg["to_kafka"] == seg["kafka"]
    # A chunk that never reached Kafka has no Kafka figures, and is left out of them.
    lost = ChunkTiming("cam--b", closed=100.0, created=101.0, lake=130.0)
    assert lost.segments()["kafka"] is None and lost.segments()["to_kafka"] is None
    summary = summarize([t, lost])
    assert summary["kafka"]["n"] == 1 and summary["lake"]["n"] == 2
    assert summary["lake"]["max"] == 30.0


def test_percentiles_interpolate_and_handle_no_data() -> None:
    p = percentiles([float(v) for v in range(1, 21)])  # 1..20
    assert p == {"n": 20, "p50": 10.5, "p95": pytest.approx(19.05), "max": 20.0}
    empty = percentiles([])
    assert empty["n"] == 0 and math.isnan(empty["p50"])


def test_config_parse_and_label() -> None:
    config = LatencyConfig.parse("sqlite/multiprocess/15/5")
    assert config == LatencyConfig("sqlite", "multiprocess", 15, 5, max_queued=1)
    assert "multiprocess" in config.label and "15s" in config.label
    assert LatencyConfig.parse("postgres/in_process/5/1/0").max_queued == 0
    with pytest.raises(ValueError, match="executor"):
        LatencyConfig.parse("postgres/celery/5/1")
    with pytest.raises(ValueError, match="storage"):
        LatencyConfig.parse("mysql/in_process/5/1")


def test_instance_yaml_is_production_with_the_config_applied(tmp_path: Path) -> None:
    import yaml

    prod = yaml.safe_load(PROD_YAML.read_text())
    pg = instance_yaml(LatencyConfig("postgres", "in_process", 5, 3), tmp_path)
    assert pg["storage"] == prod["storage"]
    assert pg["run_coordinator"]["config"]["dequeue_interval_seconds"] == 3
    assert pg["concurrency"] == prod["concurrency"]  # the same lanes and pools
    lite = instance_yaml(LatencyConfig("sqlite", "in_process", 5, 1), tmp_path)
    assert lite["storage"] == {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(lite))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_coordinator.dequeue_interval_seconds == 1


# -- end to end with the daemon ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_recorded_chunks_reach_the_lake_and_kafka_through_the_daemon(
    tmp_path: Path,
    postgres_url: str,
    kafka_bootstrap: str,
    roadlens_home_dir: Path,
    detector_weights: Path,
) -> None:
    ensure_topics(kafka_bootstrap, "roadlens", ["detections", "events"])
    clip = render_source(tmp_path / "source", seconds=6.0)
    result = measure(
        LatencyConfig("postgres", "in_process", sensor_interval_s=5, dequeue_interval_s=1),
        tmp_path / "deployment",
        clip=clip,
        roadlens_home=roadlens_home_dir,
        kafka_bootstrap=kafka_bootstrap,
        chunks=CHUNKS,
        chunk_seconds=CHUNK_SECONDS,
        weights=detector_weights,
        postgres_url=postgres_url,
        drain_timeout_s=300.0,
    )
    timings = result.timings
    # The recorder's stop closes one more (shorter) chunk: it is followed like the others.
    assert CHUNKS <= len(timings) <= CHUNKS + 1
    assert len({t.video_id for t in timings}) == len(timings)
    for t in timings:
        assert t.run_id is not None, f"{t.video_id}: no micro-batch run took it"
        assert t.lake is not None, f"{t.video_id}: no detections file in the lake"
        assert t.lake_rows, f"{t.video_id}: the synthetic scene has vehicles in every chunk"
        assert t.kafka is not None, f"{t.video_id}: no message on Kafka"
        assert t.kafka_messages == t.lake_rows, f"{t.video_id}: Kafka and the lake disagree"
        # Every hop happened, in order, after the chunk closed.
        assert t.closed < t.created <= t.launched <= t.started < t.lake <= t.run_end
        assert t.kafka >= t.lake
        assert 1 <= t.batch <= len(timings)
    # Micro-batches ran in-process (one process per run, not per step).
    assert result.executors == {"in_process": result.runs} and result.runs >= 1
    summary = result.summary
    assert all(summary[s]["n"] == len(timings) for s in SEGMENTS)
    assert summary["kafka"]["p50"] <= summary["kafka"]["p95"] <= summary["kafka"]["max"]
    # The sensor ticks about every 5 s: no chunk waits much longer for its run to be created
    # (the tick's own evaluation and run creation come on top; generous for a loaded host).
    assert summary["sensor"]["max"] < 30
    assert result.steps["(run)"] > 0 and "detections" in result.steps
    print(f"\nlive latency over {len(timings)} chunks ({result.runs} runs):")
    for name in SEGMENTS:
        s = summary[name]
        print(f"  {name:<9} p50 {s['p50']:6.2f}s  p95 {s['p95']:6.2f}s  max {s['max']:6.2f}s")
