"""A background service's log rotates by size, stays owner-only, and keeps what bypasses logging."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aiflow.errors import AIFlowError
from aiflow.process import ENV_SERVICE_LOG, start_daemon

# A service as start_daemon runs it: stdout and stderr on the log file, its name in the environment.
SERVICE = textwrap.dedent("""
    import logging, os, subprocess, sys
    from aiflow.process import log_to_service_file
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    path = log_to_service_file(max_bytes=4000, backups=3)
    assert path is not None and "AIFLOW_SERVICE_LOG" not in os.environ
    log = logging.getLogger("svc")
    for i in range(400):
        log.info("line %03d %s", i, "x" * 40)
        if i == 390:
            os.write(2, b"raw stderr line\\n")  # as librdkafka or a traceback would write
            subprocess.run(["sh", "-c", "echo child stdout line"], check=True)  # a child started now
    logging.shutdown()
""")


def test_the_service_log_rotates_by_size_and_stays_owner_only(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "worker.log"
    log_file.parent.mkdir()
    with open(log_file, "ab") as out:  # what start_daemon hands over for the first lines
        subprocess.run([sys.executable, "-c", SERVICE], stdout=out, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, ENV_SERVICE_LOG: str(log_file)}, timeout=60)
    files = [log_file, *(log_file.with_name(f"worker.log.{i}") for i in (1, 2, 3))]
    assert all(f.exists() for f in files) and not log_file.with_name("worker.log.4").exists()
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert all(f.stat().st_size <= 4000 for f in files)
    text = "".join(f.read_text() for f in reversed(files))
    lines = text.splitlines()
    assert lines[-1] == f"line 399 {'x' * 40}"
    kept = [int(line.split()[1]) for line in lines if line.startswith("line ")]
    assert kept == list(range(kept[0], 400))  # the newest lines, in order, none lost or twice
    assert "raw stderr line" in lines and "child stdout line" in lines


def test_a_service_in_the_foreground_keeps_logging_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiflow.process import log_to_service_file

    monkeypatch.delenv(ENV_SERVICE_LOG, raising=False)
    assert log_to_service_file(4000, 3) is None


def test_start_daemon_makes_the_log_owner_only(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "scheduler.log"
    log_file.parent.mkdir()
    log_file.write_text("from before\n")
    os.chmod(log_file, 0o644)
    env = {**os.environ, "AIFLOW_HOME": str(tmp_path / "home")}
    with pytest.raises(AIFlowError, match="exited"):  # `config list` ends at once: it is no service
        start_daemon("test", ["config", "list"], tmp_path / "run" / "test.pid", log_file, env=env)
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert log_file.read_text().startswith("from before\n")
