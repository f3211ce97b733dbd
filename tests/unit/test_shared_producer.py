"""ops sends through one producer per process, configuration and role, and a new one after a fork."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiflow.config import Config
from aiflow.kafka import sending


def _config(tmp_path: Path, bootstrap: str) -> Config:
    return Config.load(home=tmp_path, environ={"AIFLOW_KAFKA_BOOTSTRAP": bootstrap})


def test_one_producer_per_process_configuration_and_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sending, "_shared", {})
    a = _config(tmp_path, "127.0.0.1:1")
    assert sending.shared_producer(a) is sending.shared_producer(_config(tmp_path, "127.0.0.1:1"))
    assert sending.shared_producer(a, "workflows") is not sending.shared_producer(a)
    assert sending.shared_producer(_config(tmp_path, "127.0.0.1:2")) is not sending.shared_producer(a)
    first = sending.shared_producer(a)
    monkeypatch.setattr(sending.os, "getpid", lambda: -1)  # as in a forked child
    assert sending.shared_producer(a) is not first
