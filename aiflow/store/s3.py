"""Workflow snapshots in an S3-compatible object store: `blob.uri: s3://<bucket>/<prefix>`.

boto3 is imported only when an `s3://` store is made, so aiflow runs without it otherwise
(`pip install aiflow-kafka[s3]` adds it). Where the store answers and as whom come from boto3's own
resolution — `blob.s3_endpoint_url` and `blob.s3_region` if set, else the usual AWS settings
(`AWS_ENDPOINT_URL`, `AWS_REGION`, `~/.aws/config`) — and the credentials only from the standard AWS
chain (environment, `~/.aws/credentials`, instance or pod roles): aiflow never holds a secret key of
its own, so none can end up in `aiflow.yaml`.

Blobs are content-addressed by their callers (`<namespace>/<file>/<sha256>.zip`) and checked by sha256
after download (`aiflow.store.snapshots.fetch`); this module only moves bytes. Every error of boto3 is
turned into an `AIFlowError`, which the scheduler and the worker report per workflow or per try
instead of stopping.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import ParseResult, urlparse

from aiflow.config import Config, mask_uri
from aiflow.errors import AIFlowError, ConfigError, NotFound

# S3's rules for bucket names (lower-case letters, digits, dots and hyphens, 3 to 63 characters):
# anything else in the host part of `blob.uri` — a `key:secret@` above all — is refused.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# S3 treats `.` and `..` as plain characters, but a proxy or an S3-compatible server that normalizes
# paths would not: keys with such segments are refused, so the prefix stays the boundary everywhere.
_DOT_SEGMENT = re.compile(r"(^|/)\.{1,2}(/|$)")
# Error codes of a missing object: HeadObject answers a bare 404, GetObject NoSuchKey.
_MISSING = {"404", "NoSuchKey", "NotFound"}

# `user:password@` before the host, the password possibly holding a raw `/` (as AWS secret keys do,
# which urlparse then takes for the end of the host).
_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*(:[^@\s]*)?@")


def _holds_credentials(url: str) -> bool:
    return "@" in urlparse(url).netloc or _USERINFO.match(url) is not None


_clients: dict[tuple[str, str, int], Any] = {}
_clients_lock = threading.Lock()


def _s3_client(endpoint_url: str, region: str) -> Any:
    """One boto3 client per endpoint, region and process (clients are thread-safe but not fork-safe).
    Making one reads the AWS settings but calls nobody."""
    key = (endpoint_url, region, os.getpid())
    with _clients_lock:
        if key not in _clients:
            try:
                import boto3
            except ImportError:
                raise ConfigError("blob.uri: an s3:// blob store needs boto3: install aiflow-kafka[s3] "
                                  "(pip install 'aiflow-kafka[s3]')") from None
            _clients[key] = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url or None, region_name=region or None)
        return _clients[key]


class S3BlobStore:
    """Blobs as objects under `s3://<bucket>/<prefix>/`. Only URIs under that prefix are read or deleted:
    a command naming any other object (another bucket, a sibling prefix) is refused, not read."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str = "", region: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.region = region

    @classmethod
    def from_config(cls, config: Config, parsed: ParseResult) -> S3BlobStore:
        """The store of `blob.uri` (already parsed) with `blob.s3_endpoint_url` and `blob.s3_region`."""
        uri = mask_uri(parsed.geturl())
        if _holds_credentials(parsed.geturl()):
            raise ConfigError(f"blob.uri: {uri} holds credentials; aiflow takes S3 credentials only "
                              "from the AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, an "
                              "instance role) and the endpoint from blob.s3_endpoint_url")
        if not _BUCKET.fullmatch(parsed.netloc):
            raise ConfigError(f"blob.uri: {uri} does not name an S3 bucket (s3://<bucket>/<prefix>)")
        if parsed.query or parsed.fragment or _DOT_SEGMENT.search(parsed.path.strip("/")):
            raise ConfigError(f"blob.uri: {uri} is not s3://<bucket>/<prefix> (no query, fragment, . or ..)")
        endpoint = str(config.values["blob.s3_endpoint_url"])
        if endpoint:
            url = urlparse(endpoint)
            if _holds_credentials(endpoint):
                raise ConfigError("blob.s3_endpoint_url: the URL holds credentials; aiflow takes S3 credentials "
                                  "only from the AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws, "
                                  "an instance role): remove them from the URL")
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ConfigError(f"blob.s3_endpoint_url: {mask_uri(endpoint)} is not an http:// or https:// URL")
        return cls(parsed.netloc, parsed.path, endpoint, str(config.values["blob.s3_region"]))

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _object_key(self, key: str) -> str:
        key = key.strip("/")
        if not key or _DOT_SEGMENT.search(key) or "//" in key:
            raise AIFlowError(f"blob key {key!r} leaves the blob prefix {self.root}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key_of(self, uri: str) -> str:
        """The object key of a blob URI, which must lie under this store's bucket and prefix."""
        parsed = urlparse(uri)
        key = parsed.path[1:]
        inside = (parsed.scheme == "s3" and parsed.netloc == self.bucket and not parsed.query
                  and not parsed.fragment and bool(key) and (not self.prefix or key.startswith(self.prefix + "/"))
                  and not _DOT_SEGMENT.search(key) and "//" not in key)
        if not inside:
            raise AIFlowError(f"blob {mask_uri(uri)[:200]} is outside the blob store {self.root}: refusing it")
        return key

    @property
    def _client(self) -> Any:
        return _s3_client(self.endpoint_url, self.region)

    def put(self, key: str, source: Path) -> str:
        object_key = self._object_key(key)
        with _errors(f"storing {source.name} in {self.root}"):
            # One PUT, or a multipart upload that S3 assembles only once complete: never half an object.
            self._client.upload_file(str(source), self.bucket, object_key)
        return f"s3://{self.bucket}/{object_key}"

    def get(self, uri: str, destination: Path) -> None:
        key = self._key_of(uri)
        fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=".partial-")
        try:
            with os.fdopen(fd, "wb") as out, _errors(f"reading snapshot blob {uri}", missing=uri):
                self._client.download_fileobj(self.bucket, key, out)
            os.replace(tmp, destination)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def delete(self, uri: str) -> None:
        key = self._key_of(uri)
        with _errors(f"deleting snapshot blob {uri}"):
            self._client.delete_object(Bucket=self.bucket, Key=key)  # a missing key is no error in S3


@contextmanager
def _errors(doing: str, missing: str | None = None) -> Iterator[None]:
    """Turns boto3's errors into aiflow's: NotFound for a missing object (when `missing` names it),
    ConfigError for what the settings must fix, AIFlowError for the rest (the scheduler and the worker
    handle those per workflow and per try; anything else would stop them)."""
    try:
        yield
    except AIFlowError:
        raise
    except Exception as exc:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

        if isinstance(exc, Boto3Error) and isinstance(exc.__context__, ClientError):
            exc = exc.__context__  # upload_file wraps the ClientError of the request that failed
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING and missing is not None:
                raise NotFound(f"snapshot blob {missing} is missing") from None
            if code == "NoSuchBucket":
                raise ConfigError(f"{doing}: the bucket does not exist (blob.uri)") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise ConfigError(f"{doing}: access denied ({code}): check the AWS credentials and the "
                                  "bucket's policy") from None
            raise AIFlowError(f"{doing}: {code or exc}") from None
        if isinstance(exc, NoCredentialsError):
            raise ConfigError(f"{doing}: no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY, a profile in ~/.aws, or an instance role") from None
        if isinstance(exc, NoRegionError):
            raise ConfigError(f"{doing}: no AWS region: set blob.s3_region or AWS_REGION") from None
        if isinstance(exc, (BotoCoreError, Boto3Error)):
            raise AIFlowError(f"{doing}: {mask_uri(str(exc))}") from None
        raise
