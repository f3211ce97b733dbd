"""The fork server, as real processes: exit codes are taken once (a reused pid cannot look finished),
and when the server dies its children end as lost and stop themselves."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from aiflow.events.context import TaskContext
from aiflow.worker.zygote import HELD_EXIT_CODE, LOST_EXIT_CODE, SPARE_NAME, WARM_NAME, ForkServer, local_modules
from tests.conftest import process_alive

SLEEPER = """
import time
from aiflow import Workflow, PythonOperator
with Workflow(name="sleepy"):
    PythonOperator(name="t", python_callable=lambda: time.sleep(120))
"""


def wait_for(check: object, timeout: float = 30.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_an_exit_code_moves_from_the_servers_table_to_its_task(tmp_path: Path) -> None:
    server = ForkServer(dict(os.environ))
    try:
        task = server.spawn(["too", "few"], dict(os.environ), str(tmp_path), str(tmp_path / "log"))
        wait_for(lambda: task.poll() is not None)
        assert task.poll() == 2  # the runner's usage error
        assert task.pid not in server.exits  # pruned: a later child with this pid starts clean
    finally:
        server.close()


def test_when_the_fork_server_dies_its_children_end_as_lost_and_stop_themselves(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SLEEPER)
    env = {**os.environ, **TaskContext("default", "sleepy", "e1", "t", 1).to_env()}
    server = ForkServer(env)
    task = server.spawn([str(tmp_path / "flow.py"), "sleepy", "t"], env, str(tmp_path), str(tmp_path / "log"))
    log = tmp_path / "log"
    wait_for(lambda: log.exists() and "starting task t" in log.read_text())
    assert task.poll() is None
    os.kill(server.process.pid, signal.SIGKILL)
    wait_for(lambda: task.poll() is not None)
    assert task.poll() == LOST_EXIT_CODE and not server.alive()
    wait_for(lambda: not process_alive(task.pid), timeout=10)  # its parent watch stopped it
    server.close()


# -- held tries and spares ------------------------------------------------------------------------

MARKING = """
import os
with open("module_runs.txt", "a") as f:  # the file's first lines: anything of the task running
    f.write(f"{os.getpid()}\\n")
from aiflow import Workflow, PythonOperator
with Workflow(name="marking"):
    PythonOperator(name="t", python_callable=lambda: None)
"""


def marking_try(tmp_path: Path) -> tuple[Path, list[str], dict[str, str]]:
    folder = snapshot(tmp_path, MARKING)
    env = {**os.environ, **TaskContext("default", "marking", "e1", "t", 1).to_env()}
    return folder, [str(folder / "flow.py"), "marking", "t"], env


def test_a_held_try_runs_nothing_until_it_is_released(tmp_path: Path) -> None:
    folder, argv, env = marking_try(tmp_path)
    server = ForkServer(env)
    try:
        task = server.result(server.request(argv, env, str(folder), str(folder / "log"), hold=True))
        time.sleep(1.5)  # a commit that takes its time
        assert task.poll() is None and process_alive(task.pid)
        assert lines(folder / "module_runs.txt") == []
        server.release(task)
        wait_for(lambda: task.poll() is not None)
        assert task.poll() == 0 and lines(folder / "module_runs.txt") == [str(task.pid)]
    finally:
        server.close()


def test_a_canceled_held_try_never_runs_and_its_end_is_not_reported(tmp_path: Path) -> None:
    folder, argv, env = marking_try(tmp_path)
    server = ForkServer(env)
    try:
        request = server.request(argv, env, str(folder), str(folder / "log"), hold=True)
        pid = server.result(request).pid
        server._answers[request] = {"pid": pid, "id": request}  # as if not taken yet: cancel asks for it again
        server.cancel(request)
        wait_for(lambda: not process_alive(pid))
        time.sleep(0.3)  # the server's report of its end has come (and was dropped)
        assert lines(folder / "module_runs.txt") == [] and server.exits == {}
        assert run_try_of(server, argv, env, folder) == 0  # the next try runs as ever
    finally:
        server.close()


def test_a_held_try_whose_worker_is_gone_ends_without_running(tmp_path: Path) -> None:
    folder, argv, env = marking_try(tmp_path)
    server = ForkServer(env)
    task = server.result(server.request(argv, env, str(folder), str(folder / "log"), hold=True))
    os.kill(server.process.pid, signal.SIGKILL)  # as when the worker dies: its fork server goes
    wait_for(lambda: not process_alive(task.pid), timeout=10)
    assert lines(folder / "module_runs.txt") == []
    server.close()


def run_try_of(server: ForkServer, argv: list[str], env: dict[str, str], folder: Path) -> int | None:
    task = server.spawn(argv, env, str(folder), str(folder / "log"))
    wait_for(lambda: task.poll() is not None)
    return task.poll()


def test_a_try_is_taken_by_the_spare_forked_ahead_and_one_that_died_is_replaced(tmp_path: Path) -> None:
    folder, argv, env = marking_try(tmp_path)
    server = ForkServer(env)
    try:
        wait_for(lambda: len(children_named(server.process.pid, SPARE_NAME)) == 1)
        [spare] = children_named(server.process.pid, SPARE_NAME)
        assert run_try_of(server, argv, env, folder) == 0
        assert lines(folder / "module_runs.txt") == [str(spare)]  # the spare became the try
        assert "starting task t" in (folder / "log").read_text()  # its output goes to its log, as any try's
        wait_for(lambda: len(children_named(server.process.pid, SPARE_NAME)) == 1)
        [spare] = children_named(server.process.pid, SPARE_NAME)
        os.kill(spare, signal.SIGKILL)
        wait_for(lambda: not process_alive(spare))
        assert run_try_of(server, argv, env, folder) == 0  # a dead spare: the try is forked anew
        runs = lines(folder / "module_runs.txt")
        assert len(runs) == 2 and runs[1] != str(spare)
        assert HELD_EXIT_CODE not in server.exits.values()
        [spare] = children_named(server.process.pid, SPARE_NAME)
    finally:
        server.close()
    wait_for(lambda: not process_alive(spare), timeout=10)  # a spare ends with its server


# -- warm fork servers ------------------------------------------------------------------------------

def make_site(tmp_path: Path, thread: bool = False) -> tuple[Path, Path]:
    """An installed package `heavydep` (and `heavyhelper`, which it imports) whose import takes a while
    and writes the importing process's pid to a file; with `thread`, its import starts a thread."""
    site, imports = tmp_path / "site", tmp_path / "imports.txt"
    (site / "heavydep").mkdir(parents=True)
    (site / "heavyhelper.py").write_text("WHERE = 'installed'\n")
    (site / "heavydep" / "__init__.py").write_text(
        "import os, time, heavyhelper\n"
        "time.sleep(0.5)\n"
        f"with open({str(imports)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
        + ("import threading\nthreading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
           if thread else ""))
    return site, imports


FLOW = """
import os
import heavydep
from aiflow import Workflow, PythonOperator

with open("module_runs.txt", "a") as f:  # the file's own code: run by every try, in its folder
    f.write(f"{os.getpid()}\\n")

def job():
    import importlib
    helper = importlib.import_module("heavyhelper")  # not an import statement: no part of what is preloaded
    with open("seen.txt", "a") as f:
        f.write(f"{os.getpid()} {os.environ['AIFLOW_TRY_NUMBER']} {helper.WHERE}\\n")

with Workflow(name="warm"):
    PythonOperator(name="t", python_callable=job)
"""


def snapshot(tmp_path: Path, source: str) -> Path:
    """A snapshot's folder holding `flow.py`."""
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "flow.py").write_text(source)
    return folder


def ask_warm(server: ForkServer, workflow_file: Path) -> None:
    """Ask for the file's warm server, as a worker does for a workflow just uploaded."""
    server.warm(workflow_file.read_bytes(), local_modules(workflow_file.parent))


def imported_once(imports: Path) -> bool:
    """Whether the warm server has imported heavydep (and, a moment later, said it is ready)."""
    if len(lines(imports)) != 1:
        return False
    time.sleep(0.3)
    return True


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def run_try(server: ForkServer, folder: Path, env: dict[str, str], number: int) -> int | None:
    try_env = {**env, **TaskContext("default", "warm", "e1", "t", number).to_env()}
    task = server.spawn([str(folder / "flow.py"), "warm", "t"], try_env, str(folder), str(folder / f"{number}.log"))
    wait_for(lambda: task.poll() is not None)
    return task.poll()


def children_named(parent: int, name: bytes) -> list[int]:
    """The child processes of `parent` whose process name is `name`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            if ppid == parent and (proc / "comm").read_bytes().strip() == name:
                found.append(int(proc.name))
        except (OSError, ValueError):
            continue
    return found


def warm_servers(server: ForkServer) -> list[int]:
    return children_named(server.process.pid, WARM_NAME)


def test_tries_fork_from_a_warm_server_that_imported_the_files_modules_once(tmp_path: Path) -> None:
    site, imports = make_site(tmp_path)
    folder = snapshot(tmp_path, FLOW)
    env = {**os.environ, "PYTHONPATH": str(site)}
    server = ForkServer(env)
    try:
        ask_warm(server, folder / "flow.py")
        wait_for(lambda: imported_once(imports))
        [warm] = warm_servers(server)
        assert lines(imports) == [str(warm)]
        assert [run_try(server, folder, env, n) for n in (1, 2, 3)] == [0, 0, 0]
        # The warm server too forks its next try ahead (after the last one was taken: wait for it).
        wait_for(lambda: len(children_named(warm, SPARE_NAME)) == 1)
        assert lines(imports) == [str(warm)]  # no try imported heavydep again
        runs = lines(folder / "module_runs.txt")
        assert len(set(runs)) == 3 and str(warm) not in runs  # the file itself ran in each try, not ahead
        seen = (folder / "seen.txt").read_text().splitlines()
        assert [line.split()[1:] for line in seen] == [["1", "installed"], ["2", "installed"], ["3", "installed"]]
    finally:
        server.close()


def test_a_module_beside_the_file_wins_over_one_the_warm_server_imported(tmp_path: Path) -> None:
    site, imports = make_site(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        (folder / "flow.py").write_text(FLOW)
    (second / "heavyhelper.py").write_text("WHERE = 'beside the file'\n")  # heavydep imports the installed one
    env = {**os.environ, "PYTHONPATH": str(site)}
    server = ForkServer(env)
    try:
        ask_warm(server, first / "flow.py")
        wait_for(lambda: imported_once(imports))
        assert run_try(server, second, env, 1) == 0  # same imports ahead (heavydep): the same warm server
        assert lines(imports) == [str(w) for w in warm_servers(server)]
        assert (second / "seen.txt").read_text().split()[1:] == ["1", "beside", "the", "file"]
    finally:
        server.close()


def test_when_a_warm_server_dies_its_tries_end_as_lost_and_the_next_ones_still_start(tmp_path: Path) -> None:
    site, imports = make_site(tmp_path)
    folder = snapshot(tmp_path, SLEEPER.replace("import time", "import time, heavydep"))
    env = {**os.environ, "PYTHONPATH": str(site), **TaskContext("default", "sleepy", "e1", "t", 1).to_env()}
    server = ForkServer(env)
    try:
        ask_warm(server, folder / "flow.py")
        wait_for(lambda: imported_once(imports))
        [warm] = warm_servers(server)
        task = server.spawn([str(folder / "flow.py"), "sleepy", "t"], env, str(folder), str(folder / "log"))
        wait_for(lambda: (folder / "log").exists() and "starting task t" in (folder / "log").read_text())
        os.kill(warm, signal.SIGKILL)
        wait_for(lambda: task.poll() is not None)
        assert task.poll() == LOST_EXIT_CODE and server.alive()
        wait_for(lambda: not process_alive(task.pid), timeout=10)  # its parent watch stopped it
        (folder / "flow.py").write_text(FLOW)
        assert run_try(server, folder, {**os.environ, "PYTHONPATH": str(site)}, 2) == 0
    finally:
        server.close()


def test_a_warm_server_whose_imports_start_a_thread_is_not_used(tmp_path: Path) -> None:
    site, imports = make_site(tmp_path, thread=True)
    folder = snapshot(tmp_path, FLOW)
    env = {**os.environ, "PYTHONPATH": str(site)}
    server = ForkServer(env)
    try:
        ask_warm(server, folder / "flow.py")
        wait_for(lambda: len(lines(imports)) == 1 and not warm_servers(server))  # it imported, then left
        assert [run_try(server, folder, env, n) for n in (1, 2)] == [0, 0]
        assert len(lines(imports)) == 3  # each try imported heavydep itself, in its own process
        assert not warm_servers(server)
    finally:
        server.close()


def test_without_preload_no_warm_server_starts(tmp_path: Path) -> None:
    site, imports = make_site(tmp_path)
    folder = snapshot(tmp_path, FLOW)
    env = {**os.environ, "PYTHONPATH": str(site)}
    server = ForkServer(env, preload=False)
    try:
        ask_warm(server, folder / "flow.py")
        assert [run_try(server, folder, env, n) for n in (1, 2)] == [0, 0]
        assert len(lines(imports)) == 2 and not warm_servers(server)
    finally:
        server.close()


KAFKA_SEEN = """
import sys
with open("kafka_loaded.txt", "w") as f:  # the file's first lines, before it imports anything itself
    names = ("confluent_kafka", "aiflow.kafka.clients", "aiflow.kafka.sending")
    f.write(" ".join(m for m in names if m in sys.modules))
from aiflow import Workflow, PythonOperator
with Workflow(name="warm"):
    PythonOperator(name="t", python_callable=lambda: None)
"""


def test_a_try_finds_the_event_clients_kafka_modules_imported_by_the_fork_server(tmp_path: Path) -> None:
    # The event client imports them on first use, so that loading a workflow file to upload it does not;
    # the fork server imports them once, so a try's first event does not pay for them.
    folder = snapshot(tmp_path, KAFKA_SEEN)
    server = ForkServer(dict(os.environ), preload=False)
    try:
        assert run_try(server, folder, dict(os.environ), 1) == 0
        assert (folder / "kafka_loaded.txt").read_text().split() == [
            "confluent_kafka", "aiflow.kafka.clients", "aiflow.kafka.sending"]
    finally:
        server.close()
