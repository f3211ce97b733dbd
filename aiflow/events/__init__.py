"""Events: the model, the Avro codec and the client that sends and listens."""

from aiflow.events.client import EventClient, EventProcessor, ListenerProcessor
from aiflow.events.context import TaskContext
from aiflow.events.model import Event

__all__ = ["Event", "EventClient", "EventProcessor", "ListenerProcessor", "TaskContext"]
