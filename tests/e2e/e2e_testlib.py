"""Helpers for the e2e tests: a looping client, status watching, artifacts in the store."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from devcluster.stack import mlstack
from devcluster.stack.mlstack import Kube

ROW = (5.1, 3.5, 1.4, 0.2)
SECRET = "model-store"  # the store credentials Secret in every test namespace
READY_TIMEOUT = 240.0


@dataclass(frozen=True)
class Artifact:
    """A published artifact and what the trainer predicts on its held-out rows."""

    uri: str
    sha256: str
    rows: list[list[Any]]  # held-out rows in feature order (None where a value is missing)
    expected: list[Any]
    # name and kind ("numeric", "categorical", "boolean") of each feature, in order
    features: tuple[tuple[str, str], ...] = ()
    onnx_sha256: str = ""  # the model.onnx checked when it was written ("" when none)


@dataclass(frozen=True)
class Stack:
    """The installed stack tests run against."""

    kube: Kube
    store: str  # in-cluster endpoint (ClusterIP), also reachable from the host
    v1: Artifact
    v2: Artifact
    corrupt: Artifact
    penguins: Artifact  # a mixed-type pipeline: categorical island/sex, missing measurements

    def model_url(self, namespace: str, name: str) -> str:
        """The model Service's ClusterIP URL."""
        return f"http://{mlstack.service_ip(self.kube, namespace, name)}"

    def deploy(
        self,
        namespace: str,
        name: str,
        artifact: Artifact,
        replicas: int = 1,
        extra_spec: dict[str, Any] | None = None,
        wait: bool = True,
    ) -> str:
        """Apply an MLModel for ``artifact`` (sha256 pinned); wait Ready; its Service URL."""
        manifest = mlstack.mlmodel_manifest(
            namespace, name, artifact.uri, artifact.sha256, SECRET, replicas, extra_spec
        )
        self.kube.apply([manifest])
        if wait:
            mlstack.wait_ready(self.kube, namespace, name, READY_TIMEOUT, digest=artifact.sha256)
        return self.model_url(namespace, name)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LoopResult:
    """What a looping client saw: one entry per request."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Requests sent."""
        return self.ok + len(self.failures)


# A traffic loop opens a new connection per request (so the Service spreads them over the pods),
# and each closed connection holds its client port for 60 s (TIME_WAIT): unpaced, a fast server
# used up the 28,000 ephemeral ports in a 7-minute canary walk and requests failed with
# EADDRNOTAVAIL (CI, 2026-12-07). 100 a second keeps ~6,000 ports in TIME_WAIT.
REQUESTS_PER_SECOND = 100


def paced(
    stop: threading.Event, max_seconds: float, per_second: float = REQUESTS_PER_SECOND
) -> Iterator[None]:
    """One tick per request, at most `per_second`, until `stop` is set or `max_seconds` pass.
    A slow answer delays the next tick; no burst follows to catch up."""
    gap = 1 / per_second
    deadline = time.monotonic() + max_seconds
    due = time.monotonic()
    while time.monotonic() < deadline:
        due = max(due + gap, time.monotonic())
        if stop.wait(max(0.0, due - time.monotonic())):
            return
        yield


@contextmanager
def looping_client(base_url: str, model: str, max_seconds: float = 400.0) -> Iterator[LoopResult]:
    """Send predictions (new connection each, `paced`) until the block ends (bounded)."""
    result = LoopResult()
    stop = threading.Event()

    def loop() -> None:
        for _ in paced(stop, max_seconds):
            try:
                status, body = mlstack.http(
                    "POST", f"{base_url}/predict", {"input": list(ROW)}, timeout=10
                )
            except OSError as exc:
                result.failures.append(f"{_now()} {type(exc).__name__}: {exc}")
                continue
            if status == 200:
                result.ok += 1
            else:
                result.failures.append(f"{_now()} HTTP {status}: {body}")

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(timeout=30)


def _now() -> str:
    now = time.time()
    return f"{time.strftime('%H:%M:%S', time.gmtime(now))}.{int(now % 1 * 1000):03d}"


def served_digest(base_url: str, model: str) -> str:
    """The sha256 a server behind ``base_url`` serves (V2 model metadata)."""
    status, body = mlstack.http("GET", f"{base_url}/v2/models/{model}")
    assert status == 200, f"GET /v2/models/{model}: {status} {body}"
    return str(body["parameters"]["sha256"])


class ConditionLog:
    """Records every distinct (type, status, reason) a MLModel's conditions go through."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name
        self.seen: list[tuple[str, str, str]] = []
        self.last: dict[str, Any] = {}

    def poll(self) -> dict[str, Any]:
        """Fetch the MLModel once and record new condition states."""
        self.last = self.kube.get("mlm", self.name, self.namespace) or {}
        for cond in (self.last.get("status") or {}).get("conditions") or []:
            entry = (cond["type"], cond["status"], cond.get("reason", ""))
            if entry not in self.seen:
                self.seen.append(entry)
        return self.last

    def wait(self, what: str, check: Any, timeout: float) -> float:
        """Poll until ``check(mlmodel)``; the error shows the conditions seen so far."""
        try:
            return mlstack.wait_for(what, lambda: bool(check(self.poll())), timeout, interval=1.0)
        except mlstack.StackError as exc:
            conds = (self.last.get("status") or {}).get("conditions")
            raise AssertionError(f"{exc}; conditions now: {conds}; seen: {self.seen}") from exc


def unique(prefix: str) -> str:
    """A short unique name."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def rows_as_lists(rows: Sequence[Sequence[float]]) -> list[list[float]]:
    """Plain lists of floats (numpy rows become JSON-able)."""
    return [[float(v) for v in row] for row in rows]


def point_at(kube: Kube, namespace: str, name: str, uri: str, sha256: str) -> None:
    """Patch an MLModel's spec.model.uri and sha256."""
    import json

    patch = {"spec": {"model": {"uri": uri, "sha256": sha256}}}
    kube.run("-n", namespace, "patch", "mlm", name, "--type=merge", "-p", json.dumps(patch))


@dataclass
class BadVersionRun:
    """What happened while a bad version was applied and then fixed."""

    degraded: dict[str, Any]
    ready_while_bad: dict[str, Any]
    digests_while_bad: set[str]
    loop: LoopResult
    seen: list[tuple[str, str, str]]


def break_then_fix(stack: Any, namespace: str, kind: str) -> BadVersionRun:
    """Serve v1; apply a bad version (digest mismatch or corrupt file) under a looping client,
    wait for Degraded; then point back at v1 and wait until Ready again."""
    url = stack.deploy(namespace, "iris", stack.v1, replicas=1)
    log = ConditionLog(stack.kube, namespace, "iris")
    if kind == "digest-mismatch":
        uri, sha256 = stack.v1.uri, "ab" * 32  # well-formed, but not the file's digest
    else:
        uri, sha256 = stack.corrupt.uri, stack.corrupt.sha256  # the card's digest, truncated file
    degraded: dict[str, Any] = {}

    def is_degraded(mlmodel: dict[str, Any]) -> bool:
        degraded.clear()
        degraded.update(mlstack.condition(mlmodel, "Degraded"))
        return degraded.get("status") == "True"

    with looping_client(url, "iris") as loop:
        point_at(stack.kube, namespace, "iris", uri, sha256)
        log.wait("Degraded=True for the bad version", is_degraded, 240)
        ready_while_bad = mlstack.condition(log.last, "Ready")
        digests = {served_digest(url, "iris") for _ in range(8)}
        point_at(stack.kube, namespace, "iris", stack.v1.uri, stack.v1.sha256)
        log.wait(
            "Ready again after fixing the spec",
            lambda m: (
                mlstack.is_ready(m, digest=stack.v1.sha256)
                and mlstack.condition(m, "Degraded").get("status") == "False"
            ),
            240,
        )
    print(
        f"{kind}: Degraded {degraded.get('reason')}: {degraded.get('message')}; "
        f"{loop.ok} requests answered, {len(loop.failures)} failed; seen {log.seen}"
    )
    return BadVersionRun(dict(degraded), ready_while_bad, digests, loop, log.seen)


V2_DATATYPES = {"numeric": "FP64", "categorical": "BYTES", "boolean": "BOOL"}


def named_request(protocol: str, model: str, artifact: Artifact) -> tuple[str, Any]:
    """(path, body) of a batch with named, mixed-type features: rows as objects keyed by
    feature name (seed, V1), one tensor per feature with its own datatype (V2)."""
    names = [name for name, _ in artifact.features]
    keyed = [dict(zip(names, row, strict=True)) for row in artifact.rows]
    if protocol == "seed":
        return "/predict", {"inputs": keyed}
    if protocol == "v1":
        return f"/v1/models/{model}:predict", {"instances": keyed}
    tensors = [
        {
            "name": name,
            "shape": [len(artifact.rows), 1],
            "datatype": V2_DATATYPES[kind],
            "data": [row[j] for row in artifact.rows],
        }
        for j, (name, kind) in enumerate(artifact.features)
    ]
    return f"/v2/models/{model}/infer", {"inputs": tensors}


def predict_named(base_url: str, protocol: str, model: str, artifact: Artifact) -> list[Any]:
    """POST `artifact`'s rows with named features in `protocol`; the predicted labels."""
    path, body = named_request(protocol, model, artifact)
    status, answer = mlstack.http("POST", base_url + path, body)
    if status != 200:
        raise mlstack.StackError(f"POST {base_url}{path} answered {status}: {answer}")
    return mlstack.prediction_labels(protocol, answer)


GRPC_SERVICE_PORT = 9000  # spec.service.grpcPort's default


def predict_grpc(
    kube: Kube, namespace: str, name: str, rows: Sequence[Sequence[float]]
) -> list[Any]:
    """The labels `tritonclient.grpc` gets for `rows` (one FP64 [N, n_features] tensor, sent as
    raw contents) from the model's Service, on its `grpc` port through the ClusterIP."""
    import numpy as np
    import tritonclient.grpc as triton

    svc = kube.get("service", name, namespace)
    assert svc is not None, f"service {namespace}/{name} does not exist"
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["grpc"]["port"] == GRPC_SERVICE_PORT and ports["grpc"]["targetPort"] == "grpc"
    client = triton.InferenceServerClient(f"{svc['spec']['clusterIP']}:{GRPC_SERVICE_PORT}")
    assert client.is_server_ready(client_timeout=10) and client.is_model_ready(name)
    x = np.array(rows, dtype=np.float64)
    tensor = triton.InferInput("input-0", list(x.shape), "FP64")
    tensor.set_data_from_numpy(x)
    result = client.infer(name, [tensor], client_timeout=30)
    return list(result.as_numpy("predict").tolist())


def publish(prefix: str, **config: Any) -> Artifact:
    """Train with `config`, write the artifact (with its checked ONNX form) to the store under
    `prefix` (the store's AWS_* variables must be set), and what the model predicts on its
    held-out rows."""
    from mlmodel_artifact import (
        ModelFormat,
        encode_rows,
        model_input,
        takes_frame,
        write_artifact,
    )
    from mlmodel_artifact.schema import frame_rows
    from mlmodel_trainer import TrainConfig, train

    result = train(TrainConfig(**config))
    dest = f"s3://{mlstack.BUCKET}/{prefix}"
    uri, card = write_artifact(result.model, result.description, dest, check_onnx=True)
    onnx = card.files.get(ModelFormat.ONNX)
    schema = card.feature_schema
    if schema.plain_numeric:
        rows: list[list[Any]] = [[float(v) for v in row] for row in result.split.X_test]
        expected = [int(v) for v in result.model.predict(result.split.X_test)]
    else:
        # held-out rows plus every nullable feature left out: the in-memory model's answers
        rows = frame_rows(result.split.X_test, schema)  # type: ignore[assignment]
        rows.append([None if f.nullable else rows[0][j] for j, f in enumerate(schema.features)])
        x = model_input(encode_rows(schema, rows), takes_frame(result.model))
        expected = [str(v) for v in result.model.predict(x)]
    features = tuple((f.name, f.kind.value) for f in schema.features)
    return Artifact(
        uri=uri,
        sha256=str(card.sha256),
        rows=rows,
        expected=expected,
        features=features,
        onnx_sha256=onnx.sha256 if onnx is not None else "",
    )
