"""What the CLI prints: the training result and a readable model card."""

from __future__ import annotations

from typing import Any

from mlmodel_artifact import ModelCard
from mlmodel_trainer.estimators import ESTIMATORS
from mlmodel_trainer.params import json_safe_params


def training_summary(
    uri: str, card: ModelCard, warnings: list[str], built: str = ""
) -> dict[str, Any]:
    """The `train --json` object: artifact URI, digest, metrics and how it was trained."""
    return {
        "built": built or card.estimator,
        "uri": uri,
        "sha256": card.sha256,
        "name": card.name,
        "task": card.task.value,
        "estimator": card.estimator,
        "format": card.format.value,
        "files": {fmt.value: f.model_dump(mode="json") for fmt, f in card.files.items()},
        "onnx_check": card.onnx_check.model_dump(mode="json") if card.onnx_check else None,
        "metrics": card.metrics,
        "training": card.training.model_dump(mode="json"),
        "warnings": warnings,
    }


def render_training(uri: str, card: ModelCard, built: str = "") -> str:
    """Human-readable `train` output."""
    t = card.training
    primary = card.files[card.format]
    lines = [
        f"trained {card.estimator} on {t.dataset} ({card.task.value}): "
        f"{t.n_train} training rows, {t.n_test} held-out rows, seed {t.seed}",
    ]
    if built and built != card.estimator:
        lines.append(f"built:    {built}")
    lines += [
        f"held-out metrics: {_metrics(card.metrics)}",
        f"artifact: {uri}",
        f"sha256:   {card.sha256}  ({primary.file}, {primary.size} bytes)",
    ]
    for fmt, f in card.files.items():
        if fmt is not card.format:
            lines.append(f"also:     {f.file} ({f.size} bytes)  sha256 {f.sha256}")
    lines.append(f"onnx:     {onnx_line(card)}")
    return "\n".join(lines)


def onnx_line(card: ModelCard) -> str:
    """What the card says of the ONNX form: checked (and how to serve it), or why not."""
    check = card.onnx_check
    if check is None:
        return "not checked"
    if not check.agrees:
        return f"not written for serving: {check.detail}"
    return (
        f"{check.detail} (tolerance {check.tolerance:g}); pin model.onnx's sha256 "
        "(spec.model.sha256) to serve it without scikit-learn"
    )


def render_card(uri: str, card: ModelCard) -> str:
    """Human-readable model card."""
    t = card.training
    rows = [
        ("artifact", uri),
        ("name", card.name),
        ("task", card.task.value),
        ("estimator", estimator_call(card.estimator, card.params)),
        ("format", f"{card.format.value} (primary), sha256 {card.sha256}"),
        ("features", f"{len(card.feature_names)}: {_features(card)}"),
    ]
    if card.class_labels is not None:
        rows.append(("classes", _short_list([str(c) for c in card.class_labels])))
    rows += [
        ("metrics", f"{_metrics(card.metrics)} (held-out)"),
        (
            "data",
            f"{t.dataset}, {t.n_train} train / {t.n_test} held-out rows "
            f"(test size {t.test_size}, seed {t.seed})",
        ),
        ("data sha256", t.data_fingerprint),
        ("versions", ", ".join(f"{k} {v}" for k, v in card.library_versions.items())),
        ("created", card.created_at.isoformat()),
        ("sample", f"{len(card.sample.inputs)} held-out rows with outputs {card.sample.outputs}"),
        ("onnx", onnx_line(card)),
    ]
    lines = [f"{key + ':':<13}{value}" for key, value in rows]
    lines.append("files:")
    for fmt, f in card.files.items():
        lines.append(f"  {f.file}  ({fmt.value}, {f.size} bytes)  sha256 {f.sha256}")
    return "\n".join(lines)


def _features(card: ModelCard) -> str:
    schema = card.feature_schema
    if schema.plain_numeric:
        return _short_list(card.feature_names)
    described = []
    for f in schema.features:
        notes = [f.kind.value] + (["may be missing"] if f.nullable else [])
        if f.categories:
            notes.append("/".join(f.categories[:5]) + ("/..." if len(f.categories) > 5 else ""))
        described.append(f"{f.name} ({', '.join(notes)})")
    return _short_list(described)


def _metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


def estimator_call(estimator: str, params: dict[str, Any]) -> str:
    """`Name(k=v, ...)` with the parameters that differ from the defaults, like sklearn's repr.

    Estimators this trainer does not know are shown with all their parameters.
    """
    defaults = _defaults(estimator)
    shown = {k: v for k, v in sorted(params.items()) if k not in defaults or defaults[k] != v}
    return f"{estimator}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _defaults(estimator: str) -> dict[str, Any]:
    """scikit-learn's defaults, less those the trainer sets itself (so those are always shown)."""
    for spec in ESTIMATORS.values():
        for cls in (spec.classifier, spec.regressor):
            if cls is not None and cls.__name__ == estimator:
                defaults = json_safe_params(cls().get_params(deep=False))
                for key, _ in spec.defaults:
                    defaults.pop(key, None)
                return defaults
    return {}


def _short_list(items: list[str], limit: int = 8) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items) - limit} more)"
