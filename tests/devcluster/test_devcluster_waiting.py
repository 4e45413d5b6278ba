"""devcluster.waiting.wait_until on a fake clock: nothing here really sleeps."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devcluster.kube import health, procs
from devcluster.stack import mlstack
from devcluster.waiting import NotYet, WaitTimeout, wait_until


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def answers(*values: object) -> Callable[[], object]:
    """A check giving ``values`` in turn (an exception instance is raised), then the last."""
    it: Iterator[object] = iter(values)
    last: list[object] = []

    def check() -> object:
        value = next(it, last[0] if last else None)
        last[:] = [value]
        if isinstance(value, Exception):
            raise value
        return value

    return check


def test_the_first_truthy_value_is_returned_after_polling_every_interval(clock: FakeClock) -> None:
    got = wait_until("the answer", answers(None, 0, "", {"ready": True}), 10, 0.5,
                     clock=clock, sleep=clock.sleep)  # fmt: skip
    assert got == {"ready": True}
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_a_ready_check_returns_at_once_without_sleeping(clock: FakeClock) -> None:
    assert wait_until("x", lambda: 7, 0, clock=clock, sleep=clock.sleep) == 7
    assert clock.sleeps == []


def test_the_timeout_names_what_the_timeout_and_the_last_value(clock: FakeClock) -> None:
    with pytest.raises(WaitTimeout) as caught:
        wait_until("3 pods Ready", answers(0, 1 - 1, []), 2, 0.5, clock=clock, sleep=clock.sleep)
    assert str(caught.value) == "timed out after 2s waiting for 3 pods Ready (last value: [])"
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.what, caught.value.timeout, caught.value.last) == ("3 pods Ready", 2, [])
    assert clock.now == 1002.0  # it waited the whole timeout, not an interval more
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5]


def test_the_last_sleep_is_cut_to_the_deadline_and_checked_there(clock: FakeClock) -> None:
    seen: list[float] = []

    def check() -> bool:
        seen.append(clock.now - 1000.0)
        return False

    with pytest.raises(WaitTimeout):
        wait_until("x", check, 1.0, 0.4, clock=clock, sleep=clock.sleep)
    assert seen == pytest.approx([0.0, 0.4, 0.8, 1.0])


def test_a_check_runs_once_even_with_no_time_at_all(clock: FakeClock) -> None:
    calls: list[int] = []
    with pytest.raises(WaitTimeout):
        wait_until("x", lambda: calls.append(1), 0, clock=clock, sleep=clock.sleep)
    assert calls == [1]


def test_an_exception_ends_the_wait_at_once_unless_it_is_retried(clock: FakeClock) -> None:
    with pytest.raises(ConnectionRefusedError):
        wait_until("x", answers(ConnectionRefusedError("no"), True), 10,
                   clock=clock, sleep=clock.sleep)  # fmt: skip
    assert clock.sleeps == []


def test_retried_exceptions_count_as_not_yet(clock: FakeClock) -> None:
    check = answers(ConnectionRefusedError("no"), None, OSError("later"), "up")
    got = wait_until("x", check, 10, 1, retry_on=(OSError,), clock=clock, sleep=clock.sleep)
    assert got == "up"
    assert clock.sleeps == [1, 1, 1]


def test_an_exception_outside_retry_on_still_propagates(clock: FakeClock) -> None:
    with pytest.raises(KeyError):
        wait_until("x", answers(OSError(), KeyError("bug")), 10, 1,
                   retry_on=(OSError,), clock=clock, sleep=clock.sleep)  # fmt: skip


def test_a_last_retried_exception_is_named_and_is_the_cause(clock: FakeClock) -> None:
    refused = ConnectionRefusedError("connection refused")
    with pytest.raises(WaitTimeout) as caught:
        wait_until("the API server", answers(False, refused), 1.5, 0.5,
                   retry_on=(OSError,), clock=clock, sleep=clock.sleep)  # fmt: skip
    assert "after 1.5s waiting for the API server" in str(caught.value)
    assert "last error: ConnectionRefusedError: connection refused" in str(caught.value)
    assert caught.value.last is refused and caught.value.__cause__ is refused


def test_a_not_yet_answer_is_falsy_and_the_timeout_shows_its_reason(clock: FakeClock) -> None:
    check = answers(NotYet("HTTP 503"), NotYet("HTTP 503 loading the model"))
    with pytest.raises(WaitTimeout) as caught:
        wait_until("/ready to answer 200", check, 1, 0.5, clock=clock, sleep=clock.sleep)
    assert str(caught.value) == (
        "timed out after 1s waiting for /ready to answer 200 (last: HTTP 503 loading the model)"
    )
    assert isinstance(caught.value.last, NotYet) and not caught.value.last
    assert str(caught.value.last) == "HTTP 503 loading the model"
    assert repr(caught.value.last) == "NotYet('HTTP 503 loading the model')"


def test_not_yet_answers_are_polled_past_like_any_falsy_value(clock: FakeClock) -> None:
    got = wait_until("x", answers(NotYet("a"), NotYet("b"), 42), 10, 1,
                     clock=clock, sleep=clock.sleep)  # fmt: skip
    assert got == 42
    assert clock.sleeps == [1, 1]


class NotReady:
    """A falsy answer with a long description."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "pending " * 500


def test_a_long_last_value_is_cut_short(clock: FakeClock) -> None:
    with pytest.raises(WaitTimeout) as caught:
        wait_until("x", NotReady, 0, clock=clock, sleep=clock.sleep)
    assert len(str(caught.value)) < 600 and str(caught.value).endswith("…)")


def test_the_real_clock_and_sleep_are_the_defaults() -> None:
    started = time.monotonic()
    with pytest.raises(WaitTimeout):
        wait_until("x", lambda: False, 0.05, 0.01)
    assert 0.05 <= time.monotonic() - started < 1.0


# --- the two domain waits built on it (tiny real timeouts) ---------------------------------


def test_health_wait_for_names_the_last_error_of_a_check_that_raised() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(health.NotReadyError, match="last error: ConnectionRefusedError") as caught:
        health.wait_for("etcd", "/health to answer 200", refused, timeout=0.05, interval=0.01)
    assert caught.value.component == "etcd"
    assert "timed out after 0.05s waiting for /health to answer 200" in str(caught.value)


def test_health_wait_for_stops_at_once_when_the_process_exited(tmp_path: Path) -> None:
    proc = procs.spawn("quitter", [sys.executable, "-c", "pass"], tmp_path)
    assert procs.wait_gone(proc, 10)
    started = time.monotonic()
    with pytest.raises(health.NotReadyError, match="quitter exited while waiting for it"):
        health.wait_for("quitter", "it", lambda: False, timeout=30, proc=proc)
    assert time.monotonic() - started < 1.0


def test_mlstack_wait_for_adds_the_hint_to_the_timeout() -> None:
    with pytest.raises(
        mlstack.StackError, match=r"waiting for the store \(last value: False\); see"
    ):
        mlstack.wait_for("the store", lambda: False, 0.02, hint="see its log", interval=0.01)
    assert mlstack.wait_for("the store", lambda: True, 1) < 1.0
