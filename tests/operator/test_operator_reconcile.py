"""Reconciler against a fake API layer (no cluster): what it writes, what status says, and what it
asks of the work queue, including the failures a user must see on the MLModel (issue 13)."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import api_exception
from operator_testlib import mlmodel_body
from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError

from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.kube import FIELD_MANAGER
from mlmodel_operator.reconcile import (
    REFUSED_STATUS_CODES,
    ApiCallFailed,
    Outcome,
    Reconciler,
    api_message,
)
from mlmodel_operator.resource import KIND
from mlmodel_operator.settings import OperatorSettings
from mlmodel_operator.status import degraded_patch, invalid_spec_problem

NS, NAME = "models", "iris"
SHA = "c" * 64
SPEC: dict[str, Any] = {"model": {"uri": "https://cards.test/iris", "sha256": SHA}}
INVALID = (
    'Deployment.apps "iris" is invalid: spec.template.spec.containers[0].resources.requests: '
    'Invalid value: "2": must be less than or equal to cpu limit of 1'
)
WEBHOOK = (
    'admission webhook "policy.example.com" denied the request: '
    "spec.template.spec.nodeSelector: nodes of pool gpu are reserved"
)
PHRASES = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def api_error(code: int, message: str, *, dynamic: bool = True) -> ApiException:
    """An error answer as the kubernetes client raises it: a JSON Status body, and through the
    dynamic client (as kube.Kube uses it) the subclass for the code."""
    plain = ApiException(status=code, reason=PHRASES.get(code, "Error"))
    plain.body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": PHRASES.get(code, "Error").replace(" ", ""),
            "code": code,
        }
    )
    plain.headers = {"Content-Type": "application/json"}
    return api_exception(plain) if dynamic else plain  # type: ignore[no-untyped-call]


def owned_fields(value: Any) -> dict[str, Any]:
    """fieldsV1 for an applied manifest: every mapping key; lists are owned whole (enough here)."""
    if not isinstance(value, Mapping):
        return {}
    return {f"f:{key}": owned_fields(sub) for key, sub in value.items()}


class FakeKube:
    """The API server for the Reconciler: objects by (kind, name), the MLModel, and every call.

    `refuse[kind]` is raised by applies of that kind ("Scale": the scale subresource) until it
    is removed; `status_error` by status patches. `writes` lists the write calls in order.
    """

    def __init__(self, mlmodel: dict[str, Any]) -> None:
        self.mlmodel = copy.deepcopy(mlmodel)
        self.mlmodel["metadata"].setdefault("resourceVersion", "1")
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[Any, ...]] = []
        self.reads: list[tuple[str, str]] = []
        self.refuse: dict[str, Exception] = {}
        self.status_error: Exception | None = None
        self._revisions = itertools.count(10)

    def _revision(self) -> str:
        return str(next(self._revisions))

    def check_version(self, resource_version: str) -> None:
        """A write's resourceVersion precondition, as the API server checks it."""
        if resource_version and resource_version != self.mlmodel["metadata"]["resourceVersion"]:
            raise api_error(409, "Operation cannot be fulfilled: the object has been modified")

    def read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append((kind, name))
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found else None

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        self.writes.append(("apply", kind, name, copy.deepcopy(dict(manifest))))
        if kind in self.refuse:
            raise self.refuse[kind]
        live = self.objects.get((kind, name)) or {}
        body = copy.deepcopy(dict(manifest))
        meta = body["metadata"]
        meta["uid"] = (live.get("metadata") or {}).get("uid") or f"uid-{kind}-{name}"
        meta["resourceVersion"] = self._revision()
        entry = {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {}}
        entry["fieldsV1"] = {k: v for k, v in owned_fields(manifest).items() if k != "f:kind"}
        scale = [
            e
            for e in (live.get("metadata") or {}).get("managedFields") or []
            if e.get("subresource")
        ]
        meta["managedFields"] = [entry, *scale]
        if kind == "Deployment" and "replicas" not in body["spec"]:
            body["spec"]["replicas"] = (live.get("spec") or {}).get("replicas", 1)
        if "status" in live:
            body["status"] = live["status"]
        self.objects[(kind, name)] = body
        return copy.deepcopy(body)

    def apply_deployment_scale(self, namespace: str, name: str, replicas: int) -> None:
        self.writes.append(("scale", "Deployment", name, replicas))
        if "Scale" in self.refuse:
            raise self.refuse["Scale"]
        live = self.objects.get(("Deployment", name))
        if live is not None:
            live["spec"]["replicas"] = replicas

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> None:
        self.writes.append(("delete", kind, name, uid))
        self.objects.pop((kind, name), None)

    def patch_mlmodel_status(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str = ""
    ) -> dict[str, Any]:
        self.writes.append(("status", KIND, name, copy.deepcopy(dict(patch))))
        if self.status_error is not None:
            raise self.status_error
        self.check_version(resource_version)
        status = self.mlmodel.setdefault("status", {})
        for key, value in patch.items():  # a merge patch of top-level status fields
            if value is None:
                status.pop(key, None)
            else:
                status[key] = copy.deepcopy(value)
        self.mlmodel["metadata"]["resourceVersion"] = self._revision()
        return copy.deepcopy(self.mlmodel)

    # --- test helpers
    def finish_rollout(self) -> None:
        """The Deployment controller caught up: every pod updated and available."""
        deployment = self.objects[("Deployment", NAME)]
        replicas = deployment["spec"]["replicas"]
        deployment["metadata"]["generation"] = 1
        deployment["status"] = {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        }
        deployment["metadata"]["resourceVersion"] = self._revision()

    def child_writes(self) -> list[tuple[Any, ...]]:
        return [w for w in self.writes if w[0] != "status"]

    def status_writes(self) -> list[dict[str, Any]]:
        return [w[3] for w in self.writes if w[0] == "status"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def no_card_reads(uri: str, fmt: str | None) -> str:
    raise AssertionError(f"a pinned sha256 must not read the card {uri}")


class World:
    """A Reconciler wired to a FakeKube and a real ObjectCache fed like the watch feeds it."""

    def __init__(self, settings: OperatorSettings, body: dict[str, Any]) -> None:
        self.kube = FakeKube(body)
        self.cache = ObjectCache()
        self.clock = Clock()
        self.reconciler = Reconciler(
            self.kube,
            self.cache,
            settings,
            reader=no_card_reads,
            clock=self.clock,
        )
        self.watch()

    def watch(self) -> None:
        """Deliver every object's current state to the cache, as the watch streams would."""
        self.cache.store(KIND, self.kube.mlmodel)
        for (kind, _), body in self.kube.objects.items():
            self.cache.store(kind, body)

    def edit(self, spec: dict[str, Any]) -> None:
        """A user changes the MLModel's spec (a new generation)."""
        meta = self.kube.mlmodel["metadata"]
        meta["generation"] = int(meta.get("generation", 1)) + 1
        meta["resourceVersion"] = self.kube._revision()
        self.kube.mlmodel["spec"] = copy.deepcopy(spec)
        self.watch()

    def reconcile(self) -> Outcome:
        """One worker round for the MLModel; the watch then delivers what changed."""
        self.kube.writes.clear()
        self.kube.reads.clear()
        result = self.reconciler.reconcile_key(NS, NAME)
        assert result is not None
        self.watch()
        return result[1]

    def status(self) -> dict[str, Any]:
        return dict(self.kube.mlmodel.get("status") or {})

    def condition(self, kind: str) -> dict[str, Any]:
        found = [c for c in self.status().get("conditions") or [] if c["type"] == kind]
        assert len(found) == 1, self.status()
        return dict(found[0])


@pytest.fixture
def world(settings: OperatorSettings) -> World:
    return World(settings, mlmodel_body(SPEC))


def applied_kinds(kube: FakeKube) -> list[str]:
    return [w[1] for w in kube.writes if w[0] == "apply"]


# --- converging


def test_a_new_mlmodel_gets_its_children_and_a_status(settings: OperatorSettings) -> None:
    spec = {**SPEC, "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}
    world = World(settings, mlmodel_body(spec))
    outcome = world.reconcile()

    assert applied_kinds(world.kube) == [
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert ("scale", "Deployment", NAME, 2) in world.kube.writes  # starts at minReplicas
    assert [c.verb for c in outcome.changes] == ["Created"] * 4
    assert not outcome.retry
    (patch,) = world.kube.status_writes()
    assert patch["observedGeneration"] == 1
    assert patch["modelDigest"] == SHA
    assert world.condition("Degraded")["status"] == "False"
    assert world.condition("Ready")["reason"] == "RollingOut"


def test_a_single_replica_mlmodel_gets_no_hpa_or_pdb(world: World) -> None:
    world.reconcile()
    assert applied_kinds(world.kube) == ["Deployment", "Service"]
    assert not any(w[0] == "scale" for w in world.kube.writes)


def test_a_converged_mlmodel_makes_no_write(world: World) -> None:
    world.reconcile()
    world.kube.finish_rollout()
    world.watch()
    world.clock.now += timedelta(minutes=1)
    world.reconcile()  # the rollout's end reaches status
    assert world.condition("Ready")["status"] == "True"

    world.clock.now += timedelta(minutes=1)
    outcome = world.reconcile()
    assert world.kube.writes == []
    assert world.kube.reads == []  # everything came from the cache
    assert outcome.status_patch == {}
    assert outcome.changes == ()
    assert not outcome.retry


# --- an apply the API server refuses


@pytest.mark.parametrize(
    ("code", "message", "dynamic"),
    [(422, INVALID, True), (422, INVALID, False), (403, WEBHOOK, True), (400, INVALID, True)],
)
def test_a_refused_apply_is_degraded_with_the_servers_message_and_asks_for_a_retry(
    world: World, code: int, message: str, dynamic: bool
) -> None:
    world.kube.refuse["Deployment"] = api_error(code, message, dynamic=dynamic)
    outcome = world.reconcile()

    assert outcome.retry, "the worker must retry a refused apply with backoff"
    assert "Service" in applied_kinds(world.kube)  # the other children still converge
    assert ("Deployment", NAME) not in world.kube.objects
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ApplyRefused")
    assert message.rstrip(".") in degraded["message"]
    assert "HTTP response" not in degraded["message"]  # the server's message, not the dump
    assert '"kind"' not in degraded["message"]
    assert world.condition("Ready")["reason"] == "ApplyRefused"


def test_a_refused_apply_writes_status_once_and_clears_when_the_apply_passes(
    world: World,
) -> None:
    world.kube.refuse["Deployment"] = api_error(422, INVALID)
    world.reconcile()
    refused_at = world.condition("Degraded")["lastTransitionTime"]

    world.clock.now += timedelta(seconds=30)
    outcome = world.reconcile()  # the worker's retry: refused again, status already says so
    assert world.kube.status_writes() == []
    assert applied_kinds(world.kube) == ["Deployment"]  # tried again; the Service is converged
    assert outcome.retry

    del world.kube.refuse["Deployment"]  # e.g. the policy was changed
    world.clock.now += timedelta(seconds=30)
    outcome = world.reconcile()
    assert not outcome.retry
    assert applied_kinds(world.kube) == ["Deployment"]
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("False", "AsExpected")
    assert degraded["lastTransitionTime"] != refused_at
    assert world.condition("Ready")["reason"] == "RollingOut"


def test_a_long_refusal_message_is_bounded_in_status(world: World) -> None:
    world.kube.refuse["Service"] = api_error(422, "x" * 100_000)
    world.reconcile()
    assert len(world.condition("Degraded")["message"]) < 2_000


@pytest.mark.parametrize(
    "error",
    [
        api_error(409, "Operation cannot be fulfilled: the object has been modified"),
        api_error(429, "too many requests"),
        api_error(500, "etcdserver: request timed out"),
        api_error(503, "the server is currently unable to handle the request"),
        api_error(404, 'namespaces "models" not found'),
        MaxRetryError(None, "/apis/apps/v1", ProtocolError("Connection refused")),  # type: ignore[arg-type]
        ReadTimeoutError(None, "/apis/apps/v1", "Read timed out."),  # type: ignore[arg-type]
    ],
    ids=["409", "429", "500", "503", "404", "connection", "timeout"],
)
def test_a_passing_failure_raises_for_backoff_and_writes_no_status(
    world: World, error: Exception
) -> None:
    world.kube.refuse["Deployment"] = error
    world.kube.writes.clear()
    with pytest.raises(ApiCallFailed) as failed:
        world.reconciler.reconcile_key(NS, NAME)
    assert not failed.value.refused
    assert "applying Deployment models/iris" in str(failed.value)
    assert world.kube.status_writes() == []


def test_the_refused_codes_are_the_request_errors_only() -> None:
    assert {400, 403, 422} <= REFUSED_STATUS_CODES
    assert not {401, 404, 408, 409, 410, 429, 500, 502, 503, 504} & REFUSED_STATUS_CODES


def test_api_message_is_the_status_message_or_the_reason_phrase() -> None:
    assert api_message(api_error(422, INVALID)) == INVALID
    html = ApiException(status=403, reason="Forbidden")
    html.body = "<html><body>denied by a proxy</body></html>"
    assert api_message(html) == "Forbidden"
    raw = ApiException(status=422, reason="Unprocessable Entity")
    raw.body = json.dumps({"message": INVALID}).encode()  # type: ignore[assignment]  # bytes, as a raw answer
    assert api_message(raw) == INVALID


# --- children the operator does not own


def test_a_same_named_deployment_it_does_not_own_is_left_alone(world: World) -> None:
    world.kube.objects[("Deployment", NAME)] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS, "uid": "someone-else", "ownerReferences": []},
        "spec": {"replicas": 3},
    }
    outcome = world.reconcile()  # the cache lacks it (not our label): the GET finds it

    assert ("Deployment", NAME) in world.kube.reads
    assert applied_kinds(world.kube) == ["Service"]
    assert not any(w[1] == "Deployment" for w in world.kube.child_writes())
    assert [p.reason for p in outcome.problems] == ["ChildNotOwned"]
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ChildNotOwned")
    assert world.kube.objects[("Deployment", NAME)]["metadata"]["uid"] == "someone-else"


FOREIGN_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": NAME, "namespace": NS, "uid": "someone-else", "ownerReferences": []},
    "spec": {"replicas": 5},
}


def test_no_hpa_is_made_for_a_same_named_deployment_it_does_not_own(
    settings: OperatorSettings,
) -> None:
    """The HPA targets the Deployment by name: it would scale another team's Deployment."""
    world = World(
        settings, mlmodel_body({**SPEC, "autoscaling": {"minReplicas": 1, "maxReplicas": 1}})
    )
    world.kube.objects[("Deployment", NAME)] = copy.deepcopy(FOREIGN_DEPLOYMENT)
    outcome = world.reconcile()

    assert "HorizontalPodAutoscaler" not in applied_kinds(world.kube)
    assert ("HorizontalPodAutoscaler", NAME) not in world.kube.objects
    assert [p.reason for p in outcome.problems] == ["ChildNotOwned"]
    assert world.kube.objects[("Deployment", NAME)]["spec"]["replicas"] == 5


def test_its_hpa_is_removed_when_the_deployment_of_its_name_is_someone_else_s(
    settings: OperatorSettings,
) -> None:
    world = World(
        settings, mlmodel_body({**SPEC, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}})
    )
    world.reconcile()
    assert ("HorizontalPodAutoscaler", NAME) in world.kube.objects
    # Its Deployment deleted and another made in its place (by someone who may do so).
    ours = world.kube.objects.pop(("Deployment", NAME))
    world.cache.deleted("Deployment", NS, NAME, ours["metadata"]["uid"])
    world.kube.objects[("Deployment", NAME)] = copy.deepcopy(FOREIGN_DEPLOYMENT)
    world.reconcile()

    hpa_writes = [w for w in world.kube.child_writes() if w[1] == "HorizontalPodAutoscaler"]
    assert [w[0] for w in hpa_writes] == ["delete"]
    assert ("HorizontalPodAutoscaler", NAME) not in world.kube.objects
    assert world.condition("Degraded")["reason"] == "ChildNotOwned"


# --- handing replicas to the HPA


def test_replicas_go_to_the_scale_subresource_before_the_deployment_drops_them(
    world: World,
) -> None:
    world.edit({**SPEC, "replicas": 7})
    world.reconcile()
    assert world.kube.objects[("Deployment", NAME)]["spec"]["replicas"] == 7

    world.edit({**SPEC, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}})
    world.reconcile()

    writes = [(w[0], w[1]) for w in world.kube.child_writes()]
    assert writes.index(("scale", "Deployment")) < writes.index(("apply", "Deployment"))
    assert ("scale", "Deployment", NAME, 5) in world.kube.writes  # 7 clamped to maxReplicas
    (deployment,) = [w[3] for w in world.kube.writes if w[:2] == ("apply", "Deployment")]
    assert "replicas" not in deployment["spec"]
    assert world.kube.objects[("Deployment", NAME)]["spec"]["replicas"] == 5


def test_a_refused_scale_keeps_the_deployment_apply_back(world: World) -> None:
    world.edit({**SPEC, "replicas": 3})
    world.reconcile()
    world.kube.refuse["Scale"] = api_error(403, WEBHOOK)

    world.edit({**SPEC, "autoscaling": {"minReplicas": 2, "maxReplicas": 5}})
    outcome = world.reconcile()

    assert outcome.retry
    assert ("apply", "Deployment") not in [(w[0], w[1]) for w in world.kube.writes]
    assert world.kube.objects[("Deployment", NAME)]["spec"]["replicas"] == 3  # not reset to 1
    assert world.condition("Degraded")["reason"] == "ApplyRefused"


# --- a spec this operator cannot parse


def test_an_invalid_spec_is_degraded_and_nothing_else_is_touched(world: World) -> None:
    world.reconcile()
    world.kube.finish_rollout()
    world.watch()
    world.reconcile()
    before = world.status()
    assert world.condition("Ready")["status"] == "True"

    invalid = copy.deepcopy(SPEC)
    invalid["canary"] = {"weight": 10}  # a field newer than this operator
    invalid["server"] = {"env": [{"name": "MODEL_SERVER_WORKERS", "value": "8"}]}
    world.edit(invalid)
    world.clock.now += timedelta(minutes=1)
    outcome = world.reconcile()

    assert world.kube.child_writes() == []
    assert not outcome.retry
    (patch,) = world.kube.status_writes()
    assert set(patch) == {"conditions"}
    after = world.status()
    assert {k: v for k, v in after.items() if k != "conditions"} == {
        k: v for k, v in before.items() if k != "conditions"
    }
    assert after["observedGeneration"] == 1  # the generation last acted on
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "spec.canary" in degraded["message"]
    assert "spec.server.env[0].name" in degraded["message"]
    assert degraded["observedGeneration"] == 2
    assert degraded["lastTransitionTime"] == "2026-01-01T12:01:00Z"
    old = {c["type"]: c for c in before["conditions"]}
    new = {c["type"]: c for c in after["conditions"]}
    assert [c["type"] for c in after["conditions"]] == [c["type"] for c in before["conditions"]]
    for kind in ("Ready", "Available", "Progressing"):
        assert new[kind] == old[kind]

    world.clock.now += timedelta(minutes=1)
    outcome = world.reconcile()  # the drift loop comes round: status already says it
    assert world.kube.writes == []
    assert outcome.status_patch == {}


def test_an_invalid_spec_clears_once_the_spec_is_fixed(world: World) -> None:
    world.reconcile()
    world.edit({**SPEC, "replicas": "two"})
    world.reconcile()
    assert world.condition("Degraded")["reason"] == "InvalidSpec"
    assert "spec.replicas" in world.condition("Degraded")["message"]

    world.edit({**SPEC, "replicas": 2})
    world.clock.now += timedelta(minutes=1)
    outcome = world.reconcile()
    assert not outcome.retry
    assert "Deployment" in applied_kinds(world.kube)
    assert world.status()["observedGeneration"] == 3
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("False", "AsExpected")
    assert degraded["lastTransitionTime"] == "2026-01-01T12:01:00Z"


def test_an_invalid_new_mlmodel_gets_only_a_degraded_condition(settings: OperatorSettings) -> None:
    world = World(settings, mlmodel_body({**SPEC, "replicas": -1, "unknownField": 1}))
    outcome = world.reconcile()
    assert world.kube.child_writes() == []
    assert [c["type"] for c in world.status()["conditions"]] == ["Degraded"]
    assert set(world.status()) == {"conditions"}
    assert "spec.unknownField" in outcome.problems[0].message


def test_degraded_patch_moves_the_transition_time_only_when_the_status_flips() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    problem = invalid_spec_problem(
        [{"loc": ("spec", "x"), "msg": "Extra inputs are not permitted"}]
    )
    previous: dict[str, Any] = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Degraded",
                "status": "True",
                "reason": "ApplyRefused",
                "message": "refused",
                "observedGeneration": 1,
                "lastTransitionTime": "2025-12-31T00:00:00Z",
            }
        ],
    }
    patch = degraded_patch(previous, problem, generation=2, now=t0)
    (degraded,) = patch["conditions"]
    assert degraded["reason"] == "InvalidSpec"
    assert degraded["lastTransitionTime"] == "2025-12-31T00:00:00Z"  # True before and after
    assert degraded_patch({**previous, **patch}, problem, generation=2, now=t0) == {}
    cleared = {**previous, "conditions": [{**previous["conditions"][0], "status": "False"}]}
    (flipped,) = degraded_patch(cleared, problem, generation=2, now=t0)["conditions"]
    assert flipped["lastTransitionTime"] == "2026-01-01T00:00:00Z"


def test_invalid_spec_names_fields_by_their_api_names() -> None:
    problem = invalid_spec_problem(
        [
            {
                "loc": ("spec", "autoscaling", "minReplicas"),
                "msg": "Input should be a valid integer",
            },
            {"loc": ("spec", "server", "resources", "limits", "cpu", "int"), "msg": "not an int"},
            {"loc": ("spec", "server", "resources", "limits", "cpu", "str"), "msg": "not a str"},
        ]
        + [
            {"loc": ("spec", f"extra{i}"), "msg": "Extra inputs are not permitted"}
            for i in range(9)
        ]
    )
    assert problem.reason == "InvalidSpec"
    assert "spec.autoscaling.minReplicas: Input should be a valid integer" in problem.message
    assert "spec.server.resources.limits.cpu: not an int" in problem.message
    assert "not a str" not in problem.message  # one message per field
    assert "(and 6 more)" in problem.message


# --- deleted during a reconcile


def test_an_mlmodel_being_deleted_is_not_written_to(settings: OperatorSettings) -> None:
    body = mlmodel_body(SPEC)
    body["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    world = World(settings, body)
    outcome = world.reconcile()
    assert world.kube.writes == []
    assert outcome.status_patch == {}


def test_an_invalid_mlmodel_being_deleted_is_not_written_to(settings: OperatorSettings) -> None:
    body = mlmodel_body({**SPEC, "unknownField": 1})
    body["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    world = World(settings, body)
    world.reconcile()
    assert world.kube.writes == []


def test_an_mlmodel_gone_from_the_cache_is_not_reconciled(world: World) -> None:
    world.cache.drop(KIND, NS, NAME)
    assert world.reconciler.reconcile_key(NS, NAME) is None
    assert world.kube.writes == []


@pytest.mark.parametrize("dynamic", [True, False])
def test_a_status_patch_answering_not_found_means_the_mlmodel_is_gone(
    world: World, dynamic: bool
) -> None:
    world.kube.status_error = api_error(404, 'mlmodels.mlops.dev "iris" not found', dynamic=dynamic)
    assert world.reconciler.reconcile_key(NS, NAME) is None  # no exception: nothing to retry
    assert len(world.kube.status_writes()) == 1


def test_a_status_patch_computed_from_an_outdated_mlmodel_is_refused_not_merged(
    world: World,
) -> None:
    """Someone (a new leader, say) wrote the MLModel after the cache's copy: the patch carries
    the copy's resourceVersion, so the API server refuses it; the reconcile's child writes are
    still reported (their Events), and it asks to be retried."""
    world.kube.mlmodel["status"] = {"observedGeneration": 7}
    world.kube.mlmodel["metadata"]["resourceVersion"] = world.kube._revision()  # not watched yet
    result = world.reconciler.reconcile_key(NS, NAME)
    assert result is not None and result[1].retry
    assert {change.kind for change in result[1].changes} >= {"Deployment", "Service"}
    assert world.kube.status_writes()  # it was sent ...
    assert world.kube.mlmodel["status"] == {"observedGeneration": 7}  # ... and nothing merged
    world.watch()  # the watch delivers the write
    world.reconcile()
    assert world.kube.mlmodel["status"]["observedGeneration"] == 1


def test_a_status_patch_failing_otherwise_is_retried(world: World) -> None:
    world.kube.status_error = api_error(500, "etcdserver: leader changed")
    with pytest.raises(ApiCallFailed, match="patching status of MLModel models/iris"):
        world.reconciler.reconcile_key(NS, NAME)
