"""The operator on a real API server: an MLModel becomes a Deployment, Service, PDB and HPA
that follow its spec, come back when edited or deleted by hand, and go away with it."""

from __future__ import annotations

import json

import pytest
from mlmodel_harness import SHA_A, Api, OperatorProcess, dump, mlmodel_yaml, wait_until

# the operator's pods turn Ready on kwok's fake nodes, without images or a reachable artifact
pytestmark = [pytest.mark.cluster, pytest.mark.fake_pods]


def replicas_of(api: Api, name: str) -> int | None:
    deployment = api.deployment(name)
    return None if deployment is None else deployment["spec"].get("replicas")


def test_create_makes_owned_children_and_reports_ready(api: Api, operator: OperatorProcess) -> None:
    api.apply(mlmodel_yaml("iris", replicas=2))
    body = wait_until("MLModel iris Ready", lambda: api.ready_body("iris"))
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert api.exists(kind, "iris"), kind
    assert not api.exists("HorizontalPodAutoscaler", "iris")
    deployment = api.deployment("iris")
    assert deployment is not None
    assert deployment["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "mlops.dev/v1alpha1",
            "kind": "MLModel",
            "name": "iris",
            "uid": body["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlmodel-operator"
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["mlops.dev/model-digest"] == SHA_A
    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"]) == (2, 2, 2)
    assert status["selector"] == (
        "app.kubernetes.io/instance=iris,app.kubernetes.io/name=mlmodel-server"
    )
    assert status["url"] == f"http://iris.{api.ns}.svc.cluster.local"
    assert status["modelDigest"] == SHA_A
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Available": "True",
        "Progressing": "False",
        "Degraded": "False",
    }
    assert "kopf" not in status and set(status) <= {
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "availableReplicas",
        "replicaSummary",
        "selector",
        "url",
        "modelDigest",
        "runtime",
        "conditions",
    }
    # pinned without spec.model.format: which file the pin names is not the operator's to know
    assert status["runtime"] == {"image": template["spec"]["containers"][0]["image"]}
    events = wait_until(
        "Created events", lambda: [e for e in api.events_for("iris") if e.startswith("Created")]
    )
    assert "Created: Created Deployment iris" in events


def test_printer_columns_show_ready_replicas_model_and_url(
    api: Api, operator: OperatorProcess
) -> None:
    api.apply(mlmodel_yaml("iris", replicas=2))
    expected = {
        "NAME": "iris",
        "READY": "True",
        "REPLICAS": "2/2",
        "MODEL": "http://127.0.0.1:9/models/iris",
        "CANDIDATE": "",  # no spec.candidate: no share, no phase (kubectl leaves them blank)
        "PHASE": "",
        "URL": f"http://iris.{api.ns}.svc.cluster.local",
    }

    def row() -> dict[str, str]:
        """The first row, column by column (kubectl aligns values under their headers)."""
        lines = api.cluster.kubectl("get", "-n", api.ns, "mlm", "iris").stdout.splitlines()
        header = lines[0]
        starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
        bounds = [*starts[1:], None]
        return {
            header[a:b].strip(): lines[1][a:b].strip() for a, b in zip(starts, bounds, strict=True)
        }

    seen: list[dict[str, str]] = []

    def shown() -> bool:
        seen[:] = [{k: v for k, v in row().items() if k != "AGE"}]
        return seen[0] == expected

    try:
        wait_until("kubectl get shows it Ready at 2/2", shown)
    except BaseException:
        print(f"kubectl get showed: {seen}")  # what differed, beside pytest's own message
        raise
    assert list(row()) == ["NAME", "READY", "REPLICAS", "MODEL", "CANDIDATE", "PHASE", "URL", "AGE"]
    wide = api.cluster.kubectl("get", "-n", api.ns, "mlm", "iris", "-o", "wide").stdout
    assert "AllReplicasReady" in wide and SHA_A in wide


def test_spec_replicas_and_kubectl_scale_resize_the_deployment(
    api: Api, operator: OperatorProcess
) -> None:
    api.apply(mlmodel_yaml("iris", replicas=1))
    wait_until("Ready with 1 replica", lambda: api.is_ready("iris"))
    assert not api.exists("PodDisruptionBudget", "iris")
    api.apply(mlmodel_yaml("iris", replicas=2))
    wait_until("Deployment at 2 replicas", lambda: replicas_of(api, "iris") == 2)
    wait_until("PDB for 2 replicas", lambda: api.exists("PodDisruptionBudget", "iris"))
    api.cluster.kubectl("scale", "-n", api.ns, "mlm/iris", "--replicas=3")
    wait_until("Deployment at 3 replicas", lambda: replicas_of(api, "iris") == 3)
    wait_until(
        "Ready at 3/3",
        lambda: (b := api.ready_body("iris")) and b["status"]["readyReplicas"] == 3,
    )
    scale = json.loads(
        api.cluster.kubectl(
            "get", "-n", api.ns, "mlm/iris", "--subresource=scale", "-o", "json"
        ).stdout
    )
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (3, 3)
    assert scale["status"]["selector"] == api.mlmodel("iris")["status"]["selector"]
    api.cluster.kubectl("scale", "-n", api.ns, "mlm/iris", "--replicas=1")
    wait_until("PDB removed at 1 replica", lambda: not api.exists("PodDisruptionBudget", "iris"))


def test_autoscaling_on_adds_an_hpa_that_owns_replicas_and_off_removes_it(
    api: Api, operator: OperatorProcess
) -> None:
    api.apply(mlmodel_yaml("iris", replicas=3))
    wait_until("Ready at 3 replicas", lambda: api.is_ready("iris"))
    scaling = {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60}
    api.apply(mlmodel_yaml("iris", replicas=3, autoscaling=scaling))
    wait_until("HPA created", lambda: api.exists("HorizontalPodAutoscaler", "iris"))
    hpa = api.autoscaling.read_namespaced_horizontal_pod_autoscaler("iris", api.ns)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 5)
    assert hpa.spec.scale_target_ref.name == "iris"
    wait_until(
        "operator's applied Deployment without replicas",
        lambda: not _operator_applies_replicas(api),
    )
    # handed over without a reset to the default of 1 replica
    assert replicas_of(api, "iris") == 3
    api.apply(mlmodel_yaml("iris", replicas=2))
    wait_until("HPA deleted", lambda: not api.exists("HorizontalPodAutoscaler", "iris"))
    wait_until("Deployment back at spec.replicas", lambda: replicas_of(api, "iris") == 2)
    assert _operator_applies_replicas(api)


def _operator_applies_replicas(api: Api) -> bool:
    found = api.apps.read_namespaced_deployment("iris", api.ns)
    for entry in found.metadata.managed_fields or []:
        if (
            entry.manager == "mlmodel-operator"
            and entry.operation == "Apply"
            and not entry.subresource
        ):
            return "f:replicas" in entry.fields_v1.get("f:spec", {})
    return False


def test_children_edited_or_deleted_by_hand_are_restored(
    api: Api, operator: OperatorProcess
) -> None:
    api.apply(mlmodel_yaml("iris", replicas=2))
    wait_until("MLModel iris Ready", lambda: api.is_ready("iris"))
    api.cluster.kubectl(
        "patch",
        "-n",
        api.ns,
        "deployment/iris",
        "--type=json",
        "-p",
        json.dumps(
            [
                {"op": "replace", "path": "/spec/replicas", "value": 5},
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/image",
                    "value": "evil:1",
                },
            ]
        ),
    )
    wait_until(
        "Deployment restored",
        lambda: (
            (d := api.deployment("iris")) is not None
            and d["spec"]["replicas"] == 2
            and d["spec"]["template"]["spec"]["containers"][0]["image"] != "evil:1"
        ),
    )
    api.cluster.kubectl("delete", "-n", api.ns, "service/iris", "pdb/iris")
    wait_until("Service re-created", lambda: api.exists("Service", "iris"))
    wait_until("PDB re-created", lambda: api.exists("PodDisruptionBudget", "iris"))
    api.cluster.kubectl("delete", "-n", api.ns, "deployment/iris")
    wait_until(
        "Deployment re-created and Ready",
        lambda: api.exists("Deployment", "iris") and api.is_ready("iris"),
        timeout=90,
    )
    assert any(e.startswith("Updated: Updated Deployment iris") for e in api.events_for("iris"))


def test_deleting_the_mlmodel_garbage_collects_its_children(
    api: Api, operator: OperatorProcess
) -> None:
    api.apply(mlmodel_yaml("iris", replicas=2, autoscaling={"minReplicas": 2, "maxReplicas": 3}))
    wait_until("HPA created", lambda: api.exists("HorizontalPodAutoscaler", "iris"))
    api.cluster.kubectl("delete", "-n", api.ns, "mlm/iris", "--wait=true", "--timeout=60s")
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        wait_until(f"{kind} iris garbage-collected", lambda k=kind: not api.exists(k, "iris"))
    wait_until(
        "pods gone",
        lambda: (
            not api.core.list_namespaced_pod(
                api.ns, label_selector="app.kubernetes.io/instance=iris"
            ).items
        ),
    )


def test_a_same_named_child_it_does_not_own_is_left_alone_and_reported(
    api: Api, operator: OperatorProcess
) -> None:
    api.cluster.kubectl("create", "service", "clusterip", "iris", "-n", api.ns, "--tcp=80:9999")
    api.apply(mlmodel_yaml("iris", replicas=1))
    degraded = wait_until(
        "Degraded ChildNotOwned",
        lambda: (c := api.condition("iris", "Degraded")) and c["reason"] == "ChildNotOwned" and c,
    )
    assert degraded["status"] == "True"
    assert f"Service {api.ns}/iris exists and is not owned by MLModel iris" in degraded["message"]
    assert api.condition("iris", "Ready")["status"] == "False"
    service = api.core.read_namespaced_service("iris", api.ns)
    assert not service.metadata.owner_references
    assert service.spec.ports[0].target_port == 9999
    assert api.exists("Deployment", "iris"), dump(api.mlmodel("iris").get("status"))


def _service_ports(api: Api) -> list[tuple[str, int, str, str | None]]:
    service = api.core.read_namespaced_service("iris", api.ns)
    return [(p.name, p.port, p.target_port, p.app_protocol) for p in service.spec.ports]


def _container_ports(api: Api) -> tuple[list[tuple[str, int]], str | None]:
    deployment = api.deployment("iris")
    assert deployment is not None
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    ports = [(p["name"], p["containerPort"]) for p in container["ports"]]
    return ports, env.get("MODEL_SERVER_GRPC_PORT")


def test_grpc_ports_follow_the_spec_and_grpc_off_removes_them(
    api: Api, operator: OperatorProcess
) -> None:
    """Server-side apply merges ports by port (Service) and containerPort (pod) with protocol,
    not by name: a moved or dropped gRPC port must leave no old port behind."""
    h2c = "kubernetes.io/h2c"
    api.apply(mlmodel_yaml("iris", replicas=1))
    wait_until(
        "Service with http and grpc",
        lambda: _service_ports(api) == [("http", 80, "http", None), ("grpc", 9000, "grpc", h2c)],
    )
    assert _container_ports(api) == ([("http", 8080), ("grpc", 8081)], "8081")
    wait_until("MLModel iris Ready", lambda: api.is_ready("iris"))

    moved = {"server": {"grpcPort": 8500}, "service": {"grpcPort": 50051}}
    api.apply(mlmodel_yaml("iris", replicas=1, **moved))
    wait_until(
        "gRPC moved on the Service",
        lambda: _service_ports(api) == [("http", 80, "http", None), ("grpc", 50051, "grpc", h2c)],
    )
    wait_until(
        "gRPC moved in the pod template",
        lambda: _container_ports(api) == ([("http", 8080), ("grpc", 8500)], "8500"),
    )

    api.apply(mlmodel_yaml("iris", replicas=1, service={"grpcPort": 0}))
    wait_until(
        "no grpc port on the Service", lambda: _service_ports(api) == [("http", 80, "http", None)]
    )
    wait_until(
        "no grpc port in the pod template, the server told not to listen",
        lambda: _container_ports(api) == ([("http", 8080)], "0"),
    )
    wait_until("MLModel iris Ready without gRPC", lambda: api.is_ready("iris"))
