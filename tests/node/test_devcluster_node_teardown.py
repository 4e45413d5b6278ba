"""`down` of a node cluster leaves the host as it found it: no process, mount, interface,
network namespace, iptables rule, route, cgroup or changed sysctl of the cluster remains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import config
from devcluster.kube import hostnet, node
from devcluster.waiting import NotYet, WaitTimeout, wait_until

pytestmark = pytest.mark.node


def devcluster(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI on ``state_dir``."""
    argv = [sys.executable, "-m", "devcluster", "--dir", str(state_dir), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def _out(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True).stdout


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def host_snapshot(state_dir: Path) -> dict[str, object]:
    """Everything a node cluster may touch on the host."""
    rules = [
        line
        for save in ("iptables-save", "ip6tables-save")
        for line in _out(save).splitlines()
        if not line.startswith("#")
    ]
    return {
        "processes": _processes_mentioning(str(state_dir)),
        "mounts": hostnet.mounts_under(str(state_dir), str(node.KUBELET_ROOT.parent)),
        "kubelet root": node.KUBELET_ROOT.parent.exists(),
        "links": sorted(
            line.split(":")[1].strip() for line in _out("ip", "-o", "link").splitlines()
        ),
        "lo addresses": _out("ip", "-o", "addr", "show", "dev", "lo"),
        "routes": _out("ip", "route", "show", "table", "main"),
        "iptables": rules,
        "nft tables": hostnet.nft_tables(),
        "netns": sorted(p.name for p in hostnet.NETNS_DIR.glob("*"))
        if hostnet.NETNS_DIR.exists()
        else None,
        "cgroups": sorted(str(p) for p in hostnet.CGROUP_ROOT.glob("*/kubepods*")),
        "sysctls": hostnet.read_sysctls(),
        "log dirs": [str(d) for d in hostnet.LOG_DIRS if d.exists()],
    }


PAUSE_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "sleeper", "labels": {"app": "sleeper"}},
    "spec": {"containers": [{"name": "p", "image": "devcluster.local/pause:3.10"}]},
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "sleeper"},
    "spec": {"selector": {"app": "sleeper"}, "ports": [{"port": 80}]},
}


def _kubectl(state_dir: Path, *args: str, input: str | None = None) -> str:
    argv = [str(config.binary("kubectl")), f"--kubeconfig={state_dir / 'kubeconfig'}", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, input=input)
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def _wait_for_kube_proxy_rules(timeout: float) -> None:
    def rules() -> bool:
        return "KUBE-SVC-" in _out("iptables-save", "-t", "nat")

    try:
        wait_until("kube-proxy's KUBE-SVC- rules", rules, timeout, 0.5)
    except WaitTimeout:
        pytest.fail("kube-proxy wrote no KUBE-SVC- rule for the sleeper Service")


def _wait_until_no_node_cluster_runs(timeout: float = 480.0) -> None:
    """Another session's node cluster (one per machine) must be gone before the baseline."""

    def gone() -> bool | NotYet:
        if not node.OWNER_FILE.exists():
            return True
        owner = Path(json.loads(node.OWNER_FILE.read_text()).get("dir", ""))
        return NotYet(str(owner)) if node.owner_running(owner) else True

    try:
        wait_until("the other node cluster to stop", gone, timeout, 2.0)
    except WaitTimeout as exc:
        pytest.fail(f"a node cluster from {exc.last} still runs after {timeout:.0f}s")


def test_down_leaves_no_process_mount_interface_rule_or_cgroup_behind(tmp_path: Path) -> None:
    # the machine-wide node lock keeps other test sessions' node clusters out until the
    # after-snapshot is taken
    with node.exclusive_node(480.0):
        _check_up_and_down(tmp_path / "dc")


def _check_up_and_down(state_dir: Path) -> None:
    _wait_until_no_node_cluster_runs()
    before = host_snapshot(state_dir)
    up = devcluster(state_dir, "up", "--node")
    try:
        assert up.returncode == 0, up.stderr
        _kubectl(state_dir, "apply", "-f", "-", input=json.dumps(PAUSE_POD))
        _kubectl(state_dir, "apply", "-f", "-", input=json.dumps(SERVICE))
        _kubectl(state_dir, "wait", "--for=condition=Ready", "--timeout=120s", "pod/sleeper")
        _wait_for_kube_proxy_rules(60)
        during = host_snapshot(state_dir)
        # the cluster really changed the host: a bridge, rules, a pod netns and cgroups
        assert hostnet.BRIDGE in during["links"]  # type: ignore[operator]
        assert during["cgroups"] != before["cgroups"]
        assert during["iptables"] != before["iptables"]
    finally:
        down = devcluster(state_dir, "down")
    assert down.returncode == 0, down.stderr
    after = host_snapshot(state_dir)
    for key, value in before.items():
        assert after[key] == value, f"{key} differ after down"
