"""Where workflow snapshots are kept. A blob store is chosen by the scheme of `blob.uri`.

Only `file://<folder>` ships today; an S3-compatible store implements the same three methods and
registers its scheme in `STORES`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from aiflow.config import Config
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


def blob_store(config: Config) -> BlobStore:
    uri = str(config.values["blob.uri"])
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    raise ConfigError(f"blob.uri: no blob store for scheme {parsed.scheme!r} ({uri}); use file://<folder>")
