"""Artifacts the server fetches: local directories in place, HTTP artifacts into the workdir."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from serverkit import Artifact, settings_for

from model_server.lifecycle import load_and_warm
from model_server.storage import fetch_model


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean."""


@pytest.fixture(scope="module")
def http_root(artifact_root: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving the session's artifacts."""
    handler = functools.partial(QuietHandler, directory=str(artifact_root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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


def test_s3_artifacts_are_downloaded_into_the_workdir_and_served(
    iris_forest: Any, iris_artifact: Artifact, s3_env: str, tmp_path: Path
) -> None:
    from mlmodel_artifact import ModelDescription, write_artifact

    description = ModelDescription.model_validate(
        iris_artifact.card.model_dump(include=set(ModelDescription.model_fields))
    )
    uri, card = write_artifact(iris_forest, description, f"s3://{s3_env}/models/iris")
    runtime = load_and_warm(settings_for(Artifact(uri, card), tmp_path, model_sha256=card.sha256))
    assert runtime.metadata.digest == card.sha256
    assert runtime.metadata.compiled
    downloaded = sorted(p.name for p in (tmp_path / "artifacts").glob("*/*"))
    assert downloaded == ["model-card.json", "model.skops"]
