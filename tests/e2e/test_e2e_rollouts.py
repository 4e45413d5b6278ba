"""e2e on the real node: a new model version rolls out without a failed request; a bad one never
takes traffic, says why in status, and fixing the spec recovers."""

from __future__ import annotations

import pytest

from devcluster.stack import mlstack

from .e2e_testlib import (
    ConditionLog,
    Stack,
    break_then_fix,
    looping_client,
    point_at,
    served_digest,
)

pytestmark = pytest.mark.node


@pytest.mark.timeout(540)
def test_a_new_model_version_rolls_out_with_zero_failed_requests(
    stack: Stack, model_ns: str
) -> None:
    url = stack.deploy(model_ns, "iris", stack.v1, replicas=2)
    log = ConditionLog(stack.kube, model_ns, "iris")
    with looping_client(url, "iris") as loop:
        point_at(stack.kube, model_ns, "iris", stack.v2.uri, stack.v2.sha256)
        log.wait(
            "Progressing=True during the rollout",
            lambda m: (
                mlstack.condition(m, "Progressing").get("status") == "True"
                and m["status"].get("observedGeneration") == m["metadata"]["generation"]
            ),
            120,
        )
        log.wait("Ready with the new digest", lambda m: mlstack.is_ready(m, stack.v2.sha256), 300)
    print(f"rollout: {loop.ok} answered, {len(loop.failures)} failed; seen {log.seen}")
    assert loop.ok > 0
    assert loop.failures == [], f"failed requests during the rollout: {loop.failures[:5]}"
    # Old pods drain for their preStop sleep; once kube-proxy drops them only v2 answers.
    mlstack.wait_for(
        "only the new digest to be served",
        lambda: {served_digest(url, "iris") for _ in range(8)} == {stack.v2.sha256},
        60,
    )
    assert mlstack.predict(url, "v1", "iris", stack.v2.rows) == stack.v2.expected


@pytest.mark.timeout(540)
@pytest.mark.parametrize("kind", ["digest-mismatch", "corrupt-file"])
def test_a_bad_model_version_never_takes_traffic_says_why_and_fixing_the_spec_recovers(
    stack: Stack, model_ns: str, kind: str
) -> None:
    run = break_then_fix(stack, model_ns, kind)
    assert run.degraded["status"] == "True"
    cause = f"{run.degraded.get('reason')} {run.degraded.get('message')}"
    assert "ArtifactDigestMismatch" in cause, f"Degraded does not name the cause: {run.degraded}"
    assert run.ready_while_bad.get("status") == "False", run.ready_while_bad
    assert run.digests_while_bad == {stack.v1.sha256}, "the bad version took traffic"
    assert run.loop.ok > 0
    assert run.loop.failures == [], f"failed requests: {run.loop.failures[:5]}"
