"""Dagster features RoadLens uses on purpose while Dagster still marks them preview or beta.

Partitioned asset checks (one verdict per capture date) and the observable source asset of
the rule files are what the design needs; the warnings Dagster prints for them would only
repeat on every ``roadlens`` command and every ``dagster dev`` start, so the definitions
that use them are made inside :func:`known_previews`, which silences exactly those two
warning classes there and nowhere else.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import dagster as dg


@contextlib.contextmanager
def known_previews() -> Iterator[None]:
    """Silence Dagster's preview and beta warnings for the definitions made inside."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        yield
