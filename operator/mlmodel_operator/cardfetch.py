"""The operator's model-card reads: only from listed sources, never into the cluster's insides.

A user names `spec.model.uri`; the operator reads `<uri>/model-card.json` from its own network
position. So every read here goes through these rules (docs/architecture.md, "Artifact tracking"):

- The URI must fall under a prefix of `MLOP_ARTIFACT_SOURCES`, matched on the parsed URI (scheme,
  host, port, whole path segments), and carry no user-info, query, fragment or dot segments.
- The host is resolved once; every address is checked and the connection goes to a checked
  address (a second lookup could answer differently: DNS rebinding). Link-local and metadata
  addresses are never read; loopback and private ones only when the matching source names the
  host (or it is the S3 endpoint the admin configured).
- Redirects are followed (at most three), each hop checked like the first. Credentials (the
  bearer token, AWS signing) go only to sources listed in `MLOP_CREDENTIAL_SOURCES`.
- One deadline per read, for everything (lookup, connect, TLS, headers, body): a watchdog shuts
  the socket down when it passes, so a server that trickles bytes cannot hold the thread. The
  name lookup (blocking `getaddrinfo`, which nothing can interrupt) runs on a lookup thread of
  `Lookups`, and the reader stops waiting for it at the deadline; at most a fixed number of
  lookups may be outstanding, so a name server that never answers cannot pile threads up (a
  read that finds them all taken fails at once as busy). The body is capped while streaming;
  no compression is asked for.
- Failures carry a fixed, public sentence (for status) and a detail for the operator's log only,
  so status never tells a user what answered, or how.

Standard library only (plus botocore, imported when an S3 card must be signed): the operator
imports this at start and must stay small.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import ipaddress
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urljoin, urlsplit

CARD_FILE: Final = "model-card.json"
TOKEN_ENV: Final = "MLMODEL_HTTP_TOKEN"
MAX_REDIRECTS: Final = 3
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
SCHEMES: Final = ("http", "https", "s3")
# S3 bucket names (the DNS-safe rules): the bucket may become part of a host name.
_BUCKET_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")

# Public sentences, one per reason: the only text about a failed read that reaches status.
# The operator's own read queue (or its lookups) had no room: not the artifact's fault, so
# nothing is Degraded for it (cards.py).
BUSY: Final = "ArtifactReadBusy"
PUBLIC: Final = {
    "InvalidURI": "the URI is not one the operator reads (it must have no user-info, query, "
    "fragment or '.'/'..' path segments)",
    "ArtifactSourceNotAllowed": "the operator does not read model cards from this source "
    "(it is not under a prefix of MLOP_ARTIFACT_SOURCES)",
    "ArtifactNotFound": "there is no model card at this URI",
    "ArtifactUnreachable": "the model card could not be read",
    BUSY: "too many model cards are being read right now; it is retried later",
    "InvalidModelCard": "the document at this URI is not a valid model card",
}

Resolver = Callable[[str, int], Sequence[str]]


class CardReadError(Exception):
    """A model card was not read. `reason` and `public` go to status; `detail` only to the log."""

    def __init__(self, reason: str, detail: str, public: str | None = None) -> None:
        self.reason = reason
        self.public = public or PUBLIC[reason]
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


# --- URIs and sources -------------------------------------------------------------------


@dataclass(frozen=True)
class Url:
    """A parsed, normalised http(s) or s3 URI (or source prefix).

    `host` is lower-case without a trailing dot ('' for a scheme-only prefix such as
    `https://`); `port` is the effective port (None for s3); `path` starts with '/'.
    """

    scheme: str
    host: str
    port: int | None
    path: str
    query: str = ""

    @classmethod
    def parse(cls, text: str, *, prefix: bool = False, allow_query: bool = False) -> Url:
        """Parse and normalise; raise CardReadError(InvalidURI) for anything ambiguous."""
        if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in text):
            raise CardReadError("InvalidURI", "blank, control character or backslash")
        if "#" in text or ("?" in text and not allow_query):
            raise CardReadError("InvalidURI", "a query or fragment")
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise CardReadError("InvalidURI", f"scheme {scheme!r} is not one of {SCHEMES}")
        if "@" in parts.netloc:
            raise CardReadError("InvalidURI", "user-info in the URI")
        host = (parts.hostname or "").rstrip(".")
        if not host.isascii():
            raise CardReadError("InvalidURI", "a non-ASCII host name")
        if not host and not (prefix and parts.netloc == "" and parts.path in ("", "/")):
            raise CardReadError("InvalidURI", "no host")
        try:
            explicit = parts.port
        except ValueError as exc:
            raise CardReadError("InvalidURI", "a bad port") from exc
        if scheme == "s3":
            if explicit is not None or (host and not _is_bucket(host)):
                raise CardReadError("InvalidURI", "not an S3 bucket name")
            port = None
        else:
            port = explicit if explicit is not None else DEFAULT_PORTS[scheme]
        path = _checked_path(parts.path or "/")
        return cls(scheme, host, port if host else None, path, parts.query)

    def with_path(self, path: str) -> Url:
        """The same origin with another path."""
        return Url(self.scheme, self.host, self.port, path)

    @property
    def origin(self) -> str:
        """scheme://host:port, for logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port else "")

    def __str__(self) -> str:
        return self.origin + self.path + (f"?{self.query}" if self.query else "")


def _is_bucket(name: str) -> bool:
    return 3 <= len(name) <= 63 and set(name) <= _BUCKET_CHARS and name[0] not in ".-"


def _checked_path(path: str) -> str:
    """The path, refused when a server could read it as another one ('..', encoded '/').

    A segment's ';' parameters are stripped before the check: Tomcat and Spring read `..;x`
    (and `..;`) as `..`, so `/a/..;/b` is refused like `/a/../b`.
    """
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered or "%00" in lowered:
        raise CardReadError("InvalidURI", "an encoded '/', '\\' or NUL in the path")
    segments = unquote(path).split("/")
    if any(segment.split(";", 1)[0] in (".", "..") for segment in segments):
        raise CardReadError("InvalidURI", "a '.' or '..' path segment")
    return path if path.startswith("/") else "/" + path


@dataclass(frozen=True)
class Source:
    """One prefix of MLOP_ARTIFACT_SOURCES / MLOP_CREDENTIAL_SOURCES."""

    url: Url

    @classmethod
    def parse(cls, text: str) -> Source:
        """Parse a prefix such as `https://`, `s3://models/team-a/` or `http://127.0.0.1:8080/`."""
        return cls(Url.parse(text.strip(), prefix=True))

    @property
    def names_host(self) -> bool:
        """Whether the admin named a host here (only then may it be a loopback/private one)."""
        return bool(self.url.host)

    def covers(self, url: Url) -> bool:
        """Same scheme, same host and port (if named), and the path under the prefix's segments."""
        if url.scheme != self.url.scheme:
            return False
        if not self.url.host:
            return True
        if (url.host, url.port) != (self.url.host, self.url.port):
            return False
        base = self.url.path if self.url.path.endswith("/") else self.url.path + "/"
        path = url.path if url.path.endswith("/") else url.path + "/"
        return path.startswith(base)


def parse_sources(texts: Sequence[str]) -> tuple[Source, ...]:
    """Parse prefixes (settings validation uses this, so a bad one stops the operator at start)."""
    return tuple(Source.parse(text) for text in texts if text.strip())


def source_for(url: Url, sources: Sequence[Source]) -> Source | None:
    """The most specific source covering `url` (a named host beats a scheme-only prefix)."""
    covering = [source for source in sources if source.covers(url)]
    return max(covering, key=lambda s: (s.names_host, len(s.url.path)), default=None)


# --- addresses --------------------------------------------------------------------------

_NETS = ipaddress.ip_network
# Never read, whatever the sources say: link-local (cloud metadata lives there), metadata
# services outside it, "this host", multicast, reserved and broadcast.
NEVER: Final = tuple(
    _NETS(net)
    for net in (
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.0/24",  # IETF protocol assignments (e.g. 192.0.0.192, some clouds' metadata)
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "240.0.0.0/4",
    )
)
# Read only when the matching source names the host: the operator's own host and the
# cluster's and data centre's private networks.
INTERNAL: Final = tuple(
    _NETS(net)
    for net in (
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "198.18.0.0/15",
        "fc00::/7",
        "fec0::/10",
    )
)
METADATA_HOSTS: Final = frozenset(
    {"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"}
)
_NAT64: Final = _NETS("64:ff9b::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), which is what is reached."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(address: str, host_named: bool) -> str | None:
    """Why the operator must not connect to `address` (None: it may)."""
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_v4(ip) or ip
    if any(ip in net for net in NEVER if net.version == ip.version):
        return f"{ip} is link-local, metadata or reserved"
    if not host_named and any(ip in net for net in INTERNAL if net.version == ip.version):
        return f"{ip} is loopback or private and no source names this host"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _literal(host: str) -> str | None:
    """The host itself when it is an IP address (no lookup needed), else None."""
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    return host


class Lookups:
    """Name lookups under the read deadline.

    `getaddrinfo` blocks and cannot be interrupted; a name server that never answers would hold
    the reader for the resolver's own timeouts (with Kubernetes' `ndots:5` and search domains,
    tens of seconds). Each lookup therefore runs on its own daemon thread and the reader waits
    only until its deadline; a lookup still running then is abandoned (its thread ends when the
    resolver gives up). At most `limit` lookups may be outstanding, abandoned ones included: a
    read that finds no room fails at once (ArtifactReadBusy) instead of starting another thread.
    """

    def __init__(self, limit: int = 16) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._outstanding = 0

    def outstanding(self) -> int:
        """Lookups started and not finished (abandoned ones included)."""
        with self._lock:
            return self._outstanding

    def resolve(self, resolver: Resolver, host: str, port: int, deadline: Deadline) -> list[str]:
        """`resolver(host, port)`, given up on (ArtifactUnreachable) when `deadline` passes."""
        wait = deadline.remaining()
        with self._lock:
            if self._outstanding >= self.limit:
                raise CardReadError(BUSY, f"{self._outstanding} lookups outstanding")
            self._outstanding += 1
        done = threading.Event()
        answer: list[list[str] | BaseException] = []

        def run() -> None:
            try:
                answer.append(list(resolver(host, port)))
            except BaseException as exc:  # handed to the reader, if it still waits
                answer.append(exc)
            finally:
                with self._lock:
                    self._outstanding -= 1
                done.set()

        threading.Thread(target=run, name="model-card-lookup", daemon=True).start()
        if not done.wait(wait):
            raise CardReadError(
                "ArtifactUnreachable", f"the lookup of {host} did not finish by the read deadline"
            )
        result = answer[0]
        if isinstance(result, BaseException):
            raise result
        return result


# --- the deadline -----------------------------------------------------------------------


class Deadline:
    """One read's deadline; when it passes, the socket in use is shut down under the reader."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self.finished = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left; raises CardReadError once none are."""
        left = self.at - time.monotonic()
        if left <= 0 or self.expired:
            raise CardReadError("ArtifactUnreachable", "the read deadline passed")
        return left

    def attach(self, sock: socket.socket) -> None:
        """Shut this socket down at the deadline (or now, if it already passed)."""
        with self._lock:
            self._sock = sock
            if self.expired:
                _shutdown(sock)

    def expire(self) -> None:
        """Called by the watchdog: unblock whatever read or write the reader is stuck in."""
        with self._lock:
            if self.finished:
                return
            self.expired = True
            if self._sock is not None:
                _shutdown(self._sock)

    def finish(self) -> None:
        """The read is over; the watchdog leaves its socket alone."""
        with self._lock:
            self.finished = True
            self._sock = None


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also on an SSLSocket: no TLS close_notify exchange with a
    # server that is not answering, just unblock the reader.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """One daemon thread that expires deadlines as they pass."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        """Expire `deadline` at its time unless it is finished by then."""
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._seq), deadline))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="model-card-deadline", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, deadline = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline.expire()


WATCHDOG: Final = Watchdog()
LOOKUPS: Final = Lookups()  # for readers that bring none (the operator's has its own)


# --- HTTP -------------------------------------------------------------------------------


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to one checked address; Host is still the URL's host."""

    def __init__(self, host: str, port: int, address: str, deadline: Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self.address = address
        self.deadline = deadline

    def connect(self) -> None:
        """Connect to the checked address, never to a fresh lookup of the host."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.address else socket.AF_INET)
        self.deadline.attach(sock)
        sock.settimeout(self.deadline.remaining())
        sock.connect((self.address, self.port))
        self.sock = sock


class _PinnedHTTPS(_PinnedHTTP):
    """HTTPS to one checked address; the certificate is verified against the URL's host."""

    default_port = 443

    def connect(self) -> None:
        """Connect, then a TLS handshake the deadline can also interrupt."""
        super().connect()
        context = ssl.create_default_context()
        tls = context.wrap_socket(
            self.sock, server_hostname=self.host, do_handshake_on_connect=False
        )
        self.deadline.attach(tls)
        tls.settimeout(self.deadline.remaining())
        tls.do_handshake()
        self.sock = tls


@dataclass(frozen=True)
class Hop:
    """One request: where, what may be reached there, which headers it carries."""

    url: Url
    host_named: bool
    headers: Mapping[str, str]


def fetch(
    first: Hop,
    next_hop: Callable[[Url], Hop],
    *,
    deadline: Deadline,
    max_bytes: int,
    resolver: Resolver = system_resolver,
    lookups: Lookups | None = None,
) -> bytes:
    """GET the card at `first`, following at most MAX_REDIRECTS redirects (each through
    `next_hop`, which applies the source rules); the body, at most `max_bytes` long. Host
    names are looked up through `lookups` (default: the module's), under the deadline."""
    hop = first
    for _ in range(MAX_REDIRECTS + 1):
        status, body_or_location = _get(hop, deadline, max_bytes, resolver, lookups or LOOKUPS)
        if status != "redirect":
            return body_or_location if isinstance(body_or_location, bytes) else b""
        target = urljoin(str(hop.url), str(body_or_location)).split("#")[0]
        try:
            hop = next_hop(Url.parse(target, allow_query=True))
        except CardReadError as exc:  # the user named no such URI: say unreachable, log why
            raise CardReadError("ArtifactUnreachable", f"redirect refused: {exc.detail}") from exc
    raise CardReadError("ArtifactUnreachable", f"more than {MAX_REDIRECTS} redirects")


def _get(
    hop: Hop, deadline: Deadline, max_bytes: int, resolver: Resolver, lookups: Lookups
) -> tuple[str, bytes | str]:
    url = hop.url
    assert url.port is not None
    if url.host in METADATA_HOSTS:
        raise CardReadError("ArtifactUnreachable", f"{url.host} is a metadata host name")
    deadline.remaining()
    try:
        literal = _literal(url.host)  # an IP address: nothing to look up
        if literal:
            addresses = [literal]
        else:
            addresses = lookups.resolve(resolver, url.host, url.port, deadline)
    except OSError as exc:
        raise CardReadError("ArtifactUnreachable", f"{url.host} did not resolve: {exc}") from exc
    for address in addresses:  # one bad address refuses the host: no picking around it
        if why := address_refusal(address, hop.host_named):
            raise CardReadError("ArtifactUnreachable", f"{url.origin}: {why}")
    if not addresses:
        raise CardReadError("ArtifactUnreachable", f"{url.host} has no address")
    last: Exception | None = None
    for address in addresses:
        kind = _PinnedHTTPS if url.scheme == "https" else _PinnedHTTP
        conn = kind(url.host, url.port, address, deadline)
        try:
            return _exchange(conn, hop, deadline, max_bytes)
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            if deadline.expired:
                break
        finally:
            conn.close()
    if deadline.expired:
        raise CardReadError("ArtifactUnreachable", f"{url.origin}: the read deadline passed")
    raise CardReadError("ArtifactUnreachable", f"{url.origin}: {last!r}")


def _exchange(
    conn: _PinnedHTTP, hop: Hop, deadline: Deadline, max_bytes: int
) -> tuple[str, bytes | str]:
    path = hop.url.path + (f"?{hop.url.query}" if hop.url.query else "")
    headers = {"Accept": "application/json", "User-Agent": "mlmodel-operator", **hop.headers}
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    status = response.status
    if status in (301, 302, 303, 307, 308):
        location = response.getheader("Location")
        if not location:
            raise CardReadError("ArtifactUnreachable", f"{hop.url}: HTTP {status} with no Location")
        return "redirect", location
    if status in (404, 410):
        raise CardReadError("ArtifactNotFound", f"{hop.url}: HTTP {status}")
    if status != 200:
        raise CardReadError("ArtifactUnreachable", f"{hop.url}: HTTP {status}")
    return "body", _read_capped(response, hop.url, deadline, max_bytes)


def _read_capped(
    response: http.client.HTTPResponse, url: Url, deadline: Deadline, max_bytes: int
) -> bytes:
    if (response.getheader("Content-Encoding") or "identity").lower() != "identity":
        raise CardReadError("ArtifactUnreachable", f"{url}: a compressed body was not asked for")
    if response.length is not None and response.length > max_bytes:
        raise CardReadError("ArtifactUnreachable", f"{url}: {response.length} bytes announced")
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read1(65536):  # read1: what has arrived, never waits for a full block
        size += len(chunk)
        if size > max_bytes:
            raise CardReadError("ArtifactUnreachable", f"{url}: more than {max_bytes} bytes")
        chunks.append(chunk)
    if deadline.expired:
        raise CardReadError("ArtifactUnreachable", f"{url}: the read deadline passed")
    if response.length is not None and response.length > 0:
        raise CardReadError("ArtifactUnreachable", f"{url}: the body was cut short")
    return b"".join(chunks)


# --- S3 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Endpoint:
    """Where s3:// cards are read: the admin's AWS_ENDPOINT_URL(_S3), else AWS's regional one."""

    region: str
    custom: Url | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> S3Endpoint:
        """Read the endpoint and region from the AWS environment variables."""
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        custom = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        return cls(region, Url.parse(custom.rstrip("/") + "/") if custom else None)

    def object_url(self, bucket: str, key: str) -> tuple[Url, bool]:
        """The object's https URL and whether its host was named by the admin.

        A custom endpoint is addressed path-style (MinIO, moto, in-cluster stores); AWS
        virtual-hosted, where the bucket name (checked to be DNS-safe) becomes a subdomain.
        """
        quoted = quote(key, safe="/~")
        if self.custom is not None:
            base = self.custom.path.rstrip("/")
            return self.custom.with_path(f"{base}/{bucket}/{quoted}"), True
        if "." in bucket:
            host, path = f"s3.{self.region}.amazonaws.com", f"/{bucket}/{quoted}"
        else:
            host, path = f"{bucket}.s3.{self.region}.amazonaws.com", f"/{quoted}"
        return Url("https", host, 443, path), False


def sign_s3(url: Url, region: str) -> dict[str, str]:
    """SigV4 headers for a GET of `url` with the operator's AWS credential chain."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import Session

    credentials = Session().get_credentials()
    if credentials is None:
        raise CardReadError("ArtifactUnreachable", "no AWS credentials for a signed S3 read")
    request = AWSRequest(method="GET", url=str(url))
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    return {key: str(value) for key, value in request.headers.items()}


# --- the policy -------------------------------------------------------------------------


@dataclass(frozen=True)
class CardPolicy:
    """What the operator may read, with which credentials, for how long and how much."""

    sources: tuple[Source, ...]
    credential_sources: tuple[Source, ...] = ()
    timeout: float = 10.0
    max_bytes: int = 1 << 20
    resolver: Resolver = system_resolver
    lookups: Lookups | None = None  # None: the module's LOOKUPS
    s3: S3Endpoint | None = None  # None: from the environment at each read
    token: Callable[[], str | None] = lambda: os.environ.get(TOKEN_ENV)

    def check(self, uri: str) -> tuple[Url, Source]:
        """The parsed URI and the source allowing it; CardReadError if none does."""
        url = Url.parse(uri)
        source = source_for(url, self.sources)
        if source is None:
            raise CardReadError("ArtifactSourceNotAllowed", f"{url.origin} is under no source")
        return url, source

    def read(self, uri: str) -> bytes:
        """The model card's bytes, read under every rule above."""
        url, source = self.check(uri)
        deadline = Deadline(self.timeout)
        WATCHDOG.watch(deadline)
        try:
            return fetch(
                self._first_hop(url, source),
                self._next_hop,
                deadline=deadline,
                max_bytes=self.max_bytes,
                resolver=self.resolver,
                lookups=self.lookups,
            )
        finally:
            deadline.finish()

    def _first_hop(self, url: Url, source: Source) -> Hop:
        card_path = url.path.rstrip("/") + "/" + CARD_FILE
        if url.scheme != "s3":
            return self._http_hop(url.with_path(card_path), source)
        endpoint = self.s3 or S3Endpoint.from_env()
        target, named = endpoint.object_url(url.host, card_path.lstrip("/"))
        headers: dict[str, str] = {}
        if source_for(url, self.credential_sources) is not None:
            headers = sign_s3(target, endpoint.region)
        return Hop(target, named, headers)

    def _next_hop(self, url: Url) -> Hop:
        """A redirect target: under a source like the first URL, else refused."""
        source = source_for(url, self.sources)
        if source is None or url.scheme == "s3":
            raise CardReadError("ArtifactUnreachable", f"redirect to {url.origin}: no source")
        return self._http_hop(url, source)

    def _http_hop(self, url: Url, source: Source) -> Hop:
        headers: dict[str, str] = {}
        token = self.token()
        if token and source_for(url, self.credential_sources) is not None:
            headers["Authorization"] = f"Bearer {token}"
        return Hop(url, source.names_host, headers)
