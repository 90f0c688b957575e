"""Fixtures for every test and docstring example of the repository (tests/conftest.py has the
test-suite's own)."""

from collections.abc import Iterator

import numpy as np
import pytest

# numpy's own print options, before any import changes them.
_NUMPY_PRINT_OPTIONS = np.get_printoptions()


@pytest.fixture(autouse=True)
def _numpy_print_defaults() -> Iterator[None]:
    """ultralytics sets numpy's print options when it is imported; the examples show numpy's
    own format whichever test imported it first."""
    with np.printoptions(**_NUMPY_PRINT_OPTIONS):
        yield
