"""The PodDisruptionBudget, present only when the model can run more than one pod."""

from __future__ import annotations

from typing import Any

from mlmodel_operator.render.meta import child_metadata, selector_labels
from mlmodel_operator.resource import MLModel


def wants_pdb(mlmodel: MLModel) -> bool:
    """More than one replica (or an HPA floor above one): keep all but one pod up on drains."""
    if mlmodel.spec.autoscaling is not None:
        return mlmodel.spec.autoscaling.min_replicas > 1
    return mlmodel.spec.replicas > 1


def render_pdb(mlmodel: MLModel) -> dict[str, Any] | None:
    """A policy/v1 PDB allowing one voluntary disruption at a time, or None for one replica."""
    if not wants_pdb(mlmodel):
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(mlmodel),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(mlmodel)}},
    }
