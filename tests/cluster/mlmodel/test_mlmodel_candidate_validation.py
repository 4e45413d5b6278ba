"""The API server itself refuses bad spec.candidate fields (issue 17; OpenAPI schema + CEL in
crds/mlmodel.yaml) with a message naming the field, accepts good ones with their defaults, keeps
status.candidate's fields, and shows the Candidate and Phase columns."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from mlmodel_harness import SHA_A, Api

from devcluster.cluster import Cluster
from mlmodel_operator.resource import (
    CANDIDATE_CREDENTIALS,
    CANDIDATE_EQUALS_MODEL,
    INTERVAL_TOO_SHORT,
    STEPS_NOT_ASCENDING,
)

pytestmark = pytest.mark.cluster

SHA_B = "b" * 64
MODEL = {"uri": "s3://models/iris/v1", "sha256": SHA_A}
V2 = {"uri": "s3://models/iris/v2", "sha256": SHA_B}


@pytest.fixture
def api(installed: Cluster, module_ns: str) -> Api:
    """The CRD installed, no operator: objects made here are only read back."""
    return Api(installed, module_ns)


def manifest(candidate: dict[str, Any], name: str = "bad", **spec: Any) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "MLModel",
            "metadata": {"name": name},
            "spec": {"model": dict(MODEL), "candidate": candidate, **spec},
        }
    )


def analysis(**fields: Any) -> dict[str, Any]:
    return {"model": dict(V2), "analysis": {"steps": [10, 25], "interval": "1m", **fields}}


BAD: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("no candidate model", {"trafficPercent": 5}, {}, "spec.candidate.model: Required value"),
    (
        "candidate ftp uri",
        {"model": {"uri": "ftp://host/iris"}},
        {},
        "spec.candidate.model.uri",
    ),
    (
        "candidate user-info",
        {"model": {"uri": "https://user:pw@host/iris"}},
        {},
        "spec.candidate.model.uri must not carry user-info",
    ),
    (
        "candidate short sha",
        {"model": {"uri": "s3://models/iris/v2", "sha256": "abc"}},
        {},
        "spec.candidate.model.sha256",
    ),
    (
        "candidate format",
        {"model": {"uri": "s3://models/iris/v2", "format": "pickle"}},
        {},
        "spec.candidate.model.format",
    ),
    ("percent over 100", {"model": V2, "trafficPercent": 101}, {}, "spec.candidate.trafficPercent"),
    ("negative percent", {"model": V2, "trafficPercent": -1}, {}, "spec.candidate.trafficPercent"),
    ("unknown mode", {"model": V2, "mode": "mirror"}, {}, "spec.candidate.mode"),
    (
        "same uri and pin",
        {"model": dict(MODEL)},
        {},
        CANDIDATE_EQUALS_MODEL,
    ),
    (
        "same uri, neither pinned",
        {"model": {"uri": "s3://models/iris/v1"}},
        {"model": {"uri": "s3://models/iris/v1"}},
        CANDIDATE_EQUALS_MODEL,
    ),
    (
        "another secret",
        {"model": {**V2, "credentialsSecret": "other"}},
        {},
        CANDIDATE_CREDENTIALS,
    ),
    (
        "header with a blank",
        {"model": V2, "stickyHeader": "X User"},
        {},
        "spec.candidate.stickyHeader",
    ),
    (
        "header too long",
        {"model": V2, "stickyHeader": "x" * 129},
        {},
        "spec.candidate.stickyHeader",
    ),
    (
        "steps descending",
        {"model": V2, "analysis": {"steps": [50, 10], "interval": "1m"}},
        {},
        STEPS_NOT_ASCENDING,
    ),
    (
        "steps repeated",
        {"model": V2, "analysis": {"steps": [10, 10], "interval": "1m"}},
        {},
        STEPS_NOT_ASCENDING,
    ),
    (
        "step 0",
        {"model": V2, "analysis": {"steps": [0, 10], "interval": "1m"}},
        {},
        "spec.candidate.analysis.steps[0]",
    ),
    (
        "step over 100",
        {"model": V2, "analysis": {"steps": [10, 101], "interval": "1m"}},
        {},
        "spec.candidate.analysis.steps[1]",
    ),
    (
        "eleven steps",
        {"model": V2, "analysis": {"steps": list(range(1, 12)), "interval": "1m"}},
        {},
        "spec.candidate.analysis.steps",
    ),
    (
        "no steps",
        {"model": V2, "analysis": {"steps": [], "interval": "1m"}},
        {},
        "spec.candidate.analysis.steps",
    ),
    (
        "interval 9s",
        {"model": V2, "analysis": {"steps": [10], "interval": "9s"}},
        {},
        INTERVAL_TOO_SHORT,
    ),
    (
        "interval in days",
        {"model": V2, "analysis": {"steps": [10], "interval": "2d"}},
        {},
        "spec.candidate.analysis.interval",
    ),
    (
        "no interval",
        {"model": V2, "analysis": {"steps": [10]}},
        {},
        "spec.candidate.analysis.interval: Required value",
    ),
    ("error rate 2", analysis(maxErrorRate=2), {}, "spec.candidate.analysis.maxErrorRate"),
    ("latency ratio 0", analysis(maxLatencyRatio=0), {}, "spec.candidate.analysis.maxLatencyRatio"),
    ("agreement -1", analysis(minAgreement=-1), {}, "spec.candidate.analysis.minAgreement"),
    ("unknown field", {"model": V2, "percent": 5}, {}, 'unknown field "spec.candidate.percent"'),
]


@pytest.mark.parametrize(
    ("candidate", "spec", "field"),
    [(c, s, f) for _, c, s, f in BAD],
    ids=[case for case, _, _, _ in BAD],
)
def test_a_bad_candidate_is_refused_naming_the_field(
    api: Api, candidate: dict[str, Any], spec: dict[str, Any], field: str
) -> None:
    result = api.cluster.kubectl(
        "apply", "-n", api.ns, "-f", "-", input=manifest(candidate, **spec), check=False
    )
    assert result.returncode != 0, f"accepted: {candidate}"
    assert field in result.stderr, result.stderr
    if field in (CANDIDATE_EQUALS_MODEL, STEPS_NOT_ASCENDING, INTERVAL_TOO_SHORT):
        assert "spec.candidate" in result.stderr.split(field)[0], result.stderr  # the fieldPath


GOOD: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "another pin of the same uri": ({"model": {**MODEL, "sha256": SHA_B}}, {}),
    "the same uri, one side pinned": ({"model": {"uri": MODEL["uri"]}}, {}),
    "the models secret": (
        {"model": {**V2, "credentialsSecret": "s3"}},
        {"model": {**MODEL, "credentialsSecret": "s3"}},
    ),
    "a full analysis": (
        {
            "model": V2,
            "mode": "shadow",
            "stickyHeader": "X-User-Id",
            "analysis": {
                "steps": [1, 10, 25, 50, 100],
                "interval": "10s",
                "maxErrorRate": 0.01,
                "maxLatencyRatio": 1.5,
                "minAgreement": 0.9,
            },
        },
        {},
    ),
    "an hour's interval": ({"model": V2, "analysis": {"steps": [100], "interval": "1h"}}, {}),
}


@pytest.mark.parametrize(("candidate", "spec"), GOOD.values(), ids=GOOD.keys())
def test_good_candidates_are_accepted_with_their_defaults(
    api: Api, candidate: dict[str, Any], spec: dict[str, Any]
) -> None:
    out = api.cluster.kubectl(
        "apply", "-n", api.ns, "--dry-run=server", "-o", "yaml", "-f", "-",
        input=manifest(candidate, name="good", **spec),
    ).stdout  # fmt: skip
    accepted = yaml.safe_load(out)["spec"]["candidate"]
    assert accepted["mode"] == candidate.get("mode", "canary")
    assert accepted["trafficPercent"] == candidate.get("trafficPercent", 0)
    assert accepted["model"] == candidate["model"]


@pytest.mark.fake_pods  # waits for Ready pods (kwok's fake nodes)
def test_status_candidate_is_kept_and_shown_in_the_candidate_and_phase_columns(api: Api) -> None:
    api.cluster.kubectl(
        "apply", "-n", api.ns, "-f", "-", input=manifest({"model": V2, "trafficPercent": 25},
                                                         name="canary"),
    )  # fmt: skip
    status = {
        "candidate": {
            "mode": "canary",
            "trafficPercent": 25,
            "phase": "Progressing",
            "step": 1,
            "stepStartedAt": "2026-01-01T12:01:07Z",
            "evaluatedAt": "2026-01-01T12:01:37Z",
            "analysisKey": "0123456789abcdef",
            "message": "step 2 of 4: 25 % since 12:01:07",
            "stable": {"digest": SHA_A, "readyReplicas": 2},
            "candidate": {"digest": SHA_B, "readyReplicas": 2},
            "measured": {
                "requests": 412,
                "errorRate": "0.000",
                "latencyRatio": "1.02",
                "agreement": "0.97",
            },
        }
    }
    # dry run: an operator reconciling this namespace (the cluster may be shared) cannot race it
    out = api.cluster.kubectl(
        "patch", "-n", api.ns, "mlmodel", "canary", "--subresource=status", "--type=merge",
        "--dry-run=server", "-o", "json", "-p", json.dumps({"status": status}),
    ).stdout  # fmt: skip
    assert json.loads(out)["status"]["candidate"] == status["candidate"]  # nothing pruned
    table = api.cluster.kubectl("get", "-n", api.ns, "mlm", "canary").stdout.splitlines()
    header = table[0].split()
    assert header == ["NAME", "READY", "REPLICAS", "MODEL", "CANDIDATE", "PHASE", "URL", "AGE"]
    api.cluster.kubectl("delete", "-n", api.ns, "mlm", "canary", "--wait=false")
