"""Every sample runs with its one command against `aiflow standalone -d`."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.test_cli_events import fresh_env, run


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("samples") / "home"
    environ = fresh_env(home, AIFLOW_KAFKA_BOOTSTRAP=kafka_bootstrap, AIFLOW_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}",
                        AIFLOW_WORKER_STOP_GRACE="3", AIFLOW_WORKER_SLOTS="6")
    run(environ, "standalone", "-d")
    yield environ
    run(environ, "standalone", "stop", check=False)


def sample(env: dict[str, str], name: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "samples" / name / "run.py")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_quickstart(env: dict[str, str]) -> None:
    out = sample(env, "quickstart")
    assert ": SUCCESS" in out
    assert "hello  SUCCESS  said ['hello']" in out
    assert "world  SUCCESS  said ['world']" in out
    assert "reply  SUCCESS  said ['got the greeting']" in out and "on event 'greeted'" in out


def test_custom_condition(env: dict[str, str]) -> None:
    out = sample(env, "custom_condition")
    assert ": STOPPED" in out and "producer_a: STOPPED" in out and "producer_b: STOPPED" in out
    total = int(out.strip().splitlines()[-1].rsplit(" ", 1)[1])
    assert total >= 100


def test_event_trigger(env: dict[str, str]) -> None:
    out = sample(env, "event_trigger")
    assert "SUCCESS, run type EVENT, cause: trigger" in out and "on event 'data_ready'" in out


def test_periodic(env: dict[str, str]) -> None:
    out = sample(env, "periodic")
    assert "(PERIODIC)" in out and "report#2 SUCCESS" in out


def test_external_producer(env: dict[str, str]) -> None:
    out = sample(env, "external_producer")
    assert "load ran: SUCCESS, cause: rule 1 of load (START) on event 'file_landed'" in out


def test_every_sample_has_an_end_to_end_test() -> None:
    folders = {p.parent.name for p in (REPO / "samples").glob("*/run.py")}
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert folders <= tested | {"online_machine_learning"}, folders - tested
    assert Path(REPO / "samples" / "online_machine_learning" / "online_ml_workflow.py").exists()


def test_orders_bridge(env: dict[str, str]) -> None:
    out = sample(env, "orders_bridge")
    assert "ship ran: SUCCESS, cause: rule 1 of ship (START) on event 'orders.paid'" in out
