"""aiflow: event-driven workflows for machine-learning and data pipelines, on Apache Kafka.

`import aiflow` gives what a workflow author needs and nothing else.
"""

from aiflow.errors import AIFlowError
from aiflow.events import Event, EventClient, ListenerProcessor

__version__ = "0.1.0"

__all__ = ["AIFlowError", "Event", "EventClient", "ListenerProcessor", "__version__"]
