"""Processes aiflow starts in the background: pid files, liveness, stopping a whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


READY = "ready"


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
    with open(log_file, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "aiflow.cli", *argv], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env=env)
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
