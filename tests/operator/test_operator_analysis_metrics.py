"""Where the analysis reads metrics (mlmodel_operator.analysis_metrics): the pods' /metrics and
Prometheus, against real HTTP servers on loopback serving the model server's exposition text.

The tests marked `prometheus` run the project's Prometheus build (`make e2e-deps`): it scrapes
a loopback server serving fixed text (first all zeros, then fixed counts, labels namespace and
mlmodel from static_configs) and the source's PromQL must give exactly what the text implies.
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from devcluster import waiting
from mlmodel_operator import analysis_metrics
from mlmodel_operator.analysis import Measurement, Unmeasured
from mlmodel_operator.analysis_metrics import (
    MAX_BYTES,
    METRICS_ACCEPT,
    SLOW_READ_SECONDS,
    Backoff,
    MetricReads,
    PodMetricsSource,
    PodTarget,
    PrometheusSource,
    Scope,
    bucket_quantile,
    keep_lines,
    queries,
    scrape_targets,
    scrape_view,
    source_from_settings,
)
from mlmodel_operator.settings import OperatorSettings

BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SINCE = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


# --- the model server's exposition text --------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """What one pod counted, as the model server counts it (docs/rollouts.md)."""

    answered: int = 0  # candidate answers, ok
    failed: int = 0  # candidate answers that failed
    copies: int = 0  # candidate copies (shadow / agreement), ok
    stable: int = 0  # stable answers (not the candidate's)
    candidate_latencies: tuple[float, ...] = ()
    stable_latencies: tuple[float, ...] = ()
    compared: int = 0
    agreed: int = 0
    candidate_ready: int = 1


def exposition(pods: dict[str, Traffic], *, zero: bool = False) -> str:
    """The text a model server's /metrics serves; with more than one pod, each series has a
    `pod` label (one scrape target standing for several pods). `zero`: the same series, all 0."""
    registry = CollectorRegistry()
    extra = ["pod"] if len(pods) > 1 else []
    requests = Counter(
        "model_server_version_requests",
        "requests",
        ["version", "role", "kind", "outcome", *extra],
        registry=registry,
    )
    duration = Histogram(
        "model_server_version_duration_seconds",
        "duration",
        ["version", "role", *extra],
        buckets=BUCKETS,
        registry=registry,
    )
    compared = Counter("model_server_candidate_compared_rows", "c", extra, registry=registry)
    agreed = Counter("model_server_candidate_agreed_rows", "a", extra, registry=registry)
    ready = Gauge("model_server_version_ready", "r", ["version", "role", *extra], registry=registry)
    for pod, t in pods.items():
        p = [pod] if extra else []
        counts = [
            (requests.labels("2", "candidate", "answer", "ok", *p), t.answered),
            (requests.labels("2", "candidate", "answer", "error", *p), t.failed),
            (requests.labels("2", "candidate", "copy", "ok", *p), t.copies),
            (requests.labels("1", "stable", "answer", "ok", *p), t.stable),
            (compared.labels(*p) if p else compared, t.compared),
            (agreed.labels(*p) if p else agreed, t.agreed),
        ]
        for child, n in counts:
            if n and not zero:
                child.inc(n)
        for role, version, latencies in (
            ("candidate", "2", t.candidate_latencies),
            ("stable", "1", t.stable_latencies),
        ):
            child = duration.labels(version, role, *p)
            for seconds in () if zero else latencies:
                child.observe(seconds)
        ready.labels("1", "stable", *p).set(1)
        ready.labels("2", "candidate", *p).set(t.candidate_ready)
    text = generate_latest(registry).decode()
    # the server runs prometheus_client in multiprocess mode, which writes no _created samples
    return "".join(line + "\n" for line in text.splitlines() if "_created" not in line)


POD_A = Traffic(
    answered=30,
    failed=2,
    copies=8,
    stable=300,
    candidate_latencies=(0.003,) * 50,
    stable_latencies=(0.003,) * 100,
    compared=30,
    agreed=28,
)
POD_B = Traffic(
    answered=50,
    failed=5,
    copies=5,
    stable=250,
    candidate_latencies=(0.003,) * 48 + (0.02,) * 2,
    stable_latencies=(0.003,) * 100,
    compared=20,
    agreed=19,
)
# What the two pods' text implies: 100 candidate requests (both kinds), 7 errors; candidate
# latencies summed: 98 in (0.002, 0.005], 2 in (0.01, 0.025]: the 99th of 100 is halfway into
# the latter; stable: 200 in (0.002, 0.005], rank 198. (Each pod's own p99 is something else:
# 0.00497 and 0.02125; only the summed buckets give these.)
EXPECTED = Measurement(
    requests=100,
    errors=7,
    p99_candidate=0.01 + (0.025 - 0.01) * (1 / 2),
    p99_stable=0.002 + (0.005 - 0.002) * (198 / 200),
    compared=50,
    agreed=47,
    candidate_ready=True,
)


# --- loopback HTTP servers ---------------------------------------------------------------

Respond = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers.items())))
        self.server.respond(self)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    def __init__(self, respond: Respond) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond = respond
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a reader that gave up (as the tests want) resets the connection: not news


def answer(body: bytes | str, status: int = 200, ctype: str = METRICS_ACCEPT) -> Respond:
    data = body.encode() if isinstance(body, str) else body

    def respond(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return respond


@dataclass
class Loopback:
    """Starts loopback servers for one test and stops them (releasing any that hang)."""

    release: threading.Event = field(default_factory=threading.Event)
    servers: list[_Server] = field(default_factory=list)

    def serve(self, respond: Respond) -> _Server:
        server = _Server(respond)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return server

    def pod(self, respond: Respond, name: str = "iris-1") -> tuple[_Server, PodTarget]:
        server = self.serve(respond)
        return server, PodTarget(name, "127.0.0.1", server.port)

    def close(self) -> None:
        self.release.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    servers = Loopback()
    try:
        yield servers
    finally:
        servers.close()


def scope(*pods: PodTarget) -> Scope:
    return Scope("ns-a", "iris", tuple(pods))


# --- the pods' /metrics ------------------------------------------------------------------


def test_pod_counters_are_summed_and_p99_taken_from_the_summed_buckets(
    loopback: Loopback,
) -> None:
    server_a, pod_a = loopback.pod(answer(exposition({"a": POD_A})), "iris-a")
    server_b, pod_b = loopback.pod(answer(exposition({"b": POD_B})), "iris-b")
    measured = PodMetricsSource().measure(scope(pod_a, pod_b), SINCE)
    assert measured == EXPECTED
    for server in (server_a, server_b):
        ((path, headers),) = server.seen
        assert path == "/metrics"
        assert headers["Accept"] == METRICS_ACCEPT


def test_a_pod_whose_candidate_did_not_load_says_so(loopback: Loopback) -> None:
    _, pod_a = loopback.pod(answer(exposition({"a": POD_A})), "iris-a")
    not_loaded = Traffic(candidate_ready=0, stable=10, stable_latencies=(0.003,))
    _, pod_b = loopback.pod(answer(exposition({"b": not_loaded})), "iris-b")
    measured = PodMetricsSource().measure(scope(pod_a, pod_b), SINCE)
    assert isinstance(measured, Measurement) and measured.candidate_ready is False
    assert measured.requests == 40


def test_a_server_without_candidate_metrics_measures_nothing(loopback: Loopback) -> None:
    _, pod = loopback.pod(answer('model_server_requests_total{route="/predict"} 5\n'))
    assert PodMetricsSource().measure(scope(pod), SINCE) == Measurement(0, 0, None, None, 0, 0)


def test_no_pods_to_scrape_is_unmeasured() -> None:
    measured = PodMetricsSource().measure(scope(), SINCE)
    assert measured == Unmeasured("no ready pod of the current pod template to read metrics from")


def test_a_body_over_the_cap_is_refused(loopback: Loopback) -> None:
    assert MAX_BYTES == 256 << 10  # a pod's /metrics, which its user controls
    text = exposition({"a": POD_A})
    big = text + "# padding\n" * ((MAX_BYTES - len(text)) // 10 + 1)
    assert len(big) > MAX_BYTES
    _, pod = loopback.pod(answer(big))
    assert PodMetricsSource().measure(scope(pod), SINCE) == Unmeasured(
        "the metrics of pod iris-1 could not be read"
    )
    # the same series under the cap are measured
    _, fits = loopback.pod(answer(text + "# padding\n" * 100), "iris-2")
    assert PodMetricsSource().measure(scope(fits), SINCE) == PodMetricsSource().measure(
        scope(loopback.pod(answer(text), "iris-3")[1]), SINCE
    )


def other_series(count: int) -> str:
    return "".join(f'other_metric_total{{shard="{i}"}} {i}\n' for i in range(count))


def test_only_the_lines_of_the_measured_metrics_reach_the_parser(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = exposition({"a": POD_A})
    wanted = [line for line in keep_lines(text, analysis_metrics.MEASURED_NAMES).splitlines()]
    assert wanted and all(not line.startswith("#") for line in wanted)
    body = other_series(100_000) + text + other_series(10)
    parsed: list[str] = []
    parse = analysis_metrics.text_string_to_metric_families

    def spy(given: str) -> Any:
        parsed.append(given)
        return parse(given)

    monkeypatch.setattr(analysis_metrics, "text_string_to_metric_families", spy)
    _, pod = loopback.pod(answer(body))
    measured = PodMetricsSource(max_bytes=16 << 20).measure(scope(pod), SINCE)
    assert measured == PodMetricsSource().measure(scope(loopback.pod(answer(text))[1]), SINCE)
    assert parsed[0].splitlines() == wanted  # none of the 100,010 other series
    assert "other_metric" not in parsed[0]


def test_keep_lines_matches_whole_names_only() -> None:
    text = (
        "# TYPE model_server_version_ready gauge\n"
        'model_server_version_ready{role="candidate"} 1\n'
        "model_server_version_ready 1\n"
        'model_server_version_ready_extra{role="candidate"} 0\n'
        'other{role="candidate"} 0\n'
    )
    assert keep_lines(text, ["model_server_version_ready"]) == (
        'model_server_version_ready{role="candidate"} 1\nmodel_server_version_ready 1\n'
    )


class Ticks:
    """A clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_after_a_failed_pod_read_the_models_pods_are_not_read_for_the_backoff(
    loopback: Loopback,
) -> None:
    ticks = Ticks()
    source = PodMetricsSource(backoff=Backoff(30.0, clock=ticks))
    bad, pod = loopback.pod(answer("oops", status=500), "iris-1")
    assert isinstance(source.measure(scope(pod), SINCE), Unmeasured)
    assert len(bad.seen) == 1
    # new pods (a user churning them): still not read during the back-off
    good, new_pod = loopback.pod(answer(exposition({"a": POD_A})), "iris-2")
    ticks.now += 29
    waiting = source.measure(scope(new_pod), SINCE)
    assert isinstance(waiting, Unmeasured) and "at most every 30 s" in waiting.reason
    assert good.seen == [] and len(bad.seen) == 1
    # another MLModel is not held back
    assert isinstance(source.measure(Scope("ns-a", "other", (new_pod,)), SINCE), Measurement)
    ticks.now += 1
    assert source.measure(scope(new_pod), SINCE) == source.measure(
        Scope("ns-a", "other", (new_pod,)), SINCE
    )


def test_an_unparsable_body_backs_off_too(loopback: Loopback) -> None:
    ticks = Ticks()
    source = PodMetricsSource(backoff=Backoff(30.0, clock=ticks))
    server, pod = loopback.pod(answer("model_server_version_ready{role= 1\n"))
    assert isinstance(source.measure(scope(pod), SINCE), Unmeasured)
    assert isinstance(source.measure(scope(pod), SINCE), Unmeasured)
    assert len(server.seen) == 1


def test_a_slow_but_good_pod_read_backs_off_too(loopback: Loopback) -> None:
    """Pods that answer just inside the timeout held a reconcile worker every round (a few such
    MLModels starved every other namespace's reconciles): used once, then the back-off."""
    ticks = Ticks()
    source = PodMetricsSource(backoff=Backoff(30.0, clock=ticks))
    good = answer(exposition({"a": POD_A}))

    def slow(h: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(SLOW_READ_SECONDS + 0.2)
        good(h)

    server, pod = loopback.pod(slow)
    assert isinstance(source.measure(scope(pod), SINCE), Measurement)  # the answer is used
    waiting = source.measure(scope(pod), SINCE)
    assert isinstance(waiting, Unmeasured) and "took over 1 s" in waiting.reason
    assert len(server.seen) == 1
    ticks.now += 30
    assert isinstance(source.measure(scope(pod), SINCE), Measurement)


def test_many_fast_pods_are_not_a_slow_read(loopback: Loopback) -> None:
    """The threshold is per pod: twelve pods at 0.1 s each are read again the next round."""
    good = answer(exposition({"a": POD_A}))

    def brisk(h: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(0.1)
        good(h)

    source = PodMetricsSource(backoff=Backoff(30.0, clock=Ticks()))
    many = scope(*[loopback.pod(brisk, f"iris-{i}")[1] for i in range(12)])
    assert isinstance(source.measure(many, SINCE), Measurement)
    assert isinstance(source.measure(many, SINCE), Measurement)


def test_pods_each_just_under_the_threshold_are_slow_once_they_take_half_the_budget(
    loopback: Loopback,
) -> None:
    """Per pod on average alone, the budget (which cuts a read short) kept five or more pods
    at 0.9 s each from ever being slow: each read held a worker for 4.5 s of every 5 s."""
    good = answer(exposition({"a": POD_A}))

    def sluggish(h: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(0.3)  # under SLOW_READ_SECONDS: never slow by the per-pod average
        good(h)

    ticks = Ticks()
    source = PodMetricsSource(budget=2.0, backoff=Backoff(30.0, clock=ticks))
    four = scope(*[loopback.pod(sluggish, f"iris-{i}")[1] for i in range(4)])
    assert isinstance(source.measure(four, SINCE), Measurement)  # 1.2 s: over 2.0 / 2
    waiting = source.measure(four, SINCE)
    assert isinstance(waiting, Unmeasured) and "took over 1 s" in waiting.reason


def test_a_body_over_the_cap_without_a_length_is_refused_while_reading(
    loopback: Loopback,
) -> None:
    def endless(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        chunk = b"# padding padding padding\n" * 4096
        try:
            while not loopback.release.is_set():
                h.wfile.write(chunk)
        except OSError:
            pass  # the reader gave up, as it should

    _, pod = loopback.pod(endless)
    measured = PodMetricsSource(max_bytes=1 << 20).measure(scope(pod), SINCE)
    assert measured == Unmeasured("the metrics of pod iris-1 could not be read")


@pytest.mark.parametrize("when", ["before the headers", "after the headers", "mid-body"])
def test_a_pod_that_hangs_is_given_up_on(loopback: Loopback, when: str) -> None:
    def hang(h: http.server.BaseHTTPRequestHandler) -> None:
        if when != "before the headers":
            h.send_response(200)
            h.send_header("Content-Length", "100000")
            h.end_headers()
        if when == "mid-body":
            h.wfile.write(b"# a start\n")
            h.wfile.flush()
        loopback.release.wait()

    _, pod = loopback.pod(hang)
    measured = PodMetricsSource(timeout=0.5).measure(scope(pod), SINCE)
    assert measured == Unmeasured("the metrics of pod iris-1 could not be read")


def test_metric_reads_hold_one_slot_per_namespace_and_a_few_in_all() -> None:
    reads = MetricReads(slots=2)
    with reads.slot("ns-a") as first, reads.slot("ns-a") as same_namespace:
        with reads.slot("ns-b") as other, reads.slot("ns-c") as over:
            assert (first, same_namespace, other, over) == (True, False, True, False)
        with reads.slot("ns-c") as freed:
            assert freed
    with reads.slot("ns-a") as again:
        assert again


def test_a_namespace_whose_pods_hang_holds_one_reconcile_worker_not_all(
    loopback: Loopback,
) -> None:
    """A worker reads a model whose pod hangs: the next models of that namespace are not read
    (their workers go on at once, and nothing is held against their pods), another namespace's
    are read."""
    reads = MetricReads(slots=2)
    source = PodMetricsSource(reads=reads, backoff=Backoff(30.0, clock=Ticks()))
    hanging = threading.Event()

    def hang(h: http.server.BaseHTTPRequestHandler) -> None:
        hanging.set()
        loopback.release.wait()

    _, stuck = loopback.pod(hang, "slow-1")
    good, pod = loopback.pod(answer(exposition({"a": POD_A})), "iris-1")
    expected = source.measure(Scope("ns-z", "first", (pod,)), SINCE)
    assert isinstance(expected, Measurement) and expected.requests > 0
    worker = threading.Thread(
        target=source.measure, args=(Scope("ns-a", "slow", (stuck,)), SINCE), daemon=True
    )
    worker.start()
    assert hanging.wait(5)
    refused = source.measure(Scope("ns-a", "iris", (pod,)), SINCE)
    assert refused == Unmeasured(
        "the operator is reading other models' metrics (at most 2 at once, one per namespace); "
        "read again on a later round"
    )
    assert len(good.seen) == 1  # only the first read
    assert source.measure(Scope("ns-b", "iris", (pod,)), SINCE) == expected
    loopback.release.set()
    worker.join(5)
    # not held against the refused model: read as soon as the slot is free
    assert source.measure(Scope("ns-a", "iris", (pod,)), SINCE) == expected


def test_a_pod_that_trickles_is_given_up_on_at_the_deadline(loopback: Loopback) -> None:
    def trickle(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        try:
            while not loopback.release.wait(0.05):
                h.wfile.write(b"#")
                h.wfile.flush()
        except OSError:
            pass

    _, pod = loopback.pod(trickle)
    measured = PodMetricsSource(timeout=0.5).measure(scope(pod), SINCE)
    assert measured == Unmeasured("the metrics of pod iris-1 could not be read")


def test_a_redirect_is_not_followed(loopback: Loopback) -> None:
    elsewhere = loopback.serve(answer(exposition({"a": POD_A})))

    def redirect(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", f"http://127.0.0.1:{elsewhere.port}/metrics")
        h.send_header("Content-Length", "0")
        h.end_headers()

    _, pod = loopback.pod(redirect)
    measured = PodMetricsSource().measure(scope(pod), SINCE)
    assert measured == Unmeasured("the metrics of pod iris-1 could not be read")
    assert elsewhere.seen == []


@pytest.mark.parametrize(
    ("respond", "reason"),
    [
        (answer("oops", status=500), "could not be read"),
        (answer(b"\xff\xfe not utf-8"), "are not Prometheus text"),
        (answer("model_server_candidate_compared_rows_total garbage\n"), "are not Prometheus text"),
        (
            answer('model_server_version_requests_total{role="candidate" 1\n'),
            "are not Prometheus text",
        ),
        (  # a bucket without its bound
            answer('model_server_version_duration_seconds_bucket{role="stable"} 3\n'),
            "are not Prometheus text",
        ),
    ],
)
def test_a_bad_answer_is_unmeasured(loopback: Loopback, respond: Respond, reason: str) -> None:
    _, pod = loopback.pod(respond)
    measured = PodMetricsSource().measure(scope(pod), SINCE)
    assert isinstance(measured, Unmeasured) and measured.reason.endswith(reason)


def test_one_bad_pod_makes_the_whole_measurement_unmeasured(loopback: Loopback) -> None:
    _, good = loopback.pod(answer(exposition({"a": POD_A})), "iris-a")
    _, bad = loopback.pod(answer("", status=503), "iris-b")
    measured = PodMetricsSource().measure(scope(good, bad), SINCE)
    assert measured == Unmeasured("the metrics of pod iris-b could not be read")


def test_a_link_local_pod_address_is_never_fetched() -> None:
    pod = PodTarget("iris-1", "169.254.169.254", 80)
    measured = PodMetricsSource().measure(scope(pod), SINCE)
    assert measured == Unmeasured("the metrics of pod iris-1 could not be read")


@pytest.mark.parametrize(("ip", "port"), [("iris.example.com", 8080), ("10.0.0.1", 0)])
def test_a_pod_target_is_an_ip_literal_and_a_port(ip: str, port: int) -> None:
    with pytest.raises(ValueError):
        PodTarget("iris-1", ip, port)


# --- which pods -------------------------------------------------------------------------

ENV = [{"name": "MODEL_SERVER_CANDIDATE_PERCENT", "value": "25"}]
DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "iris", "namespace": "ns-a"},
    "spec": {
        "template": {
            "metadata": {"annotations": {"mlops.dev/model-digest": "d1"}},
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "env": ENV,
                        "ports": [
                            {"name": "http", "containerPort": 8080},
                            {"name": "grpc", "containerPort": 8081},
                        ],
                    }
                ]
            },
        }
    },
}


def pod(name: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "annotations": {"mlops.dev/model-digest": "d1", "other": "x"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "iris-5d9f", "controller": True}],
        },
        "spec": {"containers": [{"name": "server", "env": ENV}]},
        "status": {
            "podIP": f"10.1.0.{len(name)}",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = body
        for key in parents:
            target = target[key]
        target[leaf] = value
    return body


def test_scrape_targets_are_the_ready_pods_of_the_current_template() -> None:
    pods = [
        pod("iris-b"),
        pod("iris-a"),
        pod("old-env", spec__containers=[{"name": "server", "env": [{"name": "X", "value": "1"}]}]),
        pod("old-digest", metadata__annotations={"mlops.dev/model-digest": "d0"}),
        pod("unready", status__conditions=[{"type": "Ready", "status": "False"}]),
        pod("leaving", metadata__deletionTimestamp="2026-03-01T12:00:00Z"),
        pod("host-net", spec__hostNetwork=True),
        pod("no-ip", status__podIP=""),
        pod("bad-ip", status__podIP="node-1"),
        pod("not-owned", metadata__ownerReferences=[]),
        pod(
            "other-rs",
            metadata__ownerReferences=[{"kind": "ReplicaSet", "name": "web-1", "controller": True}],
        ),
    ]
    targets = scrape_targets(DEPLOYMENT, pods)
    assert targets == (PodTarget("iris-a", "10.1.0.6", 8080), PodTarget("iris-b", "10.1.0.6", 8080))


def test_the_scrape_view_of_a_pod_keeps_what_scrape_targets_reads() -> None:
    full = pod("iris-a")
    full["metadata"] |= {"labels": {"app": "x"}, "uid": "u", "managedFields": [{"m": 1}]}
    full["spec"]["containers"][0] |= {"image": "mlmodel-server:dev", "resources": {}}
    full["spec"] |= {"volumes": [{"name": "tmp"}], "nodeName": "node-1"}
    full["status"] |= {"containerStatuses": [], "hostIP": "10.0.0.1"}
    view = scrape_view(full)
    assert view == {
        "metadata": {
            "name": "iris-a",
            "annotations": full["metadata"]["annotations"],
            "ownerReferences": full["metadata"]["ownerReferences"],
        },
        "spec": {"containers": [{"name": "server", "env": ENV}]},
        "status": {"podIP": "10.1.0.6", "conditions": full["status"]["conditions"]},
    }
    others = [
        pod("host-net", spec__hostNetwork=True),
        pod("leaving", metadata__deletionTimestamp="2026-03-01T12:00:00Z"),
        pod("unready", status__conditions=[{"type": "Ready", "status": "False"}]),
    ]
    pods = [full, *others]
    assert scrape_targets(DEPLOYMENT, [scrape_view(p) for p in pods]) == scrape_targets(
        DEPLOYMENT, pods
    )
    assert scrape_view(others[0])["spec"]["hostNetwork"] is True


def test_no_http_port_no_targets() -> None:
    deployment = json.loads(json.dumps(DEPLOYMENT))
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"] = []
    assert scrape_targets(deployment, [pod("iris-a")]) == ()


# --- histogram_quantile ------------------------------------------------------------------


def test_bucket_quantile_is_prometheus_histogram_quantile() -> None:
    inf = float("inf")
    assert bucket_quantile(0.99, {0.005: 98, 0.01: 98, 0.025: 100, inf: 100}) == (
        0.01 + (0.025 - 0.01) * (1 / 2)
    )
    assert bucket_quantile(0.5, {1.0: 10, 2.0: 20, inf: 20}) == 1.0  # the first bucket from 0
    assert bucket_quantile(0.99, {1.0: 1, 2.0: 2, inf: 100}) == 2.0  # in +Inf: highest bound
    assert bucket_quantile(0.5, {1.0: 6, 2.0: 4, inf: 10}) == pytest.approx(5 / 6)  # monotonic
    assert bucket_quantile(0.99, {1.0: 0, inf: 0}) is None  # no observations
    assert bucket_quantile(0.99, {1.0: 5, 2.0: 5}) is None  # no +Inf bucket
    assert bucket_quantile(0.99, {inf: 5}) is None  # one bucket
    assert bucket_quantile(0.99, {}) is None


# --- Prometheus: the queries and the HTTP, against a fake -------------------------------


def fake_prometheus(values: dict[str, str | None]) -> Respond:
    """Answers each of the source's queries with values[what it measures] (None: no series)."""
    by_query = {promql: name for name, promql in queries(scope(), "W").items()}

    def respond(h: http.server.BaseHTTPRequestHandler) -> None:
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        value = values[by_query[re.sub(r"\[[0-9]+ms\]", "[W]", params["query"][0])]]
        result = [] if value is None else [{"metric": {}, "value": [1.0, value]}]
        doc = {"status": "success", "data": {"resultType": "vector", "result": result}}
        answer(json.dumps(doc), ctype="application/json")(h)

    return respond


def test_the_promql() -> None:
    assert queries(scope(), "60000ms") == {
        "requests": 'sum(increase(model_server_version_requests_total{namespace="ns-a",'
        'mlmodel="iris",role="candidate"}[60000ms]))',
        "errors": 'sum(increase(model_server_version_requests_total{namespace="ns-a",'
        'mlmodel="iris",role="candidate",outcome="error"}[60000ms]))',
        "p99_candidate": "histogram_quantile(0.99, sum by (le) (increase("
        'model_server_version_duration_seconds_bucket{namespace="ns-a",mlmodel="iris",'
        'role="candidate"}[60000ms])))',
        "p99_stable": "histogram_quantile(0.99, sum by (le) (increase("
        'model_server_version_duration_seconds_bucket{namespace="ns-a",mlmodel="iris",'
        'role="stable"}[60000ms])))',
        "compared": 'sum(increase(model_server_candidate_compared_rows_total{namespace="ns-a",'
        'mlmodel="iris"}[60000ms]))',
        "agreed": 'sum(increase(model_server_candidate_agreed_rows_total{namespace="ns-a",'
        'mlmodel="iris"}[60000ms]))',
        "candidate_ready": 'min(model_server_version_ready{namespace="ns-a",mlmodel="iris",'
        'role="candidate"})',
    }
    quoted = Scope('we"ird', "a\\b")
    assert 'namespace="we\\"ird",mlmodel="a\\\\b"' in queries(quoted, "1s")["requests"]


def test_prometheus_results_become_a_measurement(loopback: Loopback) -> None:
    values = {
        "requests": "100.4",  # increase() extrapolates: counts are rounded
        "errors": "7",
        "p99_candidate": "0.0175",
        "p99_stable": "NaN",  # no stable observations
        "compared": "50",
        "agreed": "50.6",  # never more than compared
        "candidate_ready": "1",
    }
    server = loopback.serve(fake_prometheus(values))
    now = SINCE.timestamp() + 60
    source = PrometheusSource(f"http://127.0.0.1:{server.port}/", clock=lambda: now)
    assert source.measure(scope(), SINCE) == Measurement(100, 7, 0.0175, None, 50, 50, True)
    assert len(server.seen) == 7
    for path, headers in server.seen:
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        assert urllib.parse.urlsplit(path).path == "/api/v1/query"
        assert params["time"] == [f"{now:.3f}"]
        assert headers["Accept"] == "application/json"


def test_no_series_means_no_traffic(loopback: Loopback) -> None:
    server = loopback.serve(fake_prometheus(dict.fromkeys(queries(scope(), "1s"))))
    source = PrometheusSource(f"http://127.0.0.1:{server.port}", clock=lambda: SINCE.timestamp())
    assert source.measure(scope(), SINCE) == Measurement(0, 0, None, None, 0, 0, None)


def test_the_window_is_the_time_since_the_step_started_and_at_least_a_scrape_interval(
    loopback: Loopback,
) -> None:
    windows = []

    def record(h: http.server.BaseHTTPRequestHandler) -> None:
        promql = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)["query"][0]
        windows.append(promql.partition("[")[2].partition("]")[0])
        doc = {"status": "success", "data": {"resultType": "vector", "result": []}}
        answer(json.dumps(doc))(h)

    server = loopback.serve(record)
    url = f"http://127.0.0.1:{server.port}/prom"
    PrometheusSource(url, clock=lambda: SINCE.timestamp() + 90.5).measure(scope(), SINCE)
    PrometheusSource(url, clock=lambda: SINCE.timestamp() + 2).measure(scope(), SINCE)
    assert windows[:6] == ["90500ms"] * 6 and windows[7:13] == ["15000ms"] * 6
    assert {path.partition("?")[0] for path, _ in server.seen} == {"/prom/api/v1/query"}


@pytest.mark.parametrize(
    "respond",
    [
        answer("no", status=503),
        answer("not json", ctype="application/json"),
        answer(json.dumps({"status": "error", "error": "bad"})),
        answer(json.dumps({"status": "success", "data": {"resultType": "matrix", "result": []}})),
        answer(
            json.dumps(
                {
                    "status": "success",
                    "data": {"resultType": "vector", "result": [{"value": [1, "1"]}] * 2},
                }
            )
        ),
        answer(b"{" + b" " * (5 << 20) + b"}", ctype="application/json"),  # over the cap
    ],
)
def test_a_bad_prometheus_answer_is_unmeasured(loopback: Loopback, respond: Respond) -> None:
    server = loopback.serve(respond)
    source = PrometheusSource(f"http://127.0.0.1:{server.port}")
    assert source.measure(scope(), SINCE) == Unmeasured(
        "Prometheus (MLOP_PROMETHEUS_URL) could not be queried"
    )
    assert len(server.seen) == 1  # the first failure ends the measurement
    # and backs off: no query for this MLModel for a while
    assert isinstance(source.measure(scope(), SINCE), Unmeasured)
    assert len(server.seen) == 1


def test_a_slow_but_good_prometheus_answer_is_used_and_backs_off(loopback: Loopback) -> None:
    """Seven queries that took half the budget: the measurement stands, and this MLModel is
    not measured again for the back-off (a tenant's series can make its queries slow)."""
    good = fake_prometheus(dict.fromkeys(queries(scope(), "1s")))

    def slow(h: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(0.08)
        good(h)

    server = loopback.serve(slow)
    source = PrometheusSource(f"http://127.0.0.1:{server.port}", budget=1.0)
    assert source.measure(scope(), SINCE) == Measurement(0, 0, None, None, 0, 0, None)
    waiting = source.measure(scope(), SINCE)
    assert isinstance(waiting, Unmeasured) and "answered slowly" in waiting.reason
    assert len(server.seen) == 7


def test_prometheus_is_not_queried_while_the_namespace_s_metric_read_runs(
    loopback: Loopback,
) -> None:
    server = loopback.serve(fake_prometheus(dict.fromkeys(queries(scope(), "1s"))))
    reads = MetricReads(slots=2)
    source = PrometheusSource(f"http://127.0.0.1:{server.port}", reads=reads)
    with reads.slot("ns-a"):
        refused = source.measure(scope(), SINCE)
    assert isinstance(refused, Unmeasured) and "reading other models' metrics" in refused.reason
    assert server.seen == []
    assert source.measure(scope(), SINCE) == Measurement(0, 0, None, None, 0, 0, None)


def test_a_hanging_prometheus_is_given_up_on(loopback: Loopback) -> None:
    server = loopback.serve(lambda h: loopback.release.wait() and None)
    source = PrometheusSource(f"http://127.0.0.1:{server.port}", timeout=0.5)
    assert isinstance(source.measure(scope(), SINCE), Unmeasured)


def test_prometheus_redirects_are_not_followed(loopback: Loopback) -> None:
    elsewhere = loopback.serve(fake_prometheus(dict.fromkeys(queries(scope(), "1s"))))

    def redirect(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(307)
        h.send_header("Location", f"http://127.0.0.1:{elsewhere.port}{h.path}")
        h.send_header("Content-Length", "0")
        h.end_headers()

    server = loopback.serve(redirect)
    assert isinstance(
        PrometheusSource(f"http://127.0.0.1:{server.port}").measure(scope(), SINCE), Unmeasured
    )
    assert elsewhere.seen == []


def test_the_source_follows_the_setting() -> None:
    assert isinstance(source_from_settings(OperatorSettings(prometheus_url="")), PodMetricsSource)
    source = source_from_settings(OperatorSettings(prometheus_url="http://prom.monitoring:9090"))
    assert isinstance(source, PrometheusSource)
    assert str(source.url) == "http://prom.monitoring:9090/"


# --- Prometheus: the real one ------------------------------------------------------------


def prometheus_binary() -> str:
    """Prometheus from the project's build (`make e2e-deps`); required for these tests."""
    from devcluster.stack import prometheus as build

    path = build.binary()
    assert path.exists(), f"Prometheus is not built ({path}): run `make e2e-deps`"
    return str(path)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for(what: str, check: Callable[[], bool], seconds: float = 120) -> None:
    """Poll until check() holds; fail (naming what) if it does not within `seconds`."""
    waiting.wait_until(what, check, seconds, 0.2)


class Toggle:
    """Serves the all-zero text at the first scrape, then `text` at every later one."""

    def __init__(self, zero: str, text: str) -> None:
        self.zero, self.text, self.served = zero, text, 0

    def __call__(self, h: http.server.BaseHTTPRequestHandler) -> None:
        body = self.zero if self.served == 0 else self.text
        self.served += 1
        answer(body)(h)


@pytest.fixture
def prometheus(tmp_path: Path, loopback: Loopback) -> Iterator[str]:
    """A real Prometheus scraping, every second: the model `ns-a/iris` (two pods' series in
    one target) and two decoys with other labels and far more traffic."""
    pods = {"a": POD_A, "b": POD_B}
    decoy = {"x": Traffic(answered=1000, failed=900, compared=1000, agreed=1)}
    targets = []
    for namespace, mlmodel, traffic in (
        ("ns-a", "iris", pods),
        ("ns-b", "iris", decoy),
        ("ns-a", "other", decoy),
    ):
        server = loopback.serve(Toggle(exposition(traffic, zero=True), exposition(traffic)))
        targets.append(
            {
                "targets": [f"127.0.0.1:{server.port}"],
                "labels": {"namespace": namespace, "mlmodel": mlmodel},
            }
        )
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "models", "static_configs": targets}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with socket_port() as port, (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [
                prometheus_binary(),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def ready() -> bool:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                try:
                    with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                        return bool(response.status == 200)
                except OSError:
                    return False

            wait_for("Prometheus to be ready", ready)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


class socket_port:
    """A free loopback port (a context manager, for symmetry with the process it serves)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        pass


def samples(url: str, series: str) -> list[tuple[float, float]]:
    """The raw samples Prometheus holds of one series (timestamp, value)."""
    query = urllib.parse.urlencode({"query": f"{series}[10m]"})
    result = get_json(f"{url}/api/v1/query?{query}")["data"]["result"]
    assert len(result) <= 1, result
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []


@pytest.mark.prometheus
def test_prometheus_source_measures_what_the_scraped_text_implies(prometheus: str) -> None:
    series = 'model_server_candidate_compared_rows_total{namespace="ns-a",mlmodel="iris",pod="a"}'
    # the first scrape saw zeros and at least two more saw the counts
    wait_for("three scrapes of ns-a/iris", lambda: len(samples(prometheus, series)) >= 3)
    seen = samples(prometheus, series)
    first, last = seen[0][0], seen[-1][0]
    assert seen[0][1] == 0 and seen[-1][1] == POD_A.compared
    # Measured exactly at the last scrape, over a window opening just before the first: the
    # counters rose from 0 inside the window and nothing is extrapolated past its ends, so
    # increase() is exactly the scraped counts.
    source = PrometheusSource(prometheus, clock=lambda: last, min_window=1)
    since = datetime.fromtimestamp(first - 0.5, UTC)
    measured = source.measure(Scope("ns-a", "iris"), since)
    assert measured == EXPECTED


@pytest.mark.prometheus
def test_prometheus_source_without_series_for_the_model_measures_no_traffic(
    prometheus: str,
) -> None:
    series = 'model_server_candidate_compared_rows_total{namespace="ns-b",mlmodel="iris"}'
    wait_for("two scrapes of ns-b/iris", lambda: len(samples(prometheus, series)) >= 2)
    source = PrometheusSource(prometheus, min_window=60)
    measured = source.measure(Scope("ns-c", "iris"), datetime.now(UTC))
    assert measured == Measurement(0, 0, None, None, 0, 0, None)


def test_counters_beyond_belief_are_measured_as_nothing(loopback: Loopback) -> None:
    """A user's pod can claim 1e30 requests: as a count, it overflowed the status's int64 and
    every status patch of the MLModel was refused from then on."""
    huge = exposition({"a": Traffic(answered=10**30, compared=30, agreed=30)})
    _, pod = loopback.pod(answer(huge))
    measured = PodMetricsSource().measure(scope(pod), SINCE)
    assert isinstance(measured, Unmeasured), measured
    assert "implausible" in measured.reason
