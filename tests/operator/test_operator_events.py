"""Events are posted in order off the reconcile path; a refused one is dropped, not fatal."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from mlmodel_operator.events import EventRecorder

MODEL = {"metadata": {"namespace": "models", "name": "iris", "uid": "u"}}


class Sink:
    def __init__(self, refuse: str = "", gate: threading.Event | None = None) -> None:
        self.posted: list[tuple[str, str]] = []
        self.types: list[str] = []
        self.refuse = refuse
        self.gate = gate

    def post_event(
        self, involved: Mapping[str, Any], reason: str, message: str, event_type: str = "Normal"
    ) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        if reason == self.refuse:
            raise RuntimeError("403 Forbidden")
        self.posted.append((reason, message))
        self.types.append(event_type)


def test_events_are_posted_in_order_and_a_refused_one_does_not_stop_the_rest() -> None:
    sink = Sink(refuse="Deleted")
    recorder = EventRecorder(sink)
    recorder.record(MODEL, "Created", "Created Deployment iris")
    recorder.record(MODEL, "Deleted", "Deleted HorizontalPodAutoscaler iris")
    recorder.record(MODEL, "Updated", "Updated Deployment iris (.spec.replicas)")
    recorder.flush()
    assert sink.posted == [
        ("Created", "Created Deployment iris"),
        ("Updated", "Updated Deployment iris (.spec.replicas)"),
    ]


def test_record_never_blocks_and_drops_beyond_the_backlog() -> None:
    gate = threading.Event()
    sink = Sink(gate=gate)
    recorder = EventRecorder(sink, backlog=2)
    for i in range(10):  # the poster is stuck on the first: the rest must not block the caller
        recorder.record(MODEL, "Created", f"event {i}")
    gate.set()
    recorder.flush()
    assert 2 <= len(sink.posted) <= 3
    assert sink.posted[0] == ("Created", "event 0")


def test_an_event_keeps_its_type_normal_unless_recorded_as_a_warning() -> None:
    sink = Sink()
    recorder = EventRecorder(sink)
    recorder.record(MODEL, "CandidateStep", "step 2 of 4: 25 %")
    recorder.record(MODEL, "CandidateFailed", "maxErrorRate: 0.43 > 0.01", "Warning")
    recorder.flush()
    assert sink.types == ["Normal", "Warning"]
