"""Docker tier: the built images run as a user would run them in Kubernetes."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest
from images_testlib import docker, free_port

from devcluster.images import engine

pytestmark = pytest.mark.docker

RESTRICTED = ("--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges")
READY_TIMEOUT_S = 120.0


def run_once(
    image: str, *command: str, entrypoint: str = "python"
) -> subprocess.CompletedProcess[str]:
    """Run a throw-away container with the restricted settings and capture its output."""
    return docker(
        "run", "--rm", "--network=none", *RESTRICTED, "--tmpfs=/tmp",
        f"--entrypoint={entrypoint}", image, *command,
        check=False,
    )  # fmt: skip


@pytest.mark.parametrize("image_fixture", ["server_image", "operator_image"])
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


def _wait_until_ready(base_url: str, container: str) -> None:
    """Poll readiness until 200; fail with the container's logs if it exits or times out."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        state = docker("inspect", "--format", "{{.State.Running}}", container, check=False)
        if state.stdout.strip() != "true":
            logs = docker("logs", container, check=False)
            pytest.fail(f"server container exited before ready:\n{logs.stdout}{logs.stderr}")
        try:
            response = httpx.get(f"{base_url}/v2/health/ready", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.25)
    logs = docker("logs", container, check=False)
    pytest.fail(
        f"{base_url}/v2/health/ready not 200 within {READY_TIMEOUT_S:.0f}s (last: {last}); "
        f"container logs:\n{logs.stdout}{logs.stderr}"
    )


def test_server_image_serves_the_iris_artifact_to_a_client_outside_the_container(
    server_image: str, iris_artifact: object, container_name: str
) -> None:
    port = free_port()
    docker(
        "run", "--detach", f"--name={container_name}",
        "--network=host", *RESTRICTED, "--tmpfs=/tmp",
        f"--volume={iris_artifact}:/models/iris:ro",
        "--env=MODEL_SERVER_HOST=127.0.0.1",
        f"--env=MODEL_SERVER_PORT={port}",
        "--env=MODEL_SERVER_MODEL_URI=file:///models/iris",
        server_image,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    _wait_until_ready(base_url, container_name)

    response = httpx.post(f"{base_url}/predict", json={"input": [5.1, 3.5, 1.4, 0.2]}, timeout=10)

    assert response.status_code == 200, response.text
    assert response.json() == {"prediction": 0}
    user = docker("exec", container_name, "python", "-c", "import os; print(os.getuid())")
    assert user.stdout.strip() == "10001"


@pytest.mark.parametrize(
    ("image_fixture", "module"),
    [("server_image", "model_server.app"), ("operator_image", "mlmodel_operator.main")],
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
