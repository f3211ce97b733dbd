"""The quickstart's rules, without a broker: hello, then world (after hello succeeds), then reply (on
the event `greeted` that world sends)."""

from pathlib import Path

from aiflow.testing import WorkflowTest

FLOW = Path(__file__).with_name("quickstart_workflow.py")


def test_hello_then_world_then_reply_on_the_greeting_world_sends() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    assert ex.queued() == ["hello"]
    ex.run_tasks()  # the bash commands and world's callable run here; its event is delivered at once
    assert ex.started() == ["hello", "world", "reply"]
    assert ex.cause_of("world") == "rule 1 of world (START) on hello try 1 SUCCESS"
    assert ex.cause_of("reply") == "rule 1 of reply (START) on event 'greeted'"
    assert [(e.key, e.value, e.task) for e in wt.events] == [("greeted", "hello world", "world")]
    assert ex.status == "SUCCESS"


def test_a_failed_hello_fails_the_execution_and_world_never_starts() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    ex.fail("hello", "exit code 1")
    assert ex.status == "FAILED"
    assert ex.latest("hello").message == "exit code 1"  # type: ignore[union-attr]
    ex.assert_not_started("world")
    wt.send_event("greeted")  # a finished execution starts nothing
    ex.assert_not_started("reply")


def test_reply_waits_for_the_greeting_whoever_sends_it() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    wt.send_event("greeted", "from outside")
    ex.assert_started("reply", times=1, cause="on event 'greeted'")
    ex.succeed("hello").succeed("reply").succeed("world")
    assert ex.status == "SUCCESS"
