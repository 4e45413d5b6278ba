"""Trainer test settings."""

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def single_threaded_numerics() -> Iterator[None]:
    """OpenMP thread pools spin badly on a busy 2-core machine (HistGradientBoosting on iris: 0.05 s
    with one thread, up to 10 s with two under load); the tests check results, not speed."""
    with threadpool_limits(limits=1):
        yield
