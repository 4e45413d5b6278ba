"""A throw-away certificate authority per cluster, made in-process with ``cryptography``.

Keys are ECDSA P-256 (fast to make, accepted by every Kubernetes component), written as
unencrypted PKCS#8 PEM; certificates are X.509 v3, signed with ECDSA-SHA256 and valid for ten
years from now. Every certificate carries a subject key identifier and, naming its issuer's, an
authority key identifier.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)


class PkiError(RuntimeError):
    """A file given as a key or certificate cannot be read as one."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key on disk."""

    cert: Path
    key: Path


def make_key(path: Path) -> Path:
    """Write a new ECDSA P-256 private key (PKCS#8 PEM, mode 0600) to ``path``."""
    _new_key(path)
    return path


def public_key(key: Path, out: Path) -> Path:
    """Write the public half of ``key`` to ``out`` (SubjectPublicKeyInfo PEM)."""
    pem = (
        _load_key(key)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    out.write_bytes(pem)
    return out


def make_ca(directory: Path, name: str, common_name: str) -> KeyPair:
    """A self-signed CA certificate ``<name>.crt`` and its key ``<name>.key``."""
    key_path = directory / f"{name}.key"
    key = _new_key(key_path)
    subject = _name(common_name, ())
    ski = _ski(key.public_key())
    own_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    builder = (
        _builder(subject, subject, key.public_key())
        .add_extension(ski, critical=False)
        .add_extension(own_id, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
    )
    cert_path = directory / f"{name}.crt"
    _write_cert(cert_path, builder.sign(key, hashes.SHA256()))
    return KeyPair(cert_path, key_path)


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
    usages = _extended_usage(client, server)  # checked before any file is written
    ca_key = _load_key(ca.key)
    ca_cert = load_cert(ca.cert)
    key_path = directory / f"{name}.key"
    public = _new_key(key_path).public_key()
    builder = (
        _builder(_name(common_name, organizations), ca_cert.subject, public)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(usages, critical=False)
    )
    alt_names = _alt_names(dns_names, ip_addresses)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    builder = builder.add_extension(_ski(public), critical=False).add_extension(
        _authority_key_id(ca_cert), critical=False
    )
    cert_path = directory / f"{name}.crt"
    _write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))
    return KeyPair(cert_path, key_path)


def load_cert(path: Path) -> x509.Certificate:
    """The PEM certificate at ``path``."""
    return x509.load_pem_x509_certificate(path.read_bytes())


def _new_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(path, pem)
    return key


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path} is not an ECDSA private key")
    return key


def _name(common_name: str, organizations: tuple[str, ...]) -> x509.Name:
    """O=... (in order), then CN: the subject Kubernetes reads as user and groups."""
    parts = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    """Names, key, a random serial and ten years from now; the extensions are the caller's."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
    )


def _ski(public: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public)


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """CA: digitalSignature, keyCertSign, cRLSign. Leaf: digitalSignature, keyEncipherment."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _extended_usage(client: bool, server: bool) -> x509.ExtendedKeyUsage:
    usages = [
        oid
        for oid, on in (
            (ExtendedKeyUsageOID.CLIENT_AUTH, client),
            (ExtendedKeyUsageOID.SERVER_AUTH, server),
        )
        if on
    ]
    if not usages:
        raise PkiError("a certificate must be for a client, a server or both")
    return x509.ExtendedKeyUsage(usages)


def _alt_names(dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    return names


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file made readable by its owner only before any byte is written."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
