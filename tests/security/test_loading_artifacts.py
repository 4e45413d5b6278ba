"""Loading never runs untrusted code or reads files outside the artifact: ONNX, cards, joblib.

Each attack is a real file in a real artifact whose card an attacker has made agree with it.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from server_process import START_TIMEOUT_S, start
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from mlmodel_artifact import (
    MODEL_CARD_FILE,
    ArtifactError,
    ModelDescription,
    ModelFormat,
    OnnxModel,
    Sample,
    Task,
    TrainingInfo,
    load_model,
    read_model_card,
    serialization,
    sha256_file,
    verify_artifact,
    write_artifact,
)
from model_server.runtimes import load_runtime
from model_server.settings import ServerSettings

X, Y = load_iris(return_X_y=True)


def write_iris(directory: Path, *formats: ModelFormat) -> str:
    """A genuine iris artifact in `formats`; returns the primary file's sha256."""
    model = LogisticRegression(max_iter=1000).fit(X, Y)
    rows = X[::30]
    description = ModelDescription(
        name="iris",
        task=Task.CLASSIFICATION,
        estimator="LogisticRegression",
        params={},
        feature_names=[f"f{i}" for i in range(4)],
        class_labels=[0, 1, 2],
        metrics={},
        training=TrainingInfo(
            dataset="iris", test_size=0.0, seed=0, n_train=150, n_test=0, data_fingerprint="0" * 64
        ),
        sample=Sample(inputs=rows.tolist(), outputs=model.predict(rows).tolist()),
    )
    _, card = write_artifact(model, description, str(directory), list(formats))
    return card.sha256


def plant(directory: Path, fmt: ModelFormat, content: bytes) -> None:
    """Put `content` where the artifact's `fmt` file goes and make the card agree with it."""
    path = directory / f"model.{fmt.value}"
    path.write_bytes(content)
    edit_card(directory, lambda card: set_digest(card, fmt, sha256_file(path)))


def set_digest(card: dict[str, Any], fmt: ModelFormat, digest: str) -> None:
    card["files"][fmt.value]["sha256"] = digest
    if card["format"] == fmt.value:
        card["sha256"] = digest


def edit_card(directory: Path, edit: Any) -> None:
    card = json.loads((directory / MODEL_CARD_FILE).read_text())
    edit(card)
    (directory / MODEL_CARD_FILE).write_text(json.dumps(card))


# --- ONNX -------------------------------------------------------------------------------------


def onnx_reading(location: str) -> bytes:
    """A graph adding its input to a 4-float initializer kept in the external file `location`."""
    weights = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4])
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    return _model([helper.make_node("Add", ["input", "W"], ["label"])], [weights])


def onnx_with_domain(domain: str, nested: bool) -> bytes:
    """A graph calling operator `Payload` of `domain`, at the top or inside an If branch."""
    payload = helper.make_node("Payload", ["input"], ["label"], domain=domain)
    if not nested:
        return _model([payload], [], extra_domain=domain)
    out = helper.make_tensor_value_info("label", TensorProto.FLOAT, [None, 4])
    branch = helper.make_graph([payload], "branch", [], [out])
    flag = helper.make_tensor("flag", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["flag"], ["label"], then_branch=branch, else_branch=branch)
    return _model([node], [flag], extra_domain=domain)


def _model(nodes: list[Any], initializers: list[Any], extra_domain: str | None = None) -> bytes:
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])]
    outputs = [helper.make_tensor_value_info("label", TensorProto.FLOAT, [None, 4])]
    graph = helper.make_graph(nodes, "attack", inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", 17)]
    if extra_domain is not None:
        opsets.append(helper.make_opsetid(extra_domain, 1))
    return bytes(helper.make_model(graph, opset_imports=opsets).SerializeToString())


def test_onnx_runtime_really_reads_external_data_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack is real: a model given as bytes resolves `etc/passwd` against the cwd."""
    (tmp_path / "etc").mkdir()
    np.arange(4, dtype=np.float32).tofile(tmp_path / "etc" / "passwd")
    monkeypatch.chdir(tmp_path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        onnx_reading("etc/passwd"), sess_options=options, providers=["CPUExecutionProvider"]
    )
    (leaked,) = session.run(None, {"input": np.zeros((1, 4), np.float32)})
    assert leaked.tolist() == [[0.0, 1.0, 2.0, 3.0]]


@pytest.mark.parametrize("location", ["etc/passwd", "../../etc/passwd", "/etc/passwd"])
def test_onnx_with_external_data_is_refused_before_a_session_exists(
    location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    np.arange(4, dtype=np.float32).tofile(tmp_path / "etc" / "passwd")
    monkeypatch.chdir(tmp_path)
    artifact = tmp_path / "a"
    write_iris(artifact, ModelFormat.ONNX)
    plant(artifact, ModelFormat.ONNX, onnx_reading(location))
    with pytest.raises(ArtifactError, match="'W' in external files") as caught:
        load_model(artifact)
    assert caught.value.reason == "ExternalData"
    # The model server builds its sessions through the same class.
    settings = ServerSettings(model_uri=str(artifact), model_format="onnx", workdir=tmp_path)
    with pytest.raises(ArtifactError) as served:
        load_runtime(artifact, settings)
    assert served.value.reason == "ExternalData"


@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "inside-an-If-branch"])
def test_onnx_with_a_custom_operator_domain_is_refused(nested: bool, tmp_path: Path) -> None:
    write_iris(tmp_path, ModelFormat.ONNX)
    plant(tmp_path, ModelFormat.ONNX, onnx_with_domain("com.attacker", nested))
    with pytest.raises(ArtifactError, match="'com.attacker'") as caught:
        load_model(tmp_path)
    assert caught.value.reason == "UntrustedType"  # not ONNX Runtime's own load failure
    with pytest.raises(ArtifactError, match="'com.attacker'"):
        OnnxModel(onnx_with_domain("com.attacker", nested))


def test_onnx_written_by_the_trainer_still_loads(tmp_path: Path) -> None:
    digest = write_iris(tmp_path, ModelFormat.ONNX)
    loaded = load_model(tmp_path, expected_sha256=digest)
    assert loaded.model.predict(X[:3]).tolist() == [0, 0, 0]


# --- Model card file names --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["/etc/hostname", "../x", "model.joblib", "sub/model.skops"])
def test_a_card_naming_another_file_is_refused_at_parsing(name: str, tmp_path: Path) -> None:
    write_iris(tmp_path, ModelFormat.SKOPS)
    secret = sha256_file(Path("/etc/hostname")) if Path("/etc/hostname").is_file() else "-"
    edit_card(tmp_path, lambda card: card["files"]["skops"].update(file=name))
    for read in (load_model, lambda d: read_model_card(str(d)), lambda d: verify_artifact(str(d))):
        with pytest.raises(ArtifactError, match="files.skops.file") as caught:
            read(tmp_path)
        assert caught.value.reason == "InvalidModelCard"
        assert "'model.skops'" in str(caught.value)
        assert secret not in str(caught.value)


def test_a_model_file_linking_out_of_the_artifact_is_not_read(tmp_path: Path) -> None:
    write_iris(tmp_path / "a", ModelFormat.SKOPS)
    outside = tmp_path / "secret"
    outside.write_text("not yours\n")
    (tmp_path / "a" / "model.skops").unlink()
    (tmp_path / "a" / "model.skops").symlink_to(outside)
    with pytest.raises(ArtifactError, match="outside the artifact directory") as caught:
        load_model(tmp_path / "a")
    assert caught.value.reason == "InvalidModelCard"
    assert sha256_file(outside) not in str(caught.value)


# --- joblib needs a person's pin --------------------------------------------------------------


class Exploit:
    """Unpickling this touches `marker` (through pathlib, so any process can unpickle it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def planted_pickle(directory: Path, marker: Path) -> str:
    """A joblib artifact whose pickle (and card) an attacker replaced; the genuine digest."""
    genuine = write_iris(directory, ModelFormat.JOBLIB)
    plant(directory, ModelFormat.JOBLIB, pickle.dumps(Exploit(marker)))
    return genuine


def test_an_unpinned_pickle_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    genuine = planted_pickle(tmp_path / "a", marker)
    with pytest.raises(ArtifactError, match="pinned by you") as caught:
        load_model(tmp_path / "a")  # the card agrees with the pickle: no pin, no load
    assert caught.value.reason == "UntrustedType"
    with pytest.raises(ArtifactError) as mismatch:
        load_model(tmp_path / "a", expected_sha256=genuine)  # the person pinned the real one
    assert mismatch.value.reason == "ArtifactDigestMismatch"
    assert not marker.exists(), "the pickle was unpickled"


def test_a_pinned_genuine_pickle_loads(tmp_path: Path) -> None:
    digest = write_iris(tmp_path, ModelFormat.JOBLIB)
    assert load_model(tmp_path, expected_sha256=digest).model.predict(X[:1]).tolist() == [0]


def test_a_pickle_swapped_after_its_check_is_never_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a shared volume (a pvc:// claim others can write) the file can change between the
    digest check and the load: the load takes the bytes that were checked, not the file again."""
    marker = tmp_path / "pwned"
    digest = write_iris(tmp_path / "a", ModelFormat.JOBLIB)
    real = serialization.deserialize

    def swapped_first(*args: Any) -> Any:  # the swap lands right after the check
        (tmp_path / "a" / "model.joblib").write_bytes(pickle.dumps(Exploit(marker)))
        return real(*args)

    monkeypatch.setattr(serialization, "deserialize", swapped_first)
    loaded = load_model(tmp_path / "a", expected_sha256=digest)

    assert not marker.exists(), "the swapped pickle was unpickled"
    assert loaded.model.predict(X[:1]).tolist() == [0]


@pytest.mark.parametrize("pin", [None, "genuine"], ids=["no-pin", "pin-of-the-genuine-file"])
def test_the_server_process_refuses_a_pickle_nobody_pinned(pin: str | None, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    genuine = planted_pickle(tmp_path / "a", marker)
    env = {
        "MODEL_SERVER_MODEL_URI": str(tmp_path / "a"),
        "MODEL_SERVER_MODEL_FORMAT": "joblib",
        "MODEL_SERVER_WORKDIR": str(tmp_path / "work"),
        "MODEL_SERVER_WORKERS": "1",
    }
    if pin is not None:
        env["MODEL_SERVER_MODEL_SHA256"] = genuine
    server = start(env, tmp_path / "server.log")
    try:
        code = server.process.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise AssertionError(f"server kept running:\n{server.output()}") from None
    output = server.output()
    assert code != 0, output
    reason = "[UntrustedType]" if pin is None else "[ArtifactDigestMismatch]"
    [failure] = [line for line in output.splitlines() if "model load failed" in line]
    assert reason in failure
    assert not marker.exists(), "the server unpickled it"
    assert os.fspath(tmp_path / "a") in failure
