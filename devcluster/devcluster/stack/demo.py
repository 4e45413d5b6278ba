"""``python -m devcluster.stack.demo up|down``: the whole project, end to end, on a real node.

``up`` starts devcluster with its real node (or, when ``KUBECONFIG`` is set and ``DEVCLUSTER=1`` is
not, uses that cluster), builds and loads the images, installs the CRD and the operator, runs an
in-cluster S3-compatible artifact store, trains the iris model into it, applies an MLModel pinned
to the artifact's sha256, waits until it is Ready and sends a prediction in each protocol through
the model's Service. Each step prints its elapsed time; a failing step stops the demo with its
cause and the command that shows more. ``down`` removes everything ``up`` made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from devcluster import config
from devcluster.stack import mlstack
from devcluster.stack.mlstack import Kube, StackError

NAMESPACE: Final = "mlmodel-demo"
MODEL: Final = "iris"
SECRET: Final = "iris-s3-credentials"
ARTIFACT_PREFIX: Final = "iris/v1"
REPLICAS: Final = 2
READY_TIMEOUT: Final = 300.0
ROWS: Final = ((5.1, 3.5, 1.4, 0.2), (6.2, 2.9, 4.3, 1.3), (7.7, 3.0, 6.1, 2.3))
IMAGES: Final = (
    mlstack.SERVER_IMAGE,
    mlstack.SERVER_SLIM_IMAGE,
    mlstack.OPERATOR_IMAGE,
    mlstack.STORE_IMAGE,
)


def record_file() -> Path:
    """What ``up`` started (so ``down`` removes exactly that)."""
    return config.cache_root() / "demo.json"


@dataclass
class Target:
    """The cluster the demo runs on."""

    kubeconfig: Path
    devcluster_dir: Path | None  # a devcluster with a node: images can be loaded into it
    users: bool = False  # the cluster KUBECONFIG names (the demo does not start or stop it)
    started_by_demo: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def kube(self) -> Kube:
        """kubectl for this cluster."""
        return Kube(self.kubeconfig)


class StepFailed(Exception):
    """A step failed; ``hint`` is the command that shows more."""

    def __init__(self, cause: str, hint: str) -> None:
        super().__init__(cause)
        self.hint = hint


class Progress:
    """Numbered steps with elapsed times."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.number = 0
        self.started = time.monotonic()

    @contextlib.contextmanager
    def step(self, title: str, hint: str) -> Iterator[None]:
        """Run one step; on any error raise StepFailed carrying ``hint``."""
        self.number += 1
        print(f"==> [{self.number}/{self.total}] {title}", flush=True)
        began = time.monotonic()
        try:
            yield
        except (StackError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            took = time.monotonic() - began
            print(f"    FAILED after {took:.1f}s", flush=True)
            raise StepFailed(str(exc), hint) from exc
        took = time.monotonic() - began
        print(
            f"    done in {took:.1f}s (elapsed {time.monotonic() - self.started:.1f}s)", flush=True
        )

    def elapsed(self) -> float:
        """Seconds since the first step."""
        return time.monotonic() - self.started


def say(line: str) -> None:
    """A detail line under the current step."""
    print(f"    {line}", flush=True)


# --- choosing and starting the cluster ---------------------------------------------------------


def choose_target() -> Target:
    """The user's cluster (KUBECONFIG, unless DEVCLUSTER=1) or the default devcluster."""
    from devcluster.kube import controlplane

    given = os.environ.get("KUBECONFIG")
    if given and os.environ.get("DEVCLUSTER") != "1":
        path = Path(given.split(os.pathsep)[0]).expanduser()
        return Target(kubeconfig=path, devcluster_dir=_devcluster_dir_of(path), users=True)
    layout = controlplane.layout_for(None)
    return Target(kubeconfig=layout.kubeconfig, devcluster_dir=layout.root)


def _devcluster_dir_of(kubeconfig: Path) -> Path | None:
    """The devcluster state directory a kubeconfig belongs to, when it has a real node."""
    from devcluster.kube import state

    recorded = state.load(state.Layout(kubeconfig.parent))
    return kubeconfig.parent if recorded is not None and recorded.node else None


def start_devcluster(target: Target) -> None:
    """`devcluster build --node` (cached) and `devcluster up --node`."""
    from devcluster.kube import build, controlplane

    assert target.devcluster_dir is not None
    missing = build.missing_binaries(config.CONTROL_PLANE_BINARIES + config.NODE_BINARIES)
    if missing:
        say(f"building {', '.join(missing)} from the pinned release (cold: ~15 min, once)")
    if build.main(node=True) != 0:
        raise StackError("building the Kubernetes binaries failed (see the lines above)")
    layout = controlplane.layout_for(target.devcluster_dir)
    was_running = controlplane.is_running(layout)
    controlplane.up(layout, controlplane.UpOptions(node=True), log=say)
    target.started_by_demo = not was_running


# --- the steps -------------------------------------------------------------------------------


def install(target: Target, progress: Progress) -> None:
    """Images, CRD, operator."""
    kube = target.kube
    images_log = config.cache_root() / "docker"
    with progress.step(
        "Build images (server, operator, artifact store) on the private engine",
        f"ls {images_log}/build-*.log",
    ):
        mlstack.build_images()
    if target.devcluster_dir is not None:
        with progress.step(
            "Load the images into the node's containerd",
            f"ctr --address {target.devcluster_dir}/ctd/sock -n k8s.io images ls",
        ):
            copied = mlstack.load_images(target.devcluster_dir, IMAGES)
            say(f"copied: {', '.join(copied) or 'none (all up to date)'}")
    else:
        with progress.step("Images on your cluster's nodes", "kubectl get nodes -o wide"):
            say(f"not loaded: your nodes must be able to pull {', '.join(IMAGES)}")
    with progress.step(
        "Install the MLModel CRD (kubectl apply -f crds/)",
        f"kubectl describe crd {mlstack.CRD_NAME}",
    ):
        mlstack.install_crd(kube)
    with progress.step(
        "Install the operator (kubectl apply -k operator/deploy)",
        f"kubectl -n {mlstack.OPERATOR_NAMESPACE} logs deploy/mlmodel-operator",
    ):
        mlstack.install_operator(kube)


def publish(target: Target, progress: Progress, endpoint: Callable[[], str]) -> str:
    """Artifact store, trained artifact; returns the artifact's sha256."""
    kube = target.kube
    with progress.step(
        f"Start the artifact store (moto S3) in namespace {NAMESPACE}",
        f"kubectl -n {NAMESPACE} logs deploy/{mlstack.STORE_NAME}",
    ):
        kube.apply([mlstack.namespace_manifest(NAMESPACE)])
        cluster_url = mlstack.deploy_store(kube, NAMESPACE)
        target.facts["store"] = cluster_url
        host_url = endpoint()
        mlstack.create_bucket(host_url)
        say(f"S3 endpoint {cluster_url} (bucket {mlstack.BUCKET})")
    uri = f"s3://{mlstack.BUCKET}/{ARTIFACT_PREFIX}"
    with progress.step(
        f"Train the iris model and publish it to {uri}",
        "uv run --frozen mlmodel-train train --out /tmp/iris",
    ):
        result = mlstack.train_and_publish(host_url, ARTIFACT_PREFIX)
        digest = str(result["sha256"])
        say(
            f"{result['estimator']} accuracy {result['metrics'].get('accuracy')} "
            f"on {result['training']['n_test']} held-out rows; sha256 {digest}"
        )
    return digest


def serve(target: Target, progress: Progress, digest: str) -> None:
    """Secret + MLModel, wait Ready."""
    kube = target.kube
    uri = f"s3://{mlstack.BUCKET}/{ARTIFACT_PREFIX}"
    with progress.step(
        f"Apply MLModel {MODEL} (sha256 pinned) and wait until Ready",
        f"kubectl -n {NAMESPACE} describe mlm/{MODEL}",
    ):
        store = str(target.facts["store"])
        kube.apply(
            [
                mlstack.credentials_secret(NAMESPACE, SECRET, store),
                mlstack.mlmodel_manifest(NAMESPACE, MODEL, uri, digest, SECRET, REPLICAS),
            ]
        )
        waited = mlstack.wait_ready(kube, NAMESPACE, MODEL, READY_TIMEOUT, digest=digest)
        say(f"Ready after {waited:.1f}s")


def predict_all(progress: Progress, base_url: str) -> dict[str, list[Any]]:
    """One batch in each protocol through the Service."""
    answers: dict[str, list[Any]] = {}
    with progress.step(
        "Send predictions through the Service in each protocol",
        f"kubectl -n {NAMESPACE} logs deploy/{MODEL}",
    ):
        for protocol in mlstack.PROTOCOLS:
            answers[protocol] = mlstack.predict(base_url, protocol, MODEL, ROWS)
        if len({json.dumps(v) for v in answers.values()}) != 1:
            raise StackError(f"the protocols disagree: {answers}")
    return answers


# --- reaching Services from the host -----------------------------------------------------------


@contextlib.contextmanager
def service_url(target: Target, name: str, port: int = 80) -> Iterator[str]:
    """A URL for a Service: its ClusterIP on devcluster, else a loopback kubectl port-forward."""
    if target.devcluster_dir is not None:
        ip = mlstack.service_ip(target.kube, NAMESPACE, name)
        yield f"http://{ip}" if port == 80 else f"http://{ip}:{port}"
        return
    with port_forward(target.kube, NAMESPACE, name, port) as local:
        yield local


@contextlib.contextmanager
def port_forward(kube: Kube, namespace: str, service: str, port: int) -> Iterator[str]:
    """`kubectl port-forward svc/NAME :PORT --address 127.0.0.1`; yields the local URL."""
    from devcluster.cluster import kubectl_binary

    argv = [
        kubectl_binary(),
        "-n",
        namespace,
        "port-forward",
        f"svc/{service}",
        f":{port}",
        "--address",
        "127.0.0.1",
    ]
    env = dict(os.environ, KUBECONFIG=str(kube.kubeconfig))
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not found:
            err = proc.stderr.read() if proc.stderr else ""
            raise StackError(f"kubectl port-forward svc/{service} failed: {line}{err}")
        yield f"http://127.0.0.1:{found.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- up / down -------------------------------------------------------------------------------


def report(
    target: Target, base_url: str, answers: dict[str, list[Any]], progress: Progress
) -> None:
    """`kubectl get mlm`, the predictions and where the metrics are."""
    print(f"\n$ kubectl -n {NAMESPACE} get mlm")
    print(target.kube.run("-n", NAMESPACE, "get", "mlm").stdout.rstrip())
    print(f"\nPredictions for {[list(r) for r in ROWS]} through {base_url}:")
    for protocol in mlstack.PROTOCOLS:
        path, _ = mlstack.predict_request(protocol, MODEL, ROWS)
        print(f"  {protocol:<4} POST {path:<28} -> {answers[protocol]}")
    print("\nMetrics:")
    print(f"  model server   {base_url}/metrics  (model_server_requests_total, ...)")
    print(
        "  Prometheus     operator/deploy/monitoring/prometheus.yml (Kubernetes service "
        "discovery of model pods)"
    )
    print("  Alert rules    operator/deploy/monitoring/alert-rules.yaml (drift, no traffic)")
    print(f"  Drift          {base_url}/v2/models/{MODEL}/drift")
    print("  Grafana        operator/deploy/monitoring/grafana-dashboard.json")
    print(f"\nKUBECONFIG={target.kubeconfig}   (kubectl -n {NAMESPACE} get mlm,deploy,pods,svc)")
    print(f"Demo done in {progress.elapsed():.0f}s. Remove everything with `make demo-down`.")


def up() -> int:
    """Run every step; 0 on success, 1 when a step failed."""
    target = choose_target()
    progress = Progress(total=8 if target.users else 9)
    try:
        if target.users:
            print(
                f"Using the cluster of KUBECONFIG={target.kubeconfig} "
                "(set DEVCLUSTER=1 to use devcluster instead)"
            )
        else:
            with progress.step(
                "Start devcluster with a real node (python -m devcluster up --node)",
                f"ls {target.devcluster_dir}/logs; "
                f"tail -n 30 {target.devcluster_dir}/logs/kubelet.log",
            ):
                start_devcluster(target)
        _save_record(target)
        install(target, progress)
        with contextlib.ExitStack() as stack:
            digest = publish(
                target,
                progress,
                lambda: stack.enter_context(service_url(target, mlstack.STORE_NAME)),
            )
            serve(target, progress, digest)
            base_url = stack.enter_context(service_url(target, MODEL))
            answers = predict_all(progress, base_url)
            report(target, base_url, answers, progress)
    except StepFailed as exc:
        print(f"\ndemo: step failed: {exc}", file=sys.stderr)
        print(f"demo: see more with: {exc.hint}", file=sys.stderr)
        return 1
    return 0


def _save_record(target: Target) -> None:
    previous = _load_record()
    started = target.started_by_demo or bool(
        previous.get("started_devcluster") and previous.get("kubeconfig") == str(target.kubeconfig)
    )
    record_file().parent.mkdir(parents=True, exist_ok=True)
    record_file().write_text(
        json.dumps(
            {
                "kubeconfig": str(target.kubeconfig),
                "devcluster_dir": str(target.devcluster_dir) if target.devcluster_dir else None,
                "started_devcluster": started,
            },
            indent=2,
        )
        + "\n"
    )


def _load_record() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(record_file().read_text())
        return data
    except (FileNotFoundError, ValueError):
        return {}


def down() -> int:
    """Remove what ``up`` made: the devcluster it started, or the demo's objects on a cluster."""
    from devcluster.images import engine
    from devcluster.kube import controlplane

    record = _load_record()
    if not record:
        print(f"demo: nothing to remove (no demo record at {record_file()})")
        return 0
    kube = Kube(Path(record["kubeconfig"]))
    if record.get("started_devcluster") and record.get("devcluster_dir"):
        print(f"==> stopping the devcluster the demo started ({record['devcluster_dir']})")
        controlplane.down(controlplane.layout_for(Path(record["devcluster_dir"])), log=say)
    else:
        print(f"==> removing the demo's objects from KUBECONFIG={record['kubeconfig']}")
        for args in (
            ("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true"),
            (
                "delete",
                "-k",
                str(mlstack.repo_root() / "operator" / "deploy"),
                "--ignore-not-found",
                "--wait=true",
            ),
            ("delete", "-f", str(mlstack.repo_root() / "crds"), "--ignore-not-found"),
        ):
            proc = kube.run(*args, check=False)
            say((proc.stdout or proc.stderr).strip().replace("\n", "; "))
    if record.get("started_devcluster"):
        print("==> stopping the private image engine (built images stay cached)")
        with mlstack.images_lock():
            engine.stop()
    record_file().unlink(missing_ok=True)
    print("demo: removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``up`` or ``down``."""
    parser = argparse.ArgumentParser(
        prog="python -m devcluster.stack.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("up", "down"))
    args = parser.parse_args(argv)
    return up() if args.command == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
