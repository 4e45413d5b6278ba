"""The reconciler's `version_ready` hook (mlmodel_operator.version_ready): the pods'
model_server_version_ready read from their /metrics decides CandidateReady, against real HTTP
servers on loopback addresses (127.0.0.2, 127.0.0.3, ... at one port: the pod template names
one port for every pod) serving the model server's exposition text, and a reconcile on a
FakeKube with the operator's real watch cache (no cluster)."""

from __future__ import annotations

import copy
import errno
import http.server
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_operator_analysis_metrics import Traffic, exposition
from test_operator_candidate_status import World, spec
from test_operator_reconcile import NAME, NS

from mlmodel_operator import main
from mlmodel_operator.analysis_metrics import (
    METRICS_ACCEPT,
    POD_BACKOFF,
    SLOW_READ_SECONDS,
    Backoff,
    PodTarget,
    read_version_ready,
    ready_roles,
)
from mlmodel_operator.render.meta import LABEL_INSTANCE
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings
from mlmodel_operator.version_ready import PodVersionReadiness, version_ready_from_cache

LOADED = exposition({"p": Traffic(candidate_ready=1)})
NOT_LOADED = exposition({"p": Traffic(candidate_ready=0)})


# --- pods on loopback -------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    server: PodServer

    def do_GET(self) -> None:
        server = self.server
        server.hits.append(self.path)
        if server.hang is not None:
            server.hang.wait()
            return
        time.sleep(server.delay)
        data = server.body.encode()
        self.send_response(server.status)
        self.send_header("Content-Type", METRICS_ACCEPT)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class PodServer(http.server.ThreadingHTTPServer):
    """One pod's /metrics: its body and status can be changed; `hits` lists the GETs."""

    def __init__(self, ip: str, port: int) -> None:
        super().__init__((ip, port), _Handler)
        self.ip = ip
        self.body = LOADED
        self.status = 200
        self.hang: threading.Event | None = None
        self.delay = 0.0  # seconds before answering
        self.hits: list[str] = []

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a reader that gave up resets the connection: not news


@dataclass
class Pods:
    """Model pods on 127.0.0.2, 127.0.0.3, ..., all at `port`; stopped after the test."""

    port: int = 0
    servers: list[PodServer] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def start(self, count: int) -> list[PodServer]:
        started = []
        for _ in range(count):
            ip = f"127.0.0.{len(self.servers) + 2}"
            server = PodServer(ip, self.port)
            self.port = int(server.server_address[1])
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self.servers.append(server)
            started.append(server)
        return started

    def hits(self) -> int:
        return sum(len(s.hits) for s in self.servers)

    def close(self) -> None:
        self.release.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


def _free_port_on_every_address(count: int) -> int:
    """A port free on 127.0.0.2 .. 127.0.0.(count + 1)."""
    for _ in range(50):
        probe = socket.socket()
        probe.bind(("127.0.0.2", 0))
        port = int(probe.getsockname()[1])
        probe.close()
        try:
            for n in range(3, count + 2):
                with socket.socket() as s:
                    s.bind((f"127.0.0.{n}", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue
            raise
        return port
    raise RuntimeError("no port free on every loopback address")


@pytest.fixture
def pods() -> Iterator[Pods]:
    servers = Pods(port=_free_port_on_every_address(6))
    try:
        yield servers
    finally:
        servers.close()


# --- the reconciler's world, with pods in the watch cache --------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """read_version_ready, counting its calls (each call reads every pod once)."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.calls = 0
        self.timeout = timeout

    def __call__(self, namespace: str, targets: Sequence[PodTarget]) -> dict[str, int] | None:
        self.calls += 1
        return read_version_ready(namespace, targets, timeout=self.timeout)


def pod_body(world: World, server: PodServer, name: str, restarts: int = 0) -> dict[str, Any]:
    """A pod of the Deployment's current template, ready, at the server's address."""
    template = world.deployment()["spec"]["template"]
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "labels": {LABEL_INSTANCE: NAME, **template["metadata"].get("labels", {})},
            "annotations": copy.deepcopy(template["metadata"].get("annotations", {})),
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{NAME}-7c9d", "controller": True}],
        },
        "spec": {"containers": copy.deepcopy(template["spec"]["containers"])},
        "status": {
            "podIP": server.ip,
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "server", "ready": True, "restartCount": restarts}],
        },
    }


class Setup:
    """A World whose MLModel has a canary at 10 % served at the pods' port, 2 replicas, the
    hook reading the world's cache with a fake clock."""

    def __init__(
        self, settings: OperatorSettings, pods: Pods, count: int = 2, timeout: float = 5.0
    ) -> None:
        body_spec = spec({"trafficPercent": 10})
        body_spec["server"] = {"port": pods.port}
        self.world = World(settings, body_spec)
        self.clock = Clock()
        self.read = Counting(timeout)
        self.hook = PodVersionReadiness(self.world.cache, read=self.read, clock=self.clock)
        self.world.reconciler.version_ready = self.hook
        self.servers = pods.start(count)
        self.world.reconcile()  # renders the candidate: the Deployment rolls

    def add_pods(self) -> None:
        for index, server in enumerate(self.servers):
            self.world.cache.store_pod(pod_body(self.world, server, f"{NAME}-7c9d-{index}"))

    def roll_out(self) -> None:
        self.add_pods()
        self.world.rolled_out()

    def mlmodel(self) -> MLModel:
        return MLModel.from_body(self.world.kube.mlmodel)

    def candidate_ready(self) -> dict[str, Any]:
        return self.world.conditions()["CandidateReady"]


# --- the reconcile -----------------------------------------------------------------------


def test_two_pods_that_loaded_both_versions_make_candidate_ready_loaded(
    settings: OperatorSettings, pods: Pods
) -> None:
    setup = Setup(settings, pods)
    setup.roll_out()
    assert setup.hook(setup.mlmodel()) == {"stable": 2, "candidate": 2}
    ready = setup.candidate_ready()
    assert (ready["status"], ready["reason"]) == ("True", "CandidateLoaded")
    assert ready["message"].startswith("All 2 pods loaded the candidate")
    status = setup.world.status()["candidate"]
    assert status["stable"]["readyReplicas"] == status["candidate"]["readyReplicas"] == 2
    for server in setup.servers:
        assert server.hits == ["/metrics"]  # the reconcile read each pod once; then cached


def test_a_pod_that_did_not_load_the_candidate_makes_it_not_loaded(
    settings: OperatorSettings, pods: Pods
) -> None:
    setup = Setup(settings, pods)
    setup.servers[1].body = NOT_LOADED
    setup.roll_out()
    assert setup.hook(setup.mlmodel()) == {"stable": 2, "candidate": 1}
    ready = setup.candidate_ready()
    assert (ready["status"], ready["reason"]) == ("False", "CandidateNotLoaded")
    assert ready["message"].startswith("1/2 pods loaded the candidate")
    assert setup.world.status()["candidate"]["candidate"]["readyReplicas"] == 1
    assert setup.world.status()["candidate"]["stable"]["readyReplicas"] == 2


@pytest.mark.parametrize("failure", ["500", "not text", "hangs"])
def test_an_unreadable_pod_leaves_the_deployment_derived_answer(
    settings: OperatorSettings, pods: Pods, failure: str
) -> None:
    setup = Setup(settings, pods, timeout=0.3)
    bad = setup.servers[1]
    if failure == "500":
        bad.status = 500
    elif failure == "not text":
        bad.body = "model_server_version_ready{role= garbage\n"
    else:
        bad.hang = pods.release
    setup.roll_out()
    assert setup.read.calls == 1
    assert setup.hook(setup.mlmodel()) is None  # kept: not read again within the window
    assert setup.read.calls == 1
    ready = setup.candidate_ready()
    assert (ready["status"], ready["reason"]) == ("True", "CandidateRolledOut")
    assert "derived from the Deployment" in ready["message"]


def test_pods_are_not_read_while_the_deployment_rolls(
    settings: OperatorSettings, pods: Pods
) -> None:
    setup = Setup(settings, pods)
    setup.add_pods()  # the pods are there, the Deployment has not finished
    setup.world.reconcile()
    assert setup.hook(setup.mlmodel()) is None
    assert pods.hits() == 0 and setup.read.calls == 0
    ready = setup.candidate_ready()
    assert (ready["status"], ready["reason"]) == ("False", "RollingOut")


def test_pods_the_cache_has_not_seen_ready_yet_are_not_counted_short(
    settings: OperatorSettings, pods: Pods
) -> None:
    setup = Setup(settings, pods)
    setup.world.cache.store_pod(pod_body(setup.world, setup.servers[0], f"{NAME}-7c9d-0"))
    setup.world.rolled_out()  # the Deployment says 2 ready; the cache lists 1
    assert setup.hook(setup.mlmodel()) is None
    assert pods.hits() == 0
    assert setup.candidate_ready()["reason"] == "CandidateRolledOut"


def test_a_template_without_this_candidate_is_not_read(
    settings: OperatorSettings, pods: Pods
) -> None:
    setup = Setup(settings, pods)
    setup.roll_out()
    calls = setup.read.calls
    mlmodel = setup.mlmodel()
    assert mlmodel.spec.candidate is not None
    other = mlmodel.model_copy(
        update={
            "spec": mlmodel.spec.model_copy(
                update={
                    "candidate": mlmodel.spec.candidate.model_copy(
                        update={
                            "model": mlmodel.spec.candidate.model.model_copy(
                                update={"uri": "https://cards.test/iris/v3"}
                            )
                        }
                    )
                }
            )
        }
    )
    assert setup.hook(other) is None
    without = mlmodel.model_copy(
        update={"spec": mlmodel.spec.model_copy(update={"candidate": None})}
    )
    assert setup.hook(without) is None
    assert setup.read.calls == calls


# --- the cache of answers ----------------------------------------------------------------


def test_an_answer_is_kept_while_the_pods_are_the_same_and_for_at_most_30_s(
    settings: OperatorSettings, pods: Pods
) -> None:
    setup = Setup(settings, pods)
    setup.roll_out()
    assert pods.hits() == 2
    mlmodel = setup.mlmodel()
    setup.clock.now += 29
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 2}
    setup.world.reconcile()
    assert pods.hits() == 2  # neither the call nor a reconcile read the pods again
    setup.servers[0].body = NOT_LOADED
    setup.clock.now += 1.5  # 30.5 s after the read
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 1}
    assert pods.hits() == 4


def test_a_changed_pod_set_is_read_again(settings: OperatorSettings, pods: Pods) -> None:
    setup = Setup(settings, pods, count=2)
    setup.roll_out()
    mlmodel = setup.mlmodel()
    assert pods.hits() == 2
    # a pod replaced: another name and address, same counts
    (newcomer,) = pods.start(1)
    newcomer.body = NOT_LOADED
    setup.world.cache.drop_pod(pod_body(setup.world, setup.servers[1], f"{NAME}-7c9d-1"))
    setup.world.cache.store_pod(pod_body(setup.world, newcomer, f"{NAME}-7c9d-2"))
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 1}
    assert [len(s.hits) for s in (*setup.servers, newcomer)] == [2, 1, 1]
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 1}
    assert pods.hits() == 4  # that answer is kept in turn
    # a container restarted in place: same pod, same address
    newcomer.body = LOADED
    restarted = pod_body(setup.world, newcomer, f"{NAME}-7c9d-2", restarts=1)
    setup.world.cache.store_pod(restarted)
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 2}
    assert pods.hits() == 6


def test_after_a_failed_read_a_changed_pod_set_is_not_read_until_the_backoff_ends(
    settings: OperatorSettings, pods: Pods
) -> None:
    setup = Setup(settings, pods, count=2)
    setup.servers[1].status = 500
    setup.roll_out()
    mlmodel = setup.mlmodel()
    assert setup.read.calls == 1 and setup.hook(mlmodel) is None
    # the user churns pods: a new name and address, then a restart in place
    (newcomer,) = pods.start(1)
    setup.world.cache.drop_pod(pod_body(setup.world, setup.servers[1], f"{NAME}-7c9d-1"))
    setup.world.cache.store_pod(pod_body(setup.world, newcomer, f"{NAME}-7c9d-2"))
    setup.clock.now += 10
    assert setup.hook(mlmodel) is None
    setup.world.cache.store_pod(pod_body(setup.world, newcomer, f"{NAME}-7c9d-2", restarts=1))
    setup.clock.now += 19
    assert setup.hook(mlmodel) is None
    setup.world.reconcile()
    assert setup.read.calls == 1 and newcomer.hits == []  # not read during the back-off
    setup.clock.now += 1  # 30 s after the failed read
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 2}
    assert setup.read.calls == 2


def test_while_another_read_of_the_namespace_runs_the_pods_are_not_read_nor_backed_off(
    settings: OperatorSettings, pods: Pods
) -> None:
    """One namespace's pod reads hold one reconcile worker at most (analysis_metrics.MetricReads):
    with its slot taken, the hook keeps the last answer for the same pods, or says nothing,
    without reading, and reads as soon as the slot is free."""
    setup = Setup(settings, pods, count=2)
    with setup.hook.reads.slot(NS):  # another MLModel of the namespace is being read
        setup.roll_out()  # its reconcile asks
        mlmodel = setup.mlmodel()
        assert setup.hook(mlmodel) is None
    assert setup.read.calls == 0 and pods.hits() == 0
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 2}  # no back-off: read now
    assert setup.read.calls == 1
    setup.clock.now += 31  # the answer is due again
    with setup.hook.reads.slot(NS):
        assert setup.hook(mlmodel) == {"stable": 2, "candidate": 2}  # the last one stands
    assert setup.read.calls == 1


def test_after_a_slow_read_a_changed_pod_set_is_not_read_until_the_backoff_ends(
    settings: OperatorSettings, pods: Pods
) -> None:
    """A good answer that took SLOW_READ_SECONDS or more per pod is used, and the pods (whichever
    they are next) are left alone for the back-off: slow pods held a reconcile worker every
    round."""
    setup = Setup(settings, pods, count=2)
    for server in setup.servers:  # slow per pod on average (two fast and one slow are not)
        server.delay = SLOW_READ_SECONDS + 0.1
    setup.roll_out()
    mlmodel = setup.mlmodel()
    assert setup.read.calls == 1 and setup.hook(mlmodel) == {"stable": 2, "candidate": 2}
    (newcomer,) = pods.start(1)
    setup.world.cache.drop_pod(pod_body(setup.world, setup.servers[1], f"{NAME}-7c9d-1"))
    setup.world.cache.store_pod(pod_body(setup.world, newcomer, f"{NAME}-7c9d-2"))
    setup.clock.now += 10
    assert setup.hook(mlmodel) is None  # not read again yet
    assert setup.read.calls == 1 and newcomer.hits == []
    setup.clock.now += 20
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 2}
    assert setup.read.calls == 2


def test_during_a_backoff_the_last_answer_for_the_same_pods_stands_however_old(
    settings: OperatorSettings, pods: Pods
) -> None:
    """The analysis' read failing backs the readiness read off too, often past the answer's
    30 s: CandidateReady would flip to True "derived from the Deployment" and back."""
    setup = Setup(settings, pods, count=2)
    setup.servers[1].body = NOT_LOADED
    setup.roll_out()
    mlmodel = setup.mlmodel()
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 1}
    setup.clock.now += 20
    setup.hook.backoff.failed(NS, NAME)  # as PodMetricsSource does after a failed pod read
    setup.clock.now += 15  # the answer is 35 s old; the back-off has 15 s to go
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 1}
    assert setup.read.calls == 1
    setup.clock.now += 15
    assert setup.hook(mlmodel) == {"stable": 2, "candidate": 1}
    assert setup.read.calls == 2  # read again once the back-off ended


def test_a_failed_analysis_read_backs_off_the_readiness_read_too(
    settings: OperatorSettings, pods: Pods
) -> None:
    setup = Setup(settings, pods, count=2)
    shared = Backoff(30.0, clock=setup.clock)
    setup.hook.backoff = shared
    shared.failed(NS, NAME)  # as PodMetricsSource does after a failed pod read
    setup.roll_out()
    assert setup.hook(setup.mlmodel()) is None and setup.read.calls == 0
    assert version_ready_from_cache(setup.world.cache).backoff is POD_BACKOFF


def test_answers_are_kept_per_mlmodel(settings: OperatorSettings, pods: Pods) -> None:
    setup = Setup(settings, pods)
    setup.roll_out()
    elsewhere = setup.mlmodel().model_copy(update={"namespace": "other"})
    assert setup.hook(elsewhere) is None  # its Deployment is not in the cache: not read
    assert setup.hook(setup.mlmodel()) == {"stable": 2, "candidate": 2}
    assert pods.hits() == 2


def test_the_hook_never_raises(settings: OperatorSettings, pods: Pods) -> None:
    setup = Setup(settings, pods)
    setup.roll_out()

    def broken(namespace: str, targets: Sequence[PodTarget]) -> dict[str, int] | None:
        raise RuntimeError("boom")

    hook = PodVersionReadiness(setup.world.cache, read=broken)
    assert hook(setup.mlmodel()) is None


# --- reading the pods --------------------------------------------------------------------


def test_the_gauge_decides_each_role() -> None:
    assert ready_roles(LOADED) == {"stable", "candidate"}
    assert ready_roles(NOT_LOADED) == {"stable"}
    assert ready_roles('model_server_requests_total{route="/predict"} 5\n') == set()
    with pytest.raises(ValueError):
        ready_roles("model_server_version_ready{role= garbage\n")
    # lines of other metrics never reach the parser
    assert ready_roles("garbage here\n" + LOADED) == {"stable", "candidate"}


def test_reading_pods_counts_them_per_role(pods: Pods) -> None:
    servers = pods.start(3)
    servers[2].body = NOT_LOADED
    targets = [PodTarget(f"p{i}", s.ip, pods.port) for i, s in enumerate(servers)]
    assert read_version_ready(NS, targets) == {"stable": 3, "candidate": 2}
    assert [s.hits for s in servers] == [["/metrics"]] * 3
    assert read_version_ready(NS, []) is None


def test_reading_a_link_local_pod_address_is_refused() -> None:
    assert read_version_ready(NS, [PodTarget("p", "169.254.169.254", 80)]) is None


def test_the_operator_wires_the_hook_to_its_cache(
    settings: OperatorSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "load_api_client", lambda timeout, retries=True: object())
    monkeypatch.setattr(main, "LeaderKube", lambda *args: object())  # no API server
    operator = main.Operator(settings.model_copy(update={"leader_election": False}))
    try:
        hook = operator.reconciler.version_ready
        assert isinstance(hook, PodVersionReadiness) and hook.cache is operator.cache
        assert isinstance(version_ready_from_cache(operator.cache), PodVersionReadiness)
    finally:
        operator.reader.close()
