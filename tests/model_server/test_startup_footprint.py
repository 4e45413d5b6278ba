"""What the CLI's processes spend before they serve (issue 16).

They freeze what their imports made before the model loads, so the collection that settles the
heap after the load walks only what the load made (the milliseconds between loaded and ready);
and the parent of worker processes imports what every worker runs on before it forks them, so
the workers share those pages instead of importing everything again."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from server_process import free_port
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
    # Which objects the collector walks, by identity (a count of frozen objects is no use:
    # other threads of the test session free frozen objects meanwhile).
    imported = [["made before the load"]]
    freeze_imports()
    made_by_the_load = [[i] for i in range(1000)]
    walked = {id(o) for o in gc.get_objects()}
    assert id(imported) not in walked  # frozen with the imports
    assert all(id(o) in walked for o in made_by_the_load)  # the load's: the collector's to walk
    settle_heap()
    walked = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in walked for o in made_by_the_load)


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


PARENT = """
import gc, sys
from uvicorn import _subprocess
from uvicorn.supervisors import Multiprocess
from model_server.__main__ import load_settings, serve_workers
def run(self):
    print(sorted(m for m in {modules!r} if m in sys.modules))
    print(_subprocess.spawn.get_start_method(), gc.get_freeze_count() > 0)
Multiprocess.run = run
argv = ["--model-uri", {uri!r}, "--workdir", {workdir!r}, "--workers", "2", "--port", "0"]
sys.exit(serve_workers(load_settings([*argv, "--grpc-port", {grpc_port!r}])))
"""


def test_the_parent_of_workers_imports_what_they_share_then_forks_them(
    iris_artifact: Artifact, tmp_path: Path
) -> None:
    """When the supervisor starts the workers, the parent has imported the libraries every
    worker runs on (and frozen them out of the collector), but none that only converting a
    model needs, and the workers will be forked: they start with those pages, shared."""
    shared = ("fastapi", "grpc", "numpy", "onnxruntime", "prometheus_client")
    converting = ("onnx", "scipy", "skl2onnx", "sklearn")
    code = PARENT.format(
        uri=iris_artifact.uri,
        workdir=str(tmp_path),
        modules=shared + converting,
        grpc_port=str(free_port()),  # gRPC on, as the operator renders it (nothing binds here)
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(sorted(shared)), "fork True"]
