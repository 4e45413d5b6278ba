"""spec.candidate (issue 17, docs/rollouts.md): the parser mirrors the CRD's rules, one pure
function gives the canary share, the candidate is rendered into the pods only when its card
checks out, and an MLModel without one renders exactly as before (no cluster)."""

from __future__ import annotations

import copy
from concurrent.futures import Future
from typing import Any

import pytest
from operator_testlib import card_json, make_mlmodel
from pydantic import ValidationError

from mlmodel_artifact import ModelCard
from mlmodel_operator import contract
from mlmodel_operator.candidate import (
    PHASE_FAILED,
    PHASE_PROGRESSING,
    PHASE_SUCCEEDED,
    CandidatePlan,
    effective_percent,
)
from mlmodel_operator.cardfetch import CardReadError
from mlmodel_operator.cards import CardPending, parse_card, resolve_candidate
from mlmodel_operator.render import render, render_deployment
from mlmodel_operator.render.meta import CANDIDATE_DIGEST_ANNOTATION, DIGEST_ANNOTATION
from mlmodel_operator.resource import (
    CANDIDATE_CREDENTIALS,
    CANDIDATE_EQUALS_MODEL,
    INTERVAL_TOO_SHORT,
    STEPS_NOT_ASCENDING,
    Candidate,
)
from mlmodel_operator.settings import OperatorSettings

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
STABLE = {"uri": "s3://models/iris/v1", "sha256": SHA_A}
V2 = "s3://models/iris/v2"
CANDIDATE_ENV = {
    contract.ENV_CANDIDATE_URI,
    contract.ENV_CANDIDATE_SHA256,
    contract.ENV_CANDIDATE_FORMAT,
    contract.ENV_CANDIDATE_VERSION,
    contract.ENV_CANDIDATE_MODE,
    contract.ENV_CANDIDATE_PERCENT,
    contract.ENV_STICKY_HEADER,
}


def spec_with(candidate: dict[str, Any], model: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"model": model or dict(STABLE), "candidate": candidate}


def candidate(**fields: Any) -> Candidate:
    parsed = make_mlmodel(spec_with({"model": {"uri": V2}, **fields})).spec.candidate
    assert parsed is not None
    return parsed


def crd_rules(crd: dict[str, Any]) -> list[dict[str, str]]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules: list[dict[str, str]] = schema["x-kubernetes-validations"]
    return rules


def candidate_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    found: dict[str, Any] = schema["properties"]["candidate"]
    return found


# --- the API and the parser


def test_the_crd_and_the_parser_refuse_a_candidate_equal_to_the_model_with_one_message(
    crd: dict[str, Any],
) -> None:
    equal, credentials = crd_rules(crd)
    assert (equal["fieldPath"], equal["message"]) == (".candidate.model", CANDIDATE_EQUALS_MODEL)
    assert credentials["message"] == CANDIDATE_CREDENTIALS
    assert all(rule["rule"].startswith("!has(self.candidate)") for rule in (equal, credentials))
    for model, cand in [
        (STABLE, {"uri": STABLE["uri"], "sha256": SHA_A}),  # same uri, same pin
        ({"uri": V2}, {"uri": V2}),  # same uri, neither pinned
    ]:
        with pytest.raises(ValidationError) as refused:
            make_mlmodel(spec_with({"model": cand}, model))
        assert CANDIDATE_EQUALS_MODEL in str(refused.value)


@pytest.mark.parametrize(
    ("model", "cand"),
    [
        (STABLE, {"uri": STABLE["uri"], "sha256": SHA_B}),  # another pin of the same uri
        (STABLE, {"uri": STABLE["uri"]}),  # the same uri, pinned on one side only
        ({"uri": V2}, {"uri": V2, "sha256": SHA_B}),
        (STABLE, {"uri": V2, "sha256": SHA_A}),  # another uri
    ],
)
def test_another_uri_or_another_pin_is_another_model(
    model: dict[str, Any], cand: dict[str, Any]
) -> None:
    parsed = make_mlmodel(spec_with({"model": cand}, model)).spec.candidate
    assert parsed is not None and parsed.model.uri == cand["uri"]


def test_the_candidate_has_the_models_schema_and_defaults(crd: dict[str, Any]) -> None:
    schema = candidate_schema(crd)
    model_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["model"]
    assert schema["properties"]["model"]["properties"] == model_schema["properties"]
    rules = schema["properties"]["model"]["x-kubernetes-validations"]
    assert [r["rule"] for r in rules] == [
        r["rule"] for r in model_schema["x-kubernetes-validations"]
    ]
    assert all(
        "spec.model" not in r["message"] or "spec.candidate.model" in r["message"] for r in rules
    )
    parsed = candidate()
    assert (parsed.mode, parsed.traffic_percent, parsed.sticky_header, parsed.analysis) == (
        "canary",
        0,
        None,
        None,
    )
    assert schema["properties"]["mode"]["enum"] == ["canary", "shadow"]


def test_the_parser_names_the_candidates_uri_in_its_uri_rules() -> None:
    with pytest.raises(ValidationError) as refused:
        make_mlmodel(spec_with({"model": {"uri": "https://user:s3cret@host/iris"}}))
    text = str(refused.value)
    assert "spec.candidate.model.uri must not carry user-info" in text
    assert "spec.candidate.model.credentialsSecret" in text and "s3cret" not in text


BAD_CANDIDATES: dict[str, tuple[dict[str, Any], str]] = {
    "percent over 100": ({"trafficPercent": 101}, "trafficPercent"),
    "negative percent": ({"trafficPercent": -1}, "trafficPercent"),
    "unknown mode": ({"mode": "blue-green"}, "mode"),
    "header with a blank": ({"stickyHeader": "X User"}, "stickyHeader"),
    "pseudo header": ({"stickyHeader": ":authority"}, "stickyHeader"),
    "steps descending": ({"analysis": {"steps": [50, 10], "interval": "1m"}}, STEPS_NOT_ASCENDING),
    "steps repeated": ({"analysis": {"steps": [10, 10], "interval": "1m"}}, STEPS_NOT_ASCENDING),
    "step 0": ({"analysis": {"steps": [0, 10], "interval": "1m"}}, "steps"),
    "step over 100": ({"analysis": {"steps": [10, 101], "interval": "1m"}}, "steps"),
    "no steps": ({"analysis": {"steps": [], "interval": "1m"}}, "steps"),
    "eleven steps": ({"analysis": {"steps": list(range(1, 12)), "interval": "1m"}}, "steps"),
    "interval 9s": ({"analysis": {"steps": [10], "interval": "9s"}}, INTERVAL_TOO_SHORT),
    "interval in days": ({"analysis": {"steps": [10], "interval": "1d"}}, "interval"),
    "error rate over 1": (
        {"analysis": {"steps": [10], "interval": "1m", "maxErrorRate": 1.5}},
        "maxErrorRate",
    ),
    "latency ratio 0": (
        {"analysis": {"steps": [10], "interval": "1m", "maxLatencyRatio": 0}},
        "maxLatencyRatio",
    ),
    "agreement over 1": (
        {"analysis": {"steps": [10], "interval": "1m", "minAgreement": 2}},
        "minAgreement",
    ),
}


@pytest.mark.parametrize(
    ("fields", "said"), BAD_CANDIDATES.values(), ids=list(BAD_CANDIDATES.keys())
)
def test_the_parser_refuses_what_the_crd_refuses(fields: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationError) as refused:
        make_mlmodel(spec_with({"model": {"uri": V2}, **fields}))
    assert said in str(refused.value)


def test_the_candidates_credentials_are_the_models(crd: dict[str, Any]) -> None:
    secret = {**STABLE, "credentialsSecret": "s3"}
    same = {"model": {"uri": V2, "credentialsSecret": "s3"}}
    assert make_mlmodel(spec_with(same, secret)).spec.candidate is not None
    for model in (STABLE, {**STABLE, "credentialsSecret": "other"}):
        with pytest.raises(ValidationError, match="spec.candidate.model.credentialsSecret"):
            make_mlmodel(spec_with(same, model))


def test_the_crds_analysis_rules_are_bounded_for_cel_cost(crd: dict[str, Any]) -> None:
    analysis = candidate_schema(crd)["properties"]["analysis"]
    steps, interval = analysis["properties"]["steps"], analysis["properties"]["interval"]
    assert (steps["minItems"], steps["maxItems"]) == (1, 10)
    assert (steps["items"]["minimum"], steps["items"]["maximum"]) == (1, 100)
    assert steps["x-kubernetes-validations"][0]["message"] == STEPS_NOT_ASCENDING
    assert interval["pattern"] == "^[0-9]+(s|m|h)$" and interval["maxLength"] == 8
    assert interval["x-kubernetes-validations"][0]["message"] == INTERVAL_TOO_SHORT
    assert analysis["required"] == ["steps", "interval"]
    sticky = candidate_schema(crd)["properties"]["stickyHeader"]
    assert sticky["maxLength"] == 128


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("2m", 120), ("1h", 3600)])
def test_intervals_read_in_seconds(text: str, seconds: int) -> None:
    parsed = candidate(analysis={"steps": [10], "interval": text}).analysis
    assert parsed is not None and parsed.interval_seconds == seconds


# --- the effective share


ANALYSED = {"analysis": {"steps": [10, 25, 50, 100], "interval": "1m"}}


@pytest.mark.parametrize(
    ("fields", "phase", "step", "share"),
    [
        ({"trafficPercent": 10}, None, None, 10),  # without analysis: trafficPercent
        ({"trafficPercent": 10}, PHASE_FAILED, 3, 10),  # a stale analysis state is ignored
        ({"trafficPercent": 30, "mode": "shadow"}, None, None, 0),  # shadow: always 0
        ({**ANALYSED, "mode": "shadow"}, PHASE_SUCCEEDED, 3, 0),
        ({**ANALYSED, "trafficPercent": 80}, None, None, 10),  # not started: the first step
        (ANALYSED, PHASE_PROGRESSING, 0, 10),
        (ANALYSED, PHASE_PROGRESSING, 1, 25),
        (ANALYSED, PHASE_PROGRESSING, 9, 100),  # steps shortened under it: the last
        (ANALYSED, PHASE_SUCCEEDED, 3, 100),
        (ANALYSED, PHASE_SUCCEEDED, 1, 100),  # Succeeded: the last step's
        (ANALYSED, PHASE_FAILED, 2, 0),
    ],
)
def test_the_effective_share(
    fields: dict[str, Any], phase: str | None, step: int | None, share: int
) -> None:
    assert effective_percent(candidate(**fields), phase, step) == share


# --- rendering


def env_list(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in env_list(deployment)}


def annotations_of(deployment: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = deployment["spec"]["template"]["metadata"].get("annotations", {})
    return found


def test_without_a_plan_a_candidate_renders_byte_for_byte_like_no_candidate(
    settings: OperatorSettings,
) -> None:
    plain = make_mlmodel({"model": dict(STABLE)})
    with_candidate = make_mlmodel(spec_with({"model": {"uri": V2}, "trafficPercent": 10}))
    assert render(with_candidate, settings) == render(plain, settings)
    assert render(with_candidate, settings, candidate=None) == render(plain, settings)
    assert not CANDIDATE_ENV & set(env_of(render_deployment(plain, settings)))


def test_a_planned_candidate_is_rendered_into_the_server_env_and_template(
    settings: OperatorSettings,
) -> None:
    mlmodel = make_mlmodel(
        spec_with(
            {
                "model": {"uri": V2, "sha256": SHA_B, "format": "onnx"},
                "trafficPercent": 10,
                "stickyHeader": "X-User-Id",
            }
        )
    )
    deployment = render_deployment(mlmodel, settings, SHA_A, candidate=CandidatePlan(10, SHA_B))
    env = env_list(deployment)
    names = [e["name"] for e in env]
    at = names.index(contract.ENV_CANDIDATE_URI)
    assert names[at : at + 7] == [
        contract.ENV_CANDIDATE_URI,
        contract.ENV_CANDIDATE_SHA256,
        contract.ENV_CANDIDATE_FORMAT,
        contract.ENV_CANDIDATE_VERSION,
        contract.ENV_CANDIDATE_MODE,
        contract.ENV_CANDIDATE_PERCENT,
        contract.ENV_STICKY_HEADER,
    ]
    assert env_of(deployment) | {} == {
        **env_of(render_deployment(make_mlmodel({"model": dict(STABLE)}), settings)),
        contract.ENV_CANDIDATE_URI: V2,
        contract.ENV_CANDIDATE_SHA256: SHA_B,
        contract.ENV_CANDIDATE_FORMAT: "onnx",
        contract.ENV_CANDIDATE_VERSION: "candidate",
        contract.ENV_CANDIDATE_MODE: "canary",
        contract.ENV_CANDIDATE_PERCENT: "10",
        contract.ENV_STICKY_HEADER: "X-User-Id",
    }
    assert annotations_of(deployment) == {
        DIGEST_ANNOTATION: SHA_A,
        CANDIDATE_DIGEST_ANNOTATION: SHA_B,
    }
    # a new share or candidate rolls the pods: no pod is taken out before a new one is ready
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_an_unpinned_candidate_gets_an_empty_pin_and_its_card_digest_only_marks_the_template(
    settings: OperatorSettings,
) -> None:
    mlmodel = make_mlmodel(spec_with({"model": {"uri": V2}, "mode": "shadow"}))
    deployment = render_deployment(mlmodel, settings, SHA_A, candidate=CandidatePlan(0, SHA_C))
    pin = next(e for e in env_list(deployment) if e["name"] == contract.ENV_CANDIDATE_SHA256)
    assert pin == {"name": contract.ENV_CANDIDATE_SHA256}  # an env entry beats envFrom
    env = env_of(deployment)
    assert contract.ENV_CANDIDATE_FORMAT not in env and contract.ENV_STICKY_HEADER not in env
    assert (env[contract.ENV_CANDIDATE_MODE], env[contract.ENV_CANDIDATE_PERCENT]) == (
        "shadow",
        "0",
    )
    assert annotations_of(deployment)[CANDIDATE_DIGEST_ANNOTATION] == SHA_C
    assert SHA_C not in env.values()


def test_a_new_share_changes_only_the_percent_and_rolls_through_the_template(
    settings: OperatorSettings,
) -> None:
    mlmodel = make_mlmodel(spec_with({"model": {"uri": V2, "sha256": SHA_B}}))
    at_10 = render_deployment(mlmodel, settings, SHA_A, candidate=CandidatePlan(10, SHA_B))
    at_25 = render_deployment(mlmodel, settings, SHA_A, candidate=CandidatePlan(25, SHA_B))
    changed = {k for k in env_of(at_10) if env_of(at_10)[k] != env_of(at_25)[k]}
    assert changed == {contract.ENV_CANDIDATE_PERCENT}
    assert copy.deepcopy(at_10)["spec"]["strategy"] == at_25["spec"]["strategy"]


@pytest.mark.parametrize(
    ("stable_format", "plan_format", "spec_format", "image"),
    [
        ("onnx", "onnx", None, "slim:1"),  # both from ONNX: slim
        ("onnx", None, "onnx", "slim:1"),  # the candidate's spec names onnx
        ("onnx", "skops", None, "full:1"),  # the candidate needs scikit-learn
        ("onnx", None, None, "full:1"),  # not known: the image that serves any file
        ("skops", "onnx", None, "full:1"),
    ],
)
def test_the_slim_image_only_when_both_versions_are_served_from_onnx(
    stable_format: str, plan_format: str | None, spec_format: str | None, image: str
) -> None:
    custom = OperatorSettings(default_image="full:1", slim_image="slim:1")
    model: dict[str, Any] = {"uri": V2, "sha256": SHA_B}
    if spec_format:
        model["format"] = spec_format
    mlmodel = make_mlmodel(spec_with({"model": model}))
    plan = CandidatePlan(5, SHA_B, plan_format)
    deployment = render_deployment(mlmodel, custom, SHA_A, stable_format, candidate=plan)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
    # no candidate rendered: the stable alone decides, as before
    alone = render_deployment(mlmodel, custom, SHA_A, stable_format)
    expected = "slim:1" if stable_format == "onnx" else "full:1"
    assert alone["spec"]["template"]["spec"]["containers"][0]["image"] == expected


def test_a_pvc_candidate_is_read_from_its_claim_mounted_read_only(
    settings: OperatorSettings,
) -> None:
    other = make_mlmodel(spec_with({"model": {"uri": "pvc://v2-claim/iris/v2"}}))
    deployment = render_deployment(other, settings, SHA_A, candidate=CandidatePlan(10))
    pod = deployment["spec"]["template"]["spec"]
    assert env_of(deployment)[contract.ENV_CANDIDATE_URI] == "file:///mnt/candidate/iris/v2"
    assert {"name": "candidate-model", "mountPath": "/mnt/candidate", "readOnly": True} in pod[
        "containers"
    ][0]["volumeMounts"]
    assert {
        "name": "candidate-model",
        "persistentVolumeClaim": {"claimName": "v2-claim", "readOnly": True},
    } in pod["volumes"]
    # on the stable's own claim: its mount serves both
    same = make_mlmodel(
        spec_with({"model": {"uri": "pvc://models/iris/v2"}}, {"uri": "pvc://models/iris/v1"})
    )
    deployment = render_deployment(same, settings, None, candidate=CandidatePlan(10))
    assert env_of(deployment)[contract.ENV_CANDIDATE_URI] == "file:///mnt/models/iris/v2"
    assert [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]] == [
        "scratch",
        "model",
    ]


# --- resolving the candidate's card


class Cards:
    """A card source: URI -> card, or the error its read raises."""

    def __init__(self, found: dict[str, ModelCard | Exception]) -> None:
        self.found = found
        self.reads: list[str] = []

    def __call__(self, uri: str) -> ModelCard:
        self.reads.append(uri)
        outcome = self.found[uri]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def v2_card(onnx: bool = True) -> ModelCard:
    body = card_json(SHA_B, onnx_sha=SHA_C if onnx else None, onnx_agrees=True if onnx else None)
    return parse_card(body, V2)


def resolve(cand: dict[str, Any], outcome: ModelCard | Exception) -> Any:
    mlmodel = make_mlmodel(spec_with({"model": {"uri": V2, **cand}}))
    return resolve_candidate(mlmodel, Cards({V2: outcome}))


def test_no_candidate_resolves_to_none_and_reads_nothing() -> None:
    cards = Cards({})
    assert resolve_candidate(make_mlmodel({"model": dict(STABLE)}), cards) is None
    assert cards.reads == []


def test_an_unpinned_candidate_serves_the_file_its_card_chooses() -> None:
    onnx = resolve({}, v2_card())
    assert (onnx.digest, onnx.model_format, onnx.rendered) == (SHA_C, "onnx", True)
    skops = resolve({"format": "skops"}, v2_card())
    assert (skops.digest, skops.model_format) == (SHA_B, "skops")


@pytest.mark.parametrize(
    ("pin", "fmt", "served"),
    [(SHA_B, None, "skops"), (SHA_C, None, "onnx"), (SHA_C, "onnx", "onnx")],
)
def test_a_pinned_candidates_card_is_read_and_the_pin_names_the_file(
    pin: str, fmt: str | None, served: str
) -> None:
    fields = {"sha256": pin, **({"format": fmt} if fmt else {})}
    resolved = resolve(fields, v2_card())
    assert (resolved.digest, resolved.model_format, resolved.rendered) == (pin, served, True)


@pytest.mark.parametrize(
    ("fields", "outcome", "reason"),
    [
        ({"sha256": "d" * 64}, v2_card(), "ArtifactDigestMismatch"),  # tampered or wrong pin
        ({"sha256": SHA_B, "format": "onnx"}, v2_card(), "ArtifactDigestMismatch"),
        (
            {},
            CardReadError("ArtifactNotFound", "404", "no model card at this URI"),
            "ArtifactNotFound",
        ),
        ({}, CardReadError("InvalidModelCard", "bad json"), "InvalidModelCard"),
        ({}, CardReadError("ArtifactUnreachable", "timeout"), "ArtifactUnreachable"),
        ({"sha256": SHA_B}, CardReadError("ArtifactNotFound", "404"), "ArtifactNotFound"),
        ({"format": "onnx"}, v2_card(onnx=False), "UnknownFormat"),
    ],
)
def test_a_missing_tampered_or_unreadable_candidate_is_not_rendered(
    fields: dict[str, Any], outcome: ModelCard | Exception, reason: str
) -> None:
    resolved = resolve(fields, outcome)
    assert not resolved.rendered and not resolved.hold
    assert resolved.problem.reason == reason
    assert "Nothing of the candidate is rendered" in resolved.problem.message
    assert not resolved.problem.degrades  # the stable is fine


def test_a_card_being_read_or_a_full_read_queue_holds_the_deployment() -> None:
    future: Future[Any] = Future()
    pending = resolve({}, CardPending(future))
    assert (pending.hold, pending.pending, pending.rendered) == (True, future, False)
    busy = resolve({}, CardReadError("ArtifactReadBusy", "256 queued"))
    assert (busy.hold, busy.rendered, busy.problem.reason) == (True, False, "ArtifactReadBusy")


def test_unread_sources_are_rendered_with_the_pin_alone() -> None:
    not_listed = resolve({"sha256": SHA_B}, CardReadError("ArtifactSourceNotAllowed", "x"))
    assert (not_listed.digest, not_listed.rendered) == (SHA_B, True)
    # the operator cannot reach it (no credentials for the store, say); the pods can
    unreachable = resolve({"sha256": SHA_B}, CardReadError("ArtifactUnreachable", "no creds"))
    assert (unreachable.digest, unreachable.model_format, unreachable.rendered) == (
        SHA_B,
        None,
        True,
    )
    assert unreachable.problem is None and not unreachable.hold
    cards = Cards({})
    pvc = make_mlmodel(spec_with({"model": {"uri": "pvc://c/iris/v2", "format": "onnx"}}))
    resolved = resolve_candidate(pvc, cards)
    assert resolved is not None and (resolved.digest, resolved.model_format) == (None, "onnx")
    assert cards.reads == []
