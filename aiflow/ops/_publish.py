"""Everything ops sends to Kafka, and nothing else: the rest of ops reads and writes the store and calls these.

Keeping every Kafka call here lets the transport change by editing this file alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiflow.config import Config

if TYPE_CHECKING:
    from aiflow.protocol.messages import Command, WorkflowDefinition

# The Kafka client and the wire contract (confluent-kafka, fastavro and the schemas: about 80 ms) are
# imported when something is sent: commands that only read the store never pay for them.

__all__ = ["check_reachable", "publish_definition", "publish_deletion", "send_inbox_command"]


def check_reachable(config: Config) -> None:
    """Raise KafkaUnavailable with what to do when the configured cluster does not answer."""
    from aiflow.kafka import clients

    clients.check_reachable(config)


def send_inbox_command(config: Config, namespace: str, workflow: str, command: Command,
                       execution_id: str | None = None, task: str | None = None,
                       args: dict[str, str] | None = None) -> None:
    """Send a command to the scheduler that owns the workflow; returns once it is durable."""
    from aiflow.kafka import sending
    from aiflow.protocol.messages import InboxMessage

    sending.send(config, InboxMessage.for_command(namespace, workflow, command, execution_id, task, args).to_record())


def publish_definition(config: Config, definition: WorkflowDefinition) -> None:
    """Publish the workflow's definition on the workflows topic; returns once it is durable."""
    from aiflow.kafka import sending

    sending.send(config, definition.to_record(), "workflows")


def publish_deletion(config: Config, namespace: str, workflow: str) -> None:
    """Tell the router and schedulers the workflow is gone; returns once it is durable."""
    from aiflow.kafka import sending
    from aiflow.protocol.messages import WorkflowDeleted

    sending.send(config, WorkflowDeleted(namespace, workflow).to_record(), "workflows")
