"""Events: the client that sends, listens to and lists them (the Event type lives in aiflow.protocol)."""

from aiflow.events.client import EventClient, EventProcessor, ListenerProcessor
from aiflow.events.context import TaskContext
from aiflow.protocol.messages import Event

__all__ = ["Event", "EventClient", "EventProcessor", "ListenerProcessor", "TaskContext"]
