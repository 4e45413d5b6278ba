"""bench/startup/podmem.py reads a pod's memory where devcluster's kubelet (cgroupfs, cgroup v1)
puts it; here on a tree laid out the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.startup import podmem

UID = "0b5e1c3a-1111-2222-3333-444455556666"
MIB = 1024 * 1024


def cgroup_tree(root: Path) -> Path:
    pod = root / "kubepods" / "burstable" / f"pod{UID}"
    for container, procs in (("pause", "7\n"), ("server", "42\n43\n")):
        (pod / container).mkdir(parents=True)
        (pod / container / "cgroup.procs").write_text(procs)
    (pod / "cgroup.procs").write_text("")
    (pod / "memory.usage_in_bytes").write_text(f"{90 * MIB}\n")
    (pod / "memory.stat").write_text(
        f"cache {1 * MIB}\nrss 0\ntotal_cache {30 * MIB}\ntotal_rss {58 * MIB}\n"
        f"total_inactive_file {12 * MIB}\nhierarchical_memory_limit 9223372036854771712\n"
    )
    return pod


def fake_proc(root: Path) -> Path:
    for pid, rss_kib, pss_kib in ((7, 400, 100), (42, 115_000, 110_000), (43, 9_000, 8_000)):
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "status").write_text(f"Name:\tx\nVmRSS:\t{rss_kib} kB\nThreads:\t3\n")
        (root / str(pid) / "smaps_rollup").write_text(f"Rss: {rss_kib} kB\nPss: {pss_kib} kB\n")
    return root


def test_a_pod_s_charge_its_parts_and_its_biggest_process_s_rss(tmp_path: Path) -> None:
    root = tmp_path / "memory"
    cgroup_tree(root)
    got = podmem.pod_memory("iris-abc", UID, root, fake_proc(tmp_path / "proc"))
    assert got == podmem.PodMemory(
        pod="iris-abc",
        charged=90.0,
        anon=58.0,
        file=30.0,
        working_set=78.0,
        server_rss=115_000 / 1024,
        server_pss=110_000 / 1024,
    )


def test_a_pod_without_a_cgroup_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "memory" / "kubepods").mkdir(parents=True)
    with pytest.raises(podmem.PodMemoryError, match=f"pod{UID}"):
        podmem.pod_cgroup(UID, tmp_path / "memory")
