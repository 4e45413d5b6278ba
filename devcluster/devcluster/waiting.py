"""Waiting for a condition with a deadline: the one poll loop of devcluster, bench and tests.

``wait_until(what, check, timeout, interval)`` calls ``check`` at once, then every ``interval``
seconds, and a last time at the deadline; the first truthy value it returns is the result. When
the deadline passes first, :class:`WaitTimeout` (a ``TimeoutError``) names ``what``, the timeout
and the last value or exception ``check`` gave.

A check that has something to say about why it is not done yet returns ``NotYet(reason)``: it is
falsy, and a timeout shows the reason ("last: HTTP 503 loading") instead of a bare ``False``.

Exceptions from ``check`` end the wait at once, unless they are instances of ``retry_on``: those
count as "not yet" (say ``retry_on=(OSError,)`` while a server is still binding its port). The
default retries nothing, so a bug in ``check`` shows up as itself, not as a timeout: a check
that sees its process exit raises, and the wait ends there. ``clock`` and ``sleep`` are
parameters so that tests can run a wait on a fake clock.

Callers that owe their own callers another error (a ``pytest.fail``, a ``RuntimeError`` with a
log's tail) catch :class:`WaitTimeout` and raise theirs from it; ``last`` holds what was seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

T = TypeVar("T")

SHOWN_CHARS = 500  # of the last value's repr, in the timeout's message


class NotYet:
    """A falsy answer of a check, saying why it is not done yet (shown by :class:`WaitTimeout`)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __bool__(self) -> Literal[False]:
        return False

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"NotYet({self.reason!r})"


class WaitTimeout(TimeoutError):
    """``check`` gave nothing truthy within ``timeout`` seconds; ``last`` is what it gave last."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        self.what = what
        self.timeout = timeout
        self.last = last
        super().__init__(f"timed out after {timeout:g}s waiting for {what} ({_describe(last)})")


def wait_until(
    what: str,
    check: Callable[[], T | NotYet],
    timeout: float,
    interval: float = 0.2,
    *,
    retry_on: tuple[type[Exception], ...] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """The first truthy value of ``check()``; :class:`WaitTimeout` once ``timeout`` has passed.

    ``check`` runs at least once, even with a timeout of 0. An exception it raises propagates
    unless it is one of ``retry_on``; a retried one becomes the ``__cause__`` of the timeout
    when it was the last thing seen.
    """
    deadline = clock() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except retry_on as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        remaining = deadline - clock()
        if remaining <= 0:
            cause = last if isinstance(last, BaseException) else None
            raise WaitTimeout(what, timeout, last) from cause
        sleep(min(interval, remaining))


def _describe(last: object) -> str:
    if isinstance(last, NotYet):
        text = f"last: {last.reason}"
    elif isinstance(last, BaseException):
        text = f"last error: {type(last).__name__}: {last}"
    else:
        text = f"last value: {last!r}"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"
