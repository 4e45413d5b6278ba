"""Which model file an MLModel serves: the pinned sha256, or the digest its model card names.

The card is read through the shared artifact contract (mlmodel_artifact), which never loads
the model. pvc:// artifacts are not mounted into the operator, so only a pinned sha256 tracks
them; http(s):// and s3:// cards are read with the operator's own environment (credentials in
an MLModel's credentialsSecret are for the pods only: the operator never reads Secrets).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Final

from mlmodel_artifact import ArtifactError, ModelFormat, read_model_card
from mlmodel_operator.resource import MLModel
from mlmodel_operator.status import Problem

DigestReader = Callable[[str, str | None], str]
_POOL: Final = ThreadPoolExecutor(max_workers=4, thread_name_prefix="model-card")


@dataclass(frozen=True)
class Resolved:
    """The digest to roll out (None: unknown) and why it could not be refreshed, if so."""

    digest: str | None
    problem: Problem | None = None


def read_card_digest(uri: str, model_format: str | None) -> str:
    """sha256 of the model file the server will load: the card's primary or the named format."""
    card = read_model_card(uri)
    if model_format is None:
        return str(card.sha256)
    wanted = ModelFormat(model_format)
    if wanted not in card.files:
        have = ", ".join(sorted(card.files))
        raise ArtifactError(
            uri, "UnknownFormat", f"the artifact has no {model_format} file (it has: {have})"
        )
    return str(card.files[wanted].sha256)


class CachedReader:
    """A DigestReader that reads each (uri, format) at most once per `ttl` seconds.

    A reconcile runs on every event of a model's children; the card only needs re-reading
    once per drift interval (a failure is remembered for as long, so a broken URI is not hit
    on every event either).
    """

    def __init__(
        self, reader: DigestReader, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.reader = reader
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str | None], tuple[float, str | ArtifactError]] = {}

    def __call__(self, uri: str, model_format: str | None) -> str:
        key = (uri, model_format)
        with self._lock:
            known = self._known.get(key)
        if known is None or self.clock() - known[0] >= self.ttl:
            try:
                known = (self.clock(), self.reader(uri, model_format))
            except ArtifactError as exc:
                known = (self.clock(), exc)
            with self._lock:
                self._known[key] = known
        if isinstance(known[1], ArtifactError):
            raise known[1]
        return known[1]


def resolve_digest(mlmodel: MLModel, reader: DigestReader, timeout: float) -> Resolved:
    """The digest pods must serve; on a card failure the last known one (pods are not rolled)."""
    source = mlmodel.spec.model
    if source.sha256:
        return Resolved(source.sha256)
    if source.scheme == "pvc":
        return Resolved(None)
    known = mlmodel.status.model_digest
    future = _POOL.submit(reader, source.uri, source.format)
    try:
        return Resolved(future.result(timeout=timeout))
    except ArtifactError as exc:
        return _unresolved(mlmodel, exc.reason, str(exc), known)
    except FutureTimeout:
        detail = f"reading {source.uri}/model-card.json took longer than {timeout:g}s"
        return _unresolved(mlmodel, "ArtifactUnreachable", detail, known)
    except Exception as exc:
        return _unresolved(mlmodel, "ArtifactUnreadable", f"{type(exc).__name__}: {exc}", known)


def _unresolved(mlmodel: MLModel, reason: str, detail: str, known: str | None) -> Resolved:
    # Degraded, but not a reason to call running pods unready: they keep the known digest
    # (and a new MLModel's pods, which fetch the artifact themselves, report their own failure).
    problem = Problem(reason, _unreadable(mlmodel, detail, known), blocks_ready=False)
    return Resolved(known, problem)


def _unreadable(mlmodel: MLModel, detail: str, known: str | None) -> str:
    keep = (
        f"Running pods keep serving sha256 {known[:12]}…"
        if known
        else "Pods will try to fetch it themselves."
    )
    return (
        f"Cannot read the model card of spec.model.uri {mlmodel.spec.model.uri}: {detail}. "
        f"{keep} Fix the URI or the artifact, or pin spec.model.sha256."
    )
