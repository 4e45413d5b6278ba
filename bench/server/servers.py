"""The servers under test: how each one is launched, how many workers it can run, what it speaks."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench.server import protocols, venvs
from bench.server.procs import LOOPBACK, Launch, free_port

APPS = Path(__file__).parent / "apps"
SEED_APP = Path(__file__).parent.parent / "seed"
OURS = "model-server"
# Our server with the compiled path off: scikit-learn's own predict, the model the peers serve.
SKLEARN = f"{OURS} (sklearn)"
# Our server with drift monitoring off: what the drift window costs the request path.
DRIFT_OFF = f"{OURS} (drift off)"
SHADOW = f"{OURS} (shadow)"  # the same model loaded again as a shadow candidate
IRIS = "iris"
PENGUINS = "penguins"  # the mixed-type pipeline: ColumnTransformer(impute, one-hot) -> forest


@dataclass(frozen=True)
class Model:
    """The one model every server serves: our artifact and, for peers, its joblib file."""

    name: str
    artifact: Path
    artifact_sha256: str  # primary (skops) file, for our server
    joblib: Path
    joblib_sha256: str


@dataclass(frozen=True)
class Server:
    """One server under test."""

    name: str
    version: str
    protocol: protocols.Protocol
    workers: tuple[int, ...]
    launch: Callable[[Model, int, int, Path], Launch]  # model, workers, port, scratch dir
    is_peer: bool = True  # the targets compare our server with peers, not with the floor
    answers_model: bool = True  # False for the floor, whose answer is a constant
    model: str = IRIS  # which model it serves: IRIS or PENGUINS


def _ours(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    # A free gRPC port of its own: the default (8081) would be shared by every instance.
    grpc_port = free_port(port)
    env = {
        "MODEL_SERVER_MODEL_URI": str(model.artifact),
        "MODEL_SERVER_MODEL_SHA256": model.artifact_sha256,
        "MODEL_SERVER_HOST": LOOPBACK,
        "MODEL_SERVER_PORT": str(port),
        "MODEL_SERVER_GRPC_PORT": str(grpc_port),
        "MODEL_SERVER_WORKERS": str(workers),
        "MODEL_SERVER_LOG_LEVEL": "warning",
        "MODEL_SERVER_WORKDIR": str(scratch / "model-server"),
    }
    return Launch([sys.executable, "-m", "model_server"], env, Path.cwd(), grpc_port)


def _ours_sklearn(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    # MODEL_SERVER_COMPILED=false: no ONNX conversion, scikit-learn predicts (like the peers).
    launch = _ours(model, workers, port, scratch)
    return replace(launch, env={**launch.env, "MODEL_SERVER_COMPILED": "false"})


def _ours_drift_off(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    # MODEL_SERVER_DRIFT_WINDOW=0: no drift window; the `model-server` row has it on (1000 rows).
    launch = _ours(model, workers, port, scratch)
    return replace(launch, env={**launch.env, "MODEL_SERVER_DRIFT_WINDOW": "0"})


def _ours_shadow(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    # A shadow candidate (docs/rollouts.md): the same artifact loaded again, predicting a copy
    # of every request off the request path within its time budget; the `model-server` row
    # has none. Same model, so the copy costs what a real candidate of its kind would.
    launch = _ours(model, workers, port, scratch)
    env = {
        **launch.env,
        "MODEL_SERVER_CANDIDATE_URI": str(model.artifact),
        "MODEL_SERVER_CANDIDATE_SHA256": model.artifact_sha256,
        "MODEL_SERVER_CANDIDATE_MODE": "shadow",
    }
    return replace(launch, env=env)


def _floor(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    # The same uvicorn setup as the model server: the workspace venv, uvloop and httptools.
    argv = [
        sys.executable, "-m", "uvicorn", "bench.server.apps.floor:app",
        "--host", LOOPBACK, "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    return Launch(argv, {}, Path.cwd())


def _grpc_floor(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    # The model server's gRPC stack (grpc.aio on uvloop, its generated stubs), a constant
    # reply holding the card's first sample label; the HTTP port is unused.
    card = json.loads((model.artifact / "model-card.json").read_text())
    label = int(card["sample"]["outputs"][0])
    grpc_port = free_port(port)
    argv = [
        sys.executable, "-m", "bench.server.apps.grpc_floor", "--port", str(grpc_port),
        "--model", model.name, "--label", str(label), "--workers", str(workers),
    ]  # fmt: skip
    return Launch(argv, {}, Path.cwd(), grpc_port)


def _seed_env(model: Model) -> dict[str, str]:
    return {"SEED_MODEL_PATH": str(model.joblib), "SEED_MODEL_SHA256": model.joblib_sha256}


def _flask_dev(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    python = str(venvs.ensure(venvs.SEED))
    argv = [python, "-m", "flask", "--app", "app", "run", "--host", LOOPBACK, "--port", str(port)]
    return Launch(argv, _seed_env(model), SEED_APP)


def _gunicorn(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    python = str(venvs.ensure(venvs.SEED))
    argv = [python, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{LOOPBACK}:{port}"]
    return Launch([*argv, "app:app"], _seed_env(model), SEED_APP)


def _mlserver(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    root = scratch / "mlserver"
    (root / model.name).mkdir(parents=True, exist_ok=True)
    grpc_port = free_port(port)
    settings = {
        "host": LOOPBACK,  # HTTP and gRPC alike
        "http_port": port,
        "grpc_port": grpc_port,  # measured by the `mlserver (grpc)` row
        "metrics_port": free_port(port, grpc_port),
        # 0 runs inference in the server process; N>0 adds N inference worker processes.
        "parallel_workers": 0 if workers == 1 else workers,
    }
    model_settings = {
        "name": model.name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model.joblib)},
    }
    (root / "settings.json").write_text(json.dumps(settings))
    (root / model.name / "model-settings.json").write_text(json.dumps(model_settings))
    mlserver = venvs.ensure(venvs.MLSERVER).parent / "mlserver"
    return Launch([str(mlserver), "start", str(root)], {}, root, grpc_port)


def _kserve(model: Model, workers: int, port: int, scratch: Path) -> Launch:
    python = str(venvs.ensure(venvs.KSERVE))
    argv = [
        python, str(APPS / "kserve_model.py"), "--model_name", model.name,
        "--http_port", str(port), "--grpc_port", str(free_port()), "--workers", str(workers),
        "--enable_grpc", "false", "--enable_latency_logging", "false",
    ]  # fmt: skip
    env = {
        "BENCH_MODEL_PATH": str(model.joblib),
        "BENCH_MODEL_SHA256": model.joblib_sha256,
        "BENCH_MODEL_NAME": model.name,
    }
    return Launch(argv, env, scratch)


SERVERS: tuple[Server, ...] = (
    Server(OURS, "workspace", protocols.SEED, (1, 2), _ours, is_peer=False),
    Server(f"{OURS} (v2)", "workspace", protocols.OPEN_INFERENCE_V2, (1, 2), _ours, is_peer=False),
    # What tritonclient.http sends by default: FP32 input bytes after the JSON, binary outputs.
    Server(
        f"{OURS} (v2 binary)",
        "workspace",
        protocols.OPEN_INFERENCE_V2_BINARY,
        (1, 2),
        _ours,
        is_peer=False,
    ),
    # What tritonclient.grpc sends: ModelInfer with the FP32 rows in raw_input_contents.
    Server(
        f"{OURS} (grpc)",
        "workspace",
        protocols.OPEN_INFERENCE_V2_GRPC,
        (1, 2),
        _ours,
        is_peer=False,
    ),
    # The compiled path off: what the HTTP stack alone does with the peers' scikit-learn model.
    Server(SKLEARN, "workspace", protocols.SEED, (1, 2), _ours_sklearn, is_peer=False),
    # Drift monitoring off: the `model-server` row divided by this one is what drift costs.
    Server(DRIFT_OFF, "workspace", protocols.SEED, (1,), _ours_drift_off, is_peer=False),
    # A shadow candidate on: the `model-server` row divided by this one is what shadowing costs.
    Server(SHADOW, "workspace", protocols.SEED, (1,), _ours_shadow, is_peer=False),
    Server("http-floor", "workspace", protocols.SEED, (1, 2), _floor, False, answers_model=False),
    # What the gRPC rows are measured against: grpc.aio on uvloop answering a constant.
    Server(
        "grpc-floor",
        "workspace",
        protocols.OPEN_INFERENCE_V2_GRPC,
        (1, 2),
        _grpc_floor,
        is_peer=False,
        answers_model=False,
    ),
    Server("seed-flask-dev", venvs.SEED.version, protocols.SEED, (1,), _flask_dev),
    Server("seed-gunicorn", venvs.SEED.version, protocols.SEED, (1, 2), _gunicorn),
    Server("mlserver", venvs.MLSERVER.version, protocols.OPEN_INFERENCE_V2, (1, 2), _mlserver),
    # The same MLServer on its gRPC port, sent our gRPC rows' request bytes. Compared with our
    # gRPC rows only (report.print_v2_vs_json), not in the seed-API ratios and targets.
    Server(
        "mlserver (grpc)",
        venvs.MLSERVER.version,
        protocols.OPEN_INFERENCE_V2_GRPC,
        (1, 2),
        _mlserver,
        is_peer=False,
    ),
    Server("kserve", venvs.KSERVE.version, protocols.KSERVE_V1, (1, 2), _kserve),
    # The penguins pipeline (rows keyed by feature name with strings; V2 a tensor per feature).
    # Peers that take such rows as they are: KServe (its app builds a DataFrame from keyed
    # instances). The seed Flask app does np.array(rows), which a ColumnTransformer fitted on
    # named columns refuses, and MLServer's sklearn runtime needs a pandas codec per request.
    Server(
        f"{OURS} ({PENGUINS})", "workspace", protocols.SEED, (1, 2), _ours, False, model=PENGUINS
    ),
    Server(
        f"{OURS} (v2, {PENGUINS})",
        "workspace",
        protocols.OPEN_INFERENCE_V2_TYPED,
        (1, 2),
        _ours,
        False,
        model=PENGUINS,
    ),
    Server(
        f"kserve ({PENGUINS})",
        venvs.KSERVE.version,
        protocols.KSERVE_V1,
        (1, 2),
        _kserve,
        is_peer=False,  # compared with our penguins rows only (report.print_penguins)
        model=PENGUINS,
    ),
)
