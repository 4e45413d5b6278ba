"""e2e scenarios that fail today because of two gaps outside tests/e2e (not collected by pytest:
rename to test_e2e_pending.py once both are fixed; each passes with the fix described).

1. Zero failed requests during a rollout needs the model pods to keep serving for a few seconds
   after they are taken out of the Service: kube-proxy removes a terminating pod's endpoint a
   moment after the kubelet sends SIGTERM, and uvicorn closes its socket at once, so a looping
   client sees `Connection refused` (measured: ~40 per rollout of 2 pods). With
   `lifecycle: {preStop: {sleep: {seconds: 10}}}` on the server container (rendered by the
   operator) the same rollout answered 6429 requests with 0 failures.
2. Degraded must name the cause of a bad artifact. The operator reports `CrashLooping` with the
   container's last log line, which is uvicorn's `Finished server process [1]`, not the server's
   `model load failed: ... ArtifactDigestMismatch ...` a few lines earlier. Fix in the server (log
   the failure last / write it to /dev/termination-log) or the operator
   (`terminationMessagePolicy: FallbackToLogsOnError` and `lastState.terminated.message`).
"""

from __future__ import annotations

import pytest
from e2e_testlib import ConditionLog, Stack, break_then_fix, looping_client, point_at, served_digest

from devcluster import mlstack

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
    assert {served_digest(url, "iris") for _ in range(8)} == {stack.v2.sha256}
    assert mlstack.predict(url, "v1", "iris", stack.v2.rows) == stack.v2.expected


@pytest.mark.timeout(540)
@pytest.mark.parametrize("kind", ["digest-mismatch", "corrupt-file"])
def test_degraded_names_the_digest_mismatch_of_a_bad_version(
    stack: Stack, model_ns: str, kind: str
) -> None:
    run = break_then_fix(stack, model_ns, kind)
    cause = f"{run.degraded.get('reason')} {run.degraded.get('message')}"
    assert "ArtifactDigestMismatch" in cause or "digest" in cause.lower(), run.degraded
