"""`mlmodel-train package`: wrap a model trained elsewhere (a notebook's file) into an artifact.

A thin layer over `mlmodel_artifact.package` (which notebook users call as `save(...)`): read
the sample CSV, package, say what was written and what to pin.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlmodel_artifact import ArtifactError, ModelFormat, PackageError, package_file
from mlmodel_artifact.package import Packaged
from mlmodel_trainer.data import _read_csv
from mlmodel_trainer.errors import TrainerError


@dataclass(frozen=True)
class PackageConfig:
    """What to package: the model file, the sample CSV (and its target column), where to."""

    model_file: Path
    sample: Path
    out: str
    target: str | None = None
    name: str | None = None
    trust: bool = False


def add_parser(commands: Any, run: Any) -> None:
    """The `package` subcommand."""
    cmd = commands.add_parser(
        "package",
        help="wrap a model trained elsewhere (pickle, skops, ONNX, XGBoost, LightGBM) into an "
        "artifact",
        description="Wrap a fitted model saved in a notebook into an artifact the model server "
        "and operator accept. The model card comes from the model (its input columns, classes) "
        "and from a sample CSV of rows it takes (input schema, sample outputs and, with "
        "--target, metrics on the sample).",
    )
    cmd.add_argument(
        "model_file",
        type=Path,
        metavar="MODEL_FILE",
        help="the model: .pkl/.pickle/.joblib (needs --trust), .skops, .onnx, XGBoost "
        ".json/.ubj or LightGBM .txt",
    )
    cmd.add_argument(
        "--sample",
        type=Path,
        required=True,
        metavar="CSV",
        help="CSV with a header row: rows the model takes, columns named as the model's features",
    )
    cmd.add_argument(
        "--target",
        metavar="COLUMN",
        help="the sample column holding the true values: the card then has metrics on the sample",
    )
    cmd.add_argument(
        "--out",
        required=True,
        metavar="URI",
        help="where to write: path, file:// or s3://bucket/prefix",
    )
    cmd.add_argument("--name", help="model name (default: from the model file's name)")
    cmd.add_argument(
        "--trust",
        action="store_true",
        help="load a pickle (joblib) file: it runs whatever code it holds, so only one you made",
    )
    cmd.add_argument("--json", action="store_true", help="print the result as one JSON object")
    cmd.set_defaults(run=run)


def package(config: PackageConfig) -> Packaged:
    """Read the sample and package the model file; user errors are one-line TrainerErrors."""
    sample = _read_csv(config.sample)
    try:
        return package_file(
            config.model_file,
            config.out,
            sample=sample,
            target=config.target,
            name=config.name,
            trust=config.trust,
            dataset=config.sample.name,
        )
    except (PackageError, ArtifactError) as exc:
        raise TrainerError(" ".join(str(exc).split())) from None


def run_package(args: argparse.Namespace, prog: str) -> int:
    """`package`: package, then print the artifact, its digest and what to pin."""
    result = package(
        PackageConfig(
            model_file=args.model_file,
            sample=args.sample,
            out=args.out,
            target=args.target,
            name=args.name,
            trust=args.trust,
        )
    )
    if args.json:
        print(json.dumps(summary(result)))
    else:
        print(render(args.model_file, result))
    if result.fallback:
        print(f"{prog}: note: {pin_note(result)}", file=sys.stderr)
    return 0


def summary(result: Packaged) -> dict[str, Any]:
    """The `package --json` object."""
    card = result.card
    return {
        "uri": result.uri,
        "sha256": card.sha256,
        "format": card.format.value,
        "pin_required": card.format is ModelFormat.JOBLIB,
        "source": result.source,
        "source_sha256": result.source_sha256,
        "name": card.name,
        "task": card.task.value,
        "estimator": card.estimator,
        "feature_names": card.feature_names,
        "class_labels": card.class_labels,
        "metrics": card.metrics,
        "files": {fmt.value: f.model_dump(mode="json") for fmt, f in card.files.items()},
        "note": pin_note(result) if result.fallback else None,
    }


def render(model_file: Path, result: Packaged) -> str:
    """Human-readable `package` output."""
    card = result.card
    primary = card.files[card.format]
    how = {
        "pickle": "a pickle, loaded because of --trust",
        "skops": "skops, loaded through the allow-list",
        "onnx": "ONNX, graph checked and written unchanged",
        "xgboost": "an XGBoost model file, data only",
        "lightgbm": "a LightGBM model file, data only",
    }.get(result.source, result.source)
    features = ", ".join(card.feature_names[:8]) + (" …" if len(card.feature_names) > 8 else "")
    lines = [
        f"packaged {card.estimator} ({card.task.value}) from {model_file.name} ({how})",
        f"source:   sha256 {result.source_sha256}  ({model_file.name})",
        f"features: {len(card.feature_names)}: {features}",
    ]
    if card.class_labels is not None:
        lines.append(f"classes:  {', '.join(str(c) for c in card.class_labels[:10])}")
    metrics = " ".join(f"{k}={v:.4f}" for k, v in card.metrics.items())
    lines.append(
        f"sample:   {card.training.n_test} rows"
        + (f"; metrics on them: {metrics}" if metrics else " (no --target: no metrics)")
    )
    lines += [
        f"artifact: {result.uri}",
        f"sha256:   {card.sha256}  ({primary.file}, {primary.size} bytes)",
    ]
    return "\n".join(lines)


def pin_note(result: Packaged) -> str:
    """Why the artifact is a pickle, and the digest to pin."""
    return (
        f"written as joblib (a pickle), not skops, because {result.fallback}; the model "
        "server loads a pickle only when its digest is pinned: set "
        f"spec.model.sha256: {result.card.sha256} in the MLModel"
    )
