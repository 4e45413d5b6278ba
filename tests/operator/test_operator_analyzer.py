"""The analysis engine behind the reconciler's seam (mlmodel_operator.analyzer): a rollout
walked through `candidate.Analyzer` calls, the state carried only in the fields it returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from operator_testlib import make_mlmodel

from mlmodel_operator.analysis import Measurement, MeasureResult
from mlmodel_operator.analysis_metrics import PodTarget, Scope
from mlmodel_operator.analyzer import cache_scope, metrics_analyzer
from mlmodel_operator.candidate import (
    ANALYSIS_FIELDS,
    AnalysisResult,
    AnalysisRound,
    effective_percent,
)
from mlmodel_operator.resource import MLModel

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GOOD = Measurement(100, 0, 0.01, 0.01, 100, 99)


def mlmodel(mode: str = "canary", **analysis: Any) -> MLModel:
    return make_mlmodel(
        {
            "model": {"uri": "s3://models/iris/v1", "sha256": "a" * 64},
            "candidate": {
                "model": {"uri": "s3://models/iris/v2"},
                "mode": mode,
                "analysis": {"steps": [10, 50], "interval": "20s", "maxErrorRate": 0.01} | analysis,
            },
        }
    )


class FakeSource:
    def __init__(self) -> None:
        self.calls: list[tuple[Scope, datetime]] = []
        self.result: MeasureResult = GOOD

    def measure(self, scope: Scope, since: datetime) -> MeasureResult:
        self.calls.append((scope, since))
        return self.result


def scope_of(model: MLModel) -> Scope:
    return Scope(model.namespace, model.name, (PodTarget("iris-1", "10.1.0.7", 8080),))


def test_a_rollout_walks_through_the_seam_to_succeeded() -> None:
    model = mlmodel()
    source = FakeSource()
    analyze = metrics_analyzer(source, scope_of)
    previous: dict[str, Any] | None = None
    seen: list[tuple[float, str, int, int]] = []

    def round_at(seconds: float, ready_share: int | None) -> AnalysisResult:
        nonlocal previous
        result = analyze(
            AnalysisRound(
                mlmodel=model,
                previous=previous,
                candidate_key="s3://models/iris/v2|bbbb|onnx",
                ready_share=ready_share,
                now=T0 + timedelta(seconds=seconds),
            )
        )
        assert set(result.fields) <= set(ANALYSIS_FIELDS)
        previous = dict(result.fields)  # what status.candidate carries to the next round
        percent = effective_percent(model.spec.candidate, result.phase, result.step)  # type: ignore[arg-type]
        seen.append((seconds, result.phase, result.step, percent))
        return result

    first = round_at(0, None)
    assert first.events == (("CandidateStep", "step 1 of 2: 10 %: analysis starts", "Normal"),)
    assert first.health.status == "Unknown" and first.requeue_after == 5
    round_at(3, 10)  # every pod ready at 10 %: the step starts
    for t in (8, 13, 18):
        holding = round_at(t, 10)
        assert holding.health.status == "True" and holding.events == ()
    advanced = round_at(23, 10)  # 20 s after the start
    assert advanced.events[0][0] == "CandidateStep"
    round_at(30, 50)
    for t in (35, 40, 45):
        round_at(t, 50)
    done = round_at(50, 50)
    assert done.events[0][0] == "CandidateSucceeded" and done.requeue_after is None
    assert "move spec.candidate.model to spec.model to finish" in done.fields["message"]
    assert set(done.fields) == {"phase", "step", "message", "measured", "analysisKey"}
    assert [(phase, percent) for _, phase, _, percent in seen] == (
        [("Progressing", 10)] * 5 + [("Progressing", 50)] * 5 + [("Succeeded", 50)]
    )
    # the source was asked for this MLModel's scope, since each step's start
    assert {scope for scope, _ in source.calls} == {scope_of(model)}
    assert {since for _, since in source.calls} == {
        T0 + timedelta(seconds=3),
        T0 + timedelta(seconds=30),
    }


def test_a_failed_candidate_runs_at_share_0() -> None:
    model = mlmodel()
    source = FakeSource()
    source.result = Measurement(100, 30, 0.01, 0.01, 100, 99)
    analyze = metrics_analyzer(source, scope_of)
    fields: dict[str, Any] | None = None
    for seconds, ready in ((0, None), (1, 10), (6, 10)):
        result = analyze(AnalysisRound(model, fields, "k", ready, T0 + timedelta(seconds=seconds)))
        fields = dict(result.fields)
    assert result.phase == "Failed" and result.health.status == "False"
    assert effective_percent(model.spec.candidate, result.phase, result.step) == 0  # type: ignore[arg-type]
    assert result.events == (("CandidateFailed", result.fields["message"], "Warning"),)
    assert "maxErrorRate: 0.3 > 0.01" in result.fields["message"]


def test_a_model_without_analysis_is_not_the_analyzers() -> None:
    model = make_mlmodel(
        {"model": {"uri": "s3://models/iris/v1"}, "candidate": {"model": {"uri": "s3://m/v2"}}}
    )
    with pytest.raises(ValueError, match="analysis"):
        metrics_analyzer(FakeSource(), scope_of)(AnalysisRound(model, None, "k", None, T0))


def test_cache_scope_scrapes_the_pods_the_cache_lists_for_the_deployment() -> None:
    template_env = [{"name": "MODEL_SERVER_CANDIDATE_PERCENT", "value": "10"}]
    deployment = {
        "metadata": {"name": "iris"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "env": template_env,
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                }
            }
        },
    }
    pod = {
        "metadata": {
            "name": "iris-1",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "iris-7c", "controller": True}],
        },
        "spec": {"containers": [{"name": "server", "env": template_env}]},
        "status": {"podIP": "10.1.0.7", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    asked: list[tuple[str, ...]] = []

    def get(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        asked.append((kind, namespace, name))
        return deployment if name == "iris" else None

    def pods(namespace: str, owner: str) -> list[dict[str, Any]]:
        asked.append(("pods", namespace, owner))
        return [pod]

    cache = SimpleNamespace(get=get, pods=pods)
    scope = cache_scope(cache)(mlmodel())  # type: ignore[arg-type]
    assert scope == Scope("models", "iris", (PodTarget("iris-1", "10.1.0.7", 8080),))
    assert asked == [("Deployment", "models", "iris"), ("pods", "models", "iris")]
    other = make_mlmodel(
        {"model": {"uri": "s3://models/iris/v1"}, "candidate": {"model": {"uri": "s3://m/v2"}}},
        name="gone",
    )
    assert cache_scope(cache)(other) == Scope("models", "gone")  # type: ignore[arg-type]
