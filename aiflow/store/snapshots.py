"""Workflow snapshots: the workflow file and its artifacts, zipped, hashed, unpacked again for tasks.

Layout inside the zip (as the original AIFlow had it): `<file stem>/<workflow file>` and
`<file stem>/<artifact name>/...`, so a task's working directory holds the file next to its data.
The zip is deterministic — sorted entries, fixed timestamps — so the same content has the same
sha256 and an unchanged re-upload creates no new version.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from aiflow.config import Config
from aiflow.errors import AIFlowError, WorkflowFileError
from aiflow.protocol.records import check_sha256, check_workflow_path
from aiflow.store.blobs import blob_store

_FIXED_TIME = (2000, 1, 1, 0, 0, 0)
# The most a snapshot may hold once unpacked: a small zip that inflates to fill the disk is refused.
MAX_UNPACKED_BYTES = 4 * 1024**3
_SKIP = {"__pycache__", ".git", ".ipynb_checkpoints"}


@dataclass(frozen=True)
class PackedSnapshot:
    path: Path
    sha256: str
    workflow_file: str  # path of the workflow file inside the zip


def file_in(folder: Path, workflow_file: str) -> Path:
    """The workflow file of an unpacked snapshot; AIFlowError if the path would leave the folder."""
    try:
        check_workflow_path(workflow_file)
    except ValueError as exc:
        raise AIFlowError(str(exc)) from None
    path = (folder / workflow_file).resolve()
    if not str(path).startswith(str(folder.resolve()) + os.sep):
        raise AIFlowError(f"workflow file {workflow_file!r} leaves the snapshot folder: refusing it")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entries(source: Path, arcname: str) -> list[tuple[Path, str]]:
    if source.is_file():
        return [(source, arcname)]
    found = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP)
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            path = Path(root) / name
            found.append((path, f"{arcname}/{path.relative_to(source).as_posix()}"))
    return found


def pack(workflow_file: Path, artifacts: list[Path], out_dir: Path) -> PackedSnapshot:
    """Zip the workflow file and its artifacts (files or folders) into `out_dir`."""
    stem = workflow_file.stem
    entries = [(workflow_file, f"{stem}/{workflow_file.name}")]
    names = {workflow_file.name}
    for artifact in artifacts:
        if not artifact.exists():
            raise WorkflowFileError(f"--files {artifact}: no such file or folder")
        if artifact.name in names:
            raise WorkflowFileError(f"--files {artifact}: another file named {artifact.name!r} is already in "
                                    "the snapshot")
        names.add(artifact.name)
        entries += _entries(artifact, f"{stem}/{artifact.name}")
    out = out_dir / f"{stem}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path, arcname in sorted(entries, key=lambda e: e[1]):
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (path.stat().st_mode & 0o777) << 16
            with open(path, "rb") as f:
                zf.writestr(info, f.read())
    return PackedSnapshot(out, sha256_of(out), f"{stem}/{workflow_file.name}")


def unpack(zip_path: Path, expected_sha256: str, destination: Path, max_bytes: int = MAX_UNPACKED_BYTES) -> Path:
    """Verify the zip's sha256 and unpack it into `destination`, once.

    Safe when several tasks of one execution unpack at the same moment: each unpacks into a temporary
    folder beside `destination` and renames it into place; the first rename wins, the others are
    discarded.
    """
    actual = sha256_of(zip_path)
    if actual != expected_sha256:
        raise AIFlowError(f"snapshot {zip_path} has sha256 {actual}, expected {expected_sha256}: refusing it")
    if destination.is_dir():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}-"))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                target = (staging / info.filename).resolve()
                if not str(target).startswith(str(staging.resolve()) + os.sep):
                    raise AIFlowError(f"snapshot {zip_path} holds a path outside its folder: {info.filename}")
            unpacked = sum(info.file_size for info in zf.infolist())
            if unpacked > max_bytes:
                raise AIFlowError(f"snapshot {zip_path} would unpack to {unpacked:,} bytes, over the limit of "
                                  f"{max_bytes:,}: refusing it")
            zf.extractall(staging)
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(staging / info.filename, mode)
        try:
            staging.rename(destination)
        except OSError:
            if not destination.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination


def fetch(config: Config, uri: str, sha256: str, destination: Path) -> Path:
    """Download the snapshot blob, verify its sha256 and unpack it into `destination` (once). The
    sha256 must be 64 hex digits and the blob inside the blob store."""
    try:
        check_sha256(sha256)
    except ValueError as exc:
        raise AIFlowError(str(exc)) from None
    if destination.is_dir():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=".download-", suffix=".zip")
    os.close(fd)
    try:
        blob_store(config).get(uri, Path(tmp))
        return unpack(Path(tmp), sha256, destination)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_workflow_file(config: Config, uri: str, sha256: str,
                       workflow_file: str) -> tuple[bytes, list[tuple[str, bool]]]:
    """A snapshot's workflow file and the entries beside it in its folder (name, is a folder), read from
    the blob without unpacking the rest: what a worker needs to ready a file's imports ahead of its
    tries, for a snapshot whose artifacts may be large. The blob's sha256 is checked first."""
    try:
        check_sha256(sha256)
        check_workflow_path(workflow_file)
    except ValueError as exc:
        raise AIFlowError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="aiflow-snapshot-") as tmp:
        path = Path(tmp) / "snapshot.zip"
        blob_store(config).get(uri, path)
        actual = sha256_of(path)
        if actual != sha256:
            raise AIFlowError(f"snapshot {uri} has sha256 {actual}, expected {sha256}: refusing it")
        with zipfile.ZipFile(path) as zf:
            try:
                source = zf.read(workflow_file)
            except KeyError:
                raise AIFlowError(f"snapshot {uri} holds no {workflow_file}") from None
            folder = posixpath.dirname(workflow_file)
            prefix = f"{folder}/" if folder else ""
            beside: dict[str, bool] = {}
            for name in zf.namelist():
                if name.startswith(prefix) and name != prefix:
                    first, _, rest = name[len(prefix):].partition("/")
                    beside[first] = beside.get(first, False) or bool(rest) or name.endswith("/")
    return source, sorted(beside.items())
