"""Domain errors raised by the data plane and protocols; app.py maps them to HTTP statuses."""

from __future__ import annotations

import re

# "[ArtifactDigestMismatch] s3://bucket/key: sha256 ..." (lifecycle's load failure line)
_REASON = re.compile(r"\[([A-Za-z]{1,64})\]")


# An error message is built from the request (a name, a datatype, a version...): whatever it
# quotes, what the client gets back is at most this long (gRPC carries it in metadata, whose
# default limit is 8 KiB: a longer one would turn into RESOURCE_EXHAUSTED).
MAX_MESSAGE_CHARS = 1000


class ServerError(Exception):
    """Base of every error a request can cause; the message is shown to the client (cut at
    MAX_MESSAGE_CHARS)."""

    def __init__(self, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        super().__init__(message)
        self.message = message


class MalformedRequest(ServerError):
    """The body is not JSON, or not the JSON object the route expects."""


class InvalidInput(ServerError):
    """Well-formed JSON whose values the model cannot take (count, type, NaN, empty, names)."""


class ModelNotFound(ServerError):
    """A path names a model or version this server does not serve."""


class ModelNotReady(ServerError):
    """The model is still loading (or failed to load)."""


class PayloadTooLarge(ServerError):
    """The body is over the configured size limit, or the batch over the row limit."""


class RequestTimeout(ServerError):
    """The client did not send its whole body within the body deadline."""


class ServerBusy(ServerError):
    """Too many prediction requests are in flight; the client should retry shortly."""


class ModelLoadError(Exception):
    """Start-up could not fetch, verify or load the model; the process must not serve."""


def load_failure_for_clients(message: str) -> str:
    """What a client is told of a failed load: the reason, not the URI, paths or the store's
    own words (those are in the server's log and the MLModel's status)."""
    found = _REASON.match(message)
    reason = f"[{found.group(1)}]" if found else "an error"
    return f"{reason}; the server's log says why"
