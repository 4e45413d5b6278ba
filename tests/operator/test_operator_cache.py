"""The watch cache keeps slim objects, prefers our fresher writes until the watch catches up."""

from __future__ import annotations

from typing import Any

from mlmodel_operator.cache import RECENT_WRITE_TTL_SECONDS, ObjectCache, slim, slim_pod
from mlmodel_operator.kube import FIELD_MANAGER


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def deployment(rv: int, replicas: int = 1, uid: str = "u1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "iris",
            "namespace": "models",
            "uid": uid,
            "resourceVersion": str(rv),
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "note": "kept",
            },
            "managedFields": [
                {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
                {"manager": "kube-controller-manager", "operation": "Update"},
            ],
        },
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": replicas},
    }


def test_slim_keeps_what_a_reconcile_reads_and_only_our_managed_fields() -> None:
    kept = slim(deployment(7))
    assert kept["spec"] == {"replicas": 1}
    assert kept["status"] == {"readyReplicas": 1}
    assert kept["metadata"]["annotations"] == {"note": "kept"}
    assert [e["manager"] for e in kept["metadata"]["managedFields"]] == [FIELD_MANAGER]
    assert kept["metadata"]["resourceVersion"] == "7"


def test_slim_pod_keeps_container_states_and_what_analysis_scrapes_and_drops_the_rest() -> None:
    env = [{"name": "MODEL_SERVER_CANDIDATE_PERCENT", "value": "10"}]
    owner = [{"kind": "ReplicaSet", "name": "iris-1", "controller": True}]
    pod = {
        "metadata": {
            "name": "p",
            "labels": {"a": "b"},
            "managedFields": [{}],
            "annotations": {"mlops.dev/model-digest": "a"},
            "ownerReferences": owner,
        },
        "spec": {
            "containers": [{"name": "server", "env": env, "image": "i", "ports": []}],
            "volumes": [{"name": "scratch"}],
        },
        "status": {"phase": "Running", "containerStatuses": [{"name": "server"}], "podIP": "x"},
    }
    assert slim_pod(pod) == {
        "metadata": {
            "name": "p",
            "annotations": {"mlops.dev/model-digest": "a"},
            "ownerReferences": owner,
        },
        "spec": {"containers": [{"name": "server", "env": env}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "server"}], "podIP": "x"},
    }


def test_our_write_is_read_back_until_the_watch_delivers_it() -> None:
    cache = ObjectCache()
    cache.store("Deployment", deployment(5, replicas=1))
    cache.wrote("Deployment", deployment(9, replicas=3))
    assert cache.get("Deployment", "models", "iris")["spec"]["replicas"] == 3  # type: ignore[index]
    cache.store("Deployment", deployment(9, replicas=3))
    cache.store("Deployment", deployment(12, replicas=2))  # someone else wrote after us
    assert cache.get("Deployment", "models", "iris")["spec"]["replicas"] == 2  # type: ignore[index]


def test_a_recent_write_the_watch_never_confirms_expires() -> None:
    clock = FakeClock()
    cache = ObjectCache(clock=clock)
    cache.store("Deployment", deployment(5, replicas=1))
    cache.wrote("Deployment", deployment(9, replicas=3))
    clock.now += RECENT_WRITE_TTL_SECONDS + 1
    assert cache.get("Deployment", "models", "iris")["spec"]["replicas"] == 1  # type: ignore[index]


def test_our_delete_reads_as_gone_and_a_recreated_object_is_seen() -> None:
    cache = ObjectCache()
    cache.store("Deployment", deployment(5))
    cache.deleted("Deployment", "models", "iris", "u1")
    assert cache.get("Deployment", "models", "iris") is None
    cache.drop("Deployment", "models", "iris", uid="u1")
    cache.store("Deployment", deployment(20, uid="u2"))
    assert cache.get("Deployment", "models", "iris")["metadata"]["uid"] == "u2"  # type: ignore[index]


def test_a_late_delete_event_of_an_old_uid_keeps_the_new_object() -> None:
    cache = ObjectCache()
    cache.store("Deployment", deployment(20, uid="u2"))
    cache.drop("Deployment", "models", "iris", uid="u1")
    assert cache.get("Deployment", "models", "iris") is not None


def test_pods_are_grouped_by_instance_label_and_dropped_on_delete() -> None:
    cache = ObjectCache()

    def pod(name: str, instance: str) -> dict[str, Any]:
        labels = {"app.kubernetes.io/instance": instance}
        return {"metadata": {"name": name, "namespace": "models", "labels": labels}}

    cache.store_pod(pod("iris-b", "iris"))
    cache.store_pod(pod("iris-a", "iris"))
    cache.store_pod(pod("wine-a", "wine"))
    cache.store_pod({"metadata": {"name": "stray", "namespace": "models"}})
    assert [p["metadata"]["name"] for p in cache.pods("models", "iris")] == ["iris-a", "iris-b"]
    cache.drop_pod(pod("iris-a", "iris"))
    assert [p["metadata"]["name"] for p in cache.pods("models", "iris")] == ["iris-b"]
    assert cache.pods("models", "nothing") == []


def test_a_pod_whose_instance_label_changes_leaves_its_old_group() -> None:
    """A user relabels a pod: it must not stay among the old MLModel's pods (their crash
    reasons and the analysis's scrape targets) until the next full re-list."""
    cache = ObjectCache()

    def pod(instance: str | None) -> dict[str, Any]:
        labels = {"app.kubernetes.io/instance": instance} if instance else {}
        return {"metadata": {"name": "iris-a", "namespace": "models", "labels": labels}}

    cache.store_pod(pod("iris"))
    cache.store_pod(pod("wine"))  # relabelled
    assert cache.pods("models", "iris") == []
    assert [p["metadata"]["name"] for p in cache.pods("models", "wine")] == ["iris-a"]
    cache.store_pod(pod(None))  # label removed
    assert cache.pods("models", "wine") == []
    cache.store_pod(pod("iris"))
    cache.drop_pod(pod("wine"))  # a delete carrying other labels than the pod was filed under
    assert cache.pods("models", "iris") == []
    cache.replace_pods("models", [pod("wine")])
    cache.drop_pod(pod("iris"))
    assert cache.pods("models", "wine") == []


def test_names_lists_one_kind() -> None:
    cache = ObjectCache()
    cache.store("Deployment", deployment(1))
    cache.store("MLModel", deployment(1) | {"kind": "MLModel"})
    assert cache.names("MLModel") == [("models", "iris")]


def test_a_deleted_object_is_gone_even_right_after_our_write_to_it() -> None:
    cache = ObjectCache()
    cache.store("MLModel", deployment(5) | {"kind": "MLModel"})
    cache.wrote("MLModel", deployment(9) | {"kind": "MLModel"})  # our status patch
    cache.drop("MLModel", "models", "iris", uid="u1")  # then the user deleted it
    assert cache.get("MLModel", "models", "iris") is None
