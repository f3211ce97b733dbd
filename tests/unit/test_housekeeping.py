"""Working folders, task logs and the scheduler's snapshot cache are removed once idle past their retention."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from aiflow import housekeeping
from aiflow.config import Config
from aiflow.errors import ConfigError
from aiflow.worker.service import Worker

DAY = 24 * 3600.0
NOW = time.time()


def _tree(path: Path, files: dict[str, str], age: float) -> Path:
    """Files under `path`, with every file and folder last modified `age` seconds ago."""
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    _age(path, age)
    return path


def _age(path: Path, age: float) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for name in (*files, *dirs):
            os.utime(os.path.join(root, name), (NOW - age, NOW - age))
    os.utime(path, (NOW - age, NOW - age))


def test_an_idle_folder_is_removed_and_a_recent_one_kept(tmp_path: Path) -> None:
    old = _tree(tmp_path / "old", {"a.txt": "a", "sub/b.txt": "b"}, 8 * DAY)
    recent = _tree(tmp_path / "recent", {"a.txt": "a"}, 1 * DAY)
    assert housekeeping.sweep(tmp_path, 7 * DAY, now=NOW) == [old]
    assert not old.exists() and recent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recent"]  # nothing left aside


def test_one_recent_file_deep_inside_keeps_the_whole_folder(tmp_path: Path) -> None:
    folder = _tree(tmp_path / "exec", {"data/model/weights.bin": "w", "snapshot.py": "x"}, 30 * DAY)
    os.utime(folder / "data" / "model" / "weights.bin", (NOW - 60, NOW - 60))
    assert housekeeping.sweep(tmp_path, 7 * DAY, now=NOW) == []
    assert (folder / "snapshot.py").exists()


def test_a_folder_in_use_is_never_removed(tmp_path: Path) -> None:
    _tree(tmp_path / "running", {"a.txt": "a"}, 30 * DAY)
    _tree(tmp_path / "done", {"a.txt": "a"}, 30 * DAY)
    assert housekeeping.sweep(tmp_path, 7 * DAY, {"running"}, now=NOW) == [tmp_path / "done"]
    assert housekeeping.sweep(tmp_path, 7 * DAY, lambda: {"running"}, now=NOW) == []
    assert (tmp_path / "running" / "a.txt").exists()


def test_a_retention_of_zero_removes_nothing(tmp_path: Path) -> None:
    _tree(tmp_path / "old", {"a.txt": "a"}, 300 * DAY)
    assert housekeeping.sweep(tmp_path, 0, now=NOW) == []
    assert (tmp_path / "old" / "a.txt").exists()


def test_a_missing_root_is_nothing_to_sweep(tmp_path: Path) -> None:
    assert housekeeping.sweep(tmp_path / "absent", 7 * DAY, depth=2, now=NOW) == []


def test_task_logs_go_by_execution_and_the_services_logs_stay(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _tree(logs / "wf" / "e-old", {"train/1.log": "x"}, 10 * DAY)
    _tree(logs / "wf" / "e-new", {"train/1.log": "x"}, 0)
    _tree(logs / "gone" / "e-old2", {"train/1.log": "x"}, 10 * DAY)
    for name in ("scheduler.log", "worker.log.1"):
        (logs / name).write_text("service")
        os.utime(logs / name, (NOW - 100 * DAY, NOW - 100 * DAY))
    _age(logs / "gone", 10 * DAY)
    removed = housekeeping.sweep(logs, 7 * DAY, depth=2, now=NOW)
    assert removed == [logs / "gone" / "e-old2", logs / "wf" / "e-old"]
    assert (logs / "wf" / "e-new" / "train" / "1.log").exists()
    assert (logs / "scheduler.log").exists() and (logs / "worker.log.1").exists()
    # `gone` is empty now; it goes once it has been left alone for the retention too.
    assert (logs / "gone").is_dir()
    _age(logs / "gone", 8 * DAY)
    housekeeping.sweep(logs, 7 * DAY, depth=2, now=NOW)
    assert not (logs / "gone").exists() and (logs / "wf").is_dir()


def test_background_deletion_moves_the_folder_aside_at_once(tmp_path: Path) -> None:
    _tree(tmp_path / "wf" / "e1", {f"f{i}": "x" for i in range(50)}, 10 * DAY)
    assert housekeeping.sweep(tmp_path, 7 * DAY, depth=2, now=NOW, background=True) == [tmp_path / "wf" / "e1"]
    assert not (tmp_path / "wf" / "e1").exists()  # a new try of e1 would get a new folder
    deadline = time.monotonic() + 10
    while list((tmp_path / "wf").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list((tmp_path / "wf").iterdir()) == []


def test_the_snapshot_cache_keeps_the_snapshots_in_use(tmp_path: Path) -> None:
    used, unused, fresh = "a" * 64, "b" * 64, "c" * 64
    for sha, age in ((used, 30 * DAY), (unused, 30 * DAY), (fresh, 0)):
        _tree(tmp_path / sha, {"flow/flow.py": "x"}, age)
    assert housekeeping.sweep_snapshot_cache(tmp_path, 7 * DAY, {used}, now=NOW) == [tmp_path / unused]
    assert sorted(p.name for p in tmp_path.iterdir()) == [used, fresh]


def test_the_worker_sweeps_what_its_tries_do_not_use(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={})
    for root in ("working_dir", "logs"):
        for execution in ("idle", "busy"):
            _tree(tmp_path / root / "wf" / execution, {"x.txt": "x"}, 8 * DAY)
    worker = Worker.__new__(Worker)  # the sweep needs no Kafka
    worker.config, worker.name = config, "w"
    worker.running, worker.not_started = {("busy", "t", 1): None}, {}  # type: ignore[dict-item]
    worker.working_dir_retention, worker._next_sweep = 7 * DAY, 0.0
    worker._sweep()
    deadline = time.monotonic() + 10
    while (tmp_path / "working_dir" / "wf" / "idle").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for root in ("working_dir", "logs"):
        assert not (tmp_path / root / "wf" / "idle").exists()
        assert (tmp_path / root / "wf" / "busy" / "x.txt").exists()
    _tree(tmp_path / "working_dir" / "wf" / "later", {"x.txt": "x"}, 8 * DAY)
    worker._sweep()  # within the interval: nothing is looked at
    assert (tmp_path / "working_dir" / "wf" / "later").exists()


def test_retention_keys_are_read_and_checked(tmp_path: Path) -> None:
    config = Config.load(home=tmp_path, environ={"AIFLOW_WORKER_WORKING_DIR_RETENTION": "0"})
    assert config.values["worker.working_dir_retention"] == 0
    assert config.values["scheduler.snapshot_cache_retention"] == 7 * 24 * 3600
    with pytest.raises(ConfigError, match="scheduler.snapshot_cache_retention"):
        Config.load(home=tmp_path, environ={"AIFLOW_SCHEDULER_SNAPSHOT_CACHE_RETENTION": "-1"})
