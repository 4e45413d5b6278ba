"""The HorizontalPodAutoscaler, present only while spec.autoscaling is set."""

from __future__ import annotations

import copy
from typing import Any

from mlmodel_operator.render.meta import child_metadata
from mlmodel_operator.resource import MLModel


def render_hpa(mlmodel: MLModel) -> dict[str, Any] | None:
    """An autoscaling/v2 HPA scaling the Deployment on CPU, or None without spec.autoscaling."""
    scaling = mlmodel.spec.autoscaling
    if scaling is None:
        return None
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": mlmodel.name},
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": scaling.target_cpu_utilization_percentage,
                    },
                },
            }
        ],
    }
    if scaling.behavior is not None:
        spec["behavior"] = copy.deepcopy(scaling.behavior)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(mlmodel),
        "spec": spec,
    }
