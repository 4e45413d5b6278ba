"""Reading Prometheus text metrics, e.g. counting the API server's write requests."""

from __future__ import annotations

import re
from collections.abc import Iterable

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of metric ``name``: (labels, value)."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group("name") != name:
            continue
        labels = {
            m.group("key"): m.group("value") for m in _LABEL.finditer(match.group("labels") or "")
        }
        found.append((labels, float(match.group("value"))))
    return found


def request_total(
    text: str,
    *,
    verbs: Iterable[str] = WRITE_VERBS,
    resource: str | None = None,
    group: str | None = None,
) -> float:
    """Sum of ``apiserver_request_total`` over ``verbs`` (default: writes), optionally filtered."""
    wanted = {v.upper() for v in verbs}
    total = 0.0
    for labels, value in samples(text, "apiserver_request_total"):
        if labels.get("verb", "").upper() not in wanted:
            continue
        if resource is not None and labels.get("resource") != resource:
            continue
        if group is not None and labels.get("group") != group:
            continue
        total += value
    return total
