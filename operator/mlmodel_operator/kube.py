"""The only module that talks to the Kubernetes API.

Writes are server-side apply with one field manager (forcing conflicts, so a hand edit of a
field the operator owns is taken back), deletes carry a uid precondition, status patches the
resourceVersion they were computed from, and everything else is a read. Each write's timeout
comes from `write_timeout()` (the leader's remaining term, in main.LeaderKube). The kubernetes
client is synchronous: the operator's reconcile workers are threads.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from urllib3.util.retry import Retry

from mlmodel_operator.resource import API_VERSION, KIND

FIELD_MANAGER: Final = "mlmodel-operator"


def load_api_client(request_timeout: float | None = None, retries: bool = True) -> client.ApiClient:
    """An API client for the in-cluster service account, else the current kubeconfig (see
    `api_client` for the arguments)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return api_client(client.Configuration.get_default_copy(), request_timeout, retries)


def api_client(
    configuration: client.Configuration,
    request_timeout: float | None = None,
    retries: bool = True,
) -> client.ApiClient:
    """An API client for `configuration` (which it changes).

    With `request_timeout`, every request that does not set its own `_request_timeout` gets
    it as connect and read timeout (the kubernetes client has none by default, so a half-open
    connection would hang a worker for good). Without `retries`, a request is sent once: each
    urllib3 retry would start its own timeout, so a write could outlive its deadline.
    """
    if not retries:
        configuration.retries = Retry(total=0, redirect=0)
    elif request_timeout:
        # urllib3 retries a timed-out read of an idempotent request three times by default:
        # a black-holed connection would hold a request for four timeouts. Connection errors
        # are still retried; a failed read fails the reconcile, which is retried with backoff.
        configuration.retries = Retry(total=2, connect=2, read=0, status=0, redirect=0)
    api = client.ApiClient(configuration)
    if request_timeout:
        rest = api.rest_client
        plain = rest.request
        default = (request_timeout, request_timeout)

        def request(*args: Any, **kwargs: Any) -> Any:
            kwargs["_request_timeout"] = kwargs.get("_request_timeout") or default
            return plain(*args, **kwargs)  # type: ignore[no-untyped-call]

        setattr(rest, "request", request)  # noqa: B010 - an instance's method, on purpose
    return api


class Kube:
    """Typed reads and writes for MLModels and their children."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
        self.core = client.CoreV1Api(api)

    def write_timeout(self) -> float | None:
        """The timeout of the next write; None: the client's own. LeaderKube bounds it."""
        return None

    def _resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The live object as a dict, or None when it does not exist."""
        try:
            found = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        result: dict[str, Any] = found.to_dict()
        return result

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply `manifest` as the operator's field manager."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        applied = self.dynamic.server_side_apply(  # type: ignore[no-untyped-call]
            resource,
            body=dict(manifest),
            namespace=manifest["metadata"]["namespace"],
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            _request_timeout=self.write_timeout(),
        )
        result: dict[str, Any] = applied.to_dict()
        return result

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete exactly the object with this uid (never a same-named newcomer)."""
        body = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        try:
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, body=body, _request_timeout=self.write_timeout()
            )
        except NotFoundError:
            return

    def apply_deployment_scale(self, namespace: str, name: str, replicas: int) -> None:
        """Server-side apply a Deployment's replicas through its scale subresource.

        Used to hand spec.replicas over to an HPA: the field stays owned (by the operator's
        scale-subresource entry) when the next apply of the Deployment leaves it out, so it is
        not reset to the default of 1; the HPA's first write then takes it over.
        """
        scale = self._resource("apps/v1", "Deployment").subresources["scale"]
        body = {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        }
        self.dynamic.server_side_apply(  # type: ignore[no-untyped-call]
            scale,
            body=body,
            name=name,
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            _request_timeout=self.write_timeout(),
        )

    def patch_mlmodel_status(
        self, namespace: str, name: str, patch: Mapping[str, Any], resource_version: str = ""
    ) -> dict[str, Any]:
        """Merge-patch the MLModel's status subresource; returns the updated MLModel.

        The patch holds only what changed since the status it was computed from. With that
        status's `resource_version`, the API server refuses it (409 Conflict) when the MLModel
        has been written since, instead of merging it into a status it was not computed from.
        """
        status = self._resource(API_VERSION, KIND).subresources["status"]
        body: dict[str, Any] = {"status": dict(patch)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        updated = self.dynamic.patch(  # type: ignore[no-untyped-call]
            status,
            body=body,
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            field_manager=FIELD_MANAGER,
            _request_timeout=self.write_timeout(),
        )
        result: dict[str, Any] = updated.to_dict()
        return result

    def post_event(
        self, involved: Mapping[str, Any], reason: str, message: str, event_type: str = "Normal"
    ) -> None:
        """Record a core/v1 Event (Normal or Warning) on an MLModel (`kubectl describe`)."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": event_type,
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": f"mlops.dev/{FIELD_MANAGER}",
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.core.create_namespaced_event(
            meta["namespace"],
            event,  # type: ignore[arg-type]
            _request_timeout=self.write_timeout(),
        )
