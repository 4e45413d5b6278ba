"""Issue 13 on the real API server: re-lists forget what was deleted in a watch gap, one leader
among replicas (and a take-over when it dies), watches that notice a black-holed connection."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from mlmodel_harness import (
    Api,
    BlackHoleProxy,
    OperatorProcess,
    mlmodel_yaml,
    service_account_kubeconfig,
    wait_until,
)
from test_operator_faults import (
    CHURN_BATCH,
    create,
    delete,
    owned_by_live_models,
    set_replicas,
    sigkill,
    wait_converged,
)

from devcluster.cluster import Cluster
from devcluster.kube import controlplane
from devcluster.waiting import NotYet

# the operator's pods turn Ready on kwok's fake nodes, without images or a reachable artifact
pytestmark = [pytest.mark.cluster, pytest.mark.fake_pods]

TAKEOVER_LIMIT_SECONDS = 15.0


@pytest.fixture
def running_operator(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session's operator; whatever a test did to it, it runs again afterwards."""
    yield operator
    if operator.proc is not None and operator.proc.poll() is None:
        operator.proc.send_signal(signal.SIGCONT)  # in case a test stopped it
    else:
        operator.start()


@pytest.fixture
def second(installed: Cluster, tmp_path: Path) -> Iterator[OperatorProcess]:
    """A second operator process (not started), stopped after the test."""
    kubeconfig = service_account_kubeconfig(installed, tmp_path / "kubeconfig")
    other = OperatorProcess(kubeconfig, tmp_path / "second.log")
    yield other
    other.stop()


def leads(operator: OperatorProcess) -> bool:
    running = operator.proc is not None and operator.proc.poll() is None
    return running and operator.metric("mlmodel_operator_leader") == 1


def writes(operator: OperatorProcess) -> float:
    return operator.metric("mlmodel_operator_child_writes_total")


def lease(cluster: Cluster) -> client.V1Lease:
    return client.CoordinationV1Api(cluster.api).read_namespaced_lease(
        "mlmodel-operator", "mlmodel-system"
    )


def test_two_operators_one_leads_and_a_sigkilled_leader_is_replaced_mid_churn(
    api: Api, running_operator: OperatorProcess, second: OperatorProcess
) -> None:
    first = running_operator
    wait_until("the session operator to lead", lambda: leads(first))
    second.start()
    rng = random.Random(13)
    expected: dict[str, int] = {}
    gone: set[str] = set()
    takeover = None
    for start in range(0, 200, CHURN_BATCH):
        batch = [f"m{i}" for i in range(start, start + CHURN_BATCH)]
        for name in batch:
            create(api, name, replicas=1)
            expected[name] = 1
        earlier = sorted(set(expected) - set(batch))
        for name in rng.sample(earlier, k=min(6, len(earlier))):
            expected[name] = rng.choice([1, 2])
            set_replicas(api, name, expected[name])
        for name in rng.sample(earlier, k=min(3, len(earlier))):
            delete(api, name)
            expected.pop(name)
            gone.add(name)
        if start == 2 * CHURN_BATCH:  # mid-churn: the leader dies without a word
            wait_until("the leader to start on the batch", lambda: api.exists("Deployment", "m80"))
            assert writes(first) > 0
            assert writes(second) == 0, "the follower wrote"
            assert not leads(second)
            holder = lease(api.cluster).spec.holder_identity
            killed = time.monotonic()
            sigkill(first)
            wait_until("the second operator to take over", lambda: leads(second), timeout=30)
            takeover = time.monotonic() - killed
            assert lease(api.cluster).spec.holder_identity != holder
    wait_converged(api, expected, gone, timeout=240)
    assert owned_by_live_models(api) == []
    assert takeover is not None and takeover <= TAKEOVER_LIMIT_SECONDS, takeover
    assert writes(second) > 0


def test_an_old_and_a_new_operator_at_once_never_alternate_a_child(
    api: Api, running_operator: OperatorProcess, second: OperatorProcess
) -> None:
    first = running_operator
    wait_until("the session operator to lead", lambda: leads(first))
    # the "new version" renders a different CPU request for the same MLModel
    second.settings["MLOP_DEFAULT_CPU_REQUEST"] = "300m"
    second.start()
    api.apply(mlmodel_yaml("versioned", replicas=1))
    wait_until("versioned Ready", lambda: api.is_ready("versioned"))

    def cpu_and_generation() -> tuple[str, int]:
        found = api.deployment("versioned")
        assert found is not None
        container = found["spec"]["template"]["spec"]["containers"][0]
        return container["resources"]["requests"]["cpu"], found["metadata"]["generation"]

    def after_drift_rounds(operator: OperatorProcess, rounds: int = 3) -> None:
        runs = operator.metric("mlmodel_operator_reconcile_total", trigger="timer")
        wait_until(
            f"{rounds} drift rounds",
            lambda: (
                operator.metric("mlmodel_operator_reconcile_total", trigger="timer")
                >= runs + rounds
            ),
        )

    before = cpu_and_generation()
    assert before[0] == "250m"
    after_drift_rounds(first)
    assert cpu_and_generation() == before, "the follower's template was applied"

    first.stop()  # a graceful stop releases the Lease: the new version takes over at once
    wait_until("the new version to lead", lambda: leads(second), timeout=TAKEOVER_LIMIT_SECONDS)
    wait_until("the new template applied", lambda: cpu_and_generation()[0] == "300m")
    changed = cpu_and_generation()
    first.start()  # the old version is back, as a follower
    after_drift_rounds(second)
    assert cpu_and_generation() == changed == ("300m", before[1] + 1)
    assert not leads(first)


def test_a_relist_after_410_recreates_a_deployment_deleted_in_the_gap_and_forgets_a_deleted_model(
    api: Api, proxied: tuple[OperatorProcess, BlackHoleProxy]
) -> None:
    operator, proxy = proxied
    for name in ("kept", "dropped"):
        api.apply(mlmodel_yaml(name, replicas=1))
    wait_until("both Ready", lambda: api.is_ready("kept") and api.is_ready("dropped"))
    old_uid = api.apps.read_namespaced_deployment("kept", api.ns).metadata.uid
    expired = operator.metric("mlmodel_operator_lists_total", reason="expired")

    # The operator's connections go silent: it sees neither the deletes nor the API server's
    # shutdown bookmark. (Stopping the operator's process instead, the kernel buffered both for
    # it: a bookmark taken at shutdown carries a version past the deletes, the watches resumed
    # from it without a 410, and CI saw 0 expired lists twice.)
    proxy.freeze()
    api.apps.delete_namespaced_deployment("kept", api.ns)
    delete(api, "dropped")
    # The API server goes away and etcd compacts its history meanwhile: the watches, resumed
    # from before the deletes, get 410 Gone and must list again. (A restart alone is not
    # enough: an API server whose watch cache is still filling serves a watch from etcd, which
    # has every revision until it is compacted.)
    layout = controlplane.layout_for(api.cluster.kubeconfig.parent)
    controlplane.restart(
        layout,
        ("kube-apiserver",),
        log=lambda _: None,
        while_stopped=lambda: controlplane.compact_etcd(layout),
    )
    proxy.cut()  # the silent connections close: the operator resumes its watches at once

    # The re-list is counted when it has been read, which may take a few tries while the new
    # API server's caches fill (429 until then): wait for it, don't sample it. (CI once read
    # 0 here while the re-list was still under way: the waits below can pass without it.)
    def relisted() -> bool | NotYet:
        if operator.metric("mlmodel_operator_lists_total", reason="expired") > expired:
            return True
        return NotYet(f"no expired list yet; the operator's log ends:\n{operator.log_tail()}")

    wait_until("a watch to expire and its re-list to complete", relisted, timeout=120)
    wait_until(
        "Deployment kept re-created",
        lambda: (d := api.deployment("kept")) is not None and d["metadata"]["uid"] != old_uid,
        timeout=120,
    )
    wait_until("dropped's children collected", lambda: not api.exists("Deployment", "dropped"))
    created = operator.metric("mlmodel_operator_child_writes_total", verb="Created")
    runs = operator.metric("mlmodel_operator_reconcile_total", trigger="timer")
    wait_until(
        "three drift rounds",
        lambda: operator.metric("mlmodel_operator_reconcile_total", trigger="timer") >= runs + 3,
    )
    assert operator.metric("mlmodel_operator_child_writes_total", verb="Created") == created
    assert not api.exists("Deployment", "dropped") and not api.exists("Service", "dropped")
    assert api.is_ready("kept")


@contextmanager
def operator_behind_a_proxy(
    running_operator: OperatorProcess, installed: Cluster, tmp_path: Path, **settings: str
) -> Iterator[tuple[OperatorProcess, BlackHoleProxy]]:
    """An operator (the leader: the session's is stopped meanwhile) that reaches the API server
    through a BlackHoleProxy; the session's operator runs again afterwards."""
    kubeconfig = service_account_kubeconfig(installed, tmp_path / "kubeconfig")
    config = yaml.safe_load(kubeconfig.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    proxy = BlackHoleProxy((host, int(port)))
    config["clusters"][0]["cluster"]["server"] = f"https://{host}:{proxy.port}"
    kubeconfig.write_text(yaml.safe_dump(config))
    proxied = OperatorProcess(kubeconfig, tmp_path / "proxied.log", **settings)
    running_operator.stop()  # the proxied operator must be the leader
    try:
        proxied.start()
        yield proxied, proxy
    finally:
        proxied.stop()
        proxy.close()
        running_operator.start()


@pytest.fixture
def proxied(
    running_operator: OperatorProcess, installed: Cluster, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, BlackHoleProxy]]:
    """operator_behind_a_proxy with the default deadlines (a silent watch is noticed only after
    minutes: the test decides when its connections close)."""
    with operator_behind_a_proxy(running_operator, installed, tmp_path) as pair:
        yield pair


def test_a_black_holed_watch_fails_healthz_then_the_operator_reconnects_and_converges(
    api: Api, running_operator: OperatorProcess, installed: Cluster, tmp_path: Path
) -> None:
    with operator_behind_a_proxy(
        running_operator,
        installed,
        tmp_path,
        MLOP_WATCH_TIMEOUT_SECONDS="10",
        MLOP_REQUEST_TIMEOUT_SECONDS="10",
    ) as (proxied, proxy):
        api.apply(mlmodel_yaml("steady", replicas=1))
        wait_until("steady Ready", lambda: api.is_ready("steady"), timeout=60)
        assert proxied.probe("/healthz") == 200

        proxy.freeze()
        frozen = time.monotonic()
        api.core.delete_namespaced_service("steady", api.ns)  # only a live watch sees this
        wait_until("/healthz to fail", lambda: proxied.probe("/healthz") == 503, timeout=40)
        failed_after = time.monotonic() - frozen
        wait_until("/healthz to recover", lambda: proxied.probe("/healthz") == 200, timeout=60)
        wait_until("Service steady re-created", lambda: api.exists("Service", "steady"))
        assert proxied.metric("mlmodel_operator_watch_restarts_total", reason="timeout") >= 1
        # silent past the watch timeout (10 s) plus the grace (5 s), counted from its last byte
        assert failed_after <= 20, failed_after
