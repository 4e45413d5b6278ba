"""The CRD and the parsed models agree (no cluster); the API server checks the rest."""

from __future__ import annotations

from typing import Any

import pytest
from operator_testlib import make_mlmodel, sample_mlmodels
from pydantic import BaseModel, ValidationError

from mlmodel_operator.resource import (
    SERVER_GRPC_PORT_CLASH,
    SERVICE_GRPC_PORT_CLASH,
    URI_RULES,
    MLModel,
    MLModelSpec,
    uri_problem,
)


def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions: list[dict[str, Any]] = crd["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    return versions[0]


def spec_schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic class inside an annotation like `X | None` or `tuple[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = model_class(arg)
        if found is not None:
            return found
    return None


def walk(schema: dict[str, Any], model: type[BaseModel], path: str) -> list[str]:
    """Every mismatch between a schema object's properties and a model's aliases/defaults."""
    if "items" in schema:
        schema = schema["items"]
    properties: dict[str, Any] = schema.get("properties", {})
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    problems = [
        f"{path}.{p}: in CRD, not in {model.__name__}" for p in properties if p not in fields
    ]
    problems += [
        f"{path}.{f}: in {model.__name__}, not in CRD" for f in fields if f not in properties
    ]
    for prop, sub in properties.items():
        field = fields.get(prop)
        if field is None:
            continue
        if "default" in sub and sub["default"] != {} and field.default != sub["default"]:
            problems.append(
                f"{path}.{prop}: CRD default {sub['default']!r} != model default {field.default!r}"
            )
        nested = model_class(field.annotation)
        if nested is not None and "properties" in sub | sub.get("items", {}):
            problems += walk(sub, nested, f"{path}.{prop}")
    return problems


def test_crd_schema_and_spec_models_name_the_same_fields_with_the_same_defaults(
    crd: dict[str, Any],
) -> None:
    assert walk(spec_schema(crd), MLModelSpec, "spec") == []


def test_crd_names_group_and_short_name(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "mlmodels.mlops.dev"
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"]) == (
        "mlops.dev",
        "MLModel",
        "mlmodels",
    )
    assert names["shortNames"] == ["mlm"]


def test_scale_subresource_reads_the_selector_from_status(crd: dict[str, Any]) -> None:
    sub = version(crd)["subresources"]
    assert sub["status"] == {}
    assert sub["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_columns_show_ready_replicas_model_candidate_url_and_age(
    crd: dict[str, Any],
) -> None:
    columns = [
        c["name"] for c in version(crd)["additionalPrinterColumns"] if c.get("priority", 0) == 0
    ]
    assert columns == ["Ready", "Replicas", "Model", "Candidate", "Phase", "URL", "Age"]
    paths = {c["name"]: c["jsonPath"] for c in version(crd)["additionalPrinterColumns"]}
    assert paths["Candidate"] == ".status.candidate.trafficPercent"
    assert paths["Phase"] == ".status.candidate.phase"


@pytest.mark.parametrize("sample", sorted(sample_mlmodels()))
def test_every_sample_parses(sample: str) -> None:
    doc = sample_mlmodels()[sample]
    assert make_mlmodel(doc["spec"], name=doc["metadata"]["name"]).spec.model.uri


def test_parsed_model_is_frozen() -> None:
    mlmodel = make_mlmodel({"model": {"uri": "s3://b/iris"}})
    with pytest.raises(ValidationError):
        mlmodel.spec.replicas = 5  # type: ignore[misc]


def test_unknown_spec_field_is_refused_by_the_parser_too() -> None:
    with pytest.raises(ValidationError, match="replics"):
        make_mlmodel({"model": {"uri": "s3://b/iris"}, "replics": 2})


def test_pvc_uri_splits_into_claim_and_path() -> None:
    mlmodel = MLModel.model_validate(
        {
            "name": "a",
            "namespace": "n",
            "uid": "u",
            "generation": 1,
            "spec": {"model": {"uri": "pvc://models/iris/v1"}},
        }
    )
    assert mlmodel.spec.model.pvc_claim_and_path() == ("models", "iris/v1")


def uri_rules(crd: dict[str, Any]) -> list[dict[str, str]]:
    model = spec_schema(crd)["properties"]["model"]
    assert "x-kubernetes-validations" not in model["properties"]["uri"], (
        "rules on the string make the API server quote a refused URI (and its password)"
    )
    rules: list[dict[str, str]] = model["x-kubernetes-validations"]
    assert {rule["fieldPath"] for rule in rules} == {".uri"}
    return rules


def env_rules(crd: dict[str, Any]) -> list[dict[str, str]]:
    env = spec_schema(crd)["properties"]["server"]["properties"]["env"]
    rules: list[dict[str, str]] = env["items"]["x-kubernetes-validations"]
    return rules


def test_the_parser_checks_the_crds_uri_rules_with_the_same_messages(
    crd: dict[str, Any],
) -> None:
    form_rules = ("a pvc URI", "an s3 URI")  # claim and bucket forms: the CRD's alone
    mirrored = [r["message"] for r in uri_rules(crd) if not r["message"].startswith(form_rules)]
    assert [message for _, _, message in URI_RULES] == mirrored
    assert len(mirrored) == len(uri_rules(crd)) - len(form_rules)


def test_the_parser_refuses_server_settings_in_env_with_the_crds_message(
    crd: dict[str, Any],
) -> None:
    [rule] = env_rules(crd)
    assert rule["fieldPath"] == ".name"
    assert "lowerAscii()" in rule["rule"], "the server's settings are case-insensitive"
    with pytest.raises(ValidationError) as refused:
        make_mlmodel(
            {"model": {"uri": "s3://b/iris"}, "server": {"env": [{"name": "model_server_x"}]}}
        )
    assert rule["message"] in str(refused.value)


BAD_URIS = {
    "password": "https://user:s3cret@models.example/iris",
    "user only": "http://user@models.example/iris",
    "backslash before @": "http://models.example\\@127.0.0.1/iris",
    "query": "https://models.example/iris?x=1",
    "trailing ?": "http://169.254.169.254/latest/meta-data/iam/security-credentials/role?",
    "fragment": "http://127.0.0.1:9/latest/meta-data/iam/security-credentials/role#",
    "s3 fragment": "s3://models/iris#",
    "pvc query": "pvc://models/iris?v=2",
    "blank": "https://models.example/ir is",
    "newline": "https://models.example/iris\nx",
    "tab": "https://models.example/\tiris",
    "nul": "https://models.example/iris\x00",
    "DEL": "https://models.example/iris\x7f",
    "ftp": "ftp://models.example/iris",
    "file": "file:///etc/passwd",
}
GOOD_URIS = [
    "s3://models/iris/v1",
    "pvc://models/iris",
    "https://models.example/iris",
    "http://127.0.0.1:8080/a@b/iris",  # '@' in the path is no user-info
    "http://[::1]:8080/iris",
    "https://models.example/iris%3Fnot-a-query",
]


@pytest.mark.parametrize("uri", BAD_URIS.values(), ids=BAD_URIS.keys())
def test_the_parser_refuses_what_the_crd_refuses_without_echoing_the_uri(uri: str) -> None:
    with pytest.raises(ValidationError) as refused:
        make_mlmodel({"model": {"uri": uri}})
    text = str(refused.value)
    assert "spec.model.uri" in text
    assert uri_problem(uri) in text
    assert "s3cret" not in text and uri not in text


@pytest.mark.parametrize("uri", GOOD_URIS)
def test_the_parser_accepts_plain_artifact_uris(uri: str) -> None:
    assert uri_problem(uri) is None
    assert make_mlmodel({"model": {"uri": uri}}).spec.model.uri == uri


@pytest.mark.parametrize(
    "name", ["MODEL_SERVER_MODEL_SHA256", "model_server_model_sha256", "Model_Server_Workers"]
)
def test_the_parser_refuses_the_servers_settings_in_any_letter_case(name: str) -> None:
    spec = {"model": {"uri": "s3://b/iris"}, "server": {"env": [{"name": name, "value": "x"}]}}
    with pytest.raises(ValidationError, match=r"spec\.server\.env"):
        make_mlmodel(spec)


@pytest.mark.parametrize("name", ["MODEL_SERVERX", "AWS_ENDPOINT_URL", "my.model_server_x"])
def test_other_env_names_are_accepted(name: str) -> None:
    spec = {"model": {"uri": "s3://b/iris"}, "server": {"env": [{"name": name, "value": "x"}]}}
    assert make_mlmodel(spec).spec.server.env[0].name == name


def port_rule(crd: dict[str, Any], part: str) -> dict[str, str]:
    rules: list[dict[str, str]] = spec_schema(crd)["properties"][part]["x-kubernetes-validations"]
    [rule] = rules
    return rule


def test_the_grpc_port_rules_name_the_field_and_guard_against_missing_fields(
    crd: dict[str, Any],
) -> None:
    for part, message in (("server", SERVER_GRPC_PORT_CLASH), ("service", SERVICE_GRPC_PORT_CLASH)):
        rule = port_rule(crd, part)
        assert rule["fieldPath"] == ".grpcPort"
        assert rule["message"] == message
        assert rule["message"].startswith(f"spec.{part}.grpcPort must differ from spec.{part}.port")
        assert "has(self.port)" in rule["rule"] and "has(self.grpcPort)" in rule["rule"]
    assert "self.grpcPort == 0" in port_rule(crd, "service")["rule"]


def test_the_grpc_ports_are_bounded_like_the_crd_says(crd: dict[str, Any]) -> None:
    server = spec_schema(crd)["properties"]["server"]["properties"]["grpcPort"]
    service = spec_schema(crd)["properties"]["service"]["properties"]["grpcPort"]
    assert (server["default"], server["minimum"], server["maximum"]) == (8081, 1024, 65535)
    assert (service["default"], service["minimum"], service["maximum"]) == (9000, 0, 65535)
    assert server["format"] == service["format"] == "int32"
    assert (
        "0 turns gRPC off: the server does not listen for it and neither the Service nor the "
        "container gets a grpc port." in service["description"]
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"server": {"grpcPort": 8080}}, SERVER_GRPC_PORT_CLASH),
        ({"server": {"port": 8081}}, SERVER_GRPC_PORT_CLASH),
        ({"service": {"grpcPort": 80}}, SERVICE_GRPC_PORT_CLASH),
        ({"service": {"port": 9000}}, SERVICE_GRPC_PORT_CLASH),
    ],
)
def test_the_parser_refuses_a_grpc_port_equal_to_the_http_port_with_the_crds_message(
    spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        make_mlmodel({"model": {"uri": "s3://b/iris"}, **spec})
    assert message in str(refused.value)


def test_the_parser_accepts_grpc_off_and_reads_the_ports() -> None:
    on = make_mlmodel({"model": {"uri": "s3://b/iris"}})
    assert (on.spec.server.grpc_port, on.spec.service.grpc_port, on.spec.grpc_container_port) == (
        8081,
        9000,
        8081,
    )
    off = make_mlmodel({"model": {"uri": "s3://b/iris"}, "service": {"grpcPort": 0}})
    assert (off.spec.service.grpc, off.spec.grpc_container_port) == (False, None)
    # with gRPC off, spec.server.grpcPort is unused: an object from before grpcPort existed
    # with spec.server.port 8081 (the new default) can be served by turning gRPC off
    legacy = {"model": {"uri": "s3://b/iris"}, "server": {"port": 8081}, "service": {"grpcPort": 0}}
    assert make_mlmodel(legacy).spec.grpc_container_port is None
