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


def test_csv_features_are_every_column_but_the_target(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,label,c\n1,2.5,x,true\n3,4.5,y,false\n")
    data = load_csv(path, "label")
    assert data.feature_names == ["a", "b", "c"]
    assert data.X.tolist() == [[1.0, 2.5, 1.0], [3.0, 4.5, 0.0]]
    assert data.y.tolist() == ["x", "y"]
    assert data.target_name == "label"
    assert data.name == f"csv:{path}"


def test_csv_with_missing_values_names_the_columns_and_counts(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,c,y\n1,,3,0\n4,5,,1\n7,,9,0\n")
    with pytest.raises(TrainerError) as err:
        load_csv(path, "y")
    message = str(err.value)
    assert "missing values" in message
    assert "'b' (2 rows)" in message
    assert "'c' (1 row)" in message
    assert "'a'" not in message
    assert str(path) in message


def test_csv_with_missing_target_value_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "a,y\n1,0\n2,\n")
    with pytest.raises(TrainerError, match=r"missing values in column\(s\): 'y' \(1 row\)"):
        load_csv(path, "y")


def test_csv_with_non_numeric_feature_names_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "size,color,shape,y\n1,red,round,0\n2,blue,square,1\n")
    with pytest.raises(TrainerError) as err:
        load_csv(path, "y")
    message = str(err.value)
    assert "non-numeric feature column(s)" in message
    assert "'color' (e.g. 'red')" in message
    assert "'shape' (e.g. 'round')" in message
    assert "'size'" not in message


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
