"""PURE rendering: an MLModel plus operator settings in, child manifests out.

No I/O, no globals, no mutation of the input: rendering twice gives identical output.
"""

from __future__ import annotations

from typing import Any

from mlmodel_operator.candidate import CandidatePlan
from mlmodel_operator.render.deployment import render_deployment
from mlmodel_operator.render.hpa import render_hpa
from mlmodel_operator.render.pdb import render_pdb
from mlmodel_operator.render.service import render_service
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings

__all__ = [
    "ChildKey",
    "render",
    "render_deployment",
    "render_hpa",
    "render_pdb",
    "render_service",
    "resolved_digest",
    "unwanted_kinds",
]

ChildKey = tuple[str, str]  # (apiVersion, kind)
CHILD_KINDS: tuple[ChildKey, ...] = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
)


def resolved_digest(mlmodel: MLModel, observed: str | None = None) -> str | None:
    """The digest to roll out: the pinned sha256, else the one read from the card.

    It marks the pod template (a change rolls the pods); only a pinned sha256 is passed to the
    server as a pin (render_env).
    """
    return mlmodel.spec.model.sha256 or observed


def render(
    mlmodel: MLModel,
    settings: OperatorSettings,
    *,
    digest: str | None = None,
    model_format: str | None = None,
    candidate: CandidatePlan | None = None,
) -> list[dict[str, Any]]:
    """Every child this MLModel wants, in apply order (Deployment, Service, HPA, PDB).

    `digest` and `model_format` are what the model card said (cards.resolve_model): the file
    the pods will load, when the operator knows it, picks their image. `candidate` is what the
    pods get of spec.candidate (None: nothing, e.g. its card could not be read)."""
    wanted: list[dict[str, Any] | None] = [
        render_deployment(
            mlmodel, settings, resolved_digest(mlmodel, digest), model_format, candidate
        ),
        render_service(mlmodel),
        render_hpa(mlmodel),
        render_pdb(mlmodel),
    ]
    return [manifest for manifest in wanted if manifest is not None]


def unwanted_kinds(mlmodel: MLModel, settings: OperatorSettings) -> list[ChildKey]:
    """Child kinds this MLModel does not want (to be deleted if the operator made them)."""
    present = {(m["apiVersion"], m["kind"]) for m in render(mlmodel, settings)}
    return [key for key in CHILD_KINDS if key not in present]
