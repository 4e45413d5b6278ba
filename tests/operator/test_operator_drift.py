"""Drift detection: re-apply only when a field the operator owns differs (no cluster)."""

from __future__ import annotations

from typing import Any

from mlmodel_operator.drift import drift, drifted_paths, owned_but_unwanted

MANAGER = "mlmodel-operator"


def live_with(fields: dict[str, Any], **body: Any) -> dict[str, Any]:
    managed = [
        {"manager": MANAGER, "operation": "Apply", "fieldsV1": fields},
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "subresource": "status",
            "fieldsV1": {"f:status": {}},
        },
    ]
    return {"metadata": {"managedFields": managed, **body.pop("metadata", {})}, **body}


def test_fields_defaulted_or_added_by_others_are_not_drift() -> None:
    desired = {
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "server", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}
                    ]
                }
            },
        }
    }
    live = {
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {
                "spec": {
                    "dnsPolicy": "ClusterFirst",
                    "containers": [
                        {"name": "sidecar"},
                        {
                            "name": "server",
                            "terminationMessagePath": "/dev/termination-log",
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                        },
                    ],
                }
            },
        }
    }
    assert drifted_paths(desired, live) == []


def test_a_hand_edited_value_is_drift_and_names_the_field() -> None:
    desired = {
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [{"name": "server", "image": "mlmodel-server:1"}]}},
        }
    }
    live = {
        "spec": {
            "replicas": 7,
            "template": {"spec": {"containers": [{"name": "server", "image": "evil:latest"}]}},
        }
    }
    assert drifted_paths(desired, live) == [
        ".spec.replicas",
        ".spec.template.spec.containers[name=server].image",
    ]


def test_a_deleted_field_or_element_is_drift() -> None:
    desired = {"spec": {"ports": [{"name": "http", "port": 80}], "type": "ClusterIP"}}
    assert drifted_paths(desired, {"spec": {"ports": [], "type": "ClusterIP"}}) == [
        ".spec.ports[name=http]"
    ]
    assert drifted_paths(desired, {"spec": {"ports": [{"name": "http", "port": 80}]}}) == [
        ".spec.type"
    ]


def test_quantities_compare_by_value_and_types_matter_otherwise() -> None:
    assert drifted_paths({"cpu": "0.5", "memory": "1Gi"}, {"cpu": "500m", "memory": "1024Mi"}) == []
    assert drifted_paths({"flag": True}, {"flag": "true"}) == [".flag"]
    assert drifted_paths({"image": "a:1"}, {"image": "a:2"}) == [".image"]


def test_atomic_lists_must_match_exactly() -> None:
    assert drifted_paths({"drop": ["ALL"]}, {"drop": ["ALL"]}) == []
    assert drifted_paths({"drop": ["ALL"]}, {"drop": ["ALL", "NET_RAW"]}) == [".drop"]


def test_a_field_the_operator_owns_but_no_longer_wants_is_drift() -> None:
    fields = {
        "f:spec": {
            "f:replicas": {},
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"server"}': {
                            ".": {},
                            "f:name": {},
                            "f:resources": {"f:limits": {}},
                        }
                    }
                }
            },
        }
    }
    live = live_with(
        fields,
        spec={
            "replicas": 3,
            "template": {
                "spec": {"containers": [{"name": "server", "resources": {"limits": {"cpu": "1"}}}]}
            },
        },
    )
    autoscaled = {"spec": {"template": {"spec": {"containers": [{"name": "server"}]}}}}
    assert drift(autoscaled, live, MANAGER) == [
        ".spec.replicas",
        '.spec.template.spec.containers[{"name":"server"}].resources',
    ]


def test_converged_child_has_no_drift() -> None:
    fields = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:ports": {
                'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:protocol": {}}
            },
        },
    }
    desired = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"replicas": 1, "ports": [{"port": 80, "protocol": "TCP"}]},
    }
    live = live_with(
        fields,
        metadata={"labels": {"app": "x", "other": "y"}},
        spec={"replicas": 1, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
    )
    assert drift(desired, live, MANAGER) == []


def test_set_values_the_operator_owns_must_still_be_wanted() -> None:
    assert owned_but_unwanted({"f:drop": {'v:"ALL"': {}}}, {"drop": ["ALL"]}) == []
    assert owned_but_unwanted({"f:drop": {'v:"NET_RAW"': {}}}, {"drop": ["ALL"]}) == [
        '.drop["NET_RAW"]'
    ]
