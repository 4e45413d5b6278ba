"""bench.startup.node_timeline: API timestamps -> stage offsets -> medians (no cluster, no
timing: the figures are made up and only the arithmetic is checked)."""

from __future__ import annotations

from typing import Any

from bench.startup import node_timeline as tl


def _pod(
    name: str, created: str, scheduled: str, sandbox: str, started: str, ready: str | None
) -> dict[str, Any]:
    conditions = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled},
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": sandbox},
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastTransitionTime": ready or started,
        },
    ]
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {
            "conditions": conditions,
            "containerStatuses": [{"state": {"running": {"startedAt": started}}}],
        },
    }


def test_timestamps_parse_as_rfc3339_with_or_without_fractions() -> None:
    assert tl.ts("1970-01-01T00:00:10Z") == 10.0
    assert tl.ts("1970-01-01T00:00:10.250000Z") == 10.25  # a MicroTime (events' eventTime)
    assert tl.ts("1970-01-01T01:00:10+01:00") == 10.0
    assert tl.ts(None) is None and tl.ts("") is None


def test_apply_stages_of_an_mlmodel_are_offsets_from_its_creation() -> None:
    mlmodel = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:07Z"}
            ]
        },
    }
    deployment = {"metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"}}
    pod = _pod(
        "p",
        "2026-01-01T00:00:01Z",
        "2026-01-01T00:00:01Z",
        "2026-01-01T00:00:02Z",
        "2026-01-01T00:00:02Z",
        "2026-01-01T00:00:06Z",
    )
    stages = tl.apply_stages(mlmodel, pod, deployment)
    assert stages == {
        "deployment_created": 1.0,
        "pod_created": 1.0,
        "pod_scheduled": 1.0,
        "sandbox_ready": 2.0,
        "container_started": 2.0,
        "pod_ready": 6.0,
        "mlmodel_ready": 7.0,
    }
    # printed in the order things happen; the log stage only when a log was given
    assert list(stages) == [k for k in tl.APPLY_STAGES if k != "server_ready_logged"]


def test_a_plain_deployment_has_no_operator_stages_and_an_unready_pod_no_ready_time() -> None:
    deployment = {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}
    pod = _pod("p", *["2026-01-01T00:00:00Z"] * 4, None)
    stages = tl.apply_stages(deployment, pod)
    assert "deployment_created" not in stages and "mlmodel_ready" not in stages
    assert stages["pod_ready"] is None


def test_scale_stages_take_the_last_new_pod_and_the_writes_managed_fields_times() -> None:
    t = "2026-01-01T00:00:{:02d}Z".format
    replicaset = {
        "metadata": {
            "managedFields": [
                {"manager": "kube-controller-manager", "time": t(11)},
                {"manager": "kube-controller-manager", "subresource": "status", "time": t(19)},
            ]
        }
    }
    pods = [
        _pod("a", t(11), t(11), t(12), t(12), t(16)),
        _pod("b", t(12), t(12), t(13), t(14), t(18)),
    ]
    mlmodel = {
        "metadata": {
            "managedFields": [
                {"manager": "kubectl", "operation": "Update", "time": t(0)},
                {"manager": "OpenAPI-Generator", "subresource": "scale", "time": t(10)},
            ]
        }
    }
    stages = tl.scale_stages(
        tl.managed_time(mlmodel, "scale"),
        pods,
        replicaset,
        deployment_scaled=tl.ts(t(10)),
        mlmodel_status=tl.ts(t(19)),
    )
    assert tl.managed_time(mlmodel, "scale") == tl.ts(t(10))
    assert stages["deployment_scaled"] == 0.0 and stages["mlmodel_status"] == 9.0
    assert stages["replicaset_scaled"] == 1.0  # the spec write, not the status one
    assert stages["pods_created"] == 2.0 and stages["containers_started"] == 4.0
    assert stages["all_ready"] == 8.0
    assert tl.managed_time(mlmodel, "", exclude=("kubectl",)) is None


def test_medians_over_rounds_skip_unknown_values_and_ratios_divide_medians() -> None:
    rounds = [{"a": 5.0, "b": None}, {"a": 6.0, "b": 2.0}, {"a": 5.0, "b": 4.0}]
    summary = tl.summarize(rounds)
    assert summary["a"] == {"median": 5.0, "min": 5.0, "max": 6.0, "runs": [5.0, 6.0, 5.0]}
    assert summary["b"]["median"] == 3.0 and summary["b"]["runs"] == [None, 2.0, 4.0]
    assert tl.stats([None, None]) is None
    assert tl.ratio(summary["a"], summary["b"]) == 1.67
    assert tl.ratio(summary["a"], None) is None
    assert tl.ratio(summary["a"], {"median": 0.0}) is None
    assert tl.overlap(summary["a"], summary["b"]) is False  # 5-6 against 2-4
    assert tl.overlap(summary["a"], {"min": 4.0, "max": 5.0}) is True


def test_where_the_time_goes_chains_the_stages_a_side_has() -> None:
    part = tl.summarize([{"pod_created": 0.0, "container_started": 1.0, "pod_ready": 6.0}])
    line = tl.chain(part, tl.APPLY_CHAIN)
    assert line.startswith("t0 -> Pod +0.0 s (controller-manager); -> container started +1.0 s")
    assert "-> Pod Ready +5.0 s" in line and "Deployment" not in line


def test_the_container_log_gives_the_server_start_to_the_microsecond() -> None:
    log = (
        "2026-01-01T00:00:01.500000123Z INFO:     Started server process [1]\n"
        "2026-01-01T00:00:01.900000000Z 2026-01-01 00:00:01,899 INFO model_server: serving\n"
        "2026-01-01T00:00:02.250000999Z 2026-01-01 00:00:02,250 INFO model_server: model "
        "'iris' ready in 0.66 s: RandomForestClassifier onnx, sha256 ab\n"
        "not a timestamped line\n"
    )
    times = tl.log_times(log)
    base = tl.ts("2026-01-01T00:00:00Z")
    assert base is not None and times["first"] is not None and times["ready"] is not None
    assert round(times["first"] - base, 6) == 1.5 and round(times["ready"] - base, 6) == 2.25
    assert tl.log_times("INFO: no stamps")["ready"] is None
    pod = _pod("p", *["2026-01-01T00:00:00Z"] * 4, "2026-01-01T00:00:05Z")
    root = {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}
    assert tl.apply_stages(root, pod, log=log)["server_ready_logged"] == 2.25
