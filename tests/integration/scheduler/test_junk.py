"""Junk of every kind on each topic, with the whole system running: each record is dead-lettered exactly
once, by the service that owns the topic, with its reason, and the next good input is processed."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from aiflow import EventClient, ops
from aiflow.kafka.readers import read_dead_letters
from aiflow.protocol import topics
from tests.conftest import produce_raw
from tests.integration.scheduler.conftest import System
from tests.unit.protocol.junk import KINDS, TOPICS, junk

FLOW = """
from aiflow import Workflow, BashOperator, TaskAction
with Workflow(name="junked"):
    BashOperator(name="keepalive", bash_command="sleep 100000")
    BashOperator(name="t", bash_command="echo ran >> ../ran.txt").action_on_event_received(TaskAction.START, "go")
"""


@pytest.mark.parametrize("role", TOPICS)
def test_junk_on_a_topic_is_dead_lettered_once_and_the_system_goes_on(system: System, role: str) -> None:
    system.upload(FLOW)
    execution_id = ops.start_workflow_execution("junked", config=system.config, wait=60)
    landed = produce_raw(system.config, [(role, *junk(role, kind)) for kind in KINDS])

    with EventClient(system.config) as client:
        client.send_event("go")
    ran = system.tmp / "home" / "working_dir" / "junked" / execution_id / "ran.txt"
    system.wait_for(lambda: ran.exists() and ran.read_text() == "ran\n", what="the task started by the event")
    system.wait_for(lambda: system.tries(execution_id).get("t") == ["SUCCESS"], what="the try projected")

    deadline = time.monotonic() + 60
    while len(letters := read_dead_letters(system.config)) < len(KINDS) and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # time for a second copy, which must not come
    letters = read_dead_letters(system.config)
    assert Counter(d.source for d in letters) == Counter(landed), [d.to_dict() for d in letters]
    assert {d.reporter for d in letters} == {topics.OWNERS[role]}
    reasons = {d.source: d.reason for d in letters}
    for kind, source in zip(KINDS, landed, strict=True):
        assert reasons[source], f"{kind}: no reason"
    assert "over the limit" in reasons[landed[KINDS.index("oversized")]]
    assert system.status(execution_id) == "RUNNING"


def test_an_event_the_router_cannot_wrap_is_dead_lettered_and_the_rest_of_its_batch_is_routed(
        system: System) -> None:
    system.upload(FLOW)
    execution_id = ops.start_workflow_execution("junked", config=system.config, wait=60)
    # Readable as a plain event (under 1,000,000 bytes), but too large once wrapped into an inbox record.
    [big, _small] = produce_raw(system.config, [(topics.EVENTS, b"go", b"x" * 999_950), (topics.EVENTS, b"go", b"")])
    ran = system.tmp / "home" / "working_dir" / "junked" / execution_id / "ran.txt"
    system.wait_for(lambda: ran.exists() and ran.read_text() == "ran\n", what="the small event routed")
    system.wait_for(lambda: len(read_dead_letters(system.config)) == 1, what="the dead letter")
    [letter] = read_dead_letters(system.config)
    assert (letter.source, letter.reporter) == (big, "router")
    assert "over the limit of 1,000,000 bytes" in letter.reason
    time.sleep(2)
    assert ran.read_text() == "ran\n" and len(read_dead_letters(system.config)) == 1
