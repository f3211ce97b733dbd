"""Where workflow snapshots are kept. A blob store is chosen by the scheme of `blob.uri`.

`file://<folder>` (one machine, or a folder every machine mounts) and `s3://<bucket>/<prefix>`
(`aiflow.store.s3`) ship with aiflow. Another store implements the three methods of `BlobStore` and
registers a factory for its scheme: `register_blob_store("gs", factory)` in code that runs before the
store is used, or, from a package of its own, an entry point in the group `aiflow.blob_stores` named
after the scheme (`gs = "mypackage.blobs:factory"`), found the first time that scheme is configured.
A factory receives the configuration and the parsed `blob.uri` and makes no network call.

Every store refuses a URI outside its own folder, bucket or prefix: blob URIs arrive in records, and a
command naming any other file or object must be refused, not read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Protocol
from urllib.parse import ParseResult, urlparse

from aiflow.config import Config, mask_uri
from aiflow.errors import AIFlowError, ConfigError, NotFound


class BlobStore(Protocol):
    def put(self, key: str, source: Path) -> str:
        """Store the file at `key`; return its URI."""

    def get(self, uri: str, destination: Path) -> None:
        """Copy the blob at `uri` to `destination`."""

    def delete(self, uri: str) -> None:
        """Remove the blob; a missing one is not an error."""


class LocalBlobStore:
    """Blobs as files under a folder; URIs are `file://` paths. Writes are atomic (rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, source: Path) -> str:
        target = (self.root / key).resolve()
        if not str(target).startswith(str(self.root.resolve()) + os.sep):
            raise ValueError(f"blob key {key!r} leaves the blob folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
        os.close(fd)
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return target.as_uri()

    def _path(self, uri: str) -> Path:
        """The file of a blob URI, which must lie inside the blob folder (a command naming any other
        file is refused, not read)."""
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ConfigError(f"blob {uri} is not a file:// URI")
        path = Path(parsed.path).resolve()
        if not str(path).startswith(str(self.root.resolve()) + os.sep):
            raise AIFlowError(f"blob {uri[:200]} is outside the blob folder {self.root}: refusing it")
        return path

    def get(self, uri: str, destination: Path) -> None:
        path = self._path(uri)
        if not path.exists():
            raise NotFound(f"snapshot blob {uri} is missing")
        shutil.copyfile(path, destination)

    def delete(self, uri: str) -> None:
        self._path(uri).unlink(missing_ok=True)


BlobStoreFactory = Callable[[Config, ParseResult], BlobStore]
ENTRY_POINT_GROUP = "aiflow.blob_stores"
_FACTORIES: dict[str, BlobStoreFactory] = {}


def register_blob_store(scheme: str, factory: BlobStoreFactory) -> None:
    """Make `blob.uri: <scheme>://...` use the store `factory(config, parsed_uri)` returns (a later
    registration of the same scheme replaces the earlier one)."""
    _FACTORIES[scheme.lower()] = factory


def _entry_point_schemes() -> dict[str, EntryPoint]:
    return {ep.name.lower(): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> list[str]:
    return sorted(set(_FACTORIES) | set(_entry_point_schemes()))


def _local_store(config: Config, parsed: ParseResult) -> BlobStore:
    return LocalBlobStore(Path(parsed.path))


def _s3_store(config: Config, parsed: ParseResult) -> BlobStore:
    from aiflow.store.s3 import S3BlobStore  # imports boto3 only when an s3:// store is configured

    return S3BlobStore.from_config(config, parsed)


register_blob_store("file", _local_store)
register_blob_store("s3", _s3_store)


def blob_store(config: Config) -> BlobStore:
    """The store of `blob.uri`, by its scheme; ConfigError naming the known schemes for any other."""
    uri = str(config.values["blob.uri"])
    parsed = urlparse(uri)
    factory = _FACTORIES.get(parsed.scheme)
    if factory is None:
        entry_point = _entry_point_schemes().get(parsed.scheme)
        if entry_point is not None:
            factory = entry_point.load()
            register_blob_store(parsed.scheme, factory)
    if factory is None:
        known = ", ".join(f"{s}://" for s in known_schemes())
        raise ConfigError(f"blob.uri: no blob store for scheme {parsed.scheme!r} ({mask_uri(uri)}); "
                          f"known schemes: {known}")
    return factory(config, parsed)
