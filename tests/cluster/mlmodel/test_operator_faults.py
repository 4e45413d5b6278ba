"""The operator under faults: SIGKILLed mid-churn, the API server and etcd restarted under it,
another writer fighting over its fields, the operator down while a namespace is deleted, and
generated (often invalid) specs. Every case ends with every model converged to its spec."""

from __future__ import annotations

import random
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from mlmodel_harness import (
    GROUP,
    PLURAL,
    SHA_A,
    VERSION,
    Api,
    OperatorProcess,
    dump,
    mlmodel_yaml,
    wait_until,
)

from devcluster.cluster import Cluster
from devcluster.kube import controlplane

# the operator's pods turn Ready on kwok's fake nodes, without images or a reachable artifact
pytestmark = [pytest.mark.cluster, pytest.mark.fake_pods]

CHURN_MODELS = 200
CHURN_BATCH = 40
MODEL = {"uri": "http://127.0.0.1:9/models/iris", "sha256": SHA_A}


def body(name: str, **spec: Any) -> dict[str, Any]:
    """An MLModel as a dict (pinned digest: the operator reads no card)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MLModel",
        "metadata": {"name": name},
        "spec": {"model": MODEL, **spec},
    }


def create(api: Api, name: str, **spec: Any) -> None:
    api.custom.create_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL, body(name, **spec))


def set_replicas(api: Api, name: str, replicas: int) -> None:
    patch = {"spec": {"replicas": replicas}}
    api.custom.patch_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL, name, patch)


def delete(api: Api, name: str) -> None:
    api.custom.delete_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL, name)


def sigkill(operator: OperatorProcess) -> None:
    """Kill the operator with no chance to clean up."""
    assert operator.proc is not None and operator.proc.poll() is None, "operator not running"
    operator.proc.send_signal(signal.SIGKILL)
    operator.proc.wait(timeout=10)


@pytest.fixture
def running_operator(operator: OperatorProcess) -> Iterator[OperatorProcess]:
    """The session's operator; whatever a test did to it, it runs again afterwards."""
    yield operator
    if operator.proc is None or operator.proc.poll() is not None:
        operator.start()


def converged(api: Api, expected: dict[str, int], gone: set[str]) -> str:
    """'' when every expected model is Ready at its replicas and every deleted one is gone with
    its children; otherwise what is still off (for the failure message)."""
    items = api.custom.list_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL)["items"]
    models = {m["metadata"]["name"]: m for m in items}
    stuck = sorted(gone & set(models))
    if stuck:
        return f"deleted models still present: {stuck[:5]}"
    for name, replicas in expected.items():
        found = models.get(name)
        if found is None:
            return f"{name} missing"
        status = found.get("status", {})
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            return f"{name} not Ready: {ready}"
        if ready[0].get("observedGeneration") != found["metadata"]["generation"]:
            return f"{name} Ready for an old generation"
        if status.get("readyReplicas") != replicas:
            return f"{name} readyReplicas {status.get('readyReplicas')} != {replicas}"
    deployments = {d.metadata.name for d in api.apps.list_namespaced_deployment(api.ns).items}
    services = {s.metadata.name for s in api.core.list_namespaced_service(api.ns).items}
    if deployments != set(expected) or services != set(expected):
        extra = (deployments | services) - set(expected)
        return f"children not matching the models: extra {sorted(extra)[:5]}"
    return ""


def owned_by_live_models(api: Api) -> list[str]:
    """Children (Deployments, Services, PDBs, HPAs) whose controller MLModel does not exist."""
    items = api.custom.list_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL)["items"]
    uids = {m["metadata"]["uid"] for m in items}
    children = [
        *api.apps.list_namespaced_deployment(api.ns).items,
        *api.core.list_namespaced_service(api.ns).items,
        *api.policy.list_namespaced_pod_disruption_budget(api.ns).items,
        *api.autoscaling.list_namespaced_horizontal_pod_autoscaler(api.ns).items,
    ]
    orphans = []
    for child in children:
        refs = [r for r in child.metadata.owner_references or [] if r.controller]
        if len(refs) != 1 or refs[0].uid not in uids:
            orphans.append(f"{child.kind or type(child).__name__}/{child.metadata.name}")
    return orphans


def wait_converged(api: Api, expected: dict[str, int], gone: set[str], timeout: float) -> None:
    last = [""]

    def check() -> bool:
        last[0] = converged(api, expected, gone)
        return not last[0]

    deadline_what = f"{len(expected)} models to converge ({{}})"
    try:
        wait_until(deadline_what.format("see last"), check, timeout=timeout)
    except pytest.fail.Exception:
        pytest.fail(deadline_what.format(last[0]))


def replica_set_counts(api: Api) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rs in api.apps.list_namespaced_replica_set(api.ns).items:
        owner = (rs.metadata.labels or {}).get("app.kubernetes.io/instance", "?")
        counts[owner] = counts.get(owner, 0) + 1
    return counts


def test_sigkilled_repeatedly_during_churn_every_model_converges_without_duplicates(
    api: Api, running_operator: OperatorProcess
) -> None:
    operator, rng = running_operator, random.Random(8)
    expected: dict[str, int] = {}
    gone: set[str] = set()
    for start in range(0, CHURN_MODELS, CHURN_BATCH):
        batch = [f"m{i}" for i in range(start, start + CHURN_BATCH)]
        for name in batch:
            create(api, name, replicas=1)
            expected[name] = 1
        earlier = sorted(set(expected) - set(batch))
        for name in rng.sample(earlier, k=min(6, len(earlier))):
            expected[name] = rng.choice([1, 2, 3])
            set_replicas(api, name, expected[name])
        for name in rng.sample(earlier, k=min(3, len(earlier))):
            delete(api, name)
            expected.pop(name)
            gone.add(name)
        wait_until(
            f"the operator to start on batch {batch[0]}..",
            lambda b=batch: any(api.exists("Deployment", n) for n in b),
        )
        sigkill(operator)  # mid-batch: some models done, some half, some not started
        operator.start()
    wait_converged(api, expected, gone, timeout=240)
    assert owned_by_live_models(api) == []
    pdbs = {p.metadata.name for p in api.policy.list_namespaced_pod_disruption_budget(api.ns).items}
    assert pdbs == {n for n, r in expected.items() if r > 1}
    rolled = {n: c for n, c in replica_set_counts(api).items() if c != 1}
    assert rolled == {}, f"models rolled out more than once: {rolled}"


def test_api_server_and_etcd_restart_mid_reconcile_then_the_operator_converges(
    api: Api, running_operator: OperatorProcess
) -> None:
    layout = controlplane.layout_for(api.cluster.kubeconfig.parent)
    expected = {f"r{i}": 1 for i in range(30)}
    for name in expected:
        create(api, name, replicas=1)
    wait_until("the operator to start reconciling", lambda: api.exists("Deployment", "r0"))
    controlplane.restart(layout, ("etcd", "kube-apiserver"), log=lambda _: None)
    for name in ("r1", "r2"):
        expected[name] = 2
        set_replicas(api, name, 2)
    create(api, "after", replicas=1)  # only a re-established watch sees this one
    expected["after"] = 1
    wait_converged(api, expected, set(), timeout=180)
    assert running_operator.proc is not None and running_operator.proc.poll() is None, (
        f"the operator exited instead of reconnecting:\n{running_operator.log_tail()}"
    )


def managers_of_replicas(deployment: dict[str, Any]) -> set[str]:
    return {
        entry["manager"]
        for entry in deployment["metadata"].get("managedFields", [])
        if "f:replicas" in entry.get("fieldsV1", {}).get("f:spec", {})
    }


def timer_runs(operator: OperatorProcess) -> float:
    return operator.metric("mlmodel_operator_reconcile_total", trigger="timer", result="ok")


def test_another_manager_loses_fields_the_operator_owns_but_keeps_its_own_annotation(
    api: Api, running_operator: OperatorProcess
) -> None:
    api.apply(mlmodel_yaml("contested", replicas=1))
    wait_until("contested Ready", lambda: api.is_ready("contested"))
    intruder = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "contested", "annotations": {"team.example.com/owner": "ml"}},
        "spec": {"replicas": 4},
    }
    api.cluster.kubectl(
        "apply", "-n", api.ns, "--server-side", "--force-conflicts",
        "--field-manager=intruder", "-f", "-", input=dump(intruder),
    )  # fmt: skip
    wait_until(
        "spec.replicas restored to 1 by the operator",
        lambda: (d := api.deployment("contested")) and d["spec"]["replicas"] == 1,
    )
    runs = timer_runs(running_operator)
    wait_until("two more drift checks", lambda: timer_runs(running_operator) >= runs + 2)
    deployment = api.deployment("contested")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    assert deployment["metadata"]["annotations"]["team.example.com/owner"] == "ml"
    assert "intruder" not in managers_of_replicas(deployment), dump(
        deployment["metadata"]["managedFields"]
    )


def test_namespace_deletion_completes_while_the_operator_is_down(
    installed: Cluster, running_operator: OperatorProcess
) -> None:
    core = client.CoreV1Api(installed.api)
    name = f"mlm-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    api = Api(installed, name)
    api.apply(mlmodel_yaml("doomed", replicas=1))
    wait_until("doomed Ready", lambda: api.is_ready("doomed"))
    running_operator.stop()
    core.delete_namespace(name)

    def gone() -> bool:
        for pod in core.list_namespaced_pod(name).items:  # kwok: no kubelet confirms the stop
            core.delete_namespaced_pod(pod.metadata.name, name, grace_period_seconds=0)
        return all(ns.metadata.name != name for ns in core.list_namespace().items)

    try:
        wait_until(f"namespace {name} to be deleted with the operator down", gone, timeout=60)
    except pytest.fail.Exception:
        left = api.custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL)["items"]
        finalizers = {m["metadata"]["name"]: m["metadata"].get("finalizers") for m in left}
        pytest.fail(f"namespace {name} stuck; MLModel finalizers: {finalizers}")


# --- generated specs: each is either refused naming a field, or reconciled with a status


def specs() -> st.SearchStrategy[dict[str, Any]]:
    """MLModel specs mixing valid values with the kinds of mistakes users make."""
    uri = st.sampled_from(
        ["http://127.0.0.1:9/m", "s3://models/iris/v1", "pvc://claim/iris", "ftp://h/m", "",
         "s3://UPPER/x", "pvc://claim"]
    )  # fmt: skip
    sha = st.sampled_from([SHA_A, "abc", "Z" * 64, None])
    model = st.fixed_dictionaries({"uri": uri}, optional={"sha256": sha})
    small = st.integers(min_value=-2, max_value=3)
    autoscaling = st.fixed_dictionaries({"maxReplicas": small}, optional={"minReplicas": small})
    server = st.fixed_dictionaries(
        {},
        optional={
            "port": st.sampled_from([8080, 80, 70000, 9000]),
            "workers": st.integers(min_value=-1, max_value=2),
            "logLevel": st.sampled_from(["info", "debug", "loud"]),
            "resources": st.sampled_from(
                [{"requests": {"cpu": "100m"}}, {"requests": {"cpu": "lots"}}]
            ),
        },
    )
    return st.fixed_dictionaries(
        {"model": model},
        optional={
            "replicas": st.one_of(small, st.just("two")),
            "autoscaling": autoscaling,
            "server": server,
            "service": st.fixed_dictionaries({"type": st.sampled_from(["ClusterIP", "Ingress"])}),
            "replics": st.just(2),
        },
    )


def test_generated_specs_are_refused_naming_a_field_or_reconciled_and_the_operator_survives(
    api: Api, running_operator: OperatorProcess
) -> None:
    accepted: list[str] = []
    counter = iter(range(10_000))

    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(spec=specs())
    def apply_one(spec: dict[str, Any]) -> None:
        name = f"f{next(counter)}"
        manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MLModel",
                    "metadata": {"name": name}, "spec": spec}  # fmt: skip
        try:
            api.custom.create_namespaced_custom_object(GROUP, VERSION, api.ns, PLURAL, manifest)
        except ApiException as exc:
            assert exc.status == 422, f"{exc.status} for {spec}: {exc.body}"
            assert "spec." in exc.body, f"refusal names no field: {exc.body}"
            return
        accepted.append(name)

    apply_one()
    assert accepted, "no generated spec was valid: the strategy tests nothing"

    def reported(name: str) -> bool:
        found = api.mlmodel(name)
        ready = [c for c in found.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return bool(ready) and bool(ready[0]["message"]) and bool(ready[0]["reason"])

    wait_until(
        f"a Ready condition with reason and message on all {len(accepted)} accepted models",
        lambda: all(reported(n) for n in accepted),
        timeout=120,
    )
    create(api, "canary", replicas=1)
    wait_until("canary Ready after the fuzzing", lambda: api.is_ready("canary"), timeout=60)
    assert running_operator.proc is not None and running_operator.proc.poll() is None, (
        running_operator.log_tail()
    )
