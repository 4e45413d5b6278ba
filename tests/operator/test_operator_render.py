"""render(): pure, deterministic manifests for an MLModel (no cluster)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_testlib import make_mlmodel, mlmodel_body, sample_mlmodels

from mlmodel_operator import contract
from mlmodel_operator.render import render, render_deployment, unwanted_kinds
from mlmodel_operator.render.meta import DIGEST_ANNOTATION
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings

GOLDEN = Path(__file__).parent / "golden"
SHA_A = "a" * 64
SHA_B = "b" * 64


def dump(manifests: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(manifests, sort_keys=False)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(deployment)["env"]}


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def digest_annotation(deployment: dict[str, Any]) -> str | None:
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    value: str | None = annotations.get(DIGEST_ANNOTATION)
    return value


@pytest.mark.parametrize("sample", sorted(sample_mlmodels()))
def test_samples_render_to_their_golden_manifests(sample: str, settings: OperatorSettings) -> None:
    doc = sample_mlmodels()[sample]
    body = mlmodel_body(doc["spec"], name=doc["metadata"]["name"])
    rendered = dump(render(MLModel.from_body(body), settings))
    golden = GOLDEN / f"{sample}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(rendered)
    assert golden.exists(), f"missing {golden}; run with UPDATE_GOLDEN=1 once and review it"
    assert rendered == golden.read_text(), f"render of {sample} differs from {golden}"


@pytest.mark.parametrize("sample", sorted(sample_mlmodels()))
def test_rendering_twice_gives_identical_bytes_and_leaves_input_alone(
    sample: str, settings: OperatorSettings
) -> None:
    doc = sample_mlmodels()[sample]
    mlmodel = MLModel.from_body(mlmodel_body(doc["spec"], name=doc["metadata"]["name"]))
    before = mlmodel.model_dump()
    first = render(mlmodel, settings, digest=SHA_A)
    first_bytes = dump(first)
    for manifest in first:  # mutating one result must not leak into the next render
        manifest["spec"].clear()
    assert dump(render(mlmodel, settings, digest=SHA_A)) == first_bytes
    assert mlmodel.model_dump() == before


def test_hpa_owns_replicas_when_autoscaling_is_on(settings: OperatorSettings) -> None:
    spec = {
        "model": {"uri": "pvc://models/iris"},
        "replicas": 3,
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5},
    }
    kinds = by_kind(render(make_mlmodel(spec), settings))
    assert "replicas" not in kinds["Deployment"]["spec"]
    hpa = kinds["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "iris",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    target = hpa["spec"]["metrics"][0]["resource"]["target"]
    assert target == {"type": "Utilization", "averageUtilization": 80}


def test_deployment_owns_replicas_and_no_hpa_when_autoscaling_is_off(
    settings: OperatorSettings,
) -> None:
    mlmodel = make_mlmodel({"model": {"uri": "pvc://models/iris"}, "replicas": 3})
    kinds = by_kind(render(mlmodel, settings))
    assert kinds["Deployment"]["spec"]["replicas"] == 3
    assert "HorizontalPodAutoscaler" not in kinds
    assert ("autoscaling/v2", "HorizontalPodAutoscaler") in unwanted_kinds(mlmodel, settings)


def test_hpa_behavior_is_passed_through_unchanged(settings: OperatorSettings) -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 30,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
    }
    spec = {
        "model": {"uri": "pvc://models/iris"},
        "autoscaling": {"maxReplicas": 4, "behavior": copy.deepcopy(behavior)},
    }
    hpa = by_kind(render(make_mlmodel(spec), settings))["HorizontalPodAutoscaler"]
    assert hpa["spec"]["behavior"] == behavior


@pytest.mark.parametrize(
    ("spec_extra", "wanted"),
    [
        ({"replicas": 1}, False),
        ({"replicas": 0}, False),
        ({"replicas": 2}, True),
        ({"autoscaling": {"minReplicas": 1, "maxReplicas": 5}}, False),
        ({"autoscaling": {"minReplicas": 2, "maxReplicas": 5}}, True),
    ],
)
def test_pdb_exists_only_when_more_than_one_replica_is_guaranteed(
    spec_extra: dict[str, Any], wanted: bool, settings: OperatorSettings
) -> None:
    kinds = by_kind(render(make_mlmodel({"model": {"uri": "pvc://m/x"}, **spec_extra}), settings))
    assert ("PodDisruptionBudget" in kinds) is wanted
    if wanted:
        assert kinds["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_digest_annotation_changes_only_when_the_model_changes(
    settings: OperatorSettings,
) -> None:
    base = {"model": {"uri": "s3://bucket/iris", "sha256": SHA_A}, "replicas": 1}
    other_non_model = {
        **base,
        "replicas": 4,
        "server": {"workers": 3, "logLevel": "debug", "grpcPort": 9091},
        "service": {"port": 9000, "grpcPort": 9001},
    }
    new_model = {**base, "model": {"uri": "s3://bucket/iris", "sha256": SHA_B}}
    first = render_deployment(make_mlmodel(base), settings, SHA_A)
    scaled = render_deployment(make_mlmodel(other_non_model), settings, SHA_A)
    rolled = render_deployment(make_mlmodel(new_model), settings, SHA_B)
    assert digest_annotation(first) == SHA_A
    assert digest_annotation(scaled) == SHA_A
    assert digest_annotation(rolled) == SHA_B


def test_observed_card_digest_rolls_pods_when_sha256_is_not_pinned(
    settings: OperatorSettings,
) -> None:
    mlmodel = make_mlmodel({"model": {"uri": "https://models.example/iris"}})
    old = by_kind(render(mlmodel, settings, digest=SHA_A))["Deployment"]
    new = by_kind(render(mlmodel, settings, digest=SHA_B))["Deployment"]
    unknown = by_kind(render(mlmodel, settings))["Deployment"]
    assert (digest_annotation(old), digest_annotation(new)) == (SHA_A, SHA_B)
    assert digest_annotation(unknown) is None


@pytest.mark.parametrize("card_digest", [SHA_A, None])
def test_a_card_digest_is_never_rendered_as_the_servers_pin(
    card_digest: str | None, settings: OperatorSettings
) -> None:
    """The card sits next to the file it describes: its digest must not let a pickle load."""
    for uri in ("https://models.example/iris", "s3://bucket/iris", "pvc://models/iris"):
        mlmodel = make_mlmodel({"model": {"uri": uri, "format": "joblib"}})
        for deployment in (
            by_kind(render(mlmodel, settings, digest=card_digest))["Deployment"],
            render_deployment(mlmodel, settings, card_digest),
        ):
            # present but empty: "not pinned", and no credentialsSecret key can fill it
            assert {"name": contract.ENV_MODEL_SHA256} in container(deployment)["env"]
            assert str(card_digest) not in str(deployment["spec"]["template"]["spec"])
            assert digest_annotation(deployment) == card_digest


def test_the_pin_variable_is_rendered_before_envfrom_can_supply_it(
    settings: OperatorSettings,
) -> None:
    """Kubernetes lets an explicit env entry win over envFrom: a Secret key can't pin."""
    mlmodel = make_mlmodel({"model": {"uri": "s3://bucket/iris", "credentialsSecret": "creds"}})
    c = container(render_deployment(mlmodel, settings))
    assert c["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert [e for e in c["env"] if e["name"] == contract.ENV_MODEL_SHA256] == [
        {"name": contract.ENV_MODEL_SHA256}
    ]


def test_a_pinned_sha256_is_rendered_as_the_pin_and_wins_over_the_card(
    settings: OperatorSettings,
) -> None:
    mlmodel = make_mlmodel({"model": {"uri": "s3://bucket/iris", "sha256": SHA_A}})
    for card_digest in (SHA_B, None):
        deployment = by_kind(render(mlmodel, settings, digest=card_digest))["Deployment"]
        assert digest_annotation(deployment) == SHA_A
        assert env_of(deployment)[contract.ENV_MODEL_SHA256] == SHA_A


def test_pvc_uri_mounts_the_claim_read_only_and_passes_a_file_uri(
    settings: OperatorSettings,
) -> None:
    deployment = render_deployment(
        make_mlmodel({"model": {"uri": "pvc://models/iris/v2"}}), settings
    )
    pod = deployment["spec"]["template"]["spec"]
    assert {
        "name": "model",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in pod["volumes"]
    assert {"name": "model", "mountPath": contract.PVC_MOUNT_PATH, "readOnly": True} in container(
        deployment
    )["volumeMounts"]
    assert env_of(deployment)[contract.ENV_MODEL_URI] == "file:///mnt/models/iris/v2"


def test_remote_uri_gets_only_the_scratch_volume(settings: OperatorSettings) -> None:
    deployment = render_deployment(make_mlmodel({"model": {"uri": "s3://bucket/iris"}}), settings)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}}]
    assert container(deployment)["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}]
    assert env_of(deployment)[contract.ENV_MODEL_URI] == "s3://bucket/iris"


def test_server_contract_env_probes_and_port(settings: OperatorSettings) -> None:
    spec = {
        "model": {"uri": "s3://b/iris", "format": "onnx"},
        "server": {"port": 9090, "workers": 4, "logLevel": "warning"},
    }
    deployment = render_deployment(make_mlmodel(spec), settings)
    env = env_of(deployment)
    assert env == {
        contract.ENV_MODEL_URI: "s3://b/iris",
        contract.ENV_MODEL_NAME: "iris",
        contract.ENV_MODEL_SHA256: "",
        contract.ENV_MODEL_FORMAT: "onnx",
        contract.ENV_HOST: "0.0.0.0",
        contract.ENV_PORT: "9090",
        contract.ENV_GRPC_PORT: "8081",
        contract.ENV_WORKERS: "4",
        contract.ENV_LOG_LEVEL: "warning",
    }
    c = container(deployment)
    assert c["ports"] == [
        {"name": "http", "containerPort": 9090, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}


def test_grpc_ports_follow_the_spec(settings: OperatorSettings) -> None:
    spec = {
        "model": {"uri": "s3://b/iris"},
        "server": {"port": 8000, "grpcPort": 8500},
        "service": {"port": 8080, "grpcPort": 50051, "type": "NodePort"},
    }
    kinds = by_kind(render(make_mlmodel(spec), settings))
    deployment, service = kinds["Deployment"], kinds["Service"]
    assert env_of(deployment)[contract.ENV_GRPC_PORT] == "8500"
    assert container(deployment)["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8500, "protocol": "TCP"},
    ]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"},
        {
            "name": "grpc",
            "port": 50051,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
    ]


@pytest.mark.parametrize("server", [{}, {"grpcPort": 9500}, {"port": 8081}])
def test_service_grpc_port_0_turns_grpc_off_everywhere(
    server: dict[str, Any], settings: OperatorSettings
) -> None:
    """No grpc port on the container or the Service, and the server told not to listen (its own
    default would); the HTTP side and the probes are as with gRPC on. spec.server.grpcPort is
    then unused, so it may even equal spec.server.port (an object from before grpcPort)."""
    spec = {"model": {"uri": "s3://b/iris"}, "server": server, "service": {"grpcPort": 0}}
    kinds = by_kind(render(make_mlmodel(spec), settings))
    deployment, service = kinds["Deployment"], kinds["Service"]
    http_port = server.get("port", 8080)
    assert env_of(deployment)[contract.ENV_GRPC_PORT] == "0"
    assert env_of(deployment)[contract.ENV_PORT] == str(http_port)
    c = container(deployment)
    assert c["ports"] == [{"name": "http", "containerPort": http_port, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["port"] == "http"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert "grpc" not in str(service) and "grpc" not in str(c["ports"])


def test_the_service_grpc_port_alone_does_not_roll_the_pods(settings: OperatorSettings) -> None:
    """Moving the Service's port changes the Service only; turning gRPC on or off, or moving
    the container's port, changes the pod template (the server must listen, or stop)."""
    base = {"model": {"uri": "s3://b/iris", "sha256": SHA_A}}

    def template(**changes: Any) -> Any:
        spec = {**base, **changes}
        return render_deployment(make_mlmodel(spec), settings, SHA_A)["spec"]["template"]

    assert template(service={"grpcPort": 9001}) == template()
    assert template(service={"grpcPort": 0}) != template()
    assert template(server={"grpcPort": 8082}) != template()


def test_user_env_comes_after_the_contract_and_credentials_come_from_the_secret(
    settings: OperatorSettings,
) -> None:
    spec = {
        "model": {"uri": "s3://b/iris", "credentialsSecret": "s3-creds"},
        "server": {
            "env": [
                {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
            ]
        },
    }
    c = container(render_deployment(make_mlmodel(spec), settings))
    assert c["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert c["env"][-2:] == [
        {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
    ]
    assert "s3-creds" not in str(c["env"])


def test_pods_run_restricted(settings: OperatorSettings) -> None:
    deployment = render_deployment(make_mlmodel({"model": {"uri": "s3://b/iris"}}), settings)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert container(deployment)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_children_are_named_labelled_and_owned_by_the_mlmodel(settings: OperatorSettings) -> None:
    spec = {"model": {"uri": "s3://b/iris"}, "autoscaling": {"minReplicas": 2, "maxReplicas": 3}}
    for manifest in render(make_mlmodel(spec, name="fraud"), settings):
        meta = manifest["metadata"]
        assert (meta["name"], meta["namespace"]) == ("fraud", "models")
        assert meta["labels"]["app.kubernetes.io/instance"] == "fraud"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "mlmodel-operator"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "mlops.dev/v1alpha1",
                "kind": "MLModel",
                "name": "fraud",
                "uid": "uid-fraud",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_default_image_comes_from_settings_unless_the_spec_names_one() -> None:
    custom = OperatorSettings(default_image="registry.local/server:1")
    plain = make_mlmodel({"model": {"uri": "s3://b/iris"}})
    pinned = make_mlmodel({"model": {"uri": "s3://b/iris"}, "server": {"image": "mine:2"}})
    assert container(render_deployment(plain, custom))["image"] == "registry.local/server:1"
    assert container(render_deployment(pinned, custom))["image"] == "mine:2"


def test_models_served_from_their_onnx_file_get_the_slim_image() -> None:
    custom = OperatorSettings(default_image="full:1", slim_image="slim:1")
    onnx = make_mlmodel({"model": {"uri": "s3://b/iris", "format": "onnx"}})
    skops = make_mlmodel({"model": {"uri": "s3://b/iris", "format": "skops"}})
    named = make_mlmodel(
        {"model": {"uri": "s3://b/iris", "format": "onnx"}, "server": {"image": "mine:2"}}
    )
    assert container(render_deployment(onnx, custom))["image"] == "slim:1"
    assert container(render_deployment(skops, custom))["image"] == "full:1"
    assert container(render_deployment(named, custom))["image"] == "mine:2"
    assert OperatorSettings().slim_image == "mlmodel-server:slim"
    no_slim = OperatorSettings(default_image="full:1", slim_image="")
    assert container(render_deployment(onnx, no_slim))["image"] == "full:1"


def test_the_drift_window_reaches_the_server_only_when_set(settings: OperatorSettings) -> None:
    def env(server: dict[str, object]) -> dict[str, str]:
        mlmodel = make_mlmodel({"model": {"uri": "s3://b/iris"}, "server": server})
        return env_of(render_deployment(mlmodel, settings))

    assert "MODEL_SERVER_DRIFT_WINDOW" not in env({})  # the server's default (1000)
    assert env({"driftWindow": 0})["MODEL_SERVER_DRIFT_WINDOW"] == "0"
    assert env({"driftWindow": 5000})["MODEL_SERVER_DRIFT_WINDOW"] == "5000"


def test_a_card_that_serves_its_checked_onnx_file_gets_the_slim_image() -> None:
    custom = OperatorSettings(default_image="full:1", slim_image="slim:1")
    unpinned = make_mlmodel({"model": {"uri": "s3://b/iris"}})

    def image(mlmodel: MLModel, model_format: str | None) -> str:
        rendered = by_kind(render(mlmodel, custom, digest="b" * 64, model_format=model_format))
        return str(container(rendered["Deployment"])["image"])

    assert image(unpinned, "onnx") == "slim:1"  # cards.resolve_model: the card's checked ONNX
    assert image(unpinned, "skops") == "full:1"
    assert image(unpinned, None) == "full:1"  # not known (yet): the image that serves any file
    named = make_mlmodel({"model": {"uri": "s3://b/iris"}, "server": {"image": "mine:2"}})
    assert image(named, "onnx") == "mine:2"


def test_service_defaults_to_cluster_ip_on_port_80_and_grpc_on_9000(
    settings: OperatorSettings,
) -> None:
    service = by_kind(render(make_mlmodel({"model": {"uri": "s3://b/i"}}), settings))["Service"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {
            "name": "grpc",
            "port": 9000,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
    ]


def test_pods_drain_before_stopping_and_report_their_crash_output(
    settings: OperatorSettings,
) -> None:
    c = container(render_deployment(make_mlmodel({"model": {"uri": "s3://b/iris"}}), settings))
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 10}}}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def resources_of(spec_resources: dict[str, Any] | None, settings: OperatorSettings) -> Any:
    spec: dict[str, Any] = {"model": {"uri": "s3://b/iris"}}
    if spec_resources is not None:
        spec["server"] = {"resources": spec_resources}
    return container(render_deployment(make_mlmodel(spec), settings))["resources"]


def scratch_volume(deployment: dict[str, Any]) -> dict[str, Any]:
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    [scratch] = [v for v in volumes if v["name"] == "scratch"]
    return dict(scratch["emptyDir"])


def test_pods_get_default_requests_and_limits_when_the_spec_names_none(
    settings: OperatorSettings,
) -> None:
    assert resources_of(None, settings) == {
        "limits": {"ephemeral-storage": "2Gi", "memory": "1Gi"},
        "requests": {"cpu": "250m", "ephemeral-storage": "0", "memory": "256Mi"},
    }


def test_each_key_the_user_sets_wins_and_the_others_keep_the_defaults(
    settings: OperatorSettings,
) -> None:
    user = {"requests": {"memory": "512Mi", "nvidia.com/gpu": 1}, "limits": {"cpu": 2}}
    assert resources_of(user, settings) == {
        "limits": {"cpu": 2, "ephemeral-storage": "2Gi", "memory": "1Gi"},
        "requests": {
            "cpu": "250m",  # the HPA's basis stays even when the user sets other keys
            "ephemeral-storage": "0",
            "memory": "512Mi",
            "nvidia.com/gpu": 1,
        },
    }


def test_a_default_never_contradicts_the_users_own_value(settings: OperatorSettings) -> None:
    small_limits = {"limits": {"cpu": "100m", "memory": "128Mi"}}
    big_requests = {"requests": {"memory": "3Gi", "ephemeral-storage": "5Gi"}}
    lowered = resources_of(small_limits, settings)
    raised = resources_of(big_requests, settings)
    assert lowered["requests"]["cpu"] == "100m"  # default 250m lowered to the user's limit
    assert lowered["requests"]["memory"] == "128Mi"
    assert raised["limits"]["memory"] == "3Gi"  # default 1Gi raised to the user's request
    assert raised["limits"]["ephemeral-storage"] == "5Gi"


def test_a_users_own_contradiction_is_left_for_the_api_server_to_refuse(
    settings: OperatorSettings,
) -> None:
    user = {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}
    resources = resources_of(user, settings)
    assert (resources["requests"]["memory"], resources["limits"]["memory"]) == ("2Gi", "1Gi")


def test_a_value_that_is_no_quantity_is_left_for_the_api_server_to_refuse(
    settings: OperatorSettings,
) -> None:
    resources = resources_of({"limits": {"memory": "1.2.3"}}, settings)
    assert resources["limits"]["memory"] == "1.2.3"
    assert resources["requests"]["memory"] == "256Mi"


def test_the_scratch_volumes_size_limit_follows_the_containers_ephemeral_storage_limit(
    settings: OperatorSettings,
) -> None:
    plain = make_mlmodel({"model": {"uri": "s3://b/iris"}})
    bigger = make_mlmodel(
        {
            "model": {"uri": "s3://b/iris"},
            "server": {"resources": {"limits": {"ephemeral-storage": "20Gi"}}},
        }
    )
    assert scratch_volume(render_deployment(plain, settings)) == {"sizeLimit": "2Gi"}
    assert scratch_volume(render_deployment(bigger, settings)) == {"sizeLimit": "20Gi"}
    unbounded = settings.model_copy(update={"default_ephemeral_storage_limit": ""})
    assert scratch_volume(render_deployment(plain, unbounded)) == {}


def test_the_defaults_come_from_settings_and_an_empty_one_renders_nothing() -> None:
    custom = OperatorSettings(
        default_cpu_request="1",
        default_cpu_limit="2",
        default_memory_request="",
        default_memory_limit="",
        default_ephemeral_storage_request="",
        default_ephemeral_storage_limit="",
    )
    assert resources_of(None, custom) == {"limits": {"cpu": "2"}, "requests": {"cpu": "1"}}
