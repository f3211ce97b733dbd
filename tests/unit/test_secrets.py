"""Secrets stay secret: tasks do not inherit them, the CLI masks them, the home is owner-only."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from aiflow.cli.main import cli
from aiflow.config import Config, mask_uri
from aiflow.process import private_home
from aiflow.worker.service import task_environment

WORKER_ENV = {"PATH": "/usr/bin", "AIFLOW_DB_URI": "postgresql+psycopg://aiflow:s3cr3t@db/aiflow",
              "AIFLOW_KAFKA_PROPERTY_SASL_PASSWORD": "hunter2", "AIFLOW_KAFKA_PROPERTY_SASL_USERNAME": "aiflow",
              "AIFLOW_KAFKA_PROPERTY_SSL_KEY_LOCATION": "/etc/key.pem", "AIFLOW_WEBHOOK_TOKEN": "t0ken"}


def test_tasks_do_not_inherit_the_workers_credentials_unless_configured(tmp_path: Path) -> None:
    env = task_environment(WORKER_ENV, Config.load(home=tmp_path, environ={}))
    assert not {"AIFLOW_DB_URI", "AIFLOW_KAFKA_PROPERTY_SASL_PASSWORD", "AIFLOW_KAFKA_PROPERTY_SSL_KEY_LOCATION",
                "AIFLOW_WEBHOOK_TOKEN"} & set(env)
    assert env["AIFLOW_KAFKA_PROPERTY_SASL_USERNAME"] == "aiflow" and env["PATH"] == "/usr/bin"
    assert env["AIFLOW_HOME"] == str(tmp_path) and env["AIFLOW_KAFKA_BOOTSTRAP"]
    shared = task_environment(WORKER_ENV, Config.load(home=tmp_path,
                                                      environ={"AIFLOW_WORKER_TASK_CREDENTIALS": "true"}))
    assert shared["AIFLOW_DB_URI"] == WORKER_ENV["AIFLOW_DB_URI"]


def test_config_list_prints_no_password(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config", "list", "-o", "plain"], env={
        "AIFLOW_HOME": str(tmp_path), "AIFLOW_DB_URI": "postgresql+psycopg://aiflow:s3cr3t@db/aiflow",
        "AIFLOW_KAFKA_PROPERTY_SASL_PASSWORD": "hunter2"})
    assert result.exit_code == 0, result.output
    assert "s3cr3t" not in result.output and "hunter2" not in result.output
    assert "postgresql+psycopg://aiflow:***@db/aiflow" in result.output


def test_uris_are_masked() -> None:
    assert mask_uri("postgresql://u:p@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_uri("sqlite:////home/a/aiflow.db") == "sqlite:////home/a/aiflow.db"


def test_the_home_is_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    private_home(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_the_standalone_banner_prints_no_password(tmp_path: Path) -> None:
    from aiflow.cli.standalone_cmd import banner

    config = Config.load(home=tmp_path, environ={"AIFLOW_DB_URI": "postgresql+psycopg://aiflow:s3cr3t@db/aiflow"})
    text = banner(config, local_broker=True)
    assert "s3cr3t" not in text and "postgresql+psycopg://aiflow:***@db/aiflow" in text
