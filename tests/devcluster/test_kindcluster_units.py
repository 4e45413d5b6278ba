"""The pure parts of devcluster.kube.kindcluster: the nodes it reads, the CNI config it writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devcluster.kube import kindcluster, kindnode
from devcluster.kube.kindcluster import Node, cni_config, nodes_from


def test_nodes_are_read_with_their_internal_address_and_pod_cidr_and_others_skipped() -> None:
    listing = {
        "items": [
            {
                "metadata": {"name": "k-control-plane"},
                "spec": {"podCIDR": "10.244.0.0/24"},
                "status": {
                    "addresses": [
                        {"type": "Hostname", "address": "k-control-plane"},
                        {"type": "InternalIP", "address": "10.89.0.10"},
                    ]
                },
            },
            {  # no pod CIDR allocated yet: no route can be made for it
                "metadata": {"name": "k-worker"},
                "spec": {},
                "status": {"addresses": [{"type": "InternalIP", "address": "10.89.0.2"}]},
            },
        ]
    }
    assert nodes_from(listing) == [Node("k-control-plane", "10.89.0.10", "10.244.0.0/24")]


def test_the_node_network_is_a_bridge_on_its_pod_cidr_without_masquerade() -> None:
    conf = json.loads(cni_config("10.244.1.0/24"))
    bridge, portmap = conf["plugins"]
    assert bridge["type"] == "bridge" and bridge["ipMasq"] is False and bridge["isGateway"]
    assert bridge["ipam"]["type"] == "host-local"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    assert portmap["type"] == "portmap"


def test_kind_runs_with_the_callers_environment_plus_the_engine_and_the_shim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside kind_environment, HOME and PATH are the caller's (PATH behind the shim dir), and
    DOCKER_HOST is the engine of that HOME's cache: worked out from an emptied environment,
    HOME fell back to the passwd entry, and kind used another engine than the tests."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("MLMODEL_CACHE", raising=False)
    monkeypatch.delenv("MLMODEL_CACHE_DIR", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with kindcluster.kind_environment():
        env = dict(os.environ)
    assert env["HOME"] == str(tmp_path)
    assert env["PATH"] == f"{kindnode.shim_dir()}{os.pathsep}/usr/bin:/bin"
    assert env["DOCKER_HOST"].startswith(f"unix://{tmp_path}/")
    assert os.environ["HOME"] == str(tmp_path)  # restored afterwards
