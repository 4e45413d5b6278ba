"""leader.py against the real API server's Lease: one holder at a time, a holder cut off from the
API server stops counting itself leader before another candidate takes over, a release hands
over at once. And the leader's writes: each ends within its term, and a status patch computed
from an MLModel that has been written since is refused."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from mlmodel_harness import GROUP, PLURAL, VERSION, Api, BlackHoleProxy, mlmodel_yaml, wait_until

from devcluster.cluster import Cluster
from mlmodel_operator.kube import Kube, api_client
from mlmodel_operator.leader import LeaderElector, LeaseTimes
from mlmodel_operator.main import MIN_WRITE_SECONDS, LeaderKube, NotLeader

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


def config_map(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"written": "by the test"},
    }


def test_a_write_gives_up_when_the_leaders_term_ends_not_after_the_request_timeout(
    cluster: Cluster,
) -> None:
    """A leader whose connection to the API server went silent: its write times out when its
    term would end (2 s here), not after the 30 s request timeout; and a write with less than
    MIN_WRITE_SECONDS of the term left is not sent at all."""
    host, port = cluster.api.configuration.host.removeprefix("https://").rsplit(":", 1)
    proxy = BlackHoleProxy((host, int(port)))
    configuration = copy.copy(cluster.api.configuration)
    configuration.host = f"https://127.0.0.1:{proxy.port}"  # the proxy listens on loopback
    configuration.tls_server_name = host  # the certificate names the API server's address
    api = api_client(configuration, request_timeout=30.0, retries=False)
    term = {"left": 2.0}
    kube = LeaderKube(api, lambda: term["left"], request_seconds=30.0)
    core = client.CoreV1Api(cluster.api)
    names = [f"term-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    try:
        kube.apply(config_map(names[0]))  # through the proxy, on a connection kept open
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(Exception) as timed_out:
            kube.apply(config_map(names[1]))
        took = time.monotonic() - started
        term["left"] = MIN_WRITE_SECONDS / 2
        with pytest.raises(NotLeader):
            kube.apply(config_map(names[2]))
    finally:
        proxy.close()
    assert "timed out" in str(timed_out.value).lower(), timed_out.value
    assert took < 15.0, f"the write took {took:.1f} s: the request timeout, not the term"
    stored = [item.metadata.name for item in core.list_namespaced_config_map("default").items]
    assert names[0] in stored and names[2] not in stored
    for name in names:
        try:
            core.delete_namespaced_config_map(name, "default")
        except ApiException as exc:
            if exc.status != 404:
                raise


def test_a_status_patch_from_an_mlmodel_written_since_is_refused(api: Api) -> None:
    """The status patch carries the resourceVersion of the MLModel it was computed from: the
    API server refuses it (409) once anyone else wrote the MLModel, e.g. a new leader."""
    api.apply(mlmodel_yaml("stale", replicas=1))
    read = api.mlmodel("stale")
    stale = read["metadata"]["resourceVersion"]
    api.custom.patch_namespaced_custom_object(
        GROUP, VERSION, api.ns, PLURAL, "stale", {"metadata": {"labels": {"edited": "yes"}}}
    )
    kube = Kube(client.ApiClient(api.cluster.api.configuration))
    with pytest.raises(ApiException) as refused:
        kube.patch_mlmodel_status(api.ns, "stale", {"observedGeneration": 99}, stale)
    assert refused.value.status == 409, refused.value
    assert api.mlmodel("stale").get("status", {}).get("observedGeneration") != 99
