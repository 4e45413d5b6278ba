"""The drift reference's bins and the population stability index: the textbook formula on
bins made independently (numpy.histogram on the same edges), the edge cases of binning, and a
card that carries a reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlmodel_artifact import ModelCard
from mlmodel_artifact.drift import (
    MISSING_BIN,
    OTHER_BIN,
    DriftReference,
    FeatureReference,
    counts,
    drift_reference,
    feature_bins,
    feature_reference,
    n_feature_bins,
    output_bins,
    output_reference,
    psi,
    shares,
)
from mlmodel_artifact.schema import Feature, FeatureKind, InputSchema

RNG = np.random.default_rng(7)


def textbook_psi(expected: np.ndarray, actual: np.ndarray, floor: float = 1e-4) -> float:
    e = np.maximum(expected, floor)
    a = np.maximum(actual, floor)
    return float(np.sum((a - e) * np.log(a / e)))


def histogram_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Shares per bin made by numpy.histogram on right-closed bins, the missing bin last: an
    implementation independent of `feature_bins` (searchsorted)."""
    present = values[~np.isnan(values)]
    # numpy's bins are [lo, hi); negate to get (lo, hi] with the same edges
    outer = [-np.inf, *edges, np.inf]
    hist, _ = np.histogram(-present, bins=[-x for x in reversed(outer)])
    per_bin = np.append(hist[::-1], np.isnan(values).sum()).astype(float)
    return per_bin / per_bin.sum()


def test_psi_of_the_server_bins_equals_the_textbook_formula_on_histogram_bins() -> None:
    training = RNG.normal(5.0, 2.0, 5_000)
    training[::50] = np.nan  # 2% missing
    ref = feature_reference("x", FeatureKind.NUMERIC, training)
    assert len(ref.edges or []) == 9 and abs(sum(ref.shares) - 1) < 1e-12
    np.testing.assert_allclose(ref.shares, histogram_shares(training, ref.edges or []), atol=1e-12)
    for window in (
        RNG.normal(5.0, 2.0, 1_000),  # the same distribution
        RNG.normal(5.0, 2.0, 1_000) * 3,  # scaled by 3
        np.where(RNG.random(1_000) < 0.3, np.nan, RNG.normal(6.0, 1.0, 1_000)),  # shifted, gaps
    ):
        served = shares(counts(feature_bins(ref, window), n_feature_bins(ref)))
        expected = textbook_psi(np.array(ref.shares), histogram_shares(window, ref.edges or []))
        assert psi(ref.shares, served) == pytest.approx(expected, abs=1e-6)


def test_a_window_from_the_training_distribution_stays_low_and_a_scaled_one_is_major() -> None:
    training = RNG.normal(5.0, 2.0, 5_000)
    ref = feature_reference("x", FeatureKind.NUMERIC, training)

    def window_psi(values: np.ndarray) -> float:
        return psi(ref.shares, shares(counts(feature_bins(ref, values), n_feature_bins(ref))))

    assert window_psi(RNG.normal(5.0, 2.0, 1_000)) < 0.1
    assert window_psi(RNG.normal(5.0, 2.0, 1_000) * 3) > 0.25


def test_numeric_bins_are_right_closed_and_nan_is_missing() -> None:
    ref = FeatureReference(
        name="x", kind=FeatureKind.NUMERIC, edges=[1.0, 2.0], shares=[0.25] * 4, rows=4
    )
    bins = feature_bins(ref, np.array([0.5, 1.0, 1.5, 2.0, 9.0, np.nan]))
    assert bins.tolist() == [0, 0, 1, 1, 2, 3]
    assert ref.labels == ["<= 1", "(1, 2]", "> 2", MISSING_BIN]


def test_categorical_bins_keep_the_frequent_categories_and_send_the_rest_to_other() -> None:
    values = np.array(["a"] * 5 + ["b"] * 3 + ["c"] + [np.nan], dtype=object)
    ref = feature_reference("c", FeatureKind.CATEGORICAL, values, max_categories=2)
    assert ref.categories == ["a", "b"]
    assert ref.labels == ["a", "b", OTHER_BIN, MISSING_BIN]
    assert ref.shares == pytest.approx([0.5, 0.3, 0.1, 0.1])
    served = feature_bins(ref, np.array(["b", "never seen", np.nan, "a"], dtype=object))
    assert served.tolist() == [1, 2, 3, 0]


def test_boolean_bins_are_false_true_missing() -> None:
    ref = feature_reference("b", FeatureKind.BOOLEAN, np.array([0.0, 1.0, 1.0, np.nan]))
    assert ref.labels == ["false", "true", MISSING_BIN]
    assert ref.shares == pytest.approx([0.25, 0.5, 0.25])


def test_output_bins_match_labels_across_number_types_and_regression_uses_deciles() -> None:
    ref = output_reference(np.array([0, 1, 1, 2]), class_labels=[0, 1, 2])
    assert ref.shares == pytest.approx([0.25, 0.5, 0.25, 0.0])
    assert output_bins(ref, np.array([1.0, 2, 7])).tolist() == [1, 2, 3]  # 7: other
    labelled = output_reference(np.array(["setosa", "virginica"], dtype=object), ["setosa", "x"])
    assert labelled.shares == pytest.approx([0.5, 0.0, 0.5])
    regression = output_reference(np.linspace(0, 1, 101), class_labels=None)
    assert len(regression.edges or []) == 9 and len(regression.shares) == 10


def test_psi_refuses_bins_that_differ_and_floors_empty_ones() -> None:
    with pytest.raises(ValueError, match="2 expected shares but 3"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])
    value = psi([1.0, 0.0], [0.0, 1.0])
    assert math.isfinite(value) and value == pytest.approx(2 * (1 - 1e-4) * math.log(1e4))


def test_a_card_carries_the_reference_and_refuses_one_for_other_features() -> None:
    schema = InputSchema(
        features=[Feature(name="x"), Feature(name="c", kind=FeatureKind.CATEGORICAL)]
    )
    columns = [RNG.normal(size=50), np.array(["a", "b"] * 25, dtype=object)]
    reference = drift_reference(schema, columns, np.array([0, 1] * 25), [0, 1])
    card = json.loads(_card_json())
    card["drift_reference"] = json.loads(reference.model_dump_json())
    parsed = ModelCard.from_json(json.dumps(card), "mem://card")
    assert parsed.drift_reference == reference
    assert isinstance(parsed.drift_reference, DriftReference)
    card["feature_names"] = ["x", "other"]
    card["input_schema"]["features"][1]["name"] = "other"
    with pytest.raises(Exception, match="drift_reference lists features other than"):
        ModelCard.from_json(json.dumps(card), "mem://card")


def test_shares_must_match_the_bins() -> None:
    with pytest.raises(ValueError, match="3 shares for 4 bins"):
        FeatureReference(
            name="x", kind=FeatureKind.NUMERIC, edges=[1.0, 2.0], shares=[1, 0, 0], rows=1
        )


def _card_json() -> str:
    return json.dumps(
        {
            "name": "m",
            "task": "classification",
            "estimator": "E",
            "params": {},
            "feature_names": ["x", "c"],
            "class_labels": [0, 1],
            "metrics": {},
            "training": {
                "dataset": "d",
                "test_size": 0.2,
                "seed": 0,
                "n_train": 1,
                "n_test": 1,
                "data_fingerprint": "0" * 64,
            },
            "sample": {"inputs": [[1.0, "a"]], "outputs": [1]},
            "input_schema": {
                "features": [
                    {"name": "x"},
                    {"name": "c", "kind": "categorical", "categories": ["a", "b"]},
                ]
            },
            "format": "skops",
            "sha256": "a" * 64,
            "files": {"skops": {"file": "model.skops", "sha256": "a" * 64, "size": 1}},
            "library_versions": {},
            "created_at": "2026-01-01T00:00:00Z",
        }
    )
