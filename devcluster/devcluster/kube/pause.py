"""The sandbox (pause) image, built locally: no registry is reachable.

Upstream's ``build/pause/linux/pause.c`` (from the pinned k8s.io/kubernetes module) is compiled
with ``gcc -static`` and packed as a one-layer docker-archive that ``ctr images import`` reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

from devcluster import config

PAUSE_IMAGE = "devcluster.local/pause:3.10"


def pause_source() -> Path:
    """pause.c from the Kubernetes module in the Go module cache."""
    module = config.k8s_cache_dir() / "gomodcache" / f"k8s.io/kubernetes@{config.KUBE_VERSION}"
    return module / "build" / "pause" / "linux" / "pause.c"


def _layer(binary: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size = len(binary)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(binary))
    return buf.getvalue()


def _archive(layer: bytes) -> bytes:
    layer_id = hashlib.sha256(layer).hexdigest()
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        "history": [{"created_by": "devcluster: gcc -static pause.c"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [
        {"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": [f"{layer_id}/layer.tar"]}
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (
            (f"{layer_id}/layer.tar", layer),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pause_archive() -> Path:
    """The cached docker-archive of the pause image (built on first use)."""
    out = config.k8s_cache_dir() / "share" / "pause-image.tar"
    if out.exists():
        return out
    source = pause_source()
    if not source.exists():
        raise FileNotFoundError(f"{source} is missing: run `make devcluster-build`")
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "pause"
        cmd = ["gcc", "-Os", "-static", "-DVERSION=devcluster", "-o", str(binary), str(source)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building the pause binary failed: {proc.stderr.strip()}")
        subprocess.run(["strip", str(binary)], check=False)
        data = _archive(_layer(binary.read_bytes()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".tmp")
    tmp_out.write_bytes(data)
    tmp_out.replace(out)
    return out
