"""One level-based reconcile: parse, render, apply what drifted, observe, write status.

Every trigger (an MLModel event, an event on a child or pod, the periodic drift check) queues
the MLModel's key, and a worker runs this reconcile for it. It reads the MLModel, its children
and its pods from the watch cache, not from the API server; the only read it makes is a GET
before creating a child the cache does not have (a same-named object the operator does not own
must be left alone). A converged MLModel makes no write request: children are applied only
when a field the operator owns differs, and the status patch is empty when nothing in it changed.

A reconcile never waits for a model card: when the card's outcome is not known yet, the read
is left running on the card pool, the reconcile goes on with what status already says, and the
MLModel's key is queued again (`requeue`) when the read is done.

Errors a user can act on reach status: an apply the API server refuses (a validation error, an
admission webhook, a quota) is `Degraded` with reason `ApplyRefused` and the server's message,
and a spec this operator cannot parse is `Degraded` with reason `InvalidSpec`. Other failed
requests (conflicts, throttling, server errors, no connection) raise `ApiCallFailed` and the
worker retries the MLModel with backoff.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from mlmodel_operator import contract, drift
from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.candidate import (
    ANALYSIS_FIELDS,
    AnalysisResult,
    AnalysisRound,
    Analyzer,
    CandidatePlan,
    Health,
    effective_percent,
    without_engine,
)
from mlmodel_operator.cardfetch import BUSY
from mlmodel_operator.cards import (
    BUSY_RETRY_SECONDS,
    CandidateResolved,
    CardReader,
    CardSource,
    RenderedCandidate,
    card_reader,
    resolve_candidate,
    resolve_model,
)
from mlmodel_operator.kube import FIELD_MANAGER, Kube
from mlmodel_operator.render import CHILD_KINDS, render, unwanted_kinds
from mlmodel_operator.render.deployment import candidate_uri_in_pod, model_uri_in_pod
from mlmodel_operator.render.meta import CANDIDATE_DIGEST_ANNOTATION
from mlmodel_operator.resource import KIND, MLModel
from mlmodel_operator.settings import OperatorSettings
from mlmodel_operator.status import (
    CandidateObserved,
    Observed,
    Problem,
    degraded_patch,
    derive_status,
    invalid_spec_problem,
    pod_problem,
    ready_share,
    rollout_of,
    status_patch,
    template_env,
)

LOG = logging.getLogger("mlmodel_operator.reconcile")
# Ready pods per version ("stable", "candidate") as the pods report them
# (model_server_version_ready); None when they could not be read.
VersionReadiness = Callable[[MLModel], Mapping[str, int] | None]

APPLY_REFUSED: Final = "ApplyRefused"
NOT_OWNED: Final = "ChildNotOwned"  # a same-named child the operator did not create
HPA_KIND: Final = "HorizontalPodAutoscaler"
READING_CARD: Final = "ReadingModelCard"
# Answers that refuse the request itself: bad request, forbidden (admission webhooks, quota, a
# namespace being deleted, missing RBAC), method not allowed, not acceptable, too large,
# unsupported media type, invalid. The same apply gets the same answer until something changes,
# so the reason goes to status. Everything else (401, 404, 408, 409 conflicts, 410, 429
# throttling, 5xx, no answer at all) is taken as passing: ApiCallFailed, retried with backoff.
REFUSED_STATUS_CODES: Final = frozenset({400, 403, 405, 406, 413, 415, 422})
_MESSAGE_MAX: Final = 1024  # of the API server's message, in a condition
ANALYSIS_RETRY_SECONDS: Final = 30.0  # after an analyzer raised


@dataclass(frozen=True)
class Change:
    """One write the operator made to a child."""

    verb: str  # Created, Updated, Deleted
    kind: str
    name: str
    fields: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """An event message for the MLModel."""
        detail = f" ({', '.join(self.fields[:5])})" if self.fields else ""
        return f"{self.verb} {self.kind} {self.name}{detail}"


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did and which status fields must be patched.

    `retry` is True when the reconcile returned normally but left a child unconverged for a
    reason it put in status (an apply the API server refused, `ApplyRefused`): the worker
    queues the key again with backoff (`WorkQueue.retry`) instead of resetting the backoff
    (`forget`), so the apply is tried again without a new event. It is False for a spec the
    operator cannot parse (`InvalidSpec`): only a new spec can change that, and editing it
    queues the MLModel (the drift loop re-checks it too).
    """

    status_patch: dict[str, Any]
    changes: tuple[Change, ...] = ()
    problems: tuple[Problem, ...] = field(default_factory=tuple)
    retry: bool = False
    # Events beyond child writes (reason, message, type): the candidate's steps and outcome.
    events: tuple[tuple[str, str, str], ...] = ()
    # Reconcile this MLModel again after this many seconds (a candidate analysis in progress).
    requeue_after: float | None = None


def is_controlled_by(child: Mapping[str, Any], mlmodel: MLModel) -> bool:
    """Whether this MLModel is the child's controller (same uid)."""
    refs = (child.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == mlmodel.uid and ref.get("controller") for ref in refs)


def _resource_version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def _not_owned(kind: str, mlmodel: MLModel) -> Problem:
    return Problem(
        NOT_OWNED,
        f"{kind} {mlmodel.namespace}/{mlmodel.name} exists and is not owned by MLModel "
        f"{mlmodel.name}; the operator leaves it alone. Delete or rename it to let the "
        "operator create its own.",
    )


def _reading_card(candidate: bool, busy: bool = False) -> Problem:
    """The Deployment waits for the card of a new spec.model.uri (or of the candidate's, while
    the stable's URI is new too): not a fault, but this generation is not applied, so Ready is
    False and Progressing True until it is. `busy`: the read waits for room in the operator's
    card-read queue."""
    whose = "spec.candidate.model.uri" if candidate else "spec.model.uri"
    reading = (
        f"waits to be read (the operator's card reads are all taken: {BUSY}; tried again in "
        f"{BUSY_RETRY_SECONDS:.0f} s)"
        if busy
        else "is being read"
    )
    return Problem(
        READING_CARD,
        f"The model card of {whose} {reading}; the pods keep serving what they served "
        "until the Deployment is applied.",
        blocks_ready=True,
        degrades=False,
    )


def api_message(exc: ApiException) -> str:
    """The API server's own words for an error: the `message` of the Status it answered with
    (for a validation error it names the field), else the HTTP reason phrase."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        status = json.loads(body) if isinstance(body, str) and body else None
    except ValueError:
        status = None
    message = status.get("message") if isinstance(status, dict) else None
    if isinstance(message, str) and message.strip():
        return message.strip()
    return str(exc.reason or "no message")


def _served_uri(deployment: Mapping[str, Any]) -> str | None:
    """The model URI a live Deployment's server container is given (None: none)."""
    template = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in template.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == contract.ENV_MODEL_URI:
                return str(env.get("value"))
    return None


class ApiCallFailed(Exception):
    """A request to the API server failed; the worker queues the MLModel again with backoff.

    `status` is the HTTP status code (0: no answer, e.g. the connection failed) and
    `api_message` what the API server said (`api_message()`).
    """

    def __init__(self, what: str, status: int = 0, api_message: str = "") -> None:
        answer = f"{status} {api_message}" if status else api_message
        super().__init__(f"{what}: {answer}")
        self.status = status
        self.api_message = api_message

    @property
    def refused(self) -> bool:
        """The API server refused the request itself: sending it again unchanged will not help."""
        return self.status in REFUSED_STATUS_CODES


@contextmanager
def _api_call(what: str) -> Iterator[None]:
    """Name the failed request in the error (the worker logs it and retries the MLModel)."""
    try:
        yield
    except (ApiException, DynamicApiError) as exc:  # the dynamic client's errors, by code
        raise ApiCallFailed(what, int(exc.status or 0), api_message(exc)) from exc
    except HTTPError as exc:  # no answer: refused connection, timeout, reset
        raise ApiCallFailed(what, 0, str(exc)) from exc


def _apply_refused(kind: str, mlmodel: MLModel, failed: ApiCallFailed) -> Problem:
    message = failed.api_message
    if len(message) > _MESSAGE_MAX:
        message = message[: _MESSAGE_MAX - 1] + "…"
    return Problem(
        APPLY_REFUSED,
        f"The API server refused {kind} {mlmodel.name} ({failed.status}): "
        f"{message.rstrip('.')}. Change the MLModel's spec so that it passes, or the policy "
        "that refuses it; the operator retries with backoff.",
    )


ModelKey = tuple[str, str]  # (namespace, name)


def candidate_key(mlmodel: MLModel, resolved: CandidateResolved) -> str:
    """Changes whenever the candidate the user asked for does: its URI, its pin (unpinned: the
    digest its card names, which a failed re-read keeps as rendered) and spec's format. Never
    what a card read happened to resolve this round (the format of a pinned candidate's file):
    one failed read must not start the analysis over."""
    source = mlmodel.spec.candidate.model if mlmodel.spec.candidate else None
    if source is None:
        return "||"
    return f"{source.uri}|{source.sha256 or resolved.digest or ''}|{source.format or ''}"


def rendered_candidate(
    mlmodel: MLModel, deployment: Mapping[str, Any] | None, settings: OperatorSettings
) -> RenderedCandidate | None:
    """What a live Deployment (ours) carries of spec.candidate, as `render_candidate_env` and
    the template annotation put it: the same MODEL_SERVER_CANDIDATE_URI, _SHA256 (the pin, or
    empty) and _FORMAT (spec's, or none); None when it carries none, or another. The digest is
    the template's `mlops.dev/candidate-digest`; the format is spec's, else `onnx` when the
    template runs the slim image (chosen only when both versions are served from ONNX), else
    unknown (the default image, which rendering it again keeps)."""
    candidate = mlmodel.spec.candidate
    uri = candidate_uri_in_pod(mlmodel)
    if candidate is None or uri is None or deployment is None:
        return None
    if not is_controlled_by(deployment, mlmodel):
        return None
    env = template_env(deployment)
    source = candidate.model
    if env.get(contract.ENV_CANDIDATE_URI) != uri:
        return None
    if env.get(contract.ENV_CANDIDATE_SHA256, "") != (source.sha256 or ""):
        return None
    if env.get(contract.ENV_CANDIDATE_FORMAT) != source.format:
        return None
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    digest = annotations.get(CANDIDATE_DIGEST_ANNOTATION)
    digest = str(digest) if digest else None
    if source.sha256 and digest not in (None, source.sha256):
        return None
    model_format = source.format
    if model_format is None and settings.slim_image and not mlmodel.spec.server.image:
        containers = (template.get("spec") or {}).get("containers") or [{}]
        if containers[0].get("image") == settings.slim_image:
            model_format = "onnx"
    return RenderedCandidate(digest, model_format)


class Reconciler:
    """Reconciles MLModels; one instance per operator process, shared by all handlers.

    `requeue` queues an MLModel's key again (the work queue's add); it is called when a card
    read a reconcile did not wait for is done. Without a `reader`, the Reconciler makes its
    own from the settings and `close()` ends its threads.

    `analyzer` judges candidates with spec.candidate.analysis (candidate.Analyzer; without
    one, `without_engine` holds them at the first step). `version_ready` reads the pods'
    model_server_version_ready per version; without it, CandidateReady and the per-version
    readyReplicas are derived from the Deployment (status.derive_candidate).
    """

    def __init__(
        self,
        kube: Kube,
        cache: ObjectCache,
        settings: OperatorSettings,
        reader: CardSource | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        requeue: Callable[[ModelKey], None] | None = None,
        analyzer: Analyzer | None = None,
        version_ready: VersionReadiness | None = None,
    ) -> None:
        self.kube = kube
        self.cache = cache
        self.settings = settings
        self._own_reader: CardReader | None = None
        if reader is None:
            reader = self._own_reader = card_reader(settings)
        self.reader = reader
        self.clock = clock
        self.requeue = requeue
        self.analyzer: Analyzer = analyzer or without_engine
        self.version_ready = version_ready

    def close(self) -> None:
        """End the threads of the card reader this Reconciler made (none when given one)."""
        if self._own_reader is not None:
            self._own_reader.close()

    def reconcile_key(self, namespace: str, name: str) -> tuple[dict[str, Any], Outcome] | None:
        """Reconcile the cached MLModel namespace/name and patch its status if it changed.

        Returns the MLModel as reconciled and the outcome; None when the MLModel is gone (not
        in the cache, or deleted before its status could be written). When the MLModel was
        written since it was read (409: the status patch is a diff against what was read), its
        status is not written, and the outcome (its child writes still to be reported) asks for
        a retry; the watch brings the newer object meanwhile. The work queue never runs two
        reconciles of one MLModel at the same time.
        """
        body = self.cache.get(KIND, namespace, name)
        if body is None:
            return None
        outcome = self.reconcile(body)
        if outcome.status_patch:
            try:
                with _api_call(f"patching status of MLModel {namespace}/{name}"):
                    updated = self.kube.patch_mlmodel_status(
                        namespace, name, outcome.status_patch, _resource_version(body)
                    )
            except ApiCallFailed as exc:
                if exc.status == 404:  # deleted meanwhile: the watch will drop it
                    return None
                if exc.status == 409:
                    LOG.info("MLModel %s/%s changed while reconciled: again", namespace, name)
                    return body, replace(outcome, retry=True)
                raise
            self.cache.wrote(KIND, updated)
        return body, outcome

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        """Converge one MLModel's children and return the status patch (empty if unchanged)."""
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return Outcome({})  # being deleted: the garbage collector removes the children
        try:
            mlmodel = MLModel.from_body(body)
        except ValidationError as exc:
            return self._invalid_spec(body, exc)
        return self._reconcile(mlmodel, dict(body.get("status") or {}))

    def _invalid_spec(self, body: Mapping[str, Any], exc: ValidationError) -> Outcome:
        """A spec this operator cannot parse (a field newer than it, a value the CRD allows and
        the models refuse): say so in Degraded, name the fields, and change nothing else. The
        children keep serving the last spec that was applied, and status.observedGeneration
        stays at it. Not retried: a new spec queues the MLModel again."""
        problem = invalid_spec_problem(exc.errors(include_url=False))
        generation = int((body.get("metadata") or {}).get("generation") or 1)
        previous = dict(body.get("status") or {})
        patch = degraded_patch(previous, problem, generation=generation, now=self.clock())
        return Outcome(patch, problems=(problem,))

    def _reconcile(self, mlmodel: MLModel, previous: dict[str, Any]) -> Outcome:
        now = self.clock()
        live = self.cache.get("Deployment", mlmodel.namespace, mlmodel.name)
        other_uri = live is not None and _served_uri(live) != model_uri_in_pod(mlmodel)
        resolved = resolve_model(mlmodel, self.reader, known_applies=not other_uri)
        rendered = rendered_candidate(mlmodel, live, self.settings)
        candidate = resolve_candidate(mlmodel, self.reader, rendered)
        if self.requeue is not None:
            key, requeue = (mlmodel.namespace, mlmodel.name), self.requeue
            for pending in (resolved.pending, candidate.pending if candidate else None):
                if pending is not None:
                    pending.add_done_callback(lambda _: requeue(key))
        problems = [resolved.problem] if resolved.problem else []
        changes: list[Change] = []
        deployment: dict[str, Any] | None = None
        plan, seen = self._candidate(mlmodel, candidate, previous, now)
        wanted = render(
            mlmodel,
            self.settings,
            digest=resolved.digest,
            model_format=resolved.model_format,
            candidate=plan,
        )
        hold = candidate is not None and candidate.hold
        foreign = False  # a same-named Deployment that is not this MLModel's
        for manifest in wanted:
            if manifest["kind"] == HPA_KIND and foreign:
                continue  # it would scale someone else's Deployment: removed below instead
            if manifest["kind"] == "Deployment" and (resolved.waiting or hold):
                busy = candidate.busy if hold and candidate else resolved.busy
                live, change, problem = self._until_card_read(mlmodel, manifest, hold, busy)
            else:
                live, change, problem = self._converge(mlmodel, manifest)
            changes += [change] if change else []
            problems += [problem] if problem else []
            if manifest["kind"] == "Deployment":
                deployment = live
                foreign = problem is not None and problem.reason == NOT_OWNED
        changes += self._remove_unwanted(mlmodel, keep_hpa=not foreign)
        if deployment is not None:
            problems += self._pod_problems(mlmodel, deployment)
        observed = Observed(
            deployment=deployment,
            digest=resolved.digest,
            model_format=resolved.model_format,
            problems=problems,
            candidate=seen,
            # moved to the new URI (not held for its card): the old digest describes no pod
            keep_known_digest=not other_uri or resolved.waiting,
        )
        status = derive_status(
            mlmodel,
            observed,
            previous,
            cluster_domain=self.settings.cluster_domain,
            now=now,
        )
        retry = any(problem.reason == APPLY_REFUSED for problem in problems)
        analysis = seen.analysis if seen is not None else None
        requeue_after = analysis.requeue_after if analysis else None
        if resolved.busy or (candidate is not None and candidate.busy):
            requeue_after = min(requeue_after or BUSY_RETRY_SECONDS, BUSY_RETRY_SECONDS)
        return Outcome(
            status_patch(previous, status),
            tuple(changes),
            tuple(problems),
            retry,
            events=analysis.events if analysis else (),
            requeue_after=requeue_after,
        )

    def _candidate(
        self,
        mlmodel: MLModel,
        resolved: CandidateResolved | None,
        previous: Mapping[str, Any],
        now: datetime,
    ) -> tuple[CandidatePlan | None, CandidateObserved | None]:
        """What the pods get of spec.candidate (None: nothing) and what status says of it.

        With analysis, the analyzer decides the phase and step from the state status carries,
        and the share follows from them (effective_percent), so renderer and analysis agree.
        """
        spec = mlmodel.spec.candidate
        uri = candidate_uri_in_pod(mlmodel)
        if spec is None or resolved is None or uri is None:
            return None, None
        if not resolved.rendered:
            seen = CandidateObserved(
                False, uri, resolved.digest, resolved.problem, hold=resolved.hold
            )
            return None, seen
        analysis: AnalysisResult | None = None
        if spec.analysis is None:
            percent = effective_percent(spec)
        else:
            live = self.cache.get("Deployment", mlmodel.namespace, mlmodel.name)
            before = previous.get("candidate")
            round_ = AnalysisRound(
                mlmodel=mlmodel,
                previous=before if isinstance(before, Mapping) else None,
                candidate_key=candidate_key(mlmodel, resolved),
                ready_share=ready_share(mlmodel, live, uri, resolved.digest),
                now=now,
            )
            analysis = self._analyze(round_)
            percent = effective_percent(spec, analysis.phase, analysis.step)
        loaded = None
        if self.version_ready is not None:
            try:
                loaded = self.version_ready(mlmodel)
            except Exception as exc:  # derive from the Deployment instead
                LOG.warning(
                    "MLModel %s/%s: pods not read: %r", mlmodel.namespace, mlmodel.name, exc
                )
        plan = CandidatePlan(percent, resolved.digest, resolved.model_format)
        seen = CandidateObserved(
            True, uri, resolved.digest, analysis=analysis, loaded=loaded, note=resolved.note
        )
        return plan, seen

    def _analyze(self, round_: AnalysisRound) -> AnalysisResult:
        """The analyzer's result; if it fails, the state status carries, kept as it was."""
        try:
            return self.analyzer(round_)
        except Exception as exc:
            meta = round_.mlmodel
            LOG.warning("MLModel %s/%s: analysis failed: %r", meta.namespace, meta.name, exc)
            before = dict(round_.previous or {})
            fields: dict[str, Any] = {k: before[k] for k in ANALYSIS_FIELDS if k in before}
            phase = str(fields.setdefault("phase", "Progressing"))
            step = fields.setdefault("step", 0)
            health = Health("Unknown", "AnalysisError", f"The analysis failed this round: {exc}")
            step = step if isinstance(step, int) and not isinstance(step, bool) else 0
            return AnalysisResult(phase, step, fields, health, requeue_after=ANALYSIS_RETRY_SECONDS)

    def _until_card_read(
        self, mlmodel: MLModel, manifest: dict[str, Any], hold: bool = False, busy: bool = False
    ) -> tuple[dict[str, Any] | None, Change | None, Problem | None]:
        """The Deployment while its card (or its candidate's, `hold`) is being read.

        When it already serves this URI, the last known digest is the one to keep: converge as
        usual. When it does not exist yet or serves another URI, the digest for this URI is not
        known: leave it as it is until the read is done (and the MLModel queued again), so a
        new URI rolls the pods once, with its card's digest, not twice. While the candidate's
        outcome is not known it is left as it is too: a candidate the pods run stays, one they
        do not run yet is added once, when its card has been read.
        """
        live = self.cache.get("Deployment", mlmodel.namespace, mlmodel.name)
        serves_uri = live is not None and _served_uri(live) == model_uri_in_pod(mlmodel)
        if not hold and serves_uri:
            return self._converge(mlmodel, manifest)
        if live is not None and not is_controlled_by(live, mlmodel):
            return None, None, _not_owned("Deployment", mlmodel)
        # Not ready for this generation until its pods run the new URI, or while the held
        # Deployment differs from this generation's (the candidate's card is read, and the same
        # edit changed the image, say): say why they do not run it yet.
        if live is None or not serves_uri or drift.drift(manifest, live, FIELD_MANAGER):
            return live, None, _reading_card(hold, busy)
        return live, None, None

    def _converge(
        self, mlmodel: MLModel, manifest: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, Change | None, Problem | None]:
        kind = manifest["kind"]
        live = self.cache.get(kind, mlmodel.namespace, mlmodel.name)
        if live is None:  # not among ours: make sure no one else's object has the name
            with _api_call(f"reading {kind} {mlmodel.namespace}/{mlmodel.name}"):
                live = self.kube.read(manifest["apiVersion"], kind, mlmodel.namespace, mlmodel.name)
        if live is not None and not is_controlled_by(live, mlmodel):
            return None, None, _not_owned(kind, mlmodel)
        if live is not None:
            paths = drift.drift(manifest, live, FIELD_MANAGER)
            if not paths:
                return live, None, None
            change = Change("Updated", kind, mlmodel.name, tuple(paths))
        else:
            change = Change("Created", kind, mlmodel.name)
        try:
            if live is not None:  # a refused scale leaves the Deployment unapplied too
                self._hand_replicas_to_hpa(mlmodel, manifest, live)
            with _api_call(f"applying {kind} {mlmodel.namespace}/{mlmodel.name}"):
                applied = self.kube.apply(manifest)
        except ApiCallFailed as exc:
            if not exc.refused:
                raise
            return live, None, _apply_refused(kind, mlmodel, exc)
        self.cache.wrote(kind, applied)
        if live is None:
            self._start_at_hpa_floor(mlmodel, manifest)
        return applied, change, None

    def _start_at_hpa_floor(self, mlmodel: MLModel, manifest: Mapping[str, Any]) -> None:
        """A new autoscaled Deployment starts at minReplicas, not at the default of 1."""
        scaling = mlmodel.spec.autoscaling
        if manifest["kind"] == "Deployment" and scaling is not None and scaling.min_replicas > 1:
            with _api_call(f"scaling Deployment {mlmodel.namespace}/{mlmodel.name}"):
                self.kube.apply_deployment_scale(
                    mlmodel.namespace, mlmodel.name, scaling.min_replicas
                )

    def _hand_replicas_to_hpa(
        self, mlmodel: MLModel, manifest: Mapping[str, Any], live: Mapping[str, Any]
    ) -> None:
        """Before dropping spec.replicas from the applied Deployment, keep its current value.

        Removing a field from an apply deletes it when nothing else owns it, which would reset
        the Deployment to 1 replica until the HPA catches up. Applying the count through the
        scale subresource first keeps it owned, so the Deployment apply leaves it alone.
        """
        scaling = mlmodel.spec.autoscaling
        if manifest["kind"] != "Deployment" or scaling is None:
            return
        owned = drift.managed_fields_of(live, FIELD_MANAGER).get("f:spec", {})
        if "f:replicas" not in owned:
            return
        current = int((live.get("spec") or {}).get("replicas", scaling.min_replicas))
        keep = max(scaling.min_replicas, min(scaling.max_replicas, current))
        with _api_call(f"scaling Deployment {mlmodel.namespace}/{mlmodel.name}"):
            self.kube.apply_deployment_scale(mlmodel.namespace, mlmodel.name, keep)

    def _remove_unwanted(self, mlmodel: MLModel, keep_hpa: bool = True) -> list[Change]:
        """Delete the children this MLModel does not want, of those it controls; its HPA too
        unless `keep_hpa` (False while the Deployment of its name is someone else's: the HPA
        targets that name, and the operator must not scale what it does not own)."""
        removed = []
        unwanted = unwanted_kinds(mlmodel, self.settings)
        if not keep_hpa:
            unwanted += [key for key in CHILD_KINDS if key[1] == HPA_KIND and key not in unwanted]
        for api_version, kind in unwanted:
            live = self.cache.get(kind, mlmodel.namespace, mlmodel.name)
            if live is None or not is_controlled_by(live, mlmodel):
                continue
            uid = live["metadata"]["uid"]
            with _api_call(f"removing {kind} {mlmodel.namespace}/{mlmodel.name}"):
                self.kube.delete(api_version, kind, mlmodel.namespace, mlmodel.name, uid)
            self.cache.deleted(kind, mlmodel.namespace, mlmodel.name, uid)
            removed.append(Change("Deleted", kind, mlmodel.name))
        return removed

    def _pod_problems(self, mlmodel: MLModel, deployment: Mapping[str, Any]) -> list[Problem]:
        if rollout_of(mlmodel, deployment).complete:
            return []
        # A crash is read from the termination message (the kubelet's log tail): no pods/log.
        problem = pod_problem(self.cache.pods(mlmodel.namespace, mlmodel.name))
        return [problem] if problem else []
