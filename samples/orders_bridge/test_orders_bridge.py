"""The orders sample: the bridge turns each order row into an event `orders.<status>`; `ship` starts
for paid orders only."""

from pathlib import Path

from aiflow.testing import WorkflowTest

FLOW = Path(__file__).with_name("orders_workflow.py")


def test_ship_starts_for_a_paid_order_and_not_for_a_new_one() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    assert ex.queued() == ["monitor"]
    wt.send_event("orders.new", "1002")  # what the bridge makes of {"id": 1002, "status": "new"}
    ex.assert_not_started("ship")
    wt.send_event("orders.paid", "1001")
    ex.assert_started("ship", cause="rule 1 of ship (START) on event 'orders.paid'")
    ex.run_tasks("ship")
    assert ex.task_status("ship") == "SUCCESS" and ex.status == "RUNNING"  # monitor keeps it running


def test_stopping_the_execution_stops_monitor_and_ignores_later_orders() -> None:
    wt = WorkflowTest(FLOW)
    ex = wt.start()
    ex.running("monitor")
    ex.stop()
    assert ex.status == "STOPPED" and ex.task_status("monitor") == "STOPPED"
    wt.send_event("orders.paid", "1003")
    ex.assert_not_started("ship")
