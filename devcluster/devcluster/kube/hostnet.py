"""Host changes a real node needs, each recorded so ``down`` undoes exactly it.

Network rules (see shared/CLUSTER-NOTES.md): every cluster address stays on this machine. The
node IP is a /32 on ``lo``; the Service CIDR (and, as a fallback, the pod CIDR) are routed via
``dev lo`` so a packet to a virtual IP never follows the default route; a FORWARD guard drops
anything pods send outside the pod network; pods get a resolv.conf pointing at their own
loopback, so no DNS query leaves the machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from devcluster.kube.certs import SERVICE_CIDR
from devcluster.waiting import NotYet, WaitTimeout, wait_until

NODE_IP = "10.87.0.1"
POD_CIDR = "10.88.0.0/16"
POD_GATEWAY = "10.88.0.1"
BRIDGE = "cni0"
GUARD_CHAIN = "DEVCLUSTER-EGRESS"
OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-", GUARD_CHAIN)
NETNS_DIR = Path("/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
LOG_DIRS = (CONTAINER_LOG_LINKS, Path("/var/log/pods"), NETNS_DIR)
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
)


class HostError(RuntimeError):
    """A host command failed."""


def run(*argv: str, check: bool = True, input: str | None = None) -> str:
    """Run a host command; its stdout (raises HostError naming the command on failure)."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise HostError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    """Current values of the sysctls the kubelet, kube-proxy or CNI may change."""
    values = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            values[name] = _sysctl_path(name).read_text().strip()
    return values


def restore_sysctls(values: dict[str, str]) -> None:
    """Write back recorded values that were changed."""
    for name, value in values.items():
        path = _sysctl_path(name)
        with contextlib.suppress(OSError):
            if path.read_text().strip() != value:
                path.write_text(value + "\n")


def nft_tables() -> list[str]:
    """Existing nftables tables as 'family name' (iptables here is the nf_tables backend)."""
    if shutil.which("nft") is None:
        return []
    out = run("nft", "list", "tables", check=False)
    return [line.removeprefix("table ").strip() for line in out.splitlines() if line.strip()]


def _has_address(ip: str) -> bool:
    return f" {ip}/32 " in run("ip", "-4", "addr", "show", "dev", "lo")


def _route_exists(cidr: str) -> bool:
    return bool(run("ip", "-4", "route", "show", cidr, "dev", "lo").strip())


def prepare(extra_lo_routes: tuple[str, ...] = ()) -> dict[str, Any]:
    """Record the host state, then add the node IP, routes and egress guard. Returns the record."""
    if os.geteuid() != 0:
        raise HostError("`devcluster up --node` needs root (network, mounts, cgroups)")
    record: dict[str, Any] = {
        "sysctls": read_sysctls(),
        "nft_tables": nft_tables(),
        "netns": sorted(p.name for p in NETNS_DIR.glob("*")) if NETNS_DIR.exists() else [],
        "bridge_existed": Path(f"/sys/class/net/{BRIDGE}").exists(),
        "cgroups": sorted(str(p) for p in CGROUP_ROOT.glob("*/kubepods*")),
        "log_dirs": [str(d) for d in LOG_DIRS if not d.exists()],
        "lo_ip_added": False,
        "routes_added": [],
    }
    if record["bridge_existed"]:
        raise HostError(
            f"a {BRIDGE} bridge already exists: another node cluster runs, or one was left "
            f"behind (`python -m devcluster --dir <its dir> down` cleans up after it)"
        )
    if not _has_address(NODE_IP):
        run("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
        record["lo_ip_added"] = True
    for cidr, metric in (
        (SERVICE_CIDR, "0"),
        (POD_CIDR, "1000"),
        *((c, "0") for c in extra_lo_routes),
    ):
        if not _route_exists(cidr):
            run("ip", "route", "add", cidr, "dev", "lo", "metric", metric)
            record["routes_added"].append([cidr, metric])
    _add_egress_guard()
    return record


def _add_egress_guard() -> None:
    run("iptables", "-N", GUARD_CHAIN, check=False)
    run("iptables", "-F", GUARD_CHAIN)
    run("iptables", "-A", GUARD_CHAIN, "-s", POD_CIDR, "-d", POD_CIDR, "-j", "RETURN")
    run("iptables", "-A", GUARD_CHAIN, "-s", POD_CIDR, "-j", "DROP")
    run("iptables", "-I", "FORWARD", "1", "-j", GUARD_CHAIN)


def _is_ours(line: str) -> bool:
    if line.startswith(":"):
        return line[1:].startswith(OUR_CHAIN_PREFIXES)
    if line.startswith("-A "):
        parts = line.split()
        if parts[1].startswith(OUR_CHAIN_PREFIXES):
            return True
        for flag in ("-j", "-g", "--jump", "--goto"):
            if flag in parts:
                target = parts[parts.index(flag) + 1]
                if target.startswith(OUR_CHAIN_PREFIXES):
                    return True
    return False


def remove_iptables_rules() -> None:
    """Remove every KUBE-/CNI-/DEVCLUSTER- chain and every rule that jumps to one (v4 and v6)."""
    for save, restore in (
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ):
        if shutil.which(save) is None:
            continue
        current = run(save, check=False)
        if not current.strip():
            continue
        kept = "\n".join(line for line in current.splitlines() if not _is_ours(line)) + "\n"
        run(restore, input=kept)


def delete_new_tables(before: list[str]) -> None:
    """Delete nftables tables that did not exist before ``up`` and hold no rule any more."""
    for table in nft_tables():
        if table in before:
            continue
        listing = run("nft", "list", "table", *table.split(), check=False)
        if table.endswith(" kube-proxy") or not _rules_only(listing).strip():
            run("nft", "delete", "table", *table.split(), check=False)


def _rules_only(listing: str) -> str:
    lines = []
    for line in listing.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("table ", "chain ", "type ", "}", "policy ")):
            continue
        lines.append(line)
    return "\n".join(lines)


def delete_new_netns(before: list[str]) -> None:
    """Delete network namespaces (cni-*) that appeared since ``up``."""
    if not NETNS_DIR.exists():
        return
    for ns in NETNS_DIR.glob("cni-*"):
        if ns.name not in before:
            run("ip", "netns", "delete", ns.name, check=False)


def mounts_under(*prefixes: str) -> list[str]:
    """Mount points under any of ``prefixes`` (deepest first)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(*prefixes: str) -> None:
    """Unmount everything under ``prefixes``, deepest first (lazily if busy)."""
    for point in mounts_under(*prefixes):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


def _cgroup_pids(top: Path) -> set[int]:
    pids: set[int] = set()
    for procs_file in top.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(line) for line in procs_file.read_text().split())
    return pids


def kill_pod_processes(before: list[str], timeout: float = 10.0) -> None:
    """SIGKILL whatever still runs in the cluster's kubepods cgroups (containers orphaned by a
    killed containerd or shim) and wait until they are gone."""
    tops = [t for t in CGROUP_ROOT.glob("*/kubepods*") if str(t) not in before and t.is_dir()]

    def none_left() -> bool | NotYet:
        pids = set().union(*(_cgroup_pids(t) for t in tops)) if tops else set()
        for pid in pids:  # what is left is killed again at every poll
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return NotYet(f"{len(pids)} processes left") if pids else True

    with contextlib.suppress(WaitTimeout):  # best effort: teardown goes on regardless
        wait_until("the pod processes to be gone", none_left, timeout)


def remove_new_cgroups(before: list[str]) -> None:
    """rmdir the kubepods cgroup trees (bottom-up) that did not exist before ``up``."""
    kill_pod_processes(before)
    for top in CGROUP_ROOT.glob("*/kubepods*"):
        if str(top) in before or not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(
            os.walk(top), key=lambda t: t[0].count("/"), reverse=True
        ):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def remove_container_log_links(pod_logs: Path) -> None:
    """Remove /var/log/containers symlinks that point into this cluster's pod logs."""
    if not CONTAINER_LOG_LINKS.is_dir():
        return
    for link in CONTAINER_LOG_LINKS.iterdir():
        with contextlib.suppress(OSError):
            if link.is_symlink() and str(os.readlink(link)).startswith(str(pod_logs)):
                link.unlink()


def teardown(record: dict[str, Any], pod_logs: Path) -> None:
    """Undo :func:`prepare` and what the node's components added (after they are stopped)."""
    kill_pod_processes(record.get("cgroups", []))
    delete_new_netns(record.get("netns", []))
    if not record.get("bridge_existed", True) and Path(f"/sys/class/net/{BRIDGE}").exists():
        run("ip", "link", "delete", BRIDGE, check=False)
    remove_iptables_rules()
    delete_new_tables(record.get("nft_tables", []))
    remove_new_cgroups(record.get("cgroups", []))
    remove_container_log_links(pod_logs)
    for created in record.get("log_dirs", []):  # /var/log/pods, /var/run/netns, ...
        with contextlib.suppress(OSError):
            os.rmdir(created)  # only when empty: never someone else's files
    for cidr, metric in record.get("routes_added", []):
        run("ip", "route", "del", cidr, "dev", "lo", "metric", str(metric), check=False)
    if record.get("lo_ip_added"):
        run("ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False)
    restore_sysctls(record.get("sysctls", {}))
