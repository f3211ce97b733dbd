"""The package as a user installs it: `python -m build` makes the wheel, `pip install` puts it into a
fresh virtual environment outside the repository, and from a folder of its own, with a fresh
$AIFLOW_HOME, `aiflow standalone -d` starts a local broker (from the installed package's launcher
files), a sample workflow runs to SUCCESS and `aiflow standalone stop` ends it all.

Dependencies come from PyPI or pip's cache; the broker's jars from the one cache every start uses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port_block, processes_of, wait_until
from tests.e2e.test_cli_events import fresh_env

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

# Run inside the installed environment: what the wheel must hold besides its modules, and no top-level
# package of a generic name.
CHECK_INSTALL = """
import importlib.util, sys
from importlib import resources
from pathlib import Path
import ai_flow.model.workflow, ai_flow.notification.notification_client, aiflow, aiflow.connectors
assert Path(aiflow.__file__).is_relative_to(sys.prefix), aiflow.__file__
assert importlib.util.find_spec("connectors") is None, "a top-level 'connectors' package is installed"
files = resources.files("aiflow")
for name in ("py.typed", "kafka/local/pom.xml", "kafka/local/log4j2.properties", "avro/aiflow.Event.avsc",
             "avro/history/aiflow.WorkflowDefinition.v1.avsc", "web/templates/base.html", "web/static/aiflow.css",
             "store/migrations/env.py", "store/migrations/versions/0001_initial.py", "sdk/host.py"):
    assert files.joinpath(name).is_file(), name
top = sorted(p.name for p in Path(aiflow.__file__).parent.parent.iterdir() if p.name.startswith(("aiflow", "ai_flow")))
print(" ".join(top))
"""


def _run(args: list[str | Path], timeout: float, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def test_the_wheel_installs_into_a_fresh_venv_and_runs_a_workflow(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(REPO)
    timings = {}
    started = time.monotonic()
    dist = tmp_path / "dist"
    # The sdist first, then the wheel from it (build's default): what a user's wheel holds, never a
    # stale file of an earlier in-tree build.
    _run([sys.executable, "-m", "build", "--outdir", dist, REPO], 300)
    wheels = list(dist.glob("aiflow_kafka-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    timings["build"] = time.monotonic() - started

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], 120)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheels[0]], 600,
         env=clean)
    timings["install"] = time.monotonic() - started - timings["build"]

    work = tmp_path / "work"
    work.mkdir()
    top = _run([venv / "bin" / "python", "-c", CHECK_INSTALL], 60, cwd=work, env=clean).stdout.split()
    assert [name for name in top if not name.endswith(".dist-info")] == ["ai_flow", "aiflow"]

    for name in ("quickstart_workflow.py", "run.py"):
        (work / name).write_bytes((REPO / "samples" / "quickstart" / name).read_bytes())
    home = tmp_path / "home"
    base = free_port_block(3)
    env = fresh_env(home, AIFLOW_BROKER_PORT=str(base), AIFLOW_BROKER_CONTROLLER_PORT=str(base + 1),
                    AIFLOW_WEBSERVER_PORT=str(base + 2), AIFLOW_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}")
    env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    aiflow = venv / "bin" / "aiflow"
    try:
        assert "aiflow standalone is running" in _run([aiflow, "standalone", "-d"], 240, cwd=work, env=env).stdout
        out = _run([venv / "bin" / "python", "run.py"], 300, cwd=work, env=env).stdout
        assert ": SUCCESS" in out, out
        assert "reply  SUCCESS  said ['got the greeting']" in out, out
        assert "quickstart" in _run([aiflow, "workflow", "list"], 60, cwd=work, env=env).stdout
    finally:
        stopped = subprocess.run([aiflow, "standalone", "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    wait_until(lambda: not processes_of(home), 15, lambda: f"processes left behind: {processes_of(home)}")
    timings["total"] = time.monotonic() - started
    print("wheel test timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
