"""schemathesis against /openapi.json of a loaded server: no generated request gets a 5xx.

Each documented operation gets CASES_PER_OPERATION generated requests (valid and invalid
bodies, path parameters), sent in-process to the ready iris app.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

CASES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def operations(iris_client: TestClient) -> dict[str, Any]:
    """Every operation of the ready iris app's OpenAPI document, by 'METHOD path'."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", iris_client.app)
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        found[f"{operation.method.upper()} {operation.path}"] = operation
    return found


def test_the_fuzzer_sees_every_documented_operation(operations: dict[str, Any]) -> None:
    assert len(operations) == 14
    assert "POST /v1/models/{name}:predict" in operations


def total_requests(client: TestClient) -> float:
    text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("model_server_requests_total{")
    )


def test_generated_requests_never_get_a_server_error(
    operations: dict[str, Any], iris_client: TestClient
) -> None:
    before = total_requests(iris_client)
    for operation in operations.values():

        @given(case=operation.as_strategy())
        @settings(
            max_examples=CASES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        no_server_error()
    # The cases really reached the app (each operation at least a few times).
    assert total_requests(iris_client) - before >= 5 * len(operations)
