"""Drift detection: re-apply only when a field the operator owns differs (no cluster)."""

from __future__ import annotations

import copy
import json
from typing import Any

from operator_testlib import make_mlmodel

from mlmodel_operator.drift import drift, drifted_paths, owned_but_unwanted
from mlmodel_operator.render import render
from mlmodel_operator.settings import OperatorSettings

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


def test_an_empty_value_the_api_server_leaves_out_is_not_drift() -> None:
    """`omitempty`: an env var's value "" and a toleration's value "" come back without the
    field; counted as drift, the same Deployment was applied (and an Event posted) every
    drift round."""
    container = {"name": "server", "env": [{"name": "FOO", "value": ""}], "args": []}
    toleration = {"key": "k", "operator": "Exists", "value": ""}
    desired = {"spec": {"template": {"spec": {
        "containers": [container], "tolerations": [toleration], "nodeSelector": {}}}}}  # fmt: skip
    live = {"spec": {"template": {"spec": {
        "containers": [{"name": "server", "env": [{"name": "FOO"}]}],
        "tolerations": [{"key": "k", "operator": "Exists"}]}}}}  # fmt: skip
    assert drifted_paths(desired, live) == []
    # a value that is not empty, or an empty one where the live object has another, still is
    live["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "bar"
    assert drifted_paths(desired, live) == [
        ".spec.template.spec.containers[name=server].env[name=FOO].value"
    ]


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


# --- the gRPC ports: real renders against live objects as server-side apply leaves them

# The list-map keys server-side apply uses for the lists the operator renders (the API's
# x-kubernetes-list-map-keys): container ports by containerPort+protocol, Service ports by
# port+protocol, not by name.
_LIST_KEYS = {
    "containers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "ownerReferences": ("uid",),
}


def applied_fields(value: Any, field: str = "") -> dict[str, Any]:
    """fieldsV1 as server-side apply records an applied manifest (list elements by key)."""
    if isinstance(value, dict):
        return {f"f:{key}": applied_fields(sub, key) for key, sub in value.items()}
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        if field == "ports":
            keys: tuple[str, ...] = (
                ("containerPort", "protocol")
                if "containerPort" in value[0]
                else ("port", "protocol")
            )
        else:
            keys = _LIST_KEYS[field]
        return {
            "k:" + json.dumps({k: item[k] for k in keys}, separators=(",", ":"), sort_keys=True): {
                ".": {},
                **applied_fields(item),
            }
            for item in value
        }
    if isinstance(value, list):
        return {f"v:{json.dumps(item)}": {} for item in value}
    return {}


def as_applied(manifest: dict[str, Any]) -> dict[str, Any]:
    """`manifest` live after an apply: the operator's managedFields plus fields the API server
    defaults (which are no drift)."""
    live = copy.deepcopy(manifest)
    fields = applied_fields({k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")})
    live["metadata"]["managedFields"] = [
        {"manager": MANAGER, "operation": "Apply", "fieldsV1": fields}
    ]
    if manifest["kind"] == "Service":
        live["spec"].update(clusterIP="10.0.0.7", sessionAffinity="None", ipFamilies=["IPv4"])
    else:
        live["spec"]["progressDeadlineSeconds"] = 600
        for c in live["spec"]["template"]["spec"]["containers"]:
            c["terminationMessagePath"] = "/dev/termination-log"
    return live


def children(spec: dict[str, Any], settings: OperatorSettings) -> dict[str, dict[str, Any]]:
    manifests = render(
        make_mlmodel({"model": {"uri": "s3://b/iris", "sha256": "a" * 64}, **spec}), settings
    )
    return {m["kind"]: m for m in manifests if m["kind"] in ("Deployment", "Service")}


def without_grpc(manifest: dict[str, Any]) -> dict[str, Any]:
    """What the operator rendered before the gRPC port existed."""
    old = copy.deepcopy(manifest)
    if old["kind"] == "Service":
        old["spec"]["ports"] = [p for p in old["spec"]["ports"] if p["name"] != "grpc"]
    else:
        [c] = old["spec"]["template"]["spec"]["containers"]
        c["ports"] = [p for p in c["ports"] if p["name"] != "grpc"]
        c["env"] = [e for e in c["env"] if e["name"] != "MODEL_SERVER_GRPC_PORT"]
    return old


CONTAINER = ".spec.template.spec.containers[name=server]"


def test_a_child_from_before_grpc_is_updated_once_and_then_left_alone(
    settings: OperatorSettings,
) -> None:
    new = children({}, settings)
    old_live = {kind: as_applied(without_grpc(m)) for kind, m in new.items()}
    assert drift(new["Service"], old_live["Service"], MANAGER) == [".spec.ports[name=grpc]"]
    assert drift(new["Deployment"], old_live["Deployment"], MANAGER) == [
        f"{CONTAINER}.ports[name=grpc]",
        f"{CONTAINER}.env[name=MODEL_SERVER_GRPC_PORT]",
    ]
    for kind, manifest in new.items():  # applied once: converged
        assert drift(manifest, as_applied(manifest), MANAGER) == [], kind
    off = children({"service": {"grpcPort": 0}}, settings)
    assert drift(off["Service"], old_live["Service"], MANAGER) == []  # gRPC off: Service as was


def test_turning_grpc_off_removes_the_ports_the_operator_owns(settings: OperatorSettings) -> None:
    live = {kind: as_applied(m) for kind, m in children({}, settings).items()}
    off = children({"service": {"grpcPort": 0}}, settings)
    assert drift(off["Service"], live["Service"], MANAGER) == [
        '.spec.ports[{"port":9000,"protocol":"TCP"}]'
    ]
    assert drift(off["Deployment"], live["Deployment"], MANAGER) == [
        f"{CONTAINER}.env[name=MODEL_SERVER_GRPC_PORT].value",
        '.spec.template.spec.containers[{"name":"server"}].ports[{"containerPort":8081,"protocol":"TCP"}]',
    ]
    for kind, manifest in off.items():
        assert drift(manifest, as_applied(manifest), MANAGER) == [], kind


def test_a_moved_grpc_port_is_drift_on_the_new_and_the_old_port(
    settings: OperatorSettings,
) -> None:
    live = {kind: as_applied(m) for kind, m in children({}, settings).items()}
    moved = children({"server": {"grpcPort": 8500}, "service": {"grpcPort": 50051}}, settings)
    assert drift(moved["Service"], live["Service"], MANAGER) == [
        ".spec.ports[name=grpc].port",
        '.spec.ports[{"port":9000,"protocol":"TCP"}]',
    ]
    assert drift(moved["Deployment"], live["Deployment"], MANAGER) == [
        f"{CONTAINER}.ports[name=grpc].containerPort",
        f"{CONTAINER}.env[name=MODEL_SERVER_GRPC_PORT].value",
        '.spec.template.spec.containers[{"name":"server"}].ports[{"containerPort":8081,"protocol":"TCP"}]',
    ]
