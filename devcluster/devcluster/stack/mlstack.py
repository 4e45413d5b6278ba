"""The project's stack on a running cluster: images, CRD, operator, artifact store, models.

Shared by the demo driver (``python -m devcluster.stack.demo``) and the e2e tests. Every address
used here is a ClusterIP or pod IP of the cluster on this machine (or loopback for port-forwards).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from devcluster import cluster as cluster_mod
from devcluster.waiting import WaitTimeout, wait_until

SERVER_IMAGE: Final = "mlmodel-server:dev"
SERVER_SLIM_IMAGE: Final = "mlmodel-server:slim"  # MLOP_SLIM_IMAGE: spec.model.format onnx
OPERATOR_IMAGE: Final = "mlmodel-operator:dev"
STORE_IMAGE: Final = "mlmodel-artifact-store:dev"
STORE_NAME: Final = "artifact-store"
STORE_PORT: Final = 5000
BUCKET: Final = "models"
OPERATOR_NAMESPACE: Final = "mlmodel-system"
CRD_NAME: Final = "mlmodels.mlops.dev"
# moto accepts any credentials; they still travel the real way (Secret -> env -> SDK).
STORE_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "mlmodel-demo",
    "AWS_SECRET_ACCESS_KEY": "mlmodel-demo-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
PROXY_VARS: Final = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


class StackError(RuntimeError):
    """A step against the cluster failed; the message says what and how to see more."""


def repo_root() -> Path:
    """The checkout (it holds crds/, operator/deploy and the Dockerfiles)."""
    here = Path(__file__).resolve()
    for candidate in here.parents:
        if (candidate / "Dockerfile.server").is_file() and (candidate / "crds").is_dir():
            return candidate
    raise StackError(f"no checkout (Dockerfile.server, crds/) above {here}")


@dataclass(frozen=True)
class Kube:
    """kubectl bound to one kubeconfig."""

    kubeconfig: Path

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; on failure (if check) raise StackError with its stderr."""
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        argv = [cluster_mod.kubectl_binary(), *args]
        proc = subprocess.run(
            argv, input=input, env=env, text=True, capture_output=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise StackError(
                f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc

    def apply(self, manifests: Sequence[Mapping[str, Any]] | str, *extra: str) -> None:
        """kubectl apply -f - of documents (dicts or YAML text)."""
        text = manifests if isinstance(manifests, str) else yaml.safe_dump_all(list(manifests))
        self.run("apply", "-f", "-", *extra, input=text)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """One object as JSON, or None when it does not exist."""
        ns = ("-n", namespace) if namespace else ()
        proc = self.run("get", kind, name, *ns, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise StackError(f"kubectl get {kind} {name}: {proc.stderr.strip()}")
        result: dict[str, Any] = json.loads(proc.stdout)
        return result


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, hint: str = "", interval: float = 1.0
) -> float:
    """Poll ``check`` until true; returns seconds waited. Raises StackError naming ``what``."""
    started = time.monotonic()
    try:
        wait_until(what, check, timeout, interval)
    except WaitTimeout as exc:
        more = f"; {hint}" if hint else ""
        raise StackError(f"{exc}{more}") from exc
    return time.monotonic() - started


# --- images ---------------------------------------------------------------------------------

STORE_DOCKERFILE: Final = "devcluster/demo/Dockerfile.artifact-store"


@contextmanager
def images_lock() -> Iterator[None]:
    """The lock `python -m devcluster.images` holds while it starts the engine or builds."""
    from devcluster.images import paths

    paths.docker_dir().mkdir(parents=True, exist_ok=True)
    with (paths.docker_dir() / "images.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_images(
    names: Sequence[str] = ("server", "server-slim", "operator", "artifact-store"),
) -> None:
    """Build the project's images (and the demo's artifact store) on the private engine."""
    from devcluster.images import base, build, engine

    specs = dict(build.IMAGES)
    specs["artifact-store"] = build.ImageSpec(
        "artifact-store", STORE_IMAGE, STORE_DOCKERFILE, "devcluster/demo"
    )
    root = repo_root()
    with images_lock():
        engine.start()
        base_image = base.ensure_base_image()
        for name in names:
            build.build_image(specs[name], root, base_image)


def load_images(
    state_dir: Path, images: Sequence[str], load: Callable[[str], object] | None = None
) -> list[str]:
    """Put locally built images into the cluster's nodes; returns those copied.

    `load` copies one image: a node cluster handle's `load_image` (devcluster's `load-image`,
    or `kind load docker-image` on kind); by default devcluster's node in `state_dir`. An image
    whose Docker image ID was already loaded into this cluster is skipped (the record lives in
    the cluster's state directory, which a new ``up`` wipes).
    """
    from devcluster.images import engine
    from devcluster.kube import node
    from devcluster.kube.state import Layout

    if load is None:

        def load(image: str) -> object:
            return node.load_image(Layout(state_dir), image)

    record_path = state_dir / "loaded-images.json"
    loaded: dict[str, str] = json.loads(record_path.read_text()) if record_path.exists() else {}
    copied = []
    for image in images:
        inspect = engine.docker(
            "image", "inspect", "--format", "{{.Id}}", image, check=False, capture=True
        )
        if inspect.returncode != 0:
            raise StackError(f"image {image} is not built: {inspect.stderr.strip()}")
        image_id = inspect.stdout.strip()
        if loaded.get(image) == image_id:
            continue
        try:
            load(image)
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            raise StackError(f"loading {image} into the cluster failed: {exc}") from exc
        loaded[image] = image_id
        record_path.write_text(json.dumps(loaded, indent=2) + "\n")
        copied.append(image)
    return copied


# --- CRD and operator -------------------------------------------------------------------------


def install_crd(kube: Kube, timeout: float = 60.0) -> None:
    """kubectl apply -f crds/; wait until the CRD is Established and its list calls answer."""
    kube.run("apply", "-f", str(repo_root() / "crds"))
    # Polled, not `kubectl wait`: on a CRD whose status has no conditions yet (just created),
    # kubectl wait fails at once ("accessor error: <nil>") instead of waiting.
    wait_for(
        f"CRD {CRD_NAME} to be Established",
        lambda: condition(kube.get("crd", CRD_NAME, None), "Established").get("status") == "True",
        timeout,
    )
    # Right after Established, list calls can answer 429 for a few seconds.
    wait_for(
        "the MLModel API to answer list calls",
        lambda: kube.run("get", "mlm", "-A", check=False).returncode == 0,
        timeout,
    )


def install_operator(kube: Kube, timeout: float = 180.0) -> None:
    """kubectl apply -k operator/deploy, exactly as a user installs it; wait for the rollout."""
    kube.run("apply", "-k", str(repo_root() / "operator" / "deploy"))
    rollout(kube, OPERATOR_NAMESPACE, "mlmodel-operator", timeout)


def rollout(kube: Kube, namespace: str, deployment: str, timeout: float) -> None:
    """Wait for a Deployment's rollout; on timeout, say what its pods are doing."""
    proc = kube.run(
        "-n",
        namespace,
        "rollout",
        "status",
        f"deploy/{deployment}",
        f"--timeout={timeout:.0f}s",
        check=False,
        timeout=timeout + 30,
    )
    if proc.returncode != 0:
        pods = kube.run("-n", namespace, "get", "pods", "-o", "wide", check=False).stdout
        pods += _last_logs(kube, namespace, deployment)
        raise StackError(
            f"deployment {namespace}/{deployment} did not roll out within {timeout:.0f}s: "
            f"{proc.stderr.strip()}\n{pods}"
            f"see: kubectl -n {namespace} describe deploy/{deployment}; "
            f"kubectl -n {namespace} logs deploy/{deployment}"
        )


def _last_logs(kube: Kube, namespace: str, deployment: str, lines: int = 8) -> str:
    """The last log lines of a Deployment's pod (and of its previous, crashed container)."""
    text = ""
    for previous in ("--previous", ""):
        argv = ["-n", namespace, "logs", f"deploy/{deployment}", f"--tail={lines}"]
        logs = kube.run(*argv, *([previous] if previous else []), check=False)
        if logs.stdout.strip():
            text += f"last log lines{' (previous container)' if previous else ''}:\n{logs.stdout}"
    return text


# --- namespace, artifact store, artifacts -----------------------------------------------------


def namespace_manifest(name: str) -> dict[str, Any]:
    """A namespace that enforces the restricted Pod Security Standard."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def store_manifests(namespace: str) -> list[dict[str, Any]]:
    """The in-memory S3 store (moto): a restricted, read-only, non-root pod and its Service."""
    labels = {"app.kubernetes.io/name": STORE_NAME, "app.kubernetes.io/part-of": "mlmodel-demo"}
    container = {
        "name": "moto",
        "image": STORE_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--host", "$(POD_IP)", "--port", str(STORE_PORT)],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "s3", "containerPort": STORE_PORT}],
        "readinessProbe": {"tcpSocket": {"port": "s3"}, "periodSeconds": 2},
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    meta = {"name": STORE_NAME, "namespace": namespace, "labels": labels}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": labels, "ports": [{"name": "s3", "port": 80, "targetPort": "s3"}]},
        },
    ]


def service_ip(kube: Kube, namespace: str, name: str) -> str:
    """The ClusterIP of a Service."""
    svc = kube.get("service", name, namespace)
    if svc is None:
        raise StackError(f"service {namespace}/{name} does not exist")
    return str(svc["spec"]["clusterIP"])


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One HTTP request without any proxy (only to cluster/loopback addresses); (status, body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            raw = response.read()
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def deploy_store(kube: Kube, namespace: str, timeout: float = 120.0) -> str:
    """Run the artifact store; returns its in-cluster endpoint URL (the Service's ClusterIP)."""
    kube.apply(store_manifests(namespace))
    rollout(kube, namespace, STORE_NAME, timeout)
    return f"http://{service_ip(kube, namespace, STORE_NAME)}"


def create_bucket(endpoint: str, bucket: str = BUCKET, timeout: float = 60.0) -> None:
    """Create the bucket with an S3 PUT (an existing one is fine), once the store answers."""

    def bucket_made() -> bool:
        try:
            return http("PUT", f"{endpoint}/{bucket}")[0] in (200, 409)
        except OSError:
            return False

    wait_for(f"the artifact store at {endpoint} to create bucket {bucket}", bucket_made, timeout)


def store_env(endpoint: str) -> dict[str, str]:
    """The AWS_* variables that point an S3 client at the store."""
    return {**STORE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def train_and_publish(endpoint: str, prefix: str, *extra: str) -> dict[str, Any]:
    """Run `mlmodel-train train --out s3://models/PREFIX --json` against the store; its JSON."""
    import shutil
    import sys

    trainer = shutil.which("mlmodel-train", path=str(Path(sys.executable).parent)) or shutil.which(
        "mlmodel-train"
    )
    if trainer is None:
        raise StackError("mlmodel-train is not installed: run `make setup`")
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env.update(store_env(endpoint))
    argv = [trainer, "train", "--out", f"s3://{BUCKET}/{prefix}", "--json", *extra]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise StackError(f"{' '.join(argv[1:])} failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def credentials_secret(namespace: str, name: str, endpoint: str) -> dict[str, Any]:
    """The Secret an MLModel's spec.model.credentialsSecret names (becomes the pods' env)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": store_env(endpoint),
    }


def mlmodel_manifest(
    namespace: str,
    name: str,
    uri: str,
    sha256: str | None,
    secret: str | None,
    replicas: int = 1,
    extra_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An MLModel serving ``uri`` (digest pinned when ``sha256`` is given)."""
    model: dict[str, Any] = {"uri": uri}
    if sha256:
        model["sha256"] = sha256
    if secret:
        model["credentialsSecret"] = secret
    spec: dict[str, Any] = {"model": model, "replicas": replicas, **(extra_spec or {})}
    return {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# --- status and predictions -------------------------------------------------------------------


def condition(obj: Mapping[str, Any] | None, kind: str) -> dict[str, Any]:
    """The status condition of type ``kind`` (empty when absent)."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def is_ready(mlmodel: Mapping[str, Any] | None, digest: str | None = None) -> bool:
    """Ready=True for the current generation (and serving ``digest`` when given)."""
    if mlmodel is None:
        return False
    status = mlmodel.get("status") or {}
    if status.get("observedGeneration") != mlmodel["metadata"].get("generation"):
        return False
    if digest is not None and status.get("modelDigest") != digest:
        return False
    return condition(mlmodel, "Ready").get("status") == "True"


def wait_ready(
    kube: Kube, namespace: str, name: str, timeout: float, digest: str | None = None
) -> float:
    """Wait until the MLModel is Ready; on timeout the error shows its conditions."""
    last: dict[str, Any] = {}

    def ready() -> bool:
        nonlocal last
        last = kube.get("mlm", name, namespace) or {}
        return is_ready(last, digest)

    try:
        return wait_for(f"MLModel {namespace}/{name} to be Ready", ready, timeout, interval=2.0)
    except StackError as exc:
        conds = ((last.get("status") or {}).get("conditions")) or []
        lines = "\n".join(
            f"  {c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message')}"
            for c in conds
        )
        lines += "\n" + _last_logs(kube, namespace, name)
        raise StackError(
            f"{exc}; conditions:\n{lines or '  (none yet)'}\n"
            f"see: kubectl -n {namespace} describe mlm/{name}; "
            f"kubectl -n {namespace} get pods; "
            f"kubectl -n {namespace} logs deploy/{name}"
        ) from exc


PROTOCOLS: Final = ("seed", "v1", "v2")


def predict_request(protocol: str, model: str, rows: Sequence[Sequence[float]]) -> tuple[str, Any]:
    """(path, JSON body) of a batch prediction in one protocol."""
    batch = [list(map(float, row)) for row in rows]
    if protocol == "seed":
        return "/predict", {"inputs": batch}
    if protocol == "v1":
        return f"/v1/models/{model}:predict", {"instances": batch}
    if protocol == "v2":
        flat = [value for row in batch for value in row]
        tensor = {
            "name": "input-0",
            "shape": [len(batch), len(batch[0])],
            "datatype": "FP64",
            "data": flat,
        }
        return f"/v2/models/{model}/infer", {"inputs": [tensor]}
    raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")


def prediction_labels(protocol: str, body: Any) -> list[Any]:
    """The predicted labels of a protocol's answer."""
    if protocol in ("seed", "v1"):
        return list(body["predictions"])
    outputs = {o["name"]: o for o in body["outputs"]}
    return list(outputs["predict"]["data"])


def predict(base_url: str, protocol: str, model: str, rows: Sequence[Sequence[float]]) -> list[Any]:
    """POST one batch in ``protocol``; the labels (raises StackError on a non-200 answer)."""
    path, body = predict_request(protocol, model, rows)
    status, answer = http("POST", base_url + path, body)
    if status != 200:
        raise StackError(f"POST {base_url}{path} answered {status}: {answer}")
    return prediction_labels(protocol, answer)
