"""The informer's list/watch loop: why a list happens is kept through failures (a re-list after
410 Gone that first fails is still counted as `expired`), and the loop goes on after errors."""

from __future__ import annotations

import threading
from typing import Any

from mlmodel_operator.informer import Deadlines, Expired, Informer
from mlmodel_operator.main import MLMODELS


class Scripted(Informer):
    """An informer whose list and watch follow a script instead of calling an API server."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        deadlines = Deadlines(watch_seconds=60, request_seconds=30, resync_seconds=0)
        super().__init__(None, MLMODELS, None, None, None, deadlines)  # type: ignore[arg-type]
        self.lists, self.watches = lists, watches
        self.reasons: list[str] = []
        self.done = threading.Event()

    def _list(self, reason: str) -> str:
        self.reasons.append(reason)
        return str(self._next(self.lists))

    def _watch(self, version: str) -> str:
        return str(self._next(self.watches))

    def _next(self, script: list[Any]) -> Any:
        if not script:
            self.done.set()
            self.stop()
            raise RuntimeError("script over")
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def test_a_relist_after_410_that_fails_first_is_still_counted_as_expired() -> None:
    informer = Scripted(
        lists=["1", RuntimeError("503 the API server is starting"), "7"],
        watches=[Expired()],
    )
    informer.start()
    assert informer.done.wait(timeout=30)
    # initial list, 410 -> a list that fails, then succeeds: both attempts were for "expired"
    assert informer.reasons == ["initial", "expired", "expired"]


def test_a_failed_watch_is_retried_from_its_version_without_a_list() -> None:
    informer = Scripted(lists=["1"], watches=[RuntimeError("connection reset"), "5"])
    informer.start()
    assert informer.done.wait(timeout=30)
    assert informer.reasons == ["initial"]
