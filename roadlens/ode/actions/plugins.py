"""The ``custom`` action: a callback of yours, imported by its ``"pkg.module:fn"`` path."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pandas as pd


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``"pkg.module:fn"``.

    >>> load_callable("json:dumps")([1])
    '[1]'
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"custom action: {path!r} is not 'pkg.module:function'")
    fn = getattr(importlib.import_module(module_name), attr, None)
    if not callable(fn):
        raise ValueError(f"custom action: {path!r} is not a callable")
    return fn


def custom(events: pd.DataFrame, *, function: str, **params: Any) -> Any:
    """Call ``function(events, **params)`` imported by path; returns what it returns.

    A callback that returns a DataFrame with ``event_id`` and ``media_paths`` has those paths
    added to the events by :func:`~roadlens.ode.actions.run.run_actions`. Idempotency is the
    callback's job (derive any output path from ``event_id``).

    >>> events = pd.DataFrame({"event_id": ["e1", "e2"]})
    >>> custom(events, function="builtins:len")  # a "mypkg.hooks:send" of yours works the same
    2
    """
    return load_callable(function)(events, **params)
