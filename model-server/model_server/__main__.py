"""`python -m model_server` / `mlmodel-server`: settings from flags over MODEL_SERVER_* env."""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from model_server.settings import ENV_PREFIX, KEEP_ALIVE_SECONDS, ServerSettings

log = logging.getLogger("model_server")

# Set by the parent for its worker processes: the artifact directory it already fetched, and
# the candidate's (or why fetching or checking the candidate failed).
FETCHED_DIR_ENV: Final = "MODEL_SERVER_INTERNAL_FETCHED_DIR"
CANDIDATE_DIR_ENV: Final = "MODEL_SERVER_INTERNAL_CANDIDATE_DIR"
CANDIDATE_ERROR_ENV: Final = "MODEL_SERVER_INTERNAL_CANDIDATE_ERROR"
STARTUP_FAILURE: Final = 3  # uvicorn's code for "worker failed to start": the parent stops


def parse_args(argv: Sequence[str] | None) -> dict[str, Any]:
    """Flags named after the settings fields (`--model-uri`, `--no-compiled`, ...)."""
    parser = argparse.ArgumentParser(
        prog="mlmodel-server",
        description="Serve one model artifact over HTTP. Every flag can also be given as "
        "an environment variable MODEL_SERVER_<FLAG> (flags win).",
    )
    for name, field in ServerSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=field.description)
        else:
            parser.add_argument(flag, help=field.description)
    args = parser.parse_args(argv)
    return {key: value for key, value in vars(args).items() if value is not None}


def misspelled_settings(environ: Mapping[str, str]) -> list[str]:
    """MODEL_SERVER_* variables not written in upper case.

    pydantic-settings reads env names case-insensitively, so `model_server_model_sha256` would
    set the pin beside (or instead of) the operator's `MODEL_SERVER_MODEL_SHA256`: which one
    wins is not something a pod's owner should have to guess.
    """
    return sorted(
        name for name in environ if name.upper().startswith(ENV_PREFIX) and name != name.upper()
    )


def load_settings(argv: Sequence[str] | None) -> ServerSettings:
    """Settings from flags and env, or exit 2 with one line per invalid setting."""
    if misspelled := misspelled_settings(os.environ):
        print(
            f"mlmodel-server: settings must be upper case ({ENV_PREFIX}*); found: "
            f"{', '.join(misspelled)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    overrides = parse_args(argv)
    try:
        return ServerSettings(**overrides)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            if not field:  # a rule between settings: its message names them
                message = str(error["msg"]).removeprefix("Value error, ")
                print(f"mlmodel-server: invalid settings: {message}", file=sys.stderr)
                continue
            env = f"MODEL_SERVER_{field.upper()}"
            print(
                f"mlmodel-server: invalid setting {field} ({env}): {error['msg']}", file=sys.stderr
            )
        raise SystemExit(2) from None


def configure_logging(level: str) -> None:
    """One line per event on stderr: time, level, logger, message."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("model_server")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """Server options shared by the single- and multi-process modes."""
    from model_server.connection import HeaderDeadlineProtocol  # imports uvicorn

    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools, with a deadline for each request's headers (idle and slowloris sockets).
        "http": functools.partial(
            HeaderDeadlineProtocol, header_timeout=settings.header_timeout_seconds
        ),
        "lifespan": "on",
        "ws": "none",  # no websockets: uvicorn would import a websockets library if installed
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": 20,
        # No limit_concurrency: uvicorn counts idle sockets against it and then answers every
        # request 503, probes included. The app bounds prediction requests in flight instead.
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "server_header": False,
    }


def serve_single(settings: ServerSettings) -> int:
    """One process: the app loads in the background; a load failure stops the server.

    A remote model's download starts first: its child process runs while this one imports
    numpy, ONNX Runtime, FastAPI and grpc (`storage.start_download`).
    """
    from model_server.storage import start_download

    download = start_download(settings)
    try:
        import uvicorn

        from model_server.app import create_app
        from model_server.lifecycle import freeze_imports

        failed: list[str] = []

        def stop(message: str) -> None:
            failed.append(message)
            server.should_exit = True

        app = create_app(settings, on_load_failure=stop, grpc=True, download=download)
        server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
        freeze_imports()
        server.run()
        return 1 if failed or not server.started else 0
    finally:
        if download is not None:  # still running only when the server stopped first
            download.cancel()


def serve_workers(settings: ServerSettings) -> int:
    """Fetch and digest-check once here, then run `workers` processes on one socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # Only what fetching and checking need: this process serves nothing, and each worker
    # imports the rest itself (numpy, ONNX Runtime, the app).
    from model_server.storage import describe, fetch_model, preflight

    try:
        local_dir = fetch_model(settings)
        preflight(local_dir, settings)
    except Exception as exc:
        log.error("model load failed: %s", describe(exc))
        return 1
    candidate_env = fetch_candidate(settings)
    if settings.grpc_port and not port_free(settings.host, settings.grpc_port):
        # The workers share the port (SO_REUSEPORT), which would let them share it with
        # another process of this user too: refuse a port already taken instead.
        log.error("cannot listen for gRPC on %s:%d: in use", settings.host, settings.grpc_port)
        return 1
    settings.workdir.mkdir(parents=True, exist_ok=True)
    metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=settings.workdir)
    os.environ.update(settings.to_env())
    os.environ[FETCHED_DIR_ENV] = str(local_dir)
    os.environ.update(candidate_env)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    config = uvicorn.Config(
        "model_server.__main__:worker_app",
        factory=True,
        workers=settings.workers,
        **uvicorn_options(settings),
    )
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    try:
        with forked_workers(grpc=settings.grpc_port != 0):
            supervisor.run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    return 1 if failed else 0


@contextlib.contextmanager
def forked_workers(grpc: bool) -> Iterator[None]:
    """uvicorn's supervisor forks its workers from this process instead of spawning them, after
    this process has imported what every worker imports and frozen it out of the collector.

    A spawned worker starts a new interpreter and imports numpy, ONNX Runtime, FastAPI, grpc and
    the app again (~100 MB of its own each); a forked one starts with the parent's pages, shared
    until written. Nothing imported here starts a thread but numpy's BLAS (fork-aware), and no
    event loop, gRPC object, session or pool exists yet: each worker makes its own, as spawned.
    """
    import importlib
    import multiprocessing

    from uvicorn import _subprocess

    import model_server.app  # noqa: F401  # numpy, FastAPI, prometheus_client, the app

    # after mlmodel_artifact (imported by the app): ONNX Runtime's telemetry is off by then
    importlib.import_module("onnxruntime")
    if grpc:  # the module only: grpc starts nothing on import (its server is the worker's)
        importlib.import_module("model_server.protocols.v2_grpc")

    gc.collect()
    gc.freeze()  # the collector would touch every object's header (copying its page) otherwise
    spawn = _subprocess.spawn
    _subprocess.spawn = multiprocessing.get_context("fork")  # type: ignore[assignment]
    try:
        yield
    finally:
        _subprocess.spawn = spawn


def fetch_candidate(settings: ServerSettings) -> dict[str, str]:
    """The candidate fetched and checked once, for the workers: its directory, or why it
    failed (one log line here; the workers then serve the stable alone, never exit for it)."""
    if settings.candidate_uri is None:
        return {}
    from model_server.storage import describe, fetch_model, preflight

    candidate = settings.candidate_settings()
    try:
        local_dir = fetch_model(candidate)
        preflight(local_dir, candidate)
    except Exception as exc:
        message = describe(exc)
        log.error(
            "candidate load failed: %s; version %r serves every request",
            message, settings.model_version,
        )  # fmt: skip
        return {CANDIDATE_ERROR_ENV: message}
    return {CANDIDATE_DIR_ENV: str(local_dir)}


def port_free(host: str, port: int) -> bool:
    """Whether a TCP port can be bound on `host` (without SO_REUSEPORT) right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def worker_app() -> Any:
    """App factory run inside each worker process (settings come from the parent's env)."""
    from model_server.app import create_app
    from model_server.lifecycle import freeze_imports

    settings = ServerSettings()  # type: ignore[call-arg]  # every field comes from the env
    configure_logging(settings.log_level)

    def exit_worker(_: str) -> None:
        logging.shutdown()
        os._exit(STARTUP_FAILURE)

    fetched = os.environ.get(FETCHED_DIR_ENV)
    candidate_dir = os.environ.get(CANDIDATE_DIR_ENV)
    app = create_app(
        settings,
        on_load_failure=exit_worker,
        local_dir=Path(fetched) if fetched else None,
        load_before_serving=True,
        grpc=True,
        candidate_dir=Path(candidate_dir) if candidate_dir else None,
        candidate_error=os.environ.get(CANDIDATE_ERROR_ENV),
    )
    freeze_imports()
    return app


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `mlmodel-server` and `python -m model_server`."""
    settings = load_settings(argv)
    configure_logging(settings.log_level)
    serve = serve_single if settings.workers == 1 else serve_workers
    sys.exit(serve(settings))


if __name__ == "__main__":
    main()
