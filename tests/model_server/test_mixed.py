"""Mixed-type tabular models (issue 14) served by the real server process on loopback.

Penguins (categorical island and sex, nullable measurements) and a churn table (text city,
boolean member, missing income) are trained by the trainer into Pipeline(ColumnTransformer ->
forest) artifacts; every protocol must answer exactly what the in-memory model answers, served
through the compiled path (one ONNX input per feature) and through scikit-learn (a DataFrame).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from server_process import Server, serving
from serverkit import Artifact

from mlmodel_artifact import FeatureKind, InputSchema, write_artifact
from mlmodel_artifact.compiled import PROBA_TOLERANCE
from mlmodel_artifact.schema import frame_rows, normalize_frame
from mlmodel_trainer.train import TrainConfig, train

SMALL = {"n_estimators": 10}
DATATYPE = {
    FeatureKind.NUMERIC: "FP64",
    FeatureKind.CATEGORICAL: "BYTES",
    FeatureKind.BOOLEAN: "BOOL",
}


@dataclass
class Served:
    """A mixed-type model: the in-memory pipeline, its held-out rows and its running server."""

    name: str
    model: Any
    schema: InputSchema
    x_test: pd.DataFrame
    server: Server
    compiled: bool  # served through the compiled path (MODEL_SERVER_COMPILED)

    @property
    def rows(self) -> list[list[Any]]:
        """Held-out rows as a client sends them (JSON values, null where missing)."""
        return json.loads(json.dumps(frame_rows(self.x_test, self.schema)))

    def keyed(self, rows: list[list[Any]]) -> list[dict[str, Any]]:
        return [dict(zip(self.schema.names, row, strict=True)) for row in rows]

    def want(self, rows: list[list[Any]]) -> list[Any]:
        """The in-memory model's labels for JSON rows (typed as the trainer typed its frame)."""
        frame = pd.DataFrame(rows, columns=self.schema.names)
        return np.asarray(self.model.predict(normalize_frame(frame, self.schema))).tolist()

    def tensors(self, rows: list[list[Any]], skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """A V2 body with one [N] tensor per feature, typed by the schema."""
        inputs = [
            {
                "name": f.name,
                "shape": [len(rows)],
                "datatype": DATATYPE[f.kind],
                "data": [row[j] for row in rows],
            }
            for j, f in enumerate(self.schema.features)
            if f.name not in skip
        ]
        return {"inputs": inputs}


def churn_csv(path: Path, rows: int = 300, seed: int = 3) -> Path:
    """A churn table: income missing in ~5% of rows, a text city (~3% missing), a boolean."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 120, rows)
    member = rng.random(rows) < 0.4
    frame = pd.DataFrame(
        {
            "income": rng.normal(50_000, 15_000, rows).round(2),
            "city": rng.choice(["Oslo", "Bergen", "Tromsø", "Trondheim"], rows),
            "member": member,
            "tenure": tenure,
            "churn": np.where((tenure < 24) & ~member | (rng.random(rows) < 0.05), "yes", "no"),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "income"] = np.nan
    frame.loc[rng.random(rows) < 0.03, "city"] = None
    frame.to_csv(path, index=False)
    return path


def serve(config: TrainConfig, root: Path, name: str, compiled: bool) -> Iterator[Served]:
    result = train(config)
    uri, card = write_artifact(result.model, result.description, str(root / name))
    schema = card.feature_schema
    assert not schema.plain_numeric
    env = {
        "MODEL_SERVER_MODEL_URI": uri,
        "MODEL_SERVER_MODEL_NAME": name,
        "MODEL_SERVER_MODEL_SHA256": card.sha256,
        "MODEL_SERVER_WORKDIR": str(root / f"{name}-work"),
        "MODEL_SERVER_COMPILED": str(compiled).lower(),
    }
    for server in serving(env, root / f"{name}.log"):
        yield Served(name, result.model, schema, result.split.X_test, server, compiled)


@pytest.fixture(scope="module", params=[True, False], ids=["compiled", "sklearn"])
def penguins(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("penguins")
    config = TrainConfig(dataset="penguins", params=SMALL)
    yield from serve(config, root, "penguins", request.param)


@pytest.fixture(scope="module", params=[True, False], ids=["compiled", "sklearn"])
def churn(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("churn")
    csv = churn_csv(root / "churn.csv")
    config = TrainConfig(dataset=None, csv=csv, target="churn", params=SMALL)
    yield from serve(config, root, "churn", request.param)


def post(served: Served, path: str, body: Any) -> Any:
    with served.server.client() as client:
        return client.post(path, json=body)


def test_penguins_answers_every_protocol_like_the_in_memory_model(penguins: Served) -> None:
    gaps: list[list[Any]] = [["Dream", None, 17.0, None, 3600.0, None, 2008.0]]
    rows = penguins.rows + gaps
    want = np.asarray(penguins.model.predict(penguins.x_test)).tolist() + penguins.want(gaps)
    assert penguins.want(rows) == want  # the held-out rows survive JSON unchanged
    assert post(penguins, "/predict", {"inputs": rows}).json() == {"predictions": want}
    single = post(penguins, "/predict", {"input": penguins.keyed(rows)[0]}).json()
    assert single == {"prediction": want[0]}
    v1 = post(
        penguins,
        "/v1/models/penguins:predict",
        {"instances": penguins.keyed(rows), "parameters": {"probabilities": True}},
    ).json()
    assert v1["predictions"] == want
    frame = pd.DataFrame(rows, columns=penguins.schema.names)
    proba = penguins.model.predict_proba(normalize_frame(frame, penguins.schema))
    # ONNX Runtime computes in float32: within the compiled path's agreement tolerance
    np.testing.assert_allclose(v1["probabilities"], proba, rtol=0, atol=PROBA_TOLERANCE)
    v2 = post(penguins, "/v2/models/penguins/infer", penguins.tensors(rows)).json()
    assert v2["outputs"][0]["datatype"] == "BYTES"
    assert v2["outputs"][0]["data"] == want


def test_churn_takes_bytes_bool_and_integer_tensors(churn: Served) -> None:
    rows = churn.rows
    want = np.asarray(churn.model.predict(churn.x_test)).tolist()
    body = churn.tensors(rows)
    kinds = {t["name"]: t["datatype"] for t in body["inputs"]}
    assert kinds == {"income": "FP64", "city": "BYTES", "member": "BOOL", "tenure": "FP64"}
    assert post(churn, "/v2/models/churn/infer", body).json()["outputs"][0]["data"] == want
    # integers as INT64 and [N, 1] shapes answer the same
    tenure = next(t for t in body["inputs"] if t["name"] == "tenure")
    tenure.update(datatype="INT64", shape=[len(rows), 1], data=[[int(v)] for v in tenure["data"]])
    assert post(churn, "/v2/models/churn/infer", body).json()["outputs"][0]["data"] == want
    assert post(churn, "/v1/models/churn:predict", {"instances": churn.keyed(rows)}).json() == {
        "predictions": want
    }


def test_nulls_are_accepted_where_the_schema_allows_them(penguins: Served, churn: Served) -> None:
    gaps: list[list[Any]] = [["Biscoe", None, None, None, None, None, 2008.0]]
    want = penguins.want(gaps)
    left_out = [{"island": "Biscoe", "year": 2008}]
    assert post(penguins, "/predict", {"inputs": left_out}).json() == {"predictions": want}
    assert post(penguins, "/predict", {"inputs": gaps}).json() == {"predictions": want}
    v2 = post(penguins, "/v2/models/penguins/infer", penguins.tensors(gaps)).json()
    assert v2["outputs"][0]["data"] == want
    nullable = tuple(f.name for f in penguins.schema.features if f.nullable)
    omitted = post(penguins, "/v2/models/penguins/infer", penguins.tensors(gaps, skip=nullable))
    assert omitted.json()["outputs"][0]["data"] == want
    churn_rows: list[list[Any]] = [[None, None, True, 12], [None, "Oslo", False, 3]]
    v2 = post(churn, "/v2/models/churn/infer", churn.tensors(churn_rows)).json()
    assert v2["outputs"][0]["data"] == churn.want(churn_rows)


def test_unseen_categories_are_answered(penguins: Served) -> None:
    rows: list[list[Any]] = [["Atlantis", 45.0, 15.0, 215.0, 5000.0, "unknown", 2009.0]]
    got = post(penguins, "/predict", {"inputs": rows})
    assert got.status_code == 200
    assert got.json() == {"predictions": penguins.want(rows)}


ROW = {
    "island": "Dream",
    "bill_length_mm": 41.5,
    "bill_depth_mm": 18.5,
    "flipper_length_mm": 201.0,
    "body_mass_g": 4000.0,
    "sex": "male",
    "year": 2009,
}


@pytest.mark.parametrize(
    ("change", "feature", "words"),
    [
        ({"bill_length_mm": "long"}, "bill_length_mm", 'must be a number, got string "long"'),
        ({"year": True}, "year", "must be a number, got boolean"),
        ({"island": 3}, "island", "must be a string, got number 3"),
        ({"island": None}, "island", "is null"),
        ({"year": None}, "year", "is null"),
        ({"beak": 1.0}, "beak", "unknown feature"),
        ({"year": [2009]}, "year", "must be a number, got array"),
        ({"body_mass_g": 1e39}, "body_mass_g", "float32"),
        ({"island": "x" * 300}, "island", "characters"),
        ({"island": "Dr\x00eam"}, "island", "NUL character"),
    ],
)
def test_bad_rows_are_422_naming_the_feature(
    penguins: Served, change: dict[str, Any], feature: str, words: str
) -> None:
    row = {**ROW, **change}
    for path, body in (
        ("/predict", {"input": row}),
        ("/predict", {"inputs": [ROW, row]}),
        ("/v1/models/penguins:predict", {"instances": [row]}),
    ):
        answer = post(penguins, path, body)
        assert answer.status_code == 422, (path, answer.text)
        error = answer.json()["error"]
        assert repr(feature) in error and words in error, error


def test_a_missing_required_feature_is_422_naming_it(penguins: Served) -> None:
    row = {k: v for k, v in ROW.items() if k != "year"}
    answer = post(penguins, "/predict", {"inputs": [row]})
    assert answer.status_code == 422
    assert "missing feature 'year'" in answer.json()["error"]
    short = post(penguins, "/predict", {"input": ["Dream", 41.5]})
    assert short.status_code == 422 and "has 2 values; the model takes 7" in short.json()["error"]


def _with(served: Served, feature: str, **tensor: Any) -> dict[str, Any]:
    body = served.tensors([list(ROW.values())])
    for t in body["inputs"]:
        if t["name"] == feature:
            t.update(tensor)
    return body


@pytest.mark.parametrize(
    ("name", "tensor", "words"),
    [
        (
            "island",
            {"datatype": "FP64", "data": [1.0]},
            "'island' is categorical; send it as a BYTES",
        ),
        ("year", {"datatype": "BYTES", "data": ["2009"]}, "'year' is numeric"),
        ("island", {"data": [None]}, "row 0 feature 'island': is null"),
        ("island", {"data": [7]}, "'island': is categorical and must be a string, got number 7"),
        (
            "year",
            {"datatype": "INT64", "data": [2009.5]},
            "'year' is INT64; its data must be integers",
        ),
        ("year", {"datatype": "INT32", "data": [2**40]}, "does not fit INT32"),
        ("year", {"name": "beak"}, "unknown feature 'beak'"),
        ("year", {"shape": [1, 2], "data": [2009, 2009]}, "'year' must have shape [N] or [N, 1]"),
        ("year", {"shape": [2], "data": [2009, 2009]}, "different lengths"),
        ("year", {"shape": [1, *[2**31] * 500]}, "shape must be a list of 1 to 8"),
        ("year", {"datatype": "STRING"}, "'year' has datatype 'STRING'"),
        ("sex", {"datatype": "BOOL", "data": [True]}, "'sex' is categorical"),
    ],
)
def test_bad_tensors_are_422_naming_the_feature(
    penguins: Served, name: str, tensor: dict[str, Any], words: str
) -> None:
    answer = post(penguins, "/v2/models/penguins/infer", _with(penguins, name, **tensor))
    assert answer.status_code == 422, answer.text
    assert words in answer.json()["error"]


def test_v2_missing_required_tensor_and_matrix_form_are_422(penguins: Served) -> None:
    body = penguins.tensors([list(ROW.values())], skip=("year",))
    answer = post(penguins, "/v2/models/penguins/infer", body)
    assert answer.status_code == 422
    assert "missing input tensor for feature 'year'" in answer.json()["error"]
    matrix = {"inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP64", "data": [1.0] * 7}]}
    answer = post(penguins, "/v2/models/penguins/infer", matrix)
    assert answer.status_code == 422
    assert "'island' is categorical" in answer.json()["error"]


def test_boolean_features_take_only_true_and_false(churn: Served) -> None:
    row = {"income": 1.0, "city": "Oslo", "member": 1, "tenure": 3}
    answer = post(churn, "/predict", {"input": row})
    assert answer.status_code == 422
    assert "'member'" in answer.json()["error"] and "true or false" in answer.json()["error"]
    body = churn.tensors([[1.0, "Oslo", 1, 3]])
    body["inputs"][2]["datatype"] = "INT64"
    answer = post(churn, "/v2/models/churn/infer", body)
    assert answer.status_code == 422 and "'member' is boolean" in answer.json()["error"]


def test_v2_metadata_lists_each_input_with_its_datatype(penguins: Served, churn: Served) -> None:
    with penguins.server.client() as client:
        inputs = client.get("/v2/models/penguins").json()["inputs"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in inputs] == [
        ("island", "BYTES", [-1, 1]),
        ("bill_length_mm", "FP64", [-1, 1]),
        ("bill_depth_mm", "FP64", [-1, 1]),
        ("flipper_length_mm", "FP64", [-1, 1]),
        ("body_mass_g", "FP64", [-1, 1]),
        ("sex", "BYTES", [-1, 1]),
        ("year", "FP64", [-1, 1]),
    ]
    assert inputs[5]["parameters"] == {"kind": "categorical", "nullable": True}
    with churn.server.client() as client:
        inputs = client.get("/v2/models/churn").json()["inputs"]
    assert {i["name"]: i["datatype"] for i in inputs}["member"] == "BOOL"


def test_openapi_describes_the_typed_row(penguins: Served) -> None:
    with penguins.server.client() as client:
        document = client.get("/openapi.json").json()
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    row = body["schema"]["properties"]["input"]["anyOf"][0]["anyOf"][1]
    assert row["properties"]["island"] == {"type": "string"}
    assert row["properties"]["sex"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert "sex" not in row["required"] and "island" in row["required"]


def test_the_compiled_path_serves_the_pipeline_after_the_agreement_check(penguins: Served) -> None:
    output = penguins.server.output()
    assert "Traceback" not in output
    with penguins.server.client() as client:
        meta = client.get("/v2/models/penguins").json()
    if not penguins.compiled:
        assert "compiled path" not in output
        assert meta["platform"] == "sklearn" and meta["parameters"]["compiled"] is False
        return
    # the sample rows plus 256 generated ones: every island, one never seen, nulls
    assert re.search(r"compiled path on: ONNX Runtime agrees with scikit-learn on \d+ rows", output)
    assert meta["platform"] == "onnxruntime" and meta["parameters"]["compiled"] is True


def test_bad_input_never_gets_a_server_error(penguins: Served) -> None:
    odd: list[Any] = [None, 1, "x", [], {}, [[]], [{}], [[None] * 7], [{"island": {}}]]
    with penguins.server.client() as client:
        for value in odd:
            for path, key in (("/predict", "input"), ("/predict", "inputs")):
                assert client.post(path, json={key: value}).status_code in (400, 422), value
            v1 = client.post("/v1/models/penguins:predict", json={"instances": value})
            assert v1.status_code == 422, value
            v2 = client.post("/v2/models/penguins/infer", json={"inputs": value})
            assert v2.status_code == 422, value
    assert penguins.server.process.poll() is None


IMPORTS = """
import sys
sys.path[:0] = {paths!r}
from serverkit import ready
from model_server.settings import ServerSettings
with ready(ServerSettings(model_uri={uri!r}, workdir={workdir!r}, model_format={fmt!r})) as c:
    assert c.post("/predict", json={{"inputs": {rows!r}}}).status_code == 200
print("pandas" in sys.modules)
"""


def _pandas_loaded(artifact_uri: str, rows: list[Any], workdir: Path, fmt: str) -> bool:
    here = Path(__file__).parent
    code = IMPORTS.format(
        paths=[str(here), str(here.parent / "support")],
        uri=artifact_uri,
        workdir=str(workdir),
        rows=rows,
        fmt=fmt,
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


def test_plain_numeric_models_never_import_pandas_themselves(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    # Served from its ONNX file (no scikit-learn, which imports pandas itself when installed:
    # sklearn.utils.fixes), nothing on the fast path may pull pandas in.
    rows = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]
    assert not _pandas_loaded(iris_artifact.uri, rows, tmp_path, "onnx")


def test_mixed_models_do_import_pandas(tmp_path: Path) -> None:
    result = train(TrainConfig(dataset="penguins", params=SMALL))
    uri, _ = write_artifact(result.model, result.description, str(tmp_path / "p"))
    assert _pandas_loaded(uri, [list(ROW.values())], tmp_path / "w", "skops")


def test_cards_without_a_schema_keep_the_float_matrix_path(
    iris_artifact: Artifact, iris_client: Any, sklearn_client: Any
) -> None:
    assert iris_artifact.card.input_schema is None
    for client in (iris_client, sklearn_client):
        info = client.app.state.plane.runtime().metadata
        assert info.schema is None and not info.mixed
        inputs = client.get("/v2/models/iris").json()["inputs"]
        assert inputs == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
        strings = client.post("/predict", json={"input": ["a", 3.5, 1.4, 0.2]})
        assert strings.status_code == 422
        assert "'sepal_length' must be a number" in strings.json()["error"]
