"""The model card: what an artifact holds, written by the trainer and read by the server."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlmodel_artifact.drift import DriftReference
from mlmodel_artifact.errors import ArtifactError
from mlmodel_artifact.schema import InputSchema, Value

MODEL_CARD_FILE: Final = "model-card.json"
SCHEMA_VERSION: Final = 1


class ModelFormat(StrEnum):
    """How the model file is serialized."""

    SKOPS = "skops"  # safe to load: no arbitrary code runs on load; the default
    JOBLIB = "joblib"  # the seed guide's format: a pickle, loaded only after a digest check
    ONNX = "onnx"  # a portable graph run by ONNX Runtime


MODEL_FILE_NAMES: Final[dict[ModelFormat, str]] = {
    ModelFormat.SKOPS: "model.skops",
    ModelFormat.JOBLIB: "model.joblib",
    ModelFormat.ONNX: "model.onnx",
}


class Task(StrEnum):
    """What the model predicts."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


Label = int | float | str

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Sample(BaseModel):
    """A few held-out rows and what the model answered for them, so a reader can check its load."""

    model_config = _FROZEN

    # Rows in feature order; strings, booleans and nulls where the input schema allows them.
    inputs: list[list[Value]]
    outputs: list[Label]
    probabilities: list[list[float]] | None = None


class TrainingInfo(BaseModel):
    """Where the model came from."""

    model_config = _FROZEN

    dataset: str
    test_size: float
    seed: int
    n_train: int
    n_test: int
    data_fingerprint: str = Field(description="sha256 of the training data")


class ModelDescription(BaseModel):
    """Everything the trainer knows about a model before it is serialized."""

    model_config = _FROZEN

    name: str
    task: Task
    estimator: str
    params: dict[str, Any]
    feature_names: list[str]
    class_labels: list[Label] | None = None
    metrics: dict[str, float]
    training: TrainingInfo
    sample: Sample
    # Absent in cards written before it existed: then every feature is a required number.
    input_schema: InputSchema | None = None
    # How training rows and held-out outputs fall into bins: what a server's drift metrics
    # compare with (absent in older cards: then the server reports no drift).
    drift_reference: DriftReference | None = None

    @model_validator(mode="after")
    def _schema_matches_features(self) -> ModelDescription:
        if self.input_schema is not None and self.input_schema.names != self.feature_names:
            raise ValueError(
                "input_schema lists features other than feature_names (or in another order)"
            )
        reference = self.drift_reference
        if reference is not None and [f.name for f in reference.features] != self.feature_names:
            raise ValueError(
                "drift_reference lists features other than feature_names (or in another order)"
            )
        return self

    @property
    def n_features(self) -> int:
        """Number of input columns the model expects."""
        return len(self.feature_names)

    @property
    def feature_schema(self) -> InputSchema:
        """The input schema; for a card without one, every feature a required number."""
        return self.input_schema or InputSchema.numeric(self.feature_names)


class ModelFile(BaseModel):
    """One serialized form of the model inside the artifact."""

    model_config = _FROZEN

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int


class OnnxCheck(BaseModel):
    """How the artifact's ONNX form was checked against the model when the artifact was written:
    ONNX Runtime and the model answered the same rows (the sample plus generated ones) alike.

    A server serves a checked graph without importing scikit-learn (see the model server's
    runtimes); a graph that disagreed, or could not be made, is recorded with the reason."""

    model_config = _FROZEN
    agrees: bool
    rows: int = Field(ge=0, description="rows both answered (0: the graph never ran)")
    tolerance: float = Field(
        description="labels must be equal; probabilities (and regression values, relative and "
        "absolute) within this"
    )
    detail: str = Field(max_length=2000)


class ModelCard(ModelDescription):
    """The `model-card.json` of an artifact: the description plus what was written."""

    schema_version: int = SCHEMA_VERSION
    format: ModelFormat
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="digest of the primary model file")
    files: dict[ModelFormat, ModelFile]
    library_versions: dict[str, str]
    created_at: datetime
    # Written by `train` and `package` (absent in older cards, and when nothing was checked).
    onnx_check: OnnxCheck | None = None

    @property
    def checked_onnx(self) -> bool:
        """Whether the artifact's model.onnx is a form of its primary model that agreed with
        it when the artifact was written (so a server may serve it in the primary's place)."""
        return (
            self.format is not ModelFormat.ONNX
            and ModelFormat.ONNX in self.files
            and self.onnx_check is not None
            and self.onnx_check.agrees
        )

    def served_format(
        self,
        requested: ModelFormat | None = None,
        pin: str | None = None,
        *,
        compiled: bool = True,
    ) -> ModelFormat:
        """Which of the artifact's files a model server loads (the rule the server follows,
        and the operator reads to choose the pods' image).

        The `requested` format when one is named. Else the ONNX file when the `pin` is its
        digest, or when it was checked against the primary (`checked_onnx`), the compiled
        path is on and nothing is pinned: it is served as is, with no scikit-learn. A pin on
        another file means that file (the card is not pinned, so its word on the ONNX file
        is not enough). Else the primary.
        """
        if requested is not None:
            return requested
        onnx_file = self.files.get(ModelFormat.ONNX)
        if onnx_file is not None and pin == onnx_file.sha256:
            return ModelFormat.ONNX
        if self.checked_onnx and pin is None and compiled:
            return ModelFormat.ONNX
        return self.format

    @field_validator("files")
    @classmethod
    def _contract_file_names(
        cls, files: dict[ModelFormat, ModelFile]
    ) -> dict[ModelFormat, ModelFile]:
        """Each format's file has the contract's name: a reader never opens a path from a card."""
        for fmt, entry in files.items():
            if entry.file != MODEL_FILE_NAMES[fmt]:
                raise ValueError(
                    f"files.{fmt.value}.file is {entry.file[:100]!r} but the {fmt.value} model "
                    f"file of an artifact is always named {MODEL_FILE_NAMES[fmt]!r}"
                )
        return files

    def to_json(self) -> str:
        """Serialize as the indented JSON stored next to the model file."""
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, uri: str) -> ModelCard:
        """Parse a model card, raising ArtifactError(InvalidModelCard) that names the bad fields."""
        try:
            card = cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(_loc_part(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors()[:5]
            )
            raise ArtifactError(
                uri, "InvalidModelCard", f"{MODEL_CARD_FILE} does not parse: {problems}"
            ) from exc
        if card.format not in card.files:
            raise ArtifactError(
                uri,
                "InvalidModelCard",
                f"{MODEL_CARD_FILE} names format {card.format} but lists no file for it",
            )
        return card


def _loc_part(part: str | int) -> str:
    """One step of an error's location as a message shows it: a key from the card itself (a
    metric's name, say) may be megabytes or hold a newline, which would forge log lines."""
    if isinstance(part, int) or (part.isidentifier() and len(part) <= 64):
        return str(part)
    return repr(part[:64]) + ("…" if len(part) > 64 else "")
