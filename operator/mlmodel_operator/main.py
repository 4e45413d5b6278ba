"""The operator's wiring: informers feed the cache and the work queue; the leader's workers
reconcile.

The shape is client-go's controller:

- One Informer (informer.py) per watched resource lists and watches MLModels, their children
  (Deployment, Service, HPA, PDB) and their pods; children and pods are selected by label on
  the API server (`app.kubernetes.io/managed-by`), so the operator never receives other
  workloads' objects. A list replaces the cache's view (objects deleted meanwhile are
  dropped); every change queues the owning MLModel's key in the WorkQueue, where events for
  one MLModel coalesce.
- Every replica keeps its cache warm; only the one holding the leader Lease (leader.py) queues
  keys and reconciles, and every write checks that it still holds it. It starts campaigning
  once every informer has delivered its first list, so its first reconciles see every child.
- `workers` threads take keys and run Reconciler.reconcile_key, which reads only the cache and
  writes only what drifted. A failed reconcile is queued again with exponential backoff; a
  worker that crashes is logged, counted and started again.
- kopf runs the process: login, signals, start-up and clean-up handlers, logging. It watches
  nothing itself (no resource handlers), so it writes no annotation and no finalizer on an
  MLModel.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import kopf

from mlmodel_operator import driftloop, metrics
from mlmodel_operator.analysis_metrics import MetricReads
from mlmodel_operator.analyzer import analyzer_from_settings
from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.cards import card_reader
from mlmodel_operator.events import EventRecorder
from mlmodel_operator.informer import Deadlines, Informer, Resource
from mlmodel_operator.kube import Kube, load_api_client
from mlmodel_operator.leader import LeaderElector, LeaseTimes
from mlmodel_operator.reconcile import ModelKey, Outcome, Reconciler
from mlmodel_operator.render.meta import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from mlmodel_operator.resource import GROUP, KIND, PLURAL, VERSION
from mlmodel_operator.settings import OperatorSettings
from mlmodel_operator.version_ready import version_ready_from_cache
from mlmodel_operator.workqueue import ShutDown, WorkQueue

LOG = logging.getLogger("mlmodel_operator")
MLMODELS: Final = Resource(GROUP, VERSION, PLURAL, KIND)
CHILD_RESOURCES: Final = (
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("", "v1", "services", "Service"),
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
)
PODS: Final = Resource("", "v1", "pods", "Pod")
OUR_LABEL: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WORKER_RESTART_DELAY_SECONDS: Final = 1.0
MIN_WRITE_SECONDS: Final = 1.0  # of the leader's term left, for a write to start


class NotLeader(Exception):
    """A write was attempted by a replica that does not hold the leader Lease (now)."""


class LeaderKube(Kube):
    """Kube whose writes must end within this replica's term as leader.

    `term_left()` is how long this replica still counts itself leader (LeaderElector.valid_for).
    A write is refused when less than MIN_WRITE_SECONDS of it are left, and otherwise gets the
    rest of the term as its timeout: a leader cut off from the API server gives up its writes
    before another replica may take over, instead of after the request timeout. `api` should
    send each request once (`load_api_client(retries=False)`), since every retry would start a
    new timeout.
    """

    def __init__(self, api: Any, term_left: Callable[[], float], request_seconds: float) -> None:
        super().__init__(api)
        self._term_left = term_left
        self._request_seconds = request_seconds

    def write_timeout(self) -> float:
        left = self._term_left()
        if left < MIN_WRITE_SECONDS:
            raise NotLeader(f"not the leader for another {MIN_WRITE_SECONDS:.0f} s: write refused")
        return min(left, self._request_seconds)


def post_events(recorder: EventRecorder, body: Mapping[str, Any], outcome: Outcome) -> None:
    """Count the outcome's child writes and record one Event on the MLModel per write."""
    meta = body.get("metadata") or {}
    for change in outcome.changes:
        metrics.CHILD_WRITES.labels(change.verb, change.kind).inc()
        LOG.info("MLModel %s/%s: %s", meta.get("namespace"), meta.get("name"), change.message)
        recorder.record(body, change.verb, change.message)
    for reason, message, event_type in outcome.events:  # the candidate's steps and outcome
        LOG.info("MLModel %s/%s: %s: %s", meta.get("namespace"), meta.get("name"), reason, message)
        recorder.record(body, reason, message, event_type)


def owner_of(kind: str, body: Mapping[str, Any]) -> str | None:
    """The MLModel an event is about: itself, a child's controller, a pod's instance label."""
    meta = body.get("metadata") or {}
    if kind == KIND:
        return meta.get("name")
    if kind == "Pod":
        return (meta.get("labels") or {}).get(LABEL_INSTANCE)
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return str(ref["name"])
    return None


def work(
    reconciler: Reconciler,
    queue: WorkQueue[ModelKey],
    recorder: EventRecorder,
    leading: Callable[[], bool] = lambda: True,
) -> None:
    """One reconcile worker: take a key, reconcile it, queue it again on failure; until shutdown.

    Keys taken while this replica is not the leader are dropped: the next leader queues every
    MLModel when it takes over.
    """
    while True:
        try:
            item = queue.get()
        except ShutDown:
            return
        if item is None:
            continue
        (namespace, name), trigger = item
        try:
            if not leading():
                continue
            with metrics.observe_reconcile(trigger):
                result = reconciler.reconcile_key(namespace, name)
        except NotLeader:
            if leading():  # the term ends before a renewal: try again after it
                queue.retry((namespace, name))
                LOG.info("MLModel %s/%s: the leader's term ends too soon to write", namespace, name)
            else:
                LOG.info("MLModel %s/%s: leadership lost during its reconcile", namespace, name)
        except Exception as exc:  # any failure: log it, retry this model later, go on
            delay = queue.retry((namespace, name))
            LOG.warning(
                "MLModel %s/%s: reconcile failed, retrying in %.0fs: %s",
                namespace,
                name,
                delay,
                exc,
            )
        else:
            if result is not None and result[1].retry:
                queue.retry((namespace, name))  # e.g. an apply the API server refused
            else:
                queue.forget((namespace, name))
            if result is not None and result[1].requeue_after is not None:
                # a candidate analysis in progress: evaluated again after this long
                queue.add_after((namespace, name), result[1].requeue_after, "analysis")
            if result is not None and (result[1].changes or result[1].events):
                post_events(recorder, *result)
        finally:
            queue.done((namespace, name))


def supervised(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread running `target`; when it raises, the crash is logged and counted
    (`mlmodel_operator_worker_restarts_total`) and `target` runs again. Returns normally: done.
    """

    def run() -> None:
        while True:
            try:
                target()
                return
            except Exception:
                metrics.WORKER_RESTARTS.inc()
                LOG.exception("%s crashed; starting it again", name)
                time.sleep(WORKER_RESTART_DELAY_SECONDS)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


class Feed:
    """The informers' sink: keeps the cache and queues the MLModels an event or list touches.

    Keys are queued only while `active()` (this replica leads): a follower's workers would
    drop them, and a new leader queues every MLModel anyway.
    """

    def __init__(
        self,
        cache: ObjectCache,
        queue: WorkQueue[ModelKey],
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.cache = cache
        self.queue = queue
        self.active = active

    def replace(
        self, resource: Resource, namespace: str | None, items: list[dict[str, Any]]
    ) -> None:
        if resource.kind == "Pod":
            touched = self.cache.replace_pods(namespace, items)
            owners = list(touched)
        else:
            owners = []
            for body in self.cache.replace(resource.kind, namespace, items):
                owner = owner_of(resource.kind, body)
                ns = (body.get("metadata") or {}).get("namespace")
                if owner and ns:
                    owners.append((ns, owner))
        if self.active():
            trigger = "change" if resource.kind == KIND else "child"
            for key in owners:
                self.queue.add(key, trigger)

    def event(self, resource: Resource, type_: str, obj: dict[str, Any]) -> None:
        kind = resource.kind
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or ""
        if kind == "Pod":
            left = (self.cache.drop_pod if type_ == "DELETED" else self.cache.store_pod)(obj)
            if left and namespace and self.active():  # the MLModel whose pod it no longer is
                self.queue.add((namespace, left), "child")
        elif type_ == "DELETED":
            self.cache.drop(kind, namespace, meta.get("name", ""), meta.get("uid"))
        else:
            self.cache.store(kind, obj)
        owner = owner_of(kind, obj)
        if owner and namespace and self.active():
            self.queue.add((namespace, owner), "change" if kind == KIND else "child")


def lease_namespace(config: OperatorSettings) -> str:
    """The Lease's namespace: the setting, else the pod's own, else mlmodel-system."""
    if config.leader_election_namespace:
        return config.leader_election_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "mlmodel-system"
    except OSError:
        return "mlmodel-system"


class Operator:
    """Everything one operator process runs, started and stopped by kopf's handlers."""

    def __init__(self, config: OperatorSettings) -> None:
        self.config = config
        self.cache = ObjectCache()
        self.queue: WorkQueue[ModelKey] = WorkQueue()
        metrics.QUEUE_DEPTH.set_function(self.queue.__len__)
        self.api = load_api_client(config.request_timeout_seconds)
        self.elector: LeaderElector | None = None
        if config.leader_election:
            self.elector = LeaderElector(
                self.api,
                lease_namespace(config),
                config.leader_election_name,
                LeaseTimes(
                    config.lease_duration_seconds,
                    config.renew_deadline_seconds,
                    config.retry_period_seconds,
                    config.request_timeout_seconds,
                ),
                on_started=self._took_over,
            )
        self._leading_without_election = threading.Event()
        feed = Feed(self.cache, self.queue, self.leading)
        deadlines = Deadlines(
            float(config.watch_timeout_seconds),
            config.request_timeout_seconds,
            config.resync_interval_seconds,
        )
        scopes: tuple[str | None, ...] = config.namespaces or (None,)
        self.informers = [
            Informer(self.api, resource, namespace, selector, feed, deadlines)
            for resource, selector in (
                (MLMODELS, None),
                *((child, OUR_LABEL) for child in CHILD_RESOURCES),
                (PODS, OUR_LABEL),
            )
            for namespace in scopes
        ]
        self.workers: list[threading.Thread] = []
        self.reader = card_reader(config)
        # metric reads (analysis, readiness) may hold half the workers, one per namespace
        metric_reads = MetricReads(slots=config.workers // 2)
        writes = load_api_client(config.request_timeout_seconds, retries=False)
        kube = LeaderKube(writes, self.term_left, config.request_timeout_seconds)
        self.reconciler = Reconciler(
            kube,
            self.cache,
            config,
            reader=self.reader,
            requeue=lambda key: self.queue.add(key, "card"),
            analyzer=analyzer_from_settings(config, self.cache, metric_reads),
            version_ready=version_ready_from_cache(self.cache, metric_reads),
        )
        self.recorder = EventRecorder(kube)
        self._campaign: threading.Thread | None = None
        self._stopping = threading.Event()

    def leading(self) -> bool:
        """Whether this replica may reconcile and write now."""
        return self.term_left() > 0

    def term_left(self) -> float:
        """How long this replica may still write: the Lease's validity, unbounded without
        election (while started)."""
        if self.elector is None:
            return math.inf if self._leading_without_election.is_set() else 0.0
        return self.elector.valid_for()

    def _took_over(self) -> None:
        """Became leader: queue every MLModel (what happened before was not queued here)."""
        count = driftloop.check_once(self.cache, self.queue, trigger="leader")
        LOG.info("leading: %d MLModels queued", count)

    def start(self) -> None:
        """Start informers and workers; campaign once every informer has listed."""
        for informer in self.informers:
            informer.start()
        for index in range(self.config.workers):
            self.workers.append(
                supervised(
                    lambda: work(self.reconciler, self.queue, self.recorder, self.leading),
                    f"reconcile-{index}",
                )
            )
        self._campaign = threading.Thread(target=self._campaign_when_synced, daemon=True)
        self._campaign.start()

    def _campaign_when_synced(self) -> None:
        for informer in self.informers:
            while not informer.synced.wait(1.0):
                if self._stopping.is_set():
                    return
        LOG.info("caches synced: %d objects", len(self.cache))
        if self.elector is not None:
            self.elector.start()
        else:
            self._leading_without_election.set()
            self._took_over()

    def stop(self) -> None:
        """Stop campaigning (releasing the Lease), the workers and the card reader."""
        self._stopping.set()
        if self.elector is not None:
            self.elector.stop()
        self.queue.shutdown()
        for informer in self.informers:
            informer.stop()
        self.reader.close()

    # --- probes
    def health_problems(self) -> list[str]:
        """What makes /healthz fail: a silent or dead watch, a dead worker or election, a
        stalled queue."""
        problems = [
            f"watch of {informer.name} is silent or stopped"
            for informer in self.informers
            if not informer.healthy()
        ]
        problems += [f"worker {t.name} is dead" for t in self.workers if not t.is_alive()]
        if self.elector is not None and self._campaign is not None:
            synced = not self._campaign.is_alive()
            if synced and not self._stopping.is_set() and not self.elector.alive():
                problems.append("leader election stopped")
        waited = self.queue.oldest_wait()
        if self.leading() and waited > self.config.queue_stall_seconds:
            problems.append(f"the oldest queued MLModel has waited {waited:.0f}s")
        return problems

    def readiness_problems(self) -> list[str]:
        """What makes /readyz fail: a watch that has not listed yet, or any health problem."""
        waiting = [i.name for i in self.informers if not i.synced.is_set()]
        problems = [f"waiting for the first list of {', '.join(waiting)}"] if waiting else []
        return problems + self.health_problems()


def register(registry: kopf.OperatorRegistry, config: OperatorSettings) -> None:
    """Register the operator's start-up and clean-up with kopf (it watches nothing itself)."""
    # A custom registry starts empty: authenticate the way the kubernetes client does
    # (in-cluster service account, else the current kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry, id="start")
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.enabled = False  # reconciles record Events themselves
        # kopf watches nothing for us: no CRD or Namespace scanning either (no RBAC for it)
        settings.scanning.disabled = True
        operator = memo.operator = Operator(config)
        memo.http = None
        if config.metrics_port:
            memo.http = await metrics.start_http_server(
                config.metrics_host,
                config.metrics_port,
                healthz=operator.health_problems,
                readyz=operator.readiness_problems,
            )
        operator.start()
        memo.drift = asyncio.create_task(
            driftloop.run_forever(
                operator.cache, operator.queue, config.drift_interval_seconds, operator.leading
            )
        )

    @kopf.on.cleanup(registry=registry, id="stop")
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        if getattr(memo, "drift", None) is not None:
            memo.drift.cancel()
        if getattr(memo, "operator", None) is not None:
            await asyncio.to_thread(memo.operator.stop)
        if getattr(memo, "http", None) is not None:
            await memo.http.cleanup()
