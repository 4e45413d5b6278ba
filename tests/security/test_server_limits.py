"""Slow, many, idle and huge requests against the real model server (`python -m model_server`).

Raw sockets on loopback play the clients a liveness probe must survive: one that trickles its
body, more half-sent bodies than the server takes at once, a client that leaves mid-body, the
largest allowed batches all at once, many connections that send nothing, and ones that send or
trickle only part of their headers. The limits are set low so each is cheap to reach.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from iris_server import ROW, run_server, train_iris
from prometheus_client.parser import text_string_to_metric_families
from server_process import Server

from devcluster.waiting import wait_until
from mlmodel_artifact import ModelCard
from model_server.settings import LIVENESS_PATH, READINESS_PATH

MAX_CONNECTIONS = 4
BODY_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 1.0
BIG_ROWS = 50_000  # the largest batch the batch server allows (MAX_ROWS)
BATCHES = 8
SOCKET_TIMEOUT_S = 30.0  # how long a test waits for any one answer before failing
TRICKLE_BYTES = 100  # at most this many bytes are trickled before the server must answer
TRICKLE_GAP_S = 0.1  # between trickled bytes: far under every timeout, so only a deadline trips
# Trickled header bytes, at most: time enough for the 5 s keep-alive deadline, many times over.
HEADER_TRICKLE_BYTES = 300
OVERSIZED_HEADER = 1024 * 1024  # bytes of one header value: many reads, most over the limit
# Idle sockets held open: more than uvicorn's old connection cap (32 in flight + 32) allowed.
IDLE_SOCKETS = 100


@dataclass(frozen=True)
class Answer:
    """One HTTP response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelCard]:
    """The iris forest artifact's directory and its card, trained once for the module."""
    out = tmp_path_factory.mktemp("limits-artifact") / "artifact"
    return out, train_iris(out)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, artifact: tuple[Path, ModelCard]
) -> Iterator[Server]:
    """A server that takes 4 prediction requests at once, 1 s to send a body or headers."""
    yield from run_server(
        tmp_path_factory.mktemp("limits"),
        *artifact,
        MODEL_SERVER_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        MODEL_SERVER_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_S),
        MODEL_SERVER_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT_S),
    )


@pytest.fixture(scope="module")
def batch_server(
    tmp_path_factory: pytest.TempPathFactory, artifact: tuple[Path, ModelCard]
) -> Iterator[Server]:
    """A server with the default limits, whose largest allowed batch takes a while to predict."""
    yield from run_server(
        tmp_path_factory.mktemp("batches"), *artifact, MODEL_SERVER_MAX_ROWS=str(BIG_ROWS)
    )


def connect(server: Server) -> socket.socket:
    """A fresh TCP connection to the server."""
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=SOCKET_TIMEOUT_S)


def send_request(
    server: Server, path: str, body: bytes, *, declared: int | None = None, method: str = "POST"
) -> socket.socket:
    """Send headers declaring `declared` body bytes (default: all of them), then `body`."""
    sock = connect(server)
    length = len(body) if declared is None else declared
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def read_answer(sock: socket.socket) -> Answer:
    """Read one response (headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed the connection (reads end) without sending anything.

    False if it sends a byte or keeps the connection open for SOCKET_TIMEOUT_S.
    """
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def trickle_headers(sock: socket.socket, path: str) -> None:
    """Send a request line and then a header one byte at a time, until the server reacts.

    Stops once the socket is readable (an answer or the server's close) or after
    HEADER_TRICKLE_BYTES bytes; the headers are never complete.
    """
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: test\r\nx-slow: ".encode())
    for _ in range(HEADER_TRICKLE_BYTES):
        readable, _, _ = select.select([sock], [], [], TRICKLE_GAP_S)
        if readable:
            return
        try:
            sock.sendall(b"a")
        except (BrokenPipeError, ConnectionResetError):
            return


def get(server: Server, path: str) -> Answer:
    """One GET on a fresh connection."""
    with send_request(server, path, b"", method="GET") as sock:
        return read_answer(sock)


def predict_ok(server: Server) -> bool:
    """A normal one-row prediction is answered 200."""
    body = b'{"input": [%s]}' % ",".join(map(str, ROW)).encode()
    with send_request(server, "/predict", body) as sock:
        return read_answer(sock).status == 200


def metric(server: Server, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    text = get(server, "/metrics").body.decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return 0.0


def test_a_trickled_body_gets_408_and_its_connection_closed(server: Server) -> None:
    sock = send_request(server, "/predict", b'{"inputs": [', declared=10_000)
    with sock:
        # One byte at a time, never enough for any per-read timeout to trip.
        for _ in range(TRICKLE_BYTES):
            readable, _, _ = select.select([sock], [], [], TRICKLE_GAP_S)
            if readable:
                break
            sock.sendall(b" ")
        answer = read_answer(sock)
        assert answer.status == 408
        assert answer.headers["connection"] == "close"
        assert b"MODEL_SERVER_BODY_TIMEOUT_SECONDS" in answer.body
        assert answer.body.startswith(b'{"error":')
        assert closed_by_server(sock)
    assert predict_ok(server)


def test_half_sent_bodies_beyond_the_limit_are_refused_while_health_answers(
    server: Server,
) -> None:
    held = [
        send_request(server, "/predict", b'{"inputs": [', declared=1_000_000)
        for _ in range(MAX_CONNECTIONS)
    ]
    try:
        # A round trip on the loop: the held requests' headers have been read by now.
        assert get(server, LIVENESS_PATH).status == 200
        with send_request(server, "/predict", b'{"input": [1, 2, 3, 4]}') as extra:
            refused = read_answer(extra)
        assert refused.status == 503
        assert refused.headers["retry-after"] == "1"
        assert b"MODEL_SERVER_MAX_CONNECTIONS" in refused.body
        assert get(server, LIVENESS_PATH).status == 200
        assert get(server, READINESS_PATH).status == 200
        assert get(server, "/metrics").status == 200
        for sock in held:  # the body deadline frees every slot
            assert read_answer(sock).status == 408
            assert closed_by_server(sock)
    finally:
        for sock in held:
            sock.close()
    assert predict_ok(server)


def test_a_client_that_leaves_mid_body_is_counted_as_499(server: Server) -> None:
    labels = {"protocol": "http", "route": "/predict", "method": "POST"}
    before = metric(server, "model_server_requests_total", status="499", **labels)
    errors_before = metric(server, "model_server_requests_total", status="500", **labels)
    sock = send_request(server, "/predict", b'{"inputs": [[1, 2', declared=1000)
    assert get(server, LIVENESS_PATH).status == 200  # the request has started
    sock.close()
    wait_until(  # the server notices the closed socket on its next loop turn
        "a 499 to be counted",
        lambda: metric(server, "model_server_requests_total", status="499", **labels) > before,
        5,
        0.05,
    )
    assert metric(server, "model_server_requests_total", status="499", **labels) == before + 1
    assert metric(server, "model_server_requests_total", status="500", **labels) == errors_before


def test_health_answers_while_the_largest_batches_are_in_flight(batch_server: Server) -> None:
    row = b"[" + ",".join(map(str, ROW)).encode() + b"]"
    body = b'{"inputs": [' + b",".join([row] * BIG_ROWS) + b"]}"
    finished: list[tuple[float, int]] = []
    lock = threading.Lock()

    def collect(sock: socket.socket) -> None:
        with sock:
            status = read_answer(sock).status
        with lock:
            finished.append((time.monotonic(), status))

    sockets = [send_request(batch_server, "/predict", body) for _ in range(BATCHES)]
    readers = [threading.Thread(target=collect, args=(sock,)) for sock in sockets]
    for reader in readers:
        reader.start()
    sent = time.monotonic()
    live = get(batch_server, LIVENESS_PATH)
    ready = get(batch_server, READINESS_PATH)
    health_done = time.monotonic()
    for reader in readers:
        reader.join(timeout=120)
    assert (live.status, ready.status) == (200, 200)
    assert [status for _, status in finished] == [200] * BATCHES
    # Before this change the batches were parsed on the event loop, so the probes waited for
    # (nearly) all of them; now at most a parse in progress delays them.
    done_before_health = sum(1 for when, _ in finished if when < health_done)
    assert done_before_health < BATCHES // 2, (done_before_health, health_done - sent)
    print(f"probes answered {1000 * (health_done - sent):.0f} ms after the batches were sent")


def test_idle_connections_leave_probes_and_predictions_answered(batch_server: Server) -> None:
    # Connections that send nothing: with the default settings uvicorn's limit_concurrency
    # (64) counted them, and from the 64th on answered every request 503, liveness included.
    idle = [connect(batch_server) for _ in range(IDLE_SOCKETS)]
    try:
        # Accepted in order: the idle connections are open by the time this request is read.
        assert get(batch_server, LIVENESS_PATH).status == 200
        assert get(batch_server, READINESS_PATH).status == 200
        assert predict_ok(batch_server)
    finally:
        for sock in idle:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    server: Server,
) -> None:
    with connect(server) as sock:
        assert closed_by_server(sock)
    assert get(server, LIVENESS_PATH).status == 200


def test_a_connection_that_trickles_its_headers_is_closed(server: Server) -> None:
    with connect(server) as sock:
        trickle_headers(sock, LIVENESS_PATH)
        assert closed_by_server(sock)
    assert get(server, LIVENESS_PATH).status == 200


def test_a_keep_alive_connection_that_trickles_its_next_headers_is_closed(
    server: Server,
) -> None:
    # uvicorn stops its keep-alive timer at the next request's first byte; the deadline runs
    # on until that request's headers are complete.
    with send_request(server, LIVENESS_PATH, b"", method="GET") as sock:
        assert read_answer(sock).status == 200
        trickle_headers(sock, LIVENESS_PATH)
        assert closed_by_server(sock)
    assert get(server, LIVENESS_PATH).status == 200


def test_oversized_headers_are_cut_off(server: Server) -> None:
    # httptools takes headers of any size (and copies a growing one on every read); complete
    # headers of 1 MiB would be answered, 200, without the limit.
    head = f"GET {LIVENESS_PATH} HTTP/1.1\r\nhost: test\r\nx-big: ".encode()
    with connect(server) as sock:
        # Closed while sending is what the test wants.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + b"a" * OVERSIZED_HEADER + b"\r\n\r\n")
        assert closed_by_server(sock)
    assert get(server, LIVENESS_PATH).status == 200


def test_a_keep_alive_connection_serves_requests_sent_in_time(server: Server) -> None:
    with send_request(server, LIVENESS_PATH, b"", method="GET") as sock:
        for _ in range(3):
            assert read_answer(sock).status == 200
            sock.sendall(
                f"GET {READINESS_PATH} HTTP/1.1\r\nhost: test\r\ncontent-length: 0\r\n\r\n".encode()
            )
        assert read_answer(sock).status == 200
