"""Timing helpers shared by the benchmark scripts.

Methods run in interleaved rounds (every method once per round) so drift in machine
load hits all of them alike; callers report medians and the spread around them.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Method:
    """One thing to time; ``run`` does the work once and may return a result to keep.

    ``setup``, when given, runs untimed before every call of ``run`` (e.g. to restore the
    thread count a method runs with when other methods change process-wide state).
    """

    name: str
    run: Callable[[], Any]
    setup: Callable[[], None] | None = None


@dataclass
class Timing:
    """Wall seconds of each timed round of one method, and what each round returned."""

    seconds: list[float] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    warmup: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> tuple[float, float]:
        """``(min / median, max / median)``: how far the rounds strayed from the median."""
        median = self.median
        return min(self.seconds) / median, max(self.seconds) / median


def interleave(
    methods: Sequence[Method], rounds: int, *, warm_up: bool = True
) -> dict[str, Timing]:
    """Time every method once per round, round-robin, after one untimed warm-up round.

    With ``warm_up=False`` the caller has warmed the methods up itself.
    """
    timings = {m.name: Timing() for m in methods}
    if warm_up:
        for method in methods:
            if method.setup is not None:
                method.setup()
            timings[method.name].warmup = method.run()
    for _ in range(rounds):
        for method in methods:
            if method.setup is not None:
                method.setup()
            started = time.perf_counter()
            result = method.run()
            timings[method.name].seconds.append(time.perf_counter() - started)
            timings[method.name].results.append(result)
    return timings


def format_spread(timing: Timing) -> str:
    """The spread as ``min-max`` ratios to the median, e.g. ``0.97-1.06``."""
    low, high = timing.spread
    return f"{low:.2f}-{high:.2f}"


def versions(*modules: str) -> dict[str, str]:
    """``{module: version}`` for each importable module, ``"not installed"`` otherwise."""
    found = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception:  # a missing or broken optional backend is reported, not raised
            found[name] = "not installed"
            continue
        found[name] = str(getattr(module, "__version__", "unknown"))
    return found
