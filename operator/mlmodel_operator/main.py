"""kopf registration: watch streams feed the cache and the work queue; workers reconcile.

The shape is client-go's informer + work queue, on kopf's watch streams:

- MLModels, their children (Deployment, Service, HPA, PDB) and their pods are watched. Children
  and pods are selected by label on the API server (`app.kubernetes.io/managed-by`), so the
  operator never receives other workloads' objects.
- Each object passes a kopf index handler that keeps a slim copy in the ObjectCache. kopf runs
  every index handler over the initial listing before any other handler, so the first
  reconciles after a (re)start see every existing child and write nothing.
- Each event queues its MLModel's key in the WorkQueue, where events for one MLModel coalesce;
  `workers` threads take keys and run Reconciler.reconcile_key, which reads only the cache and
  writes only what drifted. A failed reconcile is queued again with exponential backoff.
- kopf's own bookkeeping is not used: no handler of kind create/update/resume/timer, so kopf
  writes no annotation and no finalizer on an MLModel.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

import kopf

from mlmodel_operator import driftloop, metrics
from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.cards import card_reader
from mlmodel_operator.events import EventRecorder
from mlmodel_operator.kube import Kube, load_api_client
from mlmodel_operator.reconcile import ModelKey, Outcome, Reconciler
from mlmodel_operator.render.meta import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from mlmodel_operator.resource import GROUP, KIND, PLURAL, VERSION
from mlmodel_operator.settings import OperatorSettings
from mlmodel_operator.workqueue import ShutDown, WorkQueue

LOG = logging.getLogger("mlmodel_operator")
CHILD_RESOURCES: Final = (
    ("apps", "v1", "deployments", "Deployment"),
    ("", "v1", "services", "Service"),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
)
OUR_LABEL: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def post_events(recorder: EventRecorder, body: Mapping[str, Any], outcome: Outcome) -> None:
    """Count the outcome's child writes and record one Event on the MLModel per write."""
    meta = body.get("metadata") or {}
    for change in outcome.changes:
        metrics.CHILD_WRITES.labels(change.verb, change.kind).inc()
        LOG.info("MLModel %s/%s: %s", meta.get("namespace"), meta.get("name"), change.message)
        recorder.record(body, change.verb, change.message)


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


def work(reconciler: Reconciler, queue: WorkQueue[ModelKey], recorder: EventRecorder) -> None:
    """One reconcile worker: take a key, reconcile it, queue it again on failure; until shutdown."""
    while True:
        try:
            item = queue.get()
        except ShutDown:
            return
        if item is None:
            continue
        (namespace, name), trigger = item
        try:
            with metrics.observe_reconcile(trigger):
                result = reconciler.reconcile_key(namespace, name)
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
            queue.forget((namespace, name))
            if result is not None and result[1].changes:
                post_events(recorder, *result)
        finally:
            queue.done((namespace, name))


def register(registry: kopf.OperatorRegistry, config: OperatorSettings) -> None:
    """Register every handler of the operator in `registry`."""
    cache = ObjectCache()
    queue: WorkQueue[ModelKey] = WorkQueue()
    metrics.QUEUE_DEPTH.set_function(queue.__len__)

    # A custom registry starts empty: authenticate the way the kubernetes client does
    # (in-cluster service account, else the current kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry, id="configure")
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        for group, version, plural, _kind in (*CHILD_RESOURCES, ("", "v1", "pods", "Pod")):
            settings.watching.label_selectors[group, version, plural] = OUR_LABEL
        settings.posting.enabled = False  # no kopf handler posts; reconciles record Events
        # kopf keeps a task per object, holding its last event, until it idles this long: our
        # handlers only copy and queue, so let the bursts' thousands of them go sooner.
        settings.queueing.idle_timeout = 1.0
        # A model card is re-read once per drift round, not on every event of the model, and
        # only from MLOP_ARTIFACT_SOURCES (cards.py, cardfetch.py).
        # A reconcile never waits for a card: the read's end queues the MLModel again.
        reader = card_reader(config)
        memo.reader = reader
        kube = Kube(load_api_client())
        reconciler = Reconciler(
            kube, cache, config, reader=reader, requeue=lambda key: queue.add(key, "card")
        )
        recorder = EventRecorder(kube)
        for index in range(config.workers):  # daemons; queue.shutdown() at cleanup ends them
            threading.Thread(
                target=work,
                args=(reconciler, queue, recorder),
                name=f"reconcile-{index}",
                daemon=True,
            ).start()
        memo.drift = asyncio.create_task(
            driftloop.run_forever(cache, queue, config.drift_interval_seconds)
        )
        memo.http = None
        if config.metrics_port:
            memo.http = await metrics.start_http_server(config.metrics_host, config.metrics_port)

    @kopf.on.cleanup(registry=registry, id="stop")
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        queue.shutdown()
        if getattr(memo, "reader", None) is not None:
            memo.reader.close()
        if getattr(memo, "drift", None) is not None:
            memo.drift.cancel()
        if getattr(memo, "http", None) is not None:
            await memo.http.cleanup()

    def watch(group: str, version: str, plural: str, kind: str, trigger: str) -> None:
        """Cache every object of the resource and queue its MLModel on every event."""

        async def cache_object(body: kopf.Body, **_: Any) -> None:
            if kind == "Pod":
                cache.store_pod(body)
            else:
                cache.store(kind, body)

        async def queue_owner(
            type: str | None, body: kopf.Body, namespace: str | None, **_: Any
        ) -> None:
            meta = body.get("metadata") or {}
            if type == "DELETED":
                if kind == "Pod":
                    cache.drop_pod(body)
                else:
                    cache.drop(kind, namespace or "", meta.get("name", ""), meta.get("uid"))
            owner = owner_of(kind, body)
            if owner and namespace:
                queue.add((namespace, str(owner)), trigger)

        kopf.index(group, version, plural, registry=registry, id=f"cache-{plural}")(cache_object)
        kopf.on.event(group, version, plural, registry=registry, id=f"queue-{plural}")(queue_owner)

    watch(GROUP, VERSION, PLURAL, KIND, "change")
    for group, version, plural, kind in CHILD_RESOURCES:
        watch(group, version, plural, kind, "child")
    watch("", "v1", "pods", "Pod", "child")
