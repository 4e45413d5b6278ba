"""e2e on the real node: candidate rollouts (issue 17, docs/rollouts.md).

- canary at 10 %: of 2,000 requests the candidate answers 10 % +- 2 %; sticky header values
  never switch version;
- shadow: every answer is the stable version's, and the agreement the real Prometheus computes
  from the pods' counters equals the agreement of both models' predictions on the rows sent;
- automatic: a good candidate walks every step to Succeeded; a candidate that errors (it takes
  three features, the clients send four) and one that disagrees beyond minAgreement are backed
  out to 0 % and Failed naming the bound; no client request fails in any of these runs.

The operator reads the analysis metrics from a real Prometheus (MLOP_PROMETHEUS_URL) that runs on
the host and listens on the node's address, which the operator pod reaches like the API server.
"""

from __future__ import annotations

import csv
import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from devcluster.kube import hostnet
from devcluster.stack import mlstack

from .e2e_prometheus import prometheus, query, scrape_config
from .e2e_testlib import ROW, SECRET, Artifact, ConditionLog, Stack, free_port, paced, publish

pytestmark = pytest.mark.node

MODEL = "iris"
STABLE_VERSION = "1"  # MODEL_SERVER_MODEL_VERSION's default
CANDIDATE_VERSION = "candidate"  # MODEL_SERVER_CANDIDATE_VERSION's default
STICKY = "X-User-Id"
INTERVAL = "10s"  # the shortest analysis interval the CRD allows
SHADOW_PER_SECOND = 50  # the shadow test's light load (300 requests in 6 s)
INTERVAL_SECONDS = 10


@dataclass(frozen=True)
class Candidates:
    """Artifacts published for this module besides the stack's v1 (stable) and v2."""

    stump: Artifact  # a depth-1 tree: disagrees with v1 on about a third of the rows
    narrow: Artifact  # trained on three of iris' four features: every request errors on it


@pytest.fixture(scope="module")
def candidates(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Candidates:
    """Publish the stump and the three-feature model to the stack's store."""
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True).frame
    path = tmp_path_factory.mktemp("narrow") / "iris3.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["sepal_length", "sepal_width", "petal_length", "species"])
        for row in data.itertuples(index=False):
            writer.writerow([row[0], row[1], row[2], int(row[4])])
    with pytest.MonkeyPatch.context() as env:
        for key in mlstack.PROXY_VARS:
            env.delenv(key, raising=False)
        for key, value in mlstack.store_env(stack.store).items():
            env.setenv(key, value)
        stump = publish(
            "e2e/iris/stump", estimator="decision_tree", params={"max_depth": 1}, name=MODEL
        )
        narrow = publish("e2e/iris/narrow", csv=path, target="species", name=MODEL)
    return Candidates(stump=stump, narrow=narrow)


@pytest.fixture(scope="module")
def prom(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus on the node's address scraping every model pod; the operator is
    pointed at it (MLOP_PROMETHEUS_URL) for the module."""
    config = scrape_config(stack.kube.kubeconfig, "unused")
    (job,) = config["scrape_configs"]
    for sd in job["kubernetes_sd_configs"]:
        sd.pop("namespaces", None)  # every test's namespace
    port = free_port()
    with prometheus(
        config, tmp_path_factory.mktemp("prom"), host=hostnet.NODE_IP, port=port
    ) as url:
        stack.kube.run(
            "-n",
            mlstack.OPERATOR_NAMESPACE,
            "set",
            "env",
            "deploy/mlmodel-operator",
            f"MLOP_PROMETHEUS_URL={url}",
        )
        mlstack.rollout(stack.kube, mlstack.OPERATOR_NAMESPACE, "mlmodel-operator", 180)
        yield url


# --- a client that reads which version answered ---------------------------------------------


def answer(
    base_url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, str, Any]:
    """POST one V2 inference on a new connection: (status, Model-Version header, JSON body)."""
    host = base_url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request(
            "POST",
            f"/v2/models/{MODEL}/infer",
            json.dumps(body),
            {"Content-Type": "application/json", **(headers or {})},
        )
        response = conn.getresponse()
        raw = response.read()
        return response.status, response.getheader("Model-Version") or "", json.loads(raw)
    finally:
        conn.close()


def v2_body(rows: list[list[float]]) -> dict[str, Any]:
    flat = [float(v) for row in rows for v in row]
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP64",
                "data": flat,
            }
        ]
    }


def labels(body: dict[str, Any]) -> list[Any]:
    return list({o["name"]: o for o in body["outputs"]}["predict"]["data"])


@dataclass
class Traffic:
    """What a background client saw."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)


@contextmanager
def traffic(
    base_url: str, rows: list[list[float]], max_seconds: float = 600.0
) -> Iterator[Traffic]:
    """Send one-row V2 predictions (`paced`), rows drawn at random (seeded)
    from `rows`, until the block ends. Random, not cycled: an exact canary split of a cycle would
    give the candidate the same few rows every time."""
    seen = Traffic()
    stop = threading.Event()
    rng = random.Random(17)

    def loop() -> None:
        for _ in paced(stop, max_seconds):
            row = rng.choice(rows)
            try:
                status, version, body = answer(base_url, v2_body([row]))
            except (OSError, ValueError) as exc:
                seen.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if status == 200:
                seen.ok += 1
                seen.versions[version] += 1
            else:
                seen.failures.append(f"HTTP {status}: {body}")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=30)


def with_candidate(candidate: Artifact, **fields: Any) -> dict[str, Any]:
    """spec.candidate for `candidate` (digest pinned, the store's credentials)."""
    model = {"uri": candidate.uri, "sha256": candidate.sha256, "credentialsSecret": SECRET}
    return {"candidate": {"model": model, **fields}}


def candidate_status(mlmodel: dict[str, Any]) -> dict[str, Any]:
    return dict((mlmodel.get("status") or {}).get("candidate") or {})


def candidate_serving(mlmodel: dict[str, Any], percent: int) -> bool:
    """Ready for this generation, the candidate loaded in every pod at `percent`."""
    status = candidate_status(mlmodel)
    return (
        mlstack.is_ready(mlmodel)
        and mlstack.condition(mlmodel, "CandidateReady").get("status") == "True"
        and status.get("trafficPercent") == percent
    )


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.timeout(480)
def test_a_canary_at_10_percent_answers_a_tenth_and_sticky_values_never_switch(
    stack: Stack, model_ns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = with_candidate(stack.v2, mode="canary", trafficPercent=10, stickyHeader=STICKY)
    url = stack.deploy(model_ns, MODEL, stack.v1, replicas=2, extra_spec=extra)
    log = ConditionLog(stack.kube, model_ns, MODEL)
    log.wait("the candidate serving at 10 %", lambda m: candidate_serving(m, 10), 240)

    versions: Counter[str] = Counter()
    rows = [list(map(float, r)) for r in stack.v1.rows]
    for i in range(2000):
        status, version, body = answer(url, v2_body([rows[i % len(rows)]]))
        assert status == 200, body
        assert body["model_version"] == version
        versions[version] += 1
    assert set(versions) == {STABLE_VERSION, CANDIDATE_VERSION}, versions
    share = versions[CANDIDATE_VERSION] / 2000
    assert 0.08 <= share <= 0.12, versions

    # 400 users, three requests each, interleaved: each user's version never changes
    per_user: dict[str, set[str]] = {}
    for _ in range(3):
        for user in range(400):
            status, version, body = answer(url, v2_body([list(ROW)]), {STICKY: f"user-{user}"})
            assert status == 200, body
            per_user.setdefault(f"user-{user}", set()).add(version)
    switched = {user: seen for user, seen in per_user.items() if len(seen) != 1}
    assert switched == {}
    sticky_share = sum(seen == {CANDIDATE_VERSION} for seen in per_user.values()) / 400
    assert 0.05 <= sticky_share <= 0.15, sticky_share
    with capsys.disabled():
        print(
            f"\ncanary 10 %: {dict(versions)} of 2,000; "
            f"sticky users on the candidate: {sticky_share:.3f}"
        )


@pytest.mark.timeout(480)
def test_shadow_answers_with_the_stable_and_prometheus_agreement_matches_both_models(
    stack: Stack, model_ns: str, prom: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = with_candidate(stack.v2, mode="shadow")
    url = stack.deploy(model_ns, MODEL, stack.v1, replicas=1, extra_spec=extra)
    log = ConditionLog(stack.kube, model_ns, MODEL)
    log.wait("the shadow candidate loaded", lambda m: candidate_serving(m, 0), 240)
    assert stack.v1.rows == stack.v2.rows  # the same split: both models' held-out rows

    # Light load, paced: back to back, one client kept the 1-replica pod on the CPU most of the
    # time, copies then delay its next request and the budget rightly drops some (docs/rollouts.md,
    # "Busy"); at light load every copy runs, and this test counts every one.
    rounds = 10
    rows = [list(map(float, r)) for r in stack.v1.rows]
    pairs = [pair for _ in range(rounds) for pair in zip(rows, stack.v1.expected, strict=True)]
    ticks = paced(threading.Event(), 600.0, per_second=SHADOW_PER_SECOND)
    for (row, expected), _ in zip(pairs, ticks, strict=False):
        status, version, body = answer(url, v2_body([row]))
        assert status == 200, body
        assert version == STABLE_VERSION and body["model_version"] == STABLE_VERSION
        assert labels(body) == [expected]
    sent = rounds * len(rows)
    agree = sum(a == b for a, b in zip(stack.v1.expected, stack.v2.expected, strict=True))
    expected_agreement = agree / len(rows)

    selector = f'namespace="{model_ns}"'
    seen: dict[str, float] = {}

    def scraped() -> bool:
        for name in ("compared", "agreed"):
            result = query(prom, f"sum(model_server_candidate_{name}_rows_total{{{selector}}})")
            seen[name] = float(result[0]["value"][1]) if result else -1.0
        dropped = query(prom, f"sum(model_server_candidate_copies_dropped_total{{{selector}}})")
        seen["dropped"] = float(dropped[0]["value"][1]) if dropped else -1.0
        return seen["compared"] + max(seen["dropped"], 0) >= sent

    try:
        mlstack.wait_for("Prometheus to see every shadow comparison", scraped, 60)
    except mlstack.StackError as exc:
        raise AssertionError(f"{exc}; sent {sent}, Prometheus has {seen}") from exc
    assert seen == {"compared": sent, "agreed": rounds * agree, "dropped": 0.0}
    (ratio,) = query(
        prom,
        f"sum(model_server_candidate_agreed_rows_total{{{selector}}})"
        f" / sum(model_server_candidate_compared_rows_total{{{selector}}})",
    )
    assert float(ratio["value"][1]) == pytest.approx(expected_agreement, abs=1e-9)
    with capsys.disabled():
        print(
            f"\nshadow: {sent} rows compared, agreement {expected_agreement:.3f} (Prometheus equal)"
        )


def only_new_pods(kube: Any, namespace: str) -> bool:
    """Every pod of the model runs a template without a candidate; none is terminating."""
    out = kube.run(
        "-n", namespace, "get", "pods", "-l", f"app.kubernetes.io/instance={MODEL}", "-o", "json"
    ).stdout  # fmt: skip
    pods = json.loads(out)["items"]
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            return False
        env = {e["name"] for c in pod["spec"]["containers"] for e in c.get("env") or []}
        if "MODEL_SERVER_CANDIDATE_URI" in env:
            return False
    return bool(pods)


def seconds_between(start: str, end: str) -> float:
    """Seconds from one RFC 3339 timestamp of the API to another."""
    from datetime import datetime

    def parse(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds()


def walk(mlmodel: dict[str, Any], history: list[tuple[str, int]]) -> None:
    """Record each distinct (phase, share) the candidate goes through."""
    status = candidate_status(mlmodel)
    entry = (str(status.get("phase")), int(status.get("trafficPercent", -1)))
    if not history or history[-1] != entry:
        history.append(entry)


@pytest.mark.timeout(600)
def test_a_good_candidate_walks_every_step_to_succeeded_without_a_failed_request(
    stack: Stack, model_ns: str, prom: str, capsys: pytest.CaptureFixture[str]
) -> None:
    analysis = {"steps": [10, 50, 100], "interval": INTERVAL, "maxErrorRate": 0.01,
                "maxLatencyRatio": 5, "minAgreement": 0.8}  # fmt: skip
    rows = [list(map(float, r)) for r in stack.v1.rows]
    url = stack.deploy(model_ns, MODEL, stack.v1, replicas=2)
    log = ConditionLog(stack.kube, model_ns, MODEL)
    history: list[tuple[str, int]] = []
    with traffic(url, rows) as seen:
        patch = with_candidate(stack.v2, mode="canary", analysis=analysis)
        stack.kube.run(
            "-n", model_ns, "patch", "mlm", MODEL, "--type=merge", "-p", json.dumps({"spec": patch})
        )

        started: list[str] = []

        tables: list[str] = []  # `kubectl get mlm` at each (phase, share), for the README

        def succeeded(m: dict[str, Any]) -> bool:
            before = len(history)
            walk(m, history)
            if len(history) != before:
                tables.append(stack.kube.run("-n", model_ns, "get", "mlm", MODEL).stdout)
            if candidate_status(m).get("stepStartedAt"):
                started.append(candidate_status(m)["stepStartedAt"])
            return candidate_status(m).get("phase") == "Succeeded"

        log.wait("the candidate to succeed", succeeded, 420)
        final = candidate_status(log.last)
        healthy = mlstack.condition(log.last, "CandidateHealthy")
        starts = sorted(set(started))
        before_100 = seen.versions.copy()
        time.sleep(3)  # a few answers once Succeeded at 100 %
        at_100 = seen.versions - before_100

        # finish: the candidate becomes spec.model; no pod serves the old version afterwards
        model = {"uri": stack.v2.uri, "sha256": stack.v2.sha256, "credentialsSecret": SECRET}
        finish = {"spec": {"model": model, "candidate": None}}
        stack.kube.run(
            "-n", model_ns, "patch", "mlm", MODEL, "--type=merge", "-p", json.dumps(finish)
        )
        log.wait(
            "the promoted model alone to be Ready",
            lambda m: mlstack.is_ready(m, digest=stack.v2.sha256) and not candidate_status(m),
            240,
        )
        # "afterwards": once the old pods are gone (terminating ones drain for a while and the
        # Service stops sending to them when they start to), only the new template's pods exist
        mlstack.wait_for(
            "only pods without a candidate",
            lambda: only_new_pods(stack.kube, model_ns),
            120,
        )
    assert seen.failures == [], seen.failures[:5]
    assert at_100[CANDIDATE_VERSION] > 0, at_100  # the candidate answers at 100 %
    promoted = Counter()
    for row, expected in zip(rows, stack.v2.expected, strict=True):
        status, version, body = answer(url, v2_body([row]))
        assert status == 200, body
        assert labels(body) == [expected]
        promoted[version] += 1
    assert promoted == {STABLE_VERSION: len(rows)}
    conditions = {c["type"] for c in log.last["status"]["conditions"]}
    assert not conditions & {"CandidateReady", "CandidateHealthy"}
    shares = [share for phase, share in history if phase == "Progressing" and share > 0]
    assert shares == [10, 50, 100], history
    assert final["trafficPercent"] == 100
    assert "move spec.candidate.model to spec.model" in final["message"]
    assert healthy.get("status") == "True", healthy
    assert seen.versions[CANDIDATE_VERSION] > 0 and seen.versions[STABLE_VERSION] > 0
    events = stack.kube.run(
        "-n", model_ns, "get", "events", "--field-selector", f"involvedObject.name={MODEL}",
        "-o", "json",
    )  # fmt: skip
    items = json.loads(events.stdout)["items"]
    reasons = Counter(e["reason"] for e in items)
    assert reasons["CandidateSucceeded"] == 1 and reasons["CandidateStep"] >= 2, reasons
    # how long a step takes: from the Event deciding it to every pod serving its share
    decided = sorted(e.get("lastTimestamp") or e["eventTime"] for e in items
                     if e["reason"] == "CandidateStep")  # fmt: skip
    rolls = [seconds_between(d, s) for d, s in zip(decided, starts, strict=False)]
    with capsys.disabled():
        print(
            f"\ngood candidate: {history}; {seen.ok} answers, versions {dict(seen.versions)}; "
            f"steps started {starts}; decided {decided}; roll to the next share (s): {rolls}"
        )
        print("\n".join(tables))


@pytest.mark.timeout(480)
@pytest.mark.parametrize(
    ("which", "bound"), [("narrow", "maxErrorRate"), ("stump", "minAgreement")]
)
def test_a_bad_candidate_is_backed_out_within_one_interval_naming_the_bound(
    stack: Stack,
    candidates: Candidates,
    model_ns: str,
    prom: str,
    which: str,
    bound: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad: Artifact = getattr(candidates, which)
    analysis = {"steps": [20, 100], "interval": INTERVAL, "maxErrorRate": 0.01,
                "minAgreement": 0.9}  # fmt: skip
    rows = [list(map(float, r)) for r in stack.v1.rows]
    url = stack.deploy(model_ns, MODEL, stack.v1, replicas=1)
    log = ConditionLog(stack.kube, model_ns, MODEL)
    history: list[tuple[str, int]] = []
    with traffic(url, rows) as seen:
        patch = with_candidate(bad, mode="canary", analysis=analysis)
        stack.kube.run(
            "-n", model_ns, "patch", "mlm", MODEL, "--type=merge", "-p", json.dumps({"spec": patch})
        )

        def first_step(m: dict[str, Any]) -> bool:
            walk(m, history)
            return candidate_serving(m, 20)

        log.wait("the first step serving", first_step, 240)

        step_started: list[str] = []

        def failed(m: dict[str, Any]) -> bool:
            walk(m, history)
            if candidate_status(m).get("stepStartedAt"):
                step_started.append(candidate_status(m)["stepStartedAt"])
            return candidate_status(m).get("phase") == "Failed"

        log.wait("the candidate to fail", failed, 120)
        log.wait("the pods back at 0 %", lambda m: candidate_serving(m, 0), 240)
        final = candidate_status(log.last)
        time.sleep(2)
    assert seen.failures == [], seen.failures[:5]
    # within one interval of the step's start, by the operator's own timestamps
    healthy = mlstack.condition(log.last, "CandidateHealthy")
    assert step_started, f"no step start seen: {history}"
    failed_after = seconds_between(step_started[-1], healthy["lastTransitionTime"])
    assert 0 <= failed_after <= INTERVAL_SECONDS, (final, healthy)
    assert final["phase"] == "Failed" and final["trafficPercent"] == 0
    assert bound in final["message"], final["message"]
    assert healthy.get("status") == "False" and bound in healthy.get("message", ""), healthy
    events = stack.kube.run(
        "-n", model_ns, "get", "events", "--field-selector", "reason=CandidateFailed", "-o", "json"
    )  # fmt: skip
    (event,) = json.loads(events.stdout)["items"]
    assert event["type"] == "Warning" and bound in event["message"], event
    with capsys.disabled():
        print(f"\n{which}: {history}; Failed after {failed_after:.0f} s: {final['message']}")
