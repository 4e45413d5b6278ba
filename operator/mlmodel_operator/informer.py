"""List and watch one kind of object, with client-go's replace semantics and deadlines.

An Informer keeps the operator's cache in step with the API server for one resource (in one
namespace, or in all): it lists (in pages), hands the whole list to `Sink.replace` — which
drops what the list no longer holds — then watches from the list's resourceVersion and hands
every event to `Sink.event`. When the watch ends it is started again from the last
resourceVersion seen; when that version has expired (`410 Gone`, routine after a burst or an
API server restart) it lists again, and the replace forgets whatever was deleted in the gap.
A full re-list also runs every `resync_seconds`, so a cache that went wrong in any way is
repaired.

Every request has a deadline. The watch asks the API server to end it after `watch_seconds`
(`timeoutSeconds`) and reads with a socket timeout a little beyond that, so a connection that
stops delivering (a half-open TCP connection, a proxy that black-holes it) fails at the
latest `request_seconds` after the server should have ended it; lists and every other call
time out after `request_seconds` of silence.

Why not kopf's watch streams: kopf consumes the end-of-list marker inside its queueing and
its indexes have no replace, so an object deleted during a re-list stayed cached for good;
and its streams have no health to report. Why not the kubernetes client's SharedInformer: it
deserializes every object into generated model classes (slow and large at 1,000 models), has
no request timeouts and no pagination.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError

from mlmodel_operator import metrics

LOG = logging.getLogger("mlmodel_operator.informer")
PAGE_SIZE: Final = 500
BACKOFF_MAX_SECONDS: Final = 30.0
MAX_EVENT_BYTES: Final = 16 << 20  # one watch event line; far above any object etcd stores


@dataclass(frozen=True)
class Resource:
    """A listable, watchable resource: API group ("" for core), version, plural and kind."""

    group: str
    version: str
    plural: str
    kind: str

    def path(self, namespace: str | None) -> str:
        """The collection's URL path, in one namespace or across all."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return (
            f"{base}/namespaces/{namespace}/{self.plural}" if namespace else f"{base}/{self.plural}"
        )


class Sink(Protocol):
    """Where an Informer delivers what it learns (called on the informer's thread)."""

    def replace(
        self, resource: Resource, namespace: str | None, items: list[dict[str, Any]]
    ) -> None:
        """A complete, current list of the resource (in `namespace`, or everywhere)."""

    def event(self, resource: Resource, type_: str, obj: dict[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""


class Expired(Exception):
    """The resourceVersion to watch from is too old (410 Gone): list again."""


@dataclass(frozen=True)
class Deadlines:
    """How long the informer's requests may take."""

    watch_seconds: float  # the API server ends each watch after this long
    request_seconds: float  # connect and read timeout of every request; slack beyond a watch
    resync_seconds: float  # a full re-list at least this often; 0: only when needed


class Informer:
    """List + watch of one resource on a thread of its own; see the module docstring.

    `healthy()` is False when the thread has died or its current request has delivered
    nothing for longer than the API server should have kept it open.
    """

    def __init__(
        self,
        api: client.ApiClient,
        resource: Resource,
        namespace: str | None,
        label_selector: str | None,
        sink: Sink,
        deadlines: Deadlines,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.sink = sink
        self.deadlines = deadlines
        self.clock = clock
        self.synced = threading.Event()  # the first list has been delivered
        self._stop = threading.Event()
        self._progress = clock()  # last time a request started, delivered or ended
        self._thread: threading.Thread | None = None
        self.name = f"{resource.plural}{f'@{namespace}' if namespace else ''}"

    # --- lifecycle
    def start(self) -> None:
        """Run the list/watch loop on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end (it notices after its current request)."""
        self._stop.set()

    def healthy(self) -> bool:
        """Alive, and not stuck in a request past the API server's own deadline for it."""
        if self._thread is None or not self._thread.is_alive():
            return False
        return self.clock() - self._progress <= self.deadlines.watch_seconds + self.stall_grace

    @property
    def stall_grace(self) -> float:
        """How long past `watch_seconds` a silent request still counts as healthy.

        Shorter than the read timeout's slack, so /healthz fails before the client gives up
        on a black-holed connection (and recovers when the new one works).
        """
        return min(5.0, self.deadlines.request_seconds / 2)

    def _touch(self) -> None:
        self._progress = self.clock()

    # --- the loop
    def _run(self) -> None:
        version: str | None = None
        reason = "initial"
        failures = 0
        last_list = self.clock()
        while not self._stop.is_set():
            self._touch()
            try:
                if version is None:
                    version = self._list(reason)
                    last_list = self.clock()
                    self.synced.set()
                    failures = 0
                resync = self.deadlines.resync_seconds
                if resync and self.clock() - last_list >= resync:
                    version, reason = None, "resync"
                    continue
                version = self._watch(version)
                failures = 0
                metrics.WATCH_RESTARTS.labels(self.resource.kind, "ended").inc()
            except Expired:
                LOG.info("watch of %s expired (410 Gone): listing again", self.name)
                metrics.WATCH_RESTARTS.labels(self.resource.kind, "expired").inc()
                version, reason = None, "expired"
            except Exception as exc:
                failures += 1
                kind = "timeout" if _is_timeout(exc) else "error"
                metrics.WATCH_RESTARTS.labels(self.resource.kind, kind).inc()
                delay = min(BACKOFF_MAX_SECONDS, 0.5 * 2 ** min(failures, 6))
                delay *= random.uniform(0.8, 1.2)
                LOG.warning(
                    "%s of %s failed (%s), again in %.1fs: %s",
                    "list" if version is None else "watch",
                    self.name,
                    kind,
                    delay,
                    _brief(exc),
                )
                # a list that failed is tried again for the same reason (why it was needed)
                self._touch()
                self._stop.wait(delay)

    def _request(self, query: dict[str, Any], read_timeout: float) -> Any:
        """GET the collection; returns urllib3's unread response (ApiException on 4xx/5xx)."""
        if self.label_selector:
            query = {**query, "labelSelector": self.label_selector}
        method, url, headers, _, _ = self.api.param_serialize(
            "GET",
            self.resource.path(self.namespace),
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        answer = self.api.call_api(
            method,
            url,
            header_params=headers,
            _request_timeout=(self.deadlines.request_seconds, read_timeout),
        )
        response = answer.response
        if not 200 <= answer.status < 300:
            try:
                body = response.data.decode("utf-8", "replace")[:4096]
            finally:
                response.release_conn()
            raise ApiException(status=answer.status, reason=answer.reason, body=body)
        return response

    def _list(self, reason: str) -> str:
        """List every object (in pages), replace the cache's view; returns the list's version."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query: dict[str, Any] = {"limit": PAGE_SIZE}
            if token:
                query["continue"] = token
            try:
                response = self._request(query, self.deadlines.request_seconds)
            except ApiException as exc:
                if exc.status == 410 and token:  # the continue token expired: start over
                    items, token = [], ""
                    continue
                raise
            page = json.loads(response.data)
            self._touch()
            for item in page.get("items") or []:
                # list items carry no kind; the cache and the handlers expect one
                item.setdefault("kind", self.resource.kind)
                item.setdefault("apiVersion", _api_version(self.resource))
                items.append(item)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                version = str(meta.get("resourceVersion") or "")
                break
        self.sink.replace(self.resource, self.namespace, items)
        metrics.RELISTS.labels(self.resource.kind, reason).inc()
        LOG.debug("listed %d %s (%s) at version %s", len(items), self.name, reason, version)
        return version

    def _watch(self, version: str) -> str:
        """Watch from `version` until the server ends the stream; returns the last version."""
        query = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": int(self.deadlines.watch_seconds),
        }
        try:
            response = self._request(
                query, self.deadlines.watch_seconds + self.deadlines.request_seconds
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Expired from exc
            raise
        try:
            for line in _lines(response.stream(65536, decode_content=True)):
                self._touch()
                if self._stop.is_set():
                    break
                event = json.loads(line)
                type_, obj = event.get("type"), event.get("object") or {}
                if type_ == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired(obj.get("message", ""))
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if type_ in ("ADDED", "MODIFIED", "DELETED"):
                    obj.setdefault("kind", self.resource.kind)
                    self.sink.event(self.resource, type_, obj)
        finally:
            response.release_conn()
        return version


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Newline-separated lines of a streamed body (one JSON watch event each)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk:
            if len(pending) > MAX_EVENT_BYTES:
                raise ProtocolError(f"a watch event over {MAX_EVENT_BYTES} bytes")
            continue
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _api_version(resource: Resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else resource.version


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # urllib3 wraps its timeouts
        if isinstance(current, ReadTimeoutError | TimeoutError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "timed out" in str(exc).lower()


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    if isinstance(exc, HTTPError):
        return type(exc).__name__ + (f": {exc.args[0]}" if exc.args else "")
    return f"{type(exc).__name__}: {exc}"


def all_synced(informers: Mapping[str, Informer] | list[Informer]) -> bool:
    """Whether every informer has delivered its first list."""
    values = informers.values() if isinstance(informers, Mapping) else informers
    return all(informer.synced.is_set() for informer in values)
