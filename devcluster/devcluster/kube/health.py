"""Readiness of the cluster's processes: HTTP(S) health checks on loopback, deadline waits."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devcluster.kube import procs
from devcluster.waiting import WaitTimeout, wait_until


class NotReadyError(RuntimeError):
    """A component did not become ready (or died) before its deadline."""

    def __init__(self, component: str, message: str, log: str = "") -> None:
        super().__init__(message)
        self.component = component
        self.log = log


def http_get(
    url: str,
    *,
    ca: Path | None = None,
    cert: tuple[Path, Path] | None = None,
    timeout: float = 5.0,
) -> tuple[int, str]:
    """GET ``url``; returns (status, body). With no ``ca`` an https peer is not verified."""
    context: ssl.SSLContext | None = None
    if url.startswith("https://"):
        if ca is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def post_json(url: str, body: object, timeout: float = 10.0) -> dict[str, Any]:
    """POST ``body`` as JSON to a plain-HTTP ``url``; the decoded JSON answer (errors raise)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def wait_for(
    component: str,
    what: str,
    check: Callable[[], bool],
    *,
    timeout: float,
    proc: procs.Proc | None = None,
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until it returns True; fail early if ``proc`` dies, late at ``timeout``.

    A check that raises is a check that is not ready yet (the timeout names its last error).
    """

    def ready_or_exited() -> bool | str:
        if proc is not None and not procs.is_alive(proc):
            return "exited"
        return check()

    log = proc.log if proc is not None else ""
    try:
        outcome = wait_until(what, ready_or_exited, timeout, interval, retry_on=(Exception,))
    except WaitTimeout as exc:
        raise NotReadyError(component, str(exc), log) from exc
    if outcome == "exited":
        raise NotReadyError(component, f"{component} exited while waiting for {what}", log)


def http_ok(
    url: str, *, ca: Path | None = None, cert: tuple[Path, Path] | None = None
) -> Callable[[], bool]:
    """A check that is True once ``url`` answers 200."""

    def check() -> bool:
        try:
            status, _ = http_get(url, ca=ca, cert=cert, timeout=2.0)
        except (OSError, ssl.SSLError):
            return False
        return status == 200

    return check
