"""Orders arriving on a Kafka topic drive a workflow, through the topic bridge.

The bridge (run.py starts it; on the command line: `aiflow connector run kafka-topic --topic orders
--key "orders.{status}" --value-field id`) turns each JSON row of the `orders` topic into an event
`orders.<status>` whose value is the order id. `ship` starts for every paid order; `monitor` keeps the
execution running. Run it with `python samples/orders_bridge/run.py`.
"""

from aiflow import BashOperator, TaskAction, Workflow

with Workflow(name="orders"):
    BashOperator(name="monitor", bash_command="sleep 100000")
    ship = BashOperator(name="ship", bash_command="echo shipping order $(date +%s)")
    ship.action_on_event_received(action=TaskAction.START, event_key="orders.paid")
