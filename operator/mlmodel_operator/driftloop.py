"""The periodic drift check: every MLModel is re-reconciled once per drift interval.

An operator-level loop, not a `kopf.timer`: kopf puts a finalizer on every object a timer runs
for, and only a running operator removes it, so a namespace could not be deleted while the
operator is down. This loop lists MLModels (a read) and runs the same reconcile as every other
trigger; the reconcile writes status itself, and only when something changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mlmodel_operator import metrics
from mlmodel_operator.reconcile import Outcome, Reconciler

LOG = logging.getLogger("mlmodel_operator.drift")
PostEvents = Callable[[Mapping[str, Any], Outcome], None]


def check_once(reconciler: Reconciler, namespaces: tuple[str, ...], post: PostEvents) -> int:
    """Reconcile every MLModel in `namespaces` (all when empty); returns how many were checked."""
    checked = 0
    for namespace, name in reconciler.kube.list_mlmodels(namespaces):
        try:
            with metrics.observe_reconcile("timer"):
                outcome = reconciler.reconcile_owner(namespace, name)
        except Exception as exc:  # one model's failure must not stop the others' checks
            LOG.warning("drift check of MLModel %s/%s failed: %s", namespace, name, exc)
            continue
        checked += 1
        if outcome is not None and outcome.changes:
            try:
                body = reconciler.kube.read_mlmodel(namespace, name)
                if body is not None:
                    post(body, outcome)
            except Exception as exc:  # events are best effort
                LOG.warning("events for MLModel %s/%s not posted: %s", namespace, name, exc)
    return checked


async def run_forever(
    reconciler: Reconciler, namespaces: tuple[str, ...], interval: float, post: PostEvents
) -> None:
    """Check every MLModel, then sleep `interval` seconds; until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(check_once, reconciler, namespaces, post)
        except Exception as exc:  # e.g. the API server is restarting: try again next round
            LOG.warning("drift check round failed: %s", exc)
