"""The model artifact contract, shared by the trainer (writer) and the model server (reader)."""

import os
from typing import TYPE_CHECKING

# ONNX Runtime (1.32 on Linux) starts Microsoft's 1DS telemetry when it is imported: it writes a
# device id and an event queue under ~/.cache/Microsoft/DeveloperTools and sends them to
# mobile.events.data.microsoft.com. A model server must not phone home (nor write to its home),
# so every process that loads ONNX through this package has it off, unless its owner turned it
# on explicitly. Set here, before anything of ours can import onnxruntime.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from mlmodel_artifact.artifact import (
    LoadedModel,
    check_digest,
    fetch_artifact,
    library_versions,
    load_model,
    parse_format,
    read_checked,
    read_model_card,
    require_pin,
    verify_artifact,
    write_artifact,
)
from mlmodel_artifact.card import (
    MODEL_CARD_FILE,
    MODEL_FILE_NAMES,
    Label,
    ModelCard,
    ModelDescription,
    ModelFile,
    ModelFormat,
    OnnxCheck,
    Sample,
    Task,
    TrainingInfo,
)
from mlmodel_artifact.digest import sha256_bytes, sha256_file
from mlmodel_artifact.errors import ArtifactError
from mlmodel_artifact.package import PackageError, package_file, save
from mlmodel_artifact.schema import (
    Columns,
    Feature,
    FeatureKind,
    FeatureStats,
    FeatureValueError,
    InputSchema,
    encode_rows,
    infer_schema,
    model_input,
    takes_frame,
)
from mlmodel_artifact.storage import HTTP_TOKEN_ENV, Location, parse_location

__all__ = [
    "HTTP_TOKEN_ENV",
    "MODEL_CARD_FILE",
    "MODEL_FILE_NAMES",
    "ArtifactError",
    "Columns",
    "Feature",
    "FeatureKind",
    "FeatureStats",
    "FeatureValueError",
    "InputSchema",
    "Label",
    "LoadedModel",
    "Location",
    "ModelCard",
    "ModelDescription",
    "ModelFile",
    "ModelFormat",
    "OnnxCheck",
    "OnnxModel",
    "PackageError",
    "Sample",
    "Task",
    "TrainingInfo",
    "check_digest",
    "encode_rows",
    "fetch_artifact",
    "infer_schema",
    "library_versions",
    "load_model",
    "model_input",
    "package_file",
    "parse_format",
    "parse_location",
    "read_checked",
    "read_model_card",
    "require_pin",
    "save",
    "sha256_bytes",
    "sha256_file",
    "takes_frame",
    "verify_artifact",
    "write_artifact",
]

if TYPE_CHECKING:
    from mlmodel_artifact.onnx_model import OnnxModel


def __getattr__(name: str) -> object:
    # OnnxModel pulls in numpy: imported on first use, so reading model cards (the operator)
    # does not load numpy at all.
    if name == "OnnxModel":
        from mlmodel_artifact.onnx_model import OnnxModel

        return OnnxModel
    raise AttributeError(f"module 'mlmodel_artifact' has no attribute {name!r}")
