"""Quickstart: a status dependency and a custom event.

`hello` runs first; `world` starts after `hello` succeeds and sends the event `greeted`;
`reply` starts when `greeted` arrives. Run it with `python samples/quickstart/run.py`.
"""

from aiflow import BashOperator, EventClient, PythonOperator, TaskAction, Workflow


def greet() -> None:
    print("world")
    with EventClient() as client:
        client.send_event("greeted", "hello world")


with Workflow(name="quickstart"):
    hello = BashOperator(name="hello", bash_command="echo hello")
    world = PythonOperator(name="world", python_callable=greet)
    reply = BashOperator(name="reply", bash_command="echo 'got the greeting'")

    world.start_after(hello)
    reply.action_on_event_received(action=TaskAction.START, event_key="greeted")
