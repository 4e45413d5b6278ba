"""The real API server refuses MLModels whose URI or env would let a user turn the operator or
the server against the cluster: user-info (a password echoed by status and logs), a query or
fragment (drops the /model-card.json suffix: a metadata-service oracle), blanks or backslashes
(URL parser confusion), and the server's own settings in spec.server.env in any letter case
(`model_server_model_sha256` overrode the pin). Each refusal names the field; the operator's
parser (resource.py) refuses the same URIs with the same message, so it need not trust that an
object passed the API server's validation.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.waiting import NotYet, wait_until
from mlmodel_operator.resource import uri_problem

pytestmark = pytest.mark.cluster

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "mlmodel.yaml"
SHA = "a" * 64

BAD_URIS = {
    "password": "https://reader:s3cret-pw@models.example/iris",
    "user only": "http://reader@models.example/iris",
    "backslash before @": "http://models.example\\@127.0.0.1/iris",
    "s3 user-info": "s3://key:s3cret-pw@models/iris",
    "metadata via ?": "http://169.254.169.254/latest/meta-data/iam/security-credentials/role?",
    "metadata via #": "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/role#",
    "query": "https://models.example/iris?version=2",
    "s3 fragment": "s3://models/iris#x",
    "pvc query": "pvc://models/iris?x",
    "blank": "https://models.example/ir is",
    "newline": "https://models.example/iris\nHost: evil",
    "tab": "https://models.example/\tiris",
    "DEL": "https://models.example/iris\x7f",
}
GOOD_URIS = {
    "s3": "s3://models/iris/v1",
    "pvc": "pvc://models/iris",
    "https with port": "https://models.example:8443/iris",
    "@ in the path": "http://127.0.0.1:8080/team@x/iris",
    "encoded ?": "https://models.example/iris%3Fv2",
}
SERVER_SETTINGS = ["MODEL_SERVER_MODEL_SHA256", "model_server_model_sha256", "Model_Server_Workers"]


@pytest.fixture(scope="module", autouse=True)
def crd(cluster: Cluster) -> None:
    """The CRD installed from the repo (the namespace, `ns`, is tests/security/conftest.py's)."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.wait_established("mlmodels.mlops.dev")


def manifest(spec: dict[str, Any]) -> str:
    """An MLModel named `probe` as JSON (JSON keeps control characters exact)."""
    body = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "MLModel",
        "metadata": {"name": "probe"},
        "spec": spec,
    }
    return json.dumps(body)


def apply(cluster: Cluster, ns: str, spec: dict[str, Any], *extra: str) -> tuple[bool, str]:
    """kubectl apply the spec: (accepted, stderr). Retries while the CRD is still settling."""

    def served() -> subprocess.CompletedProcess[str] | NotYet:
        proc = cluster.kubectl(
            "apply", "-n", ns, *extra, "-f", "-", input=manifest(spec), check=False
        )
        if "the server could not find the requested resource" in proc.stderr:
            return NotYet(proc.stderr.strip())
        return proc

    proc = wait_until("the API server to serve MLModels", served, 10, 0.2)
    return proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("uri", BAD_URIS.values(), ids=BAD_URIS.keys())
def test_the_api_server_refuses_the_uri_naming_the_field_without_echoing_it(
    cluster: Cluster, ns: str, uri: str
) -> None:
    accepted, stderr = apply(cluster, ns, {"model": {"uri": uri, "sha256": SHA}})
    assert not accepted, f"accepted: {uri!r}"
    assert "spec.model.uri" in stderr, stderr
    expected = uri_problem(uri)  # the operator's parser refuses it with the CRD's message
    assert expected is not None and expected in stderr, stderr
    assert "s3cret-pw" not in stderr and uri not in stderr, "the refusal quotes the URI"
    assert cluster.kubectl("get", "-n", ns, "mlm", "probe", check=False).returncode != 0


@pytest.mark.parametrize("uri", GOOD_URIS.values(), ids=GOOD_URIS.keys())
def test_the_api_server_and_the_parser_accept_plain_artifact_uris(
    cluster: Cluster, ns: str, uri: str
) -> None:
    accepted, stderr = apply(cluster, ns, {"model": {"uri": uri}}, "--dry-run=server")
    assert accepted, stderr
    assert uri_problem(uri) is None


@pytest.mark.parametrize("name", SERVER_SETTINGS)
def test_the_servers_settings_are_refused_in_env_in_any_letter_case(
    cluster: Cluster, ns: str, name: str
) -> None:
    spec = {
        "model": {"uri": "s3://models/iris/v1", "sha256": SHA},
        "server": {"env": [{"name": "AWS_REGION", "value": "x"}, {"name": name, "value": SHA}]},
    }
    accepted, stderr = apply(cluster, ns, spec)
    assert not accepted, f"accepted env {name}"
    assert "spec.server.env[1].name" in stderr, stderr
    assert "must not start with MODEL_SERVER_ in any letter case" in stderr, stderr


def test_other_env_names_are_accepted(cluster: Cluster, ns: str) -> None:
    env = [{"name": n, "value": "x"} for n in ("MODEL_SERVERX", "AWS_ENDPOINT_URL", "my.model")]
    spec = {"model": {"uri": "s3://models/iris/v1"}, "server": {"env": env}}
    accepted, stderr = apply(cluster, ns, spec, "--dry-run=server")
    assert accepted, stderr
