"""A custom, stateful condition: stop the producers once the numbers they send add up to 100.

Two streaming `producer` tasks send events `number` with small values. `SumReaches100` keeps a
running total in a ValueState (persisted by the scheduler with its decisions, so it survives a
scheduler restart) and is met once the total reaches 100; both producers have a STOP rule on it.
Run it with `python samples/custom_condition/run.py`.
"""

import random
import time

from aiflow import (
    Condition,
    Context,
    Event,
    EventClient,
    PythonOperator,
    TaskAction,
    ValueStateDescriptor,
    Workflow,
)


class SumReaches100(Condition):
    def __init__(self) -> None:
        super().__init__(expect_event_keys=["number"])

    def is_met(self, event: Event, context: Context) -> bool:
        total = context.get_state(ValueStateDescriptor("total"))
        value = (total.value() or 0) + int(event.value or 0)  # type: ignore[attr-defined]
        total.update(value)  # type: ignore[attr-defined]
        return value >= 100


def produce() -> None:
    with EventClient() as client:
        while True:
            client.send_event("number", str(random.randint(1, 10)))
            time.sleep(0.2)


with Workflow(name="custom_condition"):
    reached = SumReaches100()
    for name in ("producer_a", "producer_b"):
        producer = PythonOperator(name=name, python_callable=produce)
        producer.action_on_condition(action=TaskAction.STOP, condition=reached)
