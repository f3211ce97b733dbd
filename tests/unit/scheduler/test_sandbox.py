"""A snapshot's own process (no broker): the user's code loads and runs there, never in the scheduler."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from aiflow.errors import WorkflowFileError
from aiflow.protocol.messages import Event
from aiflow.scheduler import core
from aiflow.scheduler.sandbox import HostError, RemoteCondition, SnapshotHost
from aiflow.sdk.status import ExecutionType

SNAP = core.Snapshot(1, "file:///s.zip", "ab" * 32, "flow.py")

COUNTING = """
from aiflow import Condition, Operator, TaskAction, ValueStateDescriptor, Workflow, MeetAllCondition
from helpers import THRESHOLD, Counter

with Workflow(name="counting") as wf:
    train = Operator("train")
    deploy = Operator("deploy", periodic_expression="interval@0 0 1 0")
    both = MeetAllCondition("both", [Counter(["a"]), Counter(["b"])])
    train.action_on_condition(TaskAction.START, Counter(["sample"]))
    deploy.start_after(train)
    deploy.action_on_condition(TaskAction.RESTART, both)
"""

HELPERS = """
from aiflow import Condition, ValueStateDescriptor

THRESHOLD = {threshold}

class Counter(Condition):
    def is_met(self, event, context):
        state = context.get_state(ValueStateDescriptor("n-" + self.expect_event_keys[0]))
        n = (state.value() or 0) + 1
        state.update(n)
        print("counted", n)  # to stderr: stdout carries the answers
        return n % THRESHOLD == 0
"""


def snapshot(folder: Path, flow: str, helpers: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "flow.py").write_text(flow)
    if helpers is not None:
        (folder / "helpers.py").write_text(helpers)
    return folder / "flow.py"


def host(file: Path, name: str, load_timeout: float = 30, condition_timeout: float = 5,
         memory_mb: int = 0) -> SnapshotHost:
    return SnapshotHost.for_workflow(file, "default", name, load_timeout=load_timeout, memory_mb=memory_mb,
                        condition_timeout=condition_timeout)


def test_a_workflow_is_rebuilt_from_its_process_and_its_own_conditions_are_evaluated_there(tmp_path: Path) -> None:
    h = host(snapshot(tmp_path / "s", COUNTING, HELPERS.format(threshold=2)), "counting")
    try:
        wf = h.workflow_object(h.load())
        assert sorted(wf.tasks) == ["deploy", "train"]
        assert wf.tasks["deploy"].periodic is not None
        [train_rule] = wf.rules["train"]
        assert isinstance(train_rule.condition, RemoteCondition)
        assert train_rule.condition.subscriptions("default") == [("default", "sample")]
        assert "Counter" not in sys.modules and "helpers" not in sys.modules  # nothing of the user's loaded here

        ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", 0.0)
        sample = Event("sample")
        assert core.on_event(ex, wf, sample, "", 1.0) == []  # 1st sample: not yet
        assert ex.states == {"n-sample": 1}  # the process's state came back into the execution
        started = [o for o in core.on_event(ex, wf, sample, "", 2.0) if isinstance(o, core.StartTry)]
        assert [(o.task, o.try_number) for o in started] == [("train", 1)]
    finally:
        h.close()


def test_two_snapshots_with_their_own_helpers_each_see_their_own(tmp_path: Path) -> None:
    first = host(snapshot(tmp_path / "one", COUNTING, HELPERS.format(threshold=1)), "counting")
    second = host(snapshot(tmp_path / "two", COUNTING, HELPERS.format(threshold=3)), "counting")
    try:
        wf1, wf2 = first.workflow_object(first.load()), second.workflow_object(second.load())
        ex1, _ = core.start_execution(wf1, "e1", SNAP, ExecutionType.MANUAL, "test", 0.0)
        ex2, _ = core.start_execution(wf2, "e2", SNAP, ExecutionType.MANUAL, "test", 0.0)
        fired1 = [o for o in core.on_event(ex1, wf1, Event("sample"), "", 1.0) if isinstance(o, core.StartTry)]
        fired2 = [o for o in core.on_event(ex2, wf2, Event("sample"), "", 1.0) if isinstance(o, core.StartTry)]
        assert [o.task for o in fired1] == ["train"]  # THRESHOLD 1 in its helpers.py
        assert fired2 == []  # THRESHOLD 3 in its own
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(("code", "expected"), [
    ("while True:\n    pass\n", "did not answer within 2 s"),
    ("import os\nos._exit(3)\n", "exit code 3"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "SIGKILL"),
    ("x = 1\nraise RuntimeError('no model server')\n", "flow.py:2: RuntimeError: no model server"),
    ("import missing_library_xyz\n", "ModuleNotFoundError"),
    ("blob = bytearray(2 * 1024 ** 3)\n", "MemoryError"),
])
def test_a_file_that_loops_exits_raises_or_eats_memory_at_import_is_refused_with_the_reason(
        tmp_path: Path, code: str, expected: str) -> None:
    looping = "while True" in code  # the others get time enough for a cold interpreter on a busy machine
    h = host(snapshot(tmp_path / "s", code + COUNTING), "counting", load_timeout=2 if looping else 60, memory_mb=1024)
    with pytest.raises(WorkflowFileError, match=expected):
        h.load()
    assert h._process is None  # nothing left running


LOOPING_CONDITION = """
from aiflow import Condition, Operator, TaskAction, Workflow

class Stuck(Condition):
    def is_met(self, event, context):
        if event.key == "stuck":
            while True:
                pass
        return True

with Workflow(name="stuck"):
    Operator("t").action_on_condition(TaskAction.START, Stuck(["stuck", "fine"]))
"""


def test_a_condition_that_does_not_answer_is_not_met_and_its_process_starts_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = host(snapshot(tmp_path / "s", LOOPING_CONDITION), "stuck", condition_timeout=1)
    try:
        wf = h.workflow_object(h.load())
        ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", 0.0)
        [rule] = wf.rules["t"]
        with pytest.raises(HostError, match="did not answer within 1 s"):
            rule.condition.is_met(Event("stuck"), core._Context(ex))
        started = time.monotonic()
        with pytest.raises(HostError, match="process is down"):  # at once: no second wait
            rule.condition.is_met(Event("fine"), core._Context(ex))
        assert time.monotonic() - started < 0.5
        assert core.on_event(ex, wf, Event("fine"), "", 1.0) == []  # the core treats it as not met
        h.revive()
        assert h._process is None  # down for sandbox.RESTART_AFTER first
        monkeypatch.setattr(h, "_restart_at", 0.0)
        h.revive()  # before a transaction, once the pause is over
        started_tries = [o for o in core.on_event(ex, wf, Event("fine"), "", 2.0) if isinstance(o, core.StartTry)]
        assert [o.task for o in started_tries] == ["t"]  # a new process answered
    finally:
        h.close()


def test_a_file_with_only_built_in_rules_leaves_no_process_behind(tmp_path: Path) -> None:
    flow = ("from aiflow import Workflow, Operator, TaskAction\n"
            "with Workflow(name='plain'):\n"
            "    a = Operator('a')\n"
            "    b = Operator('b')\n"
            "    b.start_after(a)\n"
            "    a.action_on_event_received(TaskAction.RESTART, 'again')\n")
    h = host(snapshot(tmp_path / "s", flow), "plain")
    wf = h.workflow_object(h.load())
    assert h._process is None
    ex, outputs = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", 0.0)
    assert [(o.task, o.try_number) for o in outputs if isinstance(o, core.StartTry)] == [("a", 1)]


def test_upload_refuses_a_file_that_loops_at_import_saying_it_timed_out(tmp_path: Path) -> None:
    from aiflow.config import Config
    from aiflow.ops import inspect_workflow_file

    file = snapshot(tmp_path / "s", "import time\nwhile True:\n    time.sleep(1)\n" + COUNTING)
    config = Config.load(home=tmp_path / "home", environ={"AIFLOW_WORKFLOWS_LOAD_TIMEOUT": "2"})
    started = time.monotonic()
    with pytest.raises(WorkflowFileError, match=r"flow.py: loading it timed out after 2 s \(workflows.load_timeout\)"):
        inspect_workflow_file(file, "default", config)
    assert time.monotonic() - started < 20


def test_trigger_conditions_of_the_users_run_in_their_own_process_and_a_missing_class_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_triggers.py").write_text(
        "from aiflow import Condition, ValueStateDescriptor\n"
        "class EveryOther(Condition):\n"
        "    def is_met(self, event, context):\n"
        "        state = context.get_state(ValueStateDescriptor('n'))\n"
        "        state.update((state.value() or 0) + 1)\n"
        "        return state.value() % 2 == 0\n")
    monkeypatch.chdir(tmp_path)
    every_other = {"type": "class", "class": "my_triggers:EveryOther",
                   "state": {"expect_event_keys": ["tick"], "namespace": None}}
    missing = {"type": "class", "class": "gone_module:Gone", "state": {}}
    nested = {"type": "MeetAnyCondition", "conditions": [every_other]}
    h = SnapshotHost.for_conditions([every_other, missing, nested], "default", "w", load_timeout=30, memory_mb=0,
                                    condition_timeout=5)
    try:
        conditions, errors = h.conditions(h.load())
        first, gone, wrapped = conditions
        assert gone is None and "No module named 'gone_module'" in errors[1]
        assert isinstance(first, RemoteCondition) and first.subscriptions("default") == [("default", "tick")]
        assert "my_triggers" not in sys.modules  # imported there, not here
        ws = core.WorkflowState("default", "w")
        fired = [core.on_trigger_event(ws, [(1, first), (3, wrapped)], Event("tick"), float(n)) for n in range(4)]
        assert fired == [[], [1, 3], [], [1, 3]]  # each trigger with its own state, kept in the workflow's
    finally:
        h.close()


def test_a_snapshot_process_ends_when_the_scheduler_that_started_it_is_sigkilled(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess

    from tests.conftest import process_alive

    file = snapshot(tmp_path / "s", COUNTING, HELPERS.format(threshold=2))
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from aiflow.scheduler.sandbox import SnapshotHost\n"
        f"h = SnapshotHost.for_workflow(Path({str(file)!r}), 'default', 'counting', load_timeout=60, memory_mb=0,"
        " condition_timeout=5)\n"
        "h.load()\n"
        "print(h._process.pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        host_pid = int(parent.stdout.readline())
        assert process_alive(host_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while process_alive(host_pid):
            assert time.monotonic() < deadline, "the snapshot process outlived its scheduler"
            time.sleep(0.2)
    finally:
        parent.kill()


def test_a_scheduler_with_more_than_1024_descriptors_open_still_talks_to_its_snapshot_processes(
        tmp_path: Path) -> None:
    """A long-running scheduler holds many connections; select() cannot watch a descriptor past 1024."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"the descriptor limit here is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    null = os.open(os.devnull, os.O_RDONLY)
    held = [os.dup(null) for _ in range(1100)]
    try:
        h = host(snapshot(tmp_path / "s", COUNTING, HELPERS.format(threshold=1)), "counting")
        wf = h.workflow_object(h.load())
        assert h._process is not None and h._process.stdout is not None and h._process.stdout.fileno() > 1024
        ex, _ = core.start_execution(wf, "e1", SNAP, ExecutionType.MANUAL, "test", 0.0)
        started = [o for o in core.on_event(ex, wf, Event("sample"), "", 1.0) if isinstance(o, core.StartTry)]
        assert [o.task for o in started] == ["train"]
        h.close()
    finally:
        for fd in held:
            os.close(fd)
        os.close(null)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


SLEEPING = """
import time
time.sleep(600)  # a file whose imports take their time (a cold scikit-learn on a busy machine, a network mount)
from aiflow import Operator, Workflow
with Workflow(name="slow"):
    Operator("t")
"""


def test_a_host_aborted_before_its_load_ends_that_load_at_once(tmp_path: Path) -> None:
    h = host(snapshot(tmp_path / "s", SLEEPING), "slow", load_timeout=60)
    h.abort()  # as a stopping scheduler does while the loader thread is about to start the process
    with pytest.raises(WorkflowFileError, match="SIGKILL"):
        h.load()
    assert h._process is None


def _process_running(text: str, within: float) -> int | None:
    """The pid of a snapshot process whose command line holds `text`, once there is one."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "aiflow.sdk.host" in cmdline and text in cmdline:
                return int(entry.name)
        time.sleep(0.05)
    return None


def test_closing_the_cache_ends_a_background_load_under_way_instead_of_waiting_for_it(tmp_path: Path) -> None:
    from aiflow.config import Config
    from aiflow.scheduler.workflows import WorkflowCache
    from aiflow.store import snapshots
    from aiflow.store.blobs import blob_store

    config = Config.load(home=tmp_path / "home", environ={"AIFLOW_WORKFLOWS_LOAD_TIMEOUT": "600"})
    file = snapshot(tmp_path / "s", SLEEPING)
    packed = snapshots.pack(file, [], tmp_path)
    uri = blob_store(config).put(f"default/flow/{packed.sha256}.zip", packed.path)
    cache = WorkflowCache(config)
    cache.load_in_background("default", "slow", uri, packed.sha256, packed.workflow_file)
    pid = _process_running(str(config.home), within=60)
    assert pid is not None, "the background load never started its process"
    closing = threading.Thread(target=cache.close, daemon=True)
    closing.start()
    closing.join(60)  # the file sleeps 600 s, within its load timeout: a close that waits for it is still here
    assert not closing.is_alive(), "close() waited for the background load"
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped
    with pytest.raises(WorkflowFileError, match="stopping|SIGKILL"):
        cache.get("default", "slow", uri, packed.sha256, packed.workflow_file)
