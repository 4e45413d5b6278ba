"""One real node: containerd (private paths), kubelet, CNI bridge, kube-proxy, metrics-server.

In-cluster DNS is not provided: the project's pods need no names (in-cluster API clients use
the ``KUBERNETES_SERVICE_HOST`` environment the kubelet injects), and a DNS server would be one
more thing to build and run. Pods get a resolv.conf pointing at their own loopback, so a lookup
fails at once instead of leaving the machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import yaml

from devcluster import config
from devcluster.kube import health, hostnet, pause, pki, procs
from devcluster.kube.certs import ClusterPki
from devcluster.kube.state import Layout, State
from devcluster.waiting import WaitTimeout, wait_until

NODE_NAME = "devcluster-node"
KUBELET_ROOT = Path("/var/lib/devcluster-node/kubelet")
"""The kubelet's root dir: short and fixed (one node per machine), because the kubelet puts unix
sockets in it and a socket path must stay under 108 bytes, which a pytest tmp path can exceed."""
CNI_BIN_DIR = "/usr/lib/cni"
APT_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "conntrack": "conntrack",
    "iptables": "iptables",
    "nft": "nftables",
    "gcc": "gcc",
}
NODE_PORT_NAMES = (
    "kubelet",
    "kubelet-healthz",
    "kube-proxy-metrics",
    "kube-proxy-healthz",
    "metrics-server",
)


def ctd_dir(layout: Layout) -> Path:
    """containerd's private root, state and socket live here (short path: socket length)."""
    return layout.root / "ctd"


def ctd_socket(layout: Layout) -> Path:
    """containerd's gRPC socket."""
    return ctd_dir(layout) / "sock"


def pod_logs_dir(layout: Layout) -> Path:
    """Where the kubelet writes container logs (instead of /var/log/pods)."""
    return layout.data("pod-logs")


def make_node_pki(layout: Layout, cluster: ClusterPki) -> dict[str, pki.KeyPair]:
    """Node client/serving certs, kube-proxy and metrics-server certs, signed by the cluster CA."""
    d = layout.pki
    ca = cluster.ca
    return {
        "kubelet": pki.issue(
            ca, d, "kubelet", f"system:node:{NODE_NAME}", organizations=("system:nodes",)
        ),
        "kubelet-serving": pki.issue(
            ca,
            d,
            "kubelet-serving",
            NODE_NAME,
            client=False,
            server=True,
            dns_names=(NODE_NAME,),
            ip_addresses=(hostnet.NODE_IP,),
        ),
        "kube-proxy": pki.issue(ca, d, "kube-proxy", "system:kube-proxy"),
        "metrics-server": pki.issue(ca, d, "metrics-server", "system:metrics-server"),
        "metrics-server-serving": pki.issue(
            ca,
            d,
            "metrics-server-serving",
            "metrics-server",
            client=False,
            server=True,
            dns_names=("metrics-server.kube-system.svc",),
            ip_addresses=(hostnet.NODE_IP,),
        ),
    }


def containerd_config(layout: Layout) -> Path:
    """containerd 1.6 config: private paths, CRI with local pause image, runc with cgroupfs."""
    d = ctd_dir(layout)
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    text = f"""version = 2
root = "{d / "root"}"
state = "{d / "state"}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{ctd_socket(layout)}"

[ttrpc]
  address = "{d / "ttrpc.sock"}"

[debug]
  address = ""

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{pause.PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{layout.data("cni") / "net.d"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"
"""
    path = d / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def bridge_network(
    name: str, subnet: str, gateway: str | None = None, data_dir: str = ""
) -> dict[str, Any]:
    """A CNI conflist: one `bridge` (cni0) with `host-local` addresses from `subnet`, pods'
    default route via the bridge, no masquerade (nothing may leave the machine). Also kind's
    per-node pod network (kindcluster.install_pod_network)."""
    ipam_range = {"subnet": subnet, **({"gateway": gateway} if gateway else {})}
    ipam = {
        "type": "host-local",
        **({"dataDir": data_dir} if data_dir else {}),
        "ranges": [[ipam_range]],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    bridge = {
        "type": "bridge",
        "bridge": hostnet.BRIDGE,
        "isGateway": True,
        "ipMasq": False,
        "hairpinMode": True,
        "ipam": ipam,
    }
    return {"cniVersion": "1.0.0", "name": name, "plugins": [bridge]}


def cni_config(layout: Layout) -> Path:
    """One bridge network for pods (no masquerade: nothing may leave the machine)."""
    conf = bridge_network(
        "devcluster",
        hostnet.POD_CIDR,
        gateway=hostnet.POD_GATEWAY,
        data_dir=str(layout.data("cni") / "ipam"),
    )
    path = layout.data("cni") / "net.d" / "10-devcluster.conflist"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(conf, indent=2))
    return path


def kubelet_config(
    layout: Layout, cluster: ClusterPki, certs: dict[str, pki.KeyPair], ports: dict[str, int]
) -> Path:
    """KubeletConfiguration: cgroupfs on cgroup v1, private paths, webhook authn/authz."""
    resolv = layout.data("kubelet") / "resolv.conf"
    resolv.parent.mkdir(parents=True, exist_ok=True)
    resolv.write_text("nameserver 127.0.0.1\noptions ndots:1 attempts:1 timeout:1\n")
    doc: dict[str, Any] = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": hostnet.NODE_IP,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet-healthz"],
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(cluster.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(certs["kubelet-serving"].cert),
        "tlsPrivateKeyFile": str(certs["kubelet-serving"].key),
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{ctd_socket(layout)}",
        "podLogsDir": str(pod_logs_dir(layout)),
        "volumePluginDir": str(layout.data("kubelet") / "volume-plugins"),
        "resolvConf": str(resolv),
        "clusterDomain": "cluster.local",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "serializeImagePulls": False,
        "maxPods": 110,
        "protectKernelDefaults": False,
        "shutdownGracePeriod": "0s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
    }
    path = layout.data("kubelet") / "config.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def containerd_argv(layout: Layout) -> list[str]:
    """containerd with the private config."""
    return [
        shutil.which("containerd") or "containerd",
        "--config",
        str(containerd_config(layout)),
        "--log-level",
        "warn",
    ]


def kubelet_argv(layout: Layout, config_file: Path) -> list[str]:
    """kubelet registering NODE_NAME with the node IP on lo."""
    return [
        str(config.binary("kubelet")),
        f"--config={config_file}",
        f"--kubeconfig={layout.component_kubeconfig('kubelet')}",
        f"--node-ip={hostnet.NODE_IP}",
        f"--hostname-override={NODE_NAME}",
        f"--root-dir={KUBELET_ROOT}",
        f"--cert-dir={layout.data('kubelet') / 'pki'}",
        "--v=1",
    ]


def kube_proxy_argv(layout: Layout, ports: dict[str, int]) -> list[str]:
    """kube-proxy in iptables mode that leaves host conntrack and route_localnet alone."""
    return [
        str(config.binary("kube-proxy")),
        f"--kubeconfig={layout.component_kubeconfig('kube-proxy')}",
        f"--hostname-override={NODE_NAME}",
        f"--cluster-cidr={hostnet.POD_CIDR}",
        "--proxy-mode=iptables",
        "--nodeport-addresses=primary",
        "--iptables-localhost-nodeports=false",
        "--conntrack-max-per-core=0",
        "--conntrack-min=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        f"--metrics-bind-address=127.0.0.1:{ports['kube-proxy-metrics']}",
        f"--healthz-bind-address=127.0.0.1:{ports['kube-proxy-healthz']}",
        "--v=1",
    ]


def metrics_server_argv(
    layout: Layout, cluster: ClusterPki, certs: dict[str, pki.KeyPair], ports: dict[str, int]
) -> list[str]:
    """metrics-server as a host process behind the aggregation layer."""
    kubeconfig = layout.component_kubeconfig("metrics-server")
    return [
        str(config.binary("metrics-server")),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={hostnet.NODE_IP}",
        f"--secure-port={ports['metrics-server']}",
        f"--tls-cert-file={certs['metrics-server-serving'].cert}",
        f"--tls-private-key-file={certs['metrics-server-serving'].key}",
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-use-node-status-port",
        f"--kubelet-certificate-authority={cluster.ca.cert}",
        "--metric-resolution=15s",
        "--v=1",
    ]


def metrics_server_manifests(cluster: ClusterPki, port: int) -> str:
    """RBAC, a selector-less Service + EndpointSlice to the host process, and the APIService."""
    import base64

    ca_bundle = base64.b64encode(cluster.ca.cert.read_bytes()).decode()
    user = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "User",
        "name": "system:metrics-server",
    }
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:metrics-server"},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {
                    "apiGroups": [""],
                    "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "system:aggregated-metrics-reader",
                "labels": {
                    "rbac.authorization.k8s.io/aggregate-to-admin": "true",
                    "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                    "rbac.authorization.k8s.io/aggregate-to-view": "true",
                },
            },
            "rules": [
                {
                    "apiGroups": ["metrics.k8s.io"],
                    "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:metrics-server"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:metrics-server",
            },
            "subjects": [user],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "metrics-server:system:auth-delegator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:auth-delegator",
            },
            "subjects": [user],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "metrics-server-auth-reader", "namespace": "kube-system"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": [user],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "spec": {
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "metrics-server-host",
                "namespace": "kube-system",
                "labels": {
                    "kubernetes.io/service-name": "metrics-server",
                    "endpointslice.kubernetes.io/managed-by": "devcluster",
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [hostnet.NODE_IP], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "caBundle": ca_bundle,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
            },
        },
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def ctr(
    layout: Layout, *args: str, input_file: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """ctr against this node's containerd, namespace k8s.io."""
    argv = ["ctr", "--address", str(ctd_socket(layout)), "--namespace", "k8s.io", *args]
    if input_file is None:
        proc = subprocess.run(argv, capture_output=True, text=True)
    else:
        with input_file.open("rb") as handle:
            raw = subprocess.run(argv, stdin=handle, capture_output=True)
        proc = subprocess.CompletedProcess(
            argv,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )
    if check and proc.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def containerd_ready(layout: Layout) -> bool:
    """True once containerd answers on its socket."""
    if not ctd_socket(layout).exists():
        return False
    return ctr(layout, "version", check=False).returncode == 0


def wait_containerd(layout: Layout, proc: procs.Proc, timeout: float) -> None:
    """Wait for containerd, then import the pause image into namespace k8s.io."""
    health.wait_for(
        "containerd",
        f"{ctd_socket(layout)} to answer",
        lambda: containerd_ready(layout),
        timeout=timeout,
        proc=proc,
    )
    ctr(layout, "images", "import", str(pause.pause_archive()))


def remove_all_containers(layout: Layout) -> None:
    """Kill and delete every task and container of this node's containerd (CRI namespace)."""
    if not containerd_ready(layout):
        return
    tasks = ctr(layout, "tasks", "ls", "-q", check=False).stdout.split()
    for task in tasks:
        ctr(layout, "tasks", "kill", "--signal", "SIGKILL", task, check=False)
    for task in tasks:
        ctr(layout, "tasks", "delete", "--force", task, check=False)
    for container in ctr(layout, "containers", "ls", "-q", check=False).stdout.split():
        ctr(layout, "containers", "delete", container, check=False)


def shim_processes(layout: Layout) -> list[int]:
    """PIDs of containerd shims started for this node (their command line names our socket)."""
    needle = str(ctd_socket(layout)).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and needle in cmdline:
            pids.append(int(entry.name))
    return pids


NODE_PROCS = ("kwok", "metrics-server", "kube-proxy", "kubelet", "containerd")
OWNER_FILE = Path("/run/devcluster-node.json")
Spawn = Callable[[str, list[str]], procs.Proc]


def claim_host(layout: Layout, clean_up_after: Callable[[Layout], object]) -> None:
    """Only one node cluster per machine (fixed node IP, bridge, iptables chains).

    A node cluster whose processes died (e.g. its test run was killed) is cleaned up first with
    `clean_up_after` (the control plane's `down`, passed in: node.py never imports the control
    plane, which starts the node)."""
    if OWNER_FILE.exists():
        owner = json.loads(OWNER_FILE.read_text()).get("dir", "")
        if owner != str(layout.root) and owner_running(Path(owner)):
            raise hostnet.HostError(f"a devcluster node already runs from {owner}: run down there")
        if owner != str(layout.root) and Path(owner, "state.json").exists():
            clean_up_after(Layout(Path(owner)))
    OWNER_FILE.write_text(json.dumps({"dir": str(layout.root)}))


def owner_running(root: Path) -> bool:
    """Whether the node cluster in ``root`` has a live process or is being started/stopped."""
    from devcluster.kube import state

    layout = Layout(root)
    recorded = state.load(layout)
    if recorded is not None and any(procs.is_alive(p) for p in recorded.procs):
        return True
    if not layout.lock_file.exists():
        return False
    try:
        with state.locked(layout):
            return False
    except state.ClusterBusyError:
        return True


def release_host(layout: Layout) -> None:
    """Drop the claim of :func:`claim_host` if it is ours."""
    if OWNER_FILE.exists() and json.loads(OWNER_FILE.read_text()).get("dir") == str(layout.root):
        OWNER_FILE.unlink()


def write_kubeconfigs(
    layout: Layout, cluster: ClusterPki, certs: dict[str, pki.KeyPair], server: str
) -> None:
    """Client kubeconfigs of kubelet, kube-proxy and metrics-server."""
    from devcluster.kube.certs import write_kubeconfig

    for name in ("kubelet", "kube-proxy", "metrics-server"):
        write_kubeconfig(
            layout.component_kubeconfig(name), server, cluster.ca.cert, certs[name], name
        )


def start(
    layout: Layout, cluster: ClusterPki, current: State, spawn: Spawn, server: str, timeout: float
) -> None:
    """Start containerd, kubelet, kube-proxy and metrics-server; wait for each to be ready."""
    certs = make_node_pki(layout, cluster)
    write_kubeconfigs(layout, cluster, certs, server)
    cni_config(layout)
    pod_logs_dir(layout).mkdir(parents=True, exist_ok=True)
    _fresh_kubelet_root()
    containerd = spawn("containerd", containerd_argv(layout))
    wait_containerd(layout, containerd, timeout)
    kubelet = spawn(
        "kubelet", kubelet_argv(layout, kubelet_config(layout, cluster, certs, current.ports))
    )
    from devcluster.kube import fakenodes

    fakenodes.wait_node_ready(layout.kubeconfig, NODE_NAME, timeout, kubelet)
    proxy = spawn("kube-proxy", kube_proxy_argv(layout, current.ports))
    url = f"http://127.0.0.1:{current.ports['kube-proxy-healthz']}/healthz"
    health.wait_for(
        "kube-proxy", f"{url} to answer 200", health.http_ok(url), timeout=timeout, proc=proxy
    )
    manifests = metrics_server_manifests(cluster, current.ports["metrics-server"])
    _kubectl_apply(layout, manifests)
    metrics = spawn("metrics-server", metrics_server_argv(layout, cluster, certs, current.ports))
    fakenodes.wait_apiservice(layout.kubeconfig, "v1beta1.metrics.k8s.io", timeout, metrics)


def _kubectl_apply(layout: Layout, manifests: str) -> None:
    argv = [str(config.binary("kubectl")), f"--kubeconfig={layout.kubeconfig}", "apply", "-f", "-"]
    proc = subprocess.run(argv, input=manifests, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl apply (metrics-server manifests) failed: {proc.stderr}")


def stop(layout: Layout, current: State) -> list[str]:
    """Stop the node's processes and undo every host change; returns the names stopped."""
    stopped = []
    by_name = {p.name: p for p in current.procs}
    for name in NODE_PROCS[:-1]:
        if name in by_name and procs.stop(by_name[name]):
            stopped.append(name)
    remove_all_containers(layout)
    if "containerd" in by_name and procs.stop(by_name["containerd"]):
        stopped.append("containerd")
    for pid in shim_processes(layout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    host = current.extra.get("host")
    if host:
        hostnet.kill_pod_processes(host.get("cgroups", []))
    hostnet.unmount_all(str(layout.root), str(KUBELET_ROOT))
    if host:
        hostnet.teardown(host, pod_logs_dir(layout))
    try:
        _remove_kubelet_root()
    finally:
        release_host(layout)
    return stopped


def docker_env() -> dict[str, str]:
    """Environment for the docker CLI: the project's private engine (started if it is down)."""
    try:
        from devcluster.images import engine
    except ImportError:
        return dict(os.environ)
    engine.start()  # a no-op when it already answers
    return engine.docker_env()


def load_image(layout: Layout, image: str) -> str:
    """Copy a locally built Docker image into the node's containerd; returns the stored name."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "image.tar"
        save = subprocess.run(
            ["docker", "save", "-o", str(archive), image],
            capture_output=True,
            text=True,
            env=docker_env(),
        )
        if save.returncode != 0:
            raise RuntimeError(f"docker save {image} failed: {save.stderr.strip()}")
        ctr(layout, "images", "import", str(archive))
    names = ctr(layout, "images", "ls", "-q").stdout.split()
    wanted = image if "/" in image.split(":")[0] else f"docker.io/library/{image}"
    if ":" not in wanted.rsplit("/", 1)[-1]:
        wanted += ":latest"
    if wanted not in names:
        raise RuntimeError(f"{image} was imported but containerd lists only: {', '.join(names)}")
    return wanted


def _remove_kubelet_root() -> None:
    """Delete the kubelet root, never through a mount (a hostPath volume would lose its files)."""
    base = KUBELET_ROOT.parent
    if not base.exists():
        return
    hostnet.unmount_all(str(base))
    left = hostnet.mounts_under(str(base))
    if left:
        raise hostnet.HostError(f"cannot remove {base}: still mounted: {', '.join(left)}")
    shutil.rmtree(base)


def _fresh_kubelet_root() -> None:
    _remove_kubelet_root()
    KUBELET_ROOT.mkdir(parents=True)


NODE_LOCK = Path("/run/devcluster-node.lock")


def _try_lock(handle: IO[str]) -> bool:
    """Take the exclusive lock on ``handle`` if it is free (never blocks)."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def exclusive_node(timeout: float) -> Iterator[None]:
    """Hold the machine-wide node lock (test sessions queue here for the one node)."""
    with NODE_LOCK.open("w") as handle:
        try:
            wait_until(f"the node lock {NODE_LOCK}", lambda: _try_lock(handle), timeout, 1.0)
        except WaitTimeout:
            raise hostnet.HostError(
                f"another session held {NODE_LOCK} for {timeout:.0f}s"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
