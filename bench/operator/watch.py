"""Background watches that record when each Deployment first appears and first is available,
and when each MLModel is first Ready."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

GROUP, VERSION, PLURAL = "mlops.dev", "v1alpha1", "mlmodels"
Key = tuple[str, str]


def is_ready(body: dict[str, Any]) -> bool:
    """Ready=True for the MLModel's current generation."""
    meta = body.get("metadata", {})
    for cond in body.get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return bool(cond.get("observedGeneration") == meta.get("generation"))
    return False


class Timeline:
    """First time (monotonic) each Deployment was seen and seen available, and each MLModel
    was seen Ready."""

    def __init__(self, api: client.ApiClient) -> None:
        self.deployed: dict[Key, float] = {}
        self.available: dict[Key, float] = {}
        self.ready: dict[Key, float] = {}
        self._stop = threading.Event()
        apps = client.AppsV1Api(api)
        custom = client.CustomObjectsApi(api)
        self._threads = [
            threading.Thread(
                target=self._loop,
                args=(apps.list_deployment_for_all_namespaces, self._on_deployment),
                daemon=True,
            ),
            threading.Thread(
                target=self._loop,
                args=(
                    lambda **kw: custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw),
                    self._on_mlmodel,
                ),
                daemon=True,
            ),
        ]

    def start(self) -> None:
        """Start both watches."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask the watches to end (they notice within their 5 s server timeout)."""
        self._stop.set()

    def _on_deployment(self, obj: Any) -> None:
        key = (obj.metadata.namespace, obj.metadata.name)
        now = time.monotonic()
        self.deployed.setdefault(key, now)
        status, wanted = obj.status, obj.spec.replicas
        if (
            status is not None
            and status.observed_generation == obj.metadata.generation
            and (status.available_replicas or 0) >= (wanted if wanted is not None else 1)
        ):
            self.available.setdefault(key, now)

    def _on_mlmodel(self, obj: Any) -> None:
        if is_ready(obj):
            meta = obj["metadata"]
            self.ready.setdefault((meta["namespace"], meta["name"]), time.monotonic())

    def _loop(self, lister: Callable[..., Any], handle: Callable[[Any], None]) -> None:
        version = None
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    lister, resource_version=version, timeout_seconds=5
                ):
                    obj = event["object"]
                    handle(obj)
                    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
                    version = (
                        meta["resourceVersion"]
                        if isinstance(meta, dict)
                        else (meta.resource_version)
                    )
            except ApiException as exc:
                if exc.status != 410:
                    time.sleep(0.5)  # API server briefly unavailable: try again
                version = None
