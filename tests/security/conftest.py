"""Fixtures shared by the security tests that run against the devcluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from devcluster.cluster import Cluster


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    """A namespace for one module's objects, deleted afterwards (without waiting)."""
    name = f"sec-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
