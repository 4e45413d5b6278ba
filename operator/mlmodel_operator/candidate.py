"""Candidate rollouts (issue 17, docs/rollouts.md): the PURE rules that the renderer, the status
and the analysis share, and the seam the analysis engine plugs into.

- `effective_percent` is the one answer to "which canary share do the pods run": the renderer
  puts it in MODEL_SERVER_CANDIDATE_PERCENT, status reports it, and the analysis judges the
  step it names.
- `Analyzer` is what an analysis engine provides: one call per reconcile of an MLModel whose
  candidate has `analysis` and is rendered. It gets the `status.candidate` the last reconcile
  wrote (its own fields included: the state is carried there between reconciles, nowhere
  else) and the share every pod runs now, and returns an `AnalysisResult`: the phase and step
  (hence the share to render), the analysis fields of `status.candidate`, the CandidateHealthy
  condition, the Events to post and when to be called again. `without_engine` stands in while
  no engine is wired.

No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from mlmodel_operator.resource import Candidate, MLModel

PHASE_SERVING: Final = "Serving"  # without analysis
PHASE_PROGRESSING: Final = "Progressing"
PHASE_SUCCEEDED: Final = "Succeeded"
PHASE_FAILED: Final = "Failed"
ANALYSIS_PHASES: Final = (PHASE_PROGRESSING, PHASE_SUCCEEDED, PHASE_FAILED)
CANDIDATE_READY: Final = "CandidateReady"
CANDIDATE_HEALTHY: Final = "CandidateHealthy"
# The fields of status.candidate an analysis writes (the operator adds mode, trafficPercent,
# stable and candidate). stepStartedAt is when every pod ran the step's share and was ready.
ANALYSIS_FIELDS: Final = (
    "phase",
    "step",
    "stepStartedAt",
    "evaluatedAt",
    "message",
    "measured",
    "analysisKey",
)


@dataclass(frozen=True)
class Health:
    """The CandidateHealthy condition's status, reason and message."""

    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str


NO_ANALYSIS: Final = Health(
    "Unknown", "NoAnalysis", "spec.candidate.analysis is not set: no bound is judged."
)
NOT_SERVED: Final = Health(
    "Unknown",
    "CandidateNotServed",
    "The candidate is not rendered into the pods: see CandidateReady.",
)


@dataclass(frozen=True)
class CandidatePlan:
    """What the pods are given of spec.candidate this round: the effective share, the digest
    that marks the pod template (the pin, else the card's; None: unknown) and the format of the
    file the pods load (None: the operator cannot tell). No plan: nothing of it is rendered."""

    percent: int
    digest: str | None = None
    model_format: str | None = None


@dataclass(frozen=True)
class AnalysisRound:
    """What an Analyzer is given.

    `mlmodel`: spec.candidate.analysis holds the steps, interval and bounds. `previous`: the
    status.candidate the last reconcile wrote (None: none), where the analysis keeps its state.
    `candidate_key`: changes whenever what the pods load as the candidate does (URI, digest,
    format): a state for another key starts over. `ready_share`: the share at which every pod
    is updated and ready with this candidate (None while pods roll or the template serves
    something else). `now`: timezone-aware.
    """

    mlmodel: MLModel
    previous: Mapping[str, Any] | None
    candidate_key: str
    ready_share: int | None
    now: datetime


@dataclass(frozen=True)
class AnalysisResult:
    """What an Analyzer decided: `phase` and `step` (the share to render follows from them,
    `effective_percent`), `fields` of status.candidate (ANALYSIS_FIELDS, camelCase), the
    CandidateHealthy condition, Events (reason, message, type) and the seconds until the
    MLModel should be reconciled again (None: no need)."""

    phase: str
    step: int
    fields: Mapping[str, Any]
    health: Health
    events: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    requeue_after: float | None = None


Analyzer = Callable[[AnalysisRound], AnalysisResult]


def without_engine(round_: AnalysisRound) -> AnalysisResult:
    """The stand-in while no analysis engine is wired: the first step, held, and said so."""
    message = (
        "step 1: held at the first step: this operator runs no analysis engine, so no bound "
        "is judged and no step advances"
    )
    fields = {"phase": PHASE_PROGRESSING, "step": 0, "message": message}
    health = Health("Unknown", "AnalysisUnavailable", message)
    return AnalysisResult(PHASE_PROGRESSING, 0, fields, health)


def effective_percent(
    candidate: Candidate, phase: str | None = None, step: int | None = None
) -> int:
    """The canary share the pods must run: 0 in shadow mode; trafficPercent without analysis;
    with it, the share of `step` (an index into analysis.steps) while Progressing, the last
    step's after Succeeded and 0 after Failed (no phase yet: the first step's)."""
    if candidate.mode == "shadow":
        return 0
    analysis = candidate.analysis
    if analysis is None:
        return candidate.traffic_percent
    if phase == PHASE_FAILED:
        return 0
    if phase == PHASE_SUCCEEDED:
        return analysis.steps[-1]
    index = max(0, min(step or 0, len(analysis.steps) - 1))
    return analysis.steps[index]
