"""Which digest an MLModel rolls out: pinned, read from the card, or kept when unreadable."""

from __future__ import annotations

import threading

from operator_testlib import make_mlmodel, mlmodel_body

from mlmodel_artifact import ArtifactError
from mlmodel_operator.cards import CachedReader, resolve_digest
from mlmodel_operator.resource import MLModel

SHA_A, SHA_B = "a" * 64, "b" * 64


def reader_returning(digest: str):  # type: ignore[no-untyped-def]
    calls: list[tuple[str, str | None]] = []

    def read(uri: str, model_format: str | None) -> str:
        calls.append((uri, model_format))
        return digest

    return read, calls


def with_known_digest(spec: dict[str, object], digest: str) -> MLModel:
    body = mlmodel_body(spec)
    body["status"] = {"modelDigest": digest}
    return MLModel.from_body(body)


def test_pinned_sha256_is_used_without_reading_the_card() -> None:
    read, calls = reader_returning(SHA_B)
    mlmodel = make_mlmodel({"model": {"uri": "s3://b/iris", "sha256": SHA_A}})
    assert resolve_digest(mlmodel, read, timeout=5).digest == SHA_A
    assert calls == []


def test_pvc_artifacts_are_not_read_by_the_operator() -> None:
    read, calls = reader_returning(SHA_B)
    resolved = resolve_digest(make_mlmodel({"model": {"uri": "pvc://models/iris"}}), read, 5)
    assert (resolved.digest, resolved.problem, calls) == (None, None, [])


def test_card_digest_of_the_requested_format_is_used() -> None:
    read, calls = reader_returning(SHA_B)
    mlmodel = make_mlmodel({"model": {"uri": "https://h/iris", "format": "onnx"}})
    assert resolve_digest(mlmodel, read, timeout=5).digest == SHA_B
    assert calls == [("https://h/iris", "onnx")]


def test_unreadable_card_keeps_the_known_digest_and_says_why() -> None:
    def read(uri: str, model_format: str | None) -> str:
        raise ArtifactError(uri, "ArtifactNotFound", "no model-card.json")

    mlmodel = with_known_digest({"model": {"uri": "https://h/iris"}}, SHA_A)
    resolved = resolve_digest(mlmodel, read, timeout=5)
    assert resolved.digest == SHA_A
    assert resolved.problem is not None
    assert resolved.problem.reason == "ArtifactNotFound"
    assert resolved.problem.blocks_ready is False
    assert "spec.model.uri https://h/iris" in resolved.problem.message
    assert f"keep serving sha256 {SHA_A[:12]}" in resolved.problem.message


def test_a_card_read_that_hangs_is_cut_off_at_the_deadline() -> None:
    release = threading.Event()

    def read(uri: str, model_format: str | None) -> str:
        release.wait(10)
        return SHA_B

    try:
        resolved = resolve_digest(make_mlmodel({"model": {"uri": "https://h/iris"}}), read, 0.2)
    finally:
        release.set()
    assert resolved.digest is None
    assert resolved.problem is not None and resolved.problem.reason == "ArtifactUnreachable"


def test_cached_reader_reads_a_card_once_per_ttl_and_remembers_failures() -> None:
    now = [0.0]
    calls: list[str] = []

    def read(uri: str, model_format: str | None) -> str:
        calls.append(uri)
        if "broken" in uri:
            raise ArtifactError(uri, "ArtifactNotFound", "no card")
        return SHA_A

    cached = CachedReader(read, ttl=10.0, clock=lambda: now[0])
    assert cached("s3://b/iris", None) == SHA_A
    assert cached("s3://b/iris", None) == SHA_A
    for _ in range(2):
        try:
            cached("s3://b/broken", None)
        except ArtifactError as exc:
            assert exc.reason == "ArtifactNotFound"
        else:
            raise AssertionError("a remembered failure must raise again")
    assert calls == ["s3://b/iris", "s3://b/broken"]
    now[0] = 10.0
    assert cached("s3://b/iris", None) == SHA_A
    assert calls == ["s3://b/iris", "s3://b/broken", "s3://b/iris"]
