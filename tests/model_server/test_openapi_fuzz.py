"""schemathesis against /openapi.json of a loaded server: no generated request gets a 5xx.

Each documented operation gets CASES_PER_OPERATION generated requests (valid and invalid
bodies, path parameters), sent in-process to the ready iris app and to a mixed-type
penguins pipeline (strings, nulls, typed rows). Besides "no server error",
every answer must match what the document says (status codes, content types, body schemas).
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serverkit import ready

from model_server.settings import ServerSettings


def _import_all(package: str) -> None:
    """Import every submodule of `package` now, at collection.

    schemathesis imports most of itself lazily, and pytest rewrites a plugin's modules as they
    are imported. CPython 3.11.7's ast.parse keeps its recursion counter in shared state, so a
    parse nested inside another (a finalizer importing during garbage collection) failed with
    "AST constructor recursion depth mismatch" about one run in three when those lazy imports
    happened mid-session; at collection nothing else is running.
    """
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, f"{package}."):
        if ".cli" in info.name or "graphql" in info.name:
            continue  # the CLI and GraphQL support are not used here
        with contextlib.suppress(ImportError):  # integrations whose packages are not installed
            importlib.import_module(info.name)


_import_all("schemathesis")

CASES_PER_OPERATION = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def penguins_client(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    """A ready in-process server for a mixed-type pipeline (strings, nulls, typed rows)."""
    from mlmodel_artifact import write_artifact
    from mlmodel_trainer.train import TrainConfig, train

    root = tmp_path_factory.mktemp("penguins-fuzz")
    result = train(TrainConfig(dataset="penguins", params={"n_estimators": 10}))
    uri, _ = write_artifact(result.model, result.description, str(root / "penguins"))
    with ready(ServerSettings(model_uri=uri, workdir=root / "work")) as client:
        yield client


@pytest.fixture(scope="module", params=["iris", "penguins"])
def served(request: pytest.FixtureRequest) -> tuple[str, TestClient]:
    """The model's name and a ready app: a plain numeric model and a mixed-type pipeline."""
    client = request.getfixturevalue(f"{request.param}_client")
    return request.param, client


@pytest.fixture(scope="module")
def operations(served: tuple[str, TestClient]) -> dict[str, Any]:
    """Every operation of the ready app's OpenAPI document, by 'METHOD path'."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", served[1].app)
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


def test_the_fuzzer_sees_every_documented_operation(operations: dict[str, Any]) -> None:
    assert len(operations) == 17
    assert "GET /v2/models/{name}/drift" in operations
    assert "POST /v1/models/{name}:predict" in operations


def total(client: TestClient, metric: str) -> float:
    text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(metric + "{")
    )


def test_generated_requests_never_get_a_server_error(
    operations: dict[str, Any], served: tuple[str, TestClient]
) -> None:
    name, client = served
    target = {"name": name, "version": "1"}
    requests, predictions = "model_server_requests_total", "model_server_predictions_total"
    before = total(client, requests), total(client, predictions)
    for operation in operations.values():

        @given(case=operation.as_strategy(), served=st.booleans())
        @settings(
            max_examples=CASES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def no_server_error(case: schemathesis.Case, served: bool) -> None:
            if served and case.path_parameters:
                # Half the cases address the served model, so bodies reach the data plane
                # instead of stopping at "no model named ...".
                case.path_parameters.update(
                    {k: target[k] for k in case.path_parameters if k in target}
                )
            case.call_and_validate(checks=CHECKS)

        no_server_error()
    # The cases really reached the app, and some reached the model itself.
    assert total(client, requests) - before[0] >= 5 * len(operations)
    assert total(client, predictions) > before[1]
