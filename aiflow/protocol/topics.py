"""The topic roles of the wire contract, and which service owns each one.

A role is a topic's part in the protocol; its name on the cluster is `<topics.prefix>.<role>`
(aiflow/kafka/topics.py creates them). The *owner* of a role is the one service that dead-letters
what cannot be read on it, in the same transaction as the offsets it commits, so each bad record
reaches the dead-letter topic exactly once. Every other reader of the role skips such a record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiflow.config import Config

EVENTS = "events"
INBOX = "inbox"
TASKS = "tasks"
CONTROL = "control"
STATE = "state"
WORKFLOWS = "workflows"
DLQ = "dlq"
LOGS = "logs"
ALL = (EVENTS, INBOX, TASKS, CONTROL, STATE, WORKFLOWS, DLQ, LOGS)


def topic_name(config: Config, role: str) -> str:
    """The name on the cluster of the topic of `role`."""
    return f"{config.topic_prefix}.{role}"


# role -> the service that dead-letters its unreadable records (None: nobody does).
OWNERS: dict[str, str | None] = {
    EVENTS: "router",
    # Every worker reads every control record, so none of them can own it: the router's consumer
    # group reads the control and workflows topics too, only to check them.
    CONTROL: "router",
    WORKFLOWS: "router",
    INBOX: "scheduler",
    TASKS: "worker",
    STATE: "projector",
    DLQ: None,  # dead letters are copies of records as received: read as bytes, never decoded
    # Task output, written by workers outside any transaction and read only by log readers (the CLI, the
    # web server), which own nothing: they skip what they cannot read; nothing is dead-lettered.
    LOGS: None,
}

# Worker placement: each queue has a tasks topic of its own, so a START reaches only the workers that
# serve its queue. The default queue keeps the plain `tasks` role (its topic and consumer offsets are
# those from before queues existed); another queue's role is `tasks.<queue>`. Queue names are checked
# where they are written (aiflow.sdk.workflow.check_queue): [a-z0-9_-], at most 64.
DEFAULT_QUEUE = "default"


def tasks_role(queue: str) -> str:
    """The role of the tasks topic of `queue`."""
    return TASKS if queue == DEFAULT_QUEUE else f"{TASKS}.{queue}"


def queue_of_role(role: str) -> str | None:
    """The queue whose tasks topic has this role (None: not a tasks topic)."""
    if role == TASKS:
        return DEFAULT_QUEUE
    prefix = f"{TASKS}."
    return role[len(prefix):] if role.startswith(prefix) and len(role) > len(prefix) else None
