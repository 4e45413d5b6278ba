"""Real artifacts (tiny scikit-learn models written with the artifact contract) and ready apps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from server_process import Server, serving
from serverkit import (
    IRIS_FEATURES,
    Artifact,
    describe,
    ready,
    server_env,
    settings_for,
    write,
)
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier

from mlmodel_artifact import (
    ModelFormat,
    Task,
    write_artifact,
)
from mlmodel_trainer.train import TrainConfig, TrainResult, train


@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the session's artifacts live."""
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    """The iris data set (X, y)."""
    data = load_iris()
    return data.data, data.target


@pytest.fixture(scope="session")
def iris_forest(iris: tuple[np.ndarray, np.ndarray]) -> RandomForestClassifier:
    """A small iris forest, fitted once."""
    x, y = iris
    return RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y)


@pytest.fixture(scope="session")
def iris_artifact(
    artifact_root: Path, iris: tuple[np.ndarray, np.ndarray], iris_forest: RandomForestClassifier
) -> Artifact:
    """The iris forest in all three formats (skops primary)."""
    desc = describe(iris_forest, "iris", iris[0][::15], IRIS_FEATURES, Task.CLASSIFICATION)
    return write(
        artifact_root, iris_forest, desc, ModelFormat.SKOPS, ModelFormat.JOBLIB, ModelFormat.ONNX
    )


@pytest.fixture(scope="session")
def regression_artifact(artifact_root: Path) -> Artifact:
    """A ridge regression on the diabetes data (a linear model: compiled)."""
    data = load_diabetes()
    model = Ridge(alpha=1.0).fit(data.data, data.target)
    names = [str(n) for n in data.feature_names]
    return write(
        artifact_root, model, describe(model, "diabetes", data.data[::40], names, Task.REGRESSION)
    )


@pytest.fixture(scope="session")
def knn_artifact(artifact_root: Path, iris: tuple[np.ndarray, np.ndarray]) -> Artifact:
    """A nearest-neighbours classifier: not a tree ensemble or linear model."""
    x, y = iris
    model = KNeighborsClassifier(n_neighbors=3).fit(x, y)
    desc = describe(model, "iris-knn", x[::15], IRIS_FEATURES, Task.CLASSIFICATION)
    return write(artifact_root, model, desc)


@pytest.fixture(scope="session")
def string_label_artifact(artifact_root: Path, iris: tuple[np.ndarray, np.ndarray]) -> Artifact:
    """A logistic regression whose classes are species names."""
    x, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = LogisticRegression(max_iter=500).fit(x, names)
    desc = describe(model, "iris-names", x[::15], IRIS_FEATURES, Task.CLASSIFICATION)
    return write(artifact_root, model, desc)


@pytest.fixture(scope="session")
def ridge_classifier_artifact(artifact_root: Path, iris: tuple[np.ndarray, np.ndarray]) -> Artifact:
    """A linear classifier without predict_proba."""
    x, y = iris
    model = RidgeClassifier().fit(x, y)
    desc = describe(model, "iris-ridge", x[::15], IRIS_FEATURES, Task.CLASSIFICATION)
    return write(artifact_root, model, desc)


@pytest.fixture(scope="session")
def float32_trap_artifact(artifact_root: Path) -> Artifact:
    """A logistic regression whose decision needs more precision than ONNX's float32 inputs.

    Its boundary sits at x = 100000001.5; float32 rounds 100000001 and 100000002 to the same
    value (1e8), so the compiled graph cannot tell apart rows scikit-learn separates.
    """
    x = np.array([[0.0], [1.0]])
    model = LogisticRegression().fit(x, [0, 1])
    model.coef_ = np.array([[1.0]])
    model.intercept_ = np.array([-100000001.5])
    rows = np.array([[100000001.0], [100000002.0]])
    return write(artifact_root, model, describe(model, "trap", rows, ["x"], Task.CLASSIFICATION))


@pytest.fixture(scope="session")
def iris_client(
    iris_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """A ready in-process server for the iris artifact (compiled path on)."""
    workdir = tmp_path_factory.mktemp("iris-workdir")
    with ready(settings_for(iris_artifact, workdir, max_request_bytes=64 * 1024)) as client:
        yield client


@pytest.fixture(scope="session")
def sklearn_client(
    iris_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """A ready in-process server for the iris artifact on plain scikit-learn."""
    workdir = tmp_path_factory.mktemp("sklearn-workdir")
    with ready(settings_for(iris_artifact, workdir, compiled=False)) as client:
        yield client


@pytest.fixture(scope="session")
def iris_server(
    iris_artifact: Artifact, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The iris forest served by a real server process on loopback (HTTP and gRPC ports)."""
    root = tmp_path_factory.mktemp("iris-server")
    env = server_env(iris_artifact.uri, iris_artifact.card.sha256, "iris", root)
    yield from serving(env, root / "server.log")


@pytest.fixture(scope="session")
def penguins() -> TrainResult:
    """The trainer's mixed-type pipeline (ColumnTransformer -> small forest) on penguins."""
    return train(TrainConfig(dataset="penguins", params={"n_estimators": 10}))


@pytest.fixture(scope="session")
def penguins_server(
    penguins: TrainResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The penguins pipeline served by a real server process on loopback."""
    root = tmp_path_factory.mktemp("penguins-server")
    uri, card = write_artifact(penguins.model, penguins.description, str(root / "model"))
    yield from serving(server_env(uri, card.sha256, "penguins", root), root / "server.log")
