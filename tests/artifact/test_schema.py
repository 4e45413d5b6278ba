"""The typed feature schema: what it derives from data, what it accepts and what it refuses."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlmodel_artifact import (
    ArtifactError,
    Feature,
    FeatureKind,
    FeatureValueError,
    InputSchema,
    ModelCard,
    encode_rows,
    infer_schema,
    model_input,
)

SCHEMA = InputSchema(
    features=[
        Feature(name="income", kind=FeatureKind.NUMERIC, nullable=True),
        Feature(name="city", kind=FeatureKind.CATEGORICAL, categories=["Bergen", "Oslo"]),
        Feature(name="member", kind=FeatureKind.BOOLEAN),
        Feature(name="tenure"),
    ]
)


def test_rows_as_lists_or_keyed_objects_give_the_same_columns() -> None:
    listed = encode_rows(SCHEMA, [[None, "Oslo", True, 3], [1.5, "Tromsø", False, 4.0]])
    keyed = encode_rows(
        SCHEMA,
        [
            {"city": "Oslo", "member": True, "tenure": 3},  # a nullable feature may be left out
            {"income": 1.5, "city": "Tromsø", "member": False, "tenure": 4.0},
        ],
    )
    for a, b in zip(listed.arrays, keyed.arrays, strict=True):
        assert pd.isna(a).tolist() == pd.isna(b).tolist()
        assert [v for v in a.tolist() if v == v] == [v for v in b.tolist() if v == v]
    income, city, member, tenure = listed.arrays
    assert math.isnan(income[0]) and income[1] == 1.5
    assert city.dtype == object and city.tolist() == ["Oslo", "Tromsø"]  # unseen is allowed
    assert member.tolist() == [1.0, 0.0] and tenure.dtype == np.float64


def test_model_input_is_a_typed_frame_or_a_matrix() -> None:
    columns = encode_rows(SCHEMA, [[None, "Oslo", True, 3]])
    frame = model_input(columns, frame=True)
    assert list(frame.columns) == SCHEMA.names
    assert frame["income"].isna().all() and frame["member"].dtype == np.float64
    matrix = model_input(columns, frame=False)
    assert matrix.shape == (1, 4) and matrix.dtype == object
    numbers = InputSchema.numeric(["a", "b"])
    assert model_input(encode_rows(numbers, [[1, 2]]), frame=False).dtype == np.float64


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1.0, "Oslo", True, "three"], "inputs[0] feature 'tenure': must be a number, got string"),
        ([1.0, "Oslo", True, None], "feature 'tenure': is null, but the model was trained"),
        ([1.0, 7, True, 3], "feature 'city': is categorical and must be a string, got number 7"),
        ([1.0, "Oslo", 1, 3], "feature 'member': is boolean and must be true or false"),
        ([1.0, "Oslo", True, True], "feature 'tenure': must be a number, got boolean"),
        ([1e39, "Oslo", True, 3], "feature 'income': is 1e+39; NaN, infinity"),
        ([1.0, "x" * 300, True, 3], "feature 'city': is a string of 300 characters"),
        ([1.0, "Oslo", True], "inputs[0]: has 3 values; the model takes 4"),
        ({"city": "Oslo", "member": True}, "inputs[0]: is missing feature 'tenure'"),
        (
            {"city": "Oslo", "member": True, "tenure": 1, "zip": 1},
            "inputs[0]: unknown feature 'zip'",
        ),
        ("row", "inputs[0]: must be an object keyed by feature name or a list of 4 values"),
    ],
)
def test_bad_values_are_refused_naming_the_feature(row: Any, message: str) -> None:
    with pytest.raises(FeatureValueError) as err:
        encode_rows(SCHEMA, [row])
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([1.0, "Oslo", True, "three"], "inputs[57] feature 'tenure': must be a number, got string"),
        ([1.0, "Oslo", True, None], "inputs[57] feature 'tenure': is null"),
        ([1.0, "Oslo", True, True], "inputs[57] feature 'tenure': must be a number, got boolean"),
        ([1e39, "Oslo", True, 3], "inputs[57] feature 'income': is 1e+39"),
        ([10**400, "Oslo", True, 3], "inputs[57] feature 'income': is 1"),
        ([float("nan"), "Oslo", True, 3], "inputs[57] feature 'income': is nan"),
        ({"city": "Oslo", "member": True}, "inputs[57]: is missing feature 'tenure'"),
        ({"city": "Oslo", "member": True, "tenure": 1, "x": 1}, "inputs[57]: unknown feature 'x'"),
    ],
)
def test_a_bad_value_in_a_big_batch_is_named_like_in_a_small_one(row: Any, message: str) -> None:
    # batches from VECTOR_MIN_ROWS rows check numeric columns with numpy first
    good: list[Any] = [[float(i), "Oslo", i % 2 == 0, i] for i in range(100)]
    with pytest.raises(FeatureValueError) as err:
        encode_rows(SCHEMA, [*good[:57], row, *good[57:]])
    assert message in str(err.value)
    columns = encode_rows(SCHEMA, good)
    assert columns.arrays[0].tolist() == [float(i) for i in range(100)]
    assert columns.arrays[3].dtype == np.float64 and columns.arrays[3][99] == 99.0


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(FeatureValueError, match="empty batch"):
        encode_rows(SCHEMA, [])


def test_infer_schema_kinds_nullability_categories_and_statistics() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0, None, 4.0],
            "colour": ["red", "blue", "red", None],
            "flag": [True, False, True, True],
        }
    )
    x, colour, flag = infer_schema(frame).features
    assert (x.kind, x.nullable) == (FeatureKind.NUMERIC, True)
    assert x.stats is not None and x.stats.missing == 1 and x.stats.count == 3
    assert x.stats.quantiles is not None
    assert x.stats.quantiles["p0"] == 1.0 and x.stats.quantiles["p100"] == 4.0
    assert x.stats.quantiles["p50"] == 2.0
    assert (colour.kind, colour.categories) == (FeatureKind.CATEGORICAL, ["blue", "red"])
    assert colour.stats is not None and colour.stats.frequencies == {"red": 2, "blue": 1}
    assert (flag.kind, flag.nullable) == (FeatureKind.BOOLEAN, False)
    assert flag.stats is not None and flag.stats.frequencies == {"true": 3, "false": 1}


def test_schema_validation_refuses_duplicates_and_misplaced_categories() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        InputSchema(features=[Feature(name="a"), Feature(name="a")])
    with pytest.raises(ValueError, match="only categorical features have categories"):
        Feature(name="a", kind=FeatureKind.NUMERIC, categories=["x"])


def _card(**changes: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "name": "m",
        "task": "classification",
        "estimator": "X",
        "params": {},
        "feature_names": ["a", "b"],
        "class_labels": [0, 1],
        "metrics": {},
        "training": {
            "dataset": "d",
            "test_size": 0.2,
            "seed": 1,
            "n_train": 1,
            "n_test": 1,
            "data_fingerprint": "0" * 64,
        },
        "sample": {"inputs": [[1.0, 2.0]], "outputs": [0]},
        "format": "skops",
        "sha256": "a" * 64,
        "files": {"skops": {"file": "model.skops", "sha256": "a" * 64, "size": 1}},
        "library_versions": {},
        "created_at": "2026-01-01T00:00:00Z",
    }
    card.update(changes)
    return card


def test_a_card_without_a_schema_still_loads_as_required_numbers() -> None:
    card = ModelCard.from_json(json.dumps(_card()), "file:///m")
    assert card.input_schema is None
    assert card.feature_schema.plain_numeric and card.feature_schema.names == ["a", "b"]


def test_a_card_whose_schema_disagrees_with_its_features_is_invalid() -> None:
    schema = {"features": [{"name": "b"}, {"name": "a"}]}
    with pytest.raises(ArtifactError, match="input_schema lists features other than"):
        ModelCard.from_json(json.dumps(_card(input_schema=schema)), "file:///m")


def test_a_card_with_mixed_sample_rows_parses() -> None:
    schema = {"features": [{"name": "a", "kind": "categorical"}, {"name": "b", "nullable": True}]}
    text = json.dumps(_card(input_schema=schema, sample={"inputs": [["x", None]], "outputs": [1]}))
    card = ModelCard.from_json(text, "file:///m")
    assert card.sample.inputs == [["x", None]]
    assert card.feature_schema.features[0].kind is FeatureKind.CATEGORICAL
