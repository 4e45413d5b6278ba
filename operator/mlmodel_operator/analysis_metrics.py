"""Where candidate analysis reads its numbers: Prometheus, or the model pods' own /metrics.

One interface, `MetricsSource.measure(scope, since)`, two implementations:

- `PrometheusSource` (MLOP_PROMETHEUS_URL): instant queries to `/api/v1/query` over the window
  since the step started (at least one scrape interval), on the labels `namespace` and
  `mlmodel` that the shipped scrape config (operator/deploy/monitoring/prometheus.yml) gives
  every model pod's series (`QUERIES` below).
- `PodMetricsSource`: `GET http://<podIP>:<port>/metrics` of the ready pods of the Deployment's
  current pod template (`scrape_targets` picks them from the operator's own pod list), counters
  summed over the pods and the p99 taken from the summed histogram buckets the way Prometheus'
  `histogram_quantile` does (`bucket_quantile`). A canary step changes the pod template, so its
  pods start with it and their counters are the step's; in shadow mode the pods stay, and a
  round's counters are everything since they started.

`read_version_ready` reads the same pods' `model_server_version_ready` for status'
`CandidateReady` (the reconciler's `version_ready` hook, `version_ready.py`).

Both are bounded the way model-card reads are (they share `cardfetch`'s HTTP): one deadline per
request for connect and read (`timeout`, 2 s) and one for the whole measurement or readiness
read (`budget`, 5 s), the body capped at `max_bytes` (256 KiB) while streaming, redirects
refused, no compression, and only the configured Prometheus URL or pod IP literals the operator
listed itself (link-local and metadata addresses never), so the operator never fetches an
address a user wrote. A failure is an `Unmeasured` with a sentence for status; the detail goes
to the operator's log. `measure` never raises.

These reads still run on the reconcile workers, and a user controls their pods (their image,
their /metrics), so the bounds are tight and a failure backs off: before a pod's text reaches
the parser, only the sample lines of the few metrics the analysis uses are kept (`keep_lines`,
a cheap line filter: a body full of other series costs no parsing), and after a pod read that
failed (or a Prometheus query), that MLModel's pods (its queries) are not read again for
`BACKOFF_SECONDS` (30 s, `Backoff`), whatever its pods are now: churning pods does not buy
another read. A read that succeeds but takes `SLOW_READ_SECONDS` (1 s) or more per pod backs off
the same way, so pods that answer just inside the timeout cost a worker at most once per back-off.
Moving the reads off the workers is the next step (docs/rollouts.md).

The metric names and labels are the model server's (docs/rollouts.md, "Server metrics"); this
module is the one place the operator names them.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

from prometheus_client.parser import text_string_to_metric_families

from mlmodel_operator import cardfetch
from mlmodel_operator.analysis import Measurement, MeasureResult, Unmeasured

LOG = logging.getLogger("mlmodel_operator.analysis_metrics")

# --- the server's metrics (docs/rollouts.md); names exact -------------------------------

REQUESTS: Final = "model_server_version_requests_total"  # {version, role, kind, outcome}
DURATION: Final = "model_server_version_duration_seconds"  # histogram {version, role}
DURATION_BUCKET: Final = f"{DURATION}_bucket"
COMPARED: Final = "model_server_candidate_compared_rows_total"
AGREED: Final = "model_server_candidate_agreed_rows_total"
READY: Final = "model_server_version_ready"  # gauge {version, role}: 1 loaded
ROLE: Final = "role"
CANDIDATE: Final = "candidate"
STABLE: Final = "stable"
OUTCOME: Final = "outcome"
ERROR: Final = "error"
LE: Final = "le"
QUANTILE: Final = 0.99
# The labels the shipped scrape config puts on every model pod's series.
NAMESPACE_LABEL: Final = "namespace"
MLMODEL_LABEL: Final = "mlmodel"

# Per request, per whole measurement or readiness read, per body: tight, because these reads
# run on the reconcile workers and a user's pod decides how slow and how big its answer is.
TIMEOUT_SECONDS: Final = 2.0
BUDGET_SECONDS: Final = 5.0
MAX_BYTES: Final = 256 << 10
# After a failed read, that MLModel's pods (or its Prometheus queries) are left alone this long.
BACKOFF_SECONDS: Final = 30.0
# A pod read that succeeds but takes this long per pod (on average) backs off too: pods that
# answer just inside the per-pod timeout would otherwise hold a reconcile worker every round.
SLOW_READ_SECONDS: Final = 1.0
MIN_WINDOW_SECONDS: Final = 15.0  # the shipped prometheus.yml's scrape_interval
METRICS_PATH: Final = "/metrics"
METRICS_ACCEPT: Final = "text/plain;version=0.0.4"  # the classic text format, not OpenMetrics


# --- the interface ----------------------------------------------------------------------


@dataclass(frozen=True)
class PodTarget:
    """A model pod to scrape: its name (for messages) and the address the API server gave it."""

    name: str
    ip: str
    port: int

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.ip)  # a literal only: nothing is looked up
        if not 0 < self.port < 65536:
            raise ValueError(f"pod {self.name}: port {self.port} out of range")


@dataclass(frozen=True)
class Scope:
    """Whose metrics: the MLModel, and (for PodMetricsSource) its pods to scrape."""

    namespace: str
    mlmodel: str
    pods: tuple[PodTarget, ...] = ()


class MetricsSource(Protocol):
    """Reads a candidate's metrics; never raises (failures are Unmeasured)."""

    def measure(self, scope: Scope, since: datetime) -> MeasureResult:
        """The candidate's metrics from `since` (the step's start) until now."""
        ...


def source_from_settings(settings: Any, reads: MetricReads | None = None) -> MetricsSource:
    """PrometheusSource when MLOP_PROMETHEUS_URL is set, else PodMetricsSource (its reads
    through `reads`, shared with the readiness reads)."""
    url = getattr(settings, "prometheus_url", "")
    if url:
        return PrometheusSource(url, reads=reads)
    return PodMetricsSource(backoff=POD_BACKOFF, reads=reads)


# --- bounded GETs -----------------------------------------------------------------------


class _FetchFailed(Exception):
    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def _refuse_redirect(url: cardfetch.Url) -> cardfetch.Hop:
    raise cardfetch.CardReadError("ArtifactUnreachable", f"redirect to {url} not followed")


def _get(url: cardfetch.Url, accept: str, seconds: float, max_bytes: int) -> bytes:
    """GET `url` (an admin-configured host or a pod IP), within `seconds`, at most `max_bytes`."""
    if seconds <= 0:
        raise _FetchFailed(f"{url.origin}: no time left in the measurement's budget")
    deadline = cardfetch.Deadline(seconds)
    cardfetch.WATCHDOG.watch(deadline)
    try:
        hop = cardfetch.Hop(url, host_named=True, headers={"Accept": accept})
        return cardfetch.fetch(hop, _refuse_redirect, deadline=deadline, max_bytes=max_bytes)
    except cardfetch.CardReadError as exc:
        raise _FetchFailed(exc.detail) from exc
    finally:
        deadline.finish()


class Backoff:
    """After a failed read for an MLModel, no read for it for `seconds` (whatever its pods are
    now: a new pod set does not reset it). Thread-safe; at most `max_entries` kept."""

    def __init__(
        self,
        seconds: float = BACKOFF_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._failed: dict[tuple[str, str], float] = {}

    def waiting(self, namespace: str, mlmodel: str) -> bool:
        """Whether a read for this MLModel failed less than `seconds` ago."""
        with self._lock:
            at = self._failed.get((namespace, mlmodel))
            return at is not None and self.clock() - at < self.seconds

    def failed(self, namespace: str, mlmodel: str) -> None:
        """A read for this MLModel failed now."""
        now = self.clock()
        with self._lock:
            for key in [k for k, at in self._failed.items() if now - at >= self.seconds]:
                del self._failed[key]
            self._failed[(namespace, mlmodel)] = now
            while len(self._failed) > self.max_entries:
                del self._failed[next(iter(self._failed))]


def slow_read(started: float, pods: int, budget: float) -> bool:
    """Whether reading `pods` pods since `started` (time.monotonic) was slow: SLOW_READ_SECONDS
    or more per pod on average (many fast pods are not a slow read), or half the read's
    `budget` (so that many pods each just under a second, whose read the budget cuts short of
    SLOW_READ_SECONDS x pods, are slow too)."""
    threshold = min(SLOW_READ_SECONDS * max(pods, 1), budget / 2)
    return time.monotonic() - started >= threshold


# The operator's pod reads (analysis and readiness) share one: a pod that failed one is not
# read by the other either.
POD_BACKOFF: Final = Backoff()


class MetricReads:
    """At most `slots` metric reads at once, and at most one per namespace.

    Metric reads (the analysis' pods or Prometheus queries, the readiness hook's pods) run on
    the reconcile workers, each bounded by its budget and backed off per MLModel after a slow
    one. A namespace whose user made many MLModels with slow pods (or with series that make
    their queries slow) could still keep every worker in such reads, one MLModel after another,
    and every other namespace's reconciles would wait. With this gate it holds one worker at
    most, and metric reads together hold `slots` (the operator sets half its workers): the rest
    of the workers always reconcile. A read that finds no slot is not made this round and is
    not counted as failed (nothing is wrong with its pods). Thread-safe.
    """

    def __init__(self, slots: int = 2) -> None:
        self.slots = max(1, slots)
        self._lock = threading.Lock()
        self._reading: dict[str, int] = {}  # namespace -> reads running (0 or 1)

    @contextmanager
    def slot(self, namespace: str) -> Iterator[bool]:
        """Yields whether this read may run now; the slot is held until the block ends."""
        with self._lock:
            free = namespace not in self._reading and len(self._reading) < self.slots
            if free:
                self._reading[namespace] = 1
        try:
            yield free
        finally:
            if free:
                with self._lock:
                    del self._reading[namespace]


def no_slot_message(reads: MetricReads) -> str:
    """Why a metric read was not made this round (MetricReads refused it)."""
    return (
        "the operator is reading other models' metrics (at most "
        f"{reads.slots} at once, one per namespace); read again on a later round"
    )


def keep_lines(text: str, names: Iterable[str]) -> str:
    """The sample lines of the metrics `names` (exact names, e.g. `x_bucket`), nothing else:
    comments and every other series are dropped before the text is parsed."""
    prefixes = tuple(f"{name}{sep}" for name in names for sep in ("{", " ", "\t"))
    return "\n".join(line for line in text.splitlines() if line.startswith(prefixes)) + "\n"


MEASURED_NAMES: Final = (REQUESTS, DURATION_BUCKET, COMPARED, AGREED, READY)


# --- Prometheus -------------------------------------------------------------------------


def parse_prometheus_url(text: str) -> cardfetch.Url:
    """MLOP_PROMETHEUS_URL parsed: http(s), a host, optionally a path prefix; no user-info,
    query or fragment. ValueError says what is wrong."""
    try:
        url = cardfetch.Url.parse(text.strip())
    except cardfetch.CardReadError as exc:
        raise ValueError(f"not a Prometheus URL ({exc.detail}): use e.g. http://host:9090") from exc
    if url.scheme not in ("http", "https"):
        raise ValueError(f"not a Prometheus URL (scheme {url.scheme}): use http:// or https://")
    return url


def _selector(scope: Scope, **labels: str) -> str:
    matchers = {NAMESPACE_LABEL: scope.namespace, MLMODEL_LABEL: scope.mlmodel, **labels}
    # PromQL's double-quoted strings take JSON's escapes for quotes and backslashes
    return "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in matchers.items()) + "}"


def queries(scope: Scope, window: str) -> dict[str, str]:
    """The PromQL of one measurement, by what it measures; `window` a range like `120000ms`."""
    cand = _selector(scope, **{ROLE: CANDIDATE})
    errors = _selector(scope, **{ROLE: CANDIDATE, OUTCOME: ERROR})
    stable = _selector(scope, **{ROLE: STABLE})
    model = _selector(scope)

    def p99(selector: str) -> str:
        inner = f"sum by ({LE}) (increase({DURATION_BUCKET}{selector}[{window}]))"
        return f"histogram_quantile({QUANTILE}, {inner})"

    return {
        "requests": f"sum(increase({REQUESTS}{cand}[{window}]))",
        "errors": f"sum(increase({REQUESTS}{errors}[{window}]))",
        "p99_candidate": p99(cand),
        "p99_stable": p99(stable),
        "compared": f"sum(increase({COMPARED}{model}[{window}]))",
        "agreed": f"sum(increase({AGREED}{model}[{window}]))",
        "candidate_ready": f"min({READY}{cand})",
    }


class PrometheusSource:
    """Measures through the Prometheus HTTP API at one admin-configured URL."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = TIMEOUT_SECONDS,
        budget: float = BUDGET_SECONDS,
        max_bytes: int = MAX_BYTES,
        min_window: float = MIN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        backoff: Backoff | None = None,
        reads: MetricReads | None = None,
    ) -> None:
        self.url = parse_prometheus_url(url)
        self.timeout = timeout
        self.budget = budget
        self.max_bytes = max_bytes
        self.min_window = min_window
        self.clock = clock
        self.backoff = backoff if backoff is not None else Backoff()
        self.reads = reads if reads is not None else MetricReads()

    def measure(self, scope: Scope, since: datetime) -> MeasureResult:
        """Seven instant queries at the same evaluation time, over the window since `since`
        (`timeout` each, `budget` for all; only with a slot of `reads` for the namespace; after
        a failure, or answers that took half the budget, none for this MLModel for the
        back-off)."""
        if self.backoff.waiting(scope.namespace, scope.mlmodel):
            return Unmeasured(
                "Prometheus (MLOP_PROMETHEUS_URL) could not be queried, or answered slowly; "
                f"trying again at most every {self.backoff.seconds:g} s"
            )
        with self.reads.slot(scope.namespace) as free:
            if not free:
                return Unmeasured(no_slot_message(self.reads))
            started = time.monotonic()
            result = self._measure(scope, since)
        if not isinstance(result, Unmeasured) and time.monotonic() - started >= self.budget / 2:
            self.backoff.failed(scope.namespace, scope.mlmodel)  # used, but not again soon
        return result

    def _measure(self, scope: Scope, since: datetime) -> MeasureResult:
        now = self.clock()
        window_ms = math.ceil(max(now - since.timestamp(), self.min_window) * 1000)
        values: dict[str, float | None] = {}
        ends = time.monotonic() + self.budget
        try:
            for name, promql in queries(scope, f"{window_ms}ms").items():
                seconds = min(self.timeout, ends - time.monotonic())
                values[name] = self._query(promql, now, seconds)
        except _FetchFailed as exc:
            LOG.info("Prometheus query for %s/%s failed: %s", scope.namespace, scope.mlmodel, exc)
            self.backoff.failed(scope.namespace, scope.mlmodel)
            return Unmeasured("Prometheus (MLOP_PROMETHEUS_URL) could not be queried")

        def count(name: str) -> int:
            value = values[name]
            return round(value) if value is not None else 0

        requests, compared = count("requests"), count("compared")
        ready = values["candidate_ready"]
        try:
            return Measurement(
                requests=requests,
                # increase() extrapolates each series alone: keep the parts within their wholes
                errors=min(count("errors"), requests),
                p99_candidate=values["p99_candidate"],
                p99_stable=values["p99_stable"],
                compared=compared,
                agreed=min(count("agreed"), compared),
                candidate_ready=None if ready is None else ready >= 1,
            )
        except ValueError as exc:  # a pod's counters beyond belief: measured as nothing
            return Unmeasured(f"Prometheus answered implausible values ({exc})")

    def _query(self, promql: str, at: float, seconds: float) -> float | None:
        """An instant query's single value (None: no series, or NaN)."""
        base = self.url.path.rstrip("/")
        query = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
        url = cardfetch.Url(
            self.url.scheme, self.url.host, self.url.port, f"{base}/api/v1/query", query
        )
        body = _get(url, "application/json", seconds, self.max_bytes)
        try:
            doc = json.loads(body)
            data = doc["data"]
            if doc.get("status") != "success" or data["resultType"] != "vector":
                raise ValueError(f"status {doc.get('status')}, type {data.get('resultType')}")
            result = data["result"]
            if not result:
                return None
            if len(result) != 1:
                raise ValueError(f"{len(result)} series where one was expected")
            value = float(result[0]["value"][1])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise _FetchFailed(f"{self.url.origin}: not a query result ({exc!r})") from exc
        return value if math.isfinite(value) else None


# --- the pods ---------------------------------------------------------------------------


def scrape_targets(
    deployment: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> tuple[PodTarget, ...]:
    """The pods to scrape: ready, not terminating, not on the host's network, created by a
    ReplicaSet of this Deployment from its current pod template (the template's annotations
    and server container env on the pod), with an IP; the port is the template's `http`
    container port. Sorted by pod name."""
    meta = deployment.get("metadata") or {}
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    container, port = _http_container(template)
    if container is None or port is None:
        return ()
    targets = []
    for pod in pods:
        pod_meta = pod.get("metadata") or {}
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        owned = any(
            ref.get("kind") == "ReplicaSet"
            and ref.get("controller")
            and str(ref.get("name", "")).startswith(f"{meta.get('name')}-")
            for ref in pod_meta.get("ownerReferences") or []
        )
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        pod_annotations = pod_meta.get("annotations") or {}
        same_template = all(pod_annotations.get(k) == v for k, v in annotations.items()) and any(
            c.get("name") == container.get("name") and c.get("env") == container.get("env")
            for c in spec.get("containers") or []
        )
        if (
            not owned
            or not ready
            or not same_template
            or pod_meta.get("deletionTimestamp")
            or spec.get("hostNetwork")
            or not status.get("podIP")
        ):
            continue
        try:
            targets.append(PodTarget(str(pod_meta.get("name", "")), str(status["podIP"]), port))
        except ValueError:
            continue
    return tuple(sorted(targets, key=lambda t: t.name))


def scrape_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What `scrape_targets` reads of a pod, and nothing else: for a watch cache that keeps
    pods slim (name, deletion, annotations, controller, readiness, IP, host network, and each
    container's name and env)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    kept_meta = {
        k: meta[k]
        for k in ("name", "deletionTimestamp", "annotations", "ownerReferences")
        if meta.get(k) is not None
    }
    containers = [
        {k: c[k] for k in ("name", "env") if k in c} for c in spec.get("containers") or []
    ]
    kept_spec: dict[str, Any] = {"containers": containers}
    if spec.get("hostNetwork"):
        kept_spec["hostNetwork"] = True
    kept_status = {k: status[k] for k in ("podIP", "conditions") if k in status}
    return {"metadata": kept_meta, "spec": kept_spec, "status": kept_status}


def _http_container(template: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, int | None]:
    for container in (template.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http" and isinstance(port.get("containerPort"), int):
                return container, int(port["containerPort"])
    return None, None


def bucket_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' `histogram_quantile` over cumulative buckets (upper bound -> count), as
    promql/quantile.go's BucketQuantile computes it; None where that gives NaN (no +Inf bucket,
    fewer than two buckets, no observations)."""
    bounds = sorted(buckets)
    if len(bounds) < 2 or bounds[-1] != math.inf:
        return None
    counts = list(itertools.accumulate((buckets[b] for b in bounds), max))  # never falling
    observations = counts[-1]
    if observations == 0:
        return None
    rank = q * observations
    last = len(bounds) - 1
    b = next((i for i in range(last) if counts[i] >= rank), last)
    if b == last:  # in the +Inf bucket: the highest finite bound
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, below = (bounds[b - 1], counts[b - 1]) if b > 0 else (0.0, 0.0)
    return start + (bounds[b] - start) * ((rank - below) / (counts[b] - below))


@dataclass
class _Sums:
    """The pods' samples, summed."""

    requests: float = 0.0
    errors: float = 0.0
    compared: float = 0.0
    agreed: float = 0.0
    buckets: dict[str, dict[float, float]] = field(
        default_factory=lambda: {CANDIDATE: {}, STABLE: {}}
    )
    loaded: list[bool | None] = field(default_factory=list)  # per pod: candidate ready?

    def add(self, text: str) -> None:
        """Add one pod's exposition text (ValueError when it does not parse); only the lines of
        the metrics measured are parsed (`keep_lines`)."""
        ready: list[float] = []
        for family in text_string_to_metric_families(keep_lines(text, MEASURED_NAMES)):
            for sample in family.samples:
                name, labels, value = sample.name, sample.labels, float(sample.value)
                role = labels.get(ROLE)
                if name == REQUESTS and role == CANDIDATE:
                    self.requests += value
                    if labels.get(OUTCOME) == ERROR:
                        self.errors += value
                elif name == DURATION_BUCKET and role in self.buckets:
                    per_bound = self.buckets[role]
                    bound = float(labels[LE])
                    per_bound[bound] = per_bound.get(bound, 0.0) + value
                elif name == COMPARED:
                    self.compared += value
                elif name == AGREED:
                    self.agreed += value
                elif name == READY and role == CANDIDATE:
                    ready.append(value)
        self.loaded.append(min(ready) >= 1 if ready else None)

    def measurement(self) -> Measurement:
        """The sums as a Measurement."""
        requests, compared = round(self.requests), round(self.compared)
        candidate_ready = None
        if False in self.loaded:
            candidate_ready = False
        elif self.loaded and all(self.loaded):
            candidate_ready = True
        return Measurement(
            requests=requests,
            errors=min(round(self.errors), requests),
            p99_candidate=bucket_quantile(QUANTILE, self.buckets[CANDIDATE]),
            p99_stable=bucket_quantile(QUANTILE, self.buckets[STABLE]),
            compared=compared,
            agreed=min(round(self.agreed), compared),
            candidate_ready=candidate_ready,
        )


class PodMetricsSource:
    """Measures by scraping the pods of `Scope.pods` (see `scrape_targets`): `timeout` per pod,
    `budget` for all, `max_bytes` a body; after a failed read, none of this MLModel's pods for
    `backoff` (POD_BACKOFF when the operator wires it: shared with the readiness reads); only
    when `reads` has a slot for the namespace (shared with the readiness reads too)."""

    def __init__(
        self,
        *,
        timeout: float = TIMEOUT_SECONDS,
        budget: float = BUDGET_SECONDS,
        max_bytes: int = MAX_BYTES,
        backoff: Backoff | None = None,
        reads: MetricReads | None = None,
    ) -> None:
        self.timeout = timeout
        self.budget = budget
        self.max_bytes = max_bytes
        self.backoff = backoff if backoff is not None else Backoff()
        self.reads = reads if reads is not None else MetricReads()

    def measure(self, scope: Scope, since: datetime) -> MeasureResult:
        """Every pod's counters, summed (`since` is not used: the pods started with the step)."""
        if not scope.pods:
            return Unmeasured("no ready pod of the current pod template to read metrics from")
        if self.backoff.waiting(scope.namespace, scope.mlmodel):
            return Unmeasured(
                "the metrics of a pod could not be read, or took over "
                f"{SLOW_READ_SECONDS:g} s; the pods are read again at most every "
                f"{self.backoff.seconds:g} s"
            )
        with self.reads.slot(scope.namespace) as free:
            if not free:
                return Unmeasured(no_slot_message(self.reads))
            started = time.monotonic()
            result = self._read(scope)
        if isinstance(result, Unmeasured) or slow_read(started, len(scope.pods), self.budget):
            self.backoff.failed(scope.namespace, scope.mlmodel)
        return result

    def _read(self, scope: Scope) -> MeasureResult:
        sums = _Sums()
        ends = time.monotonic() + self.budget
        for pod in scope.pods:
            url = cardfetch.Url("http", pod.ip, pod.port, METRICS_PATH)
            try:
                seconds = min(self.timeout, ends - time.monotonic())
                body = _get(url, METRICS_ACCEPT, seconds, self.max_bytes)
                sums.add(body.decode("utf-8"))
            except _FetchFailed as exc:
                LOG.info("metrics of pod %s/%s: %s", scope.namespace, pod.name, exc.detail)
                return Unmeasured(f"the metrics of pod {pod.name} could not be read")
            except (ValueError, KeyError, UnicodeDecodeError) as exc:
                LOG.info("metrics of pod %s/%s do not parse: %r", scope.namespace, pod.name, exc)
                return Unmeasured(f"the metrics of pod {pod.name} are not Prometheus text")
            except Exception as exc:  # never raise: the step waits instead
                LOG.warning("metrics of pod %s/%s: %r", scope.namespace, pod.name, exc)
                return Unmeasured(f"the metrics of pod {pod.name} could not be read")
        try:
            return sums.measurement()
        except ValueError as exc:  # counters beyond belief (or otherwise impossible)
            return Unmeasured(f"the pods' metrics are implausible ({exc})")


# --- which versions the pods loaded (status' CandidateReady) ------------------------------


def ready_roles(text: str) -> set[str]:
    """The roles ("stable", "candidate") whose `model_server_version_ready` gauge is 1 in one
    pod's exposition text (ValueError when it does not parse)."""
    values: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(keep_lines(text, (READY,))):
        for sample in family.samples:
            role = sample.labels.get(ROLE)
            if sample.name == READY and role in (STABLE, CANDIDATE):
                values.setdefault(role, []).append(float(sample.value))
    return {role for role, seen in values.items() if min(seen) >= 1}


def read_version_ready(
    namespace: str,
    pods: Iterable[PodTarget],
    *,
    timeout: float = TIMEOUT_SECONDS,
    budget: float = BUDGET_SECONDS,
    max_bytes: int = MAX_BYTES,
) -> dict[str, int] | None:
    """Ready pods per role as the pods report them: `GET /metrics` of each pod once (bounded
    like `PodMetricsSource`: `timeout` per pod, `budget` for all, `max_bytes`, no redirects,
    the pod IPs of `scrape_targets` only; only the gauge's lines parsed), counting the pods whose
    `model_server_version_ready{role="stable"}` / `{role="candidate"}` is 1. None when there is
    no pod, or any pod could not be read or its text does not parse: a partial count would
    say pods failed to load what they may have loaded. Never raises."""
    targets = tuple(pods)
    if not targets:
        return None
    counts = {STABLE: 0, CANDIDATE: 0}
    ends = time.monotonic() + budget
    for pod in targets:
        url = cardfetch.Url("http", pod.ip, pod.port, METRICS_PATH)
        try:
            body = _get(url, METRICS_ACCEPT, min(timeout, ends - time.monotonic()), max_bytes)
            roles = ready_roles(body.decode("utf-8"))
        except _FetchFailed as exc:
            LOG.info("version readiness of pod %s/%s: %s", namespace, pod.name, exc.detail)
            return None
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            LOG.info("metrics of pod %s/%s do not parse: %r", namespace, pod.name, exc)
            return None
        except Exception as exc:  # never raise: status falls back to the Deployment
            LOG.warning("version readiness of pod %s/%s: %r", namespace, pod.name, exc)
            return None
        for role in roles:
            counts[role] += 1
    return counts
