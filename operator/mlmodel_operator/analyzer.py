"""The analysis engine behind the reconciler's seam (`candidate.Analyzer`): `analysis.decide`
fed by a metrics source (`analysis_metrics`), one call per reconcile of an MLModel whose
candidate has `analysis` and is rendered.

    Reconciler(..., analyzer=analyzer_from_settings(settings, cache))

The state travels in `status.candidate` (`AnalysisRound.previous` in, `AnalysisResult.fields`
out); the metrics are read only when an evaluation is due (every interval / 4, at least 5 s),
and a source never raises, so an unreadable Prometheus or pod makes the step wait, not the
reconcile fail.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from mlmodel_operator.analysis import Analysis, MeasureResult, Rollout, decide, state_from_status
from mlmodel_operator.analysis_metrics import (
    MetricReads,
    MetricsSource,
    Scope,
    scrape_targets,
    source_from_settings,
)
from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.candidate import AnalysisResult, AnalysisRound, Analyzer
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings

ScopeOf = Callable[[MLModel], Scope]
"""Whose metrics an MLModel's analysis reads: its namespace and name, and its pods to scrape."""


def metrics_analyzer(source: MetricsSource, scope_of: ScopeOf) -> Analyzer:
    """An Analyzer reading `source` for the MLModel `scope_of` names."""

    def analyze(round_: AnalysisRound) -> AnalysisResult:
        mlmodel = round_.mlmodel
        candidate = mlmodel.spec.candidate
        if candidate is None or candidate.analysis is None:
            raise ValueError("analyze() is for candidates with spec.candidate.analysis")
        rollout = Rollout(
            Analysis.from_spec(candidate.analysis), candidate.mode, round_.candidate_key
        )

        def measure(since: datetime) -> MeasureResult:
            return source.measure(scope_of(mlmodel), since)

        decision = decide(
            rollout,
            state_from_status(round_.previous),
            ready_share=round_.ready_share,
            measure=measure,
            now=round_.now,
        )
        event = decision.event
        return AnalysisResult(
            phase=decision.phase,
            step=decision.state.step,
            fields=decision.status(),
            health=decision.health,
            events=() if event is None else ((event.reason, event.message, event.type),),
            requeue_after=decision.requeue_after,
        )

    return analyze


def cache_scope(cache: ObjectCache) -> ScopeOf:
    """Scopes from the operator's own watch cache: the MLModel's Deployment and pods (the
    pods' /metrics are read only at addresses listed there, see `scrape_targets`)."""

    def scope_of(mlmodel: MLModel) -> Scope:
        namespace, name = mlmodel.namespace, mlmodel.name
        deployment = cache.get("Deployment", namespace, name)
        if deployment is None:
            return Scope(namespace, name)
        return Scope(namespace, name, scrape_targets(deployment, cache.pods(namespace, name)))

    return scope_of


def analyzer_from_settings(
    settings: OperatorSettings, cache: ObjectCache, reads: MetricReads | None = None
) -> Analyzer:
    """Prometheus (MLOP_PROMETHEUS_URL) when set, else the pods' /metrics from the cache (read
    through `reads`)."""
    return metrics_analyzer(source_from_settings(settings, reads), cache_scope(cache))
