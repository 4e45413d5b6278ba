"""The Service in front of the model server pods."""

from __future__ import annotations

from typing import Any, Final

from mlmodel_operator.render.meta import child_metadata, selector_labels
from mlmodel_operator.resource import MLModel

# gRPC is HTTP/2 without TLS (prior knowledge): the standard appProtocol value tells gateways
# and meshes to speak HTTP/2 to the pods instead of HTTP/1.1.
GRPC_APP_PROTOCOL: Final = "kubernetes.io/h2c"


def render_service_ports(mlmodel: MLModel) -> list[dict[str, Any]]:
    """`http` on spec.service.port, then `grpc` on spec.service.grpcPort unless that is 0."""
    service = mlmodel.spec.service
    ports: list[dict[str, Any]] = [
        {"name": "http", "port": service.port, "targetPort": "http", "protocol": "TCP"}
    ]
    if service.grpc:
        ports.append(
            {
                "name": "grpc",
                "port": service.grpc_port,
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": GRPC_APP_PROTOCOL,
            }
        )
    return ports


def render_service(mlmodel: MLModel) -> dict[str, Any]:
    """A Service (ClusterIP by default) forwarding spec.service.port to the server's HTTP port
    and, while gRPC is on, spec.service.grpcPort to its gRPC port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(mlmodel),
        "spec": {
            "type": mlmodel.spec.service.type,
            "selector": selector_labels(mlmodel),
            "ports": render_service_ports(mlmodel),
        },
    }


def service_url(mlmodel: MLModel, cluster_domain: str) -> str:
    """The in-cluster URL of the model's Service."""
    host = f"{mlmodel.name}.{mlmodel.namespace}.svc.{cluster_domain}"
    port = mlmodel.spec.service.port
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"
