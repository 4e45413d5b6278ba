"""Artifacts the server fetches: local directories in place, HTTP artifacts into the workdir."""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from server_process import start, stop, wait_ready
from serverkit import Artifact, settings_for

from mlmodel_artifact import ArtifactError, ModelCard, ModelDescription, write_artifact
from model_server.lifecycle import load_and_warm
from model_server.storage import CHILD_OUTPUT_BYTES, fetch_model, head, tail


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""


@contextlib.contextmanager
def serving(root: Path, counts: Counter[str] | None = None) -> Iterator[str]:
    """A real HTTP server on loopback serving the files under `root`; its base URL. With
    `counts`, each GET is counted by path."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if counts is not None:
                counts[self.path] += 1
            super().do_GET()

    handler = functools.partial(Handler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def http_root(artifact_root: Path) -> Iterator[str]:
    """The session's artifacts over HTTP."""
    with serving(artifact_root) as url:
        yield url


def test_local_artifacts_are_used_in_place(iris_artifact: Artifact, tmp_path: Path) -> None:
    local = fetch_model(settings_for(iris_artifact, tmp_path))
    assert local == Path(iris_artifact.uri)
    assert not (tmp_path / "artifacts").exists()


def test_http_artifacts_are_downloaded_into_the_workdir_and_served(
    iris_artifact: Artifact, http_root: str, tmp_path: Path
) -> None:
    remote = Artifact(f"{http_root}/iris", iris_artifact.card)
    runtime = load_and_warm(settings_for(remote, tmp_path, model_sha256=iris_artifact.card.sha256))
    assert runtime.metadata.digest == iris_artifact.card.sha256
    downloaded = sorted(p.name for p in (tmp_path / "artifacts").glob("*/*"))
    assert downloaded == ["model-card.json", "model.skops"]


def test_a_missing_http_artifact_names_the_uri(http_root: str, tmp_path: Path) -> None:
    from mlmodel_artifact import ArtifactError

    uri = f"{http_root}/no-such-model"
    with pytest.raises(ArtifactError) as caught:
        fetch_model(settings_for(Artifact(uri, None), tmp_path))  # type: ignore[arg-type]
    assert uri in str(caught.value)


def test_an_http_redirect_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    """Redirects are not followed (the token would go along); the answer is named, not saved
    as the card."""
    (tmp_path / "www" / "moved" / "model-card.json").mkdir(parents=True)  # 301 to add a '/'
    with serving(tmp_path / "www") as url, pytest.raises(ArtifactError) as caught:
        fetch_model(settings_for(Artifact(f"{url}/moved", None), tmp_path / "w"))  # type: ignore[arg-type]
    assert caught.value.reason == "StorageError"
    assert "answered HTTP 301" in str(caught.value)


def test_a_model_file_longer_than_its_card_says_is_refused_while_it_streams(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    served = tmp_path / "www" / "iris"
    shutil.copytree(iris_artifact.uri, served)
    with (served / "model.skops").open("ab") as model:
        model.write(b"\0" * 1_000_000)  # a store that keeps sending
    with serving(tmp_path / "www") as url, pytest.raises(ArtifactError) as caught:
        fetch_model(settings_for(Artifact(f"{url}/iris", None), tmp_path / "w"))  # type: ignore[arg-type]
    assert caught.value.reason == "ArtifactTooLarge"
    assert str(caught.value).startswith(f"{url}/iris/model.skops: the file is larger than the ")


def iris_in_s3(
    iris_forest: Any, iris_artifact: Artifact, bucket: str, prefix: str = "models/iris"
) -> tuple[str, ModelCard]:
    """The session's iris forest written as an artifact into the moto S3 bucket."""
    description = ModelDescription.model_validate(
        iris_artifact.card.model_dump(include=set(ModelDescription.model_fields))
    )
    return write_artifact(iris_forest, description, f"s3://{bucket}/{prefix}")


def test_s3_artifacts_are_downloaded_into_the_workdir_and_served(
    iris_forest: Any, iris_artifact: Artifact, s3_env: str, tmp_path: Path
) -> None:
    uri, card = iris_in_s3(iris_forest, iris_artifact, s3_env)
    runtime = load_and_warm(settings_for(Artifact(uri, card), tmp_path, model_sha256=card.sha256))
    assert runtime.metadata.digest == card.sha256
    assert runtime.metadata.compiled
    downloaded = sorted(p.name for p in (tmp_path / "artifacts").glob("*/*"))
    assert downloaded == ["model-card.json", "model.skops"]


# A server process's download, then which client libraries that process holds.
DOWNLOAD_AND_LIST_CLIENTS = """
import sys
from pathlib import Path
from model_server.settings import ServerSettings
from model_server.storage import fetch_model
local = fetch_model(ServerSettings(model_uri={uri!r}, workdir=Path({workdir!r})))
print(sorted(p.name for p in local.iterdir()))
print(sorted(m for m in ("boto3", "botocore", "s3transfer", "httpx") if m in sys.modules))
"""


def test_s3_downloads_run_in_a_child_so_the_server_never_holds_the_s3_client(
    iris_forest: Any, iris_artifact: Artifact, s3_env: str, tmp_path: Path
) -> None:
    """boto3 with its service models stays ~24 MB in a process that imported it once."""
    uri, _ = iris_in_s3(iris_forest, iris_artifact, s3_env)
    code = DOWNLOAD_AND_LIST_CLIENTS.format(uri=uri, workdir=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['model-card.json', 'model.skops']", "[]"]


def test_an_s3_object_longer_than_its_card_says_is_refused_before_it_is_written(
    iris_forest: Any, iris_artifact: Artifact, s3_env: str, tmp_path: Path
) -> None:
    import boto3

    uri, _ = iris_in_s3(iris_forest, iris_artifact, s3_env, "models/iris-too-large")
    key = "models/iris-too-large/model.skops"
    boto3.client("s3").put_object(Bucket=s3_env, Key=key, Body=b"\0" * 5_000_000)
    with pytest.raises(ArtifactError) as caught:
        fetch_model(settings_for(Artifact(uri, None), tmp_path))  # type: ignore[arg-type]
    assert caught.value.reason == "ArtifactTooLarge"
    assert not list((tmp_path / "artifacts").glob("*/model.skops*"))


def test_a_missing_s3_artifact_is_the_child_s_artifact_not_found(
    s3_env: str, tmp_path: Path
) -> None:
    uri = f"s3://{s3_env}/no-such-model"
    with pytest.raises(ArtifactError) as caught:
        fetch_model(settings_for(Artifact(uri, None), tmp_path))  # type: ignore[arg-type]
    assert caught.value.reason == "ArtifactNotFound"
    assert str(caught.value) == f"{uri}/model-card.json: no such S3 object"  # as in-process


def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """The download child is `sys.executable -m model_server.download`: a shell script instead."""
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))


def download_error(tmp_path: Path) -> ArtifactError:
    with pytest.raises(ArtifactError) as caught:
        fetch_model(settings_for(Artifact("https://127.0.0.1:9/model", None), tmp_path))  # type: ignore[arg-type]
    return caught.value


def test_a_download_child_that_crashes_is_a_storage_error_with_its_last_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything but an ArtifactError in the child (here an interpreter that dies at once)."""
    fake_python(tmp_path, monkeypatch, "echo 'Traceback (most recent call last):' >&2\n"
                                       "echo 'RuntimeError: boom' >&2\nexit 5")  # fmt: skip
    error = download_error(tmp_path)
    assert error.reason == "StorageError"
    assert "(exit 5): RuntimeError: boom" in str(error)


def test_a_download_child_that_fails_without_its_json_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its ArtifactError exit status, but stdout is not the JSON it writes with it."""
    fake_python(tmp_path, monkeypatch, "echo 'not json'\necho 'MemoryError' >&2\nexit 3")
    error = download_error(tmp_path)
    assert error.reason == "StorageError"
    assert "(exit 3): MemoryError" in str(error)


def test_of_the_child_s_output_only_a_bounded_head_and_tail_are_read(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w+b") as out:
        out.write(b"a" * 100 + b"b" * 1_000_000 + b"c" * 100)
        assert head(out, 100) == b"a" * 100
        assert tail(out, 100) == b"c" * 100
        assert tail(out, CHILD_OUTPUT_BYTES) == b"b" * (CHILD_OUTPUT_BYTES - 100) + b"c" * 100


def test_a_download_child_s_last_line_is_found_after_megabytes_of_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 MB on stderr before the last line: the message is still that line."""
    flood = "head -c 8000000 /dev/zero | tr '\\0' 'x' >&2"
    fake_python(tmp_path, monkeypatch, f"{flood}\necho >&2\necho 'OSError: disk full' >&2\nexit 1")
    error = download_error(tmp_path)
    assert str(error).endswith("(exit 1): OSError: disk full")


def test_a_download_that_outlasts_its_deadline_is_stopped_as_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled or trickling store: each read within the client's timeout, never done."""
    fake_python(tmp_path, monkeypatch, "exec sleep 600")
    settings = settings_for(Artifact("https://127.0.0.1:9/model", None), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ArtifactError) as caught:
        fetch_model(settings.model_copy(update={"download_timeout_seconds": 1.0}))
    assert caught.value.reason == "StorageError"
    assert "did not finish within 1 s (MODEL_SERVER_DOWNLOAD_TIMEOUT_SECONDS)" in str(caught.value)


def test_a_download_child_that_cannot_start_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(ArtifactError) as caught:
        fetch_model(settings_for(Artifact("https://127.0.0.1:9/m", None), tmp_path))  # type: ignore[arg-type]
    assert caught.value.reason == "StorageError"


def test_the_server_loads_a_remote_model_from_the_download_it_started_before_its_imports(
    iris_artifact: Artifact, artifact_root: Path, tmp_path: Path
) -> None:
    """`python -m model_server` starts the download child first (`storage.start_download`) and
    loads the model from that download: each file is fetched once, not again by the loader."""
    counts: Counter[str] = Counter()
    with serving(artifact_root, counts) as url:
        env = {
            "MODEL_SERVER_MODEL_URI": f"{url}/iris",
            "MODEL_SERVER_MODEL_SHA256": iris_artifact.card.sha256,
            "MODEL_SERVER_WORKERS": "1",
            "MODEL_SERVER_WORKDIR": str(tmp_path / "work"),
        }
        server = start(env, tmp_path / "server.log")
        try:
            wait_ready(server)
            with server.client() as client:
                answer = client.post("/predict", json={"input": [5.1, 3.5, 1.4, 0.2]})
                assert answer.status_code == 200, answer.text
        finally:
            stop(server)
    assert counts, "nothing was downloaded"
    assert all(n == 1 for n in counts.values()), counts


EARLY = """
import sys, uvicorn
from model_server import storage
from model_server.__main__ import load_settings, serve_single
begin = storage.Download.__init__
def recording(self, *args):
    print(sorted(m for m in {modules!r} if m in sys.modules), flush=True)
    begin(self, *args)
storage.Download.__init__ = recording
def run(server):
    server.started = True
uvicorn.Server.run = run
argv = ["--model-uri", "http://127.0.0.1:9/iris", "--workdir", {workdir!r}, "--grpc-port", "0"]
sys.exit(serve_single(load_settings(argv)))
"""


def test_the_download_starts_before_the_server_imports_numpy_onnx_runtime_fastapi_or_grpc(
    tmp_path: Path,
) -> None:
    """So the child's own start (an interpreter and the S3 or HTTP client) and the download
    overlap those imports (about a second each on the slim image) instead of following them."""
    heavy = ("fastapi", "grpc", "numpy", "onnxruntime")
    code = EARLY.format(modules=heavy, workdir=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # what was imported when the download started (nothing printed: it had not started when
    # the server would have begun serving)
    assert done.stdout.splitlines() == ["[]"], repr(done.stdout)
