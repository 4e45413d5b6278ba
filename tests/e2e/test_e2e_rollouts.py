"""e2e on the real node: a bad model version never takes traffic, and fixing the spec recovers."""

from __future__ import annotations

import pytest
from e2e_testlib import Stack, break_then_fix

pytestmark = pytest.mark.node


@pytest.mark.timeout(540)
@pytest.mark.parametrize("kind", ["digest-mismatch", "corrupt-file"])
def test_a_bad_model_version_never_takes_traffic_and_fixing_the_spec_recovers(
    stack: Stack, model_ns: str, kind: str
) -> None:
    run = break_then_fix(stack, model_ns, kind)
    assert run.degraded["status"] == "True"
    assert run.ready_while_bad.get("status") == "False", run.ready_while_bad
    assert run.digests_while_bad == {stack.v1.sha256}, "the bad version took traffic"
    assert run.loop.ok > 0
    assert run.loop.failures == [], f"failed requests: {run.loop.failures[:5]}"
