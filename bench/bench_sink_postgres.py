"""Benchmark the PostgreSQL sink against plain COPY, other COPY encoders and executemany.

One video of synthetic detections (29 columns) goes into the sink's partitioned
``detections`` table (all of its indexes in place) in a throw-away schema. Methods run in
interleaved rounds after one untimed, checked round; before every timed load the table is
truncated (and, for the re-run, loaded once untimed) and a CHECKPOINT runs, outside the
timing. Every COPY method's result is checked against the sink's by an md5 over the
table's text, so a faster method that changes values would show up as "differs".

    PostgresSink.write_video, first load   lock + delete (nothing) + COPY + manifest
    PostgresSink.write_video, re-run       the same video again: deletes and replaces it
    plain binary COPY (floor)              our encoder + COPY, no lock/delete/manifest
    plain binary COPY, pre-encoded         the server's share alone (bytes ready in memory)
    COPY write_row (zip of to_pylist)      psycopg's per-row binary encoder, set_types
    COPY CSV via pyarrow.csv               pyarrow's C++ CSV writer + COPY ... (FORMAT CSV)
    executemany (pipeline)                 psycopg 3 INSERT executemany, fewer rows

Usage:
    .venv/bin/python bench/bench_sink_postgres.py [--rows N] [--rounds R]
        [--executemany-rows N] [--url URL] [--index-costs] [--json PATH]

``--index-costs`` instead measures the COPY cost of each index (and a GiST alternative)
on a table that already holds one other video, plus the query each index serves.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

# Runnable as a plain script from the repository root or anywhere else.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import versions
from roadlens.redact import redact
from roadlens.sinks.postgres import (
    COPY_HEADER,
    COPY_TRAILER,
    PostgresSink,
    iter_copy_blocks,
    pg_type,
    plan_copy,
    prefetch,
    upgrade,
)
from roadlens.synth.tables import synthetic_detections

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).resolve().parent / "results"
SCHEMA = "roadlens_bench"
VIDEO = "veh-01--bench-0001"
UUID_COLUMNS = {"detection_id"}


@dataclass
class Row:
    name: str
    rows: int
    seconds: list[float]
    check: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.median


def table_id(name: str) -> sql.Composed:
    return sql.Identifier(SCHEMA, name)


def reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        sql.SQL("TRUNCATE {}, {}").format(table_id("detections"), table_id("export_batches"))
    )
    conn.execute("CHECKPOINT")


def checksum(conn: psycopg.Connection[Any]) -> str:
    """md5 over the table's rows as text, in id order (real columns print exactly)."""
    return conn.execute(
        sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY detection_id)) FROM {} t").format(
            table_id("detections")
        )
    ).fetchone()[0]


def copy_binary(conn: psycopg.Connection[Any], data: pa.Table) -> int:
    plan = plan_copy(data)
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in plan.names)
    sent = 0
    with conn.transaction(), conn.cursor() as cur:
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            table_id("detections"), columns
        )
        with cur.copy(statement) as copy:
            copy.write(COPY_HEADER)
            for _, block in prefetch(iter_copy_blocks(data, plan)):
                copy.write(block)
                sent += block.nbytes
            copy.write(COPY_TRAILER)
    return sent


def copy_preencoded(conn: psycopg.Connection[Any], names: list[str], blocks: list[bytes]) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    with conn.transaction(), conn.cursor() as cur:
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            table_id("detections"), columns
        )
        with cur.copy(statement) as copy:
            copy.write(COPY_HEADER)
            for block in blocks:
                copy.write(block)
            copy.write(COPY_TRAILER)


def python_rows(data: pa.Table) -> list[tuple[Any, ...]]:
    """Row tuples built column-wise: ``zip(*columns)`` of ``to_pylist()`` (ids as UUID)."""
    columns = []
    for name in data.column_names:
        values = data.column(name).to_pylist()
        if name in UUID_COLUMNS:
            values = [uuid.UUID(v) for v in values]
        columns.append(values)
    return list(zip(*columns, strict=True))


def copy_write_row(conn: psycopg.Connection[Any], data: pa.Table) -> None:
    types = [pg_type(f) for f in data.schema]
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in data.column_names)
    with conn.transaction(), conn.cursor() as cur:
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            table_id("detections"), columns
        )
        with cur.copy(statement) as copy:
            copy.set_types(types)
            for row in python_rows(data):
                copy.write_row(row)


def copy_csv(conn: psycopg.Connection[Any], data: pa.Table) -> None:
    buffer = io.BytesIO()
    pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False))
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in data.column_names)
    with conn.transaction(), conn.cursor() as cur:
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT CSV)").format(
            table_id("detections"), columns
        )
        with cur.copy(statement) as copy:
            view = buffer.getbuffer()
            for start in range(0, len(view), 8 << 20):
                copy.write(view[start : start + (8 << 20)])


def executemany(conn: psycopg.Connection[Any], data: pa.Table) -> None:
    names = data.column_names
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        table_id("detections"),
        sql.SQL(", ").join(sql.Identifier(n) for n in names),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(statement, python_rows(data))


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def bench(url: str, rows: int, rounds: int, many_rows: int) -> dict[str, Any]:
    print(f"building {rows:,} synthetic detections ...", flush=True)
    data = synthetic_detections(rows, video_id=VIDEO)
    small = data.slice(0, many_rows)
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    upgrade(url, SCHEMA)
    # The untimed round starts with the sink's first load, which creates the partitions
    # that every later method (and round) finds in place: TRUNCATE keeps them.
    sink = PostgresSink(url, schema=SCHEMA)
    plan = plan_copy(data)
    blocks = [bytes(b) for _, b in iter_copy_blocks(data, plan)]
    load_start = load_average()

    writes: dict[str, list[dict[str, Any]]] = {"first": [], "rerun": []}

    def sink_first() -> None:
        writes["first"].append(sink.write_video("detections", VIDEO, data, export_id="b").as_dict())

    def sink_rerun() -> None:
        writes["rerun"].append(sink.write_video("detections", VIDEO, data, export_id="b").as_dict())

    def preload() -> None:
        reset(conn)
        sink.write_video("detections", VIDEO, data, export_id="preload")
        conn.execute("CHECKPOINT")

    methods: list[tuple[str, int, Callable[[], Any], Callable[[], None]]] = [
        ("PostgresSink.write_video, first load", rows, sink_first, lambda: reset(conn)),
        ("PostgresSink.write_video, re-run (replace)", rows, sink_rerun, preload),
        ("plain binary COPY (floor)", rows, lambda: copy_binary(conn, data), lambda: reset(conn)),
        (
            "plain binary COPY, pre-encoded",
            rows,
            lambda: copy_preencoded(conn, plan.names, blocks),
            lambda: reset(conn),
        ),
        (
            "COPY write_row (zip of to_pylist)",
            rows,
            lambda: copy_write_row(conn, data),
            lambda: reset(conn),
        ),
        ("COPY CSV via pyarrow.csv", rows, lambda: copy_csv(conn, data), lambda: reset(conn)),
        (
            "executemany (pipeline)",
            many_rows,
            lambda: executemany(conn, small),
            lambda: reset(conn),
        ),
    ]
    results = {name: Row(name, n, []) for name, n, _, _ in methods}
    # Untimed round: warms caches and checks that every COPY method stores the same table.
    reference = ""
    for name, n, run, setup in methods:
        setup()
        started = time.perf_counter()
        run()
        print(f"  checked {name}: {time.perf_counter() - started:.2f} s", flush=True)
        if n == rows:
            digest = checksum(conn)
            reference = reference or digest
            results[name].check = "same" if digest == reference else "DIFFERS"
        else:
            results[name].check = "n/a"
    writes = {"first": [], "rerun": []}
    for round_no in range(rounds):
        for name, _, run, setup in methods:
            setup()
            started = time.perf_counter()
            run()
            results[name].seconds.append(time.perf_counter() - started)
        print(f"  round {round_no + 1}/{rounds} done", flush=True)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    sink.close()
    conn.close()

    # Client-side encoding alone, for the record (one run each).
    encode_s: dict[str, float] = {}
    started = time.perf_counter()
    for _ in iter_copy_blocks(data, plan_copy(data)):
        pass
    encode_s["column-wise binary (ours)"] = time.perf_counter() - started
    started = time.perf_counter()
    python_rows(data)
    encode_s["zip of to_pylist (rows only, before write_row)"] = time.perf_counter() - started
    started = time.perf_counter()
    pacsv.write_csv(data, io.BytesIO(), pacsv.WriteOptions(include_header=False))
    encode_s["pyarrow.csv.write_csv"] = time.perf_counter() - started

    reference_rate = results["executemany (pipeline)"].rows_per_s
    host = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    server = psycopg.connect(url).execute("SHOW server_version").fetchone()[0]
    print()
    print(f"PostgreSQL {server} at {redact(url)}; {host}; median of {rounds} interleaved rounds")
    print("table: detections, 29 columns, PK + BRIN(time) + btree(source,time) + btree(video)")
    print(f"       + BRIN(lat,lon), monthly partitions; load avg {load_start} -> {load_average()}")
    header = (
        f"{'method':<44} {'rows':>9} {'s (median)':>10} {'rows/s':>10} {'vs executemany':>15} "
        f"{'spread':>10} {'content':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in results.values():
        spread = f"{min(row.seconds) / row.median:.2f}-{max(row.seconds) / row.median:.2f}"
        print(
            f"{row.name:<44} {row.rows:>9,} {row.median:>10.3f} {row.rows_per_s:>10,.0f} "
            f"{row.rows_per_s / reference_rate:>14.2f}x {spread:>10} {row.check:>8}"
        )
    print()
    print("client-side encoding only (1 run each):")
    for name, seconds in encode_s.items():
        print(f"  {name:<48} {seconds:7.3f} s  {rows / seconds:>12,.0f} rows/s")
    for kind in ("first", "rerun"):
        last = writes[kind][-1]
        extras = {k: last[k] for k in last if k.endswith("_s") or k.startswith("latency")}
        print(f"sink {kind}: deleted={last['deleted']} blocks={last['blocks']} {extras}")
    target = 150_000
    idempotent = min(
        results["PostgresSink.write_video, first load"].rows_per_s,
        results["PostgresSink.write_video, re-run (replace)"].rows_per_s,
    )
    verdict = "met" if idempotent >= target else "MISSED"
    print(f"target >= {target:,} rows/s end to end on the idempotent path: {verdict} "
          f"(slower of first load / re-run: {idempotent:,.0f} rows/s)")  # fmt: skip
    if many_rows != rows:
        print(f"note: executemany loads {many_rows:,} rows (1 M would take minutes per round)")
    return {
        "benchmark": "sink_postgres",
        "when": datetime.now(UTC).isoformat(),
        "host": host,
        "server": server,
        "rows": rows,
        "rounds": rounds,
        "versions": versions("psycopg", "pyarrow", "numpy"),
        "methods": {
            r.name: {
                "rows": r.rows,
                "median_s": r.median,
                "rows_per_s": r.rows_per_s,
                "vs_executemany": r.rows_per_s / reference_rate,
                "seconds": r.seconds,
                "content": r.check,
            }
            for r in results.values()
        },
        "encode_s": encode_s,
        "sink_writes": writes,
        "target_rows_per_s": target,
        "target_met": idempotent >= target,
    }


# --- index costs ---------------------------------------------------------------------------

BRIN = "WITH (pages_per_range = 32, autosummarize = on)"
INDEXES = {
    "PK (detection_id, captured_at)": "ALTER TABLE detections ADD PRIMARY KEY (detection_id, captured_at)",
    "BRIN (captured_at)": f"CREATE INDEX ON detections USING brin (captured_at) {BRIN}",
    "btree (source_id, captured_at)": "CREATE INDEX ON detections (source_id, captured_at)",
    "btree (video_id)": "CREATE INDEX ON detections (video_id)",
    "BRIN (lat, lon)": f"CREATE INDEX ON detections USING brin (lat, lon) {BRIN}",
    "GiST (point(lon, lat))": "CREATE INDEX ON detections USING gist (point(lon, lat))",
    "BRIN bloom (video_id)": f"CREATE INDEX ON detections USING brin (video_id text_bloom_ops) {BRIN}",
}  # fmt: skip
CHOSEN = [
    "PK (detection_id, captured_at)",
    "BRIN (captured_at)",
    "btree (source_id, captured_at)",
    "btree (video_id)",
    "BRIN (lat, lon)",
]
VARIANTS: dict[str, list[str]] = {
    "no index at all": [],
    "PK only": CHOSEN[:1],
    **{f"PK + {name}": [CHOSEN[0], name] for name in INDEXES if name != CHOSEN[0]},
    "chosen set (migration 001)": CHOSEN,
    "chosen set + GiST (point)": [*CHOSEN, "GiST (point(lon, lat))"],
}
QUERIES = {
    "time range (1 min)": "SELECT count(*) FROM {t} WHERE captured_at >= %(t0)s "
    "AND captured_at < %(t0)s + interval '1 minute'",
    "source + time (1 min)": "SELECT count(*) FROM {t} WHERE source_id = 'veh-02' "
    "AND captured_at >= %(t0)s AND captured_at < %(t0)s + interval '1 minute'",
    "geo box (BRIN-able)": "SELECT count(*) FROM {t} WHERE lat BETWEEN 52.5003 AND 52.5006 "
    "AND lon BETWEEN 13.4004 AND 13.4009",
    "geo box (GiST-able)": "SELECT count(*) FROM {t} WHERE point(lon, lat) <@ "
    "box(point(13.4004, 52.5003), point(13.4009, 52.5006))",
    "one video's rows": "SELECT count(*) FROM {t} WHERE video_id = 'veh-02--b'",
    # What a first write's fallback delete does: look for a video that is not there.
    "absent video": "SELECT count(*) FROM {t} WHERE video_id = 'veh-09--new'",
}


def _explain_ms(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> float:
    times = []
    for _ in range(5):
        plan = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query}", params).fetchone()[0]
        times.append(plan[0]["Execution Time"])
    return statistics.median(times)


def index_costs(url: str, rows: int, rounds: int) -> dict[str, Any]:
    """COPY throughput of ``rows`` into a partition already holding ``rows`` other rows."""
    background = synthetic_detections(rows, video_id="veh-01--a", source_id="veh-01")
    t0 = pd.Timestamp("2026-05-04T12:00:00Z")
    timed = synthetic_detections(rows, video_id="veh-02--b", source_id="veh-02", start=t0, seed=1)
    encoded = {}
    for name, data in (("background", background), ("timed", timed)):
        plan = plan_copy(data)
        encoded[name] = (plan.names, [bytes(b) for _, b in iter_copy_blocks(data, plan)])
    conn = psycopg.connect(url, autocommit=True)
    report: dict[str, Any] = {}
    print(f"COPY of {rows:,} detections into a month partition holding {rows:,} others; "
          f"median of {rounds}")  # fmt: skip
    header = f"{'indexes':<44} {'COPY rows/s':>12} {'vs none':>8} {'index MB':>9}  queries (ms)"
    print(header)
    print("-" * (len(header) + 40))
    baseline = None
    for variant, names in VARIANTS.items():
        seconds = []
        for _ in range(rounds):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
            upgrade(url, SCHEMA)
            conn.execute(
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT detections_pkey").format(
                    table_id("detections")
                )
            )
            for (index,) in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s "
                "AND tablename = 'detections'",
                (SCHEMA,),
            ).fetchall():
                conn.execute(sql.SQL("DROP INDEX {}").format(table_id(index)))
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(SCHEMA)))
                for name in names:
                    conn.execute(INDEXES[name])
            with PostgresSink(url, schema=SCHEMA) as sink:
                sink.ensure_partitions("detections", [datetime(2026, 5, 1, tzinfo=UTC)])
            copy_preencoded(conn, *encoded["background"])
            conn.execute("CHECKPOINT")
            started = time.perf_counter()
            copy_preencoded(conn, *encoded["timed"])
            seconds.append(time.perf_counter() - started)
        median = statistics.median(seconds)
        baseline = baseline or median
        size = conn.execute(
            "SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s",
            (SCHEMA,),
        ).fetchone()[0]
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table_id("detections")))
        queries = {
            q: _explain_ms(conn, text.format(t=f"{SCHEMA}.detections"), {"t0": t0})
            for q, text in QUERIES.items()
        }
        report[variant] = {
            "rows_per_s": rows / median,
            "seconds": seconds,
            "index_bytes": int(size),
            "queries_ms": queries,
        }
        shown = "  ".join(f"{q.split(' (')[0]} {ms:.1f}" for q, ms in queries.items())
        print(
            f"{variant:<44} {rows / median:>12,.0f} {baseline / median:>7.2f}x "
            f"{int(size) / 1e6:>9.1f}  {shown}",
            flush=True,
        )
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    conn.close()
    print("queries: EXPLAIN ANALYZE execution time after VACUUM ANALYZE, median of 5; 'geo box'")
    print("rows are the same box as lat/lon ranges (BRIN) and as point <@ box (GiST)")
    return {"benchmark": "sink_postgres_index_costs", "rows": rows, "variants": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("ROADLENS_TEST_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--executemany-rows", type=int, default=100_000)
    parser.add_argument("--index-costs", action="store_true", help="measure index costs instead")
    parser.add_argument(
        "--json", type=Path, default=None, help="result file (default bench/results)"
    )
    args = parser.parse_args(argv)
    try:
        if args.index_costs:
            report = index_costs(args.url, args.rows, max(args.rounds, 1))
            default = RESULTS / "sink_postgres_index_costs.json"
        else:
            many = min(args.executemany_rows, args.rows)
            report = bench(args.url, args.rows, max(args.rounds, 1), many)
            default = RESULTS / "sink_postgres.json"
    except Exception as exc:  # a benchmark reports; it does not fail the caller
        print(f"benchmark aborted: {type(exc).__name__}: {exc}")
        return 0
    target = args.json or default
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {target}")
    except OSError as exc:
        print(f"could not write {target}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
