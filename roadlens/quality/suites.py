"""Row-level data quality for the ``frames``, ``detections`` and ``events`` tables.

Each table has an expectation suite built in code (no YAML, no files on disk) and run by
Great Expectations 1.x in one ephemeral context per process. Every rule is also written
as a plain pandas mask, so the same suite can run without GX (``engine="pandas"``, about
six times faster at a million rows) and the tests check that both engines flag the same rows.

What is checked (:func:`rules` gives the exact list per table):

- not null: the id, keys, timestamps and every column the other rules read;
- uniqueness: ``detection_id``, ``event_id``, and ``(video_id, frame_number)`` of frames;
- ranges: ``confidence`` in [0, 1], ``frame_number``, ``pts_sec``, ``class_id`` >= 0,
  frame sizes >= 1, ``lat`` in [-90, 90] and ``lon`` in [-180, 180] (GPS may be null);
- the box inside the frame: ``0 <= x1 < x2 <= frame_width`` and the same for ``y``;
- class names among the model's classes (``known_classes``; skipped when ``None``);
- time order: ``pts_sec`` must not decrease in ``frame_number`` order within a video. Two
  derived columns carry it (see :func:`pts_order`): a row-level flag for a frame whose
  time is out of line with both neighbours (a spike or a dip) or a row whose time differs
  from the other rows of its frame, and an aggregate check that no frame-to-frame step is
  negative (it also catches a clock that jumps back and stays, which no single row shows).

Row-level failures name rows (quarantinable, see :func:`split`); aggregate failures only
fail the batch.

GX itself is imported lazily (2-3 s), so importing this module stays cheap. The
context, suites and validation definitions are built on first use and cached.

Example:
    >>> from roadlens.synth.tables import synthetic_detections
    >>> report = validate("detections", synthetic_detections(100), engine="pandas")
    >>> report.passed, report.bad_rows
    (True, {})
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from roadlens.lake import CATALOG, DETECTIONS_TABLE, EVENTS_TABLE, FRAMES_TABLE

Engine = Literal["gx", "pandas"]

# Columns added to the validated frame (never to the caller's data).
ROW_COLUMN = "_row"
PTS_ORDER_COLUMN = "_pts_in_order"
PTS_STEP_COLUMN = "_pts_step"
# Rows of one frame whose pts_sec differ by more than this are inconsistent (seconds).
PTS_TOLERANCE_S = 1e-6

# --- rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One expectation: its GX type, the columns it reads, its GX arguments.

    ``detail`` is the human part of the failure reason, e.g. ``[0, 1]``.
    """

    expectation: str
    columns: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    row_level: bool = True
    # The column the reason names, when it is not the first of ``columns``.
    label: str | None = None

    @property
    def reason(self) -> str:
        """``"confidence: expect_column_values_to_be_between [0, 1]"``."""
        subject = self.label or ",".join(self.columns)
        return f"{subject}: {self.expectation}" + (f" {self.detail}" if self.detail else "")


def _not_null(*columns: str) -> list[Rule]:
    return [Rule("expect_column_values_to_not_be_null", (c,)) for c in columns]


def _between(column: str, low: float | None, high: float | None) -> Rule:
    def text(v: float | None) -> str:
        return "None" if v is None else f"{v:g}"

    return Rule(
        "expect_column_values_to_be_between",
        (column,),
        {"min_value": low, "max_value": high},
        f"[{text(low)}, {text(high)}]",
    )


def _greater(a: str, b: str, *, or_equal: bool = False, label: str | None = None) -> Rule:
    return Rule(
        "expect_column_pair_values_a_to_be_greater_than_b",
        (a, b),
        {"or_equal": or_equal},
        f"{a} {'>=' if or_equal else '>'} {b}",
        label=label,
    )


def _unique(*columns: str) -> Rule:
    if len(columns) == 1:
        return Rule("expect_column_values_to_be_unique", columns)
    return Rule("expect_compound_columns_to_be_unique", columns)


def _time_order() -> list[Rule]:
    return [
        Rule(
            "expect_column_values_to_be_in_set",
            (PTS_ORDER_COLUMN,),
            {"value_set": [True]},
            "(out of frame_number order within the video)",
            label="pts_sec",
        ),
        Rule(
            "expect_column_min_to_be_between",
            (PTS_STEP_COLUMN,),
            {"min_value": 0.0},
            "[0, None] (frame-to-frame steps within a video)",
            row_level=False,
            label="pts_sec",
        ),
    ]


def _gps() -> list[Rule]:
    return [_between("lat", -90.0, 90.0), _between("lon", -180.0, 180.0)]


def _classes(known_classes: Sequence[str] | None) -> list[Rule]:
    if known_classes is None:
        return []
    values = sorted(set(known_classes))
    shown = ", ".join(values[:8]) + (", ..." if len(values) > 8 else "")
    return [
        Rule(
            "expect_column_values_to_be_in_set",
            ("class_name",),
            {"value_set": values},
            f"{{{shown}}}",
        )
    ]


def _box(axis_lo: str, axis_hi: str, size: str) -> list[Rule]:
    return [
        _between(axis_lo, 0.0, None),
        _greater(axis_hi, axis_lo, label=axis_hi),
        _greater(size, axis_hi, or_equal=True, label=axis_hi),
    ]


# The id columns that name a row in reports and in the quarantine.
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    t: CATALOG[t].id_columns for t in (FRAMES_TABLE, DETECTIONS_TABLE, EVENTS_TABLE)
}


def rules(table: str, known_classes: Sequence[str] | None = None) -> list[Rule]:
    """The expectations of ``table`` (``frames``, ``detections`` or ``events``), in order.

    >>> [r.reason for r in rules("frames")][6]
    'video_id,frame_number: expect_compound_columns_to_be_unique'
    """
    if table == "frames":
        return [
            *_not_null("video_id", "frame_number", "pts_sec", "captured_at", "width", "height"),
            _unique("video_id", "frame_number"),
            _between("frame_number", 0, None),
            _between("pts_sec", 0.0, None),
            _between("width", 1, None),
            _between("height", 1, None),
            *_time_order(),
        ]
    if table == "detections":
        return [
            *_not_null(
                "detection_id",
                "video_id",
                "source_id",
                "frame_number",
                "pts_sec",
                "captured_at",
                "class_id",
                "class_name",
                "confidence",
                "x1",
                "y1",
                "x2",
                "y2",
                "frame_width",
                "frame_height",
            ),
            _unique("detection_id"),
            _between("frame_number", 0, None),
            _between("pts_sec", 0.0, None),
            _between("class_id", 0, None),
            _between("confidence", 0.0, 1.0),
            _between("frame_width", 1, None),
            _between("frame_height", 1, None),
            *_box("x1", "x2", "frame_width"),
            *_box("y1", "y2", "frame_height"),
            *_gps(),
            *_classes(known_classes),
            *_time_order(),
        ]
    if table == "events":
        return [
            *_not_null(
                "event_id",
                "rule_id",
                "trigger",
                "video_id",
                "source_id",
                "frame_number",
                "pts_sec",
                "captured_at",
            ),
            _unique("event_id"),
            _between("frame_number", 0, None),
            _between("pts_sec", 0.0, None),
            *_gps(),
            *_classes(known_classes),
            # No time-order rule: an event's pts_sec is its own (e.g. a crossing's sub-frame
            # interpolated) time, so events of one frame legitimately differ in time.
        ]
    raise ValueError(f"no quality suite for table {table!r}: use one of {sorted(ID_COLUMNS)}")


def required_columns(table: str) -> list[str]:
    """The columns of ``table`` that the suite reads (derived columns excluded)."""
    needed = dict.fromkeys(["video_id", "frame_number", "pts_sec", *ID_COLUMNS[table]])
    for rule in rules(table, known_classes=()):
        needed.update(dict.fromkeys(c for c in rule.columns if not c.startswith("_")))
    return list(needed)


# --- derived columns ------------------------------------------------------------------------


def pts_order(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(in_order, step)`` per row: the time-order flags the suites check.

    Within each video, frames are taken in ``frame_number`` order with the median
    ``pts_sec`` of their rows. A row is out of order (``in_order`` False) when its own
    ``pts_sec`` differs from its frame's by more than ``PTS_TOLERANCE_S``, or when its
    frame is an isolated spike or dip: its time is below the previous frame's or above
    the next one's while those two neighbours are in order without it. Only the culprit
    is flagged, never the good frame next to it. ``step`` is the frame's time minus the
    previous frame's (0 for a video's first frame); a negative step fails the aggregate
    check. Null times never flag a row here (the not-null rule reports them).

    >>> f = pd.DataFrame({"video_id": "v", "frame_number": [0, 6, 12, 18],
    ...                   "pts_sec": [0.0, 9.0, 0.4, 0.6]})
    >>> in_order, step = pts_order(f)
    >>> in_order.tolist(), step.round(3).tolist()
    ([True, False, True, True], [0.0, 9.0, -8.6, 0.2])
    """
    n = len(frame)
    if n == 0:
        return np.ones(0, bool), np.zeros(0, float)
    video = pd.factorize(frame["video_id"], use_na_sentinel=True)[0]
    number = pd.to_numeric(frame["frame_number"], errors="coerce").to_numpy(float, na_value=np.nan)
    pts = pd.to_numeric(frame["pts_sec"], errors="coerce").to_numpy(float, na_value=np.nan)
    order = np.lexsort((pts, number, video))  # NaN pts sort last within a frame
    v, f, p = video[order], number[order], pts[order]
    starts = np.flatnonzero(
        np.r_[True, (v[1:] != v[:-1]) | ((f[1:] != f[:-1]) & ~(np.isnan(f[1:]) & np.isnan(f[:-1])))]
    )
    counts = np.diff(np.r_[starts, n])
    valid = np.add.reduceat(~np.isnan(p), starts)
    # Lower median of each frame's non-NaN times (NaNs are sorted to each frame's end).
    median_at = starts + np.maximum(valid - 1, 0) // 2
    frame_pts = np.where(valid > 0, p[median_at], np.nan)
    frame_video = v[starts]
    first = np.r_[True, frame_video[1:] != frame_video[:-1]]
    last = np.r_[frame_video[1:] != frame_video[:-1], True]
    prev = np.where(first, -np.inf, np.r_[np.nan, frame_pts[:-1]])
    nxt = np.where(last, np.inf, np.r_[frame_pts[1:], np.nan])
    with np.errstate(invalid="ignore"):
        broken = (frame_pts < prev) | (frame_pts > nxt)
        isolated = broken & (prev <= nxt)
        step = np.where(first, 0.0, frame_pts - np.where(first, 0.0, prev))
        frame_of_row = np.repeat(np.arange(len(starts)), counts)
        off = np.abs(p - frame_pts[frame_of_row]) > PTS_TOLERANCE_S
    bad_sorted = isolated[frame_of_row] | off
    in_order = np.ones(n, bool)
    in_order[order] = ~bad_sorted
    steps = np.empty(n, float)
    steps[order] = step[frame_of_row]
    return in_order, steps


# --- pandas masks (the same rules without GX) -----------------------------------------------


def _mask(rule: Rule, frame: pd.DataFrame) -> np.ndarray:
    """Boolean array of the rows ``rule`` finds unexpected (row-level rules only)."""
    kind, cols, kw = rule.expectation, rule.columns, rule.kwargs
    if kind == "expect_column_values_to_not_be_null":
        return frame[cols[0]].isna().to_numpy()
    if kind == "expect_column_values_to_be_unique":
        s = frame[cols[0]]
        return (s.duplicated(keep=False) & s.notna()).to_numpy()
    if kind == "expect_compound_columns_to_be_unique":
        sub = frame[list(cols)]
        return (sub.duplicated(keep=False) & sub.notna().any(axis=1)).to_numpy()
    if kind == "expect_column_values_to_be_between":
        s = frame[cols[0]]
        outside = np.zeros(len(s), bool)
        if kw.get("min_value") is not None:
            outside |= (s < kw["min_value"]).to_numpy(bool, na_value=False)
        if kw.get("max_value") is not None:
            outside |= (s > kw["max_value"]).to_numpy(bool, na_value=False)
        return outside
    if kind == "expect_column_values_to_be_in_set":
        s = frame[cols[0]]
        return (s.notna() & ~s.isin(kw["value_set"])).to_numpy()
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = frame[cols[0]], frame[cols[1]]
        ok = (a >= b) if kw.get("or_equal") else (a > b)
        return ~ok.to_numpy(bool, na_value=False) & ~(a.isna() & b.isna()).to_numpy()
    raise ValueError(f"no pandas mask for {kind}")


def _aggregate(rule: Rule, frame: pd.DataFrame) -> tuple[bool, Any]:
    """``(success, observed)`` of an aggregate rule."""
    if rule.expectation == "expect_column_min_to_be_between":
        observed = frame[rule.columns[0]].min()
        observed = None if pd.isna(observed) else float(observed)
        low, high = rule.kwargs.get("min_value"), rule.kwargs.get("max_value")
        ok = observed is not None and (low is None or observed >= low)
        ok = ok and (high is None or observed <= high)
        return bool(ok), observed
    raise ValueError(f"no pandas check for {rule.expectation}")


# --- the GX context -------------------------------------------------------------------------

_LOCK = threading.RLock()
_GX: dict[str, Any] = {}


def _camel(snake: str) -> str:
    """``expect_column_values_to_be_between`` -> ``ExpectColumnValuesToBeBetween``."""
    return "".join(part.capitalize() for part in snake.split("_"))


def _gx_context() -> Any:
    """The process's ephemeral GX context (created on first use; nothing touches disk)."""
    with _LOCK:
        if "context" not in _GX:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _GX["gx"] = gx
            _GX["context"] = context
            _GX["source"] = context.data_sources.add_pandas("roadlens_quality")
            _GX["definitions"] = {}
        return _GX["context"]


def _forget_results() -> None:
    """Drop the results GX keeps of every run (in memory here: they would pile up)."""
    store = _gx_context().validation_results_store
    for key in store.list_keys():
        store.remove_key(key)


def _validation_definition(table: str, suite_rules: Sequence[Rule]) -> Any:
    """The cached GX validation definition of ``table`` with ``suite_rules``."""
    context = _gx_context()
    digest = hashlib.sha256(
        repr([(r.expectation, r.columns, r.kwargs) for r in suite_rules]).encode()
    )
    name = f"{table}-{digest.hexdigest()[:16]}"
    with _LOCK:
        cached = _GX["definitions"].get(name)
        if cached is not None:
            return cached
        gx = _GX["gx"]
        import great_expectations.expectations as gxe

        source = _GX["source"]
        try:
            asset = source.get_asset(table)
        except LookupError:
            asset = source.add_dataframe_asset(table)
        try:
            batch = asset.get_batch_definition("whole")
        except (LookupError, KeyError):
            batch = asset.add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for rule in suite_rules:
            cls = getattr(gxe, _camel(rule.expectation))
            if rule.expectation == "expect_column_pair_values_a_to_be_greater_than_b":
                args: dict[str, Any] = {"column_A": rule.columns[0], "column_B": rule.columns[1]}
            elif rule.expectation == "expect_compound_columns_to_be_unique":
                args = {"column_list": list(rule.columns)}
            else:
                args = {"column": rule.columns[0]}
            suite.add_expectation(cls(**args, **rule.kwargs))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch, suite=suite)
        )
        _GX["definitions"][name] = definition
        return definition


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation on one batch."""

    name: str
    columns: tuple[str, ...]
    success: bool
    unexpected_count: int | None
    row_level: bool
    reason: str
    observed: Any = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "expectation": self.name,
            "columns": list(self.columns),
            "success": self.success,
            "unexpected_count": self.unexpected_count,
            "row_level": self.row_level,
            "reason": self.reason,
        }
        if self.observed is not None:
            out["observed"] = _jsonable(self.observed)
        if self.error:
            out["error"] = self.error
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass
class ValidationReport:
    """What :func:`validate` found in one batch.

    ``bad_rows`` maps a row's id (``detection_id``, ``event_id``, or the tuple
    ``(video_id, frame_number)`` for frames) to its reasons; ``bad_positions`` holds the
    0-based positions of those rows in the data and ``bad_reasons`` their reasons in the
    same order (duplicated ids are each their own position).
    """

    table: str
    rows: int
    outcomes: list[ExpectationOutcome]
    bad_rows: dict[Hashable, list[str]]
    bad_positions: np.ndarray
    bad_reasons: list[list[str]]
    seconds: float
    engine: str

    @property
    def passed(self) -> bool:
        """True when every expectation succeeded."""
        return all(o.success for o in self.outcomes)

    @property
    def row_failures(self) -> list[ExpectationOutcome]:
        """The failed expectations that name rows (those rows can be quarantined)."""
        return [o for o in self.outcomes if not o.success and o.row_level]

    @property
    def aggregate_failures(self) -> list[ExpectationOutcome]:
        """The failed expectations about the batch as a whole (nothing to quarantine)."""
        return [o for o in self.outcomes if not o.success and not o.row_level]

    def as_metadata(self, *, sample: int = 10) -> dict[str, Any]:
        """A JSON-able summary for the Dagster UI: counts, the failing rules, some ids.

        >>> from roadlens.synth.tables import synthetic_events
        >>> validate("events", synthetic_events(3), engine="pandas").as_metadata()["passed"]
        True
        """
        return {
            "table": self.table,
            "engine": self.engine,
            "passed": self.passed,
            "rows": self.rows,
            "bad_rows": len(self.bad_positions),
            "expectations": len(self.outcomes),
            "failed_expectations": [o.as_dict() for o in self.outcomes if not o.success],
            "sample_bad_ids": [
                _jsonable(i) if not isinstance(i, tuple) else [_jsonable(x) for x in i]
                for i in list(self.bad_rows)[:sample]
            ],
            "seconds": round(self.seconds, 4),
        }


# --- validate / split -----------------------------------------------------------------------


def to_pandas(data: pd.DataFrame | pa.Table) -> pd.DataFrame:
    """``data`` as a DataFrame (Arrow tables are converted, DataFrames returned as-is)."""
    if isinstance(data, pa.Table):
        return data.to_pandas()
    if isinstance(data, pd.DataFrame):
        return data
    raise TypeError(f"expected a pandas DataFrame or a pyarrow Table, got {type(data).__name__}")


def _prepare(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The columns the suite reads plus the derived ones, with a fresh 0..n-1 index."""
    missing = [c for c in required_columns(table) if c not in frame.columns]
    if missing:
        raise ValueError(f"{table}: the data lacks columns {missing}")
    work = frame[required_columns(table)].reset_index(drop=True)
    # GX's pandas range check is vectorized only for int64 and float64 columns; float32 or
    # int32 (the contract's box, confidence, class id and frame sizes) would go through a
    # Python call per value, ~0.7 s per column per million rows. Widening is exact.
    for name in work.columns:
        dtype = work[name].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        if dtype in (np.int64, np.float64):
            continue
        integer = pd.api.types.is_integer_dtype(dtype) and not work[name].hasnans
        work[name] = work[name].astype(np.int64 if integer else np.float64)
    in_order, step = pts_order(work)
    work[PTS_ORDER_COLUMN] = in_order
    work[PTS_STEP_COLUMN] = step
    work[ROW_COLUMN] = np.arange(len(work), dtype=np.int64)
    return work


def _run_gx(
    table: str, suite_rules: Sequence[Rule], work: pd.DataFrame
) -> list[tuple[ExpectationOutcome, np.ndarray]]:
    definition = _validation_definition(table, suite_rules)
    with _LOCK:
        result = definition.run(
            batch_parameters={"dataframe": work},
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [ROW_COLUMN],
                "return_unexpected_index_query": False,
                "partial_unexpected_count": 0,
            },
        )
        _forget_results()
    if len(result.results) != len(suite_rules):
        raise RuntimeError(
            f"{table}: GX returned {len(result.results)} results for {len(suite_rules)} rules"
        )
    by_key: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
    for res in result.results:
        cfg = res.expectation_config
        kw = cfg.kwargs
        cols = kw.get("column_list") or (
            [kw["column_A"], kw["column_B"]] if "column_A" in kw else [kw.get("column")]
        )
        by_key.setdefault((cfg.type, tuple(cols)), []).append(res)
    out = []
    for rule in suite_rules:
        res = by_key[(rule.expectation, rule.columns)].pop(0)
        info = res.exception_info or {}
        error = info.get("exception_message") if info.get("raised_exception") else None
        body = res.result or {}
        positions = np.fromiter(
            (item[ROW_COLUMN] for item in body.get("unexpected_index_list") or []), np.int64
        )
        count = body.get("unexpected_count") if rule.row_level else None
        out.append(
            (
                ExpectationOutcome(
                    name=rule.expectation,
                    columns=rule.columns,
                    success=bool(res.success) and error is None,
                    unexpected_count=None if count is None else int(count),
                    row_level=rule.row_level,
                    reason=rule.reason,
                    observed=body.get("observed_value"),
                    error=error,
                ),
                positions,
            )
        )
    return out


def _run_pandas(
    suite_rules: Sequence[Rule], work: pd.DataFrame
) -> list[tuple[ExpectationOutcome, np.ndarray]]:
    out = []
    for rule in suite_rules:
        if rule.row_level:
            positions = np.flatnonzero(_mask(rule, work)).astype(np.int64)
            success, observed, count = len(positions) == 0, None, len(positions)
        else:
            positions = np.zeros(0, np.int64)
            success, observed = _aggregate(rule, work)
            count = None
        out.append(
            (
                ExpectationOutcome(
                    rule.expectation,
                    rule.columns,
                    success,
                    count,
                    rule.row_level,
                    rule.reason,
                    observed,
                ),
                positions,
            )
        )
    return out


def _ids(frame: pd.DataFrame, table: str, positions: np.ndarray) -> list[Hashable]:
    columns = ID_COLUMNS[table]
    picked = frame.iloc[positions]
    if len(columns) == 1:
        return [_jsonable(v) if isinstance(v, np.generic) else v for v in picked[columns[0]]]
    return [
        tuple(_jsonable(v) if isinstance(v, np.generic) else v for v in row)
        for row in zip(*(picked[c] for c in columns), strict=True)
    ]


def validate(
    table: str,
    data: pd.DataFrame | pa.Table,
    *,
    known_classes: Sequence[str] | None = None,
    engine: Engine = "gx",
) -> ValidationReport:
    """Run ``table``'s suite over ``data`` and say which rows fail which rules.

    ``engine="gx"`` runs the Great Expectations suite (``result_format`` COMPLETE, the
    failing rows identified by their position); ``engine="pandas"`` applies the same rules
    as vectorized masks. An empty table validates cleanly without calling GX. Missing
    columns raise ``ValueError``.

    >>> from roadlens.synth.tables import synthetic_detections
    >>> df = synthetic_detections(40).to_pandas()
    >>> df.loc[7, "confidence"] = 1.7
    >>> report = validate("detections", df, engine="pandas")
    >>> list(report.bad_rows.values())
    [['confidence: expect_column_values_to_be_between [0, 1]']]
    """
    if engine not in ("gx", "pandas"):
        raise ValueError(f"engine must be 'gx' or 'pandas', not {engine!r}")
    started = time.perf_counter()
    frame = to_pandas(data)
    suite_rules = rules(table, known_classes)
    work = _prepare(table, frame)
    if len(work) == 0:
        results = [
            (
                ExpectationOutcome(r.expectation, r.columns, True, 0, r.row_level, r.reason),
                np.zeros(0, np.int64),
            )
            for r in suite_rules
        ]
    elif engine == "gx":
        results = _run_gx(table, suite_rules, work)
    else:
        results = _run_pandas(suite_rules, work)
    failing = [(o, p) for o, p in results if len(p)]
    if failing:
        positions = np.concatenate([p for _, p in failing])
        reasons = np.repeat(
            np.array([o.reason for o, _ in failing], dtype=object), [len(p) for _, p in failing]
        )
        grouped = pd.Series(reasons).groupby(positions, sort=True).agg(list)
        bad_positions = grouped.index.to_numpy(np.int64)
        bad_reasons = grouped.tolist()
    else:
        bad_positions, bad_reasons = np.zeros(0, np.int64), []
    bad_rows: dict[Hashable, list[str]] = {}
    for key, reasons_of_row in zip(_ids(work, table, bad_positions), bad_reasons, strict=True):
        known = bad_rows.setdefault(key, [])  # a duplicated id gathers its rows' reasons
        known.extend(r for r in reasons_of_row if r not in known)
    return ValidationReport(
        table=table,
        rows=len(work),
        outcomes=[o for o, _ in results],
        bad_rows=bad_rows,
        bad_positions=bad_positions,
        bad_reasons=bad_reasons,
        seconds=time.perf_counter() - started,
        engine=engine,
    )


def split(
    data: pd.DataFrame | pa.Table, report: ValidationReport
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(good, bad)`` rows of ``data`` by ``report``; ``bad`` gains a ``reasons`` column.

    ``data`` must be what was validated (same rows, same order): rows are picked by
    position with one boolean mask, so duplicated or null ids split exactly too. Both parts
    keep every column and the original index.

    >>> from roadlens.synth.tables import synthetic_detections
    >>> df = synthetic_detections(40).to_pandas()
    >>> df.loc[3, "x2"] = 5000.0
    >>> good, bad = split(df, validate("detections", df, engine="pandas"))
    >>> len(good), bad.index.tolist(), bad["reasons"].iloc[0]
    (39, [3], ['x2: expect_column_pair_values_a_to_be_greater_than_b frame_width >= x2'])
    """
    frame = to_pandas(data)
    if len(frame) != report.rows:
        raise ValueError(
            f"split: the data has {len(frame)} rows but the report is about {report.rows}"
        )
    mask = np.zeros(len(frame), bool)
    mask[report.bad_positions] = True
    bad = frame[mask].copy()
    bad["reasons"] = pd.Series(report.bad_reasons, index=bad.index, dtype=object)
    return frame[~mask], bad
