"""`ai_flow.notification.notification_client`: the original client's names over aiflow's event client."""

from __future__ import annotations

import logging

from aiflow.config import Config
from aiflow.events import Event, EventClient, ListenerProcessor

__all__ = ["AIFlowNotificationClient", "Event", "ListenerProcessor"]

log = logging.getLogger(__name__)


class AIFlowNotificationClient(EventClient):
    """The original `AIFlowNotificationClient(server_uri)`.

    There is no notification server any more: events live in Kafka. `server_uri` is accepted and
    ignored; Kafka's address comes from aiflow's configuration (inside a task, from the environment
    the worker sets), so workflow files written for the original run unchanged.
    """

    def __init__(self, server_uri: str | None = None, namespace: str | None = None,
                 sender: str | None = None, config: Config | None = None) -> None:
        super().__init__(config=config, namespace=namespace, sender=sender)
        if server_uri:
            log.debug("ignoring notification server address %s: events go to Kafka at %s",
                      server_uri, self.config.bootstrap)
