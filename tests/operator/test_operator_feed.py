"""The informers' sink: a list replaces the cache's view (client-go's Replace), events keep it,
and the MLModels they touch are queued only while this replica leads."""

from __future__ import annotations

from typing import Any

from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.main import CHILD_RESOURCES, MLMODELS, PODS, Feed
from mlmodel_operator.render.meta import LABEL_INSTANCE
from mlmodel_operator.workqueue import WorkQueue

DEPLOYMENTS = CHILD_RESOURCES[0]


def mlmodel(ns: str, name: str, rv: str = "1") -> dict[str, Any]:
    return {
        "kind": "MLModel",
        "metadata": {"namespace": ns, "name": name, "uid": f"u-{name}", "resourceVersion": rv},
        "spec": {},
    }


def deployment(ns: str, owner: str, rv: str = "1") -> dict[str, Any]:
    ref = {"kind": "MLModel", "name": owner, "uid": f"u-{owner}", "controller": True}
    meta = {"namespace": ns, "name": owner, "uid": f"d-{owner}", "resourceVersion": rv}
    return {"kind": "Deployment", "metadata": {**meta, "ownerReferences": [ref]}}


def pod(ns: str, owner: str, name: str, phase: str = "Running") -> dict[str, Any]:
    meta = {"namespace": ns, "name": name, "labels": {LABEL_INSTANCE: owner}}
    return {"metadata": meta, "status": {"phase": phase}}


def drain(queue: WorkQueue[tuple[str, str]]) -> set[tuple[tuple[str, str], str]]:
    found = set()
    while (item := queue.get(timeout=0)) is not None:
        found.add(item)
        queue.done(item[0])
    return found


def test_a_relist_drops_what_was_deleted_in_the_gap_and_queues_its_mlmodel() -> None:
    cache, queue = ObjectCache(), WorkQueue[tuple[str, str]]()
    feed = Feed(cache, queue)
    feed.replace(DEPLOYMENTS, None, [deployment("a", "x"), deployment("a", "y")])
    drain(queue)

    feed.replace(DEPLOYMENTS, None, [deployment("a", "y")])  # x was deleted while not watching

    assert cache.get("Deployment", "a", "x") is None
    assert cache.get("Deployment", "a", "y") is not None
    assert drain(queue) == {(("a", "x"), "child")}  # y did not change: not queued


def test_a_relist_queues_objects_whose_version_moved_and_new_ones() -> None:
    cache, queue = ObjectCache(), WorkQueue[tuple[str, str]]()
    feed = Feed(cache, queue)
    feed.replace(MLMODELS, None, [mlmodel("a", "x"), mlmodel("a", "y")])
    drain(queue)

    feed.replace(MLMODELS, None, [mlmodel("a", "x", rv="7"), mlmodel("a", "y"), mlmodel("b", "z")])

    assert drain(queue) == {(("a", "x"), "change"), (("b", "z"), "change")}
    assert cache.get("MLModel", "a", "x")["metadata"]["resourceVersion"] == "7"  # type: ignore[index]


def test_a_deleted_mlmodel_is_forgotten_so_the_drift_loop_stops_queuing_it() -> None:
    cache, queue = ObjectCache(), WorkQueue[tuple[str, str]]()
    feed = Feed(cache, queue)
    feed.replace(MLMODELS, None, [mlmodel("a", "x"), mlmodel("a", "gone")])
    feed.replace(MLMODELS, None, [mlmodel("a", "x")])
    assert cache.names("MLModel") == [("a", "x")]


def test_a_namespaced_list_replaces_only_its_own_namespace() -> None:
    cache, queue = ObjectCache(), WorkQueue[tuple[str, str]]()
    feed = Feed(cache, queue)
    feed.replace(DEPLOYMENTS, "a", [deployment("a", "x")])
    feed.replace(DEPLOYMENTS, "b", [deployment("b", "x")])
    feed.replace(DEPLOYMENTS, "a", [])
    assert cache.get("Deployment", "a", "x") is None
    assert cache.get("Deployment", "b", "x") is not None


def test_a_pod_list_replaces_the_pods_and_queues_the_models_whose_pods_changed() -> None:
    cache, queue = ObjectCache(), WorkQueue[tuple[str, str]]()
    feed = Feed(cache, queue)
    feed.replace(PODS, None, [pod("a", "x", "x-1"), pod("a", "y", "y-1")])
    drain(queue)

    feed.replace(PODS, None, [pod("a", "y", "y-1"), pod("a", "z", "z-1", phase="Pending")])

    assert cache.pods("a", "x") == []
    assert [p["metadata"]["name"] for p in cache.pods("a", "z")] == ["z-1"]
    assert drain(queue) == {(("a", "x"), "child"), (("a", "z"), "child")}


def test_events_keep_the_cache_and_queue_the_owner() -> None:
    cache, queue = ObjectCache(), WorkQueue[tuple[str, str]]()
    feed = Feed(cache, queue)
    feed.event(DEPLOYMENTS, "ADDED", deployment("a", "x"))
    assert cache.get("Deployment", "a", "x") is not None
    feed.event(DEPLOYMENTS, "DELETED", deployment("a", "x"))
    assert cache.get("Deployment", "a", "x") is None
    assert drain(queue) == {(("a", "x"), "child")}


def test_a_relabelled_pod_queues_the_mlmodel_it_left_and_the_one_it_joined() -> None:
    """The one it left would keep that pod's crash reason in status otherwise."""
    cache, queue = ObjectCache(), WorkQueue[tuple[str, str]]()
    feed = Feed(cache, queue)
    feed.event(PODS, "ADDED", pod("a", "x", "p-1"))
    drain(queue)
    feed.event(PODS, "MODIFIED", pod("a", "y", "p-1"))
    assert cache.pods("a", "x") == []
    assert drain(queue) == {(("a", "x"), "child"), (("a", "y"), "child")}


def test_a_follower_keeps_its_cache_but_queues_nothing() -> None:
    cache, queue = ObjectCache(), WorkQueue[tuple[str, str]]()
    feed = Feed(cache, queue, active=lambda: False)
    feed.replace(MLMODELS, None, [mlmodel("a", "x")])
    feed.event(DEPLOYMENTS, "ADDED", deployment("a", "x"))
    assert cache.get("MLModel", "a", "x") is not None
    assert cache.get("Deployment", "a", "x") is not None
    assert drain(queue) == set()
