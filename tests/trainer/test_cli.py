"""The `mlmodel-train` command: train / inspect / verify, --json output, one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.ensemble import RandomForestClassifier

from mlmodel_artifact import ModelCard, read_model_card, sha256_file
from mlmodel_trainer.cli import main
from mlmodel_trainer.report import estimator_call
from mlmodel_trainer.train import TrainConfig, train

FAST = ["--param", "n_estimators=10"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_json_reports_metrics_uri_and_digest_of_what_was_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "iris"
    code, out, err = run(["train", "--out", str(dest), "--json", *FAST], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["uri"] == str(dest)
    assert result["sha256"] == sha256_file(dest / "model.skops")
    assert result["format"] == "skops"
    assert result["files"]["skops"]["file"] == "model.skops"
    expected = train(TrainConfig(params={"n_estimators": 10})).description
    assert result["metrics"] == expected.metrics
    assert result["training"]["seed"] == 42 and result["training"]["test_size"] == 0.2
    assert (result["name"], result["task"]) == ("iris", "classification")
    assert result["estimator"] == "RandomForestClassifier"
    assert result["warnings"] == []
    # compiled at training time: the ONNX form, checked against the forest, beside the primary
    assert result["files"]["onnx"]["sha256"] == sha256_file(dest / "model.onnx")
    assert result["onnx_check"]["agrees"] and result["onnx_check"]["rows"] > 0


def test_train_prints_metrics_uri_and_sha256(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "wine"
    code, out, _ = run(["train", "--dataset", "wine", "--out", f"file://{dest}", *FAST], capsys)
    assert code == 0
    card = read_model_card(str(dest))
    assert f"held-out metrics: accuracy={card.metrics['accuracy']:.4f}" in out
    assert f"artifact: {dest}" in out
    assert f"sha256:   {sha256_file(dest / 'model.skops')}" in out
    assert f"also:     model.onnx ({(dest / 'model.onnx').stat().st_size} bytes)" in out
    assert "onnx:     ONNX Runtime agrees with scikit-learn on " in out
    assert "pin model.onnx's sha256 (spec.model.sha256) to serve it without scikit-learn" in out


def test_train_writes_every_requested_format_first_is_primary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "d"
    argv = ["train", "--dataset", "diabetes", "--estimator", "ridge", "--out", str(dest)]
    code, out, _ = run([*argv, "--format", "onnx", "--format", "joblib", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["format"] == "onnx"
    assert set(result["files"]) == {"onnx", "joblib"}
    assert result["sha256"] == sha256_file(dest / "model.onnx")
    assert set(result["metrics"]) == {"r2", "mae"}


def test_train_without_out_writes_under_out_slash_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(["train", "--name", "flowers", "--json", *FAST], capsys)
    assert code == 0
    assert json.loads(out)["uri"] == str(tmp_path / "out" / "flowers")
    assert read_model_card("out/flowers").name == "flowers"


def test_inspect_prints_the_card_readably_and_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = str(tmp_path / "iris")
    assert run(["train", "--out", dest, "--param", "max_depth=3", *FAST], capsys)[0] == 0
    code, out, _ = run(["inspect", dest], capsys)
    assert code == 0
    card = read_model_card(dest)
    assert "name:        iris" in out
    assert (
        "estimator:   RandomForestClassifier(max_depth=3, n_estimators=10, random_state=42)" in out
    )
    assert "classes:     0, 1, 2" in out
    assert f"data sha256: {card.training.data_fingerprint}" in out
    assert "scikit-learn" in out
    code, out, _ = run(["inspect", dest, "--json"], capsys)
    assert code == 0
    assert ModelCard.from_json(out, dest) == card


def test_card_shows_changed_params_and_the_trainer_defaults_like_sklearn_repr() -> None:
    params = RandomForestClassifier(random_state=42).get_params()
    assert estimator_call("RandomForestClassifier", params) == (
        "RandomForestClassifier(n_estimators=100, random_state=42)"
    )
    assert estimator_call("Custom", {"b": 1, "a": "x"}) == "Custom(a='x', b=1)"


def test_verify_accepts_intact_artifact_and_pinned_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = str(tmp_path / "iris")
    run(["train", "--out", dest, *FAST], capsys)
    digest = sha256_file(tmp_path / "iris" / "model.skops")
    code, out, _ = run(["verify", dest, "--sha256", digest], capsys)
    assert code == 0
    assert f"verified {dest}" in out and digest in out
    code, out, _ = run(["verify", dest, "--json"], capsys)
    assert json.loads(out) == {
        "uri": dest,
        "verified": True,
        "sha256": digest,
        "files": {
            "skops": {
                "file": "model.skops",
                "sha256": digest,
                "size": len((tmp_path / "iris" / "model.skops").read_bytes()),
            },
            "onnx": {  # the ONNX form, written because it agreed with the forest
                "file": "model.onnx",
                "sha256": sha256_file(tmp_path / "iris" / "model.onnx"),
                "size": len((tmp_path / "iris" / "model.onnx").read_bytes()),
            },
        },
    }


def test_verify_fails_on_wrong_pinned_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = str(tmp_path / "iris")
    run(["train", "--out", dest, *FAST], capsys)
    code, out, err = run(["verify", dest, "--sha256", "0" * 64], capsys)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert f"expected {'0' * 64}" in err and dest in err


@pytest.mark.parametrize("damage", ["truncate", "tamper"])
def test_verify_fails_on_changed_model_file(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "iris"
    run(["train", "--out", str(dest), "--format", "joblib", *FAST], capsys)
    model_file = dest / "model.joblib"
    data = model_file.read_bytes()
    if damage == "truncate":
        model_file.write_bytes(data[: len(data) // 2])
    else:
        model_file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    code, _, err = run(["verify", str(dest)], capsys)
    assert code == 1
    assert "model.joblib" in err and "changed or truncated" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--estimator", "catboost"], "unknown estimator 'catboost'"),
        (["train", "--param", "n_trees=5"], "unknown parameter(s) 'n_trees'"),
        (["train", "--param", "n_estimators"], "is not of the form key=value"),
        (["train", "--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["train", "--csv", "{tmp}/missing.csv", "--target", "y"], "does not exist"),
        (
            ["train", "--csv", "{tmp}/holes.csv", "--target", "y"],
            "missing values in the target column 'y' (1 row)",
        ),
        (
            ["train", "--csv", "{tmp}/blank.csv", "--target", "y"],
            "feature column(s) with no values at all: 'c'",
        ),
        (["train", "--out", "http://127.0.0.1:9/x"], "read-only"),
        (
            ["train", "--csv", "{tmp}/prices.csv", "--target", "y", "--task", "classification"],
            "target 'y' has continuous values (e.g. 1.5)",
        ),
        (["inspect", "{tmp}/nothing"], "nothing"),
        (["verify", "ftp://host/x"], "unsupported URI scheme 'ftp'"),
    ],
)
def test_user_errors_are_one_line_on_stderr_with_exit_1(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "holes.csv").write_text("a,b,y\n1,,0\n2,3,\n")
    (tmp_path / "blank.csv").write_text("a,c,y\n1,,0\n2,,1\n")
    (tmp_path / "prices.csv").write_text("a,y\n1,1.5\n2,2.0\n")
    code, out, err = run([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("mlmodel-train: error: ")
    assert err.count("\n") == 1, err
    assert message in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--format", "pickle"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'pickle'" in capsys.readouterr().err


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_python_dash_m_trains_and_prints_json(tmp_path: Path) -> None:
    dest = tmp_path / "iris"
    trained = subprocess.run(
        [sys.executable, "-m", "mlmodel_trainer", "train", "--out", str(dest), "--json", *FAST],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["sha256"] == sha256_file(dest / "model.skops")


def test_installed_command_reports_user_error_without_traceback(tmp_path: Path) -> None:
    csv = tmp_path / "holes.csv"
    csv.write_text("a,b,y\n1,,\n")
    command = Path(sys.executable).parent / "mlmodel-train"
    proc = subprocess.run(
        [str(command), "train", "--csv", str(csv), "--target", "y"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"mlmodel-train: error: CSV {csv} has missing values in the target column 'y' (1 row); "
        "drop those rows before training"
    ]


def test_help_lists_the_package_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["package", "--help"])
    out, _ = capsys.readouterr()
    assert exited.value.code == 0
    assert "MODEL_FILE" in out and "--trust" in out and "--sample" in out and "--target" in out
