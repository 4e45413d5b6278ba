"""leader.py against the real API server's Lease: one holder at a time, a holder cut off from the
API server stops counting itself leader before another candidate takes over, a release hands
over at once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from mlmodel_harness import wait_until

from devcluster.cluster import Cluster
from mlmodel_operator.leader import LeaderElector, LeaseTimes

pytestmark = pytest.mark.cluster

TIMES = LeaseTimes(
    lease_seconds=4.0, renew_deadline_seconds=3.0, retry_seconds=0.5, request_seconds=2
)


class CuttableApi:
    """An ApiClient whose requests fail at will (the holder's network path is cut)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.cut = False
        self.api = api
        plain = api.rest_client.request

        def request(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise ApiException(status=0, reason="cut off by the test")
            return plain(*args, **kwargs)

        api.rest_client.request = request  # type: ignore[method-assign]


@pytest.fixture
def lease_name(cluster: Cluster) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        client.CoordinationV1Api(cluster.api).delete_namespaced_lease(name, "default")
    except ApiException as exc:
        if exc.status != 404:
            raise


def elector(cluster: Cluster, name: str, identity: str) -> tuple[LeaderElector, CuttableApi]:
    api = CuttableApi(client.ApiClient(cluster.api.configuration))
    return LeaderElector(api.api, "default", name, TIMES, identity=identity), api


def watch_overlap(a: LeaderElector, b: LeaderElector, stop: threading.Event) -> list[float]:
    """Sample both every 10 ms; the times at which both counted themselves leader."""
    both: list[float] = []

    def sample() -> None:
        while not stop.is_set():
            if a.is_leader() and b.is_leader():
                both.append(time.monotonic())
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    return both


def test_a_cut_off_leader_stops_before_the_other_takes_over(
    cluster: Cluster, lease_name: str
) -> None:
    a, a_api = elector(cluster, lease_name, "a")
    b, _ = elector(cluster, lease_name, "b")
    stop = threading.Event()
    both = watch_overlap(a, b, stop)
    a.start()
    wait_until("a to lead", a.is_leader, timeout=10)
    b.start()
    try:
        time.sleep(3 * TIMES.lease_seconds)  # b keeps seeing a's renewals
        assert a.is_leader() and not b.is_leader()

        a_api.cut = True
        cut = time.monotonic()
        wait_until("a to stop counting itself leader", lambda: not a.is_leader(), timeout=10)
        stepped_down = time.monotonic() - cut
        wait_until("b to take over", b.is_leader, timeout=15)
        took_over = time.monotonic() - cut
        lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(lease_name, "default")
    finally:
        stop.set()
        a_api.cut = False
        a.stop()
        b.stop()
    assert both == [], "two leaders at once"
    assert stepped_down <= TIMES.renew_deadline_seconds + TIMES.retry_seconds
    # b waited out the lease duration from a's last renewal, which was at most one retry
    # period before the cut
    assert took_over >= TIMES.lease_seconds - TIMES.retry_seconds
    assert took_over <= TIMES.lease_seconds + 2 * TIMES.retry_seconds + TIMES.request_seconds
    assert lease.spec.holder_identity == "b"
    assert lease.spec.lease_transitions == 1


def test_a_released_lease_is_taken_at_once(cluster: Cluster, lease_name: str) -> None:
    a, _ = elector(cluster, lease_name, "a")
    b, _ = elector(cluster, lease_name, "b")
    a.start()
    wait_until("a to lead", a.is_leader, timeout=10)
    b.start()
    try:
        time.sleep(2 * TIMES.retry_seconds)
        released = time.monotonic()
        a.stop()  # graceful: empty holder
        wait_until("b to take over", b.is_leader, timeout=10)
        assert time.monotonic() - released < TIMES.lease_seconds
    finally:
        b.stop()
    lease = client.CoordinationV1Api(cluster.api).read_namespaced_lease(lease_name, "default")
    assert not lease.spec.holder_identity  # b released it too
