"""The drift check queues every cached MLModel and reads nothing from the API server."""

from __future__ import annotations

from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.driftloop import check_once
from mlmodel_operator.workqueue import WorkQueue


def _mlmodel(namespace: str, name: str) -> dict[str, object]:
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"namespace": namespace, "name": name, "uid": f"u-{name}"},
        "spec": {},
    }


def test_every_cached_mlmodel_is_queued_once_as_a_timer_check() -> None:
    cache = ObjectCache()
    for namespace, name in (("a", "one"), ("a", "two"), ("b", "three")):
        cache.store("MLModel", _mlmodel(namespace, name))
    cache.store("Deployment", _mlmodel("a", "one") | {"kind": "Deployment"})
    queue: WorkQueue[tuple[str, str]] = WorkQueue()
    queue.add(("a", "two"), "child")  # already waiting: coalesces

    assert check_once(cache, queue) == 3

    taken = [queue.get(timeout=0) for _ in range(3)]
    assert sorted(t for t in taken if t) == [
        (("a", "one"), "timer"),
        (("a", "two"), "child"),
        (("b", "three"), "timer"),
    ]
    assert queue.get(timeout=0) is None
