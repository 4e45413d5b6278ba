"""Artifact locations: a local directory, an HTTP(S) prefix (read) or an S3 prefix (read and write).

S3 endpoint, region and credentials come from the usual AWS environment variables
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`), so the
same code talks to AWS, MinIO or a moto server. HTTP reads send `Authorization: Bearer
$MLMODEL_HTTP_TOKEN` when that variable is set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from mlmodel_artifact.errors import ArtifactError

HTTP_TOKEN_ENV: Final = "MLMODEL_HTTP_TOKEN"
SCHEMES: Final = ("file", "http", "https", "s3")
_HTTP_TIMEOUT_SECONDS: Final = 30.0
_HTTP_CONNECT_TIMEOUT_SECONDS: Final = 10.0
# A model card is KBs (sample rows, the drift reference, the schema's categories): this bound
# is far above any a trainer writes, so it only stops a store that never stops sending.
MAX_CARD_BYTES: Final = 16 << 20


@dataclass(frozen=True)
class Location:
    """A parsed artifact URI: a local directory, or a remote prefix that holds the files."""

    uri: str
    scheme: str
    path: Path | None = None  # file
    base_url: str = ""  # http(s), ends without '/'
    bucket: str = ""  # s3
    prefix: str = ""  # s3, ends without '/'

    @property
    def is_local(self) -> bool:
        """True when the artifact is a directory on this machine."""
        return self.path is not None

    def child(self, name: str) -> str:
        """The URI of one file inside the artifact, for messages."""
        return f"{self.uri.rstrip('/')}/{name}"


def parse_location(uri: str) -> Location:
    """Parse a local path, `file://`, `http(s)://` or `s3://bucket/prefix` URI."""
    if not uri:
        raise ArtifactError(uri, "InvalidURI", "the artifact URI is empty")
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file"):
        raw = unquote(parts.path) if scheme == "file" else uri
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ArtifactError(uri, "InvalidURI", "file:// URIs must not name a host")
        return Location(uri=uri, scheme="file", path=Path(raw))
    if scheme in ("http", "https"):
        return Location(uri=uri, scheme=scheme, base_url=uri.rstrip("/"))
    if scheme == "s3":
        if not parts.netloc:
            raise ArtifactError(uri, "InvalidURI", "s3:// URIs need a bucket: s3://bucket/prefix")
        return Location(uri=uri, scheme="s3", bucket=parts.netloc, prefix=parts.path.strip("/"))
    raise ArtifactError(
        uri, "InvalidURI", f"unsupported URI scheme {scheme!r}; use one of: {', '.join(SCHEMES)}"
    )


def read_bytes(loc: Location, name: str) -> bytes:
    """Read one small file (the model card) of the artifact."""
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp) / name
        download(loc, name, dest, MAX_CARD_BYTES)
        return dest.read_bytes()


def download(loc: Location, name: str, dest: Path, max_bytes: int | None = None) -> None:
    """Copy one file of the artifact to `dest`, atomically (a partial file never has the name).

    A file longer than `max_bytes` (the card's size for a model file, MAX_CARD_BYTES for the
    card) is ArtifactTooLarge before it fills the disk: over HTTP as soon as the stream passes
    it, from S3 by the object's size (HEAD), locally by the file's.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        if loc.path is not None:
            _copy_local(loc, name, partial, max_bytes)
        elif loc.scheme == "s3":
            _download_s3(loc, name, partial, max_bytes)
        else:
            _download_http(loc, name, partial, max_bytes)
        if max_bytes is not None and partial.stat().st_size > max_bytes:
            _too_large(loc.child(name), max_bytes)
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)


def _too_large(uri: str, max_bytes: int) -> None:
    raise ArtifactError(
        uri, "ArtifactTooLarge", f"the file is larger than the {max_bytes:,} bytes expected"
    )


def upload(local_dir: Path, names: Iterable[str], loc: Location) -> None:
    """Write files from `local_dir` to the artifact location (local directory or S3)."""
    names = list(names)
    if loc.path is not None:
        loc.path.mkdir(parents=True, exist_ok=True)
        for name in names:
            if (local_dir / name).resolve() != (loc.path / name).resolve():
                shutil.copyfile(local_dir / name, loc.path / name)
        return
    if loc.scheme != "s3":
        raise ArtifactError(loc.uri, "InvalidURI", f"{loc.scheme}:// locations are read-only")
    client = _s3_client(loc)
    for name in names:
        try:
            client.upload_file(str(local_dir / name), loc.bucket, _s3_key(loc, name))
        except Exception as exc:  # botocore raises many unrelated types
            raise ArtifactError(
                loc.child(name), "StorageError", f"S3 upload failed: {exc}"
            ) from exc


def _copy_local(loc: Location, name: str, dest: Path, max_bytes: int | None) -> None:
    assert loc.path is not None
    source = loc.path / name
    if not source.is_file():
        raise ArtifactError(loc.child(name), "ArtifactNotFound", "no such file")
    if max_bytes is not None and source.stat().st_size > max_bytes:
        _too_large(loc.child(name), max_bytes)
    shutil.copyfile(source, dest)


def _download_http(loc: Location, name: str, dest: Path, max_bytes: int | None) -> None:
    import httpx  # here, not at the top: a process that never fetches over HTTP saves ~16 MB

    url = f"{loc.base_url}/{name}"
    headers = {}
    if token := os.environ.get(HTTP_TOKEN_ENV):
        headers["Authorization"] = f"Bearer {token}"
    try:
        timeout = httpx.Timeout(_HTTP_TIMEOUT_SECONDS, connect=_HTTP_CONNECT_TIMEOUT_SECONDS)
        with httpx.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code == 404:
                raise ArtifactError(url, "ArtifactNotFound", "the server answered 404 Not Found")
            if not 200 <= response.status_code < 300:  # a redirect is not followed either
                raise ArtifactError(
                    url, "StorageError", f"the server answered HTTP {response.status_code}"
                )
            written = 0
            with dest.open("wb") as f:
                for chunk in response.iter_bytes():
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        _too_large(url, max_bytes)
                    f.write(chunk)
    except httpx.HTTPError as exc:
        raise ArtifactError(url, "StorageError", f"HTTP download failed: {exc}") from exc


def _download_s3(loc: Location, name: str, dest: Path, max_bytes: int | None) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = _s3_client(loc)
    try:
        if max_bytes is not None:  # the object's size, before a byte of it is written
            size = int(
                client.head_object(Bucket=loc.bucket, Key=_s3_key(loc, name))["ContentLength"]
            )
            if size > max_bytes:
                _too_large(loc.child(name), max_bytes)
        client.download_file(loc.bucket, _s3_key(loc, name), str(dest))
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound"):
            raise ArtifactError(loc.child(name), "ArtifactNotFound", "no such S3 object") from exc
        raise ArtifactError(loc.child(name), "StorageError", f"S3 download failed: {exc}") from exc
    except BotoCoreError as exc:
        raise ArtifactError(loc.child(name), "StorageError", f"S3 download failed: {exc}") from exc


def _s3_key(loc: Location, name: str) -> str:
    return f"{loc.prefix}/{name}" if loc.prefix else name


def _s3_client(loc: Location) -> Any:
    import boto3

    try:
        return boto3.client("s3")
    except Exception as exc:  # e.g. no region configured
        raise ArtifactError(loc.uri, "StorageError", f"cannot create an S3 client: {exc}") from exc
