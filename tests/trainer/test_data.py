"""Loading training data: bundled datasets, CSV files and the errors a user gets for bad CSVs."""

from pathlib import Path

import numpy as np
import pytest

from mlmodel_trainer.data import BUILTIN_DATASETS, fingerprint, load_builtin, load_csv
from mlmodel_trainer.errors import TrainerError


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "rows", "features"),
    [
        ("iris", 150, 4),
        ("wine", 178, 13),
        ("breast_cancer", 569, 30),
        ("digits", 1797, 64),
        ("diabetes", 442, 10),
    ],
)
def test_bundled_dataset_loads_with_its_feature_names(name: str, rows: int, features: int) -> None:
    data = load_builtin(name)
    assert data.X.shape == (rows, features)
    assert data.X.dtype == np.float64
    assert len(data.y) == rows
    assert len(data.feature_names) == features
    assert all(isinstance(f, str) for f in data.feature_names)


def test_every_bundled_dataset_is_listed() -> None:
    assert set(BUILTIN_DATASETS) == {"iris", "wine", "breast_cancer", "digits", "diabetes"}


def test_unknown_dataset_error_lists_the_choices() -> None:
    with pytest.raises(TrainerError, match=r"unknown dataset 'mnist'.*iris, wine"):
        load_builtin("mnist")


def test_plain_numeric_csv_is_a_float_matrix(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,label\n1,2.5,x\n3,4.5,y\n")
    data = load_csv(path, "label")
    assert data.feature_names == ["a", "b"]
    assert not data.tabular
    assert data.X.tolist() == [[1.0, 2.5], [3.0, 4.5]]
    assert data.y.tolist() == ["x", "y"]
    assert data.target_name == "label"
    assert data.name == f"csv:{path}"
    assert data.schema.plain_numeric


def test_mixed_csv_keeps_text_booleans_and_missing_values_typed_by_the_schema(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "a,city,label,member,income\n1,Oslo,x,true,\n3,,y,false,10.5\n")
    data = load_csv(path, "label")
    assert data.tabular
    kinds = {f.name: (f.kind.value, f.nullable) for f in data.schema.features}
    assert kinds == {
        "a": ("numeric", False),
        "city": ("categorical", True),
        "member": ("boolean", False),
        "income": ("numeric", True),
    }
    assert data.schema.features[1].categories == ["Oslo"]
    frame = data.X
    assert list(frame.columns) == ["a", "city", "member", "income"]
    assert frame["city"].iloc[0] == "Oslo"
    assert frame["city"].isna().tolist() == [False, True]
    assert frame["member"].tolist() == [1.0, 0.0]
    assert frame["income"].isna().tolist() == [True, False]


def test_booleans_with_missing_values_are_still_boolean(tmp_path: Path) -> None:
    path = write(tmp_path, "flag,y\ntrue,0\n,1\nfalse,0\n")
    feature = load_csv(path, "y").schema.features[0]
    assert (feature.kind.value, feature.nullable) == ("boolean", True)
    assert feature.stats is not None and feature.stats.frequencies == {"true": 1, "false": 1}


def test_csv_with_missing_target_value_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "a,y\n1,0\n2,\n")
    with pytest.raises(TrainerError, match=r"missing values in the target column 'y' \(1 row\)"):
        load_csv(path, "y")


def test_a_column_with_no_values_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "a,empty,y\n1,,0\n2,,1\n")
    with pytest.raises(TrainerError, match=r"no values at all: 'empty'"):
        load_csv(path, "y")


def test_an_identifier_column_is_refused_by_name(tmp_path: Path) -> None:
    rows = "".join(f"{i},id-{i},{i % 2}\n" for i in range(1100))
    path = write(tmp_path, "a,customer,y\n" + rows)
    with pytest.raises(TrainerError, match=r"column 'customer' has 1100 distinct text values"):
        load_csv(path, "y")


def test_penguins_is_built_in_with_missing_values_and_categories() -> None:
    data = load_builtin("penguins")
    assert data.tabular and data.n_rows == 344 and data.target_name == "species"
    by_name = {f.name: f for f in data.schema.features}
    assert by_name["island"].categories == ["Biscoe", "Dream", "Torgersen"]
    assert by_name["sex"].nullable and by_name["bill_length_mm"].nullable
    assert not by_name["island"].nullable


def test_csv_without_the_target_column_lists_its_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(TrainerError, match=r"no target column 'label'; its columns are: 'a', 'b'"):
        load_csv(path, "label")


def test_csv_that_does_not_exist_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(TrainerError, match=rf"CSV file {missing} does not exist"):
        load_csv(missing, "y")


def test_empty_csv_and_header_only_csv_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="is empty"):
        load_csv(write(tmp_path, "", "empty.csv"), "y")
    with pytest.raises(TrainerError, match="no data rows"):
        load_csv(write(tmp_path, "a,y\n", "header.csv"), "y")


def test_csv_with_only_the_target_column_has_no_features(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="no feature columns"):
        load_csv(write(tmp_path, "y\n1\n2\n"), "y")


def test_fingerprint_depends_on_every_value_and_feature_name() -> None:
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([0, 1])
    base = fingerprint(X, y, ["a", "b"])
    assert base == fingerprint(X.copy(), y.copy(), ["a", "b"])
    assert len(base) == 64
    assert base != fingerprint(np.array([[1.0, 2.0], [3.0, 4.5]]), y, ["a", "b"])
    assert base != fingerprint(X, np.array([1, 0]), ["a", "b"])
    assert base != fingerprint(X, y, ["a", "c"])
