"""devcluster pieces that need no cluster: metrics parsing, process records, host rules."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

import pytest

from devcluster import metrics
from devcluster.kube import procs, state
from devcluster.kube.controlplane import ClusterError, _fresh_directory, extra_args
from devcluster.waiting import WaitTimeout, wait_until

_LINE = (
    'apiserver_request_total{{code="{code}",group="{group}",resource="{res}",verb="{verb}"}} {n}'
)
METRICS = "\n".join(
    [
        "# HELP apiserver_request_total Counter of apiserver requests",
        "# TYPE apiserver_request_total counter",
        _LINE.format(code=201, group="", res="pods", verb="POST", n=4),
        _LINE.format(code=200, group="apps", res="deployments", verb="PATCH", n=2),
        _LINE.format(code=200, group="", res="pods", verb="LIST", n=9),
        _LINE.format(code=200, group="", res="pods", verb="APPLY", n=1),
    ]
)


def test_request_total_counts_write_verbs_only_by_default() -> None:
    assert metrics.request_total(METRICS) == 7


def test_request_total_filters_by_verb_and_resource() -> None:
    assert metrics.request_total(METRICS, verbs=["POST"], resource="pods") == 4
    assert metrics.request_total(METRICS, verbs=["list"]) == 9
    assert metrics.request_total(METRICS, group="apps") == 2


def test_stop_ends_the_recorded_process_and_a_stale_record_is_not_alive(tmp_path: Path) -> None:
    proc = procs.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path)
    assert procs.is_alive(proc)
    assert procs.stop(proc, grace=5)
    assert not procs.is_alive(proc)
    stale = procs.Proc("other", proc.pid, proc.start_ticks + 1, proc.argv, proc.log)
    assert not procs.stop(stale)  # a PID with another start time is never signalled


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ok', flush=True); time.sleep(60)"
    )
    proc = procs.spawn("stubborn", [sys.executable, "-c", code], tmp_path)
    log = Path(proc.log)
    with contextlib.suppress(WaitTimeout):  # best effort: stop() must end it either way
        wait_until("the child to ignore SIGTERM", lambda: "ok" in log.read_text(), 5, 0.05)
    assert procs.stop(proc, grace=0.5)
    assert not procs.is_alive(proc)


def test_a_foreign_non_empty_directory_is_never_wiped(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ClusterError, match="not made by devcluster"):
        _fresh_directory(state.Layout(tmp_path))
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_extra_args_come_from_the_component_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEVCLUSTER_EXTRA_ARGS_KUBE_APISERVER", "--v=4 --feature-gates='A=true'")
    assert extra_args("kube-apiserver") == ["--v=4", "--feature-gates=A=true"]
    assert extra_args("etcd") == []


def test_iptables_filter_drops_only_cluster_chains_and_jumps_to_them() -> None:
    from devcluster.kube.hostnet import _is_ours

    saved = [
        ":KUBE-SERVICES - [0:0]",
        ":CNI-HOSTPORT-DNAT - [0:0]",
        ":DEVCLUSTER-EGRESS - [0:0]",
        ":DOCKER-USER - [0:0]",
        ":FORWARD ACCEPT [0:0]",
        "-A FORWARD -j DEVCLUSTER-EGRESS",
        "-A OUTPUT -m comment --comment kubernetes -j KUBE-SERVICES",
        "-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X",
        "-A FORWARD -j DOCKER-USER",
        "-A INPUT -s 10.0.0.0/8 -j ACCEPT",
    ]
    kept = [line for line in saved if not _is_ours(line)]
    assert kept == [
        ":DOCKER-USER - [0:0]",
        ":FORWARD ACCEPT [0:0]",
        "-A FORWARD -j DOCKER-USER",
        "-A INPUT -s 10.0.0.0/8 -j ACCEPT",
    ]


def test_a_start_refused_the_node_leaves_the_running_node_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devcluster.kube import controlplane, node

    torn_down: list[str] = []
    monkeypatch.setattr(node, "stop", lambda layout, current: torn_down.append("node") or [])
    layout = state.Layout(tmp_path)
    refused = state.State(node=True)  # claim_host raised: no "host" recorded
    controlplane._stop_all(layout, refused)
    assert torn_down == []
    claimed = state.State(node=True, extra={"host": {}})
    controlplane._stop_all(layout, claimed)
    assert torn_down == ["node"]


def test_component_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    # A port in the ephemeral range can become an outgoing connection's source port while its
    # component restarts; below the range only an explicit bind can take it.
    from devcluster.kube import components

    low = components.ephemeral_low()
    ports = components.free_ports(6)
    assert len(set(ports)) == 6
    assert all(low - components.PORT_SPAN <= port < low for port in ports), (low, ports)
    for port in ports:
        with socket.socket() as s:
            s.bind((components.LOOPBACK, port))  # free right now
