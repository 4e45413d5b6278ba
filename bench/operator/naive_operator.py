"""The baseline: an MLModel operator written the way kopf tutorials do it.

Every event on an MLModel (and a periodic timer, for drift) creates each child, and on
409 Conflict reads it and replaces it whole; no server-side apply, no comparison first.
A Deployment event copies readiness into the owner's status. Run with
`python -m bench.operator.naive_operator` (current kubeconfig, all namespaces).
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "mlops.dev", "v1alpha1", "mlmodels"
MANAGED_BY = "naive-operator"


@kopf.on.startup()
def login(**_: Any) -> None:
    """Load the kubeconfig for the kubernetes client (kopf logs in on its own)."""
    config.load_kube_config()


def _meta(body: kopf.Body) -> dict[str, Any]:
    name = body["metadata"]["name"]
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MLModel",
        "name": name,
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = {"app.kubernetes.io/instance": name, "app.kubernetes.io/managed-by": MANAGED_BY}
    return {"name": name, "labels": labels, "ownerReferences": [owner]}


def deployment(body: kopf.Body) -> dict[str, Any]:
    """The Deployment for an MLModel, built by hand."""
    meta = _meta(body)
    spec = body["spec"]
    container = {
        "name": "server",
        "image": spec.get("server", {}).get("image", "mlmodel-server:dev"),
        "env": [{"name": "MODEL_SERVER_MODEL_URI", "value": spec["model"]["uri"]}],
        "ports": [{"containerPort": 8080}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.get("replicas", 1),
            "selector": {"matchLabels": {"app.kubernetes.io/instance": meta["name"]}},
            "template": {
                "metadata": {"labels": meta["labels"]},
                "spec": {"containers": [container]},
            },
        },
    }


def service(body: kopf.Body) -> dict[str, Any]:
    """The Service for an MLModel, built by hand."""
    meta = _meta(body)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "selector": {"app.kubernetes.io/instance": meta["name"]},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }


def create_or_replace(namespace: str, manifest: dict[str, Any]) -> None:
    """POST the child; when it exists, GET it and PUT the manifest over it."""
    name = manifest["metadata"]["name"]
    if manifest["kind"] == "Deployment":
        apps = client.AppsV1Api()
        try:
            apps.create_namespaced_deployment(namespace, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
            live = apps.read_namespaced_deployment(name, namespace)
            manifest["metadata"]["resourceVersion"] = live.metadata.resource_version
            apps.replace_namespaced_deployment(name, namespace, manifest)
        return
    core = client.CoreV1Api()
    try:
        core.create_namespaced_service(namespace, manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise
        live = core.read_namespaced_service(name, namespace)
        manifest["metadata"]["resourceVersion"] = live.metadata.resource_version
        manifest["spec"]["clusterIP"] = live.spec.cluster_ip
        core.replace_namespaced_service(name, namespace, manifest)


@kopf.on.event(GROUP, VERSION, PLURAL)
def mlmodel_event(body: kopf.Body, namespace: str, type: str | None, **_: Any) -> None:
    """Any event on an MLModel: create-or-replace every child."""
    if type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        return
    create_or_replace(namespace, deployment(body))
    create_or_replace(namespace, service(body))


@kopf.timer(GROUP, VERSION, PLURAL, interval=60.0, initial_delay=60.0)
def drift(body: kopf.Body, namespace: str, **_: Any) -> None:
    """Periodically restore the children (drift)."""
    create_or_replace(namespace, deployment(body))
    create_or_replace(namespace, service(body))


@kopf.on.event("apps", "v1", "deployments", labels={"app.kubernetes.io/managed-by": MANAGED_BY})
def deployment_event(body: kopf.Body, namespace: str, type: str | None, **_: Any) -> None:
    """A child Deployment changed: copy its readiness into the MLModel's status."""
    if type == "DELETED":
        return
    name = body["metadata"]["name"]
    custom = client.CustomObjectsApi()
    owner = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    want = body["spec"].get("replicas", 1)
    ready = body.get("status", {}).get("readyReplicas", 0)
    status = "True" if ready == want else "False"
    condition = {
        "type": "Ready",
        "status": status,
        "reason": "Available" if status == "True" else "Progressing",
        "message": f"{ready}/{want} replicas ready",
        "observedGeneration": owner["metadata"]["generation"],
        "lastTransitionTime": body["metadata"]["creationTimestamp"],
    }
    patch = {"status": {"readyReplicas": ready, "conditions": [condition]}}
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, patch)


if __name__ == "__main__":
    kopf.run(clusterwide=True, standalone=True)
