"""The operator's model-card reads are no proxy into the cluster and cannot be exhausted.

Every test runs the operator's real reader (cardfetch.CardPolicy, cards.CardReader/CardPool)
against real HTTP servers on 127.0.0.1: a fake metadata endpoint, redirectors, a server of
600 MiB cards, tarpits. Nothing here connects anywhere but loopback: link-local and metadata
addresses are reached through a resolver stub, and the test proves no connection is attempted.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from devcluster.waiting import wait_until
from mlmodel_operator import cardfetch
from mlmodel_operator.cardfetch import (
    CardPolicy,
    CardReadError,
    Lookups,
    S3Endpoint,
    Url,
    parse_sources,
    source_for,
)
from mlmodel_operator.cards import CardPool, CardReader, resolve_model
from mlmodel_operator.resource import MLModel

SHA = "c" * 64
TOKEN = "operator-secret-token"
MIB = 1 << 20

# --- real servers on loopback -----------------------------------------------------------

Handler = http.server.BaseHTTPRequestHandler
Route = Callable[[Handler], None]


@dataclass
class Server:
    """A threaded HTTP server on 127.0.0.1; `routes` maps a path to what it does."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    httpd: http.server.ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def serve(host: str = "127.0.0.1") -> Iterator[Server]:
    state = Server()

    class _Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers.items())))
            route = state.routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404, "nothing here: SECRET-404-BODY")
                return
            # the reader hanging up (cap or deadline) is what the tests want
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                route(self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    kind = _Server6 if ":" in host else http.server.ThreadingHTTPServer
    httpd = kind((host, 0), _Handler)
    httpd.daemon_threads = True
    state.httpd = httpd
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()


server = pytest.fixture(serve)
other_server = pytest.fixture(serve)


@pytest.fixture
def server6() -> Iterator[Server]:
    yield from serve("::1")


def card_bytes(sha: str = SHA) -> bytes:
    """A valid model card (the real contract's schema) naming `sha`."""
    card = {
        "name": "iris",
        "task": "classification",
        "estimator": "DecisionTreeClassifier",
        "params": {},
        "feature_names": ["a", "b"],
        "class_labels": [0, 1],
        "metrics": {"accuracy": 1.0},
        "training": {
            "dataset": "iris",
            "test_size": 0.2,
            "seed": 0,
            "n_train": 1,
            "n_test": 1,
            "data_fingerprint": "0" * 64,
        },
        "sample": {"inputs": [[1.0, 2.0]], "outputs": [0]},
        "format": "skops",
        "sha256": sha,
        "files": {"skops": {"file": "model.skops", "sha256": sha, "size": 1}},
        "library_versions": {},
        "created_at": "2026-01-01T00:00:00Z",
    }
    return json.dumps(card).encode()


def body(content: bytes, status: int = 200) -> Route:
    def route(h: Handler) -> None:
        h.send_response(status)
        h.send_header("Content-Length", str(len(content)))
        h.end_headers()
        h.wfile.write(content)

    return route


def redirect(location: str) -> Route:
    def route(h: Handler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def endless(state: Server, announce: int | None = None) -> Route:
    """A 600 MiB card: streamed in 64 KiB blocks (one block object, so the server stays small)."""
    block = b" " * 65536

    def route(h: Handler) -> None:
        h.send_response(200)
        if announce is not None:
            h.send_header("Content-Length", str(announce))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(b"{")
        for _ in range(600 * MIB // len(block)):
            h.wfile.write(block)
            state.sent += len(block)

    return route


def tarpit(state: Server, every: float, headers_first: bool = True) -> Route:
    """One byte every `every` seconds, for good: each byte comes before any per-read timeout."""

    def route(h: Handler) -> None:
        if headers_first:
            h.send_response(200)
            h.send_header("Content-Length", "1000000")
            h.end_headers()
            h.wfile.flush()
            trickle = b"{" + b" " * 999_999
        else:
            trickle = b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 60_000
        for byte in trickle:
            if state.stop.wait(every):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()

    return route


def blocking(release: threading.Event, content: bytes) -> Route:
    def route(h: Handler) -> None:
        release.wait(30)
        body(content)(h)

    return route


def policy(*sources: str, credentials: tuple[str, ...] = (), **kwargs: Any) -> CardPolicy:
    return CardPolicy(
        sources=parse_sources(sources),
        credential_sources=parse_sources(credentials),
        token=lambda: TOKEN,
        **kwargs,
    )


def refused(read: Callable[[], object]) -> CardReadError:
    with pytest.raises(CardReadError) as caught:
        read()
    return caught.value


def mlmodel(uri: str) -> MLModel:
    return MLModel.from_body(
        {
            "metadata": {"name": "iris", "namespace": "models", "uid": "u1"},
            "spec": {"model": {"uri": uri}},
        }
    )


def no_connect(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any connection attempt by the reader a test failure (and record it)."""
    attempts: list[str] = []

    def connect(self: Any) -> None:
        attempts.append(self.address)
        raise AssertionError(f"the reader connected to {self.address}")

    monkeypatch.setattr(cardfetch._PinnedHTTP, "connect", connect)
    return attempts


def stub_resolver(mapping: dict[str, str]) -> Callable[[str, int], list[str]]:
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return [mapping[host]]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


# --- the metadata endpoint and the operator's token -------------------------------------


METADATA_PATH = "/latest/meta-data/iam/security-credentials/role"


@pytest.mark.parametrize("suffix", ["#", "?", "", "/"])
def test_the_metadata_attack_on_loopback_is_refused_and_the_endpoint_sees_nothing(
    server: Server, suffix: str
) -> None:
    server.routes[METADATA_PATH] = body(b'{"AccessKeyId": "AKIA-SECRET"}')
    uri = f"{server.base}{METADATA_PATH}{suffix}"
    # the default sources, and an admin who allowed plain http to anywhere: neither reaches it
    for reader in (policy("https://", "s3://"), policy("http://", "https://")):
        error = refused(lambda r=reader: r.read(uri))  # type: ignore[misc]
        assert error.reason in ("InvalidURI", "ArtifactSourceNotAllowed", "ArtifactUnreachable")
    assert server.requests == []


def test_loopback_is_read_only_through_a_source_that_names_it(server: Server) -> None:
    server.routes["/iris/model-card.json"] = body(card_bytes())
    unnamed = refused(lambda: policy("http://").read(f"{server.base}/iris"))
    assert unnamed.reason == "ArtifactUnreachable"
    assert "no source names this host" in unnamed.detail
    assert server.requests == []
    assert policy(f"{server.base}/").read(f"{server.base}/iris") == card_bytes()
    assert server.paths() == ["/iris/model-card.json"]


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fd00:ec2::254", "fe80::1", "::ffff:169.254.169.254"]
)
def test_link_local_and_metadata_addresses_are_never_read_even_when_listed(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    attempts = no_connect(monkeypatch)
    resolver = stub_resolver({"models.internal.test": address})
    reader = policy("http://models.internal.test/", resolver=resolver)
    error = refused(lambda: reader.read("http://models.internal.test/iris"))
    assert error.reason == "ArtifactUnreachable"
    assert "link-local, metadata or reserved" in error.detail
    assert resolver.calls == ["models.internal.test"]  # type: ignore[attr-defined]
    assert attempts == []


def test_metadata_host_names_are_refused_before_any_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = no_connect(monkeypatch)
    resolver = stub_resolver({})
    reader = policy("http://metadata.google.internal/", resolver=resolver)
    assert refused(lambda: reader.read("http://metadata.google.internal/x")).reason == (
        "ArtifactUnreachable"
    )
    assert resolver.calls == [] and attempts == []  # type: ignore[attr-defined]


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(
    server: Server,
) -> None:
    """DNS rebinding: the name is resolved once; a second answer (here: the metadata address)
    is never asked for, so it cannot be used."""
    server.routes["/iris/model-card.json"] = body(card_bytes())
    answers = iter(["127.0.0.1", "169.254.169.254"])
    looked_up: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return [next(answers)]

    port = server.base.rsplit(":", 1)[1]
    reader = policy(f"http://cards.test:{port}/", resolver=rebinding)
    assert reader.read(f"http://cards.test:{port}/iris") == card_bytes()
    assert looked_up == ["cards.test"]
    assert server.requests[0][1]["Host"] == f"cards.test:{port}"


def test_ipv6_loopback_is_read_only_through_a_source_that_names_it(server6: Server) -> None:
    server6.routes["/iris/model-card.json"] = body(card_bytes())
    assert refused(lambda: policy("http://").read(f"{server6.base}/iris")).reason == (
        "ArtifactUnreachable"
    )
    assert policy(f"{server6.base}/").read(f"{server6.base}/iris") == card_bytes()
    assert server6.requests[0][1]["Host"] == server6.base.removeprefix("http://")


def test_the_token_goes_only_to_sources_listed_for_credentials(server: Server) -> None:
    server.routes["/iris/model-card.json"] = body(card_bytes())
    policy(f"{server.base}/").read(f"{server.base}/iris")
    policy(f"{server.base}/", credentials=(f"{server.base}/other/",)).read(f"{server.base}/iris")
    assert all("Authorization" not in headers for _, headers in server.requests)
    policy(f"{server.base}/", credentials=(f"{server.base}/",)).read(f"{server.base}/iris")
    assert server.requests[-1][1]["Authorization"] == f"Bearer {TOKEN}"


def test_a_redirect_does_not_carry_the_token_to_a_source_not_listed_for_it(
    server: Server, other_server: Server
) -> None:
    server.routes["/iris/model-card.json"] = redirect(f"{other_server.base}/cdn/card.json")
    other_server.routes["/cdn/card.json"] = body(card_bytes())
    reader = policy(f"{server.base}/", f"{other_server.base}/", credentials=(f"{server.base}/",))
    assert reader.read(f"{server.base}/iris") == card_bytes()
    assert server.requests[0][1]["Authorization"] == f"Bearer {TOKEN}"
    assert "Authorization" not in other_server.requests[0][1]


# --- redirects --------------------------------------------------------------------------


def test_a_redirect_to_an_unlisted_loopback_port_is_refused_unfetched(
    server: Server, other_server: Server
) -> None:
    other_server.routes[METADATA_PATH] = body(b"secret")
    server.routes["/iris/model-card.json"] = redirect(f"{other_server.base}{METADATA_PATH}")
    error = refused(lambda: policy(f"{server.base}/").read(f"{server.base}/iris"))
    assert (error.reason, error.public) == (
        "ArtifactUnreachable",
        "the model card could not be read",
    )
    assert "redirect" in error.detail
    assert other_server.requests == []


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.test/latest/meta-data/",
    ],
)
def test_a_redirect_to_link_local_or_metadata_is_refused_without_connecting(
    server: Server, monkeypatch: pytest.MonkeyPatch, location: str
) -> None:
    server.routes["/iris/model-card.json"] = redirect(location)
    # an admin who listed plain http to anywhere still never reaches these
    port = int(server.base.rsplit(":", 1)[1])
    resolver = stub_resolver(
        {
            "cards.test": "127.0.0.1",
            "169.254.169.254": "169.254.169.254",
            "fd00:ec2::254": "fd00:ec2::254",
            "metadata.test": "169.254.169.254",
        }
    )
    reader = policy(f"http://cards.test:{port}/", "http://", resolver=resolver)
    connected: list[str] = []
    real_connect = cardfetch._PinnedHTTP.connect

    def spy(self: Any) -> None:
        connected.append(self.address)
        if self.address != "127.0.0.1":
            raise AssertionError(f"connected to {self.address}")
        real_connect(self)

    monkeypatch.setattr(cardfetch._PinnedHTTP, "connect", spy)
    error = refused(lambda: reader.read(f"http://cards.test:{port}/iris"))
    assert error.reason == "ArtifactUnreachable"
    assert "link-local, metadata or reserved" in error.detail
    assert connected == ["127.0.0.1"]


def test_redirects_are_followed_at_most_three_times(server: Server) -> None:
    for hop in range(5):
        server.routes[f"/hop{hop}"] = redirect(f"/hop{hop + 1}")
    server.routes["/iris/model-card.json"] = redirect("/hop0")
    error = refused(lambda: policy(f"{server.base}/").read(f"{server.base}/iris"))
    assert "more than 3 redirects" in error.detail
    assert len(server.requests) == 4


# --- prefixes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("https://good.example.com/artifacts/iris", True),
        ("https://GOOD.example.com./artifacts/iris", True),
        ("https://good.example.com:443/artifacts/iris", True),
        ("https://good.example.com/artifacts", True),
        ("https://good.example.com/artifactsevil/iris", False),
        ("https://good.example.com/other/iris", False),
        ("https://good.example.com.evil.net/artifacts/iris", False),
        ("https://evil.net/good.example.com/artifacts/iris", False),
        ("https://good.example.com:8443/artifacts/iris", False),
        ("http://good.example.com/artifacts/iris", False),
        ("s3://models/iris", True),
        ("s3://models-evil/iris", False),
        ("s3://other/models/iris", False),
    ],
)
def test_sources_match_on_scheme_host_port_and_whole_path_segments(uri: str, allowed: bool) -> None:
    sources = parse_sources(["https://good.example.com/artifacts/", "s3://models/"])
    assert (source_for(Url.parse(uri), sources) is not None) is allowed


@pytest.mark.parametrize(
    "uri",
    [
        "https://good.example.com@evil.net/artifacts/iris",
        "https://user:pw@good.example.com/artifacts/iris",
        "https://good.example.com/artifacts/iris?x=1",
        "https://good.example.com/artifacts/iris#",
        "https://good.example.com/artifacts/../../evil",
        "https://good.example.com/artifacts/%2e%2e/evil",
        "https://good.example.com/artifacts/..%2fevil",
        "https://good.example.com/artifacts/..;/evil",  # Tomcat and Spring read '..;' as '..'
        "https://good.example.com/artifacts/..;jsessionid=x/evil",
        "https://good.example.com/artifacts/%2e%2e%3b/evil",
        "https://good.example.com/artifacts/.;x/iris",
        "https://good.example.com\\@evil.net/artifacts/",
        "https://good.example.com/artifacts/ir is",
        "ftp://good.example.com/artifacts/iris",
        "s3://Bad_Bucket/iris",
    ],
)
def test_ambiguous_uris_are_refused_as_invalid(uri: str) -> None:
    reader = policy("https://good.example.com/artifacts/", "https://", "s3://")
    assert refused(lambda: reader.read(uri)).reason == "InvalidURI"


# --- size, deadline, pool ---------------------------------------------------------------


def test_a_600_mib_card_is_cut_at_1_mib_while_streaming_with_little_memory(
    server: Server,
) -> None:
    server.routes["/big/model-card.json"] = endless(server)
    reader = policy(f"{server.base}/", max_bytes=MIB)
    tracemalloc.start()
    try:
        error = refused(lambda: reader.read(f"{server.base}/big"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.reason == "ArtifactUnreachable"
    assert f"more than {MIB} bytes" in error.detail
    assert peak < 4 * MIB, f"reading a capped card allocated {peak / MIB:.1f} MiB"
    assert server.sent < 64 * MIB  # the server was cut off, not drained


def test_an_announced_600_mib_card_is_refused_before_its_body(server: Server) -> None:
    server.routes["/big/model-card.json"] = endless(server, announce=600 * MIB)
    error = refused(lambda: policy(f"{server.base}/", max_bytes=MIB).read(f"{server.base}/big"))
    assert f"{600 * MIB} bytes announced" in error.detail


@pytest.mark.parametrize("headers_first", [True, False], ids=["body", "headers"])
def test_a_tarpit_fails_at_the_deadline_and_frees_its_thread(
    server: Server, headers_first: bool
) -> None:
    server.routes["/slow/model-card.json"] = tarpit(server, every=0.2, headers_first=headers_first)
    server.routes["/good/model-card.json"] = body(card_bytes())
    reader = policy(f"{server.base}/", timeout=1.5)
    pool = CardPool(workers=1, queue_size=4)  # one thread: the good read needs it back
    try:
        slow = pool.submit("slow", lambda: reader.read(f"{server.base}/slow"))
        good = pool.submit("good", lambda: reader.read(f"{server.base}/good"))
        with pytest.raises(CardReadError) as caught:
            slow.result(timeout=30)
        assert caught.value.reason == "ArtifactUnreachable"
        assert "deadline" in caught.value.detail
        assert good.result(timeout=30) == card_bytes()
    finally:
        pool.shutdown()


def test_a_name_server_that_never_answers_fails_the_read_at_its_deadline_and_frees_the_thread(
    server: Server,
) -> None:
    """getaddrinfo cannot be interrupted: the read stops waiting for it at the deadline."""
    server.routes["/good/model-card.json"] = body(card_bytes())
    release, finished = threading.Event(), threading.Event()

    def silent(host: str, port: int) -> list[str]:  # a name server that does not answer
        try:
            release.wait(30)
            raise OSError("the resolver gave up")
        finally:
            finished.set()

    reader = policy(
        "http://cards.test/", f"{server.base}/", resolver=silent, timeout=0.5, lookups=Lookups(4)
    )
    pool = CardPool(workers=1, queue_size=4)  # one thread: the good read needs it back
    try:
        slow = pool.submit("slow", lambda: reader.read("http://cards.test/iris"))
        good = pool.submit("good", lambda: reader.read(f"{server.base}/good"))
        error = refused(lambda: slow.result(timeout=60))
        assert (error.reason, error.public) == (
            "ArtifactUnreachable",
            "the model card could not be read",
        )
        assert "lookup of cards.test did not finish" in error.detail
        assert good.result(timeout=60) == card_bytes()
        assert not finished.is_set(), "the thread was freed only when the lookup ended"
    finally:
        release.set()
        pool.shutdown()


def test_abandoned_lookups_are_bounded_and_a_full_bound_fails_at_once(server: Server) -> None:
    """A slow name server cannot pile up lookup threads: past the bound, reads fail as busy
    without starting another lookup, and room comes back as the abandoned lookups end."""
    release = threading.Event()
    looked_up: list[str] = []

    def silent(host: str, port: int) -> list[str]:
        looked_up.append(host)
        release.wait(30)
        raise OSError("the resolver gave up")

    lookups = Lookups(limit=2)
    reader = policy("http://", resolver=silent, timeout=0.3, lookups=lookups)
    try:
        for name in ("a", "b"):
            error = refused(lambda n=name: reader.read(f"http://{n}.test/iris"))  # type: ignore[misc]
            assert error.reason == "ArtifactUnreachable"
            assert "did not finish" in error.detail
        assert lookups.outstanding() == 2
        busy = refused(lambda: reader.read("http://c.test/iris"))
        assert busy.reason == "ArtifactReadBusy"
        assert looked_up == ["a.test", "b.test"]  # no third lookup thread was started
        release.set()
        # the abandoned lookups end when the resolver gives up
        wait_until("the abandoned lookups to end", lambda: lookups.outstanding() == 0, 30, 0.01)
        error = refused(lambda: reader.read("http://c.test/iris"))
        assert (error.reason, looked_up[-1]) == ("ArtifactUnreachable", "c.test")
        assert "did not resolve" in error.detail
    finally:
        release.set()


def test_other_cards_are_read_while_several_tarpits_are_active(server: Server) -> None:
    for index in range(3):
        server.routes[f"/slow{index}/model-card.json"] = tarpit(server, every=0.2)
    for index in range(6):
        server.routes[f"/good{index}/model-card.json"] = body(card_bytes(f"{index:x}" * 64))
    reader = policy(f"{server.base}/", timeout=5.0)
    pool = CardPool(workers=4, queue_size=16)
    cards = CardReader(reader.read, pool, ttl=60, wait=10, check=reader.check)
    try:
        slow = [
            pool.submit(f"{server.base}/slow{i}", lambda i=i: reader.read(f"{server.base}/slow{i}"))
            for i in range(3)
        ]
        for index in range(6):
            assert cards(f"{server.base}/good{index}").sha256 == f"{index:x}" * 64
        assert not any(future.done() for future in slow), "the tarpits were still trickling"
        for future in slow:
            with pytest.raises(CardReadError, match="deadline"):
                future.result(timeout=30)
        # every thread is back: four more reads run at once and finish
        for index in range(4):
            server.routes[f"/after{index}/model-card.json"] = body(card_bytes())
        after = [
            pool.submit(f"a{i}", lambda i=i: reader.read(f"{server.base}/after{i}"))
            for i in range(4)
        ]
        assert [f.result(timeout=30) for f in after] == [card_bytes()] * 4
    finally:
        pool.shutdown()


def test_concurrent_reads_of_one_card_make_one_request(server: Server) -> None:
    release = threading.Event()
    server.routes["/iris/model-card.json"] = blocking(release, card_bytes())
    reader = policy(f"{server.base}/")
    pool = CardPool(workers=4, queue_size=16)
    joined = threading.Semaphore(0)

    class Counting(CardReader):
        def _entry(self, uri: str) -> Any:
            found = super()._entry(uri)
            joined.release()  # this caller now holds the entry it will wait on
            return found

    # ttl 0: nothing is served from memory, so one request means the reads were shared
    cards = Counting(reader.read, pool, ttl=0, wait=30, check=reader.check)
    uri = f"{server.base}/iris"
    try:
        with ThreadPoolExecutor(8) as callers:
            results = [callers.submit(cards, uri) for _ in range(8)]
            for _ in range(8):
                assert joined.acquire(timeout=30)
            release.set()
            assert [r.result(timeout=30).sha256 for r in results] == [SHA] * 8
    finally:
        release.set()
        pool.shutdown()
    assert server.paths() == ["/iris/model-card.json"]


def test_a_full_queue_answers_busy_at_once_instead_of_waiting(server: Server) -> None:
    release = threading.Event()
    for index in range(4):
        server.routes[f"/m{index}/model-card.json"] = blocking(release, card_bytes())
    reader = policy(f"{server.base}/")
    pool = CardPool(workers=1, queue_size=2)
    try:
        running = pool.submit("m0", lambda: reader.read(f"{server.base}/m0"))
        wait_until("the first read to reach the server", lambda: server.requests, 30, 0.01)
        queued = [
            pool.submit(f"m{i}", lambda i=i: reader.read(f"{server.base}/m{i}")) for i in (1, 2)
        ]
        busy = refused(lambda: pool.submit("m3", lambda: reader.read(f"{server.base}/m3")))
        assert busy.reason == "ArtifactReadBusy"
        assert "retried later" in busy.public
        release.set()
        assert [f.result(timeout=30) for f in [running, *queued]] == [card_bytes()] * 3
    finally:
        release.set()
        pool.shutdown()
    assert "/m3/model-card.json" not in server.paths()


# --- S3 ---------------------------------------------------------------------------------


def test_s3_cards_are_read_unsigned_unless_listed_for_credentials(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOPERATOR")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server.routes["/models/iris/v1/model-card.json"] = body(card_bytes())
    endpoint = S3Endpoint("us-east-1", Url.parse(f"{server.base}/"))
    anonymous = policy("s3://models/", s3=endpoint)
    assert anonymous.read("s3://models/iris/v1") == card_bytes()
    assert "Authorization" not in server.requests[-1][1]
    signed = policy("s3://models/", credentials=("s3://models/iris/",), s3=endpoint)
    assert signed.read("s3://models/iris/v1") == card_bytes()
    assert server.requests[-1][1]["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIA")


ANONYMOUS_S3 = """
import http.server, sys, threading
from mlmodel_operator.cardfetch import CardPolicy, S3Endpoint, Url, parse_sources

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *a): pass

httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
endpoint = S3Endpoint("us-east-1", Url.parse(f"http://127.0.0.1:{httpd.server_address[1]}/"))
CardPolicy(sources=parse_sources(["s3://"]), s3=endpoint).read("s3://models/iris")
print(",".join(m for m in ("botocore", "boto3") if m in sys.modules))
"""


def test_an_anonymous_s3_read_never_loads_the_aws_credential_chain() -> None:
    """No botocore, so nothing can ask the node's metadata service for credentials."""
    loaded = subprocess.run(
        [sys.executable, "-c", ANONYMOUS_S3], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_s3_object_urls_keep_the_bucket_out_of_other_hosts() -> None:
    aws = S3Endpoint("eu-west-1", None)
    url, named = aws.object_url("models", "iris/model-card.json")
    assert (str(url), named) == (
        "https://models.s3.eu-west-1.amazonaws.com:443/iris/model-card.json",
        False,
    )
    dotted, _ = aws.object_url("my.models", "k")
    assert (dotted.host, dotted.path) == ("s3.eu-west-1.amazonaws.com", "/my.models/k")


# --- what status says -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (body(b"root:x:0:0:SECRET-BODY", status=500), "ArtifactUnreachable"),
        (body(b"SECRET-BODY not json"), "InvalidModelCard"),
        (redirect("http://127.0.0.1:1/SECRET-PATH"), "ArtifactUnreachable"),
        (None, "ArtifactNotFound"),
    ],
)
def test_status_names_the_reason_never_the_upstream_answer(
    server: Server, route: Route | None, reason: str
) -> None:
    if route is not None:
        server.routes["/iris/model-card.json"] = route
    reader = policy(f"{server.base}/")
    cards = CardReader(reader.read, CardPool(1, 4), ttl=60, wait=10, check=reader.check)
    problem = resolve_model(mlmodel(f"{server.base}/iris"), cards).problem
    assert problem is not None and problem.reason == reason
    for leak in ("SECRET", "500", "404", "302", "HTTP", "Errno", "refused", "127.0.0.1:1"):
        assert leak not in problem.message.replace(server.base, "<uri>"), problem.message


def test_a_closed_port_and_a_tarpit_read_the_same_in_status(server: Server) -> None:
    """A scanner learns nothing from status: refused, timed out and 5xx all read alike."""
    server.routes["/slow/model-card.json"] = tarpit(server, every=0.2)
    server.routes["/err/model-card.json"] = body(b"x", status=503)
    closed = "http://127.0.0.1:1"
    reader = policy(f"{server.base}/", f"{closed}/", timeout=1.0)
    cards = CardReader(reader.read, CardPool(3, 4), ttl=60, wait=10, check=reader.check)
    messages = set()
    for uri in (f"{server.base}/slow", f"{server.base}/err", f"{closed}/slow"):
        problem = resolve_model(mlmodel(uri), cards).problem
        assert problem is not None and problem.reason == "ArtifactUnreachable"
        messages.add(problem.message.replace(uri, "<uri>"))
    assert len(messages) == 1, messages
