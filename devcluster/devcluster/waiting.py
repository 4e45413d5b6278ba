"""Waiting for a condition with a deadline: the one poll loop of devcluster, bench and tests.

``wait_until(what, check, timeout, interval)`` calls ``check`` at once, then every ``interval``
seconds, and a last time at the deadline; the first truthy value it returns is the result. When
the deadline passes first, :class:`WaitTimeout` (a ``TimeoutError``) names ``what``, the timeout
and the last value or exception ``check`` gave.

Exceptions from ``check`` end the wait at once, unless they are instances of ``retry_on``: those
count as "not yet" (say ``retry_on=(OSError,)`` while a server is still binding its port). The
default retries nothing, so a bug in ``check`` shows up as itself, not as a timeout. ``clock``
and ``sleep`` are parameters so that tests can run a wait on a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

SHOWN_CHARS = 500  # of the last value's repr, in the timeout's message


class WaitTimeout(TimeoutError):
    """``check`` gave nothing truthy within ``timeout`` seconds; ``last`` is what it gave last."""

    def __init__(self, what: str, timeout: float, last: object) -> None:
        self.what = what
        self.timeout = timeout
        self.last = last
        super().__init__(f"timed out after {timeout:g}s waiting for {what} ({_describe(last)})")


def wait_until(
    what: str,
    check: Callable[[], T],
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
    if isinstance(last, BaseException):
        text = f"last error: {type(last).__name__}: {last}"
    else:
        text = f"last value: {last!r}"
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"
