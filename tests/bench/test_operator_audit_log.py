"""bench/operator/audit.py reads an audit log the API server is still appending to."""

from __future__ import annotations

import json
from pathlib import Path

from bench.operator.audit import AuditLog

USER = "system:serviceaccount:mlmodel-system:mlmodel-operator"


def event(verb: str, resource: str, user: str = USER) -> bytes:
    body = {"user": {"username": user}, "verb": verb, "objectRef": {"resource": resource}}
    return json.dumps(body).encode() + b"\n"


def test_windows_start_and_stop_at_whole_lines_while_an_event_is_half_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    assert log.mark() == 0  # no log yet
    first, second = event("get", "deployments"), event("patch", "deployments")
    path.write_bytes(first + second[:20])  # the second event is half written
    start = log.mark()
    assert start == len(first)  # not inside the half-written event
    assert log.requests(0, USER) == {"get deployments": 1}  # the torn line is not parsed
    with path.open("ab") as f:
        f.write(second[20:] + event("get", "leases") + event("get", "pods", user="someone"))
    assert log.requests(start, USER) == {"patch deployments": 1, "get leases": 1}
    assert log.mark() == path.stat().st_size
