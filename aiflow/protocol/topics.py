"""The topic roles of the wire contract, and which service owns each one.

A role is a topic's part in the protocol; its name on the cluster is `<topics.prefix>.<role>`
(aiflow/kafka/topics.py creates them). The *owner* of a role is the one service that dead-letters
what cannot be read on it, in the same transaction as the offsets it commits, so each bad record
reaches the dead-letter topic exactly once. Every other reader of the role skips such a record.
"""

from __future__ import annotations

EVENTS = "events"
INBOX = "inbox"
TASKS = "tasks"
CONTROL = "control"
STATE = "state"
WORKFLOWS = "workflows"
DLQ = "dlq"
ALL = (EVENTS, INBOX, TASKS, CONTROL, STATE, WORKFLOWS, DLQ)

# role -> the service that dead-letters its unreadable records (None: nobody decodes it).
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
}
