"""PURE status derivation: observed children in, MLModel status out.

Conventions: metav1.Condition shape; lastTransitionTime moves only when a condition's status
flips; one CamelCase reason per cause; messages say what to do. No I/O here: the caller passes
what it observed and the current time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from mlmodel_operator import contract
from mlmodel_operator.candidate import (
    ANALYSIS_FIELDS,
    CANDIDATE_HEALTHY,
    CANDIDATE_READY,
    NO_ANALYSIS,
    NOT_SERVED,
    PHASE_SERVING,
    AnalysisResult,
)
from mlmodel_operator.render.meta import CANDIDATE_DIGEST_ANNOTATION, selector_string
from mlmodel_operator.render.service import service_url
from mlmodel_operator.resource import MLModel

CONDITION_TYPES: Final = ("Ready", "Available", "Progressing", "Degraded")
_PULL_FAILURES: Final = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
_CONFIG_FAILURES: Final = frozenset({"CreateContainerConfigError", "CreateContainerError"})
# The model server's one start-up failure line: "model load failed: [ArtifactDigestMismatch] …".
# The reason becomes a condition's reason: bounded (the CRD refuses one over 1024 characters,
# and a status patch refused for it would leave status stuck), so a longer one is not taken.
_LOAD_FAILURE: Final = re.compile(r"model load failed: \[([A-Z][A-Za-z]{0,62})\]")
# pydantic ends an error's location with the union member it tried (Quantity is int | str).
_UNION_MEMBERS: Final = frozenset({"int", "str"})
_FIELDS_NAMED: Final = 5


@dataclass(frozen=True)
class Problem:
    """Why the model is degraded: a CamelCase reason and an actionable sentence.

    `blocks_ready` is False for problems that leave the running pods serving as they should
    (the artifact's card could not be re-read: the pods keep the last known digest).
    `degrades` is False for a note, not a fault (the card's source is not one the operator
    reads): it is shown as Degraded=False's reason and message when nothing degrades.
    """

    reason: str
    message: str
    blocks_ready: bool = True
    degrades: bool = True


@dataclass(frozen=True)
class CandidateObserved:
    """What the operator knows of spec.candidate this round.

    `rendered`: it is in the pod template wanted this round; else `problem` says why not (its
    card is missing, tampered or unreadable), or `hold` is True (its card's outcome is not
    known yet: the Deployment was left as it is and status keeps what it said). `digest`: the
    one marking the template (None: unknown). `uri_in_pod`: MODEL_SERVER_CANDIDATE_URI.
    `analysis`: this round's analysis (None without spec.candidate.analysis, or when it was not
    evaluated). `loaded`: ready pods per role ("stable", "candidate") as the pods report them
    (model_server_version_ready); None: not read, derived from the Deployment instead.
    `note`: its card could not be re-read this round and it stays as rendered; CandidateReady's
    message says so.
    """

    rendered: bool
    uri_in_pod: str
    digest: str | None = None
    problem: Problem | None = None
    hold: bool = False
    analysis: AnalysisResult | None = None
    loaded: Mapping[str, int] | None = None
    note: Problem | None = None  # a failed card re-read that kept it rendered as it was


@dataclass(frozen=True)
class Observed:
    """What the operator saw this round, beyond the MLModel itself."""

    deployment: Mapping[str, Any] | None = None
    digest: str | None = None
    model_format: str | None = None  # of the file the pods load, when the operator knows it
    problems: Sequence[Problem] = field(default_factory=tuple)
    candidate: CandidateObserved | None = None  # None: no spec.candidate
    # False when the pods are being moved to another URI whose digest is not known: status's
    # last modelDigest was the old URI's and is dropped instead of kept.
    keep_known_digest: bool = True


@dataclass(frozen=True)
class Rollout:
    """Replica counts of the Deployment, against what the MLModel wants."""

    desired: int
    replicas: int
    ready: int
    updated: int
    available: int
    current: bool

    @property
    def complete(self) -> bool:
        """The Deployment saw the latest spec and every pod is updated and available."""
        counts = (self.replicas, self.updated, self.available, self.ready)
        return self.current and all(count == self.desired for count in counts)


def rollout_of(mlmodel: MLModel, deployment: Mapping[str, Any]) -> Rollout:
    """Read replica counts off a Deployment."""
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    desired = int(spec.get("replicas", 1)) if mlmodel.autoscaled else mlmodel.spec.replicas
    return Rollout(
        desired=desired,
        replicas=int(status.get("replicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        available=int(status.get("availableReplicas", 0)),
        current=int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 1)),
    )


def deployment_problem(deployment: Mapping[str, Any]) -> Problem | None:
    """A failure the Deployment controller reports (quota, progress deadline)."""
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        message = str(cond.get("message", ""))
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            if "exceeded quota" in message:
                return Problem(
                    "InsufficientQuota",
                    f"Pods cannot be created: {message}. Raise the namespace's ResourceQuota "
                    "or lower spec.server.resources.",
                )
            return Problem("ReplicaFailure", f"Pods cannot be created: {message}")
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Problem(
                "ProgressDeadlineExceeded",
                f"The rollout stalled: {message}. Check the pods' events and logs.",
            )
    return None


def pod_problem(pods: Sequence[Mapping[str, Any]]) -> Problem | None:
    """The first pod failure a user must act on: image pull, bad config, crash loop.

    A crash is described from the container's termination message, which the kubelet fills
    with the log tail (FallbackToLogsOnError), so the operator needs no pods/log access.
    """
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue  # a pod on its way out (rollout, scale-down) exits by design
        unschedulable = _unschedulable(pod)
        if unschedulable:
            return Problem(
                "Unschedulable",
                f"Pod {name} cannot be scheduled: {unschedulable}. Check spec.model.uri's "
                "claim, spec.nodeSelector, spec.tolerations and spec.server.resources.",
            )
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (status.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            detail = waiting.get("message", "")
            if reason in _PULL_FAILURES:
                return Problem(
                    "ImagePullFailed",
                    f"Pod {name} cannot pull image {status.get('image')}: {detail or reason}. "
                    "Check spec.server.image and that the image is available to the node.",
                )
            if reason in _CONFIG_FAILURES:
                return Problem("ContainerConfigInvalid", f"Pod {name} cannot start: {detail}.")
            if reason == "CrashLoopBackOff" or _failed_exit(status):
                output = crash_output(status)
                return _crash_problem(name, int(status.get("restartCount", 0)), output)
    return None


def crash_output(container_status: Mapping[str, Any]) -> str:
    """What a crashed container said: its termination message, which the kubelet fills with the
    tail of its log (terminationMessagePolicy FallbackToLogsOnError)."""
    last = (container_status.get("lastState") or {}).get("terminated") or {}
    now = (container_status.get("state") or {}).get("terminated") or {}
    return str(now.get("message") or last.get("message") or "").strip()


def _failed_exit(container_status: Mapping[str, Any]) -> bool:
    terminated = (container_status.get("state") or {}).get("terminated") or {}
    return bool(terminated) and int(terminated.get("exitCode", 0)) != 0


def _crash_problem(name: str, restarts: int, output: str) -> Problem:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        load_failure = _LOAD_FAILURE.search(line)
        if load_failure:  # the server names the artifact error, e.g. a digest mismatch
            return Problem(
                load_failure.group(1),
                f"Pod {name} cannot load the model ({restarts} restarts): {line}",
            )
    last = lines[-1] if lines else "(no log output)"
    return Problem(
        "CrashLooping", f"Pod {name} is crash-looping ({restarts} restarts); last log line: {last}"
    )


def _unschedulable(pod: Mapping[str, Any]) -> str:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message", "")).strip().rstrip(".")
    return ""


def _condition(kind: str, status: bool, reason: str, message: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }


def _ready_and_available(
    mlmodel: MLModel, rollout: Rollout | None, degraded: Problem | None
) -> list[dict[str, str]]:
    if rollout is None:
        why = degraded or Problem(
            "DeploymentMissing", f"Deployment {mlmodel.name} does not exist yet."
        )
        return [
            _condition("Ready", False, why.reason, why.message),
            _condition("Available", False, why.reason, why.message),
        ]
    counts = f"{rollout.available}/{rollout.desired} replicas are available"
    if rollout.desired == 0:
        message = "spec.replicas is 0: no pod serves the model; scale up to serve."
        return [
            _condition("Ready", False, "ScaledToZero", message),
            _condition("Available", False, "ScaledToZero", message),
        ]
    available = (
        _condition("Available", True, "ReplicasAvailable", f"{counts}.")
        if rollout.available > 0
        else _condition("Available", False, "NoReplicasAvailable", f"{counts}.")
    )
    if degraded is not None:
        ready = _condition("Ready", False, degraded.reason, degraded.message)
    elif rollout.complete:
        ready = _condition(
            "Ready",
            True,
            "AllReplicasReady",
            f"All {rollout.desired} replicas run generation "
            f"{mlmodel.generation} and are available.",
        )
    else:
        ready = _condition(
            "Ready",
            False,
            "RollingOut",
            f"{rollout.updated}/{rollout.desired} replicas updated, {counts}; "
            "waiting for the rollout to finish.",
        )
    return [ready, available]


def _progressing(rollout: Rollout | None, degraded: Problem | None) -> dict[str, str]:
    if degraded is not None and degraded.reason == "ProgressDeadlineExceeded":
        return _condition("Progressing", False, degraded.reason, degraded.message)
    if degraded is not None and not degraded.degrades:  # waiting for something, no fault
        return _condition("Progressing", True, degraded.reason, degraded.message)
    if rollout is not None and rollout.complete:
        return _condition("Progressing", False, "RolloutComplete", "The latest spec is rolled out.")
    return _condition(
        "Progressing",
        True,
        "RollingOut",
        "Pods are being created or replaced to match the latest spec.",
    )


def _degraded(problem: Problem | None, note: Problem | None = None) -> dict[str, str]:
    if problem is None and note is not None:
        return _condition("Degraded", False, note.reason, note.message)
    if problem is None:
        return _condition("Degraded", False, "AsExpected", "No problem detected.")
    return _condition("Degraded", True, problem.reason, problem.message)


def derive_conditions(
    mlmodel: MLModel, observed: Observed, rollout: Rollout | None
) -> list[dict[str, str]]:
    """Ready, Available, Progressing, Degraded (without timestamps)."""
    problems = list(observed.problems)
    if observed.deployment is not None:
        from_deployment = deployment_problem(observed.deployment)
        if from_deployment is not None:
            problems.append(from_deployment)
    first = next((p for p in problems if p.degrades), None)
    note = next((p for p in problems if not p.degrades), None)
    blocking = next((p for p in problems if p.blocks_ready), None)
    ready, available = _ready_and_available(mlmodel, rollout, blocking)
    return [ready, available, _progressing(rollout, blocking), _degraded(first, note)]


def stamp_conditions(
    conditions: Sequence[Mapping[str, str]],
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """Add observedGeneration and lastTransitionTime, keeping the old time unless status flipped."""
    before = {str(c.get("type")): c for c in previous}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    stamped = []
    for cond in conditions:
        old = before.get(cond["type"])
        unchanged = old is not None and old.get("status") == cond["status"]
        moved = str(old.get("lastTransitionTime")) if unchanged and old else stamp
        stamped.append({**cond, "observedGeneration": generation, "lastTransitionTime": moved})
    return stamped


def known_digest(observed: Observed, previous: Mapping[str, Any]) -> str | None:
    """The digest the stable pods serve: this round's, else status's last unless the pods are
    being moved to another URI (`keep_known_digest`)."""
    if observed.digest:
        return observed.digest
    return previous.get("modelDigest") if observed.keep_known_digest else None


def derive_status(
    mlmodel: MLModel,
    observed: Observed,
    previous: Mapping[str, Any],
    *,
    cluster_domain: str,
    now: datetime,
) -> dict[str, Any]:
    """The whole status subresource for this round (camelCase, as stored)."""
    rollout = None if observed.deployment is None else rollout_of(mlmodel, observed.deployment)
    wanted = derive_conditions(mlmodel, observed, rollout)
    candidate_status: dict[str, Any] | None = None
    if mlmodel.spec.candidate is not None and observed.candidate is not None:
        candidate_status, candidate_conditions = derive_candidate(
            mlmodel, observed, rollout, previous
        )
        wanted += candidate_conditions
    conditions = stamp_conditions(
        wanted,
        previous.get("conditions") or [],
        mlmodel.generation,
        now,
    )
    empty = Rollout(desired=0, replicas=0, ready=0, updated=0, available=0, current=False)
    counts = rollout or empty
    desired = counts.desired if rollout else mlmodel.spec.replicas
    status: dict[str, Any] = {
        "observedGeneration": mlmodel.generation,
        "replicas": counts.replicas,
        "readyReplicas": counts.ready,
        "updatedReplicas": counts.updated,
        "availableReplicas": counts.available,
        "replicaSummary": f"{counts.ready}/{desired}",
        "selector": selector_string(mlmodel),
        "url": service_url(mlmodel, cluster_domain),
        "conditions": conditions,
    }
    digest = known_digest(observed, previous)
    if digest:
        status["modelDigest"] = digest
    runtime = runtime_of(observed)
    if runtime:
        status["runtime"] = runtime
    if candidate_status is not None:
        status["candidate"] = candidate_status
    return status


# --- the candidate (issue 17, docs/rollouts.md) ---


def template_env(deployment: Mapping[str, Any] | None) -> dict[str, str]:
    """The server container's env values in a Deployment's pod template (valueFrom: "")."""
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    containers: Sequence[Mapping[str, Any]] = (template.get("spec") or {}).get("containers") or []
    if not containers:
        return {}
    return {
        str(env.get("name")): str(env.get("value", ""))
        for env in containers[0].get("env") or []
        if isinstance(env, Mapping)
    }


def template_share(
    deployment: Mapping[str, Any] | None, uri_in_pod: str, digest: str | None
) -> int | None:
    """The candidate share in a Deployment's pod template when the template serves this
    candidate (its URI and, when known, its digest); None when it serves none or another."""
    env = template_env(deployment)
    if env.get(contract.ENV_CANDIDATE_URI) != uri_in_pod:
        return None
    template = ((deployment or {}).get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    if digest is not None and annotations.get(CANDIDATE_DIGEST_ANNOTATION) != digest:
        return None
    try:
        return int(env.get(contract.ENV_CANDIDATE_PERCENT, "0"))
    except ValueError:
        return None


def ready_share(
    mlmodel: MLModel, deployment: Mapping[str, Any] | None, uri_in_pod: str, digest: str | None
) -> int | None:
    """The share at which every pod is updated and ready with this candidate (the template
    serves it and its rollout is complete); None while pods roll or it serves another one."""
    if deployment is None or not rollout_of(mlmodel, deployment).complete:
        return None
    return template_share(deployment, uri_in_pod, digest)


def derive_candidate(
    mlmodel: MLModel, observed: Observed, rollout: Rollout | None, previous: Mapping[str, Any]
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """status.candidate and the CandidateReady and CandidateHealthy conditions (unstamped)."""
    spec = mlmodel.spec.candidate
    seen = observed.candidate
    assert spec is not None and seen is not None
    before = previous.get("candidate")
    before = dict(before) if isinstance(before, Mapping) else None
    if seen.hold:
        return _held(mlmodel, seen, previous, before)
    share = _running_share(mlmodel, observed, rollout, seen, before)
    status: dict[str, Any] = {"mode": spec.mode, "trafficPercent": share}
    if spec.analysis is None:
        status["phase"] = PHASE_SERVING
        health = NO_ANALYSIS
    elif seen.analysis is not None:
        fields = seen.analysis.fields
        status.update({key: fields[key] for key in ANALYSIS_FIELDS if key in fields})
        health = seen.analysis.health
    else:  # not rendered: keep where the analysis was, until it can go on
        kept = {key: before[key] for key in ANALYSIS_FIELDS if before and key in before}
        status.update(kept or {"phase": "Progressing", "step": 0})
        health = NOT_SERVED
    stable_ready, candidate_ready = _ready_per_version(mlmodel, observed, rollout, seen)
    status["stable"] = _version(known_digest(observed, previous), stable_ready)
    status["candidate"] = _version(seen.digest, candidate_ready)
    ready = _candidate_ready(mlmodel, observed, rollout, seen, candidate_ready)
    if seen.note is not None and seen.problem is None:
        ready["message"] = f"{ready['message']} {seen.note.message}"
    healthy = _condition(CANDIDATE_HEALTHY, True, health.reason, health.message)
    healthy["status"] = health.status
    return status, [ready, healthy]


def _version(digest: Any, ready: int) -> dict[str, Any]:
    out: dict[str, Any] = {"digest": str(digest)} if digest else {}
    out["readyReplicas"] = ready
    return out


def _held(
    mlmodel: MLModel,
    seen: CandidateObserved,
    previous: Mapping[str, Any],
    before: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """While the candidate's card is being read: status says what it said before."""
    spec = mlmodel.spec.candidate
    assert spec is not None
    kept = {
        str(c.get("type")): {k: str(c[k]) for k in ("type", "status", "reason", "message")}
        for c in previous.get("conditions") or []
        if c.get("type") in (CANDIDATE_READY, CANDIDATE_HEALTHY)
    }
    why = seen.problem or Problem(
        "ReadingModelCard",
        "The candidate's model card is being read; the pods are left as they are.",
    )
    unknown = {"type": CANDIDATE_READY, "status": "Unknown", "reason": why.reason}
    ready = kept.get(CANDIDATE_READY) or {**unknown, "message": why.message}
    health = NO_ANALYSIS if spec.analysis is None else Problem("ReadingModelCard", why.message)
    healthy = kept.get(CANDIDATE_HEALTHY) or {
        "type": CANDIDATE_HEALTHY,
        "status": "Unknown",
        "reason": health.reason,
        "message": health.message,
    }
    status = before or {"mode": spec.mode, "trafficPercent": 0}
    if "phase" not in status:
        status["phase"] = PHASE_SERVING if spec.analysis is None else "Progressing"
    return status, [ready, healthy]


def _running_share(
    mlmodel: MLModel,
    observed: Observed,
    rollout: Rollout | None,
    seen: CandidateObserved,
    before: Mapping[str, Any] | None,
) -> int:
    """The share the pods run now: the template's once its rollout is complete; while it rolls,
    what status said before (the pods have not all moved); 0 when no pod serves it."""
    spec = mlmodel.spec.candidate
    if spec is None or spec.mode == "shadow" or observed.deployment is None:
        return 0
    share = template_share(observed.deployment, seen.uri_in_pod, seen.digest)
    if share is None:
        return 0
    if rollout is not None and rollout.complete:
        return share
    kept = (before or {}).get("trafficPercent")
    return kept if isinstance(kept, int) and not isinstance(kept, bool) else 0


def _ready_per_version(
    mlmodel: MLModel, observed: Observed, rollout: Rollout | None, seen: CandidateObserved
) -> tuple[int, int]:
    """Ready pods per version. From the pods' model_server_version_ready when read; otherwise
    from the Deployment: every ready pod serves the stable (readiness waits for it), and the
    candidate counts the ready pods that surely run the template holding it (all of them once
    its rollout is complete; while it rolls, at least ready - old pods)."""
    if rollout is None:
        return 0, 0
    if seen.loaded is not None:
        return int(seen.loaded.get("stable", 0)), int(seen.loaded.get("candidate", 0))
    stable = rollout.ready
    if (
        not seen.rendered
        or template_share(observed.deployment, seen.uri_in_pod, seen.digest) is None
    ):
        return stable, 0
    if rollout.complete:
        return stable, rollout.ready
    return stable, max(0, rollout.ready - max(0, rollout.replicas - rollout.updated))


def _candidate_ready(
    mlmodel: MLModel,
    observed: Observed,
    rollout: Rollout | None,
    seen: CandidateObserved,
    candidate_ready: int,
) -> dict[str, str]:
    """CandidateReady: every updated pod loaded the candidate (from the pods' metrics when
    read; otherwise: every pod runs the template that holds it and is ready)."""
    if seen.problem is not None:
        return _condition(CANDIDATE_READY, False, seen.problem.reason, seen.problem.message)
    if rollout is None:
        message = f"Deployment {mlmodel.name} does not exist yet."
        return _condition(CANDIDATE_READY, False, "DeploymentMissing", message)
    if rollout.desired == 0:
        message = "spec.replicas is 0: no pod serves the candidate."
        return _condition(CANDIDATE_READY, False, "ScaledToZero", message)
    carried = template_share(observed.deployment, seen.uri_in_pod, seen.digest) is not None
    if not (carried and rollout.complete):
        message = (
            f"{rollout.updated}/{rollout.desired} pods updated to the template with the "
            "candidate; waiting for the rollout to finish."
        )
        return _condition(CANDIDATE_READY, False, "RollingOut", message)
    if seen.loaded is None:
        message = (
            f"All {rollout.desired} pods run the template with the candidate and are ready "
            "(derived from the Deployment; whether each pod loaded it, it reports in "
            'model_server_version_ready{role="candidate"}).'
        )
        return _condition(CANDIDATE_READY, True, "CandidateRolledOut", message)
    if candidate_ready >= rollout.desired:
        message = f"All {rollout.desired} pods loaded the candidate (model_server_version_ready)."
        return _condition(CANDIDATE_READY, True, "CandidateLoaded", message)
    message = (
        f"{candidate_ready}/{rollout.desired} pods loaded the candidate "
        "(model_server_version_ready); the others answer from the stable. See their logs, or "
        "GET /v2/models/<name>/versions/candidate/ready on a pod, for why."
    )
    return _condition(CANDIDATE_READY, False, "CandidateNotLoaded", message)


def runtime_of(observed: Observed) -> dict[str, str]:
    """status.runtime: the image in the Deployment's pod template (what its pods run once it
    rolled out) and the format of the model file they load (omitted when unknown: a pinned
    digest without spec.model.format is the primary's or whichever file it names)."""
    runtime: dict[str, str] = {}
    if observed.deployment is not None:
        template = observed.deployment.get("spec", {}).get("template", {})
        containers = template.get("spec", {}).get("containers") or [{}]
        image = containers[0].get("image")
        if image:
            runtime["image"] = str(image)
    if observed.model_format:
        runtime["modelFormat"] = observed.model_format
    return runtime


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as the user wrote it: `spec.server.env[0].name` (the models
    validate by alias, so the names are the camelCase ones of the API)."""
    parts = list(loc)
    if len(parts) > 1 and parts[-1] in _UNION_MEMBERS:
        parts.pop()
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(the object)"


def invalid_spec_problem(errors: Sequence[Mapping[str, Any]]) -> Problem:
    """Why the operator cannot parse an MLModel, from pydantic's `ValidationError.errors()`:
    the fields at fault (at most five named) and what is wrong with each."""
    found: dict[str, str] = {}
    for error in errors:
        found.setdefault(field_path(error.get("loc") or ()), str(error.get("msg", "invalid")))
    named = "; ".join(f"{path}: {msg}" for path, msg in list(found.items())[:_FIELDS_NAMED])
    more = f" (and {len(found) - _FIELDS_NAMED} more)" if len(found) > _FIELDS_NAMED else ""
    return Problem(
        "InvalidSpec",
        f"The operator cannot use this spec: {named}{more}. Fix the spec (a field this operator "
        "does not know needs a newer operator); until then the children are left as they are.",
    )


def degraded_patch(
    previous: Mapping[str, Any], problem: Problem, *, generation: int, now: datetime
) -> dict[str, Any]:
    """A status patch that sets Degraded to `problem` and leaves every other field as it is.

    For an MLModel the operator cannot parse: nothing new is known about its children, so
    Ready, Available, Progressing, the counts and status.observedGeneration (the generation
    last acted on) keep what they said. The Degraded condition's own observedGeneration is the
    generation it was set for. lastTransitionTime follows `stamp_conditions`; the patch is
    empty when Degraded already says exactly this.
    """
    before = [dict(c) for c in previous.get("conditions") or []]
    (degraded,) = stamp_conditions([_degraded(problem)], before, generation, now)
    conditions = [degraded if c.get("type") == "Degraded" else c for c in before]
    if not any(c.get("type") == "Degraded" for c in before):
        conditions.append(degraded)
    return status_patch(previous, {**previous, "conditions": conditions})


def status_patch(previous: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning `previous` into `desired`; empty when nothing changed. (A merge
    patch merges objects: a key gone from a nested object, like status.runtime's, is nulled.)"""
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        old = previous.get(key)
        if old == value:
            continue
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            patch[key] = status_patch(old, value)
        else:
            patch[key] = value
    for key in previous:
        if key not in desired and key != "kopf":
            patch[key] = None
    return patch
