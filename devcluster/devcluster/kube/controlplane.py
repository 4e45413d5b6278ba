"""``up``, ``down`` and ``status`` of a devcluster living in one state directory."""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devcluster import config
from devcluster.kube import build, certs, components, fakenodes, health, hostnet, node, procs, state
from devcluster.kube.certs import ClusterPki
from devcluster.kube.state import Layout, State
from devcluster.waiting import NotYet, WaitTimeout, wait_until

READY_TIMEOUT = 120.0
PORT_NAMES = ("etcd", "etcd-peer", "apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ClusterError(RuntimeError):
    """up/down failed; the message says which component and shows its last log lines."""


class AlreadyUpError(ClusterError):
    """A cluster (or part of one) already runs from this state directory."""


@dataclass(frozen=True)
class UpOptions:
    """What ``up`` starts."""

    fake_nodes: int = 0
    node: bool = False
    timeout: float = READY_TIMEOUT


def is_running(layout: Layout) -> bool:
    """Whether any process recorded in this state directory still runs."""
    recorded = state.load(layout)
    return recorded is not None and any(procs.is_alive(p) for p in recorded.procs)


def up(layout: Layout, options: UpOptions, log: Callable[[str], None] = print) -> State:
    """Start a cluster; idempotent when the same cluster is fully up, refused when partly up."""
    with state.locked(layout):
        recorded = state.load(layout)
        if recorded is not None and recorded.procs:
            alive = [p for p in recorded.procs if procs.is_alive(p)]
            if alive and len(alive) == len(recorded.procs) and recorded.phase == "up":
                if recorded.fake_nodes == options.fake_nodes and recorded.node == options.node:
                    log(f"devcluster is already up ({layout.root})")
                    return recorded
                raise AlreadyUpError(
                    f"a devcluster with other options is up in {layout.root}: run down first"
                )
            if alive:
                raise AlreadyUpError(
                    f"a half-started devcluster runs in {layout.root} "
                    f"({', '.join(p.name for p in alive)}): run down first"
                )
        _check_binaries(options)
        _fresh_directory(layout)
        current = State(fake_nodes=options.fake_nodes, node=options.node)
        try:
            _start_all(layout, current, options, log)
        except BaseException as exc:
            _stop_all(layout, current)
            if isinstance(exc, health.NotReadyError):
                raise ClusterError(_failure_message(exc)) from exc
            if isinstance(exc, Exception):
                raise ClusterError(f"devcluster up failed: {exc}") from exc
            raise
        current.phase = "up"
        state.save(layout, current)
        return current


def up_with_retry(
    layout: Layout, options: UpOptions, log: Callable[[str], None] = print, attempts: int = 2
) -> State:
    """:func:`up`, tried again when a free port was taken by someone else before it was used."""
    for attempt in range(1, attempts + 1):
        try:
            return up(layout, options, log)
        except ClusterError as exc:
            if attempt == attempts or "address already in use" not in str(exc):
                raise
            log(f"devcluster up: a port was taken meanwhile, starting again ({exc})")
    raise AssertionError("unreachable")


def up_when_node_free(layout: Layout, wait_s: float, log: Callable[[str], None] = print) -> State:
    """Start a cluster with the real node, waiting (at most ``wait_s``) while another
    devcluster holds this machine's node (its owner stops it when done)."""
    taken: list[ClusterError] = []

    def start() -> State | NotYet:
        try:
            return up_with_retry(layout, UpOptions(node=True), log)
        except ClusterError as exc:
            if "a devcluster node already runs" not in str(exc):
                raise
            taken[:] = [exc]
            return NotYet(str(exc))

    try:
        return wait_until("this machine's node to be free", start, wait_s, 2.0)
    except WaitTimeout:
        raise taken[-1] from None


def _check_binaries(options: UpOptions) -> None:
    names = config.CONTROL_PLANE_BINARIES + (config.NODE_BINARIES if options.node else ())
    missing = build.missing_binaries(names)
    if missing:
        target = "devcluster-build-node" if options.node else "devcluster-build"
        raise ClusterError(
            f"not built yet: {', '.join(missing)} (in {config.bin_dir()}); run `make {target}`"
        )


MARKER = ".devcluster"


def _fresh_directory(layout: Layout) -> None:
    """Wipe what a previous (stopped) cluster left, keeping the lock file.

    Only a directory that devcluster made (it has the marker file) or an empty one is wiped.
    """
    entries = {child.name for child in layout.root.iterdir()} - {layout.lock_file.name}
    if entries and MARKER not in entries:
        raise ClusterError(
            f"{layout.root} is not empty and was not made by devcluster: choose another directory"
        )
    hostnet.unmount_all(str(layout.root))
    if hostnet.mounts_under(str(layout.root)):
        raise ClusterError(
            f"{layout.root} still has mounts: {hostnet.mounts_under(str(layout.root))}"
        )
    for child in layout.root.iterdir():
        if child == layout.lock_file:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    for d in (layout.pki, layout.logs, layout.root / "kubeconfigs", layout.root / "data"):
        d.mkdir(parents=True)
    (layout.root / MARKER).write_text("made by devcluster; `python -m devcluster up` wipes it\n")


def _failure_message(exc: health.NotReadyError) -> str:
    lines = procs.tail(exc.log, 25) if exc.log else ""
    message = f"devcluster up failed: {exc.component}: {exc}"
    if lines:
        message += f"\n--- last lines of {exc.log} ---\n{lines}"
    return message


def _start_all(
    layout: Layout, current: State, options: UpOptions, log: Callable[[str], None]
) -> None:
    started = time.monotonic()
    names = PORT_NAMES + (node.NODE_PORT_NAMES if options.node else ())
    current.ports = dict(zip(names, components.free_ports(len(names)), strict=True))
    host = _api_host(options)
    if options.node:
        node.claim_host(layout, lambda stale: down(stale, log=lambda _: None))
        current.extra["host"] = {}
        state.save(layout, current)
        extra_routes = (components.KWOK_POD_CIDR,) if options.fake_nodes else ()
        current.extra["host"] = hostnet.prepare(extra_routes)
        state.save(layout, current)
    pki = certs.make_cluster_pki(layout, extra_ips=(host,) if options.node else ())
    _write_kubeconfigs(layout, pki, host, current.ports["apiserver"])
    _start_etcd(layout, current, options.timeout)
    _start_apiserver(layout, pki, current, options.timeout, host)
    kwok = _spawn_kwok(layout, current, options) if options.fake_nodes else None
    _start_controllers(layout, pki, current, options.timeout)
    if options.node:
        server = f"https://{host}:{current.ports['apiserver']}"

        def spawn(name: str, argv: list[str]) -> procs.Proc:
            return _spawn(layout, current, name, argv)

        node.start(layout, pki, current, spawn, server, options.timeout)
    if kwok is not None:
        fakenodes.wait_ready(layout.kubeconfig, options.fake_nodes, options.timeout, kwok)
    manager = next(p for p in current.procs if p.name == "kube-controller-manager")
    fakenodes.wait_default_service_account(layout.kubeconfig, options.timeout, manager)
    log(
        f"devcluster up in {time.monotonic() - started:.1f}s; export KUBECONFIG={layout.kubeconfig}"
    )


def _api_host(options: UpOptions) -> str:
    """Where the API server listens: loopback, or the node IP (on lo) that pods can reach too."""
    return hostnet.NODE_IP if options.node else components.LOOPBACK


def _write_kubeconfigs(layout: Layout, pki: ClusterPki, host: str, port: int) -> None:
    server = f"https://{host}:{port}"
    certs.write_kubeconfig(layout.kubeconfig, server, pki.ca.cert, pki.clients["admin"], "admin")
    for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
        path = layout.component_kubeconfig(name)
        certs.write_kubeconfig(path, server, pki.ca.cert, pki.clients[name], name)


def extra_args(name: str) -> list[str]:
    """Extra flags for one component from ``DEVCLUSTER_EXTRA_ARGS_<NAME>`` (e.g. feature gates).

    NAME is the component in upper case with ``_`` for ``-``: ``KUBE_APISERVER``, ``ETCD``, ...
    """
    return shlex.split(
        os.environ.get(f"DEVCLUSTER_EXTRA_ARGS_{name.upper().replace('-', '_')}", "")
    )


def _spawn(layout: Layout, current: State, name: str, argv: list[str]) -> procs.Proc:
    proc = procs.spawn(name, [*argv, *extra_args(name)], layout.logs)
    current.procs.append(proc)
    state.save(layout, current)  # recorded before anything waits on it
    return proc


def _start_etcd(layout: Layout, current: State, timeout: float) -> None:
    layout.data("etcd").parent.mkdir(parents=True, exist_ok=True)
    proc = _spawn(layout, current, "etcd", components.etcd(layout, current.ports))
    url = f"http://{components.LOOPBACK}:{current.ports['etcd']}/health"
    health.wait_for("etcd", f"{url} to answer 200", health.http_ok(url), timeout=timeout, proc=proc)


def _start_apiserver(
    layout: Layout, pki: ClusterPki, current: State, timeout: float, host: str
) -> None:
    argv = components.kube_apiserver(layout, pki, current.ports, advertise=host)
    proc = _spawn(layout, current, "kube-apiserver", argv)
    url = f"https://{host}:{current.ports['apiserver']}/readyz"
    admin = pki.clients["admin"]
    check = health.http_ok(url, ca=pki.ca.cert, cert=(admin.cert, admin.key))
    health.wait_for("kube-apiserver", f"{url} to answer 200", check, timeout=timeout, proc=proc)


def _start_controllers(layout: Layout, pki: ClusterPki, current: State, timeout: float) -> None:
    argvs = {
        "kube-controller-manager": components.kube_controller_manager(layout, pki, current.ports),
        "kube-scheduler": components.kube_scheduler(layout, current.ports),
    }
    started = {name: _spawn(layout, current, name, argv) for name, argv in argvs.items()}
    for name, proc in started.items():
        url = f"https://{components.LOOPBACK}:{current.ports[name]}/healthz"
        health.wait_for(
            name, f"{url} to answer 200", health.http_ok(url), timeout=timeout, proc=proc
        )


def _spawn_kwok(layout: Layout, current: State, options: UpOptions) -> procs.Proc:
    """Start kwok and create its Node objects (readiness is awaited later, in parallel)."""
    argv = components.kwok(layout, current.ports, build.kwok_stages())
    proc = _spawn(layout, current, "kwok", argv)
    fakenodes.create(layout.kubeconfig, options.fake_nodes)
    return proc


def down(layout: Layout, log: Callable[[str], None] = print) -> list[str]:
    """Stop exactly the processes ``up`` recorded (newest first); returns the names stopped."""
    if not layout.root.exists():
        return []
    with state.locked(layout):
        recorded = state.load(layout)
        if recorded is None:
            return []
        stopped = _stop_all(layout, recorded)
        log(f"devcluster down: stopped {', '.join(stopped) or 'nothing (no process was running)'}")
        return stopped


def _stop_all(layout: Layout, current: State) -> list[str]:
    stopped = []
    # "host" is recorded only once this cluster has claimed the machine's node: a start that
    # was refused the node must not tear down the node another cluster is running.
    if current.node and "host" in current.extra:
        stopped = node.stop(layout, current)
        current.extra.pop("host", None)
    stopped += [p.name for p in reversed(current.procs) if procs.stop(p)]
    current.procs = [p for p in current.procs if procs.is_alive(p)]
    current.phase = "down" if not current.procs else "stopping"
    if layout.state_file.parent.exists():
        state.save(layout, current)
    if current.procs:
        names = ", ".join(p.name for p in current.procs)
        raise ClusterError(f"could not stop {names}")
    return stopped


RESTARTABLE = ("etcd", "kube-apiserver")


def restart(
    layout: Layout,
    names: tuple[str, ...] = RESTARTABLE,
    timeout: float = READY_TIMEOUT,
    log: Callable[[str], None] = print,
    *,
    while_stopped: Callable[[], None] | None = None,
) -> None:
    """Stop ``names`` (etcd and/or kube-apiserver) and start them again with the same flags.

    etcd keeps its data directory, so every object survives; clients see the API server go
    away and come back on the same address. The API server is stopped first and started last;
    ``while_stopped`` runs when all of ``names`` are down (e.g. :func:`compact_etcd`).
    """
    unknown = set(names) - set(RESTARTABLE)
    if unknown:
        raise ClusterError(f"cannot restart {', '.join(sorted(unknown))}: only {RESTARTABLE}")
    with state.locked(layout):
        current = state.load(layout)
        if current is None or current.phase != "up":
            raise ClusterError(f"no running devcluster in {layout.root}")
        ordered = [n for n in RESTARTABLE if n in names]
        old = {p.name: p for p in current.procs if p.name in ordered}
        for name in reversed(ordered):
            procs.stop(old[name])
        if while_stopped is not None:
            while_stopped()
        for name in ordered:
            proc = procs.spawn(name, list(old[name].argv), layout.logs)
            current.procs = [proc if p.name == name else p for p in current.procs]
            state.save(layout, current)
            _wait_restarted(layout, current, proc, timeout)
    log(f"devcluster: restarted {', '.join(ordered)}")


def compact_etcd(layout: Layout) -> int:
    """Write a marker key, then compact etcd's history up to it; returns that revision.

    What a real cluster's API server does every 5 minutes (``--etcd-compaction-interval``),
    now: a watch resumed from any earlier resourceVersion gets 410 Gone, whether the API
    server answers it from its watch cache or from etcd. The marker guarantees the revision
    moved past every event a client could have seen, so the 410 is certain.
    """
    current = state.load(layout)
    if current is None or "etcd" not in current.ports:
        raise ClusterError(f"no running devcluster in {layout.root}")
    gateway = f"http://{components.LOOPBACK}:{current.ports['etcd']}/v3/kv"
    marker = base64.b64encode(b"/devcluster/compaction-marker").decode()
    put = health.post_json(f"{gateway}/put", {"key": marker, "value": marker})
    revision = int(put["header"]["revision"])
    health.post_json(f"{gateway}/compaction", {"revision": str(revision), "physical": True})
    return revision


def _wait_restarted(layout: Layout, current: State, proc: procs.Proc, timeout: float) -> None:
    if proc.name == "etcd":
        url = f"http://{components.LOOPBACK}:{current.ports['etcd']}/health"
    else:
        url = f"{apiserver_url(layout)}/readyz"
    try:
        health.wait_for(
            proc.name, f"{url} to answer 200", health.http_ok(url), timeout=timeout, proc=proc
        )
    except health.NotReadyError as exc:
        raise ClusterError(_failure_message(exc)) from exc


def status(layout: Layout) -> dict[str, object]:
    """Phase, kubeconfig and each recorded process with whether it still runs."""
    recorded = state.load(layout)
    if recorded is None:
        return {"phase": "absent", "dir": str(layout.root), "processes": {}}
    alive = {f"{p.name} (pid {p.pid})": procs.is_alive(p) for p in recorded.procs}
    phase = recorded.phase
    if phase == "up" and not all(alive.values()):
        phase = "degraded"
    return {
        "phase": phase,
        "dir": str(layout.root),
        "kubeconfig": str(layout.kubeconfig),
        "ports": recorded.ports,
        "fake_nodes": recorded.fake_nodes,
        "node": recorded.node,
        "processes": alive,
    }


def apiserver_url(layout: Layout) -> str:
    """The API server's URL of a running cluster."""
    recorded = state.load(layout)
    if recorded is None:
        raise ClusterError(f"no devcluster in {layout.root}")
    host = hostnet.NODE_IP if recorded.node else components.LOOPBACK
    return f"https://{host}:{recorded.ports['apiserver']}"


def layout_for(directory: Path | None = None) -> Layout:
    """The layout of ``directory`` (default: the directory ``python -m devcluster`` manages)."""
    return Layout(directory or config.default_state_dir())
