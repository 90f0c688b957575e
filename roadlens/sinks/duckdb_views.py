"""DuckDB over the Parquet lake: base views per table plus the analyst views in ``roadlens/sql/duckdb``."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from roadlens.lake import ParquetLake

SQL_DIR = Path(__file__).resolve().parents[1] / "sql" / "duckdb"  # package data


def connect(
    lake_root: str | Path, *, sql_dir: Path = SQL_DIR, threads: int | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per lake table and the analyst views.

    Base views read ``<table>/**/*.parquet`` with hive partitioning, so ``date`` and
    ``source_id`` filters prune whole folders. Analyst views whose base tables are absent
    are skipped.
    """
    lake = ParquetLake(lake_root)
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for table in lake.tables():
        con.execute(
            f"CREATE VIEW {_identifier(table)} AS SELECT * FROM {lake.duckdb_source(table)}"
        )
    present = set(lake.tables())
    # One ``quarantine`` view over every stage's quarantined rows (roadlens.quality.gate).
    quarantined = sorted(t for t in present if t.startswith("quarantine_"))
    if quarantined and "quarantine" not in present:
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {_identifier(t)}" for t in quarantined)
        con.execute(f"CREATE VIEW quarantine AS {union}")
    for sql_file in sorted(sql_dir.glob("*.sql")):
        needs = _requires(sql_file)
        if needs <= present:
            con.execute(sql_file.read_text())
    return con


def _requires(sql_file: Path) -> set[str]:
    """Tables named on the file's ``-- requires: a, b`` line."""
    for line in sql_file.read_text().splitlines():
        if line.startswith("-- requires:"):
            return {t.strip() for t in line.split(":", 1)[1].split(",") if t.strip()}
    return set()


@dataclass(frozen=True)
class QueryResult:
    frame: pd.DataFrame
    seconds: float


def query(lake_root: str | Path, sql: str) -> QueryResult:
    """Run ``sql`` over the lake views and return a DataFrame."""
    con = connect(lake_root)
    try:
        started = time.perf_counter()
        frame = con.execute(sql).df()
        return QueryResult(frame, time.perf_counter() - started)
    finally:
        con.close()


def _identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (embedded quotes doubled), so a folder in the lake
    root can never inject SQL into a view definition."""
    return '"' + name.replace('"', '""') + '"'
