"""Which digest an MLModel rolls out (pinned, read from the card, or kept when unreadable), and
how CardReader remembers outcomes, shares reads and stays bounded. The network side of card
reads is in tests/security/test_operator_cards_reads.py."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future

import pytest
from operator_testlib import card_json, make_mlmodel, mlmodel_body

from devcluster.waiting import wait_until
from mlmodel_artifact import ArtifactError, ModelCard, ModelFormat
from mlmodel_operator.cardfetch import CardReadError
from mlmodel_operator.cards import (
    CardPending,
    CardPool,
    CardReader,
    card_digest,
    resolve_model,
    served_file,
)
from mlmodel_operator.resource import MLModel
from mlmodel_operator.status import Observed, Problem, derive_conditions

SHA_A, SHA_B = "a" * 64, "b" * 64


def reader_returning(card: bytes):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def read(uri: str) -> ModelCard:
        calls.append(uri)
        return ModelCard.from_json(card, uri)

    return read, calls


def raising(error: Exception) -> Callable[[str], ModelCard]:
    def read(uri: str) -> ModelCard:
        raise error

    return read


def with_known_digest(spec: dict[str, object], digest: str) -> MLModel:
    body = mlmodel_body(spec)
    body["status"] = {"modelDigest": digest}
    return MLModel.from_body(body)


# --- resolve_model ---------------------------------------------------------------------


def test_pinned_sha256_is_used_without_reading_the_card() -> None:
    read, calls = reader_returning(card_json(SHA_B))
    mlmodel = make_mlmodel({"model": {"uri": "s3://b/iris", "sha256": SHA_A}})
    assert resolve_model(mlmodel, read).digest == SHA_A
    assert calls == []


def test_pvc_artifacts_are_not_read_by_the_operator() -> None:
    read, calls = reader_returning(card_json(SHA_B))
    resolved = resolve_model(make_mlmodel({"model": {"uri": "pvc://models/iris"}}), read)
    assert (resolved.digest, resolved.problem, calls) == (None, None, [])


def test_card_digest_of_the_requested_format_is_used() -> None:
    read, calls = reader_returning(card_json(SHA_A, onnx_sha=SHA_B))
    mlmodel = make_mlmodel({"model": {"uri": "https://h/iris", "format": "onnx"}})
    resolved = resolve_model(mlmodel, read)
    assert (resolved.digest, resolved.model_format) == (SHA_B, "onnx")
    assert calls == ["https://h/iris"]
    skops = make_mlmodel({"model": {"uri": "https://h/iris", "format": "skops"}})
    assert (resolve_model(skops, read).digest, resolve_model(skops, read).model_format) == (
        SHA_A,
        "skops",
    )


@pytest.mark.parametrize(
    ("onnx_sha", "agrees", "served"),
    [
        (SHA_B, True, ("onnx", SHA_B)),  # checked when written: served as is, no scikit-learn
        (SHA_B, False, ("skops", SHA_A)),  # it disagreed: the primary
        (SHA_B, None, ("skops", SHA_A)),  # never checked (an older card): the primary
        (None, None, ("skops", SHA_A)),  # no ONNX form at all
    ],
)
def test_unpinned_the_card_says_which_file_the_pods_load(
    onnx_sha: str | None, agrees: bool | None, served: tuple[str, str]
) -> None:
    read, _ = reader_returning(card_json(SHA_A, onnx_sha=onnx_sha, onnx_agrees=agrees))
    resolved = resolve_model(make_mlmodel({"model": {"uri": "https://h/iris"}}), read)
    assert (resolved.model_format, resolved.digest) == served


def test_pinned_the_format_is_only_what_the_spec_names() -> None:
    # the card is not read for a pinned model: whether the pin names model.onnx is unknown
    pinned = {"uri": "https://h/iris", "sha256": SHA_B}
    read, calls = reader_returning(card_json(SHA_A, onnx_sha=SHA_B, onnx_agrees=True))
    assert resolve_model(make_mlmodel({"model": pinned}), read).model_format is None
    named = resolve_model(make_mlmodel({"model": {**pinned, "format": "onnx"}}), read)
    assert (named.digest, named.model_format, calls) == (SHA_B, "onnx", [])


def test_an_unreadable_card_keeps_the_known_format_with_the_known_digest() -> None:
    body = mlmodel_body({"model": {"uri": "https://h/iris"}})
    body["status"] = {"modelDigest": SHA_B, "runtime": {"image": "i", "modelFormat": "onnx"}}
    error = CardReadError("ArtifactUnreachable", "refused")
    resolved = resolve_model(MLModel.from_body(body), raising(error))
    assert (resolved.digest, resolved.model_format) == (SHA_B, "onnx")  # the pods stay as they are


def test_unreadable_card_keeps_the_known_digest_and_says_why_in_public_words() -> None:
    error = CardReadError("ArtifactUnreachable", "http://h:81: ConnectionRefusedError(111)")
    mlmodel = with_known_digest({"model": {"uri": "https://h/iris"}}, SHA_A)
    resolved = resolve_model(mlmodel, raising(error))
    assert resolved.digest == SHA_A
    assert resolved.problem is not None
    assert resolved.problem.reason == "ArtifactUnreachable"
    assert resolved.problem.blocks_ready is False and resolved.problem.degrades is True
    assert "spec.model.uri https://h/iris: the model card could not be read" in (
        resolved.problem.message
    )
    assert f"keep serving sha256 {SHA_A[:12]}" in resolved.problem.message
    assert "Refused" not in resolved.problem.message and "81" not in resolved.problem.message


def test_an_invalid_uri_is_not_echoed_into_status() -> None:
    # (the CRD and resource.py refuse user-info already; the reader refuses more, e.g. '..')
    uri = "https://h/models/../hunter2"
    resolved = resolve_model(
        make_mlmodel({"model": {"uri": uri}}), raising(CardReadError("InvalidURI", uri))
    )
    assert resolved.problem is not None and resolved.problem.reason == "InvalidURI"
    assert "hunter2" not in resolved.problem.message


def test_a_source_not_allowed_is_a_note_not_a_degradation() -> None:
    error = CardReadError("ArtifactSourceNotAllowed", "http://h:80 is under no source")
    mlmodel = with_known_digest({"model": {"uri": "http://h/iris"}}, SHA_A)
    resolved = resolve_model(mlmodel, raising(error))
    assert resolved.digest == SHA_A  # the pods are not rolled because the admin said so
    note = resolved.problem
    assert note is not None and (note.reason, note.degrades, note.blocks_ready) == (
        "ArtifactSourceNotAllowed",
        False,
        False,
    )
    assert "tracked only through spec.model.sha256" in note.message
    conditions = {c["type"]: c for c in derive_conditions(mlmodel, Observed(problems=[note]), None)}
    assert conditions["Degraded"]["status"] == "False"
    assert conditions["Degraded"]["reason"] == "ArtifactSourceNotAllowed"
    assert conditions["Ready"]["reason"] != "ArtifactSourceNotAllowed"
    pull = Problem("ImagePullFailed", "cannot pull")
    both = {c["type"]: c for c in derive_conditions(mlmodel, Observed(problems=[note, pull]), None)}
    assert (both["Degraded"]["status"], both["Degraded"]["reason"]) == ("True", "ImagePullFailed")


def test_a_card_without_the_requested_format_names_what_it_has() -> None:
    with pytest.raises(CardReadError) as caught:
        card_digest(card_json(SHA_A), "https://h/iris", "onnx")
    assert caught.value.reason == "UnknownFormat"
    assert "has no onnx file (it has: skops)" in caught.value.public


def test_an_invalid_card_keeps_the_parser_detail_for_the_log_only() -> None:
    with pytest.raises(CardReadError) as caught:
        card_digest(b'{"name": "SECRET-BODY"}', "https://h/iris", None)
    assert caught.value.reason == "InvalidModelCard"
    assert "SECRET" not in caught.value.public and "field" not in caught.value.public.lower()


def test_an_unexpected_reader_error_is_reported_without_its_text() -> None:
    resolved = resolve_model(
        make_mlmodel({"model": {"uri": "https://h/iris"}}), raising(RuntimeError("SECRET"))
    )
    assert resolved.problem is not None and resolved.problem.reason == "ArtifactUnreachable"
    assert "SECRET" not in resolved.problem.message


def test_an_artifact_error_from_a_reader_keeps_its_reason() -> None:
    error = ArtifactError("https://h/iris", "ArtifactNotFound", "no model-card.json")
    resolved = resolve_model(make_mlmodel({"model": {"uri": "https://h/iris"}}), raising(error))
    assert resolved.problem is not None and resolved.problem.reason == "ArtifactNotFound"


# --- CardReader -------------------------------------------------------------------------


class Fake:
    """A card source: counts reads per URI; URIs containing 'broken' fail."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, uri: str) -> bytes:
        self.calls.append(uri)
        if "broken" in uri:
            raise CardReadError("ArtifactNotFound", f"{uri}: HTTP 404")
        return card_json(SHA_A)


@pytest.fixture
def pool() -> CardPool:
    made = CardPool(workers=2, queue_size=8)
    yield made  # type: ignore[misc]
    made.shutdown()


def reader(fake: Fake, pool: CardPool, now: list[float], **kwargs: object) -> CardReader:
    options: dict[str, object] = {"ttl": 10.0, "wait": 10.0, **kwargs}
    return CardReader(fake, pool, clock=lambda: now[0], **options)  # type: ignore[arg-type]


def reason_of(read: Callable[[], object]) -> CardReadError:
    with pytest.raises(CardReadError) as caught:
        read()
    return caught.value


def test_a_card_is_read_once_per_ttl(pool: CardPool) -> None:
    fake, now = Fake(), [0.0]
    cards = reader(fake, pool, now)
    assert cards("s3://b/iris").sha256 == SHA_A
    assert cards("s3://b/iris").sha256 == SHA_A
    now[0] = 9.9
    assert cards("s3://b/iris").sha256 == SHA_A
    assert fake.calls == ["s3://b/iris"]  # one read per URI, whichever formats are asked for
    now[0] = 10.0
    assert cards("s3://b/iris").sha256 == SHA_A
    assert len(fake.calls) == 2


def test_formats_of_one_card_share_its_read_and_a_missing_one_is_named(pool: CardPool) -> None:
    fake, now = Fake(), [0.0]
    cards = reader(fake, pool, now)
    assert served_file(cards("s3://b/iris"), "skops") == (ModelFormat.SKOPS, SHA_A)
    missing = reason_of(lambda: served_file(cards("s3://b/iris"), "onnx"))
    assert missing.reason == "UnknownFormat"
    assert served_file(cards("s3://b/iris"), None) == (ModelFormat.SKOPS, SHA_A)
    assert fake.calls == ["s3://b/iris"]


def test_a_failing_card_is_remembered_and_read_again_less_often(pool: CardPool) -> None:
    fake, now = Fake(), [0.0]
    cards = reader(fake, pool, now)
    reads_at = []
    for second in range(0, 200):
        now[0] = float(second)
        before = len(fake.calls)
        assert reason_of(lambda: cards("s3://b/broken")).reason == "ArtifactNotFound"
        if len(fake.calls) > before:
            reads_at.append(second)
    # ttl 10: after 10 s, then 20 s, then every 40 s
    assert reads_at == [0, 10, 30, 70, 110, 150, 190]


def test_a_remembered_failure_is_raised_fresh_each_time(pool: CardPool) -> None:
    cards = reader(Fake(), pool, [0.0])
    errors = [reason_of(lambda: cards("s3://b/broken")) for _ in range(3)]
    assert len({id(error) for error in errors}) == 3
    depths = [len(traceback.extract_tb(error.__traceback__)) for error in errors]
    assert depths[0] == depths[1] == depths[2]


def test_outcomes_are_bounded_least_recently_used_first(pool: CardPool) -> None:
    fake, now = Fake(), [0.0]
    cards = reader(fake, pool, now, max_entries=3)
    for name in ("a", "b", "c", "a", "d"):
        cards(f"s3://b/{name}")
    assert len(cards) == 3
    cards("s3://b/a")  # kept: used recently
    cards("s3://b/b")  # evicted: read again
    assert fake.calls == ["s3://b/a", "s3://b/b", "s3://b/c", "s3://b/d", "s3://b/b"]


def test_a_refused_uri_is_neither_queued_nor_remembered(pool: CardPool) -> None:
    fake = Fake()

    def check(uri: str) -> None:
        raise CardReadError("ArtifactSourceNotAllowed", uri)

    cards = reader(fake, pool, [0.0], check=check)
    assert reason_of(lambda: cards("http://h/iris")).reason == "ArtifactSourceNotAllowed"
    assert (fake.calls, len(cards)) == ([], 0)


def test_a_caller_that_does_not_wait_hears_pending_and_the_outcome_is_kept() -> None:
    release, fake = threading.Event(), Fake()

    def slow(uri: str) -> bytes:
        assert release.wait(30)
        return fake(uri)

    pool = CardPool(workers=1, queue_size=4)
    try:
        cards = CardReader(slow, pool, ttl=60)  # wait 0: the operator's reconciles never wait
        with pytest.raises(CardPending) as first:
            cards("s3://b/iris")
        with pytest.raises(CardPending) as second:  # the same read, not a second one
            cards("s3://b/iris")
        assert second.value.future is first.value.future
        assert not first.value.future.done()
        release.set()
        first.value.future.result(timeout=30)
        assert cards("s3://b/iris").sha256 == SHA_A
        assert fake.calls == ["s3://b/iris"]  # the later call got the first read's outcome
    finally:
        release.set()
        pool.shutdown()


def test_while_a_card_is_read_status_keeps_its_digest_and_what_it_said_about_the_card() -> None:
    pending: Future[object] = Future()

    def reading(uri: str) -> ModelCard:
        raise CardPending(pending)

    body = mlmodel_body({"model": {"uri": "https://h/iris"}})
    said = "Cannot read the model card of spec.model.uri https://h/iris (ArtifactUnreachable)."
    degraded = {"type": "Degraded", "status": "True", "reason": "ArtifactUnreachable"}
    body["status"] = {
        "modelDigest": SHA_A,
        "conditions": [{**degraded, "message": said, "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }
    resolved = resolve_model(MLModel.from_body(body), reading)
    assert resolved.digest == SHA_A and resolved.pending is pending
    assert resolved.problem is not None
    assert (resolved.problem.reason, resolved.problem.message) == ("ArtifactUnreachable", said)
    assert resolved.problem.blocks_ready is False
    # nothing said about the card before: nothing said while it is read
    fresh = resolve_model(with_known_digest({"model": {"uri": "https://h/iris"}}, SHA_A), reading)
    assert (fresh.digest, fresh.problem, fresh.pending) == (SHA_A, None, pending)


def test_busy_is_not_remembered() -> None:
    release, started = threading.Event(), threading.Event()
    fake = Fake()

    def slow(uri: str) -> bytes:
        started.set()
        release.wait(30)
        return fake(uri)

    pool = CardPool(workers=1, queue_size=1)
    try:
        cards = CardReader(slow, pool, ttl=60, wait=30)
        pool.submit("running", lambda: slow("running"))
        assert started.wait(30)  # the one thread is taken; the next read waits in the queue
        queued = pool.submit("queued", lambda: slow("queued"))
        assert reason_of(lambda: cards("s3://b/iris")).reason == "ArtifactReadBusy"
        assert len(cards) == 0
        release.set()
        queued.result(timeout=30)
        assert cards("s3://b/iris").sha256 == SHA_A
    finally:
        release.set()
        pool.shutdown()


def test_a_re_read_that_finds_the_queue_full_keeps_the_last_card() -> None:
    """Every unpinned card is due on the same drift tick: the re-reads that found no room made
    healthy models Degraded ArtifactReadBusy. The known card stands until a reader is free."""
    release, started = threading.Event(), threading.Event()
    fake, now = Fake(), [0.0]
    pool = CardPool(workers=1, queue_size=1)
    try:
        cards = reader(fake, pool, now)
        assert cards("s3://b/iris").sha256 == SHA_A  # known
        now[0] = 60.0  # due again

        def slow() -> bytes:
            started.set()
            release.wait(30)
            return b""

        pool.submit("running", slow)
        assert started.wait(30)
        pool.submit("queued", slow)  # the queue is full now
        assert cards("s3://b/iris").sha256 == SHA_A  # the last card, not ArtifactReadBusy
        assert reason_of(lambda: cards("s3://b/never-read")).reason == "ArtifactReadBusy"
        release.set()
        wait_until("the queue to drain", lambda: pool.queued() == 0, timeout=30)
        cards.wait = 30.0
        calls = len(fake.calls)
        assert cards("s3://b/iris").sha256 == SHA_A and len(fake.calls) == calls + 1  # re-read
    finally:
        release.set()
        pool.shutdown()


def test_a_read_that_finds_no_lookup_free_is_read_again_at_the_next_call(pool: CardPool) -> None:
    """ArtifactReadBusy from inside the read (the resolver's lookups full) is the operator's
    own state, not the card's: not kept for a ttl with its back-off like a failure."""
    fake, now = Fake(), [0.0]
    outcomes = [CardReadError("ArtifactReadBusy", "16 lookups outstanding")]

    def read(uri: str) -> bytes:
        if outcomes:
            raise outcomes.pop()
        return fake(uri)

    cards = CardReader(read, pool, ttl=10.0, wait=10.0, clock=lambda: now[0])
    assert reason_of(lambda: cards("s3://b/iris")).reason == "ArtifactReadBusy"
    assert cards("s3://b/iris").sha256 == SHA_A  # read again at once, and kept


def test_the_pool_shares_a_pending_read_and_reads_again_once_it_finished() -> None:
    release = threading.Event()
    count = []

    def read() -> bytes:
        count.append(1)
        release.wait(30)
        return b"x"

    pool = CardPool(workers=2, queue_size=4)
    try:
        futures = [pool.submit("k", read) for _ in range(5)]
        assert all(f is futures[0] for f in futures)
        release.set()
        assert futures[0].result(timeout=30) == b"x"
        assert pool.submit("k", read).result(timeout=30) == b"x"
        assert len(count) == 2
    finally:
        release.set()
        pool.shutdown()
