"""Helpers for the model server tests: real artifacts and ready in-process apps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from devcluster.waiting import NotYet, WaitTimeout, wait_until
from mlmodel_artifact import (
    ModelCard,
    ModelDescription,
    ModelFormat,
    Sample,
    Task,
    TrainingInfo,
    write_artifact,
)
from model_server.app import create_app
from model_server.settings import READINESS_PATH, ServerSettings

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Artifact:
    """A written artifact: where it is and its card."""

    uri: str
    card: ModelCard


def describe(
    model: Any, name: str, rows: np.ndarray, features: list[str], task: Task
) -> ModelDescription:
    """A model description whose sample is what `model` answers for `rows`."""
    classifier = task is Task.CLASSIFICATION
    return ModelDescription(
        name=name,
        task=task,
        estimator=type(model).__name__,
        params={},
        feature_names=features,
        class_labels=model.classes_.tolist() if classifier else None,
        metrics={},
        training=TrainingInfo(
            dataset=name,
            test_size=0.0,
            seed=0,
            n_train=len(rows),
            n_test=0,
            data_fingerprint="0" * 64,
        ),
        sample=Sample(
            inputs=rows.tolist(),
            outputs=model.predict(rows).tolist(),
            probabilities=model.predict_proba(rows).tolist()
            if classifier and hasattr(model, "predict_proba")
            else None,
        ),
    )


def write(root: Path, model: Any, description: ModelDescription, *formats: ModelFormat) -> Artifact:
    """Write `model` as an artifact under root/<name>."""
    uri, card = write_artifact(
        model, description, str(root / description.name), formats or (ModelFormat.SKOPS,)
    )
    return Artifact(uri, card)


def settings_for(artifact: Artifact, workdir: Path, **overrides: Any) -> ServerSettings:
    """Server settings for an artifact (loopback, a private workdir)."""
    return ServerSettings(model_uri=artifact.uri, workdir=workdir, **overrides)


def wait_ready(client: TestClient, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll readiness until 200, failing with the last answer after `timeout` seconds."""

    def is_ready() -> bool | NotYet:
        answer = client.get(READINESS_PATH)
        return answer.status_code == 200 or NotYet(f"{answer.status_code} {answer.text}")

    try:
        wait_until("the model to be ready", is_ready, timeout, interval=0.02)
    except WaitTimeout as timed_out:
        raise AssertionError(
            f"model not ready after {timeout:.0f} s; readiness said {timed_out.last}"
        ) from None


@contextmanager
def running(settings: ServerSettings, **kwargs: Any) -> Iterator[TestClient]:
    """An in-process client for create_app(settings); the lifespan starts the model loading."""
    with TestClient(create_app(settings, **kwargs), raise_server_exceptions=False) as client:
        yield client


@contextmanager
def ready(settings: ServerSettings, **kwargs: Any) -> Iterator[TestClient]:
    """Like `running`, after readiness answered 200."""
    with running(settings, **kwargs) as client:
        wait_ready(client)
        yield client


def penguins_inputs(penguins: Any, infer_input: Any, n: int = 20) -> tuple[list[Any], list[Any]]:
    """Tensors for `n` test rows of the penguins pipeline (without nulls) as tritonclient's
    InferInput (`infer_input`, its http or grpc module's), one per feature: categories as
    BYTES, numbers FP64; and what the trained pipeline answers for those rows."""
    # Imported here: serverkit is loaded by a test proving the plain path never imports pandas.
    import pandas as pd

    from mlmodel_artifact.schema import frame_rows, normalize_frame

    schema = penguins.description.feature_schema
    rows = [r for r in frame_rows(penguins.split.X_test, schema) if None not in r][:n]
    inputs = []
    for j, feature in enumerate(schema.features):
        column = [row[j] for row in rows]
        categorical = feature.kind.value == "categorical"
        tensor = infer_input(feature.name, [len(rows)], "BYTES" if categorical else "FP64")
        tensor.set_data_from_numpy(np.array(column, dtype=object if categorical else np.float64))
        inputs.append(tensor)
    frame = normalize_frame(pd.DataFrame(rows, columns=schema.names), schema)
    return inputs, penguins.model.predict(frame).tolist()


def server_env(uri: str, sha256: str, name: str, root: Path, **extra: str) -> dict[str, str]:
    """MODEL_SERVER_* settings of a real server process for one artifact (pinned, named)."""
    return {
        "MODEL_SERVER_MODEL_URI": uri,
        "MODEL_SERVER_MODEL_NAME": name,
        "MODEL_SERVER_MODEL_SHA256": sha256,
        "MODEL_SERVER_WORKDIR": str(root / "work"),
        **extra,
    }
