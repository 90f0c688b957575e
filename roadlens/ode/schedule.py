"""Rule schedules: local time windows, weekdays and date ranges in an IANA time zone.

A schedule is applied to ``captured_at`` (wall-clock UTC instants), converted to the
schedule's zone with :mod:`zoneinfo` rules, so daylight-saving changes are handled: "07:00-09:30"
in ``Europe/Berlin`` is 06:00-08:30 UTC in winter and 05:00-07:30 UTC in summer.

Definitions:

* a window ``"HH:MM-HH:MM"`` (seconds optional) is half-open ``[start, end)`` in local time;
  ``end`` may be ``24:00``; ``end < start`` wraps past midnight ("22:00-06:00");
* the *schedule day* of an instant is its local date, except in the after-midnight part of a
  wrapping window, where it is the previous date (the day the window opened): weekdays, date
  ranges and exclusions are tested on that day, so "Fri 22:00-06:00" includes Saturday 02:00;
* ``weekdays``: names ("mon", "Tuesday"), ranges ("mon-fri") or ISO numbers 1-7; all if empty;
* ``dates``: inclusive local-date ranges ("2026-06-01..2026-08-31" or a single date); all if
  empty. ``exclude_dates`` (holidays): the same syntax, removed.

Example:
    >>> s = parse_schedule({"windows": ["07:00-09:30"], "weekdays": "mon-fri",
    ...                     "timezone": "Europe/Berlin"})
    >>> s.mask(pd.Series(pd.to_datetime(["2026-03-27T06:30Z", "2026-03-28T06:30Z"]))).tolist()
    [True, False]
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_FULL = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_KEYS = {"windows", "weekdays", "timezone", "dates", "exclude_dates"}


class ScheduleError(ValueError):
    """An invalid schedule; the message names the field."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule (see the module docstring); build one with :func:`parse_schedule`.

    ``windows`` are ``(start, end)`` seconds of the local day, ``weekdays`` 0=Monday..6,
    ``dates``/``exclude`` inclusive ``(first, last)`` local dates.
    """

    timezone: str = "UTC"
    windows: tuple[tuple[int, int], ...] = ((0, 86400),)
    weekdays: frozenset[int] = field(default_factory=lambda: frozenset(range(7)))
    dates: tuple[tuple[dt.date, dt.date], ...] = ()
    exclude: tuple[tuple[dt.date, dt.date], ...] = ()

    def _day_ok(self, day: np.ndarray) -> np.ndarray:
        """Which schedule days (``datetime64[D]``) are allowed."""
        # 1970-01-01 was a Thursday (3): weekday 0 = Monday.
        weekday = (day.astype(np.int64) + 3) % 7
        ok = np.isin(weekday, list(self.weekdays))
        if self.dates:
            ok &= _in_ranges(day, self.dates)
        if self.exclude:
            ok &= ~_in_ranges(day, self.exclude)
        return ok

    def mask(self, captured_at: pd.Series | pd.DatetimeIndex) -> np.ndarray:
        """True where the instant is inside the schedule (vectorized, DST-correct).

        Naive timestamps are taken as UTC; NaT is never inside.

        Example:
            >>> Schedule().mask(pd.Series(pd.to_datetime(["2026-01-01T00:00Z"]))).tolist()
            [True]
        """
        ts = pd.DatetimeIndex(captured_at)
        if ts.tz is None:
            ts = ts.tz_localize("UTC")
        nat = np.asarray(ts.isna())
        if nat.any():  # NaT has no hour; test a placeholder and mask it out at the end
            ts = ts.where(~nat, pd.Timestamp(0, tz="UTC"))
        local = ts.tz_convert(self.timezone)
        sod = (
            local.hour.to_numpy(np.int64) * 3600
            + local.minute.to_numpy(np.int64) * 60
            + local.second.to_numpy(np.int64)
        )
        day = local.tz_localize(None).to_numpy().astype("datetime64[D]")
        out = np.zeros(len(ts), dtype=bool)
        for start, end in self.windows:  # a handful of windows; each test is whole-column
            if start < end:
                out |= (sod >= start) & (sod < end) & self._day_ok(day)
            else:  # wraps midnight: the early part belongs to the previous day's window
                out |= (sod >= start) & self._day_ok(day)
                out |= (sod < end) & self._day_ok(day - np.timedelta64(1, "D"))
        return out & ~nat

    def filter(self, hits: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``hits`` whose ``captured_at`` is inside the schedule (a new table)."""
        return hits[self.mask(hits["captured_at"])].reset_index(drop=True)


def _in_ranges(day: np.ndarray, ranges: Iterable[tuple[dt.date, dt.date]]) -> np.ndarray:
    ok = np.zeros(len(day), dtype=bool)
    for first, last in ranges:
        ok |= (day >= np.datetime64(first, "D")) & (day <= np.datetime64(last, "D"))
    return ok


def _parse_time(text: str, where: str, *, end: bool) -> int:
    m = _TIME.match(text.strip())
    if not m:
        raise ScheduleError(f"{where}: {text!r} is not HH:MM or HH:MM:SS")
    h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
    if mi > 59 or s > 59 or h > 24 or (h == 24 and (mi or s or not end)):
        raise ScheduleError(f"{where}: {text!r} is not a time of day (24:00 only as an end)")
    return h * 3600 + mi * 60 + s


def _as_items(value: Any, field: str, example: str) -> list[Any]:
    """A string or a list; anything else (null, a number, a mapping) is a ScheduleError."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise ScheduleError(f"{field}: {value!r} is not a string or a list (e.g. {example})")


def _parse_windows(value: Any) -> tuple[tuple[int, int], ...]:
    items = _as_items(value, "windows", "['07:00-09:30']")
    if not items:
        raise ScheduleError("windows: empty list (leave it out for all day)")
    out = []
    for i, item in enumerate(items):
        where = f"windows[{i}]"
        if not isinstance(item, str) or item.count("-") != 1:
            raise ScheduleError(f"{where}: {item!r} is not 'HH:MM-HH:MM'")
        a, b = item.split("-")
        start, stop = _parse_time(a, where, end=False), _parse_time(b, where, end=True)
        if start == stop:
            raise ScheduleError(f"{where}: {item!r} is empty (use 00:00-24:00 for all day)")
        out.append((start, stop))
    return tuple(out)


def _day_number(token: Any, where: str) -> int:
    if isinstance(token, int) and not isinstance(token, bool) and 1 <= token <= 7:
        return token - 1  # ISO 8601: 1 = Monday
    t = str(token).strip().lower()
    if t in _DAYS:
        return _DAYS.index(t)
    if t in _FULL:
        return _FULL.index(t)
    if t.isdigit() and 1 <= int(t) <= 7:
        return int(t) - 1
    raise ScheduleError(f"{where}: {token!r} is not a weekday (mon..sun or 1..7)")


def _parse_weekdays(value: Any) -> frozenset[int]:
    tokens = value.split(",") if isinstance(value, str) else _as_items(value, "weekdays", "mon-fri")
    days: set[int] = set()
    for i, tok in enumerate(tokens):
        where = f"weekdays[{i}]"
        if isinstance(tok, str) and "-" in tok:
            a, b = (_day_number(x, where) for x in tok.split("-", 1))
            days.update((a + k) % 7 for k in range((b - a) % 7 + 1))  # "fri-mon" wraps
        else:
            days.add(_day_number(tok, where))
    if not days:
        raise ScheduleError("weekdays: empty (leave it out for every day)")
    return frozenset(days)


def _parse_date(text: Any, where: str) -> dt.date:
    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(str(text).strip())
    except ValueError:
        raise ScheduleError(f"{where}: {text!r} is not a date YYYY-MM-DD") from None


def _parse_ranges(value: Any, name: str) -> tuple[tuple[dt.date, dt.date], ...]:
    items = [value] if isinstance(value, str | dt.date) else list(value)
    out = []
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        a: Any
        b: Any
        if isinstance(item, str) and ".." in item:
            a, b = item.split("..", 1)
        elif isinstance(item, list | tuple) and len(item) == 2:
            a, b = item
        else:
            a = b = item
        first, last = _parse_date(a, where), _parse_date(b, where)
        if last < first:
            raise ScheduleError(f"{where}: ends ({last}) before it starts ({first})")
        out.append((first, last))
    return tuple(out)


def parse_schedule(spec: Mapping[str, Any]) -> Schedule:
    """A :class:`Schedule` from a rule file's mapping; :class:`ScheduleError` names the field.

    Keys: ``windows``, ``weekdays``, ``timezone`` (IANA, default UTC), ``dates``,
    ``exclude_dates``; all optional.

    Example:
        >>> parse_schedule({"windows": "22:00-06:00", "timezone": "America/New_York"}).windows
        ((79200, 21600),)
    """
    if not isinstance(spec, Mapping):
        raise ScheduleError(f"schedule: expected a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise ScheduleError(f"schedule: unknown field(s) {unknown}; expected {sorted(_KEYS)}")
    tz = str(spec.get("timezone", "UTC"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"timezone: {tz!r} is not an IANA time zone") from None
    kwargs: dict[str, Any] = {"timezone": tz}
    if "windows" in spec:
        kwargs["windows"] = _parse_windows(spec["windows"])
    if "weekdays" in spec:
        kwargs["weekdays"] = _parse_weekdays(spec["weekdays"])
    if "dates" in spec:
        kwargs["dates"] = _parse_ranges(spec["dates"], "dates")
    if "exclude_dates" in spec:
        kwargs["exclude"] = _parse_ranges(spec["exclude_dates"], "exclude_dates")
    return Schedule(**kwargs)


__all__ = ["Schedule", "ScheduleError", "parse_schedule"]
