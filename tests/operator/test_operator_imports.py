"""The operator process loads no model libraries: reading model cards needs none of them."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_operator_loads_no_numpy_httpx_or_sklearn() -> None:
    code = (
        "import sys, mlmodel_operator.__main__, mlmodel_operator.main\n"
        "print(','.join(m for m in ('numpy', 'httpx', 'sklearn', 'onnxruntime', 'boto3')"
        " if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"the operator imports {loaded} at start (memory it never uses)"
