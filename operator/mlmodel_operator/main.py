"""kopf registration only: every handler is a thin call into reconcile.Reconciler.

MLModel create/update/resume return their status through kopf's `patch`. Events on children
(and pods) and the periodic drift check (driftloop, started here) re-run the same reconcile for
an MLModel, which then writes its status itself: kopf's `patch` belongs to the object that
fired, and the drift loop is not a kopf handler (a kopf.timer would put a finalizer on every
MLModel, blocking deletions while the operator is down).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from mlmodel_operator import driftloop, metrics
from mlmodel_operator.kube import Kube, load_api_client
from mlmodel_operator.reconcile import Outcome, Reconciler
from mlmodel_operator.render.meta import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY
from mlmodel_operator.resource import GROUP, PLURAL, VERSION
from mlmodel_operator.settings import OperatorSettings

LOG = logging.getLogger("mlmodel_operator")
CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("", "v1", "pods"),
)


def _post_events(body: Mapping[str, Any], outcome: Outcome) -> None:
    target = body if isinstance(body, kopf.Body) else kopf.Body(dict(body))  # type: ignore[arg-type]
    meta = body.get("metadata") or {}
    for change in outcome.changes:
        metrics.CHILD_WRITES.labels(change.verb, change.kind).inc()
        LOG.info("MLModel %s/%s: %s", meta.get("namespace"), meta.get("name"), change.message)
        kopf.event(target, type="Normal", reason=change.verb, message=change.message)


def _owner_name(body: Mapping[str, Any]) -> str | None:
    """The MLModel a child or pod belongs to (pods carry its name as the instance label)."""
    meta = body.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "MLModel" and ref.get("controller"):
            return str(ref["name"])
    if body.get("kind") == "Pod":
        name = (meta.get("labels") or {}).get(LABEL_INSTANCE)
        return str(name) if name else None
    return None


def register(registry: kopf.OperatorRegistry, config: OperatorSettings) -> None:
    """Register every handler of the operator in `registry`."""
    # A custom registry starts empty: authenticate the way the kubernetes client does
    # (in-cluster service account, else the current kubeconfig).
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry, id="configure")
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        # Bookkeeping under our own prefix, in annotations: nothing piles up in status.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=GROUP, v1=False
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, v1=False
        )
        # No finalizers: no handler needs one (the drift check is driftloop, not a kopf.timer),
        # so deleting an MLModel or its namespace never waits for the operator.
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.posting.level = logging.WARNING  # events only for changes and failures
        settings.execution.max_workers = 8
        memo.reconciler = Reconciler(Kube(load_api_client()), config)
        memo.drift = asyncio.create_task(
            driftloop.run_forever(
                memo.reconciler, config.namespaces, config.drift_interval_seconds, _post_events
            )
        )
        memo.http = None
        if config.metrics_port:
            memo.http = await metrics.start_http_server(config.metrics_host, config.metrics_port)

    @kopf.on.cleanup(registry=registry, id="stop")
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        if getattr(memo, "drift", None) is not None:
            memo.drift.cancel()
        if getattr(memo, "http", None) is not None:
            await memo.http.cleanup()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry, id="reconcile")
    def mlmodel_changed(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        """Converge after the MLModel appeared or its spec changed."""
        with metrics.observe_reconcile("change"):
            outcome = memo.reconciler.reconcile(body)
        patch.status.update(outcome.status_patch)
        _post_events(body, outcome)

    def child_changed(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
        """A child or pod changed: re-converge its MLModel (restores edits and deletions)."""
        owner = _owner_name(body)
        if owner is None or namespace is None:
            return
        with metrics.observe_reconcile("child"):
            outcome = memo.reconciler.reconcile_owner(namespace, owner)
        if outcome is not None and outcome.changes:
            mlmodel = memo.reconciler.kube.read_mlmodel(namespace, owner)
            if mlmodel is not None:
                _post_events(mlmodel, outcome)

    for group, version, plural in CHILD_RESOURCES:
        kopf.on.event(
            group,
            version,
            plural,
            registry=registry,
            labels={LABEL_MANAGED_BY: MANAGED_BY},
            id=f"child-{plural}",
        )(child_changed)
