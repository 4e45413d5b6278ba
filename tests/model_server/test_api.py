"""Every route and every error case, through an in-process client of the real app."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from serverkit import Artifact, ready, running, settings_for, wait_ready
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

from mlmodel_artifact import OnnxModel
from model_server.settings import READINESS_PATH

ROW = [5.1, 3.5, 1.4, 0.2]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
NAMED = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture(scope="module")
def expected(iris_forest: RandomForestClassifier) -> dict[str, Any]:
    x = np.array(ROWS)
    return {
        "labels": iris_forest.predict(x).tolist(),
        "proba": iris_forest.predict_proba(x),
    }


# --- seed API ---------------------------------------------------------------------------------


def test_seed_predict_answers_one_prediction_for_one_row(iris_client: TestClient) -> None:
    answer = iris_client.post("/predict", json={"input": ROW})
    assert answer.status_code == 200
    assert answer.json() == {"prediction": 0}
    assert answer.headers["content-type"] == "application/json"


def test_seed_predict_batch_form_answers_a_list(
    iris_client: TestClient, expected: dict[str, Any]
) -> None:
    answer = iris_client.post("/predict", json={"inputs": ROWS})
    assert answer.status_code == 200
    assert answer.json() == {"predictions": expected["labels"]}


# --- KServe V1 --------------------------------------------------------------------------------


def test_v1_lists_the_served_model(iris_client: TestClient) -> None:
    assert iris_client.get("/v1/models").json() == {"models": ["iris"]}


def test_v1_model_status_is_ready(iris_client: TestClient) -> None:
    assert iris_client.get("/v1/models/iris").json() == {"name": "iris", "ready": True}


def test_v1_predict_takes_rows_as_lists(iris_client: TestClient, expected: dict[str, Any]) -> None:
    answer = iris_client.post("/v1/models/iris:predict", json={"instances": ROWS})
    assert answer.status_code == 200
    assert answer.json() == {"predictions": expected["labels"]}


def test_v1_predict_takes_rows_keyed_by_feature_name(iris_client: TestClient) -> None:
    answer = iris_client.post("/v1/models/iris:predict", json={"instances": [NAMED, NAMED]})
    assert answer.json() == {"predictions": [0, 0]}


def test_v1_predict_answers_probabilities_on_request(
    iris_client: TestClient, expected: dict[str, Any]
) -> None:
    body = {"instances": ROWS, "parameters": {"probabilities": True}}
    answer = iris_client.post("/v1/models/iris:predict", json=body).json()
    assert answer["predictions"] == expected["labels"]
    np.testing.assert_allclose(answer["probabilities"], expected["proba"], atol=1e-5)


# --- Open Inference Protocol V2 ---------------------------------------------------------------


def test_v2_server_metadata_names_the_server(iris_client: TestClient) -> None:
    answer = iris_client.get("/v2").json()
    assert answer["name"] == "mlmodel-server"
    assert answer["version"] and answer["extensions"] == ["binary_tensor_data"]


def test_v2_liveness_and_readiness_answer_200_once_loaded(iris_client: TestClient) -> None:
    assert iris_client.get("/v2/health/live").json() == {"live": True}
    assert iris_client.get("/v2/health/ready").json() == {"ready": True}


@pytest.mark.parametrize("path", ["/v2/models/iris", "/v2/models/iris/versions/1"])
def test_v2_model_metadata_describes_inputs_and_outputs(
    iris_client: TestClient, iris_artifact: Artifact, path: str
) -> None:
    answer = iris_client.get(path).json()
    assert answer["name"] == "iris"
    assert answer["versions"] == ["1"]
    assert answer["platform"] == "onnxruntime"
    assert answer["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in answer["outputs"]] == ["predict", "predict_proba"]
    assert answer["parameters"]["sha256"] == iris_artifact.card.sha256
    assert answer["parameters"]["feature_names"] == list(iris_artifact.card.feature_names)


@pytest.mark.parametrize("path", ["/v2/models/iris/ready", "/v2/models/iris/versions/1/ready"])
def test_v2_model_readiness(iris_client: TestClient, path: str) -> None:
    assert iris_client.get(path).json() == {"name": "iris", "ready": True}


@pytest.mark.parametrize("path", ["/v2/models/iris/infer", "/v2/models/iris/versions/1/infer"])
def test_v2_infer_answers_the_predict_output(
    iris_client: TestClient, expected: dict[str, Any], path: str
) -> None:
    body = {"id": "req-1", "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32",
                                       "data": ROWS}]}  # fmt: skip
    answer = iris_client.post(path, json=body)
    assert answer.status_code == 200
    assert answer.json() == {
        "model_name": "iris",
        "model_version": "1",
        "id": "req-1",
        "outputs": [
            {"name": "predict", "shape": [3], "datatype": "INT64", "data": expected["labels"]}
        ],
    }


def test_v2_infer_answers_predict_proba_when_asked(
    iris_client: TestClient, expected: dict[str, Any]
) -> None:
    body = {
        "inputs": [
            {
                "name": "x",
                "shape": [3, 4],
                "datatype": "FP64",
                "data": [v for row in ROWS for v in row],
            }
        ],
        "outputs": [{"name": "predict_proba"}, {"name": "predict"}],
    }
    outputs = iris_client.post("/v2/models/iris/infer", json=body).json()["outputs"]
    proba, labels = outputs
    assert (proba["name"], proba["shape"], proba["datatype"]) == ("predict_proba", [3, 3], "FP32")
    np.testing.assert_allclose(np.reshape(proba["data"], (3, 3)), expected["proba"], atol=1e-5)
    assert labels["data"] == expected["labels"]


@pytest.mark.parametrize(
    ("datatype", "data"),
    [("INT32", [5, 3, 1, 0]), ("INT64", [5, 3, 1, 0]), ("BOOL", [True, True, True, False])],
)
def test_v2_infer_takes_integer_and_bool_tensors(
    iris_client: TestClient, datatype: str, data: list[Any]
) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": datatype, "data": data}]}
    answer = iris_client.post("/v2/models/iris/infer", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["shape"] == [1]


def test_v2_infer_takes_one_tensor_per_feature(iris_client: TestClient) -> None:
    inputs = [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in NAMED.items()]
    answer = iris_client.post("/v2/models/iris/infer", json={"inputs": inputs})
    assert answer.json()["outputs"][0]["data"] == [0]


# --- documentation ----------------------------------------------------------------------------


def test_openapi_documents_every_route_with_its_exact_path(iris_client: TestClient) -> None:
    paths = iris_client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/predict",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}:predict",
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/v2/models/{name}/drift",
        "/v2/models/{name}/versions/{version}/drift",
        "/metrics",
        "/",
    }
    body = paths["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"input", "inputs"}


def test_openapi_describes_the_served_models_rows_once_loaded(iris_client: TestClient) -> None:
    paths = iris_client.get("/openapi.json").json()["paths"]
    body = paths["/v1/models/{name}:predict"]["post"]["requestBody"]["content"]["application/json"]
    as_list, as_object = body["schema"]["properties"]["instances"]["items"]["anyOf"]
    assert (as_list["minItems"], as_list["maxItems"]) == (4, 4)
    assert as_object["required"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert as_object["additionalProperties"] is False


def test_docs_page_is_served(iris_client: TestClient) -> None:
    answer = iris_client.get("/docs")
    assert answer.status_code == 200
    assert "swagger" in answer.text.lower()


# --- errors -----------------------------------------------------------------------------------


def post_raw(client: TestClient, path: str, content: bytes) -> Any:
    return client.post(path, content=content, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/predict", {"input": [1, 2, 3]}, 422, "input[0] has 3 feature values; the model expects"),
        ("/predict", {"input": [1, 2, "x", 4]}, 422, "feature 'petal_length' must be a number"),
        ("/predict", {"input": [1, 2, None, 4]}, 422, "feature 'petal_length' must be a number"),
        ("/predict", {"input": [1, True, 3, 4]}, 422, "feature 'sepal_width' must be a number"),
        ("/predict", {"inputs": []}, 422, "inputs is an empty batch"),
        ("/predict", {"input": ROW, "inputs": ROWS}, 422, "send either 'input'"),
        ("/predict", {"rows": ROWS}, 422, "send either 'input'"),
        ("/predict", [ROW], 422, "the request body must be a JSON object"),
        ("/v1/models/iris:predict", {"instances": [NAMED | {"colour": 1}]}, 422,
         "unknown feature name 'colour'"),
        ("/v1/models/iris:predict", {"instances": [{"sepal_length": 1}]}, 422,
         "missing feature 'sepal_width'"),
        ("/v1/models/iris:predict", {"instances": []}, 422, "instances is an empty batch"),
        ("/v1/models/iris:predict", {"instances": ROWS, "parameters": {"probabilities": "yes"}},
         422, "parameters.probabilities must be true or false"),
        ("/v1/models/rose:predict", {"instances": ROWS}, 404, "no model named 'rose'"),
        ("/v2/models/rose/infer", {"inputs": []}, 404, "no model named 'rose'"),
        ("/v2/models/iris/versions/7/infer", {"inputs": []}, 404, "has no version '7'"),
        ("/v2/models/iris/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                               "data": [1, 2, 3, 4]}],
                                   "outputs": [{"name": "logits"}]}, 422,
         "outputs[0] must name one of: predict, predict_proba"),
        ("/v2/models/iris/infer", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16",
                                               "data": [1, 2, 3, 4]}]}, 422, "datatype 'FP16'"),
    ],
)  # fmt: skip
def test_client_errors_are_json_naming_what_was_wrong(
    iris_client: TestClient, path: str, body: Any, status: int, message: str
) -> None:
    answer = iris_client.post(path, json=body)
    assert answer.status_code == status
    assert message in answer.json()["error"]


def test_an_error_quoting_a_long_request_string_is_cut(iris_client: TestClient) -> None:
    """Messages quote names, datatypes, versions: what a client gets back stays short."""
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "X" * 20_000, "data": [1] * 4}
    answer = iris_client.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error.startswith(f"input 'input-0' has datatype '{'X' * 32}'…; supported: FP32")


@pytest.mark.parametrize("form", ["json", "binary"])
def test_a_datatype_nested_a_thousand_deep_is_a_client_error_not_a_500(
    iris_client: TestClient, form: str
) -> None:
    """Echoed with repr, a list nested 1,000 deep (orjson reads 1,024) raised RecursionError."""
    deep = "[" * 1000 + "]" * 1000
    tensor = f'{{"name": "input-0", "shape": [1, 4], "datatype": {deep}, "data": [1, 2, 3, 4]}}'
    body = f'{{"inputs": [{tensor}]}}'.encode()
    headers = {"Content-Type": "application/json"}
    if form == "binary":  # the binary tensor extension: the tensor's bytes after the JSON
        body = body.replace(b'"data": [1, 2, 3, 4]', b'"parameters": {"binary_data_size": 32}')
        headers["Inference-Header-Content-Length"] = str(len(body))
        body += bytes(32)
    answer = iris_client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert "has datatype array; supported:" in answer.json()["error"]


def test_an_inference_header_length_of_thousands_of_digits_is_a_client_error(
    iris_client: TestClient,
) -> None:
    """Python refuses to read an int of more than 4,300 digits: ValueError, a 500."""
    headers = {"Content-Type": "application/json", "Inference-Header-Content-Length": "9" * 5000}
    answer = iris_client.post("/v2/models/iris/infer", content=b"{}", headers=headers)
    assert answer.status_code == 400, answer.text
    assert "Inference-Header-Content-Length is '99999" in answer.json()["error"]


@pytest.mark.parametrize("path", ["/predict", "/v1/models/iris:predict", "/v2/models/iris/infer"])
@pytest.mark.parametrize("body", [b"{", b"", b"\xff\xfe", b'{"input": [1, 2, 3, 4]} trailing'])
def test_malformed_json_is_400(iris_client: TestClient, path: str, body: bytes) -> None:
    answer = post_raw(iris_client, path, body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("the request body is not valid JSON")


@pytest.mark.parametrize(
    ("path", "body"),
    [  # orjson refuses the surrogate; the stdlib, the fallback for NaN literals, took it, and
       # echoing it (V2's id) or naming it in an error failed the answer: a 500
        ("/v2/models/iris/infer", b'{"id": "\\ud800", "inputs": [{"name": "x", "shape": [1, 4], '
                                  b'"datatype": "FP64", "data": [NaN, 1, 1, 1]}]}'),
        ("/v2/models/iris/infer", b'{"id": "\\udc00", "inputs": []}'),
        ("/predict", b'{"input": [NaN, 1, 1, 1], "x": "\\ud83d"}'),
    ],
)  # fmt: skip
def test_a_lone_utf16_surrogate_is_400(iris_client: TestClient, path: str, body: bytes) -> None:
    answer = post_raw(iris_client, path, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == (
        "the request body is not valid JSON: a string holds a lone UTF-16 surrogate"
    )


@pytest.mark.parametrize(
    ("literal", "shown"), [(b"NaN", "nan"), (b"Infinity", "inf"), (b"-1e999", "-inf")]
)
def test_nan_and_infinity_are_422_naming_the_feature(
    iris_client: TestClient, literal: bytes, shown: str
) -> None:
    answer = post_raw(iris_client, "/predict", b'{"input": [5.1, %s, 1.4, 0.2]}' % literal)
    assert answer.status_code == 422
    assert answer.json() == {
        "error": f"input[0] feature 'sepal_width' is {shown}; NaN and infinity are not valid inputs"
    }


@pytest.mark.parametrize("runtime", ["compiled", "sklearn"])
@pytest.mark.parametrize("value", [b"1e39", b"-3.5e38"])
def test_values_beyond_float32_get_the_same_422_on_every_runtime(
    iris_client: TestClient, sklearn_client: TestClient, runtime: str, value: bytes
) -> None:
    client = iris_client if runtime == "compiled" else sklearn_client
    answer = post_raw(client, "/predict", b'{"input": [5.1, 3.5, %s, 0.2]}' % value)
    assert answer.status_code == 422
    shown = float(value)
    assert answer.json() == {
        "error": f"input[0] feature 'petal_length' is {shown}; values beyond float32's range "
        "(±3.403e+38) are not valid inputs"
    }


def test_batches_over_the_row_limit_are_413(sklearn_client: TestClient) -> None:
    rows = b",".join([b"[5.1,3.5,1.4,0.2]"] * 10_001)
    answer = post_raw(sklearn_client, "/v1/models/iris:predict", b'{"instances": [%s]}' % rows)
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "instances has 10001 rows; the limit is 10000 (MODEL_SERVER_MAX_ROWS), "
        "split the batch"
    }


def test_unknown_model_names_are_404(iris_client: TestClient) -> None:
    for path in ["/v1/models/rose", "/v2/models/rose", "/v2/models/rose/ready"]:
        answer = iris_client.get(path)
        assert answer.status_code == 404
        assert answer.json() == {"error": "no model named 'rose'; this server serves 'iris'"}
    assert iris_client.get("/v2/models/iris/versions/2").status_code == 404


def test_bodies_over_the_size_limit_are_413(iris_client: TestClient) -> None:
    body = b'{"inputs": [' + b",".join([b"[5.1, 3.5, 1.4, 0.2]"] * 4000) + b"]}"
    answer = post_raw(iris_client, "/predict", body)
    assert answer.status_code == 413
    assert "the limit is 65536 (MODEL_SERVER_MAX_REQUEST_BYTES)" in answer.json()["error"]


def test_streamed_bodies_over_the_size_limit_are_413(iris_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": ['
        for _ in range(4000):
            yield b"[5.1, 3.5, 1.4, 0.2],"
        yield b"[5.1, 3.5, 1.4, 0.2]]}"

    answer = iris_client.post("/v1/models/iris:predict", content=chunks())
    assert answer.status_code == 413
    assert "the limit is 65536" in answer.json()["error"]


def test_unknown_paths_and_methods_answer_json_errors(iris_client: TestClient) -> None:
    missing = iris_client.get("/v3/models")
    assert (missing.status_code, missing.json()) == (404, {"error": "Not Found"})
    wrong = iris_client.get("/predict")
    assert (wrong.status_code, wrong.json()) == (405, {"error": "Method Not Allowed"})


@pytest.mark.parametrize(
    "body",
    [b"null", b"1", b'"x"', b"[]", b"{}", b'{"input": {}}', b'{"inputs": [[]]}',
     b'{"inputs": [[1e308, 1e308, 1e308, 1e308]]}', b'{"instances": [[[1]]]}',
     b'{"inputs": [{"name": 1}]}', b'{"inputs": [{"name": "x", "shape": [-1], "data": []}]}',
     b'{"inputs": [{"name": "x", "shape": [99999999999], "datatype": "FP64", "data": [1]}]}',
     b'{"input": [18446744073709551616, 1, 1, 1]}', b"[" * 5000 + b"]" * 5000],
)  # fmt: skip
@pytest.mark.parametrize("path", ["/predict", "/v1/models/iris:predict", "/v2/models/iris/infer"])
@pytest.mark.parametrize("runtime", ["compiled", "sklearn"])
def test_odd_client_input_never_causes_a_server_error(
    iris_client: TestClient, sklearn_client: TestClient, runtime: str, path: str, body: bytes
) -> None:
    client = iris_client if runtime == "compiled" else sklearn_client
    answer = post_raw(client, path, body)
    assert answer.status_code < 500, answer.text
    if answer.status_code != 200:
        assert set(answer.json()) == {"error"}


# --- other models -----------------------------------------------------------------------------


def test_regression_models_answer_values_and_refuse_probabilities(
    regression_artifact: Artifact, tmp_path: Path
) -> None:
    card = regression_artifact.card
    with ready(settings_for(regression_artifact, tmp_path)) as client:
        answer = client.post("/predict", json={"inputs": card.sample.inputs}).json()
        np.testing.assert_allclose(answer["predictions"], card.sample.outputs, rtol=1e-5)
        body = {"instances": card.sample.inputs, "parameters": {"probabilities": True}}
        refused = client.post("/v1/models/diabetes:predict", json=body)
        assert refused.status_code == 422
        assert "regression model" in refused.json()["error"]


def test_classifiers_without_probabilities_answer_labels_and_refuse_probabilities(
    ridge_classifier_artifact: Artifact, tmp_path: Path
) -> None:
    with ready(settings_for(ridge_classifier_artifact, tmp_path)) as client:
        assert client.post("/predict", json={"input": ROW}).json() == {"prediction": 0}
        metadata = client.get("/v2/models/iris-ridge").json()
        assert [o["name"] for o in metadata["outputs"]] == ["predict"]
        body = {"instances": [ROW], "parameters": {"probabilities": True}}
        refused = client.post("/v1/models/iris-ridge:predict", json=body)
        assert refused.status_code == 422
        assert refused.json() == {
            "error": "model 'iris-ridge' is a RidgeClassifier; it has no class probabilities"
        }


def test_prediction_threads_use_one_openmp_thread(sklearn_client: TestClient) -> None:
    plane = sklearn_client.app.state.plane

    async def threads_seen() -> int:
        return await plane.run_in_thread(_openmp_effective_n_threads)

    assert sklearn_client.portal.call(threads_seen) == 1


def test_string_labels_are_answered_as_strings(
    string_label_artifact: Artifact, tmp_path: Path
) -> None:
    with ready(settings_for(string_label_artifact, tmp_path, model_name="species")) as client:
        assert client.post("/predict", json={"input": ROW}).json() == {"prediction": "setosa"}
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
        [output] = client.post("/v2/models/species/infer", json=body).json()["outputs"]
        assert (output["datatype"], output["data"]) == ("BYTES", ["setosa"])


def test_scikit_learn_runtime_serves_the_same_answers(
    iris_artifact: Artifact, expected: dict[str, Any], tmp_path: Path
) -> None:
    with ready(settings_for(iris_artifact, tmp_path, compiled=False)) as client:
        assert client.get("/v2/models/iris").json()["platform"] == "sklearn"
        answer = client.post("/predict", json={"inputs": ROWS}).json()
        assert answer == {"predictions": expected["labels"]}


# --- readiness and load failure ---------------------------------------------------------------


def test_readiness_is_503_until_the_model_is_loaded_then_200(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    release = threading.Event()

    def held_converter(estimator: Any, n_features: int) -> Any:
        release.wait(timeout=60)  # the test holds loading here, so "not yet ready" is observable
        return OnnxModel.from_sklearn(estimator, n_features)

    with running(settings_for(iris_artifact, tmp_path), convert=held_converter) as client:
        before = client.get(READINESS_PATH)
        assert (before.status_code, before.json()) == (503, {"error": "the model is still loading"})
        assert client.post("/predict", json={"input": ROW}).status_code == 503
        assert client.get("/v2/models/iris/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200
        generic = client.get("/openapi.json").text
        assert "x-model-row" in generic and "sepal_length" not in generic
        release.set()
        wait_ready(client)
        assert client.post("/predict", json={"input": ROW}).json() == {"prediction": 0}
        assert "sepal_length" in client.get("/openapi.json").text


def test_a_failed_load_keeps_readiness_503_and_reports_once(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    failures: list[str] = []
    done = threading.Event()

    def record(message: str) -> None:
        failures.append(message)
        done.set()

    settings = settings_for(iris_artifact, tmp_path, model_sha256="0" * 64)
    with running(settings, on_load_failure=record) as client:
        assert done.wait(timeout=60), "the loader never reported the digest mismatch"
        answer = client.get(READINESS_PATH)
        assert answer.status_code == 503
        # the reason, not the artifact's path or digests: those are for the log and status
        assert answer.json()["error"] == (
            "the model failed to load: [ArtifactDigestMismatch]; the server's log says why"
        )
    assert len(failures) == 1
    assert "ArtifactDigestMismatch" in failures[0] and iris_artifact.uri in failures[0]


def test_a_missing_artifact_fails_the_load_naming_the_uri(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    failures: list[str] = []
    done = threading.Event()
    uri = str(tmp_path / "nowhere")

    def record(message: str) -> None:
        failures.append(message)
        done.set()

    missing = Artifact(uri, iris_artifact.card)
    with running(settings_for(missing, tmp_path), on_load_failure=record):
        assert done.wait(timeout=60), "the loader never reported the missing artifact"
    assert failures[0].startswith("[ArtifactNotFound]")
    assert uri in failures[0]


def test_a_client_that_disconnects_mid_body_gets_no_answer_and_no_error(
    iris_client: TestClient,
) -> None:
    sent: list[dict[str, Any]] = []
    messages = iter([{"type": "http.request", "body": b'{"inputs": [', "more_body": True},
                     {"type": "http.disconnect"}])  # fmt: skip

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict",
             "root_path": "", "query_string": b"", "headers": [], "http_version": "1.1",
             "scheme": "http", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    gone = {"protocol": "http", "route": "/predict", "method": "POST", "status": "499"}
    before = metric(iris_client, "model_server_requests_total", gone)
    asyncio.run(iris_client.app(scope, receive, send))
    assert sent == []
    assert metric(iris_client, "model_server_requests_total", gone) == before + 1


def metric(client: TestClient, name: str, labels: dict[str, str]) -> float:
    """One sample of /metrics (0 when absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0
