"""Housekeeping: what long-running services remove so that their disk use stays bounded.

A worker keeps, per execution, a working folder (`working_dir/<workflow>/<execution>/`: the unpacked
snapshot and whatever the tasks write) and task logs (`logs/<workflow>/<execution>/`); the scheduler
keeps unpacked snapshots (`scheduler/snapshots/<sha256>/`). `sweep` removes such an entry once
nothing in it has been modified for the retention period and its name is not in use.

Guarantees:
- An entry whose name is in use is never removed, nor one in which anything (the entry itself or any
  file or folder under it, symbolic links not followed) was modified within the retention period.
  A folder that cannot be read all through counts as modified: what cannot be judged is kept.
- An entry leaves its place at once, by a rename to a hidden name beside it, before it is deleted:
  a service that creates the same name again afterwards (a new try of that execution) gets a new
  folder, never a half-deleted one. With `background`, the deletion itself runs on a thread, so
  the caller's loop does not wait for a large tree to go.
- A failure to remove one entry (a file of another user, say) is logged and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path

log = logging.getLogger(__name__)

# Prefix of the hidden name an entry is renamed to before it is deleted. A leftover one (a service
# killed while deleting) is swept like any other entry: it is not in use, and renaming it did not
# change its contents' modification times.
REMOVING_PREFIX = ".removing-"
# What background threads of this process are deleting still: not to be swept twice at once.
_deleting: set[Path] = set()
_deleting_lock = threading.Lock()


def modified_since(path: Path, cutoff: float) -> bool:
    """Whether `path`, or anything under it, was modified at or after `cutoff` (a time.time()).

    Stops at the first such file, so a recent entry costs little; symbolic links are not followed.
    """
    try:
        if path.lstat().st_mtime >= cutoff:
            return True
    except FileNotFoundError:
        return False
    if path.is_symlink() or not path.is_dir():
        return False
    unreadable: list[OSError] = []
    for root, dirs, files in os.walk(path, onerror=unreadable.append):
        for name in (*dirs, *files):
            try:
                if os.lstat(os.path.join(root, name)).st_mtime >= cutoff:
                    return True
            except FileNotFoundError:
                continue
    return bool(unreadable)


def _entries(root: Path, depth: int) -> list[Path]:
    """The folders and files `depth` levels under `root` (1: its children); only folders are gone
    into on the way down, so files beside them (a service's own log in `logs/`) are left alone."""
    level = [root]
    for remaining in range(depth, 0, -1):
        found: list[Path] = []
        for folder in level:
            try:
                with os.scandir(folder) as scan:
                    for entry in scan:
                        if remaining == 1 or entry.is_dir(follow_symlinks=False):
                            found.append(Path(entry.path))
            except (FileNotFoundError, NotADirectoryError):
                continue
        level = found
    return sorted(level)


def _delete(paths: list[Path]) -> None:
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("housekeeping: could not delete %s: %s", path, exc)
        finally:
            with _deleting_lock:
                _deleting.discard(path)


def sweep(root: Path, retention: float, in_use: Collection[str] | Callable[[], Collection[str]] = (), *,
          depth: int = 1, now: float | None = None, background: bool = False) -> list[Path]:
    """Remove the entries `depth` levels under `root` that are not in use and in which nothing was
    modified for `retention` seconds; return them (their former paths), sorted.

    `in_use` holds names (the last part of an entry's path: an execution id, a sha256), or is a
    callable giving them, asked again for each entry. A retention of 0 or less
    removes nothing. With depth > 1, a folder on the way that is left empty and is itself older than
    the retention is removed as well.
    """
    if retention <= 0:
        return []
    cutoff = (time.time() if now is None else now) - retention
    removed: list[Path] = []
    moved: list[Path] = []
    for path in _entries(root, depth):
        with _deleting_lock:
            if path in _deleting:
                continue
        names = in_use() if callable(in_use) else in_use
        if path.name in names or modified_since(path, cutoff):
            continue
        aside = path.with_name(f"{REMOVING_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}"[:255])
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("housekeeping: could not remove %s: %s", path, exc)
            continue
        removed.append(path)
        moved.append(aside)
        with _deleting_lock:
            _deleting.add(aside)
    if background and moved:
        threading.Thread(target=_delete, args=(moved,), name="aiflow-housekeeping", daemon=True).start()
    else:
        _delete(moved)
    if depth > 1:
        for folder in _entries(root, depth - 1):
            _remove_if_empty_and_old(folder, cutoff)
    return sorted(removed)


def _remove_if_empty_and_old(folder: Path, cutoff: float) -> None:
    if folder.is_symlink() or not folder.is_dir():
        return
    try:
        if folder.stat().st_mtime < cutoff and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:  # not empty after all, or gone: nothing to do
        pass


def sweep_snapshot_cache(root: Path, retention: float, in_use: Collection[str] | Callable[[], Collection[str]],
                         now: float | None = None) -> list[Path]:
    """Remove the scheduler's unpacked snapshots (`root/<sha256>/`) unchanged for `retention` seconds
    whose sha256 is not in `in_use` (at least the snapshots the scheduler has loaded: their workflows
    may read files there); return them."""
    return sweep(root, retention, in_use, depth=1, now=now)
