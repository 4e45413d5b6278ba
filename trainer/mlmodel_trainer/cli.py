"""`mlmodel-train`: train | package | inspect | verify. User errors: one line on stderr, exit 1."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlmodel_artifact import (
    ArtifactError,
    ModelCard,
    ModelDescription,
    ModelFormat,
    Task,
    parse_location,
    read_model_card,
    verify_artifact,
    write_artifact,
)
from mlmodel_trainer.data import DATASET_NAMES
from mlmodel_trainer.errors import TrainerError
from mlmodel_trainer.estimators import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    parse_params,
)
from mlmodel_trainer.package import add_parser as _add_package
from mlmodel_trainer.package import run_package
from mlmodel_trainer.report import render_card, render_training, training_summary
from mlmodel_trainer.train import DEFAULT_SEED, DEFAULT_TEST_SIZE, TrainConfig, train

PROG = "mlmodel-train"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except (TrainerError, ArtifactError) as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for all subcommands."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_package(commands, lambda args: run_package(args, PROG))
    inspect = commands.add_parser("inspect", help="print an artifact's model card")
    inspect.add_argument("uri", metavar="URI", help="artifact: path, file://, http(s):// or s3://")
    inspect.add_argument("--json", action="store_true", help="print the model card JSON")
    inspect.set_defaults(run=run_inspect)
    verify = commands.add_parser("verify", help="re-compute an artifact's digests")
    verify.add_argument("uri", metavar="URI", help="artifact: path, file://, http(s):// or s3://")
    verify.add_argument("--sha256", help="also require the primary model file to have this digest")
    verify.add_argument("--json", action="store_true", help="print the result as one JSON object")
    verify.set_defaults(run=run_verify)
    return parser


def _add_train(commands: Any) -> None:
    train_cmd = commands.add_parser(
        "train",
        help="train, evaluate and write an artifact",
        description="Train a scikit-learn estimator, evaluate it on a held-out split "
        "(stratified by class for classification) and write a model artifact.",
    )
    data = train_cmd.add_mutually_exclusive_group()
    data.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help=f"bundled dataset: {', '.join(DATASET_NAMES)} (default: iris)",
    )
    data.add_argument(
        "--csv",
        type=Path,
        metavar="PATH",
        help="CSV file with a header row; columns may hold numbers, true/false or text, and "
        "empty cells (a preprocessing pipeline imputes and one-hot encodes them)",
    )
    train_cmd.add_argument("--target", metavar="COLUMN", help="the CSV column to predict")
    train_cmd.add_argument(
        "--task", choices=[t.value for t in Task], help="default: inferred from the target"
    )
    train_cmd.add_argument(
        "--estimator",
        default=DEFAULT_ESTIMATOR,
        metavar="NAME",
        help=f"{', '.join(ESTIMATORS)} (default: {DEFAULT_ESTIMATOR})",
    )
    train_cmd.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="estimator parameter (int, float, true/false, none or text); repeatable",
    )
    train_cmd.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: 42")
    train_cmd.add_argument(
        "--test-size",
        type=float,
        default=DEFAULT_TEST_SIZE,
        help="held-out fraction (default: 0.2)",
    )
    train_cmd.add_argument("--name", help="model name (default: from the dataset or CSV file)")
    train_cmd.add_argument(
        "--out",
        metavar="DEST",
        help="where to write: path, file:// or s3://bucket/prefix (default: out/NAME)",
    )
    train_cmd.add_argument(
        "--format",
        action="append",
        choices=[f.value for f in ModelFormat],
        dest="formats",
        help="model file format; repeatable, the first is the primary (default: skops)",
    )
    train_cmd.add_argument(
        "--json", action="store_true", help="print the result as one JSON object"
    )
    train_cmd.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    """`train`: fit, evaluate, write the artifact, print metrics, URI and sha256."""
    config = TrainConfig(
        dataset=args.dataset,
        csv=args.csv,
        target=args.target,
        task=Task(args.task) if args.task else None,
        estimator=args.estimator,
        params=parse_params(args.param),
        seed=args.seed,
        test_size=args.test_size,
        name=args.name,
    )
    formats = [ModelFormat(f) for f in args.formats] if args.formats else [ModelFormat.SKOPS]
    if args.out is not None:
        _check_writable(args.out)
    result = train(config)
    dest = args.out or f"out/{result.description.name}"
    uri, card = _write(result.model, result.description, dest, formats)
    for line in result.warnings:
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(training_summary(uri, card, result.warnings, result.built)))
    else:
        print(render_training(uri, card, result.built))
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    """`inspect`: print the model card (readable, or its JSON with --json)."""
    card = read_model_card(args.uri)
    print(card.to_json() if args.json else render_card(args.uri, card))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """`verify`: re-compute digests; ArtifactError (exit 1) on any mismatch."""
    card: ModelCard = verify_artifact(args.uri, args.sha256)
    files = {fmt.value: f.model_dump(mode="json") for fmt, f in card.files.items()}
    if args.json:
        print(
            json.dumps({"uri": args.uri, "verified": True, "sha256": card.sha256, "files": files})
        )
    else:
        print(f"verified {args.uri}")
        for fmt, f in card.files.items():
            print(f"  {f.file}  sha256 {f.sha256}  {f.size} bytes  ({fmt.value})")
    return 0


def _write(
    model: Any, description: ModelDescription, dest: str, formats: list[ModelFormat]
) -> tuple[str, ModelCard]:
    try:
        written: tuple[str, ModelCard] = write_artifact(
            model, description, dest, formats, check_onnx=True
        )
    except (ValueError, TypeError, RuntimeError) as exc:
        # A converter (skl2onnx, skops) that cannot serialize this model raises its own errors.
        names = ", ".join(f.value for f in formats)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise TrainerError(
            f"writing {description.estimator} as {names} to {dest} failed: "
            f"{type(exc).__name__}: {first_line}"
        ) from exc
    return written


def _check_writable(dest: str) -> None:
    """Refuse a destination the artifact cannot be written to before spending time training."""
    loc = parse_location(dest)
    if loc.scheme not in ("file", "s3"):
        raise TrainerError(
            f"--out {dest}: {loc.scheme}:// locations are read-only; "
            "write to a local path, file:// or s3://bucket/prefix"
        )


def _fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)
