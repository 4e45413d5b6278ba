"""Counting one user's API requests from the API server's audit log.

apiserver_request_total has no user label, so the operator's own requests are counted from an
audit log whose policy records only the operators' ServiceAccounts (cheap: nothing else logged).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

OPERATOR_USERS = (
    "system:serviceaccount:mlmodel-system:mlmodel-operator",
    "system:serviceaccount:mlmodel-system:naive-operator",
)
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}

POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata", "users": list(OPERATOR_USERS)}, {"level": "None"}],
}


def apiserver_args(directory: Path) -> str:
    """kube-apiserver flags that write the audit log to `directory`/audit.log."""
    policy = directory / "audit-policy.json"
    policy.write_text(json.dumps(POLICY))
    return f"--audit-policy-file={policy} --audit-log-path={directory / 'audit.log'}"


class AuditLog:
    """Reads the log from a byte offset onward (a window starts with `mark`).

    The API server appends to the log while it is read: a window starts at the end of the last
    complete line (`mark`), and a line still being written (no newline yet) is not read, so no
    read starts or ends inside an event (a torn read once crashed the benchmark with "Extra
    data"). An event still being written when a window is read is counted by neither window.
    """

    TAIL_BYTES = 1 << 20  # an audit event at Metadata level is well under this

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        """The offset just after the log's last complete line (0 for none)."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as f:
            size = f.seek(0, 2)
            start = max(0, size - self.TAIL_BYTES)
            f.seek(start)
            tail = f.read(size - start)
        newline = tail.rfind(b"\n")
        return start + newline + 1 if newline >= 0 else 0

    def requests(self, start: int, user: str) -> Counter[str]:
        """'verb resource[/sub]' counts of `user`'s requests logged since offset `start`."""
        counts: Counter[str] = Counter()
        with self.path.open("rb") as f:
            f.seek(start)
            for line in f:
                if not line.endswith(b"\n"):
                    break  # still being written
                event = json.loads(line)
                if event.get("user", {}).get("username") != user:
                    continue
                ref = event.get("objectRef") or {}
                resource = ref.get("resource", "?")
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                counts[f"{event['verb']} {resource}"] += 1
        return counts


def split_leases(counts: Counter[str]) -> tuple[Counter[str], Counter[str]]:
    """(requests on everything but Leases, requests on Leases): leader election renews its
    Lease every retry period whatever the models do, so idle figures report it apart."""
    leases = Counter({k: n for k, n in counts.items() if k.endswith(" leases")})
    return counts - leases, leases


def writes(counts: Counter[str]) -> int:
    """How many of the counted requests were writes."""
    return sum(n for key, n in counts.items() if key.split()[0] in WRITE_VERBS)
