"""Docker tier: the built images run as a user would run them in Kubernetes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from images_testlib import (
    READY_TIMEOUT_S,
    RESTRICTED,
    docker,
    serve_detached,
    wait_until_ready,
)

from devcluster.images import engine
from devcluster.waiting import wait_until

pytestmark = pytest.mark.docker


def run_once(
    image: str, *command: str, entrypoint: str = "python"
) -> subprocess.CompletedProcess[str]:
    """Run a throw-away container with the restricted settings and capture its output."""
    return docker(
        "run", "--rm", "--network=none", *RESTRICTED, "--tmpfs=/tmp",
        f"--entrypoint={entrypoint}", image, *command,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize("image_fixture", ["server_image", "slim_image", "operator_image"])
def test_image_runs_as_its_numeric_non_root_user(
    image_fixture: str, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(image_fixture)
    configured = docker("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert configured == "10001:10001"
    result = run_once(image, "-c", "import os; print(os.getuid(), os.getgid())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10001", "10001"]


def test_server_image_has_no_operator_dependencies(server_image: str) -> None:
    result = run_once(server_image, "-c", "import kopf")
    assert result.returncode != 0
    assert "No module named 'kopf'" in result.stderr


def test_operator_image_has_no_scikit_learn(operator_image: str) -> None:
    result = run_once(operator_image, "-c", "import sklearn")
    assert result.returncode != 0
    assert "No module named 'sklearn'" in result.stderr


def test_operator_image_imports_the_operator_and_its_client(operator_image: str) -> None:
    # main holds every kopf handler registration, so this imports the whole operator.
    code = "import mlmodel_operator.__main__, mlmodel_operator.main, kubernetes; print('ok')"
    result = run_once(operator_image, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_operator_image_user_has_a_name_for_kopf(operator_image: str) -> None:
    # kopf derives its identity from getpass.getuser(); UID 10001 has no passwd entry.
    result = run_once(operator_image, "-c", "import getpass; print(getpass.getuser())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "mlmodel-operator"


@pytest.mark.parametrize(
    ("image_fixture", "module"),
    [("server_image", "model_server"), ("operator_image", "mlmodel_operator")],
)
def test_image_entrypoint_is_the_package_module(
    image_fixture: str, module: str, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(image_fixture)
    out = docker("image", "inspect", "--format", "{{json .Config.Entrypoint}}", image).stdout
    assert json.loads(out) == ["python", "-m", module]


def test_server_image_exposes_8080(server_image: str) -> None:
    out = docker("image", "inspect", "--format", "{{json .Config.ExposedPorts}}", server_image)
    assert json.loads(out.stdout) == {"8080/tcp": {}}


def test_server_image_cannot_write_its_root_filesystem(server_image: str) -> None:
    result = run_once(server_image, "-c", "open('/opt/venv/x', 'w')")
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr


def test_server_image_can_be_saved_for_containerd_import(server_image: str) -> None:
    # devcluster moves images into the node's containerd with `docker save | ctr import`.
    save = subprocess.Popen(
        ["/usr/bin/docker", "save", server_image],
        env=engine.docker_env(),
        stdout=subprocess.PIPE,
    )
    listing = subprocess.run(
        ["tar", "-t"], stdin=save.stdout, capture_output=True, text=True, check=False
    )
    assert save.wait() == 0
    assert listing.returncode == 0, listing.stderr
    assert "manifest.json" in listing.stdout.split()


@pytest.mark.parametrize("image_fixture", ["server_image", "slim_image"])
def test_server_image_serves_the_iris_artifact_to_a_client_outside_the_container(
    image_fixture: str, iris_artifact: Path, container_name: str, request: pytest.FixtureRequest
) -> None:
    """Both images serve what `train` wrote (unpinned: its checked model.onnx, as is)."""
    base_url = serve_detached(request.getfixturevalue(image_fixture), iris_artifact, container_name)
    wait_until_ready(base_url, container_name)

    assert_serves_iris_from_onnx(base_url)
    user = docker("exec", container_name, "python", "-c", "import os; print(os.getuid())")
    assert user.stdout.strip() == "10001"


@pytest.mark.parametrize(
    "module", ["sklearn", "scipy", "pandas", "skl2onnx", "skops", "onnx", "ml_dtypes"]
)
def test_slim_image_has_no_scikit_learn(slim_image: str, module: str) -> None:
    result = run_once(slim_image, "-c", f"import {module}")
    assert result.returncode != 0
    assert f"No module named '{module}'" in result.stderr


def test_slim_image_refuses_a_skops_pin_saying_what_to_do(
    slim_image: str, iris_artifact: Path, container_name: str
) -> None:
    """Pinned to model.skops, the slim image cannot serve it: the process stops and says why."""
    card = json.loads((iris_artifact / "model-card.json").read_text())
    pin = f"--env=MODEL_SERVER_MODEL_SHA256={card['files']['skops']['sha256']}"
    serve_detached(slim_image, iris_artifact, container_name, pin)

    def stopped() -> bool:
        state = docker("inspect", "--format", "{{.State.Running}}", container_name)
        return state.stdout.strip() != "true"

    wait_until("the slim server to stop", stopped, READY_TIMEOUT_S, 0.25)
    exit_code = docker("inspect", "--format", "{{.State.ExitCode}}", container_name).stdout
    assert exit_code.strip() == "1"
    logs = docker("logs", container_name, check=False)
    assert "cannot load model.skops (the slim image serves ONNX graphs only)" in logs.stderr


@pytest.mark.parametrize(
    ("image_fixture", "module"),
    [
        ("server_image", "model_server.app"),
        ("slim_image", "model_server.app"),
        ("operator_image", "mlmodel_operator.main"),
    ],
)
def test_image_has_no_world_writable_files_and_runs_under_another_uid(
    image_fixture: str, module: str, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(image_fixture)
    writable = run_once(image, "/opt", "-xdev", "-perm", "-o+w", "-not", "-type", "l",
                        entrypoint="find")  # fmt: skip
    assert writable.returncode == 0, writable.stderr
    assert writable.stdout == ""
    # An arbitrary non-root UID (as some clusters assign) can still read the whole venv.
    result = docker(
        "run", "--rm", "--network=none", *RESTRICTED, "--user=23456:0",
        "--entrypoint=python", image, "-c", f"import sys, {module}; print(sys.prefix)",
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/opt/venv"


@pytest.mark.parametrize("image_fixture", ["server_image", "slim_image"])
def test_server_image_fetches_its_model_from_a_real_s3_compatible_server(
    image_fixture: str,
    iris_artifact: Path,
    s3_env: str,
    s3_server: str,
    container_name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """The AWS SDK in the image (the slim one keeps only the botocore models S3 and the
    credential chain load) downloads the artifact from moto's S3 server, pinned to model.onnx.
    Only an empty directory is mounted, so S3 is the one place the model can come from."""
    import boto3

    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)

    s3 = boto3.client("s3")
    for item in iris_artifact.iterdir():
        s3.upload_file(str(item), s3_env, f"iris/v1/{item.name}")
    card = json.loads((iris_artifact / "model-card.json").read_text())
    base_url = serve_detached(
        request.getfixturevalue(image_fixture), empty, container_name,
        f"--env=MODEL_SERVER_MODEL_URI=s3://{s3_env}/iris/v1",
        f"--env=MODEL_SERVER_MODEL_SHA256={card['files']['onnx']['sha256']}",
        f"--env=AWS_ENDPOINT_URL={s3_server}",
        "--env=AWS_ACCESS_KEY_ID=testing",
        "--env=AWS_SECRET_ACCESS_KEY=testing",
        "--env=AWS_DEFAULT_REGION=us-east-1",
    )  # fmt: skip
    wait_until_ready(base_url, container_name)

    assert_serves_iris_from_onnx(base_url)


def assert_serves_iris_from_onnx(base_url: str) -> None:
    """A textbook setosa row is answered 0, by ONNX Runtime from the artifact's model.onnx."""
    response = httpx.post(f"{base_url}/predict", json={"input": [5.1, 3.5, 1.4, 0.2]}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"prediction": 0}
    meta = httpx.get(f"{base_url}/v2/models/iris", timeout=10).json()
    assert (meta["parameters"]["format"], meta["platform"]) == ("onnx", "onnxruntime")
