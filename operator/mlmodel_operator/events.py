"""Kubernetes Events on MLModels ("Created Deployment iris"), posted off the reconcile path.

A reconcile records an Event per child write; one background thread posts them, so a burst of
new models is not slowed by a request per event. Events are best effort, as in client-go's
recorder: if the API server refuses one, or the backlog is full, it is logged and dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from typing import Any, Final, Protocol

LOG = logging.getLogger("mlmodel_operator.events")
BACKLOG: Final = 10_000


class EventSink(Protocol):
    """What posts one Event (kube.Kube)."""

    def post_event(
        self, involved: Mapping[str, Any], reason: str, message: str, event_type: str = "Normal"
    ) -> None: ...


class EventRecorder:
    """Queues Events and posts them from one daemon thread, in order."""

    def __init__(self, sink: EventSink, backlog: int = BACKLOG) -> None:
        self.sink = sink
        self._pending: queue.Queue[tuple[Mapping[str, Any], str, str, str]] = queue.Queue(backlog)
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def record(
        self, involved: Mapping[str, Any], reason: str, message: str, event_type: str = "Normal"
    ) -> None:
        """Queue an Event on `involved` (type Normal or Warning); never blocks."""
        try:
            self._pending.put_nowait((involved, reason, message, event_type))
        except queue.Full:
            LOG.warning("event backlog full, dropped: %s %s", reason, message)

    def flush(self) -> None:
        """Wait until every queued Event was posted (or failed)."""
        self._pending.join()

    def _run(self) -> None:
        while True:
            involved, reason, message, event_type = self._pending.get()
            try:
                self.sink.post_event(involved, reason, message, event_type)
            except Exception as exc:  # best effort: the write the event reports did happen
                meta = involved.get("metadata") or {}
                LOG.warning(
                    "event on MLModel %s/%s not recorded: %s",
                    meta.get("namespace"),
                    meta.get("name"),
                    exc,
                )
            finally:
                self._pending.task_done()
