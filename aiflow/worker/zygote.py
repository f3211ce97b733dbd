"""A fork server for task processes: `python -m aiflow.worker.zygote`, started by each worker.

It imports the task runner (the SDK and the event client) once; each task try is then a `fork()` of
it instead of a new Python process, which saves the interpreter start and those imports (about 0.2 s
of CPU per try on the machines we measured: benchmarks/README.md). Nothing in it has opened a Kafka
client or a thread when it forks, so the child starts clean.

Protocol, one JSON object per line. Requests on stdin: `{"argv", "env", "cwd", "log"}`; replies on
stdout: `{"pid": N}` for each request (or `{"error": "..."}`), and `{"exit": N, "code": C}` when a
child ends (C as `subprocess` reports it: negative for a signal). The child runs in a session of its
own (so the worker can stop its whole process group) with stdout and stderr in the log file.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
from typing import Any


def _child(request: dict[str, Any], keep: set[int]) -> None:
    """In the forked child: become the task process; never returns."""
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for fd in keep | {log, devnull}:
            if fd > 2:
                os.close(fd)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["aiflow.worker.runner", *request["argv"]]
        from aiflow.worker import runner

        code = runner.main(request["argv"])
    except BaseException:  # the runner reports the task's own errors; this is for the fork's setup
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main() -> int:
    from aiflow.worker import runner  # noqa: F401  (imported once here, inherited by every child)

    requests = sys.stdin.buffer
    replies = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints must not corrupt the reply stream
    children: set[int] = set()
    buffered = b""
    # A child's exit wakes the select at once (the signal's byte lands in this pipe), so the worker
    # learns of it without waiting for a poll interval.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def reply(message: dict[str, Any]) -> None:
        os.write(replies, (json.dumps(message) + "\n").encode())

    while True:
        ready, _, _ = select.select([requests, wake_read], [], [], 1.0)
        if wake_read in ready:
            os.read(wake_read, 4096)
        if requests in ready:
            chunk = os.read(requests.fileno(), 65536)
            if not chunk:
                break  # the worker is gone: so is the fork server (running children go on)
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                try:
                    request = json.loads(line)
                    pid = os.fork()
                except (OSError, ValueError) as exc:
                    reply({"error": str(exc)})
                    continue
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    _child(request, {requests.fileno(), replies, wake_read, wake_write})
                children.add(pid)
                reply({"pid": pid})
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                reply({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
    return 0


if __name__ == "__main__":
    sys.exit(main())


# What `ForkedTask.poll` returns for a child whose fork server died before reporting its exit.
LOST_EXIT_CODE = -1000


class ForkedTask:
    """A task process forked by the fork server: the `pid` and `poll()` of a Popen."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the child ended, kept here and taken out of the server's table (a pid
        may be reused by a later child). LOST_EXIT_CODE when the server died and can no longer tell:
        the child then stops itself, since its parent is gone (runner.py)."""
        if self.returncode is None:
            code = self.server.exits.pop(self.pid, None)
            if code is None and self.server.gone():
                code = self.server.exits.pop(self.pid, LOST_EXIT_CODE)
            self.returncode = code
        return self.returncode


class ForkServer:
    """The worker's side of the fork server: starts it, asks it for children, learns how they end."""

    def __init__(self, env: dict[str, str]) -> None:
        import queue
        import subprocess
        import threading

        from aiflow.process import python_module

        self.process = subprocess.Popen(python_module("aiflow.worker.zygote"), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env, start_new_session=True)
        self.exits: dict[int, int] = {}
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="aiflow-fork-server", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a line cut short by the server's death
            if "exit" in message:
                self.exits[int(message["exit"])] = int(message["code"])
            else:
                self._replies.put(message)

    def alive(self) -> bool:
        return self.process.poll() is None

    def gone(self) -> bool:
        """True once the server has exited and every reply it wrote has been read."""
        return not self.alive() and not self._reader.is_alive()

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log: str, timeout: float = 10.0) -> ForkedTask:
        import queue

        assert self.process.stdin is not None
        with self._lock:
            self.process.stdin.write((json.dumps({"argv": argv, "env": env, "cwd": cwd, "log": log}) + "\n").encode())
            self.process.stdin.flush()
            try:
                reply = self._replies.get(timeout=timeout)
            except queue.Empty:
                raise OSError("the fork server did not answer") from None
        if "error" in reply:
            raise OSError(f"the fork server could not fork: {reply['error']}")
        return ForkedTask(self, int(reply["pid"]))

    def close(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
