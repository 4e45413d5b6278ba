"""The operator's watch cache: MLModels, their children and their pods, as last seen.

kopf's watch streams feed it (main.py registers the feeders as kopf indexes, so every object
of the initial listing is in here before any reconcile runs). Reconciles read from it instead
of GETting each child, which is what lets 1,000 MLModels converge without a read request per
event. Objects are stored slimmed: only the fields a reconcile reads, and of managedFields only
the operator's own entries.

A reconcile that just wrote an object keeps the API server's answer here as well ("recent
writes"): until the watch event for that write arrives, the cache would otherwise show the
older object, and the next reconcile would see drift that is already fixed and write again.
A recent write is used while it is newer than the watched object (resourceVersions of one
object are compared as etcd revisions) and for at most RECENT_WRITE_TTL_SECONDS.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from mlmodel_operator.analysis_metrics import scrape_view
from mlmodel_operator.kube import FIELD_MANAGER
from mlmodel_operator.render.meta import LABEL_INSTANCE

RECENT_WRITE_TTL_SECONDS: Final = 30.0
Key = tuple[str, str, str]  # (kind, namespace, name)
_META_KEPT: Final = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "labels",
    "annotations",
    "ownerReferences",
    "deletionTimestamp",
)
_LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
_INTERN_MAX: Final = 64


def compact(value: Any) -> Any:
    """A plain deep copy with interned keys and short strings.

    A thousand Deployments repeat the same keys and most of the same values ("metadata",
    "app.kubernetes.io/managed-by", "True", ...); interned, each is stored once. The copy also
    lets the watch event the value came from be freed.
    """
    if isinstance(value, Mapping):
        return {sys.intern(str(k)): compact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= _INTERN_MAX:
        return sys.intern(value)
    return value


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a reconcile reads of an object: identity, labels, owners, spec, status, our fields."""
    meta = body.get("metadata") or {}
    kept: dict[str, Any] = {k: meta[k] for k in _META_KEPT if meta.get(k) is not None}
    if _LAST_APPLIED in (kept.get("annotations") or {}):
        kept["annotations"] = {k: v for k, v in kept["annotations"].items() if k != _LAST_APPLIED}
    ours = [e for e in meta.get("managedFields") or [] if e.get("manager") == FIELD_MANAGER]
    if ours:
        kept["managedFields"] = ours
    out: dict[str, Any] = {"metadata": kept}
    for field in ("apiVersion", "kind", "spec", "status"):
        if field in body:
            out[field] = body[field]
    return compact(out)  # type: ignore[no-any-return]


def slim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """What status derivation reads of a pod (name, deletion, scheduling and container states)
    and what candidate analysis needs to scrape it (analysis_metrics.scrape_view: annotations,
    controller, IP, host network, each container's name and env)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    view = scrape_view(body)
    kept_meta = {k: meta[k] for k in ("name", "deletionTimestamp") if meta.get(k) is not None}
    kept_status = {
        k: status[k] for k in ("phase", "conditions", "containerStatuses") if k in status
    }
    kept = {
        "metadata": {**view["metadata"], **kept_meta},
        "spec": view["spec"],
        "status": {**view["status"], **kept_status},
    }
    return compact(kept)  # type: ignore[no-any-return]


def _revision(obj: Mapping[str, Any] | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class ObjectCache:
    """Thread-safe: kopf's event loop stores and drops objects, reconcile workers read them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._pods: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        # (namespace, pod) -> the MLModel it is kept under: a pod whose instance label changes
        # (or that leaves the watch's selector, which arrives as a delete with the new labels)
        # must leave the group it was in.
        self._pod_owner: dict[tuple[str, str], str] = {}
        self._recent: dict[Key, tuple[float, dict[str, Any] | None, str]] = {}

    # --- fed by the watch streams
    def store(self, kind: str, body: Mapping[str, Any]) -> None:
        """Keep (a slim copy of) a watched object."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            self._objects[key] = slim(body)

    def drop(self, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        """Forget a deleted object (only if it is still the one with `uid`, when given)."""
        key = (kind, namespace, name)
        with self._lock:
            current = self._objects.get(key)
            if current is not None and (uid is None or current["metadata"].get("uid") == uid):
                del self._objects[key]
            recent = self._recent.get(key)
            if recent is not None and (uid is None or recent[2] == uid):
                del self._recent[key]  # our write to it is moot: it is gone

    def store_pod(self, body: Mapping[str, Any]) -> str | None:
        """Keep a model pod, under the MLModel named by its instance label (and under no other:
        a pod whose label changed leaves its old group). Returns the MLModel it was kept under
        before, when that was another (its pods changed too)."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace", ""), meta.get("name", "")
        owner = (meta.get("labels") or {}).get(LABEL_INSTANCE)
        with self._lock:
            before = self._unfile_pod(namespace, name)
            if owner:
                self._pods.setdefault((namespace, owner), {})[name] = slim_pod(body)
                self._pod_owner[(namespace, name)] = owner
        return before if before != owner else None

    def drop_pod(self, body: Mapping[str, Any]) -> str | None:
        """Forget a deleted pod (from the group it was kept in, whatever its labels say now);
        returns that group's MLModel."""
        meta = body.get("metadata") or {}
        with self._lock:
            return self._unfile_pod(meta.get("namespace", ""), meta.get("name", ""))

    def _unfile_pod(self, namespace: str, name: str) -> str | None:
        owner = self._pod_owner.pop((namespace, name), None)
        if owner is None:
            return None
        pods = self._pods.get((namespace, owner))
        if pods is not None:
            pods.pop(name, None)
            if not pods:
                del self._pods[(namespace, owner)]
        return owner

    def replace(
        self, kind: str, namespace: str | None, bodies: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """A fresh list of `kind` (in `namespace`, or everywhere when None) replaces the cache's.

        client-go's Replace: an object missing from the list was deleted while no watch was
        running, so it is dropped. Returns what the list changed: new objects, objects whose
        resourceVersion moved, and the dropped ones (as they were), so their MLModels can be
        queued.
        """
        listed = {}
        for body in bodies:
            meta = body.get("metadata") or {}
            listed[(kind, meta.get("namespace", ""), meta.get("name", ""))] = body
        changed: list[dict[str, Any]] = []
        with self._lock:
            for key in [k for k in self._objects if k[0] == kind and k not in listed]:
                if namespace is None or key[1] == namespace:
                    changed.append(self._objects.pop(key))
                    self._recent.pop(key, None)
            for key, body in listed.items():
                old = self._objects.get(key)
                if old is None or _revision(old) != _revision(body):
                    self._objects[key] = slim(body)
                    changed.append(self._objects[key])
        return changed

    def replace_pods(
        self, namespace: str | None, bodies: Sequence[Mapping[str, Any]]
    ) -> set[tuple[str, str]]:
        """A fresh list of model pods replaces the cache's; returns the (namespace, MLModel)
        pairs whose pods changed (pods are kept slim, without resourceVersion, so any pod set
        that differs counts)."""
        fresh: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for body in bodies:
            meta = body.get("metadata") or {}
            owner = (meta.get("labels") or {}).get(LABEL_INSTANCE)
            if owner:
                group = fresh.setdefault((meta.get("namespace", ""), owner), {})
                group[meta.get("name", "")] = slim_pod(body)
        with self._lock:
            stale = [k for k in self._pods if namespace is None or k[0] == namespace]
            changed = {k for k in stale if self._pods[k] != fresh.get(k)}
            changed |= {k for k in fresh if self._pods.get(k) != fresh[k]}
            for key in stale:
                del self._pods[key]
            self._pods.update(fresh)
            for pod in [k for k in self._pod_owner if namespace is None or k[0] == namespace]:
                del self._pod_owner[pod]
            for (pod_namespace, owner), group in fresh.items():
                self._pod_owner.update({(pod_namespace, name): owner for name in group})
        return changed

    def __len__(self) -> int:
        """Objects cached (children and MLModels; pods not counted)."""
        with self._lock:
            return len(self._objects)

    # --- written by reconciles
    def wrote(self, kind: str, body: Mapping[str, Any]) -> None:
        """The API server's answer to our write: newer than the watch has told us so far."""
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            self._recent[key] = (self._clock(), slim(body), str(meta.get("uid", "")))

    def deleted(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """We deleted the object with `uid`: read it as gone until the watch drops it."""
        with self._lock:
            self._recent[(kind, namespace, name)] = (self._clock(), None, uid)

    # --- read by reconciles
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The freshest known copy of an object, or None when it does not exist (as far as known).

        The copy is shared: callers must not modify it.
        """
        key = (kind, namespace, name)
        with self._lock:
            watched = self._objects.get(key)
            recent = self._recent.get(key)
            if recent is None:
                return watched
            written_at, body, uid = recent
            if self._clock() - written_at > RECENT_WRITE_TTL_SECONDS:
                del self._recent[key]
                return watched
            if body is None:  # our delete: the object with that uid is gone
                if watched is not None and watched["metadata"].get("uid") == uid:
                    return None
                del self._recent[key]  # the watch dropped it (and maybe saw a newcomer)
                return watched
            if watched is not None and _revision(watched) >= _revision(body):
                del self._recent[key]  # the watch has caught up (or someone wrote after us)
                return watched
            return body

    def pods(self, namespace: str, owner: str) -> list[dict[str, Any]]:
        """The pods of an MLModel (by instance label), sorted by name."""
        with self._lock:
            found = self._pods.get((namespace, owner), {})
            return [found[name] for name in sorted(found)]

    def names(self, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every cached object of `kind`."""
        with self._lock:
            return [(ns, name) for (k, ns, name) in self._objects if k == kind]
