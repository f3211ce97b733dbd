"""Quiet outage reports (aiflow/kafka/health.py), with a hand-driven clock: no broker."""

from __future__ import annotations

import logging

import pytest

from aiflow.kafka import health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(health.time, "monotonic", c)
    return c


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_outage_says_one_line_then_one_every_30_s_then_back(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    outage = health.Outage("client")
    for _ in range(75):  # a failure a second for 75 s
        outage.failed("Connection refused")
        clock.now += 1
    outage.ok()
    assert len(lines(caplog)) == 4  # the first, at 30 s, at 60 s, back
    assert lines(caplog)[-1] == "client: back after 75.0 s"


def test_flapping_as_the_cluster_comes_back_is_the_same_outage(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    outage = health.Outage("client")
    outage.failed("Connection refused")
    clock.now += 40
    outage.failed("Connection refused")  # the line at 30 s
    outage.ok()  # the bootstrap address answers...
    clock.now += 0.5
    outage.failed("Connection refused")  # ...the advertised one not yet
    clock.now += 1
    outage.ok()
    assert len(lines(caplog)) == 3  # first, still failing, back: the flap said nothing more
    assert not outage.failing

    clock.now += 60  # a new outage, long after: reported afresh
    outage.failed("Connection refused")
    assert len(lines(caplog)) == 4 and "retrying" in lines(caplog)[-1]
