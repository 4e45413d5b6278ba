"""A throw-away certificate authority per cluster, made with the openssl command line tool.

Keys are ECDSA P-256 (fast to make, accepted by every Kubernetes component).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "3650"


class PkiError(RuntimeError):
    """openssl failed or is missing."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key on disk."""

    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise PkiError("openssl is not installed (apt-get install openssl)")
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def make_key(path: Path) -> Path:
    """Write a new ECDSA P-256 private key (PKCS#8 PEM) to ``path``."""
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        str(path),
        cwd=path.parent,
    )
    path.chmod(0o600)
    return path


def public_key(key: Path, out: Path) -> Path:
    """Write the public half of ``key`` to ``out`` (PEM)."""
    _openssl("pkey", "-in", str(key), "-pubout", "-out", str(out), cwd=key.parent)
    return out


def make_ca(directory: Path, name: str, common_name: str) -> KeyPair:
    """A self-signed CA certificate ``<name>.crt`` and its key ``<name>.key``."""
    key = make_key(directory / f"{name}.key")
    cert = directory / f"{name}.crt"
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        str(key),
        "-days",
        DAYS,
        "-subj",
        f"/CN={common_name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        str(cert),
        cwd=directory,
    )
    return KeyPair(cert, key)


def _subject(common_name: str, organizations: tuple[str, ...]) -> str:
    return "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"


def issue(
    ca: KeyPair,
    directory: Path,
    name: str,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    client: bool = True,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> KeyPair:
    """Issue ``<name>.crt``/``<name>.key`` signed by ``ca`` for a client and/or a server."""
    key = make_key(directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    _openssl(
        "req",
        "-new",
        "-key",
        str(key),
        "-subj",
        _subject(common_name, organizations),
        "-out",
        str(csr),
        cwd=directory,
    )
    ext.write_text(_extensions(client, server, dns_names, ip_addresses))
    cert = directory / f"{name}.crt"
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-days",
        DAYS,
        "-extfile",
        str(ext),
        "-out",
        str(cert),
        cwd=directory,
    )
    csr.unlink()
    ext.unlink()
    return KeyPair(cert, key)


def _extensions(
    client: bool, server: bool, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]
) -> str:
    usages = [u for u, on in (("clientAuth", client), ("serverAuth", server)) if on]
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    alt = [f"DNS:{d}" for d in dns_names] + [f"IP:{ip}" for ip in ip_addresses]
    if alt:
        lines.append(f"subjectAltName={','.join(alt)}")
    return "\n".join(lines) + "\n"
