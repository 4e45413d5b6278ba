"""What the devcluster control plane does for real: CRDs with CEL, Deployments on kwok nodes,
garbage collection, HPA, RBAC and the API server's metrics."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster import metrics, waiting
from devcluster.cluster import Cluster, KubectlError

pytestmark = pytest.mark.cluster

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.devcluster.example.com
spec:
  group: devcluster.example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              replicas: {type: integer, minimum: 0}
              size: {type: string}
            x-kubernetes-validations:
            - rule: "self.size in ['small', 'large']"
              message: "size must be small or large"
              fieldPath: ".size"
          status:
            type: object
            properties:
              replicas: {type: integer}
"""


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` every 0.25 s until it returns something truthy; fail naming ``what`` at
    the deadline."""
    try:
        return waiting.wait_until(what, check, timeout, 0.25)
    except waiting.WaitTimeout as exc:
        pytest.fail(str(exc))


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def widget_crd(cluster: Cluster) -> str:
    """The Widget CRD, Established (and its storage ready for lists)."""
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    cluster.wait_established("widgets.devcluster.example.com")
    # right after Established, lists may get 429 "storage is (re)initializing" for a moment
    wait_until(
        "widgets to be listable",
        lambda: cluster.kubectl("get", "widgets", "-A", check=False).returncode == 0,
    )
    return "widgets.devcluster.example.com"


def widget(name: str, size: str, replicas: int = 1) -> str:
    """A Widget manifest."""
    return json.dumps(
        {
            "apiVersion": "devcluster.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"size": size, "replicas": replicas},
        }
    )


def test_cel_rule_rejects_a_bad_object_with_a_message_naming_the_field(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    with pytest.raises(KubectlError) as rejected:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("bad", "huge"))
    assert "spec.size" in rejected.value.stderr
    assert "size must be small or large" in rejected.value.stderr
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("good", "small"))


def test_crd_scale_and_status_subresources_work(
    cluster: Cluster, widget_crd: str, namespace: str
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=widget("w", "large"))
    cluster.kubectl("scale", "-n", namespace, "widget/w", "--replicas=3")
    patch = json.dumps({"status": {"replicas": 3}})
    cluster.kubectl(
        "patch", "-n", namespace, "widget/w", "--subresource=status", "--type=merge", "-p", patch
    )
    scale = json.loads(
        cluster.kubectl(
            "get", "-n", namespace, "widget/w", "--subresource=scale", "-o", "json"
        ).stdout
    )
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["replicas"] == 3


def deployment(name: str, replicas: int) -> client.V1Deployment:
    """A small Deployment (its pods run on kwok nodes: nothing is actually started)."""
    labels = {"app": name}
    container = client.V1Container(name="app", image="registry.invalid/app:1")
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )


def available_replicas(apps: client.AppsV1Api, namespace: str, name: str) -> int:
    """status.availableReplicas of a Deployment (0 when unset)."""
    status = apps.read_namespaced_deployment(name, namespace).status
    return int(status.available_replicas or 0) if status else 0


def test_deployment_on_kwok_nodes_becomes_available(cluster: Cluster, namespace: str) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("web", 2))
    wait_until("2 available replicas", lambda: available_replicas(apps, namespace, "web") == 2)
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector="app=web")
    assert len(pods.items) == 2
    for pod in pods.items:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name.startswith("kwok-node-")
        assert pod.status.pod_ip


def _owned_objects(cluster: Cluster, namespace: str) -> tuple[int, int]:
    replica_sets = client.AppsV1Api(cluster.api).list_namespaced_replica_set(
        namespace, label_selector="app=gc"
    )
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector="app=gc")
    return len(replica_sets.items), len(pods.items)


def test_deleting_a_deployment_garbage_collects_its_replicaset_and_pods(
    cluster: Cluster, namespace: str
) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("gc", 2))
    wait_until("the Deployment to be available", lambda: available_replicas(apps, namespace, "gc"))
    assert _owned_objects(cluster, namespace) == (1, 2)
    # background propagation: the garbage collector, not the client, removes the dependents
    apps.delete_namespaced_deployment(
        "gc", namespace, body=client.V1DeleteOptions(propagation_policy="Background")
    )
    wait_until(
        "the ReplicaSet and pods to be garbage-collected",
        lambda: _owned_objects(cluster, namespace) == (0, 0),
        timeout=180.0,  # the collector re-syncs its monitors when CRDs appear: it can lag
    )


def test_hpa_object_is_accepted_and_seen_by_the_hpa_controller(
    cluster: Cluster, namespace: str
) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("scaled", 1))
    hpa = client.V2HorizontalPodAutoscaler(
        metadata=client.V1ObjectMeta(name="scaled"),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name="scaled"
            ),
            min_replicas=1,
            max_replicas=3,
            metrics=[
                client.V2MetricSpec(
                    type="Resource",
                    resource=client.V2ResourceMetricSource(
                        name="cpu",
                        target=client.V2MetricTarget(type="Utilization", average_utilization=50),
                    ),
                )
            ],
        ),
    )
    autoscaling = client.AutoscalingV2Api(cluster.api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, hpa)

    def conditions() -> list[str]:
        status = autoscaling.read_namespaced_horizontal_pod_autoscaler("scaled", namespace).status
        return [c.type for c in (status.conditions or [])] if status else []

    # the controller-manager's HPA controller writes its conditions into the status
    assert "AbleToScale" in wait_until("HPA status conditions", conditions)


def _token_for(cluster: Cluster, namespace: str, service_account: str) -> str:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=service_account))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    response = core.create_namespaced_service_account_token(service_account, namespace, request)
    return str(response.status.token)


def _client_with_token(cluster: Cluster, token: str) -> client.ApiClient:
    admin = cluster.api.configuration
    configuration = client.Configuration()
    configuration.host = admin.host
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def test_service_account_without_a_role_is_denied(cluster: Cluster, namespace: str) -> None:
    token = _token_for(cluster, namespace, "nobody")
    with _client_with_token(cluster, token) as as_sa:
        core = client.CoreV1Api(as_sa)
        with pytest.raises(ApiException) as denied:
            core.list_namespaced_pod(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:nobody" in str(denied.value.body)
        # the same token works once RBAC grants it: the 403 came from authorization
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="pod-reader"),
                rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="nobody-reads-pods"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="nobody", namespace=namespace)
                ],
            ),
        )
        wait_until("the Role to take effect", lambda: _can_list_pods(core, namespace))


def _can_list_pods(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.list_namespaced_pod(namespace)
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def test_apiserver_metrics_count_write_requests(cluster: Cluster, namespace: str) -> None:
    def configmap_creates() -> float:
        text = cluster.apiserver_metrics()
        return metrics.request_total(text, verbs=["POST"], resource="configmaps")

    before = configmap_creates()
    core = client.CoreV1Api(cluster.api)
    for i in range(3):
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm-{i}"))
        core.create_namespaced_config_map(namespace, body)
    assert configmap_creates() >= before + 3
