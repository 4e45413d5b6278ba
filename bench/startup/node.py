"""`python -m bench.startup.node`: start-up on the real node, ours against a plain Deployment.

`uv run --frozen python -m bench.startup.node [--rounds 5]` (or `make bench-startup-node`, which
`make bench-startup` runs first).

On devcluster's real node (a running default devcluster with a node and no kwok nodes is
reused and left running; otherwise a fresh one is started like the e2e tier's, waiting while
another session holds the node, and stopped at the end) with mlmodel-server:slim, the operator
and the in-cluster artifact store, the iris model is trained into the store with its checked
model.onnx, and an MLModel serving that file (`spec.model.format: onnx`, pinned to the ONNX
digest) is applied once as a warm-up. Its Deployment's pod template is the floor's: a plain
Deployment (no operator, no owner) of the same image, model, probes and resources. Then each
round, for ours and the floor (alternating which goes first):

- apply with 1 replica -> Ready (ours: the MLModel's Ready condition; the floor: the pod's);
- scale 1 -> 4 through the /scale subresource -> all 4 pods Ready (ours: the MLModel's status
  says 4 ready);
- delete it and wait until its pods are gone.

Timelines come from the API's own timestamps (node_timeline.py); the bench's own clock (request
sent -> Ready seen, polled every 100 ms) is printed beside them. Everything is in one namespace
per run, deleted at the end. Results: bench/results/startup-node.{json,txt}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.startup import node_timeline as tl
from bench.startup import podmem
from bench.startup.run import machine, note_load
from devcluster.kube import controlplane, fakenodes, node, state
from devcluster.stack import mlstack
from devcluster.stack.mlstack import Kube, StackError

RESULTS = Path(__file__).parent.parent / "results" / "startup-node.json"
GROUP, VERSION, PLURAL = "mlops.dev", "v1alpha1", "mlmodels"
CONTROLLERS = ("kube-controller-manager",)  # a Deployment's other writer: its status
SECRET = "model-store"
SCALE_TO = 4
POLL_S = 0.1
TIMEOUT_S = 240.0
NODE_WAIT_S = 900.0
IMAGES = (mlstack.SERVER_SLIM_IMAGE, mlstack.OPERATOR_IMAGE, mlstack.STORE_IMAGE)
FLOOR_LABEL = "bench.mlops.dev/floor"
# After all replicas are Ready, before their memory is read: the probes' first answers have
# been served, the servers idle.
MEMORY_SETTLE_S = 10.0


def say(line: str) -> None:
    """A progress line."""
    print(f"[bench-node] {line}", flush=True)


@contextmanager
def node_cluster() -> Iterator[tuple[Path, Path, str]]:
    """(kubeconfig, state dir, how) of a devcluster with the real node."""
    default = controlplane.layout_for(None)
    recorded = state.load(default)
    if recorded is not None and recorded.node and controlplane.is_running(default):
        if recorded.fake_nodes:
            raise StackError(
                f"the devcluster in {default.root} has {recorded.fake_nodes} kwok nodes, where "
                "model pods could land: stop it (make cluster-down) or start it without them"
            )
        say(f"reusing the running devcluster in {default.root}")
        yield default.kubeconfig, default.root, f"the running devcluster ({default.root}), reused"
        return
    root = Path(tempfile.mkdtemp(prefix="bench-startup-node-"))
    layout = controlplane.layout_for(root)
    try:
        with node.exclusive_node(NODE_WAIT_S):
            say("starting a devcluster with the real node (waits while another holds it)")
            controlplane.up_when_node_free(layout, NODE_WAIT_S, log=lambda _: None)
            try:
                yield layout.kubeconfig, layout.root, "a fresh devcluster, one real node, no kwok"
            finally:
                controlplane.down(layout, log=lambda _: None)
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Bench:
    """One run: the stack installed, the artifact published, the namespace."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        self.kube = Kube(kubeconfig)
        self.api = fakenodes.api_client(kubeconfig)
        self.custom = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.ns = namespace
        self.uri = ""
        self.digest = ""
        self.template: dict[str, Any] = {}

    # --- setup -----------------------------------------------------------------------------

    def install(self, state_dir: Path) -> dict[str, Any]:
        """Images, CRD, operator, the store and the artifact; returns the trainer's summary."""
        # As the e2e tier: `make images` built the server and operator images (the Makefile
        # target depends on it); the artifact store is built here, cached after the first time.
        say("loading the images: " + ", ".join(IMAGES))
        mlstack.build_images(["artifact-store"])
        mlstack.load_images(state_dir, IMAGES)
        say("installing the CRD and the operator")
        mlstack.install_crd(self.kube)
        mlstack.install_operator(self.kube)
        self.kube.apply([mlstack.namespace_manifest(self.ns)])
        store = mlstack.deploy_store(self.kube, self.ns)
        mlstack.create_bucket(store)
        self.kube.apply([mlstack.credentials_secret(self.ns, SECRET, store)])
        say(f"training iris into the store ({store})")
        published = mlstack.train_and_publish(store, "bench/iris/v1")
        self.uri = str(published["uri"])
        self.digest = str(published["files"]["onnx"]["sha256"])
        return published

    def mlmodel(self, name: str) -> dict[str, Any]:
        """The MLModel: served from model.onnx on the slim image, 1 replica."""
        model = {
            "uri": self.uri,
            "sha256": self.digest,
            "format": "onnx",
            "credentialsSecret": SECRET,
        }
        return mlstack.mlmodel_manifest(
            self.ns, name, self.uri, self.digest, SECRET, 1, {"model": model}
        )

    def warm_up(self) -> None:
        """One MLModel to Ready and gone: the node's first start of the image is not timed,
        and its Deployment's pod template becomes the floor's."""
        say("warm-up MLModel (not timed); its pod template is the floor's")
        self.ours("warmup")
        dep = self.kube.get("deployment", "warmup", self.ns)
        assert dep is not None
        self.template = dep["spec"]["template"]
        self.delete("mlm", "warmup", dep)

    # --- one measurement -------------------------------------------------------------------

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """One object as JSON, managedFields included (kubectl hides them by default)."""
        import json

        argv = ["get", kind, name, "-n", self.ns, "-o", "json", "--show-managed-fields"]
        got: dict[str, Any] = json.loads(self.kube.run(*argv).stdout)
        return got

    def _get_mlm(self, name: str) -> dict[str, Any]:
        """The MLModel now; a Degraded one (a pod that cannot load the model) stops the run."""
        got: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, name
        )
        degraded = mlstack.condition(got, "Degraded")
        if degraded.get("status") == "True":
            raise StackError(f"MLModel {name} Degraded: {degraded.get('message')}")
        return got

    def _ready_replicas(self, name: str) -> int:
        dep = self.apps.read_namespaced_deployment_status(name, self.ns)
        if dep.status.observed_generation != dep.metadata.generation:
            return -1
        return int(dep.status.ready_replicas or 0)

    def _wait(self, what: str, check: Callable[[], bool]) -> float:
        """Poll until `check`; the wall time (time.time()) it was first seen true."""
        mlstack.wait_for(what, check, TIMEOUT_S, interval=POLL_S)
        return time.time()

    def ours(self, name: str) -> dict[str, Any]:
        """An MLModel: apply -> Ready, then scale to SCALE_TO -> all Ready."""
        sent = time.time()
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, self.mlmodel(name)
        )
        seen = self._wait(
            f"MLModel {name} Ready", lambda: mlstack.is_ready(self._get_mlm(name), self.digest)
        )
        apply_seen = seen - sent
        mlm, dep = self.get("mlm", name), self.get("deployment", name)
        (first,) = self.pods(dep)
        apply = tl.apply_stages(mlm, first, dep, self.log(first))
        server = {"apply": self.server_start(first)}

        def all_ready() -> bool:
            got = self._get_mlm(name)
            status = got.get("status") or {}
            return mlstack.is_ready(got, self.digest) and status.get("readyReplicas") == SCALE_TO

        sent = time.time()
        self.custom.patch_namespaced_custom_object_scale(
            GROUP, VERSION, self.ns, PLURAL, name, {"spec": {"replicas": SCALE_TO}}
        )
        seen = self._wait(f"MLModel {name} {SCALE_TO}/{SCALE_TO} ready", all_ready)
        mlm, dep = self.get("mlm", name), self.get("deployment", name)
        new = self.new_pods(dep, first)
        scale = tl.scale_stages(
            tl.whole_second(sent),
            new,
            self.replicaset(dep),
            deployment_scaled=tl.managed_time(dep, "", exclude=CONTROLLERS),
            mlmodel_status=tl.managed_time(mlm, "status"),
            logs=[self.log(p) for p in new],
        )
        server["scale"] = max(self.server_start(p) for p in new)
        seen_s = {"apply": apply_seen, "scale": seen - sent}
        return {"apply": apply, "scale": scale, "seen": seen_s, "server": server}

    def memory(self, name: str) -> list[dict[str, Any]]:
        """An MLModel with SCALE_TO replicas on the one node: each pod's cgroup charge and its
        server's RSS, once all are Ready and idle (bench/startup/podmem.py)."""
        body = self.mlmodel(name)
        body["spec"]["replicas"] = SCALE_TO
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

        def all_ready() -> bool:
            got = self._get_mlm(name)
            status = got.get("status") or {}
            return mlstack.is_ready(got, self.digest) and status.get("readyReplicas") == SCALE_TO

        self._wait(f"MLModel {name} {SCALE_TO}/{SCALE_TO} ready", all_ready)
        time.sleep(MEMORY_SETTLE_S)
        pods = sorted(
            self.pods(self.get("deployment", name)),
            key=lambda p: p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"],
        )
        return [
            podmem.pod_memory(p["metadata"]["name"], p["metadata"]["uid"]).as_dict() for p in pods
        ]

    def floor(self, name: str) -> dict[str, Any]:
        """A plain Deployment with the warm-up's pod template: apply -> Ready, scale -> Ready."""
        labels = {FLOOR_LABEL: name}
        template = {
            "metadata": {**self.template.get("metadata", {}), "labels": labels},
            "spec": self.template["spec"],
        }
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
        }
        sent = time.time()
        self.apps.create_namespaced_deployment(self.ns, body)
        seen = self._wait(f"Deployment {name} ready", lambda: self._ready_replicas(name) == 1)
        apply_seen = seen - sent
        dep = self.get("deployment", name)
        (first,) = self.pods(dep)
        apply = tl.apply_stages(dep, first, log=self.log(first))
        server = {"apply": self.server_start(first)}
        sent = time.time()
        self.apps.patch_namespaced_deployment_scale(name, self.ns, {"spec": {"replicas": SCALE_TO}})
        seen = self._wait(
            f"Deployment {name} {SCALE_TO} ready", lambda: self._ready_replicas(name) == SCALE_TO
        )
        dep = self.get("deployment", name)
        new = self.new_pods(dep, first)
        scale = tl.scale_stages(
            tl.whole_second(sent), new, self.replicaset(dep), logs=[self.log(p) for p in new]
        )
        server["scale"] = max(self.server_start(p) for p in new)
        seen_s = {"apply": apply_seen, "scale": seen - sent}
        return {"apply": apply, "scale": scale, "seen": seen_s, "server": server}

    # --- objects ---------------------------------------------------------------------------

    @staticmethod
    def selector(dep: dict[str, Any]) -> str:
        """The Deployment's pod selector as a label query."""
        return ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())

    def _items(self, kind: str, selector: str) -> list[dict[str, Any]]:
        import json

        argv = ["get", kind, "-n", self.ns, "-l", selector, "-o", "json", "--show-managed-fields"]
        out = self.kube.run(*argv).stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def pods(self, dep: dict[str, Any]) -> list[dict[str, Any]]:
        """The Deployment's pods that are not being deleted."""
        pods = self._items("pods", self.selector(dep))
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def log(self, pod: dict[str, Any]) -> str:
        """The pod's container log with the runtime's timestamps (nanoseconds)."""
        name = pod["metadata"]["name"]
        return self.kube.run("logs", name, "-n", self.ns, "--timestamps").stdout

    def server_start(self, pod: dict[str, Any]) -> float:
        """In the pod: the server's first log line -> its model-ready line (runtime's clock)."""
        times = tl.log_times(self.log(pod))
        if times["first"] is None or times["ready"] is None:
            raise StackError(f"no model-ready line in the log of {pod['metadata']['name']}")
        return times["ready"] - times["first"]

    def new_pods(self, dep: dict[str, Any], first: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods the scale-up added."""
        new = [p for p in self.pods(dep) if p["metadata"]["name"] != first["metadata"]["name"]]
        if len(new) != SCALE_TO - 1:
            raise StackError(f"expected {SCALE_TO - 1} new pods, found {len(new)}")
        return new

    def replicaset(self, dep: dict[str, Any]) -> dict[str, Any]:
        """The Deployment's one ReplicaSet."""
        uid = dep["metadata"]["uid"]
        owned = [
            rs
            for rs in self._items("replicasets", self.selector(dep))
            if any(o["uid"] == uid for o in rs["metadata"].get("ownerReferences") or [])
        ]
        if len(owned) != 1:
            raise StackError(f"expected one ReplicaSet of {dep['metadata']['name']}: {owned}")
        return owned[0]

    def delete(self, kind: str, name: str, dep: dict[str, Any]) -> None:
        """Delete `kind/name`, then (once no ReplicaSet would replace them) its pods at once."""
        selector = self.selector(dep)
        self.kube.run("delete", kind, name, "-n", self.ns, "--wait=false")
        mlstack.wait_for(
            f"the ReplicaSets of {name} to go", lambda: not self._items("rs", selector), 120
        )
        self.kube.run(
            "delete", "pods", "-n", self.ns, "-l", selector, "--grace-period=0", "--force",
            check=False,
        )  # fmt: skip
        mlstack.wait_for(
            f"the pods of {name} to go", lambda: not self._items("pods", selector), 120
        )

    def finer_data(self) -> str:
        """Which of this namespace's timestamps carry fractions of a second (checked, so the
        printout does not claim precision it lacks)."""
        import json

        raw = self.kube.run("get", "events.events.k8s.io", "-n", self.ns, "-o", "json").stdout
        fine = sorted(
            {
                f"{e.get('reason')} ({e.get('reportingController') or '?'})"
                for e in json.loads(raw)["items"]
                if "." in (e.get("eventTime") or "")
            }
        )
        pods = self.kube.run("get", "pods", "-A", "-o", "json").stdout
        whole = "." not in "".join(
            str(c.get("lastTransitionTime"))
            for p in json.loads(pods)["items"]
            for c in (p.get("status") or {}).get("conditions") or []
        )
        conds = "whole seconds" if whole else "fractions seen"
        if not fine:
            return f"none: pod conditions in {conds}; no event carries a sub-second eventTime"
        return (
            f"pod conditions and startedAt: {conds}; events.k8s.io eventTime (microseconds) only "
            f"for {', '.join(fine)}: not a stage boundary used here, so not used"
        )


def probes(template: dict[str, Any]) -> str:
    """The pod's probes and resources, which bound how soon the kubelet reports Ready."""
    (container,) = template["spec"]["containers"]
    parts = [f"image {container['image']}"]
    for kind in ("startupProbe", "readinessProbe"):
        p = container.get(kind)
        if p:
            parts.append(
                f"{kind} every {p.get('periodSeconds', 10)} s "
                f"(initial delay {p.get('initialDelaySeconds', 0)} s)"
            )
    req = (container.get("resources") or {}).get("requests") or {}
    parts.append("requests " + ", ".join(f"{k} {v}" for k, v in req.items()))
    return "; ".join(parts)


def image_ids() -> str:
    """Which builds of the images were measured (ID and age; `make images` builds them)."""
    from devcluster.images import engine

    parts = []
    for image in IMAGES[:2]:
        got = engine.docker(
            "image", "inspect", "--format", "{{.Id}} {{.Created}}", image, check=False, capture=True
        ).stdout.split()
        if len(got) == 2:
            parts.append(f"{image} {got[0].removeprefix('sha256:')[:12]} built {got[1][:19]}Z")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the rounds; write the results. Exit 1 when a round failed."""
    args = _parse_args(argv)
    load_before = note_load()
    namespace = f"bench-startup-{uuid.uuid4().hex[:6]}"
    rounds: dict[str, list[dict[str, Any]]] = {"ours": [], "floor": []}
    failures: list[str] = []
    with node_cluster() as (kubeconfig, state_dir, how):
        bench = Bench(kubeconfig, namespace)
        try:
            published = bench.install(state_dir)
            bench.warm_up()
            for r in range(1, args.rounds + 1):
                order = ["ours", "floor"] if r % 2 else ["floor", "ours"]
                for who in order:
                    name = f"{'iris' if who == 'ours' else 'plain'}-r{r}"
                    say(f"round {r}/{args.rounds}: {who} ({name})")
                    try:
                        got = bench.ours(name) if who == "ours" else bench.floor(name)
                    except (StackError, AssertionError, client.ApiException) as exc:
                        failures.append(f"{who} round {r}: {exc}")
                        say(f"FAILED {failures[-1]}")
                        got = None
                    dep = bench.kube.get("deployment", name, namespace)
                    if dep is not None:
                        bench.delete("mlm" if who == "ours" else "deployment", name, dep)
                    if got is not None:
                        rounds[who].append(got)
                        say(
                            f"  apply -> Ready seen {got['seen']['apply']:.2f} s, "
                            f"scale -> {SCALE_TO} Ready seen {got['seen']['scale']:.2f} s; "
                            f"API: {got['apply']}, {got['scale']}"
                        )
            finer = bench.finer_data()
            say(f"memory: one MLModel with {SCALE_TO} replicas")
            memory: list[dict[str, Any]] = []
            try:
                memory = bench.memory("iris-memory")
            except (StackError, podmem.PodMemoryError, client.ApiException) as exc:
                failures.append(f"memory: {exc}")
                say(f"FAILED {failures[-1]}")
        finally:
            bench.kube.run("delete", "namespace", namespace, "--wait=true", check=False)
            bench.api.close()  # type: ignore[no-untyped-call]
    load_after = os.getloadavg()
    result = build_result(args, how, published, bench.template, finer, rounds)
    result |= {
        "memory": memory,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
        "failures": failures,
    }
    text = tl.render(result)
    print(f"\n{text}", end="")
    tl.write(result, text, args.out)
    print(f"\nwrote {args.out} and {args.out.with_suffix('.txt')}")
    return 1 if failures else 0


def build_result(
    args: argparse.Namespace,
    how: str,
    published: dict[str, Any],
    template: dict[str, Any],
    finer: str,
    rounds: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """The figures: per side the stats over rounds, every round, the ratios."""
    sides = {
        who: {
            "apply": tl.summarize([r["apply"] for r in runs]),
            "scale": tl.summarize([r["scale"] for r in runs]),
            "seen": {k: tl.stats([r["seen"][k] for r in runs]) for k in ("apply", "scale")},
            "server": {k: tl.stats([r["server"][k] for r in runs]) for k in ("apply", "scale")},
            "rounds": runs,
        }
        for who, runs in rounds.items()
    }
    onnx = published["files"]["onnx"]
    result: dict[str, Any] = {
        "what": "on devcluster's real node: apply (1 replica) -> Ready and scale 1 -> "
        f"{SCALE_TO} -> all Ready, an MLModel (operator) vs a plain Deployment (the floor)",
        "rounds": args.rounds,
        "scale_to": SCALE_TO,
        "poll_ms": POLL_S * 1000,
        "machine": machine(),
        "cluster": how,
        "images": image_ids(),
        "model": f"{published['estimator']} on iris, served from model.onnx "
        f"({onnx['size'] / 1024:.0f} KiB, sha256 {onnx['sha256'][:12]}…) fetched from the "
        "in-cluster S3 store at start-up",
        "ours_what": "MLModel, spec.model.format onnx pinned to the ONNX digest, replicas 1; "
        "the operator renders Deployment, Service, PDB; scaled with the MLModel's /scale",
        "floor_what": "a plain Deployment with the operator's pod template (same image, env, "
        "probes, resources), no owner, no Service; scaled with its /scale",
        "pod": probes(template) if template else "-",
        "finer_data": finer,
        "ours": sides["ours"],
        "floor": sides["floor"],
    }
    result["ratios"] = tl.ratios(result)
    result["where"] = tl.where(sides["ours"], sides["floor"])
    return result


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.startup.node", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
