"""Facts every settings reader shares: where RoadLens keeps its files, how numbers are read.

``ROADLENS_HOME`` (default ``.roadlens``, resolved against the working directory) holds the
lake, the landing folder, the model-export cache, the sink state and spool, the service's
source registry and the default ``DAGSTER_HOME``; :func:`roadlens_home` is the one reader
of it. :func:`env_number` reads a numeric setting: blank means the caller's default,
anything else must parse and lie in the allowed range, or a :class:`ValueError` names the
variable, the value and the range. Each setting's default stays where the setting is
defined.

Example:
    >>> roadlens_home({"ROADLENS_HOME": "/srv/roadlens"}).as_posix()
    '/srv/roadlens'
    >>> roadlens_home({}) == Path(".roadlens").resolve()
    True
    >>> env_number("ROADLENS_WS_QUEUE", 256, minimum=1, env={"ROADLENS_WS_QUEUE": " 64 "})
    64
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import overload

__all__ = ["DEFAULT_HOME", "HOME_ENV", "env_number", "roadlens_home"]

HOME_ENV = "ROADLENS_HOME"
DEFAULT_HOME = ".roadlens"
"""``ROADLENS_HOME`` when unset: relative, so it lands in the working directory."""


def roadlens_home(env: Mapping[str, str] | None = None) -> Path:
    """``$ROADLENS_HOME`` (default ``./.roadlens``) as an absolute path.

    ``env`` is the environment to read (default ``os.environ``), for callers that are
    given their own mapping.

    >>> roadlens_home({"ROADLENS_HOME": "/tmp/x"}) / "lake"
    PosixPath('/tmp/x/lake')
    """
    env = os.environ if env is None else env
    return Path(env.get(HOME_ENV, DEFAULT_HOME)).resolve()


@overload
def env_number(
    name: str,
    default: int,
    *,
    kind: type[int] = ...,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    env: Mapping[str, str] | None = None,
) -> int: ...


@overload
def env_number(
    name: str,
    default: float,
    *,
    kind: type[float],
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    env: Mapping[str, str] | None = None,
) -> float: ...


def env_number(
    name: str,
    default: float,
    *,
    kind: type[int] | type[float] = int,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """The number in environment variable ``name``, or ``default`` when it is unset or blank.

    Args:
        name: The variable, e.g. ``ROADLENS_SENSOR_INTERVAL_S``.
        default: Returned as is (unchecked) when the variable is unset or blank.
        kind: ``int`` (a whole number: ``"2.5"`` is refused) or ``float``.
        minimum: Smallest allowed value (inclusive).
        above: The value must be greater than this (an exclusive lower bound).
        maximum: Largest allowed value (inclusive).
        env: The environment to read; default ``os.environ``.

    Give ``minimum`` or ``above``, not both.

    Raises:
        ValueError: the value does not parse as ``kind``, is NaN or lies outside the range;
            the message names the variable, the value and the allowed range.

    >>> env_number("ROADLENS_MAX_QUARANTINE_SHARE", 0.05, kind=float, minimum=0, maximum=1,
    ...            env={})
    0.05
    >>> env_number("ROADLENS_MICROBATCH_MAX_QUEUED", 1, minimum=0,
    ...            env={"ROADLENS_MICROBATCH_MAX_QUEUED": "1.5"})
    Traceback (most recent call last):
    ...
    ValueError: ROADLENS_MICROBATCH_MAX_QUEUED='1.5': expected a whole number >= 0
    >>> env_number("ROADLENS_API_RATE", 20.0, kind=float, above=0, env={"ROADLENS_API_RATE": "0"})
    Traceback (most recent call last):
    ...
    ValueError: ROADLENS_API_RATE='0': expected a number > 0
    """
    if minimum is not None and above is not None:
        raise TypeError("env_number: give minimum or above, not both")
    env = os.environ if env is None else env
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value: float
    try:
        value = kind(raw)
    except ValueError:
        value = math.nan
    if (
        math.isnan(value)
        or (minimum is not None and value < minimum)
        or (above is not None and value <= above)
        or (maximum is not None and value > maximum)
    ):
        raise ValueError(f"{name}={raw!r}: expected {_expected(kind, minimum, above, maximum)}")
    return value


def _expected(
    kind: type[int] | type[float],
    minimum: float | None,
    above: float | None,
    maximum: float | None,
) -> str:
    """``'a number in [0, 1]'``, ``'a whole number >= 1'``, ``'a number > 0'``, ..."""
    what = "a whole number" if kind is int else "a number"
    low, low_bracket, low_op = (minimum, "[", ">=") if above is None else (above, "(", ">")
    if low is not None and maximum is not None:
        return f"{what} in {low_bracket}{_show(low)}, {_show(maximum)}]"
    if low is not None:
        return f"{what} {low_op} {_show(low)}"
    if maximum is not None:
        return f"{what} <= {_show(maximum)}"
    return what


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(float(bound))
