"""Send events and hear them back: the event client on its own.

Shows: `send_event` returning once the event is durable (with its partition, offset and the
broker's time), a listener on a background thread that hears only its keys, and the stored history.
Run it against a running broker (`aiflow broker start --daemon`):

    python samples/events/hello_events.py
"""

from __future__ import annotations

import threading

from aiflow import Event, EventClient, ListenerProcessor


class Printer(ListenerProcessor):
    def __init__(self, expected: int) -> None:
        self.heard: list[Event] = []
        self.done = threading.Event()
        self.expected = expected

    def process(self, events: list[Event]) -> None:
        for event in events:
            print(f"  heard  {event.key} = {event.value!r}  (partition {event.partition}, offset {event.offset})")
            self.heard.append(event)
        if len(self.heard) >= self.expected:
            self.done.set()


def main() -> None:
    with EventClient(sender="hello_events") as client:
        printer = Printer(expected=2)
        client.register_listener(printer, event_keys=["model_deployed"])
        for key, value in [("data_prepared", None), ("model_deployed", "/models/1"), ("model_deployed", "/models/2")]:
            event = client.send_event(key, value)
            print(f"sent   {event.key} = {event.value!r}  at {event.create_time:%H:%M:%S.%f}")
        if not printer.done.wait(timeout=30):
            raise SystemExit("the listener heard nothing within 30 s")
        history = client.list_events(key="model_deployed", limit=5)
        print(f"the last {len(history)} model_deployed events stored:")
        for event in history:
            print(f"  {event.create_time:%Y-%m-%d %H:%M:%S}  {event.value}")


if __name__ == "__main__":
    main()
