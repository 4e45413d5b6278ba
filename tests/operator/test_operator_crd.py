"""The CRD and the parsed models agree (no cluster); the API server checks the rest."""

from __future__ import annotations

from typing import Any

import pytest
from operator_testlib import make_mlmodel, sample_mlmodels
from pydantic import BaseModel, ValidationError

from mlmodel_operator.resource import MLModel, MLModelSpec


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


def test_printer_columns_show_ready_replicas_model_url_and_age(crd: dict[str, Any]) -> None:
    columns = [
        c["name"] for c in version(crd)["additionalPrinterColumns"] if c.get("priority", 0) == 0
    ]
    assert columns == ["Ready", "Replicas", "Model", "URL", "Age"]


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
