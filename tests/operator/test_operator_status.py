"""Status derivation: observed children in, conditions and counts out (no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from operator_testlib import make_mlmodel

from mlmodel_operator.resource import MLModel
from mlmodel_operator.status import (
    Observed,
    Problem,
    derive_status,
    pod_problem,
    status_patch,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 12, 5, 0, tzinfo=UTC)


def deployment(
    replicas: int | None = 2,
    *,
    ready: int = 2,
    updated: int = 2,
    available: int = 2,
    total: int | None = None,
    generation: int = 1,
    observed: int = 1,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    return {
        "metadata": {"name": "iris", "generation": generation},
        "spec": spec,
        "status": {
            "replicas": updated if total is None else total,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "observedGeneration": observed,
            "conditions": conditions or [],
        },
    }


def model(replicas: int = 2, generation: int = 3, **spec: Any) -> MLModel:
    return make_mlmodel(
        {"model": {"uri": "pvc://models/iris"}, "replicas": replicas, **spec}, generation=generation
    )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def summary(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {t: (c["status"], c["reason"]) for t, c in conditions(status).items()}


def derive(
    mlmodel: MLModel, observed: Observed, previous: dict[str, Any] | None = None, now: datetime = T0
) -> dict[str, Any]:
    return derive_status(mlmodel, observed, previous or {}, cluster_domain="cluster.local", now=now)


def test_ready_when_every_pod_of_the_current_generation_is_updated_and_available() -> None:
    status = derive(model(), Observed(deployment=deployment()))
    assert summary(status) == {
        "Ready": ("True", "AllReplicasReady"),
        "Available": ("True", "ReplicasAvailable"),
        "Progressing": ("False", "RolloutComplete"),
        "Degraded": ("False", "AsExpected"),
    }
    assert status["observedGeneration"] == 3
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"]) == (2, 2, 2)
    assert status["replicaSummary"] == "2/2"
    assert (
        status["selector"]
        == "app.kubernetes.io/instance=iris,app.kubernetes.io/name=mlmodel-server"
    )
    assert status["url"] == "http://iris.models.svc.cluster.local"


def test_not_ready_while_rolling_out_but_available_with_some_pods() -> None:
    status = derive(
        model(replicas=3),
        Observed(deployment=deployment(replicas=3, ready=2, updated=1, available=2, total=3)),
    )
    assert summary(status)["Ready"] == ("False", "RollingOut")
    assert summary(status)["Available"] == ("True", "ReplicasAvailable")
    assert summary(status)["Progressing"] == ("True", "RollingOut")
    assert "1/3 replicas updated" in conditions(status)["Ready"]["message"]


def test_not_ready_while_the_deployment_has_not_seen_its_latest_spec() -> None:
    status = derive(model(), Observed(deployment=deployment(generation=5, observed=4)))
    assert summary(status)["Ready"] == ("False", "RollingOut")


def test_old_pods_still_running_keep_ready_false() -> None:
    status = derive(model(), Observed(deployment=deployment(total=3)))
    assert summary(status)["Ready"] == ("False", "RollingOut")


def test_missing_deployment_is_reported() -> None:
    status = derive(model(), Observed(deployment=None))
    assert summary(status)["Ready"] == ("False", "DeploymentMissing")
    assert status["replicaSummary"] == "0/2"


def test_scaled_to_zero_is_neither_ready_nor_available() -> None:
    status = derive(
        model(replicas=0), Observed(deployment=deployment(0, ready=0, updated=0, available=0))
    )
    assert summary(status)["Ready"] == ("False", "ScaledToZero")
    assert summary(status)["Available"] == ("False", "ScaledToZero")


def test_autoscaled_desired_count_comes_from_the_deployment() -> None:
    mlmodel = model(autoscaling={"minReplicas": 2, "maxReplicas": 6})
    status = derive(mlmodel, Observed(deployment=deployment(4, ready=4, updated=4, available=4)))
    assert status["replicaSummary"] == "4/4"
    assert summary(status)["Ready"] == ("True", "AllReplicasReady")


def test_a_problem_makes_it_degraded_and_not_ready_with_the_same_reason() -> None:
    problem = Problem(
        "ChildNotOwned",
        "Service models/iris exists and is not owned by MLModel iris; delete or rename it.",
    )
    status = derive(model(), Observed(deployment=deployment(), problems=(problem,)))
    assert summary(status)["Degraded"] == ("True", "ChildNotOwned")
    assert summary(status)["Ready"] == ("False", "ChildNotOwned")
    assert conditions(status)["Degraded"]["message"] == problem.message


def test_exceeded_quota_is_reported_as_insufficient_quota() -> None:
    failure = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": 'pods "iris-x" is forbidden: exceeded quota: q, requested: cpu=2',
    }
    status = derive(
        model(),
        Observed(
            deployment=deployment(ready=0, available=0, updated=0, total=0, conditions=[failure])
        ),
    )
    assert summary(status)["Degraded"] == ("True", "InsufficientQuota")
    assert "exceeded quota" in conditions(status)["Degraded"]["message"]
    assert summary(status)["Available"] == ("False", "NoReplicasAvailable")


def test_stalled_rollout_stops_progressing() -> None:
    stalled = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "iris-1" has timed out progressing.',
    }
    status = derive(
        model(), Observed(deployment=deployment(ready=1, available=1, conditions=[stalled]))
    )
    assert summary(status)["Progressing"] == ("False", "ProgressDeadlineExceeded")


def test_transition_time_moves_only_when_a_condition_flips() -> None:
    first = derive(model(), Observed(deployment=deployment(ready=1, available=1)), now=T0)
    same = derive(model(), Observed(deployment=deployment(ready=1, available=1)), first, now=T1)
    assert same == first
    assert status_patch(first, same) == {}
    flipped = derive(model(), Observed(deployment=deployment()), first, now=T1)
    times = {t: c["lastTransitionTime"] for t, c in conditions(flipped).items()}
    assert times["Ready"] == "2026-01-01T12:05:00Z"  # False -> True
    assert times["Progressing"] == "2026-01-01T12:05:00Z"  # True -> False
    assert times["Available"] == "2026-01-01T12:00:00Z"  # stayed True
    assert times["Degraded"] == "2026-01-01T12:00:00Z"  # stayed False
    patch = status_patch(first, flipped)
    assert set(patch) == {"readyReplicas", "availableReplicas", "replicaSummary", "conditions"}


def test_model_digest_is_kept_when_the_card_cannot_be_read() -> None:
    first = derive(model(), Observed(deployment=deployment(), digest="a" * 64))
    unreadable = Problem("ArtifactNotFound", "cannot read model card", blocks_ready=False)
    later = derive(model(), Observed(deployment=deployment(), problems=(unreadable,)), first)
    assert later["modelDigest"] == "a" * 64
    assert summary(later)["Degraded"] == ("True", "ArtifactNotFound")
    # the pods still serve the known digest: Ready follows the rollout, not the card
    assert summary(later)["Ready"] == ("True", "AllReplicasReady")


def test_a_blocking_problem_after_a_card_problem_still_makes_it_not_ready() -> None:
    card = Problem("ArtifactNotFound", "cannot read model card", blocks_ready=False)
    pull = Problem("ImagePullFailed", "cannot pull")
    status = derive(model(), Observed(deployment=deployment(), problems=(card, pull)))
    assert summary(status)["Degraded"] == ("True", "ArtifactNotFound")
    assert summary(status)["Ready"] == ("False", "ImagePullFailed")


def test_runtime_says_the_template_image_and_the_format_the_pods_load() -> None:
    live = deployment()
    live["spec"]["template"] = {"spec": {"containers": [{"name": "server", "image": "slim:1"}]}}
    status = derive(model(), Observed(deployment=live, digest="a" * 64, model_format="onnx"))
    assert status["runtime"] == {"image": "slim:1", "modelFormat": "onnx"}
    # a pinned digest without spec.model.format: which file it names is not known here
    pinned = derive(model(), Observed(deployment=live, digest="a" * 64), status)
    assert pinned["runtime"] == {"image": "slim:1"}
    assert status_patch(status, pinned) == {"runtime": {"modelFormat": None}}
    assert "runtime" not in derive(model(), Observed(deployment=None))


def test_status_patch_removes_keys_that_went_away_and_ignores_kopf_state() -> None:
    previous = {"url": "http://old", "modelDigest": "x", "kopf": {"progress": {}}}
    assert status_patch(previous, {"url": "http://new"}) == {
        "url": "http://new",
        "modelDigest": None,
    }


def pod(name: str, waiting: dict[str, str], restarts: int = 0, said: str = "") -> dict[str, Any]:
    """A pod whose container waits; `said` is its last run's termination message (log tail)."""
    last_state = {"terminated": {"exitCode": 1, "message": said}} if said else {}
    return {
        "metadata": {"name": name},
        "status": {
            "containerStatuses": [
                {
                    "name": "server",
                    "image": "mlmodel-server:9",
                    "restartCount": restarts,
                    "state": {"waiting": waiting},
                    "lastState": last_state,
                }
            ]
        },
    }


def test_image_pull_failure_names_the_pod_and_image() -> None:
    problem = pod_problem(
        [pod("iris-1", {"reason": "ImagePullBackOff", "message": "Back-off pulling image"})]
    )
    assert problem is not None
    assert problem.reason == "ImagePullFailed"
    assert "iris-1" in problem.message and "mlmodel-server:9" in problem.message


def test_crash_loop_quotes_the_last_log_line() -> None:
    said = "ArtifactDigestMismatch: sha256 of model.skops is abc\n"
    problem = pod_problem([pod("iris-1", {"reason": "CrashLoopBackOff"}, restarts=4, said=said)])
    assert problem is not None
    assert problem.reason == "CrashLooping"
    assert problem.message.endswith(
        "last log line: ArtifactDigestMismatch: sha256 of model.skops is abc"
    )
    assert "4 restarts" in problem.message


def test_missing_credentials_secret_is_a_config_problem() -> None:
    problem = pod_problem(
        [
            pod(
                "iris-1",
                {"reason": "CreateContainerConfigError", "message": 'secret "s3-creds" not found'},
            )
        ]
    )
    assert problem == Problem(
        "ContainerConfigInvalid", 'Pod iris-1 cannot start: secret "s3-creds" not found.'
    )


def test_healthy_pods_have_no_problem() -> None:
    running = {
        "metadata": {"name": "iris-1"},
        "status": {"containerStatuses": [{"name": "server", "state": {"running": {}}}]},
    }
    assert pod_problem([running]) is None


def test_a_server_that_cannot_load_its_model_reports_the_artifact_reason() -> None:
    line = (
        "2026-11-25 01:00:00 ERROR model_server: model load failed: [ArtifactDigestMismatch] "
        "s3://b/iris/model.skops: sha256 is 1f2e..., expected aaaa..."
    )
    problem = pod_problem([pod("iris-1", {"reason": "CrashLoopBackOff"}, restarts=2, said=line)])
    assert problem is not None
    assert problem.reason == "ArtifactDigestMismatch"
    assert problem.message == f"Pod iris-1 cannot load the model (2 restarts): {line}"


def test_an_overlong_load_failure_reason_is_not_taken_as_the_condition_s_reason() -> None:
    """Any image can print the line: a 2,000-letter reason would make the CRD refuse the
    status patch (reason maxLength 1024), and status would stay as it was."""
    line = f"ERROR model_server: model load failed: [A{'a' * 2000}] s3://b/iris"
    problem = pod_problem([pod("iris-1", {"reason": "CrashLoopBackOff"}, restarts=2, said=line)])
    assert problem is not None
    assert problem.reason == "CrashLooping"
    longest = f"ERROR model_server: model load failed: [A{'a' * 62}] s3://b/iris"
    problem = pod_problem([pod("iris-1", {"reason": "CrashLoopBackOff"}, restarts=2, said=longest)])
    assert problem is not None and problem.reason == f"A{'a' * 62}"


def test_the_load_failure_is_found_in_the_termination_message_even_when_not_last() -> None:
    crashed = pod("iris-1", {"reason": "CrashLoopBackOff"}, restarts=3)
    tail = (
        "INFO: Started server process [1]\n"
        "ERROR model_server: model load failed: [ArtifactDigestMismatch] s3://b/iris: sha256 "
        "of model.skops is 1f2e…, expected aaaa…\n"
        "INFO: Finished server process [1]\n"
    )
    crashed["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"exitCode": 1, "reason": "Error", "message": tail}
    }
    problem = pod_problem([crashed])
    assert problem is not None
    assert problem.reason == "ArtifactDigestMismatch"
    assert "expected aaaa" in problem.message and "Finished server" not in problem.message


def test_a_container_that_just_exited_with_an_error_is_reported_before_the_backoff() -> None:
    exited = {
        "metadata": {"name": "iris-1"},
        "status": {
            "containerStatuses": [
                {
                    "name": "server",
                    "restartCount": 0,
                    "state": {
                        "terminated": {"exitCode": 1, "message": "Traceback …\nValueError: boom\n"}
                    },
                }
            ]
        },
    }
    problem = pod_problem([exited])
    assert problem == Problem(
        "CrashLooping", "Pod iris-1 is crash-looping (0 restarts); last log line: ValueError: boom"
    )


def test_pods_being_deleted_are_not_problems() -> None:
    leaving = pod("iris-old", {"reason": "CrashLoopBackOff"})
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert pod_problem([leaving]) is None


def test_a_crash_is_described_from_the_termination_message_alone() -> None:
    """The operator has no pods/log access: the kubelet's log tail in the status suffices."""
    crashed = pod("iris-1", {"reason": "CrashLoopBackOff"}, restarts=1)
    crashed["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {
            "exitCode": 1,
            "reason": "Error",
            "message": "ERROR model_server: model load failed: [ArtifactNotFound] s3://b/iris\n",
        }
    }
    problem = pod_problem([crashed])
    assert problem is not None
    assert problem.reason == "ArtifactNotFound"
    assert "s3://b/iris" in problem.message
