"""The periodic drift check: every MLModel is queued for a reconcile once per drift interval.

Children are watched, so a change to one queues its MLModel at once; what no watch reports is
a model card whose digest moved (an unpinned artifact was republished). The check reads
nothing from the API server: it queues the MLModels in the watch cache, and the reconcile
compares them with their cached children, so a converged cluster costs no API request at all.

An operator-level loop, not a `kopf.timer`: kopf puts a finalizer on every object a timer runs
for, and only a running operator removes it, so a namespace could not be deleted while the
operator is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.resource import KIND
from mlmodel_operator.workqueue import WorkQueue

TRIGGER = "timer"


def check_once(
    cache: ObjectCache, queue: WorkQueue[tuple[str, str]], trigger: str = TRIGGER
) -> int:
    """Queue every cached MLModel for a reconcile; returns how many were queued."""
    keys = cache.names(KIND)
    for key in keys:
        queue.add(key, trigger)
    return len(keys)


async def run_forever(
    cache: ObjectCache,
    queue: WorkQueue[tuple[str, str]],
    interval: float,
    active: Callable[[], bool] = lambda: True,
) -> None:
    """Every `interval` seconds, queue every MLModel (while `active`: the leader); until
    cancelled."""
    while True:
        await asyncio.sleep(interval)
        if active():
            check_once(cache, queue)
