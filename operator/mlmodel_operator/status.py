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

from mlmodel_operator.render.meta import selector_string
from mlmodel_operator.render.service import service_url
from mlmodel_operator.resource import MLModel

CONDITION_TYPES: Final = ("Ready", "Available", "Progressing", "Degraded")
_PULL_FAILURES: Final = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
_CONFIG_FAILURES: Final = frozenset({"CreateContainerConfigError", "CreateContainerError"})
# The model server's one start-up failure line: "model load failed: [ArtifactDigestMismatch] …"
_LOAD_FAILURE: Final = re.compile(r"model load failed: \[([A-Z][A-Za-z]+)\]")
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
class Observed:
    """What the operator saw this round, beyond the MLModel itself."""

    deployment: Mapping[str, Any] | None = None
    digest: str | None = None
    model_format: str | None = None  # of the file the pods load, when the operator knows it
    problems: Sequence[Problem] = field(default_factory=tuple)


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
    conditions = stamp_conditions(
        derive_conditions(mlmodel, observed, rollout),
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
    digest = observed.digest or previous.get("modelDigest")
    if digest:
        status["modelDigest"] = digest
    runtime = runtime_of(observed)
    if runtime:
        status["runtime"] = runtime
    return status


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
