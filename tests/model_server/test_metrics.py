"""/metrics: request counts and latency by route and status, predictions, load time, model info."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from serverkit import Artifact

from model_server.metrics import DOCS_ASSETS, LATENCY_BUCKETS, UNMATCHED, _route, observe_many

ROW = [5.1, 3.5, 1.4, 0.2]


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics keyed by (name, labels)."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, metric: str, **labels: str) -> float:
    return found.get((metric, frozenset(labels.items())), 0.0)


def test_request_count_and_latency_move_by_route_and_status(iris_client: TestClient) -> None:
    ok = {"protocol": "http", "route": "/predict", "method": "POST", "status": "200"}
    bad = {**ok, "route": "/v1/models/{name}:predict", "status": "404"}
    before = samples(iris_client)
    for _ in range(3):
        assert iris_client.post("/predict", json={"input": ROW}).status_code == 200
    assert iris_client.post("/v1/models/rose:predict", json={"instances": [ROW]}).status_code == 404
    after = samples(iris_client)
    assert (
        value(after, "model_server_requests_total", **ok)
        - value(before, "model_server_requests_total", **ok)
        == 3
    )
    assert (
        value(after, "model_server_requests_total", **bad)
        - value(before, "model_server_requests_total", **bad)
        == 1
    )
    count = "model_server_request_duration_seconds_count"
    assert value(after, count, **ok) - value(before, count, **ok) == 3
    assert value(after, "model_server_request_duration_seconds_sum", **ok) > value(
        before, "model_server_request_duration_seconds_sum", **ok
    )


def test_prediction_count_moves_by_rows_and_protocol(iris_client: TestClient) -> None:
    before = samples(iris_client)
    iris_client.post("/predict", json={"inputs": [ROW, ROW, ROW]})
    body = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROW + ROW}]}
    iris_client.post("/v2/models/iris/infer", json=body)
    after = samples(iris_client)
    name = "model_server_predictions_total"
    assert value(after, name, protocol="seed") - value(before, name, protocol="seed") == 3
    assert value(after, name, protocol="v2") - value(before, name, protocol="v2") == 2


def test_model_info_and_load_duration_describe_the_served_model(
    iris_client: TestClient, iris_artifact: Artifact
) -> None:
    found = samples(iris_client)
    info = {"name": "iris", "format": "skops", "digest": iris_artifact.card.sha256,
            "runtime": "onnxruntime"}  # fmt: skip
    assert value(found, "model_server_model_info", **info) == 1
    assert value(found, "model_server_model_load_duration_seconds") > 0


def test_unmatched_paths_are_counted_under_one_label(iris_client: TestClient) -> None:
    iris_client.get("/no/such/path/12345")
    found = samples(iris_client)
    labels = {"protocol": "http", "route": "<unmatched>", "method": "GET", "status": "404"}
    assert value(found, "model_server_requests_total", **labels) >= 1
    assert not any("/no/such/path" in str(key) for key in found)


def test_observe_many_gives_the_same_histogram_as_one_observe_per_value() -> None:
    """Values on bucket bounds, between them, past the last finite bound and zero; fails if the
    prometheus_client attributes observe_many updates change."""
    values = [0.0, 0.0002, 0.00021, 0.001, 0.003, 0.003, 0.7, 10.0, 12.5, 0.0001]
    expositions = []
    for many in (False, True):
        registry = CollectorRegistry()
        histogram = Histogram("t_seconds", "t", ["v"], buckets=LATENCY_BUCKETS, registry=registry)
        series = histogram.labels("1")
        if many:
            observe_many(series, values[:4])
            observe_many(series, values[4:])
        else:
            for v in values:
                series.observe(v)
        expositions.append(
            [
                line
                for line in generate_latest(registry).decode().splitlines()
                if "created" not in line
            ]
        )
    assert expositions[0] == expositions[1]
    assert 't_seconds_bucket{le="+Inf",v="1"} 10.0' in expositions[1]
    assert 't_seconds_bucket{le="0.0002",v="1"} 3.0' in expositions[1]  # 0, 0.0001, 0.0002


def test_the_docs_files_are_counted_under_one_route(iris_client: TestClient) -> None:
    before = samples(iris_client)
    for name in ("favicon.png", "swagger-ui.css"):
        assert iris_client.get(f"{DOCS_ASSETS}/{name}").status_code == 200
    after = samples(iris_client)
    files = {"protocol": "http", "route": DOCS_ASSETS, "method": "GET", "status": "200"}
    key = "model_server_requests_total"
    assert value(after, key, **files) - value(before, key, **files) == 2
    assert not [labels for _, labels in after if ("route", f"{DOCS_ASSETS}/favicon.png") in labels]


@pytest.mark.parametrize(
    ("path", "status", "label"),
    [
        # the file mount normalizes this and answers 200: a client-chosen label per request
        (f"{DOCS_ASSETS}/{'x' * 60000}/../favicon.png", 200, DOCS_ASSETS),
        (f"{DOCS_ASSETS}/nothing-here", 404, DOCS_ASSETS),
        ("/docs", 200, "/docs"),
        ("/openapi.json", 200, "/openapi.json"),
        ("/chosen-by-a-client", 200, UNMATCHED),
        ("/chosen-by-a-client", 404, UNMATCHED),
    ],
)
def test_a_request_without_a_route_is_labelled_by_a_fixed_name_never_its_path(
    path: str, status: int, label: str
) -> None:
    assert _route({"type": "http", "path": path}, status) == label
