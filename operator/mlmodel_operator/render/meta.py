"""Names, labels, annotations and ownerReferences shared by every child."""

from __future__ import annotations

from typing import Any, Final

from mlmodel_operator.resource import API_VERSION, KIND, MLModel

APP_NAME: Final = "mlmodel-server"
COMPONENT: Final = "model-server"
MANAGED_BY: Final = "mlmodel-operator"
DIGEST_ANNOTATION: Final = "mlops.dev/model-digest"
# The candidate's digest (pin, else its card's) while one is rendered: a new one rolls the pods.
CANDIDATE_DIGEST_ANNOTATION: Final = "mlops.dev/candidate-digest"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"


def selector_labels(mlmodel: MLModel) -> dict[str, str]:
    """Labels that select this model's pods (stable: a Deployment selector is immutable)."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: mlmodel.name}


def selector_string(mlmodel: MLModel) -> str:
    """The pod selector as a label-selector string, for status.selector (scale subresource)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(mlmodel).items()))


def child_labels(mlmodel: MLModel) -> dict[str, str]:
    """The standard app.kubernetes.io labels every child and pod carries."""
    return {
        **selector_labels(mlmodel),
        LABEL_COMPONENT: COMPONENT,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def owner_reference(mlmodel: MLModel) -> dict[str, Any]:
    """The controller ownerReference that lets the garbage collector delete a child."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": mlmodel.name,
        "uid": mlmodel.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(mlmodel: MLModel) -> dict[str, Any]:
    """metadata for a child named after its MLModel."""
    return {
        "name": mlmodel.name,
        "namespace": mlmodel.namespace,
        "labels": child_labels(mlmodel),
        "ownerReferences": [owner_reference(mlmodel)],
    }
