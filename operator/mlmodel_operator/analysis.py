"""Candidate analysis: may the candidate model take the next step of traffic? (issue 17)

`spec.candidate.analysis` names steps (shares of traffic, in %), an interval and bounds
(docs/rollouts.md). For each step the operator rolls the pods to the step's share, waits until
they are all updated and ready (that moment is `stepStartedAt`), then looks at the candidate's
metrics every interval / 4 (at least 5 s apart):

- a bound is judged once the step saw at least `MIN_REQUESTS` candidate requests (the agreement
  once `MIN_COMPARED_ROWS` rows were compared as well); a broken bound fails the rollout at once
  and the candidate's share drops to 0;
- a step advances when its interval has passed since `stepStartedAt` and every bound holds (so a
  step without traffic, or whose metrics cannot be read, waits and says so);
- after the last step the rollout has Succeeded and the candidate keeps the last step's share
  until the user moves it to `spec.model`.

Shadow mode uses the same steps as evaluation rounds: the share is always 0 (the candidate
predicts copies), so no pods roll between rounds. Succeeded and Failed are final until the
rollout's key changes: another candidate, mode or analysis starts again at step 0.

This module is pure: no I/O and no clock. `decide` takes the current time and a `measure`
function, and returns a `Decision`: the next state, the share to render, the CandidateHealthy
condition, the Event to post and when to call again. The state lives in `status.candidate`
(`Decision.status()` writes it, `state_from_status` reads it back).

Read top to bottom: the inputs (Analysis, Rollout, Measurement), the states, `decide`, then the
status round trip.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from mlmodel_operator.candidate import Health

MIN_REQUESTS: Final = 20
"""Candidate requests (both kinds) a step needs before any bound is judged."""
MIN_COMPARED_ROWS: Final = 20
"""Rows both versions predicted before the agreement is judged (one row is not a share)."""
MIN_PERIOD_SECONDS: Final = 5.0
"""Evaluations are interval / 4 apart, and never closer than this."""

Mode = Literal["canary", "shadow"]
MODES: Final[tuple[Mode, ...]] = ("canary", "shadow")
Phase = Literal["Progressing", "Succeeded", "Failed"]

_INTERVAL: Final = re.compile(r"^([0-9]+)(s|m|h)$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600}
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"  # as every timestamp the operator writes


# --- the inputs -------------------------------------------------------------------------


def parse_interval(text: str) -> float:
    """`analysis.interval` in seconds: `90s`, `2m`, `1h` (the CRD's `^[0-9]+(s|m|h)$`)."""
    match = _INTERVAL.match(text.strip())
    if match is None:
        raise ValueError(f"analysis.interval {text!r} is not a duration like 30s, 2m or 1h")
    return float(int(match[1]) * _UNIT_SECONDS[match[2]])


@dataclass(frozen=True)
class Analysis:
    """`spec.candidate.analysis`: the steps (shares in %), the interval, the optional bounds."""

    steps: tuple[int, ...]
    interval: float  # seconds
    max_error_rate: float | None = None
    max_latency_ratio: float | None = None
    min_agreement: float | None = None

    def __post_init__(self) -> None:
        steps = self.steps
        if not 1 <= len(steps) <= 10:
            raise ValueError(f"analysis.steps must hold 1 to 10 shares, not {len(steps)}")
        if any(not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= 100 for s in steps):
            raise ValueError(f"analysis.steps must be whole percentages 1-100: {list(steps)}")
        if any(a >= b for a, b in itertools.pairwise(steps)):
            raise ValueError(f"analysis.steps must be strictly ascending: {list(steps)}")
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise ValueError(f"analysis.interval must be a positive duration: {self.interval}")
        for name, value, low, high in (
            ("maxErrorRate", self.max_error_rate, 0.0, 1.0),
            ("maxLatencyRatio", self.max_latency_ratio, 0.0, math.inf),
            ("minAgreement", self.min_agreement, 0.0, 1.0),
        ):
            if value is None:
                continue
            ok = math.isfinite(value) and low <= value <= high
            if not ok or (name == "maxLatencyRatio" and value <= 0):
                raise ValueError(f"analysis.{name} out of range: {value}")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | object) -> Analysis:
        """From `spec.candidate.analysis` as the API has it (camelCase keys, interval `2m`), or
        from an object with the snake_case attributes (the MLModel's pydantic model); interval
        may be a duration string, seconds or a timedelta."""
        if isinstance(spec, Mapping):
            get: Callable[[str, str], Any] = lambda camel, _snake: spec.get(camel)  # noqa: E731
        else:
            get = lambda _camel, snake: getattr(spec, snake, None)  # noqa: E731
        interval = get("interval", "interval")
        if isinstance(interval, str):
            seconds = parse_interval(interval)
        elif isinstance(interval, timedelta):
            seconds = interval.total_seconds()
        elif isinstance(interval, int | float) and not isinstance(interval, bool):
            seconds = float(interval)
        else:
            raise ValueError(f"analysis.interval is not a duration: {interval!r}")

        def bound(camel: str, snake: str) -> float | None:
            value = get(camel, snake)
            return None if value is None else float(value)

        return cls(
            steps=tuple(get("steps", "steps") or ()),
            interval=seconds,
            max_error_rate=bound("maxErrorRate", "max_error_rate"),
            max_latency_ratio=bound("maxLatencyRatio", "max_latency_ratio"),
            min_agreement=bound("minAgreement", "min_agreement"),
        )

    @property
    def period(self) -> float:
        """Seconds between evaluations: interval / 4, at least MIN_PERIOD_SECONDS."""
        return max(self.interval / 4, MIN_PERIOD_SECONDS)

    def bounds(self) -> tuple[str, ...]:
        """The names of the bounds set, in the API's words."""
        named = (
            ("maxErrorRate", self.max_error_rate),
            ("maxLatencyRatio", self.max_latency_ratio),
            ("minAgreement", self.min_agreement),
        )
        return tuple(name for name, value in named if value is not None)


@dataclass(frozen=True)
class Rollout:
    """One candidate rollout with analysis, as the spec asks for it now.

    `candidate` is any string that changes when what the pods load as the candidate does (its
    URI, digest and format, say); with the mode and the analysis it makes `key`, which the state
    carries: a state with another key belongs to another rollout and is started over.
    """

    analysis: Analysis
    mode: Mode
    candidate: str

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"candidate mode must be one of {MODES}, not {self.mode!r}")

    @property
    def key(self) -> str:
        """16 hex digits of a digest over candidate, mode and analysis."""
        a = self.analysis
        ident = [self.candidate, self.mode, list(a.steps), a.interval]
        ident += [a.max_error_rate, a.max_latency_ratio, a.min_agreement]
        return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]

    @property
    def last_step(self) -> int:
        """Index of the last step."""
        return len(self.analysis.steps) - 1

    def share(self, step: int) -> int:
        """The candidate's share of the requests during a step: 0 in shadow mode."""
        return 0 if self.mode == "shadow" else self.analysis.steps[step]

    def step_name(self, step: int) -> str:
        """'step 2 of 4' (canary) or 'round 2 of 4 (shadow)', for messages."""
        n = len(self.analysis.steps)
        if self.mode == "shadow":
            return f"round {step + 1} of {n} (shadow)"
        return f"step {step + 1} of {n}"


# Request and row counts beyond this are a pod's invention (and past float precision): the
# status's int64 fields would refuse them, and every status patch of the MLModel with them.
MAX_COUNT: Final = 2**53


@dataclass(frozen=True)
class Measurement:
    """The candidate's metrics over a step's window, summed over every pod.

    requests: candidate requests of both kinds (answers and copies); errors: those that failed.
    p99_*: 99th percentile of `model_server_version_duration_seconds` per role (None: no
    observations). compared / agreed: rows both versions predicted, and of those the rows where
    they agreed. candidate_ready: whether every pod loaded the candidate (None: not known).
    """

    requests: int
    errors: int
    p99_candidate: float | None
    p99_stable: float | None
    compared: int
    agreed: int
    candidate_ready: bool | None = None

    def __post_init__(self) -> None:
        if self.requests > MAX_COUNT or self.compared > MAX_COUNT:
            raise ValueError(
                f"counts over 2^53 are not plausible: {self.requests} requests, "
                f"{self.compared} compared rows"
            )
        if not 0 <= self.errors <= self.requests:
            raise ValueError(f"errors {self.errors} not within requests {self.requests}")
        if not 0 <= self.agreed <= self.compared:
            raise ValueError(f"agreed rows {self.agreed} not within compared {self.compared}")
        for p99 in (self.p99_candidate, self.p99_stable):
            if p99 is not None and not (math.isfinite(p99) and p99 >= 0):
                raise ValueError(f"a p99 latency must be a finite number of seconds: {p99}")

    @property
    def error_rate(self) -> float | None:
        """errors / requests, once there are MIN_REQUESTS requests."""
        return self.errors / self.requests if self.requests >= MIN_REQUESTS else None

    @property
    def latency_ratio(self) -> float | None:
        """p99 candidate / p99 stable, once there are MIN_REQUESTS requests and both p99s."""
        if self.requests < MIN_REQUESTS or self.p99_candidate is None or not self.p99_stable:
            return None
        return self.p99_candidate / self.p99_stable

    @property
    def agreement(self) -> float | None:
        """agreed / compared rows, once there are MIN_REQUESTS requests and MIN_COMPARED_ROWS."""
        if self.requests < MIN_REQUESTS or self.compared < MIN_COMPARED_ROWS:
            return None
        return self.agreed / self.compared


@dataclass(frozen=True)
class Unmeasured:
    """The metrics could not be read; `reason` is a sentence for status (no addresses)."""

    reason: str


MeasureResult = Measurement | Unmeasured
Measure = Callable[[datetime], MeasureResult]
"""Reads the candidate's metrics since the given time (the step's start), up to now."""


@dataclass(frozen=True)
class Measured:
    """What status keeps of the last evaluation (`status.candidate.measured`). A value is
    present only when it could be judged (see Measurement's properties)."""

    requests: int
    error_rate: float | None = None
    latency_ratio: float | None = None
    agreement: float | None = None

    @classmethod
    def of(cls, m: Measurement) -> Measured:
        """The judgeable values of a measurement, rounded as status shows them (bounds are
        judged on the Measurement itself)."""

        def rounded(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return cls(
            m.requests,
            rounded(m.error_rate, 3),
            rounded(m.latency_ratio, 2),
            rounded(m.agreement, 2),
        )

    def summary(self) -> str:
        """'error rate 0.000, latency ratio 1.02, agreement 0.97 over 412 requests'."""
        parts = []
        if self.error_rate is not None:
            parts.append(f"error rate {self.error_rate:.3f}")
        if self.latency_ratio is not None:
            parts.append(f"latency ratio {self.latency_ratio:.2f}")
        if self.agreement is not None:
            parts.append(f"agreement {self.agreement:.2f}")
        return ", ".join(parts) + f" over {self.requests} requests"

    def value_of(self, bound: str) -> float | None:
        """The measured value a bound (API name) is judged on."""
        return {
            "maxErrorRate": self.error_rate,
            "maxLatencyRatio": self.latency_ratio,
            "minAgreement": self.agreement,
        }[bound]


# --- the states -------------------------------------------------------------------------
#
# One class per situation, each holding only what is true of it: a step that has not started
# has no start time, a finished rollout no next evaluation. All carry the rollout's key, the
# step index and the message status shows.


@dataclass(frozen=True)
class Rolling:
    """Progressing: the pods are being rolled to this step's share (waiting for every pod to be
    updated and ready)."""

    key: str
    step: int
    message: str


@dataclass(frozen=True)
class Measuring:
    """Progressing: every pod has served this step's share since `started_at`; evaluated at
    `evaluated_at` (None: not yet), which found `measured` (None: nothing readable)."""

    key: str
    step: int
    message: str
    started_at: datetime
    evaluated_at: datetime | None = None
    measured: Measured | None = None


@dataclass(frozen=True)
class Succeeded:
    """Every step passed; the candidate keeps the last step's share. Final for this key."""

    key: str
    step: int
    message: str
    measured: Measured | None = None


@dataclass(frozen=True)
class Failed:
    """A bound broke during `step`; the candidate's share is 0. Final for this key."""

    key: str
    step: int
    message: str
    measured: Measured | None = None


State = Rolling | Measuring | Succeeded | Failed


def phase_of(state: State) -> Phase:
    """status.candidate.phase."""
    if isinstance(state, Succeeded):
        return "Succeeded"
    if isinstance(state, Failed):
        return "Failed"
    return "Progressing"


def share_of(rollout: Rollout, state: State) -> int:
    """The share the pods should run in this state (MODEL_SERVER_CANDIDATE_PERCENT)."""
    if isinstance(state, Failed):
        return 0
    return rollout.share(state.step)


def health_of(rollout: Rollout, state: State) -> Health:
    """CandidateHealthy, from the state alone.

    A Measuring state never holds a broken bound (that is Failed), so a bound holds when its
    value was measured: the condition is True once every bound set has a value."""
    if isinstance(state, Failed):
        return Health("False", "BoundBroken", state.message)
    if isinstance(state, Succeeded):
        return Health("True", "BoundsHold", state.message)
    if isinstance(state, Rolling):
        return Health("Unknown", "WaitingForPods", state.message)
    measured = state.measured
    if measured is None:
        return Health("Unknown", "NotMeasured", state.message)
    if measured.requests < MIN_REQUESTS:
        return Health("Unknown", "TooFewRequests", state.message)
    if any(measured.value_of(bound) is None for bound in rollout.analysis.bounds()):
        return Health("Unknown", "NotMeasured", state.message)
    return Health("True", "BoundsHold", state.message)


@dataclass(frozen=True)
class Event:
    """An Event to post on the MLModel."""

    reason: Literal["CandidateStep", "CandidateSucceeded", "CandidateFailed"]
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


# --- the decision -----------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What the reconciler does with a rollout this round."""

    rollout: Rollout
    state: State
    event: Event | None
    requeue_after: float | None
    """Seconds until `decide` should run again (None: the state is final)."""

    @property
    def share(self) -> int:
        """MODEL_SERVER_CANDIDATE_PERCENT to render."""
        return share_of(self.rollout, self.state)

    @property
    def phase(self) -> Phase:
        """status.candidate.phase."""
        return phase_of(self.state)

    @property
    def message(self) -> str:
        """status.candidate.message."""
        return self.state.message

    @property
    def health(self) -> Health:
        """The CandidateHealthy condition."""
        return health_of(self.rollout, self.state)

    def status(self) -> dict[str, Any]:
        """The fields of `status.candidate` the analysis owns (`state_to_status`); the caller
        adds mode, trafficPercent (`share`), stable and candidate."""
        return state_to_status(self.state)


def decide(
    rollout: Rollout,
    state: State | None,
    *,
    ready_share: int | None,
    measure: Measure,
    now: datetime,
) -> Decision:
    """The next state of a rollout.

    state: as read from status (`state_from_status`); None, or one with another key, starts
    the rollout at step 0.
    ready_share: the share at which every pod of the Deployment is updated and ready, serving
    this candidate in this mode (MODEL_SERVER_CANDIDATE_PERCENT of the live pod template, when
    its rollout is complete); None while pods roll or the template serves something else.
    measure: called only when an evaluation is due, with the step's start.
    now: the current time (timezone-aware).
    """
    now = _whole_second(now)
    event = None
    if state is None or state.key != rollout.key or not 0 <= state.step <= rollout.last_step:
        state = Rolling(rollout.key, 0, _rolling_message(rollout, 0))
        event = Event("CandidateStep", f"{_step_head(rollout, 0)}: analysis starts")
    period = rollout.analysis.period

    if isinstance(state, Succeeded | Failed):
        return Decision(rollout, state, event, None)

    if isinstance(state, Rolling):
        if ready_share != rollout.share(state.step):
            return Decision(rollout, state, event, period)
        return Decision(rollout, _start_step(rollout, state.step, now), event, period)

    due = (state.evaluated_at or state.started_at) + timedelta(seconds=period)
    if now < due:
        return Decision(rollout, state, event, (due - now).total_seconds())
    settled = ready_share == rollout.share(state.step)
    state, step_event = _evaluate(rollout, state, measure(state.started_at), now, settled)
    requeue = None if isinstance(state, Succeeded | Failed) else period
    return Decision(rollout, state, step_event or event, requeue)


def _start_step(rollout: Rollout, step: int, now: datetime) -> Measuring:
    first = now + timedelta(seconds=rollout.analysis.period)
    message = f"{_since(rollout, step, now)}; first evaluation at {first:%H:%M:%S}"
    return Measuring(rollout.key, step, message, started_at=now)


def _evaluate(
    rollout: Rollout, state: Measuring, result: MeasureResult, now: datetime, settled: bool
) -> tuple[State, Event | None]:
    """Judge one measurement: fail, restart the step, wait, hold or advance.

    settled: every pod is still updated and ready at this step's share. When one is not (it
    restarted, which also zeroes its counters; it became unready; the Deployment scaled), a
    broken bound still fails the candidate, but nothing passes: the step starts again once
    every pod is ready, so a step passes only on what every pod served for a whole interval.
    """
    head = _since(rollout, state.step, state.started_at)
    if isinstance(result, Unmeasured) and settled:
        message = f"{head}; metrics unavailable, waiting: {result.reason}"
        return replace(state, message=message, evaluated_at=now, measured=None), None
    if not isinstance(result, Unmeasured):
        broken = _broken_bounds(rollout.analysis, result)
        if broken:
            return _fail(rollout, state, Measured.of(result), broken)
    if not settled:
        message = f"{_rolling_message(rollout, state.step)}; the step starts again then"
        return Rolling(rollout.key, state.step, message), None
    assert not isinstance(result, Unmeasured)
    measured = Measured.of(result)
    waiting = _why_waiting(rollout, result, measured)
    if waiting is not None:
        message = f"{head}; {waiting}"
        return replace(state, message=message, evaluated_at=now, measured=measured), None
    if now < state.started_at + timedelta(seconds=rollout.analysis.interval):
        message = f"{head}; {measured.summary()}"
        return replace(state, message=message, evaluated_at=now, measured=measured), None
    return _advance(rollout, state, measured, now)


def _broken_bounds(analysis: Analysis, result: Measurement) -> list[str]:
    """'maxErrorRate: 0.43 > 0.01' for every bound the measurement breaks."""
    broken = []
    error_rate, bound = result.error_rate, analysis.max_error_rate
    if error_rate is not None and bound is not None and error_rate > bound:
        broken.append(f"maxErrorRate: {_distinct(error_rate, bound)} > {bound:g}")
    ratio, bound = result.latency_ratio, analysis.max_latency_ratio
    if ratio is not None and bound is not None and ratio > bound:
        broken.append(f"maxLatencyRatio: {_distinct(ratio, bound)} > {bound:g}")
    agreement, bound = result.agreement, analysis.min_agreement
    if agreement is not None and bound is not None and agreement < bound:
        broken.append(f"minAgreement: {_distinct(agreement, bound)} < {bound:g}")
    return broken


def _why_waiting(rollout: Rollout, result: Measurement, measured: Measured) -> str | None:
    """Why the step cannot pass yet although no bound broke (None: every bound holds)."""
    if result.requests < MIN_REQUESTS:
        not_loaded = ""
        if result.candidate_ready is False:
            not_loaded = "the candidate is not loaded on every pod (model_server_version_ready 0); "
        if result.requests == 0:
            return f"{not_loaded}no candidate requests yet: waiting for traffic"
        return (
            f"{not_loaded}waiting for traffic: {result.requests} of {MIN_REQUESTS} "
            "candidate requests"
        )
    if result.candidate_ready is False:
        return (
            f"{measured.summary()}; waiting for the candidate to be loaded on every pod "
            "(model_server_version_ready 0 on some)"
        )
    missing = []
    if measured.latency_ratio is None and "maxLatencyRatio" in rollout.analysis.bounds():
        role = "stable" if result.p99_candidate is not None else "candidate"
        missing.append(f"the latency ratio (no {role} latency observed yet)")
    if measured.agreement is None and "minAgreement" in rollout.analysis.bounds():
        missing.append(
            f"the agreement ({result.compared} of {MIN_COMPARED_ROWS} rows compared so far)"
        )
    if missing:
        return f"{measured.summary()}; waiting for {' and '.join(missing)}"
    return None


def _fail(
    rollout: Rollout, state: Measuring, measured: Measured, broken: list[str]
) -> tuple[Failed, Event]:
    after = "" if rollout.mode == "shadow" else "; the candidate answers no requests now"
    message = (
        f"{_step_head(rollout, state.step)} failed: {'; '.join(broken)} over "
        f"{measured.requests} requests{after}; change spec.candidate to try again"
    )
    failed = Failed(rollout.key, state.step, message, measured)
    return failed, Event("CandidateFailed", message, "Warning")


def _advance(
    rollout: Rollout, state: Measuring, measured: Measured, now: datetime
) -> tuple[State, Event]:
    passed = f"{rollout.step_name(state.step)} passed: {measured.summary()}"
    if state.step == rollout.last_step:
        n = len(rollout.analysis.steps)
        if rollout.mode == "shadow":
            done = f"all {n} shadow rounds passed ({measured.summary()} in the last)"
        else:
            share = rollout.share(state.step)
            done = f"all {n} steps passed ({measured.summary()} in the last); the candidate "
            done += f"serves {share} %"
        message = f"{done}: move spec.candidate.model to spec.model to finish"
        succeeded = Succeeded(rollout.key, state.step, message, measured)
        return succeeded, Event("CandidateSucceeded", message)
    step = state.step + 1
    event = Event("CandidateStep", f"{_step_head(rollout, step)} ({passed})")
    if rollout.share(step) == rollout.share(state.step):  # shadow: the pods stay as they are
        return _start_step(rollout, step, now), event
    return Rolling(rollout.key, step, _rolling_message(rollout, step)), event


# --- messages ---------------------------------------------------------------------------


def _step_head(rollout: Rollout, step: int) -> str:
    """'step 2 of 4: 25 %' or 'round 2 of 4 (shadow)'."""
    if rollout.mode == "shadow":
        return rollout.step_name(step)
    return f"{rollout.step_name(step)}: {rollout.share(step)} %"


def _since(rollout: Rollout, step: int, started_at: datetime) -> str:
    """'step 2 of 4: 25 % since 12:01:07'."""
    return f"{_step_head(rollout, step)} since {started_at:%H:%M:%S}"


def _rolling_message(rollout: Rollout, step: int) -> str:
    if rollout.mode == "shadow":
        return f"{rollout.step_name(step)}: waiting for every pod to be updated and ready"
    return (
        f"{rollout.step_name(step)}: waiting for every pod to be updated and ready at "
        f"{rollout.share(step)} %"
    )


def _distinct(value: float, bound: float) -> str:
    """`value` with as few significant digits as show it differs from `bound` (0.43, not
    0.4300001; 0.0104, not 0.01 next to a bound of 0.01)."""
    for digits in range(2, 10):
        text = f"{value:.{digits}g}"
        if float(text) != bound:
            return text
    return repr(value)


def _whole_second(moment: datetime) -> datetime:
    """`moment` in UTC without microseconds: status keeps whole seconds, and a state must read
    back from status as it was written."""
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0)


# --- the status round trip --------------------------------------------------------------


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def _parse_timestamp(text: object) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=UTC)


def _measured_to_status(measured: Measured) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": measured.requests}
    if measured.error_rate is not None:
        out["errorRate"] = f"{measured.error_rate:.3f}"
    if measured.latency_ratio is not None:
        out["latencyRatio"] = f"{measured.latency_ratio:.2f}"
    if measured.agreement is not None:
        out["agreement"] = f"{measured.agreement:.2f}"
    return out


def _measured_from_status(doc: object) -> Measured | None:
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise ValueError("measured is not an object")
    requests = doc.get("requests")
    if not isinstance(requests, int) or isinstance(requests, bool) or requests < 0:
        raise ValueError(f"measured.requests is not a count: {requests!r}")

    def number(key: str) -> float | None:
        value = doc.get(key)
        return None if value is None else float(value)

    return Measured(requests, number("errorRate"), number("latencyRatio"), number("agreement"))


def state_to_status(state: State) -> dict[str, Any]:
    """The fields of `status.candidate` (camelCase) that hold the analysis' state: phase,
    step, stepStartedAt, evaluatedAt, message, measured and analysisKey (the rollout's key; a
    state with another key is started over). The caller adds mode, trafficPercent (`share_of`),
    stable and candidate."""
    out: dict[str, Any] = {
        "phase": phase_of(state),
        "step": state.step,
        "message": state.message,
        "analysisKey": state.key,
    }
    if isinstance(state, Measuring):
        out["stepStartedAt"] = _timestamp(state.started_at)
        if state.evaluated_at is not None:
            out["evaluatedAt"] = _timestamp(state.evaluated_at)
    measured = None if isinstance(state, Rolling) else state.measured
    if measured is not None:
        out["measured"] = _measured_to_status(measured)
    return out


def state_from_status(candidate: Mapping[str, Any] | None) -> State | None:
    """The state `state_to_status` wrote into `status.candidate` (None: there is none, or it
    is not one this module wrote, e.g. a candidate without analysis: the rollout starts over)."""
    if not candidate:
        return None
    try:
        key, step, message = candidate["analysisKey"], candidate["step"], candidate["message"]
        if not (isinstance(key, str) and isinstance(message, str)):
            return None
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            return None
        phase = candidate.get("phase")
        measured = _measured_from_status(candidate.get("measured"))
        if phase == "Succeeded":
            return Succeeded(key, step, message, measured)
        if phase == "Failed":
            return Failed(key, step, message, measured)
        if phase != "Progressing":
            return None
        if "stepStartedAt" not in candidate:
            return Rolling(key, step, message)
        started_at = _parse_timestamp(candidate["stepStartedAt"])
        evaluated = candidate.get("evaluatedAt")
        evaluated_at = None if evaluated is None else _parse_timestamp(evaluated)
        return Measuring(key, step, message, started_at, evaluated_at, measured)
    except (KeyError, TypeError, ValueError):
        return None
