"""A reconcile never waits for a model card: it goes on with what it knew, leaves a Deployment
whose digest it does not know yet alone, and the MLModel's key is queued again when the read is
done. (A tarpit card held a reconcile worker for the read's whole deadline before: four workers,
a few dozen tarpits, and no other MLModel was reconciled.)"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from operator_testlib import card_json, mlmodel_body

from mlmodel_operator.cache import ObjectCache
from mlmodel_operator.cardfetch import CardReadError
from mlmodel_operator.cards import (
    BUSY_RETRY_SECONDS,
    CardPool,
    CardReader,
    card_reader,
    parse_card,
)
from mlmodel_operator.reconcile import Outcome, Reconciler
from mlmodel_operator.render import render
from mlmodel_operator.render.meta import DIGEST_ANNOTATION
from mlmodel_operator.resource import MLModel
from mlmodel_operator.settings import OperatorSettings
from mlmodel_operator.workqueue import WorkQueue

KEY = ("models", "iris")
SHA_A, SHA_B = "a" * 64, "b" * 64


class FakeKube:
    """The API server: nothing exists until applied; every apply is recorded."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    def read(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        return None

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        self.applied.append(copy.deepcopy(dict(manifest)))
        body = copy.deepcopy(dict(manifest))
        body["metadata"]["uid"] = f"uid-{manifest['kind']}"
        return body

    def apply_deployment_scale(self, namespace: str, name: str, replicas: int) -> None:
        pass

    def kinds(self) -> list[str]:
        return [manifest["kind"] for manifest in self.applied]


class BlockedCards:
    """A card source whose reads block until released; records when each read ended."""

    def __init__(self, sha: str = SHA_B) -> None:
        self.card = card_json(sha)
        self.release = threading.Event()
        self.started = threading.Event()
        self.finished = threading.Event()

    def __call__(self, uri: str) -> bytes:
        self.started.set()
        try:
            assert self.release.wait(30), "the test never released the read"
            return self.card
        finally:
            self.finished.set()


@pytest.fixture
def blocked() -> Iterator[BlockedCards]:
    cards = BlockedCards()
    yield cards
    cards.release.set()


@pytest.fixture
def cards(settings: OperatorSettings, blocked: BlockedCards) -> Iterator[CardReader]:
    """The operator's own reader (card_reader), with an hour's deadline, reading `blocked`."""
    made = card_reader(settings.model_copy(update={"card_timeout_seconds": 3600.0}))
    made.read = blocked
    yield made
    made.close()


def reconciler(
    settings: OperatorSettings,
    cards: CardReader,
    queue: WorkQueue[tuple[str, str]],
    kube: FakeKube,
    cache: ObjectCache | None = None,
) -> Reconciler:
    return Reconciler(
        kube,
        cache or ObjectCache(),
        settings,
        reader=cards,
        requeue=lambda key: queue.add(key, "card"),
    )


def reconcile_aside(reconcile: Reconciler, body: dict[str, Any]) -> Outcome:
    """Run one reconcile on another thread; fail if it has not returned within 30 s (it would
    wait for a read that only the test ends)."""
    done: list[Outcome] = []
    thread = threading.Thread(target=lambda: done.append(reconcile.reconcile(body)), daemon=True)
    thread.start()
    thread.join(30)
    assert done, "the reconcile waited for the card read"
    return done[0]


def test_a_reconcile_returns_while_the_card_is_read_and_the_key_is_queued_when_it_is_done(
    settings: OperatorSettings, blocked: BlockedCards, cards: CardReader
) -> None:
    queue: WorkQueue[tuple[str, str]] = WorkQueue()
    kube = FakeKube()
    reconcile = reconciler(settings, cards, queue, kube)
    body = mlmodel_body({"model": {"uri": "https://cards.test/iris"}})

    outcome = reconcile_aside(reconcile, body)

    # it returned while the read was still blocked (the read cannot end before release)
    assert not blocked.finished.is_set()
    assert "Deployment" not in kube.kinds()  # its digest is not known yet: not created
    assert "Service" in kube.kinds()  # the rest converges meanwhile
    assert "modelDigest" not in outcome.status_patch
    assert not any(p.reason.startswith("Artifact") for p in outcome.problems)
    assert len(queue) == 0  # not queued again before the read is done

    blocked.release.set()
    item = queue.get(timeout=30)
    assert item == (KEY, "card")
    queue.done(KEY)

    outcome = reconcile.reconcile(body)
    deployments = [m for m in kube.applied if m["kind"] == "Deployment"]
    assert len(deployments) == 1  # created once, with the card's digest
    annotations = deployments[0]["spec"]["template"]["metadata"]["annotations"]
    assert annotations[DIGEST_ANNOTATION] == SHA_B
    assert outcome.status_patch["modelDigest"] == SHA_B


def live_deployment(body: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    """The Deployment the operator rendered for `body` (digest SHA_A), as the watch has it."""
    rendered = render(MLModel.from_body(body), settings, digest=SHA_A)
    deployment: dict[str, Any] = next(m for m in rendered if m["kind"] == "Deployment")
    deployment["metadata"]["uid"] = "uid-Deployment"
    return deployment


def test_while_a_new_uri_is_read_the_deployment_keeps_the_old_one_until_the_digest_is_known(
    settings: OperatorSettings, blocked: BlockedCards, cards: CardReader
) -> None:
    """A new URI rolls the pods once, with its card's digest, not first with the old digest."""
    old = mlmodel_body({"model": {"uri": "https://cards.test/iris/v1"}})
    cache = ObjectCache()
    cache.store("Deployment", live_deployment(old, settings))
    queue: WorkQueue[tuple[str, str]] = WorkQueue()
    kube = FakeKube()
    reconcile = reconciler(settings, cards, queue, kube, cache)
    new = mlmodel_body({"model": {"uri": "https://cards.test/iris/v2"}})
    new["status"] = {"modelDigest": SHA_A}

    reconcile_aside(reconcile, new)
    assert not blocked.finished.is_set()
    assert "Deployment" not in kube.kinds()

    blocked.release.set()
    assert queue.get(timeout=30) == (KEY, "card")
    reconcile.reconcile(new)
    (deployment,) = [m for m in kube.applied if m["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["metadata"]["annotations"][DIGEST_ANNOTATION] == SHA_B


def test_while_the_same_uri_is_read_again_the_deployment_converges_with_the_known_digest(
    settings: OperatorSettings, blocked: BlockedCards, cards: CardReader
) -> None:
    spec: dict[str, Any] = {"model": {"uri": "https://cards.test/iris"}, "replicas": 1}
    cache = ObjectCache()
    cache.store("Deployment", live_deployment(mlmodel_body(spec), settings))
    queue: WorkQueue[tuple[str, str]] = WorkQueue()
    kube = FakeKube()
    reconcile = reconciler(settings, cards, queue, kube, cache)
    scaled = mlmodel_body({**spec, "replicas": 3})
    scaled["status"] = {"modelDigest": SHA_A}

    reconcile_aside(reconcile, scaled)
    assert not blocked.finished.is_set()
    (deployment,) = [m for m in kube.applied if m["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3  # a scale change does not wait for the card
    assert deployment["spec"]["template"]["metadata"]["annotations"][DIGEST_ANNOTATION] == SHA_A


def test_a_card_with_a_checked_onnx_form_runs_its_pods_on_the_slim_image_from_the_start(
    settings: OperatorSettings, blocked: BlockedCards, cards: CardReader
) -> None:
    """Unpinned, the pods load the card's checked model.onnx (the server's rule): they get the
    slim image, the ONNX file's digest rolls them, status says so; created once, never first
    on the full image. While the card is read again, they keep what they run."""
    blocked.card = card_json(SHA_A, onnx_sha=SHA_B, onnx_agrees=True)
    queue: WorkQueue[tuple[str, str]] = WorkQueue()
    kube = FakeKube()
    reconcile = reconciler(settings, cards, queue, kube)
    body = mlmodel_body({"model": {"uri": "https://cards.test/iris"}})

    reconcile_aside(reconcile, body)
    assert "Deployment" not in kube.kinds()
    blocked.release.set()
    assert queue.get(timeout=30) == (KEY, "card")
    queue.done(KEY)
    outcome = reconcile.reconcile(body)
    (deployment,) = [m for m in kube.applied if m["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == settings.slim_image
    assert template["metadata"]["annotations"][DIGEST_ANNOTATION] == SHA_B
    assert outcome.status_patch["modelDigest"] == SHA_B
    assert outcome.status_patch["runtime"] == {"image": settings.slim_image, "modelFormat": "onnx"}

    # the card is being read again (its ttl passed): the known format keeps the slim image
    cache = ObjectCache()
    cache.store("Deployment", {**deployment, "metadata": {**deployment["metadata"], "uid": "u"}})
    again, rereading = BlockedCards(), reconciler(settings, cards, queue, FakeKube(), cache)
    cards.read, cards.ttl = again, 0.0
    scaled = mlmodel_body({"model": {"uri": "https://cards.test/iris"}, "replicas": 3})
    scaled["status"] = {"modelDigest": SHA_B, "runtime": outcome.status_patch["runtime"]}
    try:
        reconcile_aside(rereading, scaled)
        assert not again.finished.is_set()
        (kept,) = [m for m in rereading.kube.applied if m["kind"] == "Deployment"]
        assert kept["spec"]["replicas"] == 3
        assert kept["spec"]["template"] == template
    finally:
        again.release.set()


def test_a_reconciler_closes_only_the_card_reader_it_made(settings: OperatorSettings) -> None:
    own = Reconciler(FakeKube(), ObjectCache(), settings)
    own.close()
    pool = own.reader.pool
    with pytest.raises(Exception, match="shut down"):
        pool.submit("k", lambda: b"")
    given_pool = CardPool(workers=1, queue_size=1)
    given = CardReader(lambda uri: b"", given_pool, ttl=1)
    Reconciler(FakeKube(), ObjectCache(), settings, reader=given).close()
    assert given_pool.submit("k", lambda: b"x").result(timeout=30) == b"x"
    given_pool.shutdown()


def rolled_out(spec: dict[str, Any], settings: OperatorSettings) -> ObjectCache:
    """A cache holding this spec's Deployment at generation 1, its one pod updated and ready."""
    (live,) = [
        m for m in render(MLModel.from_body(mlmodel_body(spec)), settings)
        if m["kind"] == "Deployment"
    ]  # fmt: skip
    live["metadata"].update(uid="uid-deployment", generation=1)
    live["status"] = {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
                      "updatedReplicas": 1, "availableReplicas": 1}  # fmt: skip
    cache = ObjectCache()
    cache.store("Deployment", live)
    return cache


def test_a_new_uri_whose_card_is_being_read_is_not_ready_for_its_generation(
    settings: OperatorSettings, blocked: BlockedCards, cards: CardReader
) -> None:
    """The pods still run the old URI: Ready says so (not "All replicas run generation 2")
    and Progressing is True, until the card is read and the Deployment applied."""
    cache = rolled_out({"model": {"uri": "s3://models/iris/v1", "sha256": SHA_A}}, settings)
    kube = FakeKube()
    reconcile = reconciler(settings, cards, WorkQueue(), kube, cache)
    body = mlmodel_body({"model": {"uri": "https://cards.test/iris"}}, generation=2)

    outcome = reconcile_aside(reconcile, body)

    assert not blocked.finished.is_set()
    assert "Deployment" not in kube.kinds()  # left serving v1 until the card is read
    conditions = {c["type"]: c for c in outcome.status_patch["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False", "ReadingModelCard"
    )  # fmt: skip
    assert (conditions["Progressing"]["status"], conditions["Progressing"]["reason"]) == (
        "True", "ReadingModelCard"
    )  # fmt: skip
    assert conditions["Available"]["status"] == "True"  # v1's pods serve meanwhile
    assert conditions["Degraded"]["status"] == "False"  # waiting, not a fault
    assert "spec.model.uri is being read" in conditions["Ready"]["message"]


def test_a_new_uri_whose_card_cannot_be_read_is_not_rendered_with_the_old_uri_s_digest(
    settings: OperatorSettings,
) -> None:
    """The old URI's digest and format belong to its file: the slim image and digest of an
    ONNX model must not go to pods that will load another URI's (unknown) file."""
    old = MLModel.from_body(mlmodel_body({"model": {"uri": "https://cards.test/v1"}}))
    (live,) = [
        m
        for m in render(old, settings, digest=SHA_B, model_format="onnx")
        if m["kind"] == "Deployment"
    ]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == settings.slim_image
    live["metadata"]["uid"] = "uid-deployment"
    cache = ObjectCache()
    cache.store("Deployment", live)

    def unreachable(uri: str) -> Any:
        raise CardReadError("ArtifactUnreachable", "refused")

    kube = FakeKube()
    reconcile = Reconciler(kube, cache, settings, reader=unreachable)
    body = mlmodel_body({"model": {"uri": "https://cards.test/v2"}}, generation=2)
    body["status"] = {"modelDigest": SHA_B, "runtime": {"image": settings.slim_image,
                                                       "modelFormat": "onnx"}}  # fmt: skip
    outcome = reconcile.reconcile(body)

    (applied,) = [m for m in kube.applied if m["kind"] == "Deployment"]
    template = applied["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == settings.default_image
    assert DIGEST_ANNOTATION not in (template["metadata"].get("annotations") or {})
    assert outcome.status_patch["modelDigest"] is None  # it was v1's
    (problem,) = outcome.problems
    assert problem.reason == "ArtifactUnreachable"
    assert "Pods will try to fetch it themselves" in problem.message


def test_a_new_uri_whose_card_cannot_be_read_leaves_no_old_digest_in_candidate_stable(
    settings: OperatorSettings,
) -> None:
    """status.candidate.stable follows the same rule as modelDigest: the stable pods are being
    moved to another URI whose file is unknown, so the old URI's digest is not said to serve."""
    old = MLModel.from_body(mlmodel_body({"model": {"uri": "https://cards.test/v1"}}))
    (live,) = [m for m in render(old, settings, digest=SHA_B) if m["kind"] == "Deployment"]
    live["metadata"]["uid"] = "uid-deployment"
    cache = ObjectCache()
    cache.store("Deployment", live)

    def read(uri: str) -> Any:
        if uri.endswith("/v2"):
            raise CardReadError("ArtifactUnreachable", "refused")
        return parse_card(card_json(SHA_A), uri)  # the candidate's card

    kube = FakeKube()
    reconcile = Reconciler(kube, cache, settings, reader=read)
    spec = {
        "model": {"uri": "https://cards.test/v2"},
        "candidate": {"model": {"uri": "https://cards.test/candidate"}},
    }
    body = mlmodel_body(spec, generation=2)
    body["status"] = {
        "modelDigest": SHA_B,
        "candidate": {"stable": {"digest": SHA_B, "readyReplicas": 1}},
    }
    outcome = reconcile.reconcile(body)

    assert outcome.status_patch["modelDigest"] is None  # it was v1's
    # a merge patch: an unchanged key is left out, None removes it
    assert outcome.status_patch["candidate"]["stable"] == {"digest": None, "readyReplicas": 0}
    assert outcome.status_patch["candidate"]["candidate"]["digest"] == SHA_A


def test_a_card_the_operator_has_no_room_to_read_holds_the_model_and_comes_back(
    settings: OperatorSettings,
) -> None:
    """The operator's own queue is full: not the artifact's fault, so not Degraded; the
    Deployment waits as while a read runs, and the MLModel is reconciled again after 5 s."""

    def busy(uri: str) -> Any:
        raise CardReadError("ArtifactReadBusy", "256 card reads queued")

    kube = FakeKube()
    reconcile = Reconciler(kube, ObjectCache(), settings, reader=busy)
    outcome = reconcile.reconcile(mlmodel_body({"model": {"uri": "https://cards.test/iris"}}))

    assert "Deployment" not in kube.kinds()
    conditions = {c["type"]: c for c in outcome.status_patch["conditions"]}
    assert conditions["Degraded"]["status"] == "False", conditions["Degraded"]
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False", "ReadingModelCard"
    )  # fmt: skip
    message = conditions["Ready"]["message"]
    assert "waits to be read" in message and "ArtifactReadBusy" in message, message
    assert "being read" not in message
    assert outcome.requeue_after == BUSY_RETRY_SECONDS


def test_held_for_the_candidate_s_card_with_other_changes_unapplied_is_not_ready(
    settings: OperatorSettings, blocked: BlockedCards, cards: CardReader
) -> None:
    """The same edit added a candidate and changed the image: the Deployment waits for the
    candidate's card, so generation 2 is not rolled out whatever the old pods' state."""
    spec: dict[str, Any] = {"model": {"uri": "s3://models/iris/v1", "sha256": SHA_A}}
    cache = rolled_out(spec, settings)
    kube = FakeKube()
    reconcile = reconciler(settings, cards, WorkQueue(), kube, cache)
    spec = {**spec, "server": {"image": "mlmodel-server:v2"},
            "candidate": {"model": {"uri": "https://cards.test/iris/v2"}}}  # fmt: skip

    outcome = reconcile_aside(reconcile, mlmodel_body(spec, generation=2))

    assert "Deployment" not in kube.kinds()
    conditions = {c["type"]: c for c in outcome.status_patch["conditions"]}
    assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
        "False", "ReadingModelCard"
    )  # fmt: skip
    assert "spec.candidate.model.uri" in conditions["Ready"]["message"]
    assert conditions["Progressing"]["status"] == "True"
