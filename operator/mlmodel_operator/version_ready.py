"""The reconciler's `version_ready` hook: which versions the pods loaded, as they report it.

    Reconciler(..., version_ready=version_ready_from_cache(cache))

A candidate that fails to load never makes a pod unready (the stable answers instead), so the
Deployment cannot say whether the candidate is served; each pod says it in its
`model_server_version_ready{version,role}` gauge (docs/rollouts.md). This hook reads that gauge
from every ready pod of the Deployment's current template (`analysis_metrics.scrape_targets`,
the pods and their IPs from the operator's own watch cache; `read_version_ready` bounds the
reads) and counts the pods per role. status.py turns the counts into `CandidateReady`
`CandidateLoaded` / `CandidateNotLoaded` and the per-version `readyReplicas`.

It reads only when the answer means something and costs nothing on most reconciles:

- only with `spec.candidate`, once the cached Deployment's rollout is complete (observed its
  latest generation, every pod updated, available and ready), its template carries this
  candidate (its URI, and its pin when pinned), and the cache lists exactly as many ready pods
  of that template as the Deployment counts ready (a pod list that lags would undercount);
- one answer per MLModel, kept while its pods are the same (the Deployment's generation, and
  each pod's name, IP, port and container restarts: a new template, a new, replaced, restarted
  or unready pod reads again) and for at most `max_age` seconds (30);
- after a failed read (or a failed analysis read of the same pods: the operator's pod reads
  share `analysis_metrics.POD_BACKOFF`), none for that MLModel for the back-off (30 s), even
  when its pods changed: a user churning pods cannot buy a read per event, and a pod that
  hangs costs one bounded read (2 s a pod, 5 s in all) per back-off;
- only when `analysis_metrics.MetricReads` has a slot: at most one pod read per namespace at once,
  and a few in all (shared with the analysis), so one namespace's slow pods cannot hold every
  reconcile worker. Without a slot the last answer for the same pods stands, or None.

None (status derives readiness from the Deployment, as without the hook) in every other case:
nothing to read yet, or any pod could not be read. The hook never raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mlmodel_operator.analysis_metrics import (
    BUDGET_SECONDS,
    POD_BACKOFF,
    Backoff,
    MetricReads,
    PodTarget,
    read_version_ready,
    scrape_targets,
    slow_read,
)
from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.render.deployment import candidate_uri_in_pod
from mlmodel_operator.resource import MLModel
from mlmodel_operator.status import rollout_of, template_share

LOG = logging.getLogger("mlmodel_operator.version_ready")

MAX_AGE_SECONDS: Final = 30.0

ReadPods = Callable[[str, Sequence[PodTarget]], Mapping[str, int] | None]
"""Reads the pods of one namespace: ready pods per role, or None (read_version_ready)."""

PodSet = tuple[int, tuple[tuple[str, str, int, int], ...]]
"""What an answer holds for: the Deployment's generation and each pod (name, IP, port,
container restarts)."""


@dataclass(frozen=True)
class _Answer:
    pods: PodSet
    at: float
    counts: Mapping[str, int] | None


class PodVersionReadiness:
    """`VersionReadiness` from the watch cache's Deployment and pods, answers cached per
    MLModel (see the module's docstring). Thread-safe."""

    def __init__(
        self,
        cache: ObjectCache,
        *,
        read: ReadPods = read_version_ready,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        reads: MetricReads | None = None,
    ) -> None:
        self.cache = cache
        self.reads = reads if reads is not None else MetricReads()
        self.read = read
        self.max_age = max_age
        self.clock = clock
        self.backoff = backoff if backoff is not None else Backoff(max_age, clock=clock)
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], _Answer] = {}

    def __call__(self, mlmodel: MLModel) -> dict[str, int] | None:
        """Ready pods per role ("stable", "candidate"), or None: not read, or unreadable."""
        try:
            return self._ready(mlmodel)
        except Exception as exc:  # never raise: status derives readiness from the Deployment
            LOG.warning(
                "MLModel %s/%s: version readiness not read: %r",
                mlmodel.namespace,
                mlmodel.name,
                exc,
            )
            return None

    def _ready(self, mlmodel: MLModel) -> dict[str, int] | None:
        candidate = mlmodel.spec.candidate
        namespace, name = mlmodel.namespace, mlmodel.name
        if candidate is None:
            return None
        deployment = self.cache.get("Deployment", namespace, name)
        uri = candidate_uri_in_pod(mlmodel)
        if deployment is None or uri is None:
            return None
        rollout = rollout_of(mlmodel, deployment)
        if rollout.desired == 0 or not rollout.complete:
            return None  # while pods roll the Deployment's answer is RollingOut anyway
        if template_share(deployment, uri, candidate.model.sha256) is None:
            return None  # the template serves no candidate, or another one
        pods = self.cache.pods(namespace, name)
        targets = scrape_targets(deployment, pods)
        if len(targets) != rollout.ready:
            return None  # the cache's pods lag behind the Deployment's status
        pod_set = _pod_set(deployment, targets, pods)
        key = (namespace, name)
        now = self.clock()
        with self._lock:
            kept = self._answers.get(key)
        last = kept if kept is not None and kept.pods == pod_set else None  # for these pods
        if last is not None and now - last.at < self.max_age:
            return _copy(last.counts)
        standing = last.counts if last is not None else None  # what stands when not read now
        if self.backoff.waiting(namespace, name):
            # a read failed lately (maybe the analysis'): not again yet. The last answer for
            # these pods still stands, however old: dropping it would make CandidateReady
            # flip to "derived from the Deployment" and back at every back-off
            return _copy(standing)
        with self.reads.slot(namespace) as free:
            if not free:  # another read of this namespace's pods, or enough reads, run
                return _copy(standing)
            started = time.monotonic()
            counts = self.read(namespace, targets)
        counts = None if counts is None else {role: int(n) for role, n in counts.items()}
        if counts is None or slow_read(started, len(targets), BUDGET_SECONDS):
            self.backoff.failed(namespace, name)  # slow pods hold a worker: not again soon
        horizon = self.max_age + self.backoff.seconds  # kept through a back-off, as above
        with self._lock:
            for old in [k for k, a in self._answers.items() if now - a.at >= horizon]:
                del self._answers[old]  # MLModels gone, or not read lately
            self._answers[key] = _Answer(pod_set, now, counts)
        return _copy(counts)


def _copy(counts: Mapping[str, int] | None) -> dict[str, int] | None:
    return None if counts is None else dict(counts)


def _pod_set(
    deployment: Mapping[str, Any], targets: Sequence[PodTarget], pods: Sequence[Mapping[str, Any]]
) -> PodSet:
    restarts: dict[str, int] = {}
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        count = sum(int(s.get("restartCount") or 0) for s in statuses)
        restarts[str((pod.get("metadata") or {}).get("name", ""))] = count
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    return generation, tuple((t.name, t.ip, t.port, restarts.get(t.name, 0)) for t in targets)


def version_ready_from_cache(
    cache: ObjectCache, reads: MetricReads | None = None
) -> PodVersionReadiness:
    """The reconciler's `version_ready` hook, reading the pods the watch cache lists (through
    `reads`, shared with the analysis)."""
    return PodVersionReadiness(cache, backoff=POD_BACKOFF, reads=reads)
