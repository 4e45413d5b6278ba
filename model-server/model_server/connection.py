"""The HTTP protocol the server runs: uvicorn's httptools protocol with a deadline for headers.

uvicorn gives a fresh connection no timeout (its keep-alive timer starts after a first response),
and its keep-alive timer is cancelled by the first byte of the next request. So a client that
opens sockets and sends nothing, or trickles header bytes (slowloris), would hold them for ever.

Here a request's headers have a deadline:

- on a new connection, `header_timeout` seconds from connect (one timer per connection);
- between requests, uvicorn's own keep-alive timer (armed when a response completes) keeps
  running until the next request's headers are complete, instead of stopping at its first byte.

When it fires the connection is closed without an answer (there is no request to answer yet).

httptools (llhttp) does not bound the size of a request line or headers, and joins a header's
pieces by concatenation: a client could grow one header value for the whole deadline, each read
copying all of it again, on the event loop. So a connection is also closed once the reads that
left its headers incomplete add up to more than MAX_HEADER_BYTES (a read that completes them is
not counted, so what the parser holds is bounded by MAX_HEADER_BYTES plus one read). Bytes
that arrive after a response while the next headers are awaited count too: so a body the app
answered without reading is cut off after MAX_HEADER_BYTES, the connection closed.
Once a request's headers are complete the app takes over: RequestGuard bounds the body's time
and the prediction requests in flight (probes and /metrics are never refused).

Both deadlines live in uvicorn's one `timeout_keep_alive_task` slot: nothing is allocated per
request beyond what uvicorn already does.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

MAX_HEADER_BYTES: Final = 64 * 1024  # request line and headers, roughly (see above)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose connections close unless headers are complete in time.

    Pass it to uvicorn as `functools.partial(HeaderDeadlineProtocol, header_timeout=...)` (a
    partial of a module-level class pickles, so worker processes receive it too).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout = header_timeout
        self.header_bytes = 0  # read since the last headers completed, while they are awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.header_timeout, self.timeout_keep_alive_handler
        )

    def _unset_keepalive_if_required(self) -> None:
        """Nothing: uvicorn calls this on every read, which would let a trickle run forever.

        The pending timer is cancelled once headers are complete (and on close) instead.
        """

    def _cancel_deadline(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.timeout_keep_alive_task is not None:  # headers still awaited after this read
            self.header_bytes += len(data)
            if self.header_bytes > MAX_HEADER_BYTES:
                self.transport.close()

    def on_headers_complete(self) -> None:
        self._cancel_deadline()
        self.header_bytes = 0
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # Nothing is pending here (the headers completed); cancelling anyway means the timer
        # uvicorn arms next can never leave an older one running.
        self._cancel_deadline()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)
