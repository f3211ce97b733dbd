"""`aiflow worker start --queue gpu -d` beside a default worker from one home: each task runs on a worker
of its queue. Separate processes against the session broker."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

from tests.e2e.test_cli_events import fresh_env, run

PLACED = """
from aiflow import BashOperator, Workflow

with Workflow(name="placed"):
    BashOperator(name="prepare", bash_command="true")
    BashOperator(name="train", bash_command="true", queue="gpu")
"""


def test_a_gpu_worker_daemon_runs_the_gpu_task_and_the_default_one_the_rest(kafka_bootstrap: str,
                                                                             tmp_path: Path) -> None:
    env = fresh_env(tmp_path / "home", AIFLOW_KAFKA_BOOTSTRAP=kafka_bootstrap,
                    AIFLOW_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}")
    bad = run(env, "worker", "start", "--queue", "GPU!", check=False)
    assert bad.returncode == 2 and "queue name 'GPU!' is invalid" in bad.stderr

    run(env, "topics", "create")
    started = {}
    try:
        for argv in (["scheduler"], ["worker"], ["worker", "--queue", "gpu"]):
            done = json.loads(run(env, argv[0], "start", *argv[1:], "-d", "-o", "json").stdout)
            started[done["service"]] = done
        assert set(started) == {"scheduler", "worker", "worker-gpu"}  # one daemon per set of queues
        assert started["worker-gpu"]["queues"] == ["gpu"] and started["worker"]["queues"] == ["default"]
        (tmp_path / "placed.py").write_text(PLACED)
        run(env, "workflow", "upload", str(tmp_path / "placed.py"))
        done = json.loads(run(env, "workflow-execution", "start", "placed", "--wait", "--timeout", "120",
                              "-o", "json").stdout)
        assert done["status"] == "SUCCESS"
        workers = {t["task"]: t["worker"] for t in done["tasks"]}
        host = socket.gethostname()
        assert workers == {"prepare": f"{host}-{started['worker']['pid']}",
                           "train": f"{host}-{started['worker-gpu']['pid']}"}
        heard = {w["worker"]: w["queues"] for w in json.loads(run(env, "status", "-o", "json").stdout)["workers"]}
        assert heard[workers["train"]] == ["gpu"] and heard[workers["prepare"]] == ["default"]
    finally:
        stopped = json.loads(run(env, "worker", "stop", "--queue", "gpu", "-o", "json", check=False).stdout)
        run(env, "worker", "stop", check=False)
        run(env, "scheduler", "stop", check=False)
    assert stopped == {"service": "worker-gpu", "stopped": True}
