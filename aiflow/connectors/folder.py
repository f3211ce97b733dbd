"""The folder watcher: a new, complete file under a folder becomes an event whose value is its path.

A file counts once it is complete: its size and modification time are the same at two polls in a
row (so a file still being copied is not announced half-written), and its name does not end in
`.part`, `.tmp` or `.crdownload`. Files already announced are remembered in a state file under
`$AIFLOW_HOME/connectors/`, written after each event is durable, so a restart does not send them
again (a crash between the two can send one file twice: at-least-once).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from aiflow.config import Config
from aiflow.events import EventClient

log = logging.getLogger(__name__)
INCOMPLETE = (".part", ".tmp", ".crdownload")


class FolderWatcher:
    def __init__(self, config: Config, folder: Path, event_key: str, pattern: str = "*", name: str | None = None,
                 namespace: str | None = None, interval: float = 1.0) -> None:
        self.folder = folder.resolve()
        self.event_key = event_key
        self.pattern = pattern
        self.interval = interval
        self.client = EventClient(config, namespace=namespace, sender=f"folder-{name or self.folder.name}")
        self.state_file = config.home / "connectors" / f"folder-{name or self.folder.name}.json"
        self.seen: set[str] = set(json.loads(self.state_file.read_text())) if self.state_file.exists() else set()
        self._last: dict[str, tuple[int, float]] = {}

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(self.seen)))
        os.replace(tmp, self.state_file)

    def scan(self) -> list[str]:
        """One poll: announce the files that became complete since the last one; return their paths."""
        announced = []
        current: dict[str, tuple[int, float]] = {}
        for path in sorted(self.folder.rglob(self.pattern)):
            if not path.is_file() or path.name.endswith(INCOMPLETE):
                continue
            name = str(path)
            if name in self.seen:
                continue
            stat = path.stat()
            current[name] = (stat.st_size, stat.st_mtime)
            if self._last.get(name) == current[name]:
                self.client.send_event(self.event_key, name)
                self.seen.add(name)
                self._save()
                announced.append(name)
        self._last = {k: v for k, v in current.items() if k not in self.seen}
        return announced

    def run(self, stop: threading.Event) -> None:
        log.info("folder watcher: watching %s for %s", self.folder, self.pattern)
        try:
            while not stop.is_set():
                for name in self.scan():
                    log.info("folder watcher: %s -> event %s", name, self.event_key)
                stop.wait(self.interval)
        finally:
            self.client.close()
