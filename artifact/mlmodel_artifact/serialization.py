"""Serialize and deserialize a model in each format. Callers check digests before `deserialize`."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from mlmodel_artifact.card import ModelFormat
from mlmodel_artifact.errors import ArtifactError
from mlmodel_artifact.schema import InputSchema
from mlmodel_artifact.skops_safety import (
    TRUSTED_TYPES,
    check_loaded,
    check_skops_file,
    skops_types,
)

__all__ = ["TRUSTED_TYPES", "deserialize", "serialize", "untrusted_skops_types"]


def serialize(
    model: Any, fmt: ModelFormat, path: Path, n_features: int, schema: InputSchema | None = None
) -> None:
    """Write `model` to `path` in format `fmt`; ArtifactError(SerializationFailed) if it can't.

    `schema` (the card's input schema) lets a mixed-type pipeline become an ONNX graph with one
    input per feature."""
    try:
        _serialize(model, fmt, path, n_features, schema)
    except Exception as exc:
        raise ArtifactError(
            str(path),
            "SerializationFailed",
            f"cannot write {type(model).__name__} as {fmt}: {type(exc).__name__}: {exc}",
        ) from exc


def _serialize(
    model: Any, fmt: ModelFormat, path: Path, n_features: int, schema: InputSchema | None
) -> None:
    if fmt is ModelFormat.SKOPS:
        import skops.io

        _plain_lightgbm_dicts(model)
        # Deflate: forest arrays compress about 10x, and the file is fetched by every pod.
        skops.io.dump(model, path, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        refused = untrusted_skops_types(path)
        if refused:  # fail now, not when a server refuses to load it
            raise ValueError(
                f"it holds types a reader refuses to load: {', '.join(refused)} (not on "
                "mlmodel_artifact.skops_safety.TRUSTED_TYPES; use --format joblib, pinned)"
            )
    elif fmt is ModelFormat.JOBLIB:
        import joblib

        joblib.dump(model, path)
    elif fmt is ModelFormat.ONNX:
        from mlmodel_artifact.onnx_model import sklearn_to_onnx_bytes

        path.write_bytes(sklearn_to_onnx_bytes(model, n_features, schema))
    else:  # pragma: no cover - the enum is exhaustive
        raise AssertionError(fmt)


def _plain_lightgbm_dicts(model: Any) -> None:
    """LightGBM keeps its (usually empty) best scores in `defaultdict(OrderedDict)`s, whose
    factory is a class reference the skops reader refuses as a callable; make them plain dicts
    of dicts (nothing reads them to predict)."""
    from collections import defaultdict

    stack, seen = [model], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, list | tuple):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif type(obj).__module__.startswith(("sklearn.", "lightgbm.")) and hasattr(
            obj, "__dict__"
        ):
            for attr, value in vars(obj).items():
                if isinstance(value, defaultdict) and type(obj).__module__.startswith("lightgbm."):
                    setattr(obj, attr, {k: dict(v) for k, v in value.items()})
                else:
                    stack.append(value)


def deserialize(fmt: ModelFormat, data: bytes, uri: str, n_features: int) -> Any:
    """Load a model from the bytes whose digest the caller has checked.

    Bytes, not a path: a file read again after its check could have been replaced meanwhile
    (a shared volume), and the replacement would be loaded unchecked. `n_features` is the width
    of the input the model will be given (the card's feature count): a skops model must declare
    it, and the indices in its fitted trees are bounded by it.
    """
    try:
        if fmt is ModelFormat.SKOPS:
            return _load_skops(data, uri, n_features)
        if fmt is ModelFormat.JOBLIB:
            import joblib

            return joblib.load(io.BytesIO(data))
        from mlmodel_artifact.onnx_model import OnnxModel

        return OnnxModel(data, uri)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(
            uri,
            "ArtifactLoadFailed",
            f"cannot load the {fmt} model file: {type(exc).__name__}: {exc}",
        ) from exc


def untrusted_skops_types(path: Path) -> list[str]:
    """Types and functions in a skops file that are not on the allow-list (TRUSTED_TYPES)."""
    found = skops_types(path)
    return sorted(found.callables | (found.types - TRUSTED_TYPES) | found.misplaced)


def _load_skops(data: bytes, uri: str, n_features: int) -> Any:
    import skops.io

    from mlmodel_artifact.tree_checks import check_trees

    trusted = check_skops_file(data, uri)  # bounds and allow-list; raises before any load
    model = skops.io.loads(data, trusted=trusted)
    check_loaded(model, uri)  # no function or class left where scikit-learn would call it
    check_trees(model, uri, n_features)  # forged indices would read out of bounds in predict
    return model
