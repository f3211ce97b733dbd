"""The CLI as a user types it, in a fresh $AIFLOW_HOME, as separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import broker_cache_dir, free_port

AIFLOW = [sys.executable, "-m", "aiflow.cli"]


def run(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*AIFLOW, *args], env=env, capture_output=True, text=True, timeout=180)
    if check and done.returncode != 0:
        raise AssertionError(f"aiflow {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of aiflow commands with a home of their own. Web server and metrics ports are
    free ones (or none), so tests running side by side never fight over 8080 or 9108."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFLOW_")}
    env.update(AIFLOW_HOME=str(home), AIFLOW_BROKER_CACHE_DIR=broker_cache_dir(),
               AIFLOW_WEBSERVER_PORT=str(free_port()), AIFLOW_METRICS_SCHEDULER_PORT="0",
               AIFLOW_METRICS_WORKER_PORT="0")
    env.update(extra)
    return env


def test_broker_start_send_list_stop_in_a_fresh_home_logging_requests(tmp_path: Path) -> None:
    # With its request logger at DEBUG, the broker logs each request it serves (benchmarks/request_log.py).
    env = fresh_env(tmp_path / "home", AIFLOW_BROKER_PORT=str(free_port()),
                    AIFLOW_BROKER_CONTROLLER_PORT=str(free_port()), AIFLOW_BROKER_REQUEST_LOG_LEVEL="DEBUG")
    try:
        started = run(env, "broker", "start", "--daemon")
        assert "Broker started at 127.0.0.1:" in started.stdout
        assert "aiflow.events" in started.stdout  # topics created with it
        status = json.loads(run(env, "broker", "status", "-o", "json").stdout)
        assert status["running"] and status["answers"]

        sent = run(env, "event", "send", "k", "v")
        assert "Event 'k' sent to namespace 'default'" in sent.stdout
        run(env, "event", "send", "other", "x")
        run(env, "event", "send", "k", "in-b", "-n", "b")
        listed = json.loads(run(env, "event", "list", "--key", "k", "-o", "json").stdout)
        assert [(e["key"], e["value"], e["namespace"]) for e in listed] == [("k", "v", "default")]
        assert listed[0]["offset"] is not None and listed[0]["create_time"]

        plain = run(env, "event", "list", "-n", "b", "-o", "plain").stdout.strip().splitlines()
        assert len(plain) == 1 and "\tk\tin-b\t" in plain[0]
        topics_rows = json.loads(run(env, "topics", "list", "-o", "json").stdout)
        assert all(r["exists"] for r in topics_rows)
        served = [line for line in (tmp_path / "home" / "logs" / "broker.log").read_text().splitlines()
                  if "Completed request:" in line and '"requestApiKeyName":"PRODUCE"' in line]
        assert any('"clientId":"aiflow-events-' in line and '"totalTimeMs":' in line for line in served)
    finally:
        stopped = run(env, "broker", "stop", check=False)
    assert "Broker stopped." in stopped.stdout
    after = run(env, "broker", "status", check=False)
    assert after.returncode == 1


def test_cli_mistakes_are_one_line_and_non_zero(tmp_path: Path) -> None:
    env = fresh_env(tmp_path / "home", AIFLOW_BROKER_PORT=str(free_port()))
    unknown = run(env, "config", "get-value", "no.such.key", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "Error: unknown key 'no.such.key' (see `aiflow config list`)"

    down = run(env, "event", "send", "k", check=False)
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1
    assert "does not answer" in down.stderr and "aiflow broker start --daemon" in down.stderr

    bad_env = run({**env, "AIFLOW_TOPIC_PARTITIONS": "lots"}, "topics", "list", check=False)
    assert bad_env.returncode == 1 and "topics.partitions" in bad_env.stderr and "Traceback" not in bad_env.stderr

    bad_time = run(env, "event", "list", "--since", "yesterday-ish", check=False)
    assert bad_time.returncode == 2 and "neither an ISO time" in bad_time.stderr


def test_config_init_list_and_get_value(tmp_path: Path) -> None:
    env = fresh_env(tmp_path / "home")
    assert "Wrote" in run(env, "config", "init").stdout
    again = run(env, "config", "init", check=False)
    assert again.returncode == 1 and "--force" in again.stderr
    rows = json.loads(run({**env, "AIFLOW_TOPIC_PREFIX": "mine"}, "config", "list", "-o", "json").stdout)
    by_key = {r["key"]: r for r in rows}
    assert by_key["topics.prefix"] == {"key": "topics.prefix", "value": "mine", "source": "env",
                                       "env": "AIFLOW_TOPIC_PREFIX"}
    assert by_key["broker.port"]["source"] == "file"
    assert run(env, "config", "get-value", "db.uri").stdout.strip() == f"sqlite:///{tmp_path}/home/aiflow.db"
