"""The Service in front of the model server pods."""

from __future__ import annotations

from typing import Any

from mlmodel_operator.render.meta import child_metadata, selector_labels
from mlmodel_operator.resource import MLModel


def render_service(mlmodel: MLModel) -> dict[str, Any]:
    """A Service (ClusterIP by default) forwarding spec.service.port to the server's port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(mlmodel),
        "spec": {
            "type": mlmodel.spec.service.type,
            "selector": selector_labels(mlmodel),
            "ports": [
                {
                    "name": "http",
                    "port": mlmodel.spec.service.port,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def service_url(mlmodel: MLModel, cluster_domain: str) -> str:
    """The in-cluster URL of the model's Service."""
    host = f"{mlmodel.name}.{mlmodel.namespace}.svc.{cluster_domain}"
    port = mlmodel.spec.service.port
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"
