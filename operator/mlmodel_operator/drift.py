"""PURE drift detection: does a live child still carry every field the operator applies?

A server-side apply of an unchanged manifest is still a write request (PATCH) to the API
server. To make a converged reconcile write nothing, the operator first compares what it
would apply with what is live and applies only when a field it owns differs. The comparison
is a subset check: fields the API server defaults or other managers add are ignored, lists of
objects are matched by their merge key, and quantities compare by value ("0.5" == "500m").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import InvalidOperation
from typing import Any, Final

from kubernetes.utils.quantity import parse_quantity

# Keys that identify an element in the lists the operator renders (strategic merge keys).
_MERGE_KEYS: Final = ("name", "uid", "containerPort", "port", "type", "key")


def drifted_paths(desired: Any, live: Any, path: str = "") -> list[str]:
    """Paths under `desired` whose value is missing from or different in `live`.

    An empty desired value ("", [], {}) matches a missing one: the API server leaves empty
    optional fields out of what it returns (`omitempty`: an env var's value "", a toleration's
    value ""), and counting that as drift re-applied the same object every round."""
    if live is None and _empty(desired):
        return []
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return [path or "."]
        found: list[str] = []
        for key, value in desired.items():
            found += drifted_paths(value, live.get(key), f"{path}.{key}")
        return found
    if _is_list(desired):
        return _list_drift(desired, live, path)
    return [] if _scalar_equal(desired, live) else [path]


def _empty(value: Any) -> bool:
    return (isinstance(value, str | Mapping) or _is_list(value)) and len(value) == 0


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)


def _list_drift(desired: Sequence[Any], live: Any, path: str) -> list[str]:
    if not _is_list(live):
        return [path]
    key = _merge_key(desired)
    if key is None:
        if len(desired) != len(live):
            return [path]
        found: list[str] = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            found += drifted_paths(want, have, f"{path}[{index}]")
        return found
    by_key = {item.get(key): item for item in live if isinstance(item, Mapping)}
    found = []
    for want in desired:
        found += drifted_paths(want, by_key.get(want[key]), f"{path}[{key}={want[key]}]")
    return found


def _merge_key(items: Sequence[Any]) -> str | None:
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    for key in _MERGE_KEYS:
        values = [item.get(key) for item in items]
        if None not in values and len(set(map(str, values))) == len(values):
            return key
    return None


def _scalar_equal(want: Any, have: Any) -> bool:
    if want == have and type(want) is type(have):
        return True
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    try:
        return bool(parse_quantity(want) == parse_quantity(have))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation):
        return False


def owned_but_unwanted(managed: Mapping[str, Any], desired: Any, path: str = "") -> list[str]:
    """Fields the operator still owns (managedFields, fieldsV1) that `desired` no longer has.

    Re-applying removes them, so their presence is drift: e.g. spec.replicas after autoscaling
    was turned on, or resources after spec.server.resources was deleted.
    """
    found: list[str] = []
    for key, sub in managed.items():
        if key.startswith("f:"):
            name = key[2:]
            if not isinstance(desired, Mapping) or name not in desired:
                found.append(f"{path}.{name}")
            elif sub:
                found += owned_but_unwanted(sub, desired[name], f"{path}.{name}")
        elif key.startswith("k:"):
            element = _element_by_key(desired, json.loads(key[2:]))
            if element is None:
                found.append(f"{path}[{key[2:]}]")
            elif sub:
                found += owned_but_unwanted(sub, element, f"{path}[{key[2:]}]")
        elif key.startswith("v:") and (
            not isinstance(desired, Sequence) or json.loads(key[2:]) not in desired
        ):
            found.append(f"{path}[{key[2:]}]")
    return found


def _element_by_key(items: Any, ident: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if not _is_list(items):
        return None
    for item in items:
        if isinstance(item, Mapping) and all(item.get(k) == v for k, v in ident.items()):
            return item
    return None


def managed_fields_of(live: Mapping[str, Any], manager: str) -> Mapping[str, Any]:
    """The fieldsV1 set `manager` owns through Apply on the main resource (empty if none)."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            fields: Mapping[str, Any] = entry.get("fieldsV1") or {}
            return fields
    return {}


def drift(desired: Mapping[str, Any], live: Mapping[str, Any], manager: str) -> list[str]:
    """Every reason to re-apply `desired` over `live`; empty means applying would change nothing."""
    return drifted_paths(desired, live) + owned_but_unwanted(
        managed_fields_of(live, manager), desired
    )
