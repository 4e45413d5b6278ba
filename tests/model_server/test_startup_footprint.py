"""The CLI's processes freeze what their imports made before the model loads, so the collection
that settles the heap after the load walks only what the load made (issue 16: the milliseconds
between loaded and ready)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from serverkit import Artifact, settings_for

from model_server import __main__ as cli
from model_server.lifecycle import freeze_imports, settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # hand the test process's objects back to the collector


def test_freeze_imports_leaves_the_settling_collection_only_what_came_after(
    unfrozen: None,
) -> None:
    freeze_imports()
    frozen = gc.get_freeze_count()
    made_by_the_load = [[i] for i in range(1000)]
    assert gc.get_freeze_count() == frozen  # the load's objects are the collector's to walk
    settle_heap()
    assert gc.get_freeze_count() >= frozen + len(made_by_the_load)


def test_serve_single_freezes_the_imports_before_the_server_runs(
    iris_artifact: Artifact, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unfrozen: None
) -> None:
    seen: list[int] = []

    def run(server: uvicorn.Server) -> None:
        seen.append(gc.get_freeze_count())  # the lifespan (and the load) would start here
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    gc.unfreeze()
    assert cli.serve_single(settings_for(iris_artifact, tmp_path, grpc_port=0)) == 0
    assert seen and seen[0] > 0
