"""Trim mlmodel-server:slim (Dockerfile.server, VARIANT=slim). Build time only, never in an image.

    python3 slim_image.py venv VENV     # builder stage: strip debug info, drop what never loads
    python3 slim_image.py rootfs VENV   # slim runtime root: drop what a Python server never runs

Standard library only (it runs on the base image's Python before anything is installed). Every
step prints what it removed and how many bytes that was, so the build log shows each step's size.
`rootfs` ends by checking that every ELF file the server may load (the interpreter, its
extension modules, every shared object in VENV) still finds all its libraries, and fails the
build if one does not.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

# --- venv -----------------------------------------------------------------------------------

# botocore ships the JSON models of ~400 AWS services. The server's only client is S3; the
# credential chain creates sts (assume role, web identity), sso and sso-oidc (SSO profiles) and
# signin (login profiles) clients. The top-level files (endpoints, partitions, _retry,
# sdk-default-configuration) are loaded for every client.
BOTOCORE_SERVICES = ("s3", "sts", "sso", "sso-oidc", "signin")
# boto3's resource models: only boto3.resource() reads them; keep S3's.
BOTO3_RESOURCES = ("s3",)
# onnx (and ml_dtypes, which only onnx imports): the scikit-learn -> ONNX conversion needs
# them, which the slim image does not do; the server checks a graph (external data, operator
# domains) through protobuf alone (mlmodel_artifact.onnx_proto) and never imports them.
CONVERSION_ONLY = ("onnx", "ml_dtypes")
# Build and type-checking inputs that nothing imports at run time.
SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".h", ".hpp", ".pyx", ".pxd", ".pyi")
# numpy's build helpers (f2py and, on Python < 3.12, numpy.distutils), its C headers, and the
# extension modules only its own test suite imports (its tests/ directories are already gone).
NUMPY_BUILD_ONLY = ("distutils", "f2py", "_core/include", "_core/lib", "conftest.py")
NUMPY_TEST_MODULES = ("_simd", "_multiarray_tests", "_rational_tests", "_umath_tests",
                      "_struct_ufunc_tests", "_operand_flag_tests")  # fmt: skip
VENV_SCRIPTS = ("f2py", "numpy-config", "backend-test-tools", "check-model", "check-node",
                "onnxruntime_test")  # fmt: skip


def tree_size(path: Path) -> int:
    """Bytes in regular files under `path` (or of `path` itself), symlinks not followed."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size if path.is_file() and not path.is_symlink() else 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = Path(root, name)
            if not full.is_symlink():
                total += full.lstat().st_size
    return total


def remove(paths: Iterable[Path]) -> int:
    """Remove files and directory trees; returns the bytes freed."""
    freed = 0
    for path in paths:
        if not path.exists() and not path.is_symlink():
            continue
        freed += tree_size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return freed


def report(step: str, freed: int) -> None:
    print(f"slim: {step}: {freed / 1e6:.1f} MB removed", flush=True)


def _has_debug_info(elf: Path) -> bool:
    sections = subprocess.run(
        ["readelf", "-S", "-W", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    return " .debug_info" in sections


def _has_search_path(elf: Path) -> bool:
    dynamic = subprocess.run(
        ["readelf", "-d", "-W", str(elf)], capture_output=True, text=True, check=True
    ).stdout
    return "(RPATH)" in dynamic or "(RUNPATH)" in dynamic


def strip_debug_info(venv: Path) -> int:
    """strip --strip-unneeded the shared objects that carry DWARF debug info.

    Left alone: libraries vendored by auditwheel (`<dist>.libs/`) and anything with an RPATH or
    RUNPATH. patchelf rewrote those, and strip re-lays them out so the loader refuses them
    ("ELF load command address/offset not page-aligned"; numpy's OpenBLAS does).
    """
    freed = 0
    for elf in sorted(venv.rglob("*.so*")):
        if not elf.is_file() or elf.is_symlink():
            continue
        if any(part.endswith(".libs") for part in elf.parts):
            continue
        if not _has_debug_info(elf) or _has_search_path(elf):
            continue
        before = elf.stat().st_size
        subprocess.run(["strip", "--strip-unneeded", str(elf)], check=True)
        after = elf.stat().st_size
        print(f"slim:   strip {elf.relative_to(venv)}: {before / 1e6:.1f} -> {after / 1e6:.1f} MB")
        freed += before - after
    return freed


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise SystemExit(f"slim: expected one site-packages under {venv}, found {found}")
    return found[0]


def trim_venv(venv: Path) -> None:
    site = site_packages(venv)
    report("strip debug info from shared objects", strip_debug_info(venv))
    keep = set(BOTOCORE_SERVICES)
    models = site / "botocore" / "data"
    report(
        f"botocore service models except {', '.join(BOTOCORE_SERVICES)}",
        remove(p for p in models.iterdir() if p.is_dir() and p.name not in keep),
    )
    resources = site / "boto3" / "data"
    report(
        "boto3 resource models except s3",
        remove(p for p in resources.iterdir() if p.is_dir() and p.name not in BOTO3_RESOURCES),
    )
    report(
        f"{', '.join(CONVERSION_ONLY)} (conversion only; the server checks graphs via protobuf)",
        remove(
            p for name in CONVERSION_ONLY for p in (site / name, *site.glob(f"{name}-*.dist-info"))
        ),
    )
    numpy = site / "numpy"
    report("numpy build helpers and headers", remove(numpy / p for p in NUMPY_BUILD_ONLY))
    report(
        "numpy's test-only extension modules",
        remove(p for m in NUMPY_TEST_MODULES for p in (numpy / "_core").glob(f"{m}.*.so")),
    )
    report(
        "C/C++/Cython sources, headers and type stubs",
        remove(p for p in site.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()),
    )
    report("console scripts of removed tools", remove(venv / "bin" / s for s in VENV_SCRIPTS))
    for stale in site.rglob("__pycache__"):
        # Byte code of sources removed above (f2py's, distutils') went with their directories;
        # drop any orphan left in a kept directory.
        for pyc in stale.glob("*.pyc"):
            source = stale.parent / (pyc.name.split(".", 1)[0] + ".py")
            if not source.exists():
                pyc.unlink()


# --- runtime root -----------------------------------------------------------------------------

# Debian packages of the base that a Python server never runs: the package manager and its
# state, perl, shells and tools other than dash and find, PAM/login, filesystem and mount tools,
# the TLS/crypto/Kerberos stacks that only those tools use, and the pip/setuptools wheels that
# only ensurepip installs. Those not installed (another base) are skipped.
REMOVED_PACKAGES = (
    "adduser", "apt", "bash", "bsdutils", "coreutils", "debconf", "debian-archive-keyring",
    "debianutils", "diffutils", "dpkg", "e2fsprogs", "gpgv", "grep", "gzip", "hostname",
    "init-system-helpers", "libapt-pkg6.0", "libaudit-common", "libaudit1", "libblkid1",
    "libcap-ng0", "libcap2", "libcom-err2", "libdb5.3", "libdebconfclient0", "libext2fs2",
    "libgcrypt20", "libgmp10", "libgnutls30", "libgpg-error0", "libgssapi-krb5-2",
    "libhogweed6", "libidn2-0", "libk5crypto3", "libkeyutils1", "libkrb5-3", "libkrb5support0",
    "liblz4-1", "libmount1", "libnettle8", "libnsl2", "libp11-kit0", "libpam-modules",
    "libpam-modules-bin", "libpam-runtime", "libpam0g", "libseccomp2", "libsemanage-common",
    "libsemanage2", "libsepol2", "libsmartcols1", "libss2", "libsqlite3-0", "libsystemd0",
    "libtasn1-6", "libtirpc-common", "libtirpc3", "libudev1", "libunistring2", "libxxhash0",
    "libzstd1", "login", "logsave", "mawk", "mount", "ncurses-bin", "openssl", "passwd",
    "perl-base", "python3-distutils", "python3-lib2to3", "python3-pip-whl",
    "python3-setuptools-whl", "sed", "sysvinit-utils", "tar", "util-linux", "util-linux-extra",
)  # fmt: skip
# Paths (relative to /) with no package of their own to remove them, or not wholly removed
# above: glibc's iconv modules (Python's codecs are its own), package manager state and caches,
# documentation, the pip/setuptools wheels.
REMOVED_PATHS = (
    "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/aarch64-linux-gnu/gconv",
    "var/lib/dpkg", "var/lib/apt", "var/cache/apt", "var/cache/debconf", "var/log",
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
    "usr/share/bash-completion", "usr/share/zsh", "usr/share/python-wheels", "usr/share/perl5",
    "usr/share/common-licenses", "usr/share/debconf", "usr/share/keyrings", "usr/lib/apt",
    "etc/apt", "usr/share/pam", "usr/share/pam-configs", "usr/lib/dpkg",
)  # fmt: skip
# The standard library's test suite, GUI, demos, the pip bootstrap, 2to3, help() topics,
# distutils, and extension modules that only tests load or whose libraries are removed above
# (dbm: Berkeley DB; nis: Kerberos/tirpc; sqlite3).
REMOVED_STDLIB = (
    "test", "idlelib", "tkinter", "turtledemo", "turtle.py", "ensurepip", "lib2to3",
    "pydoc_data", "distutils", "sqlite3", "dbm/bsd.py", "dbm/ndbm.py",
    "lib-dynload/_test*", "lib-dynload/xxlimited*", "lib-dynload/_xxtestfuzz*",
    "lib-dynload/_ctypes_test*", "lib-dynload/_dbm.*", "lib-dynload/nis.*",
    "lib-dynload/_sqlite3.*", "lib-dynload/_tkinter.*",
)  # fmt: skip
# Kept on purpose: dash (/bin/sh) and findutils (`find`, used by the image tests), Python and
# the libraries it and the venv link, ca-certificates, tzdata, media-types, the C.UTF-8 locale,
# base-files and base-passwd (/etc/passwd, /etc/group), ncurses/readline (an interactive
# `python` in `kubectl exec`).


def package_files(packages: Iterable[str]) -> list[Path]:
    """Regular files and file symlinks that dpkg lists for the installed `packages`.

    /etc is left alone (configuration files such as /etc/ssl/openssl.cnf belong to packages
    removed here but are read by what stays); so are directories, which other packages share.
    """
    if shutil.which("dpkg-query") is None:
        return []
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\n"], capture_output=True, text=True, check=True
    ).stdout.split()
    wanted = [p for p in packages if p in installed]
    files: set[Path] = set()
    for package in wanted:
        listing = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, check=True
        ).stdout
        for line in listing.splitlines():
            path = Path(line.strip())
            if not line.startswith("/") or line.startswith("/etc/"):
                continue
            # Never a directory, nor a symlink to one (/lib64, /bin on a merged /usr).
            if not path.is_dir() and (path.is_symlink() or path.is_file()):
                files.add(path)
    return sorted(files)


def stdlib_paths() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    out: list[Path] = []
    for pattern in REMOVED_STDLIB:
        base = dynload.parent if pattern.startswith("lib-dynload/") else stdlib
        if pattern.startswith("lib-dynload/"):
            base = dynload
            pattern = pattern.removeprefix("lib-dynload/")
        out += [Path(p) for p in glob.glob(str(base / pattern))]
    return out


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def loader() -> str:
    for pattern in ("/lib64/ld-linux-*.so.*", "/lib/ld-linux-*.so.*", "/lib/*/ld-linux-*.so.*"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise SystemExit("slim: no dynamic loader (ld-linux) found")


def unresolved(files: Iterable[Path]) -> list[str]:
    """`file: library` for each shared library the dynamic loader cannot find."""
    ld = loader()
    missing: list[str] = []
    for path in files:
        result = subprocess.run([ld, "--list", str(path)], capture_output=True, text=True)
        for line in result.stdout.splitlines():
            if "not found" in line:
                missing.append(f"{path}: {line.strip()}")
    return missing


def elf_files(roots: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for root in roots:
        if root.is_file():
            out.append(root)
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath, name)
                if path.is_file() and not path.is_symlink() and is_elf(path):
                    mode = path.stat().st_mode
                    if ".so" in name or mode & stat.S_IXUSR:
                        out.append(path)
    return out


def trim_rootfs(venv: Path) -> None:
    # Everything is listed before anything is removed: dpkg itself goes.
    stdlib = stdlib_paths()
    packaged = package_files(REMOVED_PACKAGES)
    report("Python's test suite, GUI, ensurepip, 2to3, distutils, sqlite3", remove(stdlib))
    report(f"files of {len(REMOVED_PACKAGES)} Debian packages (dpkg -L)", remove(packaged))
    report("iconv modules, package state, docs", remove(Path("/", p) for p in REMOVED_PATHS))
    python = Path(os.path.realpath(sys.executable))
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    keep = [python, dynload, venv]
    keep += [Path(p) for p in ("/bin/sh", "/usr/bin/find") if Path(p).exists()]
    missing = unresolved(elf_files(keep))
    if missing:
        lines = "\n".join(missing)
        raise SystemExit(f"slim: libraries removed that something still links:\n{lines}")
    print(f"slim: every ELF file under {', '.join(map(str, keep))} finds its libraries")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("venv", "rootfs"):
        print(__doc__, file=sys.stderr)
        return 2
    step, venv = argv[0], Path(argv[1])
    if step == "venv":
        trim_venv(venv)
    else:
        trim_rootfs(venv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
