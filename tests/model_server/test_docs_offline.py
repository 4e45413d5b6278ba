"""The OpenAPI pages work without internet (issue 15): /docs rendered by headless Chromium in a
network namespace of its own, where only loopback exists, finds every operation; the pages name
no address but the server's own."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serverkit import Artifact

from model_server.app import create_app
from model_server.settings import READINESS_PATH, ServerSettings

PORT = 18_080  # inside the namespace: nothing else listens there
WAIT_READY = f"""
import time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen("http://127.0.0.1:{PORT}{READINESS_PATH}", timeout=1)
        break
    except Exception:
        time.sleep(0.2)
"""


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
    return path


def in_own_network(iris_artifact: Artifact, tmp_path: Path, page: str) -> str:
    """Start the server and load `page` in headless Chromium, both in a new network namespace
    holding only loopback (so no request of the page can leave it); the rendered DOM."""
    server = (
        f"MODEL_SERVER_MODEL_URI={shlex.quote(iris_artifact.uri)} MODEL_SERVER_MODEL_NAME=iris "
        f"MODEL_SERVER_MODEL_SHA256={iris_artifact.card.sha256} MODEL_SERVER_HOST=127.0.0.1 "
        f"MODEL_SERVER_PORT={PORT} MODEL_SERVER_WORKDIR={shlex.quote(str(tmp_path / 'work'))} "
        f"{shlex.quote(sys.executable)} -m model_server"
    )
    browser = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
        "--dump-dom", f"http://127.0.0.1:{PORT}{page}",
    ]  # fmt: skip
    script = f"""
set -e
ip link set lo up
{server} > {shlex.quote(str(tmp_path / "server.log"))} 2>&1 &
pid=$!
trap 'kill $pid; wait $pid || true' EXIT
{shlex.quote(sys.executable)} -c {shlex.quote(WAIT_READY)}
{shlex.join(browser)} 2> {shlex.quote(str(tmp_path / "chromium.log"))}
"""
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stderr, (tmp_path / "server.log").read_text())
    return done.stdout


def test_swagger_ui_renders_every_operation_without_internet(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    dom = in_own_network(iris_artifact, tmp_path, "/docs")
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    settings = ServerSettings(model_uri=iris_artifact.uri, workdir=tmp_path / "doc")
    documented = set(create_app(settings).openapi()["paths"])
    assert "/v2/models/{name}/infer" in documented
    assert rendered == documented
    assert "Failed to load API definition" not in dom


def test_the_pages_load_their_scripts_from_the_server(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    settings = ServerSettings(model_uri=iris_artifact.uri, workdir=tmp_path)
    with TestClient(create_app(settings)) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            sources = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert sources and all(s.startswith("/docs/static/") for s in sources), sources
            assert "https://" not in html and "http://" not in html
            for source in sources:
                answer = client.get(source)
                assert answer.status_code == 200 and len(answer.content) > 1000, source
