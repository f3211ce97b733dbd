"""A fork server for task processes: `python -m aiflow.worker.zygote [--no-preload]`, started by each worker.

It imports the task runner (the SDK and the event client) once; each task try is then a `fork()` of
it instead of a new Python process, which saves the interpreter start and those imports (about 0.2 s
of CPU per try on the machines we measured: benchmarks/README.md). Nothing in it has opened a Kafka
client or a thread when it forks, so the child starts clean.

Warm fork servers. A workflow file's own imports (numpy, scikit-learn, ...) can take a second or
more, paid again by every try that loads the file. So for each set of modules that workflow files
import, the fork server forks a *warm* one that imports them once (never the file itself: its code
still runs in every try, in the try's folder and environment, as without a fork server) and then
forks the tries of the files that import that set. What may be imported ahead, from the file's
`import` statements anywhere in it: absolute imports found on the fork server's path and not
shadowed by a module beside the file. Until its warm server is ready a try forks from this one, as
before; one whose imports fail is kept, without them. One whose imports start a Python thread is
not used (a forked child would lack the thread). At most MAX_WARM of them live; one unused for
WARM_IDLE seconds, or the oldest when a new one is needed, stops taking tries and exits when its
tries have ended. `--no-preload` (the `worker.preload` key off) turns them off.

Spares. Each server (this one and every warm one) keeps its next try forked ahead: a *spare*, named
`aiflow-spare` until it takes a request, which it reads from a pipe of its own. A fork then costs a
try nothing but a pipe write; a spare that died is replaced and the try forked as before.

Held tries. A start request with `hold` is set up (session, log, folder, environment) and then waits
for GO_SIGNAL before anything of the task runs: the worker forks a try while the transaction taking
it commits, and lets it go once that is done (service.py). GO_SIGNAL is blocked in the servers, so a
go that comes early stays pending; a held try whose server goes away, or that waits HOLD_TIMEOUT,
exits with HELD_EXIT_CODE, having run nothing.

Protocol, one JSON object per line. Requests on stdin: `{"argv", "env", "cwd", "log", "id", "hold"}`
to start a try, `{"warm": SOURCE, "local": [NAMES]}` to make ready, ahead of a try, the warm server of
a workflow file (its source, and the module names its folder defines); replies on stdout:
`{"pid": N, "id": I}` for each start request (or `{"error": "...", "id": I}`), and `{"exit": N, "code": C}`
when a child ends (C as `subprocess` reports it: negative for a signal; LOST_EXIT_CODE when the warm
server that forked it died first). The child runs in a session of its own (so the worker can stop
its whole process group) with stdout and stderr in the log file. A warm server speaks the same
protocol with this one over a pair of pipes; this one passes its replies on.
"""

from __future__ import annotations

import ast
import functools
import gc
import hashlib
import importlib
import importlib.util
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

# What `ForkedTask.poll` returns for a child whose fork server died before reporting its exit.
LOST_EXIT_CODE = -1000
# Warm fork servers: how many at most, how long one may go unused, how long it may take to import.
MAX_WARM = 4
WARM_IDLE = 600.0
WARM_IMPORT_TIMEOUT = 120.0
WARM_NAME = b"aiflow-warm"  # a warm server's process name (/proc/PID/comm): its command line is this one's
SPARE_NAME = b"aiflow-spare"  # a spare's, until it takes a try
_TASK_NAME = b"python"  # the process name its tries get back
# A held try waits for this signal from the worker before it runs anything of the task; it gives up
# (exit code HELD_EXIT_CODE, nothing run) when the server that forked it goes, or after HOLD_TIMEOUT.
GO_SIGNAL = signal.SIGUSR1
HOLD_TIMEOUT = 300.0
HELD_EXIT_CODE = 75


def _child(request: dict[str, Any], keep: set[int], parent: int, shadowable: frozenset[str] | None = None) -> NoReturn:
    """In the forked child: become the task process; never returns. `parent`: the server that forked it
    (its pid taken before the fork: it may be gone by now). `shadowable`, in the child of a
    warm server: the modules it imported, of which those a module beside the workflow file shadows are
    forgotten, so the file imports its own as it would in a process of its own. A request with `hold`
    waits for the worker's go (`_await_go`) once it is set up, before anything of the task runs."""
    code = 1
    try:
        _set_process_name(_TASK_NAME)
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
        if shadowable is not None:  # forked by a warm server
            _forget_shadowed(shadowable, Path(request["cwd"]))
        sys.argv = ["aiflow.worker.runner", *request["argv"]]
        from aiflow.worker import runner

        code = runner.main(request["argv"], gate=functools.partial(_await_go, parent) if request.get("hold") else _go)
    except BaseException:  # the runner reports the task's own errors; this is for the fork's setup
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _await_go(parent: int) -> None:
    """A held try: wait for GO_SIGNAL, which the worker sends once the transaction that takes the try
    has committed. Should the server that forked this process go away first (its worker died), or no
    go come within HOLD_TIMEOUT, exit without running anything. The signal is blocked in the servers,
    so one sent before this wait stays pending for it."""
    deadline = time.monotonic() + HOLD_TIMEOUT
    while signal.sigtimedwait({GO_SIGNAL}, 1.0) is None:
        if os.getppid() != parent or time.monotonic() > deadline:
            os._exit(HELD_EXIT_CODE)
    if os.getppid() != parent:  # the go came, but its server died meanwhile: the worker counts the try lost
        os._exit(HELD_EXIT_CODE)
    _go()


def _go() -> None:
    """The task's code runs with GO_SIGNAL as it finds it in a process of its own: not blocked."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {GO_SIGNAL})


# -- spares: tries forked ahead --------------------------------------------------------------------

@dataclass
class _Spare:
    """A process forked ahead of the next try, waiting for its request: a fork, and the pages a new
    process writes first, are then off the path of a try's start."""

    pid: int
    to: int  # the pipe its request comes through


def _fork_spare(close: set[int], shadowable: frozenset[str] | None) -> _Spare | None:
    """Fork a spare; `close`: the server's descriptors, which the spare must not hold."""
    read, write = os.pipe()
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return None
    if pid == 0:
        signal.set_wakeup_fd(-1)
        _set_process_name(SPARE_NAME)
        for fd in (close | {write}) - {read}:
            if fd > 2:  # 0-2 are replaced when it takes its try (_child); closed, the try's own files would get them
                os.close(fd)
        _serve_spare(read, server, shadowable)
    os.close(read)
    return _Spare(pid, write)


def _serve_spare(read: int, parent: int, shadowable: frozenset[str] | None) -> NoReturn:
    """In a spare: wait for the one request it takes, then become its try. Exit when the server that
    forked it (`parent`) goes: its end of the pipe closes."""
    buffered = b""
    while b"\n" not in buffered:
        ready, _, _ = select.select([read], [], [], 1.0)
        if os.getppid() != parent:
            os._exit(0)
        if ready:
            chunk = os.read(read, 65536)
            if not chunk:
                os._exit(HELD_EXIT_CODE)  # no whole request came: nothing ran
            buffered += chunk
    try:
        request = json.loads(buffered.split(b"\n", 1)[0])
    except ValueError:
        os._exit(HELD_EXIT_CODE)
    _child(request, {read}, parent, shadowable)


def _give(spare: _Spare, line: bytes) -> bool:
    """Hand a request to a spare; False when it has died (then reaped)."""
    try:
        data = memoryview(line + b"\n")
        while data:  # a long request may be written in parts (a signal between them)
            data = data[os.write(spare.to, data):]
        return True
    except OSError:
        os.waitpid(spare.pid, 0)
        return False
    finally:
        os.close(spare.to)


def _start_try(request: dict[str, Any], line: bytes, spare: _Spare | None, keep: set[int],
               shadowable: frozenset[str] | None = None) -> int:
    """The pid of the try for this request: the spare, if it is alive, else a new fork (OSError if it
    cannot fork). `keep`: the server's descriptors, which the child closes."""
    if spare is not None and _give(spare, line):
        return spare.pid
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        _child(request, keep, server, shadowable)
    return pid


def _spare_ended(spare: _Spare | None) -> bool:
    """True for a spare that has died (reaped here, its pipe closed)."""
    if spare is None:
        return False
    try:
        done, _ = os.waitpid(spare.pid, os.WNOHANG)
    except ChildProcessError:
        done = spare.pid
    if done:
        os.close(spare.to)
    return bool(done)


# -- which modules a workflow file imports ---------------------------------------------------------

def module_names(entries: Iterable[tuple[str, bool]]) -> set[str]:
    """The top-level module names that a folder's entries (name, is a folder) define: `x.py`, `x/`,
    `x.cpython-311-....so`."""
    return {name if is_dir else name.split(".", 1)[0] for name, is_dir in entries
            if is_dir or name.endswith((".py", ".so", ".pyd"))}


def local_modules(folder: Path) -> set[str]:
    """The top-level module names a folder defines."""
    try:
        return module_names((entry.name, entry.is_dir()) for entry in os.scandir(folder))
    except OSError:
        return set()


def _forget_shadowed(modules: frozenset[str], folder: Path) -> None:
    local = local_modules(folder)
    for name in [m for m in modules if m.split(".", 1)[0] in local]:
        sys.modules.pop(name, None)


def imported_names(source: bytes) -> list[str]:
    """The absolute imports of a Python source, anywhere in it: `a.b` for `import a.b` and
    `from a.b import c`, and `a.b.c?` for the latter's `c`, which may be a submodule."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found[node.module] = None
            found.update((f"{node.module}.{alias.name}?", None) for alias in node.names if alias.name != "*")
    return list(found)


class _Preloads:
    """For each workflow file, the modules its warm server imports (empty: none to import ahead)."""

    def __init__(self) -> None:
        self._names: dict[str, list[str]] = {}  # source's sha1 -> its imports
        self._findable: dict[str, bool] = {}

    def of(self, workflow_file: str) -> tuple[str, ...]:
        path = Path(workflow_file)
        try:
            source = path.read_bytes()
        except OSError:
            return ()
        return self.of_source(source, local_modules(path.parent))

    def of_source(self, source: bytes, local: set[str]) -> tuple[str, ...]:
        """Of a workflow file's source, with the module names its folder defines."""
        digest = hashlib.sha1(source).hexdigest()
        names = self._names.get(digest)
        if names is None:
            names = self._names[digest] = imported_names(source)
        return tuple(sorted(n for n in names if n.rstrip("?") not in sys.modules and self._may_import(n, local)))

    def _may_import(self, name: str, local: set[str]) -> bool:
        top = name.split(".", 1)[0].rstrip("?")
        if top in local or top == "__future__":
            return False
        parent = name.rstrip("?").rpartition(".")[0]
        if name.endswith("?") and parent in sys.modules:  # `from aiflow import Workflow`: a name, no module
            try:
                return importlib.util.find_spec(name.rstrip("?")) is not None
            except (ImportError, ValueError):
                return False
        if top not in self._findable:
            try:
                self._findable[top] = importlib.util.find_spec(top) is not None
            except (ImportError, ValueError):
                self._findable[top] = False
        return self._findable[top]


# -- a warm fork server ----------------------------------------------------------------------------

def _set_process_name(name: bytes) -> None:
    try:
        Path(f"/proc/{os.getpid()}/comm").write_bytes(name)
    except OSError:
        pass


def _serve_warm(modules: tuple[str, ...], requests: int, replies: int, parent: int) -> NoReturn:
    """In a warm fork server (a fork of the fork server): import `modules`, say it is ready, then fork
    tries for the requests that come until the request pipe closes, and exit when they have ended (at
    once if the fork server is gone: its tries then stop themselves, as a fork server's do)."""
    _set_process_name(WARM_NAME)
    signal.set_wakeup_fd(-1)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)

    def reply(message: dict[str, Any]) -> None:
        os.write(replies, (json.dumps(message) + "\n").encode())

    before = set(sys.modules)
    failed = []
    for name in modules:
        try:
            importlib.import_module(name.rstrip("?"))
        except BaseException as exc:  # noqa: BLE001 - a module may raise anything, SystemExit included
            if not name.endswith("?"):
                failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    if threading.active_count() > 1:
        threads = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        reply({"unusable": f"importing {', '.join(modules)} started threads ({threads})"})
        os._exit(0)
    imported = frozenset(set(sys.modules) - before)
    gc.freeze()  # as the fork server does (main)
    reply({"ready": True, "failed": failed})
    children: set[int] = set()
    keep = {requests, replies, wake_read, wake_write}
    spare: _Spare | None = None
    open_ = True
    buffered = b""
    while open_ or children:
        if os.getppid() != parent:
            break
        ready, _, _ = select.select([requests, wake_read] if open_ else [wake_read], [], [], 1.0)
        if wake_read in ready:
            os.read(wake_read, 4096)
        if requests in ready:
            chunk = os.read(requests, 65536)
            if not chunk:
                open_ = False
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                try:
                    request = json.loads(line)
                except ValueError as exc:
                    reply({"error": str(exc)})
                    continue
                taken, spare = spare, None
                try:
                    pid = _start_try(request, line, taken, keep, imported)
                except OSError as exc:
                    reply({"error": str(exc), "id": request.get("id")})
                    continue
                children.add(pid)
                reply({"pid": pid, "id": request.get("id")})
        for pid, code in _ended(children):
            reply({"exit": pid, "code": code})
        if _spare_ended(spare):
            spare = None
        if spare is None and open_:
            spare = _fork_spare(keep, imported)
    os._exit(0)


def _ended(children: set[int]) -> list[tuple[int, int]]:
    """Children that have ended, taken out of `children`, with their exit codes."""
    ended = []
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


@dataclass
class _Warm:
    """The fork server's handle on one warm server."""

    modules: tuple[str, ...]
    pid: int
    to: int  # its request pipe
    replies: int  # its reply pipe
    started: float
    last_used: float
    ready: bool = False
    closing: bool = False
    pending: list[Any] = field(default_factory=list)  # the ids of requests passed on, not answered yet
    tries: set[int] = field(default_factory=set)
    buffered: bytes = b""


# -- the fork server -------------------------------------------------------------------------------

class _Server:
    def __init__(self, requests: int, replies: int, preload: bool) -> None:
        self.requests = requests
        self.replies = replies
        self.preload = preload
        self.preloads = _Preloads()
        self.children: set[int] = set()  # tries forked here
        self.warm: dict[tuple[str, ...], _Warm] = {}
        self.unusable: set[tuple[str, ...]] = set()  # module sets whose warm server failed: tries fork here
        self.spare: _Spare | None = None  # the next try forked here, forked ahead
        # A child's exit wakes the select at once (the signal's byte lands in this pipe), so the worker
        # learns of it without waiting for a poll interval.
        self.wake_read, self.wake_write = os.pipe()
        os.set_blocking(self.wake_write, False)
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def reply(self, message: dict[str, Any]) -> None:
        os.write(self.replies, (json.dumps(message) + "\n").encode())

    def fds(self) -> set[int]:
        """Every descriptor a child must close."""
        fds = {self.requests, self.replies, self.wake_read, self.wake_write}
        if self.spare is not None:
            fds.add(self.spare.to)
        for warm in self.warm.values():
            fds |= {fd for fd in (warm.to, warm.replies) if fd >= 0}
        return fds

    def serve(self) -> None:
        buffered = b""
        while True:
            ready, _, _ = select.select([self.requests, self.wake_read, *(w.replies for w in self.warm.values())],
                                        [], [], 1.0)
            if self.wake_read in ready:
                os.read(self.wake_read, 4096)
            for warm in [w for w in self.warm.values() if w.replies in ready]:
                self._read_warm(warm)
            if self.requests in ready:
                chunk = os.read(self.requests, 65536)
                if not chunk:
                    return  # the worker is gone: so is the fork server (running children go on)
                buffered += chunk
                while b"\n" in buffered:
                    line, buffered = buffered.split(b"\n", 1)
                    self._request(line)
            for pid, code in _ended(self.children):
                self.reply({"exit": pid, "code": code})
            self._tend_warm()
            if _spare_ended(self.spare):
                self.spare = None
            if self.spare is None:
                self.spare = _fork_spare(self.fds(), None)

    def _request(self, line: bytes) -> None:
        try:
            request = json.loads(line)
        except ValueError as exc:
            self.reply({"error": str(exc)})
            return
        if "warm" in request:
            self._warm_of(self.preloads.of_source(str(request["warm"]).encode(), set(request.get("local", ()))))
            return
        warm = self._warm_of(self.preloads.of(str(request["argv"][0]))) if self.preload and request.get("argv") \
            else None
        if warm is not None and warm.ready and not warm.closing:
            warm.pending.append(request.get("id"))
            warm.last_used = time.monotonic()
            os.write(warm.to, line + b"\n")
            return
        spare, self.spare = self.spare, None
        try:
            pid = _start_try(request, line, spare, self.fds())
        except OSError as exc:
            self.reply({"error": str(exc), "id": request.get("id")})
            return
        self.children.add(pid)
        self.reply({"pid": pid, "id": request.get("id")})

    def _warm_of(self, modules: tuple[str, ...]) -> _Warm | None:
        """The warm server of these modules, started if there is none (None when none is needed)."""
        if not self.preload or not modules or modules in self.unusable:
            return None
        warm = self.warm.get(modules)
        if warm is None or warm.closing:
            warm = self._start_warm(modules)
        return warm

    def _start_warm(self, modules: tuple[str, ...]) -> _Warm | None:
        open_ = [w for w in self.warm.values() if not w.closing]
        if len(open_) >= MAX_WARM:
            self._close(min(open_, key=lambda w: w.last_used))
        if modules in self.warm:  # closing, its tries still running: the new one takes over its name
            self.warm[(*modules, f"closing-{self.warm[modules].pid}")] = self.warm.pop(modules)
        to_read, to_write = os.pipe()
        from_read, from_write = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (to_read, to_write, from_read, from_write):
                os.close(fd)
            return None
        if pid == 0:
            for fd in self.fds() | {to_write, from_read}:
                os.close(fd)
            _serve_warm(modules, to_read, from_write, os.getppid())
        os.close(to_read)
        os.close(from_write)
        now = time.monotonic()
        warm = self.warm[modules] = _Warm(modules, pid, to_write, from_read, now, now)
        return warm

    def _close(self, warm: _Warm) -> None:
        """Stop giving a warm server tries; it exits once those it has end."""
        if not warm.closing:
            warm.closing = True
            os.close(warm.to)
            warm.to = -1  # closed: no longer one of this server's descriptors (fds)

    def _read_warm(self, warm: _Warm) -> None:
        chunk = os.read(warm.replies, 65536)
        warm.buffered += chunk
        while b"\n" in warm.buffered:
            line, warm.buffered = warm.buffered.split(b"\n", 1)
            message = json.loads(line)
            if "ready" in message:
                warm.ready = True
            elif "unusable" in message:
                self.unusable.add(warm.modules)
                self._close(warm)
            elif "pid" in message or "error" in message:
                if message.get("id") in warm.pending:
                    warm.pending.remove(message.get("id"))
                if "pid" in message:
                    warm.tries.add(int(message["pid"]))
                self.reply(message)
            elif "exit" in message:
                warm.tries.discard(int(message["exit"]))
                self.reply(message)
        if not chunk:  # it has exited (or is about to): what it forked and did not report is lost
            os.waitpid(warm.pid, 0)
            os.close(warm.replies)
            if not warm.closing:
                os.close(warm.to)
            if not warm.ready:
                self.unusable.add(warm.modules)
            for request_id in warm.pending:
                self.reply({"error": "the warm fork server ended before it forked the try", "id": request_id})
            for pid in warm.tries:
                self.reply({"exit": pid, "code": LOST_EXIT_CODE})
            self.warm = {k: w for k, w in self.warm.items() if w is not warm}

    def _tend_warm(self) -> None:
        now = time.monotonic()
        for warm in list(self.warm.values()):
            if not warm.ready and now - warm.started > WARM_IMPORT_TIMEOUT:
                self.unusable.add(warm.modules)
                warm.started = float("inf")  # killed once; its pipe's end tells the rest (_read_warm)
                try:
                    os.kill(warm.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it ended meanwhile
            elif warm.ready and not warm.tries and not warm.pending and now - warm.last_used > WARM_IDLE:
                self._close(warm)


def main(argv: list[str] | None = None) -> int:
    global _TASK_NAME
    from aiflow.events.client import load_kafka
    from aiflow.worker import runner  # noqa: F401  (imported once here, inherited by every child)

    load_kafka()  # the event client imports its Kafka modules on first use: here, once, for every try

    try:
        _TASK_NAME = Path(f"/proc/{os.getpid()}/comm").read_bytes().strip() or _TASK_NAME
    except OSError:
        pass
    signal.pthread_sigmask(signal.SIG_BLOCK, {GO_SIGNAL})  # inherited: a held try takes it with sigtimedwait
    args = sys.argv[1:] if argv is None else argv
    replies = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # stray prints must not corrupt the reply stream
    # What is here now lives as long as the server: out of the collector's sight, so a child's
    # collections do not write to (and so copy) the pages it shares with this process.
    gc.freeze()
    _Server(sys.stdin.fileno(), replies, preload="--no-preload" not in args).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())


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
    """The worker's side of the fork server: starts it, asks it for children, learns how they end.

    A request is answered by its id, so several may be under way (`request`, then `result`). A try
    asked for with `hold` is forked and set up but runs nothing until `release`; `cancel` kills it
    unseen (its exit is not reported)."""

    def __init__(self, env: dict[str, str], preload: bool = True) -> None:
        import subprocess
        import threading

        from aiflow.process import python_module

        command = python_module("aiflow.worker.zygote") + ([] if preload else ["--no-preload"])
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        start_new_session=True)
        self.exits: dict[int, int] = {}
        self._answers: dict[int, dict[str, Any]] = {}  # request id -> its reply
        self._answered = threading.Condition()
        self._next_id = 0
        self._canceled: set[int] = set()  # pids whose exit nobody waits for
        self._exits_lock = threading.Lock()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="aiflow-fork-server", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the server's death
                if "exit" in message:
                    pid = int(message["exit"])
                    with self._exits_lock:
                        if pid in self._canceled:
                            self._canceled.discard(pid)
                        else:
                            self.exits[pid] = int(message["code"])
                elif isinstance(message.get("id"), int):
                    with self._answered:
                        self._answers[message["id"]] = message
                        self._answered.notify_all()
        finally:
            with self._answered:  # whoever waits for an answer learns that none will come
                self._answered.notify_all()

    def alive(self) -> bool:
        return self.process.poll() is None

    def gone(self) -> bool:
        """True once the server has exited and every reply it wrote has been read."""
        return not self.alive() and not self._reader.is_alive()

    def _send(self, request: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()

    def warm(self, source: bytes, local: Collection[str]) -> None:
        """Have the warm server of a workflow file ready before its first try (see the module's doc): its
        source, and the module names its folder defines."""
        with self._lock:
            self._send({"warm": source.decode("utf-8", errors="replace"), "local": sorted(local)})

    def request(self, argv: list[str], env: dict[str, str], cwd: str, log: str, hold: bool = False) -> int:
        """Ask for a try without waiting for the answer; returns the request's id, for `result`."""
        with self._lock:
            self._next_id += 1
            self._send({"argv": argv, "env": env, "cwd": cwd, "log": log, "hold": hold, "id": self._next_id})
            return self._next_id

    def result(self, request_id: int, timeout: float = 10.0) -> ForkedTask:
        """The try a `request` started; OSError if it could not be forked or no answer came in time."""
        with self._answered:
            if not self._answered.wait_for(lambda: request_id in self._answers or not self._reader.is_alive(),
                                           timeout):
                raise OSError("the fork server did not answer")
            reply = self._answers.pop(request_id, None)
        if reply is None:
            raise OSError("the fork server ended before it answered")
        if "error" in reply:
            raise OSError(f"the fork server could not fork: {reply['error']}")
        return ForkedTask(self, int(reply["pid"]))

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log: str, timeout: float = 10.0) -> ForkedTask:
        return self.result(self.request(argv, env, cwd, log), timeout)

    @staticmethod
    def release(task: ForkedTask) -> None:
        """Let a held try run."""
        os.kill(task.pid, GO_SIGNAL)

    def cancel(self, request_id: int) -> None:
        """Kill a held try before it ran anything; its exit is not reported."""
        try:
            task = self.result(request_id)
        except OSError:
            return  # never forked
        self.abandon(task.pid)
        try:
            os.kill(task.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def abandon(self, pid: int) -> None:
        """Nobody waits for this child's end: its exit code is dropped (kept, a later child with the
        same pid would look ended at once)."""
        with self._exits_lock:
            if self.exits.pop(pid, None) is None:
                self._canceled.add(pid)

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
