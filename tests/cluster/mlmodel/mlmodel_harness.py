"""The operator under test, run for real: a `python -m mlmodel_operator` process that talks to
the devcluster API server with the ServiceAccount token of operator/deploy (so its RBAC is the
one users install), plus helpers to poll the cluster with deadlines."""

from __future__ import annotations

import atexit
import functools
import http.server
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster import metrics, waiting
from devcluster.cluster import Cluster

REPO = Path(__file__).resolve().parents[3]
CRD_FILE = REPO / "crds" / "mlmodel.yaml"
DEPLOY_DIR = REPO / "operator" / "deploy"
GROUP, VERSION, PLURAL = "mlops.dev", "v1alpha1", "mlmodels"
DRIFT_INTERVAL = 2.0
SHA_A = "a" * 64
SHA_B = "b" * 64
# Writes the operator could make; controllers' own status writes use subresource "status".
OPERATOR_RESOURCES = {
    "mlmodels": {"", "status"},
    "deployments": {"", "scale"},
    "services": {""},
    "horizontalpodautoscalers": {""},
    "poddisruptionbudgets": {""},
}


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll `check` every 0.2 s until it returns something truthy (an ApiException counts as
    not yet); fail naming `what` at the deadline."""
    try:
        return waiting.wait_until(what, check, timeout, 0.2, retry_on=(ApiException,))
    except waiting.WaitTimeout as exc:
        pytest.fail(str(exc))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_account_kubeconfig(
    cluster: Cluster, path: Path, account: str = "mlmodel-operator"
) -> Path:
    """A kubeconfig for a ServiceAccount in mlmodel-system (default: the operator's)."""
    token = cluster.kubectl(
        "-n", "mlmodel-system", "create", "token", account, "--duration=4h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "devcluster", "cluster": server}],
        "users": [{"name": "mlmodel-operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": "devcluster", "user": "mlmodel-operator"}}
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


class CardServer:
    """A real HTTP server on 127.0.0.1 for model cards, one per test session.

    It serves files under `root`; a path under `/tarpit/` trickles one byte every
    `TARPIT_EVERY` seconds for as long as the reader stays (a server that never trips a per-read
    timeout). The operator is started with this server as its only artifact source
    (MLOP_ARTIFACT_SOURCES), since it reads loopback only through a source that names it.
    """

    TARPIT_EVERY = 2.0

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mlmodel-cards-"))
        atexit.register(shutil.rmtree, self.root, ignore_errors=True)
        self.stop = threading.Event()
        self.tarpits_open = 0  # tarpit responses being trickled right now
        self.tarpit_reads = 0  # tarpit requests ever received
        self._lock = threading.Lock()
        handler = functools.partial(self._handler_class(), directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        """http://127.0.0.1:<port>, without a trailing slash."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _handler_class(self) -> type[http.server.SimpleHTTPRequestHandler]:
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/tarpit/"):
                    server._trickle(self)
                else:
                    super().do_GET()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def _trickle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.tarpits_open += 1
            self.tarpit_reads += 1
        try:
            handler.send_response(200)
            handler.send_header("Content-Length", "100000")
            handler.end_headers()
            handler.wfile.flush()
            for _ in range(100_000):
                if self.stop.wait(self.TARPIT_EVERY):
                    return
                handler.wfile.write(b" ")
                handler.wfile.flush()
        except OSError:
            pass  # the operator hung up at its deadline
        finally:
            with self._lock:
                self.tarpits_open -= 1


@functools.cache
def card_server() -> CardServer:
    """The session's card server (started on first use, ended with the process)."""
    return CardServer()


class OperatorProcess:
    """`python -m mlmodel_operator` as a child process with MLOP_* settings."""

    def __init__(self, kubeconfig: Path, log: Path, **settings: str) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.port = free_port()
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the operator and wait until its health endpoint answers."""
        env = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            MLOP_DRIFT_INTERVAL_SECONDS=str(DRIFT_INTERVAL),
            MLOP_METRICS_HOST="127.0.0.1",
            MLOP_METRICS_PORT=str(self.port),
            MLOP_CARD_TIMEOUT_SECONDS="5",
            # cards only from the session's loopback server, which the source names explicitly
            MLOP_ARTIFACT_SOURCES=f"{card_server().base}/",
            **self.settings,
        )
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlmodel_operator"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(f"operator /readyz on port {self.port} (log: {self.log})", self._ready)

    def _ready(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            pytest.fail(f"operator exited early:\n{self.log_tail()}")
        return self.probe("/readyz") == 200

    def probe(self, path: str) -> int:
        """The status code of /healthz or /readyz (0: no answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def stop(self) -> None:
        """SIGTERM and wait for a graceful exit (kill after a deadline)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of one of the operator's own Prometheus samples."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return sum(
            value
            for found, value in metrics.samples(text, name)
            if all(found.get(k) == v for k, v in labels.items())
        )

    def log_tail(self, lines: int = 40) -> str:
        """The end of the operator's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def operator_writes(cluster: Cluster) -> dict[str, float]:
    """Write requests the API server has served for the resources the operator writes."""
    counts: dict[str, float] = {}
    for labels, value in metrics.samples(cluster.apiserver_metrics(), "apiserver_request_total"):
        if labels.get("verb", "").upper() not in metrics.WRITE_VERBS:
            continue
        resource, sub = labels.get("resource", ""), labels.get("subresource", "")
        if sub in OPERATOR_RESOURCES.get(resource, set()):
            key = f"{labels['verb']} {resource}/{sub}".rstrip("/")
            counts[key] = counts.get(key, 0.0) + value
    return counts


def mlmodel_yaml(name: str, **spec: Any) -> str:
    """An MLModel manifest; the model URI is pinned so the operator reads no card."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MLModel",
        "metadata": {"name": name},
        "spec": {"model": {"uri": "http://127.0.0.1:9/models/iris", "sha256": SHA_A}, **spec},
    }
    return yaml.safe_dump(body)


class Api:
    """Typed reads of MLModels and their children in one namespace."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.custom = client.CustomObjectsApi(cluster.api)
        self.apps = client.AppsV1Api(cluster.api)
        self.core = client.CoreV1Api(cluster.api)
        self.autoscaling = client.AutoscalingV2Api(cluster.api)
        self.policy = client.PolicyV1Api(cluster.api)

    @staticmethod
    def kustomize(directory: Path) -> str:
        """`kubectl kustomize DIR` (offline rendering)."""
        from devcluster.cluster import kubectl_binary

        return subprocess.run(
            [kubectl_binary(), "kustomize", str(directory)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def apply(self, manifest: str) -> None:
        """kubectl apply -f - (client-side, as a user or GitOps tool would)."""
        self.cluster.kubectl("apply", "-n", self.ns, "-f", "-", input=manifest)

    def mlmodel(self, name: str) -> dict[str, Any]:
        """The MLModel as a dict."""
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name
        )
        return found

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        """One status condition of an MLModel ({} while absent)."""
        for cond in self.mlmodel(name).get("status", {}).get("conditions", []):
            if cond["type"] == kind:
                return dict(cond)
        return {}

    def ready_body(self, name: str) -> dict[str, Any] | None:
        """The MLModel if it is Ready for its current generation, else None (one read)."""
        body = self.mlmodel(name)
        for cond in body.get("status", {}).get("conditions", []):
            if (
                cond["type"] == "Ready"
                and cond["status"] == "True"
                and cond.get("observedGeneration") == body["metadata"]["generation"]
            ):
                return body
        return None

    def is_ready(self, name: str) -> bool:
        """Ready=True for the MLModel's current generation."""
        return self.ready_body(name) is not None

    def deployment(self, name: str) -> dict[str, Any] | None:
        """The Deployment as a dict, or None."""
        try:
            found = self.apps.read_namespaced_deployment(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: dict[str, Any] = self.cluster.api.sanitize_for_serialization(found)
        return result

    def exists(self, kind: str, name: str) -> bool:
        """Whether a child of this kind exists."""
        readers = {
            "Deployment": self.apps.read_namespaced_deployment,
            "Service": self.core.read_namespaced_service,
            "HorizontalPodAutoscaler": self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
            "PodDisruptionBudget": self.policy.read_namespaced_pod_disruption_budget,
        }
        try:
            readers[kind](name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def events_for(self, name: str) -> list[str]:
        """'<reason>: <message>' of the Events posted on an MLModel."""
        events = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.kind=MLModel,involvedObject.name={name}"
        )
        return [f"{e.reason}: {e.message}" for e in events.items]


def dump(obj: Any) -> str:
    """Compact JSON for assertion messages."""
    return json.dumps(obj, default=str)[:2000]


class BlackHoleProxy:
    """A TCP proxy on loopback; `freeze()` stops relaying on every open connection (they stay
    open, silent: a half-open path), while new connections are relayed normally."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._frozen_before = 0  # connections numbered below this are black-holed
        self._cut_before = 0  # ... and below this closed
        self._count = 0
        self._closed = False
        self._lock = threading.Lock()  # held while a chunk is forwarded, and to freeze
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        """From its return on, no byte more crosses an open connection.

        Under the lock every relay forwards its chunks: a relay that was waiting for data when
        this was called cannot forward what arrives next (the deletes' events, in the re-list
        test) - it checks again under the lock before it sends.
        """
        with self._lock:
            self._frozen_before = self._count

    def cut(self) -> None:
        """Close the frozen connections (within half a second), both ends."""
        self._cut_before = self._frozen_before

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            number = self._count
            self._count += 1
            try:
                upstream = socket.create_connection(self.target)
            except OSError:  # the API server is restarting: refuse this one, keep accepting
                downstream.close()
                continue
            threading.Thread(
                target=self._relay, args=(number, downstream, upstream), daemon=True
            ).start()

    def _relay(self, number: int, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while not self._closed and number >= self._cut_before:
                if number < self._frozen_before:
                    time.sleep(0.5)  # hold both ends open, relay nothing
                    continue
                for key, _ in selector.select(timeout=0.5):
                    with self._lock:
                        if number < self._frozen_before:
                            break  # frozen while waiting: leave the data unread
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        key.data.sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()
