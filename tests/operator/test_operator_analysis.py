"""Candidate analysis (mlmodel_operator.analysis): the state machine, walked with a fake clock
and fake measurements. Every decision is also written to status and read back, so what the
next reconcile sees is what this one decided."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from mlmodel_operator.analysis import (
    MIN_REQUESTS,
    Analysis,
    Decision,
    Failed,
    Measured,
    Measurement,
    MeasureResult,
    Measuring,
    Rolling,
    Rollout,
    State,
    Succeeded,
    Unmeasured,
    decide,
    parse_interval,
    state_from_status,
    state_to_status,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
BOUNDS = {"max_error_rate": 0.01, "max_latency_ratio": 1.5, "min_agreement": 0.9}
GOOD = Measurement(
    requests=412, errors=0, p99_candidate=0.0102, p99_stable=0.01, compared=400, agreed=388
)


def rollout(
    steps: tuple[int, ...] = (10, 25, 50, 100),
    interval: float = 120,
    mode: str = "canary",
    candidate: str = "s3://models/churn/v2@sha256:aa",
    **bounds: float | None,
) -> Rollout:
    analysis = Analysis(steps, interval, **{**BOUNDS, **bounds})  # type: ignore[arg-type]
    return Rollout(analysis, mode, candidate)  # type: ignore[arg-type]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@dataclass
class Walk:
    """Drives one rollout through decide(), through status as a reconciler would."""

    rollout: Rollout
    results: list[MeasureResult] = field(default_factory=list)
    status: dict[str, Any] | None = None
    measured_since: list[datetime] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def measure(self, since: datetime) -> MeasureResult:
        self.measured_since.append(since)
        return self.results.pop(0) if self.results else GOOD

    def step(
        self, now: datetime, ready_share: int | None = None, result: MeasureResult | None = None
    ) -> Decision:
        if result is not None:
            self.results.append(result)
        state = state_from_status(self.status)
        decision = decide(
            self.rollout, state, ready_share=ready_share, measure=self.measure, now=now
        )
        self.status = decision.status()
        assert state_from_status(self.status) == decision.state  # the status round trip
        if decision.event is not None:
            event = decision.event
            self.events.append((event.reason, event.type, event.message))
        return decision

    def start_step(self, now: datetime) -> Decision:
        """The pods of the current step became ready at `now`."""
        share = decide_share(self)
        first = self.step(now, ready_share=share)
        assert isinstance(first.state, Measuring)
        return first


def decide_share(walk: Walk) -> int:
    state = state_from_status(walk.status)
    assert state is not None
    return walk.rollout.share(state.step) if not isinstance(state, Failed) else 0


# --- a good walk ------------------------------------------------------------------------


def test_a_good_walk_passes_every_step_and_succeeds() -> None:
    walk = Walk(rollout())
    first = walk.step(at(0))
    assert isinstance(first.state, Rolling)
    assert (first.share, first.phase, first.state.step) == (10, "Progressing", 0)
    assert first.health.status == "Unknown" and first.health.reason == "WaitingForPods"
    assert first.message == "step 1 of 4: waiting for every pod to be updated and ready at 10 %"
    assert walk.events == [("CandidateStep", "Normal", "step 1 of 4: 10 %: analysis starts")]

    now = 0.0
    shares = []
    for step, share in enumerate((10, 25, 50, 100)):
        now += 7  # the pods of the step take a while to roll
        started = walk.start_step(at(now))
        assert started.status()["stepStartedAt"] == f"{at(now):%Y-%m-%dT%H:%M:%SZ}"
        assert started.share == share
        shares.append(share)
        start = now
        for k in (1, 2, 3):  # holding: interval / 4 apart, bounds hold, interval not over
            decision = walk.step(at(start + 30 * k), ready_share=share)
            assert isinstance(decision.state, Measuring) and decision.state.step == step
            assert decision.health.status == "True", decision.health
            assert decision.requeue_after == 30
        assert decision.message == (
            f"step {step + 1} of 4: {share} % since {at(start):%H:%M:%S}; error rate 0.000, "
            "latency ratio 1.02, agreement 0.97 over 412 requests"
        )
        assert decision.status()["measured"] == {
            "requests": 412,
            "errorRate": "0.000",
            "latencyRatio": "1.02",
            "agreement": "0.97",
        }
        now = start + 120
        decision = walk.step(at(now), ready_share=share)  # the interval is over
    assert all(since in {at(7), at(134), at(261), at(388)} for since in walk.measured_since)
    assert shares == [10, 25, 50, 100]

    assert isinstance(decision.state, Succeeded)
    assert (decision.phase, decision.share, decision.requeue_after) == ("Succeeded", 100, None)
    assert "move spec.candidate.model to spec.model to finish" in decision.message
    assert decision.message.startswith("all 4 steps passed (error rate 0.000")
    assert decision.health.status == "True"
    reasons = [reason for reason, _, _ in walk.events]
    assert reasons == ["CandidateStep"] * 4 + ["CandidateSucceeded"]
    assert walk.events[1][2] == (
        "step 2 of 4: 25 % (step 1 of 4 passed: error rate 0.000, latency ratio 1.02, "
        "agreement 0.97 over 412 requests)"
    )

    # final: nothing measured, nothing posted, the share stays
    calls = len(walk.measured_since)
    again = walk.step(at(now + 3600), ready_share=100)
    assert again.state == decision.state and again.event is None and again.share == 100
    assert len(walk.measured_since) == calls


def test_a_step_advances_to_a_rolling_step_whose_pods_must_become_ready_first() -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    for k in (1, 2, 3):
        walk.step(at(30 * k), ready_share=10)
    advanced = walk.step(at(120), ready_share=10)  # the pods still run step 1's share
    assert isinstance(advanced.state, Rolling) and advanced.share == 25
    assert advanced.health.reason == "WaitingForPods"
    # the Deployment has not rolled yet: old share, or pods rolling
    for ready in (10, None):
        still = walk.step(at(125), ready_share=ready)
        assert isinstance(still.state, Rolling) and still.event is None
        assert still.requeue_after == 30
    calls = len(walk.measured_since)
    started = walk.step(at(140), ready_share=25)
    assert isinstance(started.state, Measuring) and started.state.started_at == at(140)
    assert started.message == "step 2 of 4: 25 % since 12:02:20; first evaluation at 12:02:50"
    assert started.health.reason == "NotMeasured"
    assert len(walk.measured_since) == calls  # starting a step measures nothing


# --- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "named"),
    [
        (
            Measurement(100, 43, 0.01, 0.01, 100, 100),
            "maxErrorRate: 0.43 > 0.01",
        ),
        (
            Measurement(100, 0, 0.021, 0.01, 100, 100),
            "maxLatencyRatio: 2.1 > 1.5",
        ),
        (
            Measurement(100, 0, 0.01, 0.01, 100, 80),
            "minAgreement: 0.8 < 0.9",
        ),
        (  # just over the bound: as many digits as show it
            Measurement(1000, 11, 0.01, 0.01, 100, 100),
            "maxErrorRate: 0.011 > 0.01",
        ),
    ],
)
def test_a_broken_bound_fails_the_rollout_at_once_naming_bound_and_value(
    measurement: Measurement, named: str
) -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    failed = walk.step(at(30), ready_share=10, result=measurement)  # the first evaluation
    assert isinstance(failed.state, Failed)
    assert (failed.phase, failed.share, failed.requeue_after) == ("Failed", 0, None)
    assert named in failed.message
    assert failed.message.startswith(f"step 1 of 4: 10 % failed: {named} over ")
    assert "the candidate answers no requests now" in failed.message
    assert failed.health.status == "False" and failed.health.reason == "BoundBroken"
    assert walk.events[-1] == ("CandidateFailed", "Warning", failed.message)


def test_every_broken_bound_is_named() -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    failed = walk.step(at(30), ready_share=10, result=Measurement(50, 25, 0.5, 0.1, 50, 10))
    assert "maxErrorRate: 0.5 > 0.01; maxLatencyRatio: 5 > 1.5; minAgreement: 0.2 < 0.9" in (
        failed.message
    )


def test_a_bound_breaks_in_a_later_step_after_earlier_ones_held() -> None:
    walk = Walk(rollout(steps=(10, 50)))
    walk.step(at(0))
    walk.start_step(at(0))
    for k in (1, 2, 3, 4):
        walk.step(at(30 * k), ready_share=10)
    walk.start_step(at(130))
    failed = walk.step(at(160), ready_share=50, result=Measurement(200, 20, 0.01, 0.01, 90, 90))
    assert isinstance(failed.state, Failed) and failed.state.step == 1
    assert failed.message.startswith("step 2 of 2: 50 % failed: maxErrorRate: 0.1 > 0.01")
    assert failed.share == 0


def test_failed_is_final_until_the_candidate_changes() -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    failed = walk.step(at(30), ready_share=10, result=Measurement(100, 50, 0.01, 0.01, 0, 0))
    calls = len(walk.measured_since)
    for later in (60, 600, 86400):
        again = walk.step(at(later), ready_share=0, result=GOOD)
        assert again.state == failed.state and again.event is None and again.share == 0
    assert len(walk.measured_since) == calls

    walk.rollout = rollout(candidate="s3://models/churn/v3@sha256:bb")  # the user's next try
    restarted = walk.step(at(90000), ready_share=0)
    assert isinstance(restarted.state, Rolling) and restarted.state.step == 0
    assert restarted.share == 10 and restarted.phase == "Progressing"
    assert restarted.status()["analysisKey"] == walk.rollout.key
    assert walk.events[-1] == ("CandidateStep", "Normal", "step 1 of 4: 10 %: analysis starts")


@pytest.mark.parametrize(
    "change",
    [
        {"candidate": "s3://models/churn/v2@sha256:cc"},  # same URI, another digest
        {"mode": "shadow"},
        {"steps": (20, 100)},
        {"interval": 60},
        {"max_error_rate": 0.02},
        {"min_agreement": None},
    ],
)
def test_a_changed_candidate_or_analysis_restarts_at_step_0(change: dict[str, Any]) -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    for k in (1, 2, 3, 4):
        walk.step(at(30 * k), ready_share=10)
    assert state_from_status(walk.status).step == 1  # type: ignore[union-attr]
    walk.rollout = rollout(**change)
    restarted = walk.step(at(130), ready_share=25)
    assert isinstance(restarted.state, Rolling) and restarted.state.step == 0
    assert restarted.status()["analysisKey"] == walk.rollout.key != rollout().key


def test_the_key_is_the_same_for_the_same_rollout() -> None:
    assert rollout().key == rollout().key
    assert len(rollout().key) == 16


# --- not enough data --------------------------------------------------------------------


def test_too_few_requests_judge_no_bound_and_hold_the_step() -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    few = Measurement(MIN_REQUESTS - 1, MIN_REQUESTS - 1, 9.0, 0.01, 0, 0)  # all errors, slow
    for k in (1, 2, 3, 4, 5, 40):
        decision = walk.step(at(30 * k), ready_share=10, result=few)
        assert isinstance(decision.state, Measuring) and decision.state.step == 0
        assert decision.health.status == "Unknown" and decision.health.reason == "TooFewRequests"
        assert decision.message == (
            "step 1 of 4: 10 % since 12:00:00; waiting for traffic: 19 of 20 candidate requests"
        )
        assert decision.status()["measured"] == {"requests": 19}
    # the 20th request makes them count
    failed = walk.step(at(1230), ready_share=10, result=Measurement(20, 19, 9.0, 0.01, 0, 0))
    assert isinstance(failed.state, Failed)


def test_no_traffic_keeps_waiting_and_says_so() -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    idle = Measurement(0, 0, None, 0.01, 0, 0)
    for k in range(1, 10):
        decision = walk.step(at(30 * k), ready_share=10, result=idle)
        assert decision.message.endswith("; no candidate requests yet: waiting for traffic")
        assert decision.health.reason == "TooFewRequests"
        assert decision.state.step == 0 and decision.requeue_after == 30


def test_a_candidate_that_did_not_load_is_said_while_waiting() -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    idle = Measurement(0, 0, None, 0.01, 0, 0, candidate_ready=False)
    decision = walk.step(at(30), ready_share=10, result=idle)
    assert "the candidate is not loaded on every pod (model_server_version_ready 0)" in (
        decision.message
    )


def test_metrics_that_cannot_be_read_hold_the_step_and_say_why() -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    walk.step(at(30), ready_share=10)  # a good measurement first
    for k in (2, 3, 4, 5, 6):
        decision = walk.step(at(30 * k), ready_share=10, result=Unmeasured("Prometheus is down"))
        assert decision.message == (
            "step 1 of 4: 10 % since 12:00:00; metrics unavailable, waiting: Prometheus is down"
        )
        assert decision.health.status == "Unknown" and decision.health.reason == "NotMeasured"
        assert "measured" not in decision.status()
        assert decision.state.step == 0
    resumed = walk.step(at(210), ready_share=10)  # back: the interval is long over
    assert isinstance(resumed.state, Rolling) and resumed.state.step == 1


@pytest.mark.parametrize(
    ("measurement", "waiting_for"),
    [
        (
            Measurement(100, 0, 0.01, 0.01, 19, 19),
            "waiting for the agreement (19 of 20 rows compared so far)",
        ),
        (
            Measurement(100, 0, 0.01, None, 100, 100),
            "waiting for the latency ratio (no stable latency observed yet)",
        ),
        (
            Measurement(100, 0, None, 0.01, 100, 100),
            "waiting for the latency ratio (no candidate latency observed yet)",
        ),
    ],
)
def test_a_bound_that_cannot_be_measured_yet_holds_the_step(
    measurement: Measurement, waiting_for: str
) -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    for k in (1, 4, 8):
        decision = walk.step(at(30 * k), ready_share=10, result=measurement)
        assert isinstance(decision.state, Measuring) and decision.state.step == 0
        assert decision.message.endswith(waiting_for), decision.message
        assert decision.health.status == "Unknown" and decision.health.reason == "NotMeasured"


def test_an_unset_bound_is_not_waited_for() -> None:
    walk = Walk(rollout(steps=(50,), max_latency_ratio=None, min_agreement=None))
    walk.step(at(0))
    walk.start_step(at(0))
    no_copies = Measurement(100, 0, None, None, 0, 0)
    holding = walk.step(at(30), ready_share=50, result=no_copies)
    assert holding.health.status == "True"
    assert holding.message.endswith("; error rate 0.000 over 100 requests")
    for k in (2, 3):
        walk.step(at(30 * k), ready_share=50, result=no_copies)
    done = walk.step(at(120), ready_share=50, result=no_copies)
    assert isinstance(done.state, Succeeded) and done.share == 50


def test_without_bounds_a_step_still_needs_traffic() -> None:
    walk = Walk(
        rollout(steps=(50,), max_error_rate=None, max_latency_ratio=None, min_agreement=None)
    )
    walk.step(at(0))
    walk.start_step(at(0))
    idle = walk.step(at(150), ready_share=50, result=Measurement(3, 0, None, None, 0, 0))
    assert isinstance(idle.state, Measuring) and idle.health.reason == "TooFewRequests"
    done = walk.step(at(180), ready_share=50, result=Measurement(20, 20, 1, 0.01, 20, 0))
    assert isinstance(done.state, Succeeded) and done.health.status == "True"


# --- shadow -----------------------------------------------------------------------------


def test_shadow_rounds_run_at_share_0_without_rolling_the_pods() -> None:
    walk = Walk(rollout(steps=(10, 20, 30), interval=60, mode="shadow"))
    first = walk.step(at(0))
    assert first.share == 0
    assert first.message == "round 1 of 3 (shadow): waiting for every pod to be updated and ready"
    assert walk.events[-1][2] == "round 1 of 3 (shadow): analysis starts"
    walk.start_step(at(5))
    # interval 60 s: evaluations every 15 s; round 1 ends at 65
    for t in (20, 35, 50):
        holding = walk.step(at(t), ready_share=0)
        assert holding.share == 0 and holding.health.status == "True"
    assert holding.message.startswith("round 1 of 3 (shadow) since 12:00:05; error rate")
    second = walk.step(at(65), ready_share=0)
    # no pods roll between rounds: the next one starts at once
    assert isinstance(second.state, Measuring) and second.state.step == 1
    assert second.state.started_at == at(65) and second.share == 0
    assert walk.events[-1] == (
        "CandidateStep",
        "Normal",
        "round 2 of 3 (shadow) (round 1 of 3 (shadow) passed: error rate 0.000, latency ratio "
        "1.02, agreement 0.97 over 412 requests)",
    )
    for t in (80, 95, 110, 125, 140, 155, 170):
        last = walk.step(at(t), ready_share=0)
    assert isinstance(last.state, Measuring) and last.state.step == 2
    done = walk.step(at(185), ready_share=0)
    assert isinstance(done.state, Succeeded) and done.share == 0
    assert done.message.startswith("all 3 shadow rounds passed (error rate 0.000")
    assert done.message.endswith(": move spec.candidate.model to spec.model to finish")
    assert walk.measured_since[-1] == at(125)  # each round measures from its own start


def test_a_shadow_round_fails_like_a_step() -> None:
    walk = Walk(rollout(steps=(1, 2), mode="shadow"))
    walk.step(at(0))
    walk.start_step(at(0))
    failed = walk.step(at(30), ready_share=0, result=Measurement(50, 0, 0.01, 0.01, 50, 10))
    assert isinstance(failed.state, Failed) and failed.share == 0
    assert failed.message.startswith("round 1 of 2 (shadow) failed: minAgreement: 0.2 < 0.9")
    assert "answers no requests" not in failed.message


# --- timing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "period"), [(10, 5), (19, 5), (20, 5), (60, 15), (7200, 1800)]
)
def test_evaluations_are_a_quarter_interval_apart_and_at_least_5_s(
    interval: float, period: float
) -> None:
    assert Analysis((10,), interval).period == period


def test_an_evaluation_is_due_a_period_after_the_last_one_and_measures_since_the_step_start() -> (
    None
):
    walk = Walk(rollout())
    walk.step(at(0))
    started = walk.start_step(at(3))
    assert started.requeue_after == 30
    early = walk.step(at(20), ready_share=10)  # another reconcile, e.g. a pod event
    assert early.requeue_after == 13 and early.state == started.state
    assert walk.measured_since == []
    walk.step(at(33), ready_share=10)
    assert walk.measured_since == [at(3)]
    evaluated = state_from_status(walk.status)
    assert isinstance(evaluated, Measuring) and evaluated.evaluated_at == at(33)
    assert walk.status is not None and walk.status["evaluatedAt"] == "2026-03-01T12:00:33Z"
    late = walk.step(at(70), ready_share=10)  # a late reconcile: the next is due 30 s on
    assert late.requeue_after == 30 and walk.measured_since == [at(3), at(3)]
    assert walk.step(at(99.9), ready_share=10).requeue_after == pytest.approx(1)


def test_the_step_advances_at_the_first_evaluation_once_the_interval_is_over() -> None:
    walk = Walk(rollout(interval=12))  # period 5 s: evaluations at 5, 10, 15
    walk.step(at(0))
    walk.start_step(at(0))
    for t in (5, 10):
        assert isinstance(walk.step(at(t), ready_share=10).state, Measuring)
    advanced = walk.step(at(15), ready_share=10)
    assert isinstance(advanced.state, Rolling) and advanced.state.step == 1


@pytest.mark.parametrize("ready_share", [None, 0, 50])
def test_a_step_whose_pods_are_not_all_ready_at_its_share_starts_again_and_passes_nothing(
    ready_share: int | None,
) -> None:
    """A pod restarted (its counters start from 0 again), became unready or was added: what
    the step measured is not what every pod served for a whole interval."""
    walk = Walk(rollout(interval=60))  # period 15 s
    walk.step(at(0))
    walk.start_step(at(0))
    decision = walk.step(at(75), ready_share=ready_share)  # past the interval, GOOD measured
    assert isinstance(decision.state, Rolling) and decision.state.step == 0, decision.state
    assert decision.message == (
        "step 1 of 4: waiting for every pod to be updated and ready at 10 %; "
        "the step starts again then"
    )
    assert decision.event is None and decision.share == 10
    restarted = walk.step(at(80), ready_share=10)
    assert isinstance(restarted.state, Measuring) and restarted.state.started_at == at(80)
    assert isinstance(walk.step(at(125), ready_share=10).state, Measuring)  # interval anew
    assert walk.step(at(140), ready_share=10).state.step == 1


def test_a_broken_bound_fails_the_step_even_while_a_pod_is_not_ready() -> None:
    walk = Walk(rollout())
    walk.step(at(0))
    walk.start_step(at(0))
    bad = Measurement(100, 40, 0.01, 0.01, 100, 100)
    decision = walk.step(at(30), ready_share=None, result=bad)
    assert isinstance(decision.state, Failed), decision.state
    assert "maxErrorRate: 0.4 > 0.01" in decision.message


def test_a_step_never_passes_while_a_pod_has_not_loaded_the_candidate() -> None:
    """Pods that did not load it send it nothing; the pods that did can bring the requests."""
    walk = Walk(rollout(interval=60))
    walk.step(at(0))
    walk.start_step(at(0))
    partly = replace(GOOD, candidate_ready=False)
    decision = walk.step(at(75), ready_share=10, result=partly)
    assert isinstance(decision.state, Measuring) and decision.state.step == 0
    assert decision.message.endswith(
        "; waiting for the candidate to be loaded on every pod (model_server_version_ready 0 "
        "on some)"
    )
    assert walk.step(at(90), ready_share=10).state.step == 1  # loaded everywhere: it passes


def test_rolling_waits_for_the_pods_at_the_steps_share_without_measuring() -> None:
    walk = Walk(rollout())
    for ready in (None, 0, 100, None):
        decision = walk.step(at(1), ready_share=ready)
        assert isinstance(decision.state, Rolling) and decision.requeue_after == 30
    assert walk.measured_since == []


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone"):
        decide(rollout(), None, ready_share=None, measure=lambda _: GOOD, now=datetime(2026, 1, 1))


# --- status -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        Rolling("k", 2, "rolling"),
        Measuring("k", 0, "started", at(0)),
        Measuring("k", 1, "measured", at(0), at(30), Measured(412, 0.0, 1.02, 0.97)),
        Measuring("k", 1, "waiting", at(0), at(30), Measured(3)),
        Succeeded("k", 3, "done", Measured(500, 0.001, 0.98, None)),
        Failed("k", 1, "failed", Measured(100, 0.43)),
        Failed("k", 0, "failed", None),
    ],
)
def test_every_state_reads_back_from_status(state: State) -> None:
    doc = state_to_status(state)
    assert set(doc) <= {
        "phase",
        "step",
        "stepStartedAt",
        "evaluatedAt",
        "message",
        "measured",
        "analysisKey",
    }
    assert state_from_status(doc) == state


def test_status_shapes() -> None:
    doc = state_to_status(Measuring("k", 1, "m", at(0), at(30), Measured(412, 0.0, 1.02, 0.97)))
    assert doc == {
        "phase": "Progressing",
        "step": 1,
        "stepStartedAt": "2026-03-01T12:00:00Z",
        "evaluatedAt": "2026-03-01T12:00:30Z",
        "message": "m",
        "measured": {
            "requests": 412,
            "errorRate": "0.000",
            "latencyRatio": "1.02",
            "agreement": "0.97",
        },
        "analysisKey": "k",
    }
    assert state_to_status(Rolling("k", 0, "r")) == {
        "phase": "Progressing",
        "step": 0,
        "message": "r",
        "analysisKey": "k",
    }


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {},
        {"phase": "Serving", "step": 0, "message": "m", "analysisKey": "k"},  # no analysis
        {"phase": "Progressing", "step": 0, "message": "m"},  # no key
        {"phase": "Progressing", "step": -1, "message": "m", "analysisKey": "k"},
        {"phase": "Progressing", "step": True, "message": "m", "analysisKey": "k"},
        {
            "phase": "Progressing",
            "step": 0,
            "message": "m",
            "analysisKey": "k",
            "stepStartedAt": "x",
        },
        {
            "phase": "Failed",
            "step": 0,
            "message": "m",
            "analysisKey": "k",
            "measured": {"requests": "1"},
        },
        {"phase": "Failed", "step": 0, "message": "m", "analysisKey": "k", "measured": [1]},
        {"phase": "Succeeded", "step": 0, "message": 3, "analysisKey": "k"},
    ],
)
def test_a_status_that_is_not_an_analysis_state_starts_over(doc: dict[str, Any] | None) -> None:
    assert state_from_status(doc) is None


def test_a_step_index_outside_the_steps_starts_over() -> None:
    r = rollout(steps=(10, 20))
    decision = decide(
        r, Rolling(r.key, 5, "?"), ready_share=None, measure=lambda _: GOOD, now=at(0)
    )
    assert isinstance(decision.state, Rolling) and decision.state.step == 0


# --- inputs -----------------------------------------------------------------------------


def test_analysis_from_the_api_mapping_or_the_pydantic_model() -> None:
    api = {"steps": [10, 25], "interval": "2m", "maxErrorRate": 0.01, "minAgreement": 0.9}
    expected = Analysis((10, 25), 120.0, max_error_rate=0.01, min_agreement=0.9)
    assert Analysis.from_spec(api) == expected
    model = SimpleNamespace(
        steps=(10, 25),
        interval="2m",
        max_error_rate=0.01,
        max_latency_ratio=None,
        min_agreement=0.9,
    )
    assert Analysis.from_spec(model) == expected
    assert Analysis.from_spec({**api, "interval": timedelta(minutes=2)}) == expected
    assert Analysis.from_spec({**api, "interval": 120}) == expected
    assert [parse_interval(t) for t in ("10s", "2m", "1h")] == [10, 120, 3600]


@pytest.mark.parametrize(
    ("api", "named"),
    [
        ({"steps": [], "interval": "1m"}, "steps"),
        ({"steps": [50, 10], "interval": "1m"}, "ascending"),
        ({"steps": [10, 10], "interval": "1m"}, "ascending"),
        ({"steps": [0, 10], "interval": "1m"}, "1-100"),
        ({"steps": [101], "interval": "1m"}, "1-100"),
        ({"steps": list(range(1, 12)), "interval": "1m"}, "1 to 10"),
        ({"steps": [10], "interval": "2 minutes"}, "interval"),
        ({"steps": [10], "interval": None}, "interval"),
        ({"steps": [10], "interval": "1m", "maxErrorRate": 1.5}, "maxErrorRate"),
        ({"steps": [10], "interval": "1m", "maxLatencyRatio": 0}, "maxLatencyRatio"),
        ({"steps": [10], "interval": "1m", "minAgreement": -0.1}, "minAgreement"),
    ],
)
def test_an_analysis_the_crd_refuses_is_refused_here_too(api: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Analysis.from_spec(api)


def test_a_mode_that_is_neither_canary_nor_shadow_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        rollout(mode="blue-green")


def test_ratios_are_judged_only_from_20_requests_and_agreement_from_20_compared_rows() -> None:
    assert Measurement(19, 1, 0.02, 0.01, 50, 25).error_rate is None
    assert Measurement(19, 1, 0.02, 0.01, 50, 25).latency_ratio is None
    assert Measurement(19, 1, 0.02, 0.01, 50, 25).agreement is None
    m = Measurement(20, 1, 0.02, 0.01, 20, 15)
    assert (m.error_rate, m.latency_ratio, m.agreement) == (0.05, 2.0, 0.75)
    assert Measurement(20, 1, 0.02, 0.01, 19, 15).agreement is None
    assert Measurement(20, 1, 0.02, 0.0, 20, 15).latency_ratio is None  # no stable latency


@pytest.mark.parametrize(
    "bad",
    [
        {"errors": 5, "requests": 4},
        {"agreed": 5, "compared": 4},
        {"p99_candidate": float("nan")},
        {"p99_stable": -1.0},
    ],
)
def test_an_impossible_measurement_is_refused(bad: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "requests": 10,
        "errors": 0,
        "p99_candidate": 0.1,
        "p99_stable": 0.1,
        "compared": 10,
        "agreed": 10,
    }
    with pytest.raises(ValueError):
        Measurement(**{**fields, **bad})
