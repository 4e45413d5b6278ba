"""The API server itself refuses bad MLModels (OpenAPI schema + CEL in crds/mlmodel.yaml), with a
message that names the offending field."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from mlmodel_harness import REPO, SHA_A, Api

from devcluster.cluster import Cluster
from mlmodel_operator.resource import SERVER_GRPC_PORT_CLASH, SERVICE_GRPC_PORT_CLASH

pytestmark = pytest.mark.cluster


@pytest.fixture
def api(installed: Cluster, module_ns: str) -> Api:
    """Nothing here gets created: one namespace serves the whole module."""
    return Api(installed, module_ns)


GOOD_MODEL = {"uri": "s3://models/iris/v1", "sha256": SHA_A}


def manifest(spec: dict[str, Any], name: str = "bad") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "MLModel",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def with_model(**fields: Any) -> dict[str, Any]:
    return {"model": {**GOOD_MODEL, **fields}}


BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("no model", {"replicas": 1}, "spec.model: Required value"),
    ("no uri", {"model": {"sha256": SHA_A}}, "spec.model.uri: Required value"),
    ("ftp scheme", with_model(uri="ftp://host/iris"), "spec.model.uri"),
    ("pvc without a path", with_model(uri="pvc://models"), "spec.model.uri"),
    ("s3 bad bucket", with_model(uri="s3://UPPER/iris"), "spec.model.uri"),
    ("short sha256", with_model(sha256="abc123"), "spec.model.sha256"),
    ("unknown format", with_model(format="pickle"), "spec.model.format"),
    ("bad secret name", with_model(credentialsSecret="Bad_Name"), "spec.model.credentialsSecret"),
    ("negative replicas", {**with_model(), "replicas": -1}, "spec.replicas"),
    (
        "min above max",
        {**with_model(), "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
        "spec.autoscaling.minReplicas",
    ),
    (
        "no maxReplicas",
        {**with_model(), "autoscaling": {"minReplicas": 2}},
        "spec.autoscaling.maxReplicas",
    ),
    (
        "cpu target 0",
        {**with_model(), "autoscaling": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 0}},
        "spec.autoscaling.targetCPUUtilizationPercentage",
    ),
    ("privileged port", {**with_model(), "server": {"port": 80}}, "spec.server.port"),
    ("zero workers", {**with_model(), "server": {"workers": 0}}, "spec.server.workers"),
    (
        "negative drift window",
        {**with_model(), "server": {"driftWindow": -1}},
        "spec.server.driftWindow",
    ),
    ("log level", {**with_model(), "server": {"logLevel": "loud"}}, "spec.server.logLevel"),
    (
        "bad quantity",
        {**with_model(), "server": {"resources": {"requests": {"cpu": "lots"}}}},
        "spec.server.resources.requests.cpu",
    ),
    (
        "operator-owned env",
        {
            **with_model(),
            "server": {"env": [{"name": "MODEL_SERVER_MODEL_URI", "value": "file:///etc"}]},
        },
        "spec.server.env[0].name",
    ),
    ("service type", {**with_model(), "service": {"type": "Ingress"}}, "spec.service.type"),
    ("service port", {**with_model(), "service": {"port": 70000}}, "spec.service.port"),
    (
        "privileged grpc port",
        {**with_model(), "server": {"grpcPort": 443}},
        "spec.server.grpcPort",
    ),
    ("service grpc port", {**with_model(), "service": {"grpcPort": -1}}, "spec.service.grpcPort"),
    (
        "grpc port is the http port",
        {**with_model(), "server": {"port": 9090, "grpcPort": 9090}},
        SERVER_GRPC_PORT_CLASH,
    ),
    (
        "http port is the default grpc port",
        {**with_model(), "server": {"port": 8081}},
        SERVER_GRPC_PORT_CLASH,
    ),
    (
        "service grpc port is the http port",
        {**with_model(), "service": {"port": 8000, "grpcPort": 8000}},
        SERVICE_GRPC_PORT_CLASH,
    ),
    (
        "service http port is the default grpc port",
        {**with_model(), "service": {"port": 9000}},
        SERVICE_GRPC_PORT_CLASH,
    ),
    (
        "toleration operator",
        {**with_model(), "tolerations": [{"operator": "Maybe"}]},
        "spec.tolerations[0].operator",
    ),
    ("unknown field", {**with_model(), "replics": 2}, 'unknown field "spec.replics"'),
]


@pytest.mark.parametrize(
    ("spec", "field"), [(s, f) for _, s, f in BAD_SPECS], ids=[case for case, _, _ in BAD_SPECS]
)
def test_bad_spec_is_refused_naming_the_field(api: Api, spec: dict[str, Any], field: str) -> None:
    result = api.cluster.kubectl(
        "apply", "-n", api.ns, "-f", "-", input=manifest(spec), check=False
    )
    assert result.returncode != 0, f"accepted: {spec}"
    assert field in result.stderr, result.stderr
    assert api.cluster.kubectl("get", "-n", api.ns, "mlm", "bad", check=False).returncode != 0


def test_a_name_that_cannot_name_a_service_is_refused(api: Api) -> None:
    result = api.cluster.kubectl(
        "apply", "-n", api.ns, "-f", "-", input=manifest(with_model(), name="9lives"), check=False
    )
    assert result.returncode != 0
    assert "metadata.name must be a DNS-1035 label" in result.stderr, result.stderr


def test_every_sample_is_accepted_and_defaults_are_filled_in(api: Api) -> None:
    samples = REPO / "crds" / "samples"
    api.cluster.kubectl("apply", "-n", api.ns, "--dry-run=server", "-f", str(samples))
    out = api.cluster.kubectl(
        "apply", "-n", api.ns, "--dry-run=server", "-o", "yaml", "-f", str(samples / "iris.yaml")
    ).stdout
    spec = yaml.safe_load(out)["spec"]
    assert spec["server"] == {"port": 8080, "grpcPort": 8081, "workers": 1, "logLevel": "info"}
    assert spec["service"] == {"type": "ClusterIP", "port": 80, "grpcPort": 9000}


GRPC_OFF_SPECS = {
    "grpc off": {"service": {"grpcPort": 0}},
    "grpc off, http on 9000": {"service": {"port": 9000, "grpcPort": 0}},
    "both ports moved": {
        "server": {"port": 8081, "grpcPort": 8080},
        "service": {"port": 9000, "grpcPort": 80},
    },
}


@pytest.mark.parametrize("spec", GRPC_OFF_SPECS.values(), ids=GRPC_OFF_SPECS.keys())
def test_grpc_off_and_moved_grpc_ports_are_accepted(api: Api, spec: dict[str, Any]) -> None:
    out = api.cluster.kubectl(
        "apply", "-n", api.ns, "--dry-run=server", "-o", "yaml", "-f", "-",
        input=manifest({**with_model(), **spec}, name="grpc"),
    ).stdout  # fmt: skip
    accepted = yaml.safe_load(out)["spec"]
    for part, fields in spec.items():
        assert fields.items() <= accepted[part].items()
