"""Processes aiflow starts in the background: pid files, liveness, stopping a whole process group,
their logs (rotated by size, owner-only)."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from aiflow.errors import AIFlowError


def private_home(home: Path) -> None:
    """The aiflow home holds the database, logs, broker data and configuration: only its owner may
    enter it (whatever the modes of the files inside)."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        if home.stat().st_mode & 0o077:
            os.chmod(home, 0o700)
    except PermissionError:  # not ours to change: the owner decides
        pass


def alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def stop_group(pid: int, timeout: float) -> None:
    """SIGTERM to the process group, then SIGKILL if it is still there after `timeout` seconds."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.1)
    if alive(pid):
        signal_group(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)


def read_pid(pid_file: Path) -> int | None:
    """The pid in the file if that process is alive; a stale file is removed."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not alive(pid):
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def python_module(module: str) -> list[str]:
    """The command line running `module` with this interpreter. With -P (Python 3.11+), the folder the
    command was started from is not put first on the import path: started inside a clone of aiflow,
    a service would otherwise import the clone's code instead of the installed package's."""
    return [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []), "-m", module]


READY = "ready"
# Set by start_daemon for the service it starts: the log file the service then rotates itself.
ENV_SERVICE_LOG = "AIFLOW_SERVICE_LOG"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# `text` or `json`: how services write their log lines; inherited by the services a command starts.
ENV_LOG_FORMAT = "AIFLOW_LOG_FORMAT"
LOG_FORMATS = ("text", "json")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with milliseconds), level, logger, message, the
    process, and the traceback when there is one. For log shippers (Loki, Elasticsearch, CloudWatch)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, timezone.utc)
        entry: dict[str, object] = {"time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                                    "level": record.levelname, "logger": record.name,
                                    "message": record.getMessage(), "pid": record.process}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_formatter(log_format: str | None = None) -> logging.Formatter:
    """The formatter for `log_format` (default: $AIFLOW_LOG_FORMAT, else text with timestamps)."""
    chosen = (log_format or os.environ.get(ENV_LOG_FORMAT) or "text").lower()
    if chosen not in LOG_FORMATS:
        raise AIFlowError(f"log format {chosen!r}: expected one of {', '.join(LOG_FORMATS)} (${ENV_LOG_FORMAT})")
    return JsonLogFormatter() if chosen == "json" else logging.Formatter(LOG_FORMAT)


def use_log_format(log_format: str) -> None:
    """Write this process's log lines, and those of the services it starts, as `log_format`."""
    os.environ[ENV_LOG_FORMAT] = log_format
    formatter = log_formatter(log_format)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)


def open_private_log(path: Path) -> int:
    """A descriptor appending to `path`, which only its owner may read (made so if it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:  # not ours to change: the home (mode 700) still keeps others out
        pass
    return fd


class ServiceLogHandler(logging.handlers.RotatingFileHandler):
    """The log of a background service: rotated by size (`<name>.log.1` the newest of `backups`),
    owner-only, and also the process's stdout and stderr.

    Each file it opens is put on descriptors 1 and 2 too, so what is written there without Python's
    logging — librdkafka, a traceback, the fork server and other children started afterwards — lands
    in the current file, next to the log lines, in order. A child started before a rotation keeps
    writing to the file it was given, which moves to `.1`, `.2`, ...: nothing it writes is lost until
    that file is the oldest and goes. The size is checked when a log line is written, so output that
    bypasses logging can take a file past `max_bytes` until the next line.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", errors="replace")

    def _open(self) -> io.TextIOWrapper:
        fd = open_private_log(Path(self.baseFilename))
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)


def log_to_service_file(max_bytes: int, backups: int) -> Path | None:
    """In a service that start_daemon started: log to its file through a ServiceLogHandler, in place
    of stderr. Returns the file; None (and nothing changes) in a service run in the foreground."""
    name = os.environ.pop(ENV_SERVICE_LOG, None)  # not passed on to tasks and other children
    if not name:
        return None
    path = Path(name)
    root = logging.getLogger()
    formatter = next((h.formatter for h in root.handlers if h.formatter is not None), None)
    for handler in list(root.handlers):  # stderr is the file now: lines would be written twice
        if type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.stdout):
            root.removeHandler(handler)
    handler = ServiceLogHandler(path, max_bytes, backups)
    handler.setFormatter(formatter or log_formatter())
    root.addHandler(handler)
    return path


class ServiceStatus:
    """What a background service tells the command that started it: what it waits for, then `ready`.

    One line in a file next to its pid file, written whole (a reader never sees half of it).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text.strip() + "\n")
        partial.replace(self.path)

    def get(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def start_daemon(name: str, argv: list[str], pid_file: Path, log_file: Path, env: dict[str, str] | None = None,
                 status: ServiceStatus | None = None, wait: float = 30.0, stop_command: str = "") -> int:
    """Run `python -m aiflow.cli ARGV` in the background, in a session of its own; return its pid once
    its `status` says it is ready.

    If it exits first, AIFlowError with the end of its log. If it is not ready within `wait` seconds
    (waiting for Kafka, say), AIFlowError with what it waits for: it keeps trying in the background,
    and `stop_command` says how to end it. Without a status, it must merely live for a moment.
    """
    running = read_pid(pid_file)
    if running is not None:
        raise AIFlowError(f"the {name} is already running (pid {running}); stop it first")
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    if status is not None:
        status.clear()
    # The file takes what the service writes until it opens its ServiceLogHandler (which then rotates it).
    child_env = {**(os.environ if env is None else env), ENV_SERVICE_LOG: str(log_file)}
    log = open_private_log(log_file)
    try:
        process = subprocess.Popen([*python_module("aiflow.cli"), *argv], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env=child_env)
    finally:
        os.close(log)
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + (wait if status is not None else 1.5)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file.unlink(missing_ok=True)
            tail = " | ".join(log_file.read_text(errors="replace").strip().splitlines()[-3:])
            raise AIFlowError(f"the {name} exited (code {process.returncode}) before it was ready: {tail}")
        if status is not None and status.get() == READY:
            return process.pid
        time.sleep(0.1)
    if status is None:
        return process.pid
    raise AIFlowError(f"the {name} is not ready after {wait:.0f} s: {status.get() or 'starting'}. It keeps trying in "
                      f"the background (pid {process.pid}; log {log_file})"
                      + (f"; `{stop_command}` ends it" if stop_command else ""))


def stop_daemon(pid_file: Path, timeout: float = 30.0) -> bool:
    """Stop the process of the pid file; False if none was running."""
    pid = read_pid(pid_file)
    if pid is None:
        return False
    stop_group(pid, timeout)
    pid_file.unlink(missing_ok=True)
    return True


def stop_with_parent(grace: float, log: logging.Logger) -> None:
    """Watch, on a daemon thread, for this process's parent to go away (a SIGKILLed worker or
    scheduler), and then stop this process's whole group: SIGTERM, and SIGKILL after `grace` seconds
    (at once when `grace` is 0). For processes that must not outlive the service that started them."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                if grace > 0:
                    log.warning("the process that started this one is gone; stopping")
                    os.killpg(os.getpgrp(), signal.SIGTERM)
                    time.sleep(grace)
                    log.warning("did not stop within %.0f s; killing it", grace)
                os.killpg(os.getpgrp(), signal.SIGKILL)
                return

    threading.Thread(target=watch, name="aiflow-parent-watch", daemon=True).start()
