"""An apply the API server refuses reaches status: a ValidatingAdmissionPolicy (built into the
API server) denies the rendered Deployment; the MLModel says ApplyRefused with the policy's
message, and clears on its own once the spec is fixed."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException
from mlmodel_harness import Api, mlmodel_yaml, wait_until

# the operator's pods turn Ready on kwok's fake nodes, without images or a reachable artifact
pytestmark = [pytest.mark.cluster, pytest.mark.fake_pods]

MESSAGE = "spec.replicas must be at most 3 in this namespace"


def policy(ns: str) -> str:
    return f"""
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: max-replicas-{ns}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: [apps]
        apiVersions: [v1]
        operations: [CREATE, UPDATE]
        resources: [deployments]
  validations:
    - expression: "!has(object.spec.replicas) || object.spec.replicas <= 3"
      message: "{MESSAGE}"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: max-replicas-{ns}}}
spec:
  policyName: max-replicas-{ns}
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {{kubernetes.io/metadata.name: {ns}}}
"""


def refuses_five_replicas(api: Api) -> bool:
    body = {
        "metadata": {"name": "probe"},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    try:
        api.apps.create_namespaced_deployment(api.ns, body, dry_run="All")
    except ApiException as exc:
        return MESSAGE in (exc.body or "")
    return False


def test_a_refused_apply_is_degraded_apply_refused_and_clears_when_fixed(api: Api) -> None:
    api.cluster.kubectl("apply", "-f", "-", input=policy(api.ns))
    try:
        wait_until("the policy to be in force", lambda: refuses_five_replicas(api))
        api.apply(mlmodel_yaml("capped", replicas=5))

        def refused() -> dict[str, object]:
            degraded = api.condition("capped", "Degraded")
            return degraded if degraded.get("reason") == "ApplyRefused" else {}

        degraded = wait_until("Degraded=ApplyRefused", refused)
        assert degraded["status"] == "True"
        assert MESSAGE in str(degraded["message"]), degraded
        assert not api.exists("Deployment", "capped")

        api.apply(mlmodel_yaml("capped", replicas=2))
        wait_until("Ready once the spec passes", lambda: api.is_ready("capped"))
        assert api.condition("capped", "Degraded").get("status") == "False"
    finally:
        api.cluster.kubectl(
            "delete", "validatingadmissionpolicy,validatingadmissionpolicybinding",
            f"max-replicas-{api.ns}",
        )  # fmt: skip
