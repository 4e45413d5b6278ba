"""The local base image: Debian bookworm minbase with Python 3.11, built by debootstrap.

No container registry is reachable, so the base comes from the Debian mirror apt already uses.
The root filesystem tarball is cached under the project cache keyed by BASE_VERSION, so a fresh
Docker data root re-imports it in seconds instead of running debootstrap again.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from devcluster.images import apt, engine, paths

SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")
SUITE = "bookworm"
# Trimmed after debootstrap: nothing here is needed to run Python programs.
PRUNE = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/log",
)
# debootstrap copies these from the host; the container runtime provides its own.
HOST_FILES = ("etc/resolv.conf", "etc/hostname", "etc/hosts")
IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)


def debian_mirror() -> str:
    """The Debian mirror URI apt is configured with for the bookworm suite."""
    for source in sorted(SOURCES_DIR.glob("*.sources")):
        for stanza in source.read_text().split("\n\n"):
            fields = _deb822_fields(stanza)
            if (
                "deb" in fields.get("Types", "").split()
                and SUITE in fields.get("Suites", "").split()
            ):
                return fields["URIs"].split()[0]
    if SOURCES_LIST.exists():
        for line in SOURCES_LIST.read_text().splitlines():
            words = [w for w in line.split() if not w.startswith("[") and not w.endswith("]")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    raise RuntimeError(
        f"no 'deb' source for suite {SUITE} in {SOURCES_DIR}/*.sources or {SOURCES_LIST}"
    )


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        if line.startswith("#") or ":" not in line or line[:1].isspace():
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def rootfs_tarball() -> Path:
    """The cached root filesystem tarball of the base image."""
    return paths.base_cache_dir() / "rootfs.tar"


def image_exists(tag: str) -> bool:
    """True when the private engine has an image with this tag."""
    return engine.docker("image", "inspect", tag, check=False, capture=True).returncode == 0


def ensure_base_image() -> str:
    """Make sure the base image is in the engine; build or re-import it only when missing."""
    if image_exists(paths.BASE_IMAGE):
        return paths.BASE_IMAGE
    tarball = rootfs_tarball()
    if not tarball.exists():
        build_rootfs_tarball(tarball)
    changes = [arg for change in IMAGE_CHANGES for arg in ("--change", change)]
    with tarball.open("rb") as stream:
        subprocess.run(
            [paths.DOCKER, "import", *changes, "-", paths.BASE_IMAGE],
            stdin=stream,
            env=engine.docker_env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    print(f"images: imported {paths.BASE_IMAGE} from {tarball}", flush=True)
    return paths.BASE_IMAGE


def build_rootfs_tarball(tarball: Path) -> None:
    """debootstrap a cleaned bookworm minbase with Python into `tarball` (atomically)."""
    apt.ensure_packages(("debootstrap",))
    tarball.parent.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    print(f"images: debootstrap {SUITE} from {mirror} (about a minute)", flush=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(paths.BASE_PACKAGES)}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        _clean(rootfs)
        partial = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
            check=True,
        )
        partial.replace(tarball)


def _clean(rootfs: Path) -> None:
    for rel in PRUNE:
        target = rootfs / rel
        if target.is_dir():
            for child in target.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    for rel in HOST_FILES:
        (rootfs / rel).unlink(missing_ok=True)
    for pycache in rootfs.glob("usr/lib/python3*/**/__pycache__"):
        shutil.rmtree(pycache, ignore_errors=True)
