"""ONNX Runtime's telemetry stays off in every process that loads ONNX through our package.

ONNX Runtime 1.32 on Linux starts Microsoft's 1DS telemetry on `import onnxruntime`: it writes a
device id and an event queue under $HOME/.cache/Microsoft/DeveloperTools and sends the events
to mobile.events.data.microsoft.com. Its files are what a test can see of it, so these tests
run a fresh interpreter with a home of its own and look there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TELEMETRY_DIR = Path(".cache/Microsoft/DeveloperTools")

# An ONNX graph the server's runtime accepts (one float input, label output), then predicted on.
LOAD_AND_PREDICT = """
import numpy as np
from onnx import TensorProto, helper
graph = helper.make_graph(
    [helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)],
    "argmax",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
    [helper.make_tensor_value_info("label", TensorProto.INT64, [None])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
from mlmodel_artifact.onnx_model import OnnxModel
print(OnnxModel(model.SerializeToString()).predict(np.array([[0, 2, 1]], np.float32)))
"""


def run_python(code: str, home: Path) -> str:
    """`code` in a fresh interpreter, in a network namespace of its own (loopback only, and
    down: whatever telemetry starts can send nothing anywhere), with nothing in its environment
    but PATH and HOME: ONNX Runtime also stays quiet where it finds a CI system's variables
    (CI, GITHUB_ACTIONS, JENKINS_URL, TF_BUILD, ...), and `.ci/run` sets CI=true."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_loading_and_predicting_with_our_package_writes_no_telemetry(tmp_path: Path) -> None:
    out = run_python("import mlmodel_artifact\n" + LOAD_AND_PREDICT, tmp_path)
    assert out.strip() == "[1]"
    assert not (tmp_path / TELEMETRY_DIR).exists(), sorted(tmp_path.rglob("*"))


def test_an_owner_who_sets_the_variable_decides(tmp_path: Path) -> None:
    code = "import os; os.environ['ORT_DISABLE_TELEMETRY'] = '0'\nimport mlmodel_artifact\n"
    code += "print(os.environ['ORT_DISABLE_TELEMETRY'])"
    assert run_python(code, tmp_path).strip() == "0"


def test_without_it_importing_onnxruntime_writes_its_telemetry_store(tmp_path: Path) -> None:
    """The control: what the setting prevents happens without it (if a release of ONNX Runtime
    stops doing this, this fails and the setting in mlmodel_artifact can go)."""
    run_python("import onnxruntime", tmp_path)
    assert (tmp_path / TELEMETRY_DIR).is_dir()
