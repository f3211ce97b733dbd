"""The custom condition sample: both producers stop once the numbers sent add up to 100."""

from pathlib import Path

from aiflow.testing import WorkflowTest

FLOW = Path(__file__).with_name("custom_condition_workflow.py")


def test_both_producers_stop_once_the_numbers_add_up_to_100() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    assert ex.queued() == ["producer_a", "producer_b"]
    ex.running("producer_a").running("producer_b")  # their callables loop for ever: not run here
    for value in ["40", "30", "29"]:
        wt.send_event("number", value)
    assert ex.task_status("producer_a") == ex.task_status("producer_b") == "RUNNING"
    assert ex.state.states == {"total": 99}  # one total, though two rules share the condition
    wt.send_event("number", "1")
    assert ex.task_status("producer_a") == ex.task_status("producer_b") == "STOPPED"
    assert ex.latest("producer_a").stop_reason == "stop"  # type: ignore[union-attr]
    assert ex.status == "STOPPED"  # nothing can start them again


def test_numbers_sent_before_a_producer_runs_still_count() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    wt.send_event("number", "100")  # both tries are still QUEUED: they are stopped before they start
    assert ex.task_status("producer_a") == "STOPPED" and ex.status == "STOPPED"


def test_numbers_of_another_namespace_do_not_count() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    wt.send_event("number", "500", namespace="elsewhere")
    assert ex.state.states == {} and ex.status == "RUNNING"
