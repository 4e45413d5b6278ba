"""A reconcile with spec.candidate (issue 17): what reaches the Deployment, what status.candidate
and the Candidate* conditions say, how an analyzer's decisions become the share, and that an
MLModel without a candidate keeps its exact status keys (no cluster)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import pytest
from operator_testlib import card_json
from test_operator_reconcile import NAME, NS, Clock, FakeKube

from mlmodel_artifact import ModelCard
from mlmodel_operator import contract
from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.candidate import (
    ANALYSIS_FIELDS,
    AnalysisResult,
    AnalysisRound,
    Health,
    effective_percent,
)
from mlmodel_operator.cardfetch import CardReadError
from mlmodel_operator.cards import CardPending, parse_card
from mlmodel_operator.reconcile import Outcome, Reconciler
from mlmodel_operator.render import render
from mlmodel_operator.render.meta import CANDIDATE_DIGEST_ANNOTATION
from mlmodel_operator.resource import KIND, MLModel
from mlmodel_operator.settings import OperatorSettings

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
V1, V2 = "https://cards.test/iris/v1", "https://cards.test/iris/v2"
STABLE = {"uri": V1, "sha256": SHA_A}
BASE_STATUS_KEYS = {
    "observedGeneration",
    "replicas",
    "readyReplicas",
    "updatedReplicas",
    "availableReplicas",
    "replicaSummary",
    "selector",
    "url",
    "modelDigest",
    "runtime",
    "conditions",
}
BASE_CONDITIONS = ["Ready", "Available", "Progressing", "Degraded"]


def spec(candidate: dict[str, Any] | None = None, replicas: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {"model": dict(STABLE), "replicas": replicas}
    if candidate is not None:
        out["candidate"] = {"model": {"uri": V2}, **candidate}
    return out


def merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """A JSON merge patch (RFC 7386), as the API server applies a status patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class Kube(FakeKube):
    """FakeKube with a deep merge of status patches, and a Deployment whose generation moves
    when its spec does (so a changed template is not rolled out until `rolled_out`)."""

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        live = copy.deepcopy(self.objects.get((manifest["kind"], manifest["metadata"]["name"])))
        body = super().apply(manifest)
        if manifest["kind"] == "Deployment":
            generation = int(((live or {}).get("metadata") or {}).get("generation", 1))
            if live is not None and live["spec"]["template"] != body["spec"]["template"]:
                generation += 1
            stored = self.objects[("Deployment", NAME)]
            stored["metadata"]["generation"] = body["metadata"]["generation"] = generation
        return body

    def patch_mlmodel_status(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str = ""
    ) -> dict[str, Any]:
        self.writes.append(("status", KIND, name, copy.deepcopy(dict(patch))))
        self.check_version(resource_version)
        merge(self.mlmodel.setdefault("status", {}), patch)
        self.mlmodel["metadata"]["resourceVersion"] = self._revision()
        return copy.deepcopy(self.mlmodel)


class Cards:
    """The candidate's card source: a card, or the error its read raises (changeable)."""

    def __init__(self) -> None:
        self.outcome: ModelCard | Exception = parse_card(card_json(SHA_B), V2)

    def __call__(self, uri: str) -> ModelCard:
        assert uri == V2, f"only the candidate's card is read (the stable is pinned): {uri}"
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class Analyzer:
    """An analysis engine stand-in: records each round, answers what the test scripted."""

    def __init__(self) -> None:
        self.rounds: list[AnalysisRound] = []
        self.next: AnalysisResult | Exception | None = None

    def __call__(self, round_: AnalysisRound) -> AnalysisResult:
        self.rounds.append(round_)
        if isinstance(self.next, Exception):
            raise self.next
        if self.next is not None:
            return self.next
        before = dict(round_.previous or {})
        fields: dict[str, Any] = {k: before[k] for k in ANALYSIS_FIELDS if k in before}
        step = int(fields.get("step", 0))
        fields.setdefault("phase", "Progressing")
        return AnalysisResult(
            str(fields["phase"]), step, fields, Health("Unknown", "NotMeasured", "m"), (), 15.0
        )


class World:
    """A Reconciler on a FakeKube and a real cache, as in test_operator_reconcile."""

    def __init__(
        self,
        settings: OperatorSettings,
        body_spec: dict[str, Any],
        analyzer: Analyzer | None = None,
        version_ready: Any = None,
    ) -> None:
        body = {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": KIND,
            "metadata": {"name": NAME, "namespace": NS, "uid": "uid-iris", "generation": 1},
            "spec": copy.deepcopy(body_spec),
        }
        self.settings = settings
        self.kube = Kube(body)
        self.cache = ObjectCache()
        self.cards = Cards()
        self.clock = Clock()
        self.reconciler = Reconciler(
            self.kube,
            self.cache,
            settings,
            reader=self.cards,
            clock=self.clock,
            analyzer=analyzer,
            version_ready=version_ready,
        )
        self.watch()

    def watch(self) -> None:
        self.cache.store(KIND, self.kube.mlmodel)
        for (kind, _), body in self.kube.objects.items():
            self.cache.store(kind, body)

    def edit(self, new_spec: dict[str, Any]) -> None:
        meta = self.kube.mlmodel["metadata"]
        meta["generation"] += 1
        meta["resourceVersion"] = self.kube._revision()
        self.kube.mlmodel["spec"] = copy.deepcopy(new_spec)
        self.watch()

    def reconcile(self) -> Outcome:
        self.kube.writes.clear()
        result = self.reconciler.reconcile_key(NS, NAME)
        assert result is not None
        self.watch()
        return result[1]

    def rolled_out(self) -> Outcome:
        """The Deployment controller finished, then the next reconcile."""
        deployment = self.kube.objects[("Deployment", NAME)]
        generation = int(deployment["metadata"].get("generation", 1)) + 1
        deployment["metadata"]["generation"] = generation
        replicas = deployment["spec"]["replicas"]
        deployment["status"] = {
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        }
        deployment["metadata"]["resourceVersion"] = self.kube._revision()
        self.watch()
        return self.reconcile()

    def status(self) -> dict[str, Any]:
        return dict(self.kube.mlmodel.get("status") or {})

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.status().get("conditions") or []}

    def deployment(self) -> dict[str, Any]:
        return self.kube.objects[("Deployment", NAME)]

    def env(self) -> dict[str, str]:
        container = self.deployment()["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value", "") for e in container["env"]}

    def deployment_applies(self) -> int:
        return sum(1 for w in self.kube.writes if w[0] == "apply" and w[1] == "Deployment")


def no_candidate_deployment(settings: OperatorSettings, body_spec: dict[str, Any]) -> Any:
    plain = {k: v for k, v in body_spec.items() if k != "candidate"}
    mlmodel = MLModel.model_validate(
        {"name": NAME, "namespace": NS, "uid": "uid-iris", "generation": 1, "spec": plain}
    )
    return render(mlmodel, settings, digest=SHA_A)[0]["spec"]["template"]


def test_without_a_candidate_status_keeps_its_exact_keys(settings: OperatorSettings) -> None:
    world = World(settings, spec())
    world.reconcile()
    world.rolled_out()
    assert set(world.status()) <= BASE_STATUS_KEYS and "candidate" not in world.status()
    assert list(world.conditions()) == BASE_CONDITIONS
    assert not any(name.startswith("MODEL_SERVER_CANDIDATE") for name in world.env())


def test_a_canary_is_rendered_and_status_follows_its_rollout(settings: OperatorSettings) -> None:
    world = World(settings, spec({"trafficPercent": 10, "stickyHeader": "X-User-Id"}))
    world.reconcile()
    env = world.env()
    assert env[contract.ENV_CANDIDATE_URI] == V2
    assert env[contract.ENV_CANDIDATE_PERCENT] == "10"
    assert env[contract.ENV_STICKY_HEADER] == "X-User-Id"
    annotations = world.deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations[CANDIDATE_DIGEST_ANNOTATION] == SHA_B  # the card's skops file
    rolling = world.status()["candidate"]
    assert rolling == {
        "mode": "canary",
        "trafficPercent": 0,  # no pod runs it yet
        "phase": "Serving",
        "stable": {"digest": SHA_A, "readyReplicas": 0},
        "candidate": {"digest": SHA_B, "readyReplicas": 0},
    }
    conditions = world.conditions()
    assert list(conditions) == [*BASE_CONDITIONS, "CandidateReady", "CandidateHealthy"]
    assert (conditions["CandidateReady"]["status"], conditions["CandidateReady"]["reason"]) == (
        "False",
        "RollingOut",
    )
    assert conditions["CandidateHealthy"]["status"] == "Unknown"
    assert conditions["CandidateHealthy"]["reason"] == "NoAnalysis"

    world.rolled_out()
    done = world.status()["candidate"]
    assert (done["trafficPercent"], done["phase"]) == (10, "Serving")
    assert done["stable"] == {"digest": SHA_A, "readyReplicas": 2}
    assert done["candidate"] == {"digest": SHA_B, "readyReplicas": 2}
    ready = world.conditions()["CandidateReady"]
    assert (ready["status"], ready["reason"]) == ("True", "CandidateRolledOut")
    assert "model_server_version_ready" in ready["message"]
    assert world.conditions()["Ready"]["status"] == "True"
    # converged: nothing more is written
    outcome = world.reconcile()
    assert outcome.status_patch == {} and world.kube.writes == []


def test_a_new_share_rolls_the_pods_and_status_reports_the_old_one_until_they_moved(
    settings: OperatorSettings,
) -> None:
    body = spec({"trafficPercent": 10})
    world = World(settings, body)
    world.reconcile()
    world.rolled_out()
    body["candidate"]["trafficPercent"] = 50
    world.edit(body)
    world.reconcile()
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "50"
    assert world.deployment()["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert world.status()["candidate"]["trafficPercent"] == 10
    world.rolled_out()
    assert world.status()["candidate"]["trafficPercent"] == 50


def test_deleting_the_candidate_rolls_the_pods_to_the_stable_alone_and_clears_status(
    settings: OperatorSettings,
) -> None:
    world = World(settings, spec({"trafficPercent": 10}))
    world.reconcile()
    world.rolled_out()
    world.edit(spec())
    outcome = world.reconcile()
    assert world.deployment()["spec"]["template"] == no_candidate_deployment(settings, spec())
    assert outcome.status_patch["candidate"] is None
    world.rolled_out()
    assert "candidate" not in world.status()
    assert list(world.conditions()) == BASE_CONDITIONS


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (CardReadError("ArtifactNotFound", "404", "no model card at this URI"), "ArtifactNotFound"),
        (parse_card(card_json(SHA_C), V2), "ArtifactDigestMismatch"),  # the pin names no file
    ],
)
def test_a_candidate_whose_card_fails_is_not_rendered_and_the_stable_serves_on(
    settings: OperatorSettings, outcome: Any, reason: str
) -> None:
    body = spec({"trafficPercent": 10})
    body["candidate"]["model"]["sha256"] = SHA_B
    world = World(settings, body)
    world.cards.outcome = outcome
    world.reconcile()
    assert world.deployment()["spec"]["template"] == no_candidate_deployment(settings, body)
    world.rolled_out()
    conditions = world.conditions()
    assert (conditions["CandidateReady"]["status"], conditions["CandidateReady"]["reason"]) == (
        "False",
        reason,
    )
    assert "Nothing of the candidate is rendered" in conditions["CandidateReady"]["message"]
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Degraded"]["status"] == "False"
    assert world.status()["candidate"]["trafficPercent"] == 0
    assert world.status()["candidate"]["candidate"] == {"readyReplicas": 0}


@pytest.mark.parametrize(
    "outcome",
    [
        CardReadError("ArtifactNotFound", "404", "no model card at this URI"),
        CardReadError("UnknownFormat", "no onnx", "no onnx file"),
    ],
)
def test_a_running_candidate_whose_artifact_is_gone_is_taken_out(
    settings: OperatorSettings, outcome: Exception
) -> None:
    world = World(settings, spec({"trafficPercent": 10}))
    world.reconcile()
    world.rolled_out()
    world.cards.outcome = outcome
    world.reconcile()
    assert contract.ENV_CANDIDATE_URI not in world.env()
    assert world.conditions()["CandidateReady"]["reason"] == outcome.reason


@pytest.mark.parametrize(
    "failure",
    [
        CardReadError("ArtifactUnreachable", "timeout"),
        CardReadError("InvalidModelCard", "bad json"),
        RuntimeError("a reader's bug"),
    ],
)
def test_an_unpinned_rendered_candidate_stays_rendered_across_a_failed_re_read(
    settings: OperatorSettings, failure: Exception
) -> None:
    analyzer = Analyzer()
    world = World(settings, spec({"analysis": ANALYSIS}), analyzer)
    analyzer.next = result("Succeeded", 2, analysisKey="k")
    world.reconcile()
    world.rolled_out()
    template = copy.deepcopy(world.deployment()["spec"]["template"])
    key = analyzer.rounds[-1].candidate_key
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "50"

    world.cards.outcome = failure
    world.reconcile()
    assert world.deployment()["spec"]["template"] == template  # no roll, no un-render
    assert world.deployment_applies() == 0
    assert analyzer.rounds[-1].candidate_key == key  # the analysis goes on where it was
    assert world.status()["candidate"]["candidate"]["digest"] == SHA_B
    ready = world.conditions()["CandidateReady"]
    assert ready["status"] == "True"
    assert "Cannot re-read the candidate's model card" in ready["message"]
    assert "keep the candidate as rendered" in ready["message"]

    world.cards.outcome = parse_card(card_json(SHA_B), V2)  # it comes back
    world.reconcile()
    assert world.deployment()["spec"]["template"] == template
    assert analyzer.rounds[-1].candidate_key == key
    assert "Cannot re-read" not in world.conditions()["CandidateReady"]["message"]


def test_a_pinned_candidates_key_and_image_hold_while_its_card_is_unreachable(
    settings: OperatorSettings,
) -> None:
    analyzer = Analyzer()
    body = spec({"analysis": ANALYSIS})
    body["model"]["format"] = "onnx"  # the stable is served from ONNX: slim if both are
    body["candidate"]["model"]["sha256"] = SHA_C  # the card's onnx file
    world = World(settings, body, analyzer)
    world.cards.outcome = parse_card(card_json(SHA_B, onnx_sha=SHA_C, onnx_agrees=True), V2)
    analyzer.next = result("Progressing", 1, analysisKey="k")
    world.reconcile()
    world.rolled_out()
    template = copy.deepcopy(world.deployment()["spec"]["template"])
    assert template["spec"]["containers"][0]["image"] == settings.slim_image
    key = analyzer.rounds[-1].candidate_key
    assert key == f"{V2}|{SHA_C}|"  # spec fields only: no format read from the card

    world.cards.outcome = CardReadError("ArtifactUnreachable", "deadline")
    world.reconcile()
    assert analyzer.rounds[-1].candidate_key == key
    assert world.deployment()["spec"]["template"] == template  # slim stays, no roll
    assert "Cannot re-read" in world.conditions()["CandidateReady"]["message"]

    world.cards.outcome = parse_card(card_json(SHA_B, onnx_sha=SHA_C, onnx_agrees=True), V2)
    world.reconcile()
    assert analyzer.rounds[-1].candidate_key == key
    assert world.deployment()["spec"]["template"] == template


def test_a_never_rendered_candidate_whose_card_cannot_be_read(settings: OperatorSettings) -> None:
    pinned = spec({"trafficPercent": 10})
    pinned["candidate"]["model"]["sha256"] = SHA_B
    world = World(settings, pinned)
    world.cards.outcome = CardReadError("ArtifactUnreachable", "no creds")
    world.reconcile()
    assert world.env()[contract.ENV_CANDIDATE_SHA256] == SHA_B  # rendered with the pin
    unpinned = World(settings, spec({"trafficPercent": 10}))
    unpinned.cards.outcome = CardReadError("ArtifactUnreachable", "no creds")
    unpinned.reconcile()
    assert contract.ENV_CANDIDATE_URI not in unpinned.env()
    assert unpinned.conditions()["CandidateReady"]["reason"] == "ArtifactUnreachable"


def test_while_the_candidates_card_is_read_the_deployment_is_left_as_it_is(
    settings: OperatorSettings,
) -> None:
    world = World(settings, spec({"trafficPercent": 10}))
    world.reconcile()
    world.rolled_out()
    before = copy.deepcopy(world.status())
    world.cards.outcome = CardPending(Future())
    body = spec({"trafficPercent": 30})
    world.edit(body)
    world.reconcile()
    assert world.deployment_applies() == 0
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "10"
    assert world.status()["candidate"] == before["candidate"]
    assert world.conditions()["CandidateReady"]["status"] == "True"
    # a new MLModel whose candidate card is being read: no Deployment until it is known
    fresh = World(settings, spec({"trafficPercent": 10}))
    fresh.cards.outcome = CardPending(Future())
    fresh.reconcile()
    assert ("Deployment", NAME) not in fresh.kube.objects
    assert fresh.conditions()["CandidateReady"]["status"] == "Unknown"
    ready = fresh.conditions()["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ReadingModelCard")
    assert "card of spec.candidate.model.uri is being read" in ready["message"]


ANALYSIS = {"steps": [10, 25, 50], "interval": "1m", "maxErrorRate": 0.01}


def test_without_an_engine_an_analysis_holds_at_the_first_step(settings: OperatorSettings) -> None:
    world = World(settings, spec({"analysis": ANALYSIS}))
    outcome = world.reconcile()
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "10"
    status = world.status()["candidate"]
    assert (status["phase"], status["step"]) == ("Progressing", 0)
    healthy = world.conditions()["CandidateHealthy"]
    assert (healthy["status"], healthy["reason"]) == ("Unknown", "AnalysisUnavailable")
    assert outcome.requeue_after is None


def result(phase: str, step: int, **fields: Any) -> AnalysisResult:
    return AnalysisResult(
        phase,
        step,
        {"phase": phase, "step": step, "message": f"{phase} {step}", **fields},
        Health("True", "BoundsHold", "ok") if phase != "Failed" else Health("False", "B", "x"),
        (("CandidateStep", f"step {step + 1}", "Normal"),),
        15.0,
    )


def test_the_analyzers_state_becomes_the_share_status_and_events(
    settings: OperatorSettings,
) -> None:
    analyzer = Analyzer()
    world = World(settings, spec({"analysis": ANALYSIS, "trafficPercent": 90}), analyzer)
    analyzer.next = result("Progressing", 0, analysisKey="k")
    outcome = world.reconcile()
    first = analyzer.rounds[-1]
    assert (first.previous, first.ready_share) == (None, None)
    assert first.candidate_key == f"{V2}|{SHA_B}|"  # unpinned: the card's digest; spec's format
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "10"  # steps[0], not trafficPercent
    assert outcome.events == (("CandidateStep", "step 1", "Normal"),)
    assert outcome.requeue_after == 15.0

    analyzer.next = result("Progressing", 0, analysisKey="k", stepStartedAt="2026-01-01T12:00:00Z")
    world.rolled_out()
    assert analyzer.rounds[-1].ready_share == 10  # every pod runs step 0's share now
    assert analyzer.rounds[-1].previous is not None
    assert analyzer.rounds[-1].previous["analysisKey"] == "k"
    status = world.status()["candidate"]
    assert status["stepStartedAt"] == "2026-01-01T12:00:00Z" and status["trafficPercent"] == 10

    analyzer.next = result("Progressing", 1, analysisKey="k", measured={"requests": 40})
    world.reconcile()
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "25"
    status = world.status()["candidate"]
    assert (status["step"], status["measured"], status["trafficPercent"]) == (
        1,
        {"requests": 40},
        10,
    )
    assert "stepStartedAt" not in status
    assert world.conditions()["CandidateHealthy"]["reason"] == "BoundsHold"

    analyzer.next = result("Failed", 1, analysisKey="k")
    world.reconcile()
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "0"
    assert world.status()["candidate"]["phase"] == "Failed"
    assert world.conditions()["CandidateHealthy"]["status"] == "False"


def test_an_analyzer_that_fails_keeps_the_state_status_carries(settings: OperatorSettings) -> None:
    analyzer = Analyzer()
    world = World(settings, spec({"analysis": ANALYSIS}), analyzer)
    analyzer.next = result("Progressing", 2, analysisKey="k")
    world.reconcile()
    analyzer.next = RuntimeError("prometheus said no")
    outcome = world.reconcile()
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "50"
    assert (world.status()["candidate"]["step"], world.status()["candidate"]["phase"]) == (
        2,
        "Progressing",
    )
    healthy = world.conditions()["CandidateHealthy"]
    assert (healthy["status"], healthy["reason"]) == ("Unknown", "AnalysisError")
    assert outcome.requeue_after == 30.0


def test_shadow_mode_renders_share_0_whatever_the_analysis_says(
    settings: OperatorSettings,
) -> None:
    analyzer = Analyzer()
    world = World(settings, spec({"analysis": ANALYSIS, "mode": "shadow"}), analyzer)
    analyzer.next = result("Succeeded", 2, analysisKey="k")
    world.reconcile()
    world.rolled_out()
    assert world.env()[contract.ENV_CANDIDATE_MODE] == "shadow"
    assert world.env()[contract.ENV_CANDIDATE_PERCENT] == "0"
    assert analyzer.rounds[-1].ready_share == 0
    assert world.status()["candidate"]["trafficPercent"] == 0
    assert world.status()["candidate"]["phase"] == "Succeeded"


def test_the_pods_own_readiness_decides_candidate_ready_when_it_is_read(
    settings: OperatorSettings,
) -> None:
    loaded: dict[str, int] = {"stable": 2, "candidate": 1}

    def version_ready(mlmodel: MLModel) -> Mapping[str, int]:
        return loaded

    world = World(settings, spec({"trafficPercent": 10}), version_ready=version_ready)
    world.reconcile()
    world.rolled_out()
    ready = world.conditions()["CandidateReady"]
    assert (ready["status"], ready["reason"]) == ("False", "CandidateNotLoaded")
    assert world.status()["candidate"]["candidate"]["readyReplicas"] == 1
    loaded["candidate"] = 2
    world.reconcile()
    ready = world.conditions()["CandidateReady"]
    assert (ready["status"], ready["reason"]) == ("True", "CandidateLoaded")


def test_the_renderer_and_the_status_use_the_one_share_function(
    settings: OperatorSettings,
) -> None:
    for fields in ({"trafficPercent": 35}, {"analysis": ANALYSIS}, {"mode": "shadow"}):
        world = World(settings, spec(fields))
        world.reconcile()
        world.rolled_out()
        mlmodel = MLModel.from_body(world.kube.mlmodel)
        assert mlmodel.spec.candidate is not None
        status = world.status()["candidate"]
        share = effective_percent(mlmodel.spec.candidate, status["phase"], status.get("step"))
        assert world.env()[contract.ENV_CANDIDATE_PERCENT] == str(share)
        assert status["trafficPercent"] == share
