"""The one error type every artifact reader and writer raises."""

from __future__ import annotations

from typing import Final

#: Reasons are one CamelCase word each, so the operator can copy them into a status condition.
REASONS: Final = frozenset(
    {
        "ArtifactNotFound",
        "ArtifactDigestMismatch",
        "UnknownFormat",
        "InvalidModelCard",
        "UntrustedType",
        "ArtifactTooLarge",
        "ExternalData",
        "IncompatibleVersion",
        "SampleMismatch",
        "SerializationFailed",
        "ArtifactLoadFailed",
        "StorageError",
        "InvalidURI",
    }
)


class ArtifactError(Exception):
    """A model artifact could not be written, found, verified or loaded.

    `reason` is a CamelCase word for machines; `str(error)` is a sentence for people that
    names the URI and what was wrong.
    """

    def __init__(self, uri: str, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown artifact error reason {reason!r}")
        self.uri = uri
        self.reason = reason
        self.message = message
        super().__init__(f"{uri}: {message}")
