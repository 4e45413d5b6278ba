"""The cluster's certificates, read back with ``cryptography``: no cluster needed."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devcluster.kube import certs, hostnet, node, pki, state

CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER = ExtendedKeyUsageOID.SERVER_AUTH


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> state.Layout:
    """One cluster PKI plus the node's certificates, made once for the module."""
    made = state.Layout(tmp_path_factory.mktemp("cluster"))
    cluster = certs.make_cluster_pki(made, extra_ips=(hostnet.NODE_IP,))
    node.make_node_pki(made, cluster)
    return made


def _cert(layout: state.Layout, name: str) -> x509.Certificate:
    return pki.load_cert(layout.pki / f"{name}.crt")


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def _subject(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(cn[0].value), [str(o.value) for o in orgs]


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    alt = _ext(cert, x509.SubjectAlternativeName).value
    ips = [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)]
    return list(alt.get_values_for_type(x509.DNSName)), ips


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(_ext(cert, x509.ExtendedKeyUsage).value)


@pytest.mark.parametrize(
    ("name", "common_name"),
    [("ca", "devcluster-ca"), ("front-proxy-ca", "devcluster-front-proxy-ca")],
)
def test_a_ca_is_a_self_signed_certificate_authority(
    layout: state.Layout, name: str, common_name: str
) -> None:
    ca = _cert(layout, name)
    assert ca.subject == ca.issuer
    assert _subject(ca) == (common_name, [])
    constraints = _ext(ca, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = _ext(ca, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert usage.value.digital_signature
    ca.verify_directly_issued_by(ca)  # its own signature


LEAVES = {
    # name: (issuing CA, common name, organizations, extended key usages)
    "apiserver": ("ca", "kube-apiserver", [], {SERVER}),
    "admin": ("ca", "devcluster-admin", ["system:masters"], {CLIENT}),
    "kube-controller-manager": ("ca", "system:kube-controller-manager", [], {CLIENT}),
    "kube-scheduler": ("ca", "system:kube-scheduler", [], {CLIENT}),
    "kwok": ("ca", "devcluster:kwok", ["system:masters"], {CLIENT}),
    "apiserver-kubelet-client": (
        "ca",
        "kube-apiserver-kubelet-client",
        ["system:masters"],
        {CLIENT},
    ),
    "front-proxy-client": ("front-proxy-ca", "front-proxy-client", [], {CLIENT}),
    "kubelet": ("ca", "system:node:devcluster-node", ["system:nodes"], {CLIENT}),
    "kubelet-serving": ("ca", "devcluster-node", [], {SERVER}),
    "kube-proxy": ("ca", "system:kube-proxy", [], {CLIENT}),
    "metrics-server": ("ca", "system:metrics-server", [], {CLIENT}),
    "metrics-server-serving": ("ca", "metrics-server", [], {SERVER}),
}


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_a_leaf_is_signed_by_its_ca_and_names_its_user(layout: state.Layout, name: str) -> None:
    issuer, common_name, orgs, usages = LEAVES[name]
    cert, ca = _cert(layout, name), _cert(layout, issuer)
    cert.verify_directly_issued_by(ca)
    assert _subject(cert) == (common_name, orgs)
    assert _usages(cert) == usages
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    ca_key_id = _ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca_key_id


def test_the_signature_is_checked_not_only_the_issuer_name(
    layout: state.Layout, tmp_path: Path
) -> None:
    impostor = pki.make_ca(tmp_path, "ca", "devcluster-ca")  # same name, other key
    with pytest.raises(InvalidSignature):
        _cert(layout, "admin").verify_directly_issued_by(pki.load_cert(impostor.cert))


def test_the_apiserver_answers_to_every_name_and_address_a_client_uses(
    layout: state.Layout,
) -> None:
    dns, ips = _sans(_cert(layout, "apiserver"))
    assert dns == list(certs.APISERVER_DNS)
    assert ips == ["127.0.0.1", certs.KUBERNETES_SERVICE_IP, hostnet.NODE_IP]


@pytest.mark.parametrize(
    ("name", "dns"),
    [
        ("kubelet-serving", [node.NODE_NAME]),
        ("metrics-server-serving", ["metrics-server.kube-system.svc"]),
    ],
)
def test_node_serving_certificates_name_the_node_address(
    layout: state.Layout, name: str, dns: list[str]
) -> None:
    assert _sans(_cert(layout, name)) == (dns, [hostnet.NODE_IP])


def test_client_certificates_carry_no_alternative_names(layout: state.Layout) -> None:
    with pytest.raises(x509.ExtensionNotFound):
        _ext(_cert(layout, "admin"), x509.SubjectAlternativeName)


def _private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    return key


def _spki(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("name", ["ca", "front-proxy-ca", *sorted(LEAVES)])
def test_each_key_is_a_private_p256_key_matching_its_certificate(
    layout: state.Layout, name: str
) -> None:
    key = _private_key(layout.pki / f"{name}.key")
    public = _cert(layout, name).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert _spki(key.public_key()) == _spki(public)


def test_the_service_account_public_key_is_the_signing_key_s_half(layout: state.Layout) -> None:
    key = _private_key(layout.pki / "sa.key")
    pem = (layout.pki / "sa.pub").read_bytes()
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    public = serialization.load_pem_public_key(pem)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert _spki(public) == _spki(key.public_key())


def test_certificates_are_valid_now_for_ten_years(layout: state.Layout) -> None:
    ten_years = datetime.timedelta(days=3650)
    now = datetime.datetime.now(datetime.UTC)
    for path in layout.pki.glob("*.crt"):
        cert = pki.load_cert(path)
        assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc, path.name
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == ten_years, path.name


def test_serial_numbers_differ(layout: state.Layout) -> None:
    serials = [pki.load_cert(path).serial_number for path in layout.pki.glob("*.crt")]
    assert len(set(serials)) == len(serials) == 2 + len(LEAVES)


def test_load_cluster_pki_finds_the_files_make_cluster_pki_wrote(layout: state.Layout) -> None:
    loaded = certs.load_cluster_pki(layout)
    paths = [loaded.ca, loaded.apiserver, loaded.front_proxy_ca, loaded.front_proxy_client]
    paths += loaded.clients.values()
    assert all(p.cert.is_file() and p.key.is_file() for p in paths)
    assert loaded.sa_key.is_file() and loaded.sa_pub.is_file()


def test_a_server_certificate_for_an_ip_address_holds_the_address(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path, "ca", "test-ca")
    made = pki.issue(ca, tmp_path, "srv", "srv", client=False, server=True, ip_addresses=("::1",))
    alt = _ext(pki.load_cert(made.cert), x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]


def test_a_certificate_for_nothing_is_refused(tmp_path: Path) -> None:
    ca = pki.make_ca(tmp_path, "ca", "test-ca")
    with pytest.raises(pki.PkiError, match="client, a server or both"):
        pki.issue(ca, tmp_path, "none", "none", client=False)
