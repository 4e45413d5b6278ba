"""Real tabular data end to end: mixed types and missing values train through the preprocessing
pipeline, write, read back and predict exactly as the in-memory model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmodel_artifact import (
    FeatureKind,
    InputSchema,
    encode_rows,
    load_model,
    model_input,
    read_model_card,
    write_artifact,
)
from mlmodel_trainer.cli import main
from mlmodel_trainer.estimators import ESTIMATORS
from mlmodel_trainer.train import TrainConfig, train

SMALL = {"n_estimators": 10}


def churn_csv(path: Path, rows: int = 400, seed: int = 3) -> Path:
    """A churn table like a business's: income missing in ~5% of rows, a text city, a boolean."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 15_000, rows).round(2)
    city = rng.choice(["Oslo", "Bergen", "Tromsø", "Trondheim"], rows)
    member = rng.random(rows) < 0.4
    tenure = rng.integers(0, 120, rows)
    churn = (tenure < 24) & (~member) | (rng.random(rows) < 0.05)
    frame = pd.DataFrame(
        {
            "income": income,
            "city": city,
            "member": member,
            "tenure": tenure,
            "churn": np.where(churn, "yes", "no"),
        }
    )
    frame.loc[rng.random(rows) < 0.05, "income"] = np.nan
    frame.loc[rng.random(rows) < 0.03, "city"] = None
    frame.to_csv(path, index=False)
    return path


def _served_predictions(loaded_dir: Path, rows: list[list[object]]) -> list[object]:
    loaded = load_model(loaded_dir)
    columns = encode_rows(loaded.card.feature_schema, rows)
    x = model_input(columns, frame=True)
    return list(np.asarray(loaded.model.predict(x)).tolist())


def test_penguins_train_write_read_predict_identically(tmp_path: Path) -> None:
    result = train(TrainConfig(dataset="penguins", params=SMALL))
    description = result.description
    assert result.built.startswith("Pipeline: impute median (5 numeric")
    assert "impute most frequent + one-hot (2 categorical: island, sex)" in result.built
    schema = description.input_schema
    assert schema is not None and not schema.plain_numeric
    assert {f.name for f in schema.features if f.kind is FeatureKind.CATEGORICAL} == {
        "island",
        "sex",
    }
    uri, card = write_artifact(result.model, description, str(tmp_path / "penguins"))
    X_test = result.split.X_test
    want = np.asarray(result.model.predict(X_test)).tolist()
    rows = json.loads(json.dumps(_rows(X_test, card.feature_schema)))  # as a client sends them
    assert _served_predictions(Path(uri), rows) == want
    assert card.metrics["accuracy"] > 0.9


def test_missing_and_unseen_values_are_answered(tmp_path: Path) -> None:
    result = train(TrainConfig(dataset="penguins", params=SMALL))
    uri, card = write_artifact(result.model, result.description, str(tmp_path / "p"))
    rows: list[list[object]] = [
        ["Biscoe", None, None, None, None, None, 2008.0],  # every nullable feature left out
        ["Atlantis", 45.0, 15.0, 215.0, 5000.0, "unknown", 2009.0],  # unseen categories
    ]
    got = _served_predictions(Path(uri), rows)
    assert len(got) == 2 and all(label in card.class_labels for label in got)  # type: ignore[operator]


def test_generated_churn_csv_trains_end_to_end_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = churn_csv(tmp_path / "churn.csv")
    out = tmp_path / "churn"
    code = main(
        [
            "train",
            "--csv",
            str(csv),
            "--target",
            "churn",
            "--param",
            "n_estimators=10",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert "impute median (2 numeric: income, tenure)" in summary["built"]
    assert "impute most frequent (1 boolean: member)" in summary["built"]
    assert "one-hot (1 categorical: city)" in summary["built"]
    card = read_model_card(str(out))
    kinds = {f.name: (f.kind.value, f.nullable) for f in card.feature_schema.features}
    assert kinds == {
        "income": ("numeric", True),
        "city": ("categorical", True),
        "member": ("boolean", False),
        "tenure": ("numeric", False),
    }
    income = card.feature_schema.features[0].stats
    assert income is not None and income.quantiles is not None and income.missing > 0
    assert income.quantiles["p0"] <= income.quantiles["p50"] <= income.quantiles["p100"]
    city = card.feature_schema.features[1]
    assert city.categories == ["Bergen", "Oslo", "Tromsø", "Trondheim"]
    assert city.stats is not None and sum(city.stats.frequencies.values()) == city.stats.count  # type: ignore[union-attr]
    # the model answers named, mixed-type rows with the trainer's own predictions
    frame = pd.read_csv(csv).drop(columns=["churn"])
    rows = _rows(frame.head(40), card.feature_schema)
    loaded = load_model(out)
    keyed = [dict(zip(card.feature_names, row, strict=True)) for row in rows]
    x = model_input(encode_rows(card.feature_schema, keyed), frame=True)
    reference = train(
        TrainConfig(dataset=None, csv=csv, target="churn", params={"n_estimators": 10})
    ).model
    want = np.asarray(reference.predict(model_input(encode_rows(card.feature_schema, rows), True)))
    assert np.asarray(loaded.model.predict(x)).tolist() == want.tolist()


@pytest.mark.parametrize(
    "estimator",
    [name for name, spec in ESTIMATORS.items() if spec.classifier is not None],
)
def test_every_classifier_trains_on_mixed_data_and_round_trips(
    estimator: str, tmp_path: Path
) -> None:
    csv = churn_csv(tmp_path / "churn.csv", rows=200)
    params = {
        k: v for k, v in {"n_estimators": 5, "max_iter": 5}.items() if k in _params_of(estimator)
    }
    result = train(
        TrainConfig(dataset=None, csv=csv, target="churn", estimator=estimator, params=params)
    )
    uri, _ = write_artifact(result.model, result.description, str(tmp_path / estimator))
    loaded = load_model(Path(uri))
    X_test = result.split.X_test
    assert (
        np.asarray(loaded.model.predict(X_test)).tolist()
        == np.asarray(result.model.predict(X_test)).tolist()
    )


def _params_of(estimator: str) -> set[str]:
    spec = ESTIMATORS[estimator]
    cls = spec.classifier
    assert cls is not None
    return set(cls().get_params(deep=False))


def _rows(frame: pd.DataFrame, schema: InputSchema) -> list[list[object]]:
    from mlmodel_artifact.schema import frame_rows

    return frame_rows(frame, schema)  # type: ignore[return-value]
