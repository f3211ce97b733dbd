"""Processes aiflow starts in the background: pid files, liveness, stopping a whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiflow.errors import AIFlowError


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


def start_daemon(name: str, argv: list[str], pid_file: Path, log_file: Path, env: dict[str, str] | None = None,
                 settle: float = 1.5) -> int:
    """Run `python -m aiflow.cli ARGV` in the background, in a session of its own; return its pid."""
    running = read_pid(pid_file)
    if running is not None:
        raise AIFlowError(f"the {name} is already running (pid {running}); stop it first")
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "aiflow.cli", *argv], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    pid_file.write_text(str(process.pid))
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file.unlink(missing_ok=True)
            tail = " | ".join(log_file.read_text(errors="replace").strip().splitlines()[-3:])
            raise AIFlowError(f"the {name} exited at once (code {process.returncode}): {tail}")
        time.sleep(0.1)
    return process.pid


def stop_daemon(pid_file: Path, timeout: float = 30.0) -> bool:
    """Stop the process of the pid file; False if none was running."""
    pid = read_pid(pid_file)
    if pid is None:
        return False
    stop_group(pid, timeout)
    pid_file.unlink(missing_ok=True)
    return True
