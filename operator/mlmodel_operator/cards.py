"""Which model file an MLModel serves: the pinned sha256, or the file its model card names.

Unpinned, the card decides both the digest that rolls the pods and the file they load (by the
rule the server follows, `ModelCard.served_format`): an artifact with a checked model.onnx is
served from it, so its pods can run the slim image.

The card's bytes are read by `cardfetch` (listed sources only, address rules, one deadline, a
size cap) on a small pool of threads (`CardPool`: a bounded queue, one read per URI at a time),
and parsed by the shared artifact contract (`ModelCard.from_json`), which never loads a model.
`CardReader` remembers each outcome for about one drift interval, so a card is read once per
round, not on every event of the model; failures are remembered longer each time they repeat.
The operator's reconciles never wait for a read: when the outcome is not known yet the reader
raises `CardPending` with a future, the reconcile keeps what it knew and queues the MLModel
again when the future is done.
pvc:// artifacts are not mounted into the operator, so only a pinned sha256 tracks them.
Credentials in an MLModel's credentialsSecret are for the pods only: the operator never reads
Secrets, and sends its own only to the sources listed for them (MLOP_CREDENTIAL_SOURCES).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from mlmodel_artifact import ArtifactError, ModelCard, ModelFormat
from mlmodel_operator.cardfetch import (
    BUSY,
    PUBLIC,
    CardPolicy,
    CardReadError,
    Lookups,
    parse_sources,
)
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings
from mlmodel_operator.status import Problem

LOG = logging.getLogger("mlmodel_operator.cards")
CardSource = Callable[[str], ModelCard]
CARD_REASONS: Final = frozenset(
    {
        "InvalidURI",
        "ArtifactNotFound",
        "ArtifactUnreachable",
        BUSY,
        "InvalidModelCard",
        "UnknownFormat",
    }
)
NOT_ALLOWED: Final = "ArtifactSourceNotAllowed"
# After BUSY (no room to read the card): the model is held as while a read runs, and read
# again this much later.
BUSY_RETRY_SECONDS: Final = 5.0
# A card that keeps failing is re-read after ttl, 2 ttl, then every 4 ttl: a tarpit or a dead
# host costs one thread for one deadline per 4 drift rounds, not per round.
MAX_BACKOFF: Final = 4
LOOKUPS_PER_READER: Final = 4


@dataclass(frozen=True)
class Resolved:
    """The digest to roll out (None: unknown), the format of the file the pods load (None:
    the operator cannot tell, e.g. a pinned digest without spec.model.format: the primary or
    whichever file the pin names), and why they could not be refreshed, if so.

    `pending` is the future of a card read whose outcome is not known yet: the digest and
    problem are what status already said, and the MLModel should be reconciled again when
    the future is done. `busy`: the same, but the read could not even be queued (the
    operator's own read queue is full: nothing is wrong with the artifact); the MLModel
    should be reconciled again after BUSY_RETRY_SECONDS.
    """

    digest: str | None
    problem: Problem | None = None
    pending: Future[Any] | None = None
    model_format: str | None = None
    busy: bool = False

    @property
    def waiting(self) -> bool:
        """The card's outcome is not known this round (being read, or no room to read it)."""
        return self.pending is not None or self.busy


class CardPending(Exception):
    """The card is being read and its outcome is not known yet; `future` is done when it is."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future
        super().__init__("the model card is being read")


@dataclass(frozen=True)
class CardFailure:
    """A remembered failed read (data, not an exception: each raise gets a fresh one)."""

    reason: str
    public: str
    detail: str

    def error(self) -> CardReadError:
        """A new exception, so a remembered failure's traceback does not grow on every raise."""
        return CardReadError(self.reason, self.detail, self.public)


class CardPool:
    """`workers` threads read cards; at most `queue_size` reads wait; one read per key at once.

    A second submit of a key already queued or being read gets the same future (single-flight).
    When the queue is full, submit raises CardReadError(ArtifactReadBusy) at once: the caller
    reports it and the model is read again on a later reconcile, nobody waits for a slot.
    """

    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self._cond = threading.Condition()
        self._pending: deque[tuple[str, Callable[[], bytes], Future[bytes]]] = deque()
        self._inflight: dict[str, Future[bytes]] = {}
        self._started = False
        self._closed = False

    def submit(self, key: str, read: Callable[[], bytes]) -> Future[bytes]:
        """The future of `read()`, shared with any read of `key` not finished yet."""
        with self._cond:
            if self._closed:
                raise CardReadError(BUSY, "the card pool is shut down")
            if key in self._inflight:
                return self._inflight[key]
            if len(self._pending) >= self.queue_size:
                raise CardReadError(BUSY, f"{len(self._pending)} card reads queued")
            future: Future[bytes] = Future()
            self._inflight[key] = future
            self._pending.append((key, read, future))
            self._start()
            self._cond.notify()
            return future

    def queued(self) -> int:
        """Reads waiting for a thread."""
        with self._cond:
            return len(self._pending)

    def shutdown(self) -> None:
        """Let the threads end once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        for index in range(self.workers):
            threading.Thread(target=self._work, name=f"model-card-{index}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                key, read, future = self._pending.popleft()
            future.set_running_or_notify_cancel()
            try:
                result = read()
            except BaseException as exc:  # handed to the waiters, never kills the thread
                self._finish(key)
                future.set_exception(exc)
            else:
                self._finish(key)
                future.set_result(result)

    def _finish(self, key: str) -> None:
        # before the result is set: a submit after completion starts a fresh read
        with self._cond:
            self._inflight.pop(key, None)


Outcome = ModelCard | CardFailure


@dataclass
class _Entry:
    future: Future[Outcome]
    failures: int
    done_at: float | None = None
    busy: bool = False  # the read itself found the operator's lookups full: read again soon


class CardReader:
    """A CardSource: each card URI read at most once per `ttl` seconds, through the pool.

    Reads are keyed by URI alone: the card is parsed once, and each caller picks the file it
    serves from it. `check` refuses a URI before anything is queued (no source, bad URI:
    nothing to remember). A caller waits at most `wait` seconds for a read in progress (the
    operator's reconciles: 0, never); while the outcome is still unknown it gets CardPending,
    whose future is done when the outcome is kept for the next call. At most `max_entries`
    outcomes are kept (least recently used go first).
    """

    def __init__(
        self,
        read: Callable[[str], bytes],
        pool: CardPool,
        *,
        ttl: float,
        wait: float = 0.0,
        check: Callable[[str], object] = lambda uri: None,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read = read
        self.pool = pool
        self.ttl = ttl
        self.wait = wait
        self.check = check
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __call__(self, uri: str) -> ModelCard:
        """The card at `uri` (CardPending while it is being read; CardReadError if it failed)."""
        self.check(uri)
        entry, started = self._entry(uri)
        if started is not None:  # outside the lock: a done future runs the callback right here
            started.add_done_callback(partial(self._complete, uri, entry))
        if not entry.future.done() and self.wait > 0:
            with contextlib.suppress(FutureTimeout):
                entry.future.result(timeout=self.wait)
        if not entry.future.done():
            raise CardPending(entry.future)
        outcome = entry.future.result()
        if isinstance(outcome, CardFailure):
            raise outcome.error()
        return outcome

    def close(self) -> None:
        """Let the pool's threads end (reads already queued still run)."""
        self.pool.shutdown()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _entry(self, uri: str) -> tuple[_Entry, Future[bytes] | None]:
        """The entry to wait on, and the pool's future when a new read was started for it."""
        with self._lock:
            entry = self._entries.get(uri)
            if entry is not None and not self._stale(entry):
                self._entries.move_to_end(uri)
                return entry, None
            try:
                started = self.pool.submit(uri, partial(self.read, uri))
            except CardReadError:
                if entry is not None and entry.future.done():
                    # A re-read finding the queue full waits for a later call; the last outcome
                    # stands meanwhile (a burst of re-reads, every card due on one drift tick,
                    # made healthy models Degraded ArtifactReadBusy).
                    return entry, None
                raise  # nothing known yet: nothing remembered, the caller retries
            entry = _Entry(Future(), entry.failures if entry else 0)
            self._entries[uri] = entry
            self._entries.move_to_end(uri)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return entry, started

    def _stale(self, entry: _Entry) -> bool:
        if entry.done_at is None:
            return False  # being read: share it
        if entry.busy:
            return True  # the read found no room (the operator's, not the artifact's fault)
        backoff = min(2 ** (entry.failures - 1), MAX_BACKOFF) if entry.failures else 1
        return self.clock() - entry.done_at >= self.ttl * backoff

    def _complete(self, uri: str, entry: _Entry, started: Future[bytes]) -> None:
        outcome = _outcome(uri, started)
        busy = isinstance(outcome, CardFailure) and outcome.reason == BUSY
        with self._lock:
            entry.done_at = self.clock()
            entry.busy = busy
            if not busy:
                entry.failures = entry.failures + 1 if isinstance(outcome, CardFailure) else 0
        if isinstance(outcome, CardFailure):  # the detail is for the admin, never for status
            LOG.warning("model card of %s not read: %s (%s)", uri, outcome.reason, outcome.detail)
        entry.future.set_result(outcome)


def _outcome(uri: str, started: Future[bytes]) -> Outcome:
    try:
        return parse_card(started.result(), uri)
    except CardReadError as exc:
        return CardFailure(exc.reason, exc.public, exc.detail)
    except Exception as exc:  # a bug or an unforeseen error: say unreachable, log the detail
        return CardFailure("ArtifactUnreachable", PUBLIC["ArtifactUnreachable"], repr(exc))


def parse_card(body: bytes, uri: str) -> ModelCard:
    """The card, parsed by the artifact contract (never loading a model)."""
    try:
        return ModelCard.from_json(body, uri)
    except ArtifactError as exc:  # names fields and parser positions: for the log only
        raise CardReadError("InvalidModelCard", exc.message) from exc


def served_file(card: ModelCard, model_format: str | None) -> tuple[ModelFormat, str]:
    """The format and sha256 of the file an unpinned server loads: the named format, else the
    card's choice (its checked ONNX form, else its primary)."""
    served = card.served_format(ModelFormat(model_format) if model_format else None)
    if served not in card.files:
        have = ", ".join(sorted(card.files))
        message = f"the artifact has no {served.value} file (it has: {have})"
        raise CardReadError("UnknownFormat", message, message)
    return served, str(card.files[served].sha256)


def card_digest(body: bytes, uri: str, model_format: str | None) -> str:
    """sha256 of the model file an unpinned server will load, from a card's bytes."""
    return served_file(parse_card(body, uri), model_format)[1]


def card_reader(settings: OperatorSettings) -> CardReader:
    """The operator's reader: its sources, credentials, limits and pool, from its settings."""
    policy = CardPolicy(
        sources=parse_sources(settings.artifact_sources),
        credential_sources=parse_sources(settings.credential_sources),
        timeout=settings.card_timeout_seconds,
        max_bytes=settings.card_max_bytes,
        # a lookup abandoned at the deadline keeps its thread until the resolver gives up:
        # room for each reader's current lookup and three abandoned ones
        lookups=Lookups(LOOKUPS_PER_READER * settings.card_readers),
    )
    return CardReader(
        policy.read,
        CardPool(settings.card_readers, settings.card_queue_size),
        ttl=0.9 * settings.drift_interval_seconds,
        check=policy.check,
        max_entries=settings.card_cache_size,
    )


def resolve_model(mlmodel: MLModel, reader: CardSource, known_applies: bool = True) -> Resolved:
    """The digest pods must serve and the format of that file; on a card failure the last
    known ones (pods are not rolled).

    A pinned sha256 is served without reading the card (nothing the operator needs is there):
    the format is then spec.model.format, or unknown. pvc:// cards are not mounted here.
    `known_applies` is False when the pods serve another URI than spec.model.uri: status's
    digest and format are that URI's then, not to be rendered with the new one.
    """
    source = mlmodel.spec.model
    if source.sha256:
        return Resolved(source.sha256, model_format=source.format)
    if source.scheme == "pvc":
        return Resolved(None, model_format=source.format)
    last = mlmodel.status.model_digest
    runtime = mlmodel.status.runtime
    last_format = source.format or (runtime.model_format if runtime and last else None)
    known, known_format = (last, last_format) if known_applies else (None, source.format)
    try:
        served, digest = served_file(reader(source.uri), source.format)
    except CardPending as pending:  # the Deployment is held: its pods serve what status says
        return Resolved(last, _as_before(mlmodel), pending.future, last_format)
    except CardReadError as exc:
        if exc.reason == BUSY:  # held likewise, and read again after BUSY_RETRY_SECONDS
            return Resolved(last, _as_before(mlmodel), model_format=last_format, busy=True)
        if exc.reason == NOT_ALLOWED:
            return Resolved(known, _not_tracked(mlmodel), model_format=known_format)
        shown = "" if exc.reason == "InvalidURI" else f" {source.uri}"  # may hold a password
        detail = f"spec.model.uri{shown}: {exc.public}"
        return _unresolved(exc.reason, detail, known, known_format)
    except ArtifactError as exc:
        detail = f"spec.model.uri {source.uri}: {exc.message}"
        return _unresolved(exc.reason, detail, known, known_format)
    except Exception as exc:  # never let a reader's bug stop the reconcile
        LOG.warning("model card of %s: unexpected %r", source.uri, exc)
        detail = f"spec.model.uri {source.uri}: {PUBLIC['ArtifactUnreachable']}"
        return _unresolved("ArtifactUnreachable", detail, known, known_format)
    return Resolved(digest, model_format=served.value)


@dataclass(frozen=True)
class CandidateResolved:
    """What the operator knows of spec.candidate's artifact this round.

    Rendered (`problem` None, `hold` False): `digest` is the one that marks the pod template
    (the pin, else the card's served file; None: unknown, a pvc:// or unlisted source without a
    pin) and `model_format` the file the pods load (None: unknown). `problem`: the candidate is
    missing, tampered or unreadable, and nothing of it is rendered. `hold`: its outcome is not
    known this round (the card is being read, `pending`, or the operator's read queue is
    full): the Deployment is left as it is. A pvc:// candidate, or one from a source the
    operator does not read (MLOP_ARTIFACT_SOURCES), is rendered unchecked: the pods check it.
    """

    digest: str | None = None
    model_format: str | None = None
    problem: Problem | None = None
    hold: bool = False
    pending: Future[Any] | None = None
    busy: bool = False  # held because the read could not be queued: retried after a while
    # A failed re-read of a candidate the live Deployment already carries: it stays rendered
    # as it is (`digest`, `model_format` are the rendered ones) and CandidateReady says this.
    note: Problem | None = None

    @property
    def rendered(self) -> bool:
        """Whether the candidate goes into the pod template this round."""
        return self.problem is None and not self.hold


# A card read that fails for these reasons says something about the artifact itself (gone,
# changed, not the named format) or the URI: the candidate is taken out. Any other failure
# (unreachable, a card that does not parse this time, a reader's bug) may pass: a candidate
# the live Deployment already carries is kept as it is.
LASTING_REASONS: Final = frozenset(
    {"ArtifactNotFound", "ArtifactDigestMismatch", "UnknownFormat", "InvalidURI"}
)


@dataclass(frozen=True)
class RenderedCandidate:
    """What the live Deployment's pod template carries of this spec.candidate (same URI, pin
    and format): the digest marking the template (`mlops.dev/candidate-digest`; None: none)
    and the format of the file its pods load (None: the operator cannot tell)."""

    digest: str | None
    model_format: str | None = None


def resolve_candidate(
    mlmodel: MLModel, reader: CardSource, rendered: RenderedCandidate | None = None
) -> CandidateResolved | None:
    """spec.candidate's artifact, read like the stable's (None: no spec.candidate).

    Unlike the stable's, the card is read for a pinned candidate too, and the pin must name
    one of its files (else ArtifactDigestMismatch): a candidate that is missing or tampered is
    not rendered at all, so the stable keeps serving exactly as it did. The pin stays the only
    pin the pods get (render_candidate_env). A pinned candidate whose card the operator cannot
    reach (ArtifactUnreachable: its network, its credentials, a deadline) is rendered with the
    pin alone, as a pinned stable always is: the pods read it with their own credentials and
    refuse any other file, and whether each pod loaded it is what CandidateReady reports (from
    the pods' model_server_version_ready). Unpinned, an unreachable card is not rendered: there
    is no digest to hold the pods to.

    `rendered`: what the live Deployment carries of this candidate (None: nothing). A card
    re-read that fails for a passing reason (anything but LASTING_REASONS: unreachable, a card
    that does not parse this time) keeps it exactly as rendered, pinned or not: the rendered
    digest and format, with the failure in `note` for CandidateReady. One failed re-read never
    rolls the pods, restarts the analysis or flips the image.
    """
    candidate = mlmodel.spec.candidate
    if candidate is None:
        return None
    source = candidate.model
    if source.scheme == "pvc":  # not mounted here: the pods check it
        return CandidateResolved(source.sha256, source.format)
    shown = f"spec.candidate.model.uri {source.uri}"
    try:
        card = reader(source.uri)
        if source.sha256:
            return _pinned_candidate(card, source.sha256, source.format, shown)
        served, digest = served_file(card, source.format)
    except CardPending as pending:
        return CandidateResolved(hold=True, pending=pending.future)
    except CardReadError as exc:
        if exc.reason == NOT_ALLOWED:  # like the stable's: rendered, the pods check it
            return CandidateResolved(source.sha256, source.format)
        if exc.reason == BUSY:  # the operator's own queue: held, read again later
            return CandidateResolved(hold=True, problem=_busy_problem(exc.public), busy=True)
        if rendered is not None and exc.reason not in LASTING_REASONS:
            return _kept(rendered, exc.reason, exc.public, shown)
        if exc.reason == "ArtifactUnreachable" and source.sha256:  # the pods check the pin
            return CandidateResolved(source.sha256, source.format)
        where = "spec.candidate.model.uri" if exc.reason == "InvalidURI" else shown
        return CandidateResolved(problem=_candidate_problem(exc.reason, exc.public, where))
    except ArtifactError as exc:
        if rendered is not None and exc.reason not in LASTING_REASONS:
            return _kept(rendered, exc.reason, exc.message, shown)
        return CandidateResolved(problem=_candidate_problem(exc.reason, exc.message, shown))
    except Exception as exc:  # never let a reader's bug stop the reconcile
        LOG.warning("candidate card of %s: unexpected %r", source.uri, exc)
        public = PUBLIC["ArtifactUnreachable"]
        if rendered is not None:
            return _kept(rendered, "ArtifactUnreachable", public, shown)
        return CandidateResolved(problem=_candidate_problem("ArtifactUnreachable", public, shown))
    return CandidateResolved(digest, served.value)


def _kept(rendered: RenderedCandidate, reason: str, detail: str, where: str) -> CandidateResolved:
    """A candidate the live Deployment carries, kept as rendered after a failed card re-read."""
    digest = f" (sha256 {rendered.digest[:12]}…)" if rendered.digest else ""
    note = Problem(
        reason,
        f"Cannot re-read the candidate's model card at {where}: {detail.rstrip('.')} "
        f"({reason}). The pods keep the candidate as rendered{digest} until it can be read "
        "again.",
        blocks_ready=False,
        degrades=False,
    )
    return CandidateResolved(rendered.digest, rendered.model_format, note=note)


def _pinned_candidate(
    card: ModelCard, pin: str, model_format: str | None, shown: str
) -> CandidateResolved:
    """A pinned candidate whose card was read: the pin must be the digest of the named
    format's file, or (no format) of one of its files, which is then the one served."""
    files = {fmt.value: str(entry.sha256) for fmt, entry in card.files.items()}
    if model_format is not None:
        matches = [model_format] if files.get(model_format) == pin else []
    else:
        matches = [fmt for fmt, sha in files.items() if sha == pin]
    if matches:
        return CandidateResolved(pin, matches[0])
    listed = ", ".join(f"{fmt} {sha[:12]}…" for fmt, sha in sorted(files.items()))
    named = f"its {model_format} file" if model_format else "any of its files"
    detail = (
        f"spec.candidate.model.sha256 {pin[:12]}… is not the digest of {named} "
        f"(the card at {shown.removeprefix('spec.candidate.model.uri ')} lists {listed}): the "
        "artifact changed or the pin is wrong"
    )
    return CandidateResolved(problem=_candidate_problem("ArtifactDigestMismatch", detail))


def _candidate_problem(reason: str, detail: str, where: str | None = None) -> Problem:
    said = f"Cannot read the candidate's model card at {where}: {detail}" if where else detail
    return Problem(
        reason,
        f"{said.rstrip('.')} ({reason}). Nothing of the candidate is rendered: the stable "
        "serves every request as before. Fix spec.candidate.model or the artifact.",
        blocks_ready=False,
        degrades=False,
    )


def _busy_problem(detail: str) -> Problem:
    return Problem(
        BUSY,
        f"The candidate's model card waits to be read: {detail.rstrip('.')} ({BUSY}). The "
        "pods are left as they are meanwhile.",
        blocks_ready=False,
        degrades=False,
    )


def _as_before(mlmodel: MLModel) -> Problem | None:
    """While a card is being read, status says about it what it said before (no flap)."""
    for condition in mlmodel.status.conditions:
        degraded = condition.type == "Degraded" and condition.status == "True"
        if degraded and condition.reason in CARD_REASONS:
            return Problem(condition.reason, condition.message, blocks_ready=False)
    return None


def _not_tracked(mlmodel: MLModel) -> Problem:
    # Not Degraded: nothing is broken, the admin chose not to let the operator read there; the
    # pods fetch and verify the artifact themselves. Status still says what the user gives up.
    return Problem(
        NOT_ALLOWED,
        f"The operator does not read model cards from spec.model.uri {mlmodel.spec.model.uri} "
        "(not under MLOP_ARTIFACT_SOURCES), so the model is tracked only through "
        "spec.model.sha256: a new artifact at this URI rolls no pods. Pin spec.model.sha256, "
        "or ask the cluster admin to list the source.",
        blocks_ready=False,
        degrades=False,
    )


def _unresolved(reason: str, detail: str, known: str | None, known_format: str | None) -> Resolved:
    # Degraded, but not a reason to call running pods unready: they keep the known digest
    # (and a new MLModel's pods, which fetch the artifact themselves, report their own failure).
    keep = (
        f"Running pods keep serving sha256 {known[:12]}…"
        if known
        else "Pods will try to fetch it themselves."
    )
    message = (
        f"Cannot read the model card of {detail} ({reason}). {keep} "
        "Fix the URI or the artifact, or pin spec.model.sha256."
    )
    return Resolved(known, Problem(reason, message, blocks_ready=False), model_format=known_format)
