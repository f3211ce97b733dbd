"""The one exception hierarchy users see. The CLI prints any of these as a single line."""

from __future__ import annotations


class AIFlowError(Exception):
    """Base of every error aiflow raises on purpose; its message says what is wrong and what to do."""


class ConfigError(AIFlowError):
    """A configuration key is unknown or its value is invalid."""


class KafkaUnavailable(AIFlowError):
    """The configured Kafka cluster does not answer."""


class BrokerError(AIFlowError):
    """The local development broker cannot be fetched, started or stopped."""


class DecodeError(AIFlowError):
    """A record's bytes are not a message aiflow can read. The reason goes to the dead-letter topic."""


class EventError(AIFlowError):
    """An event cannot be sent or read."""
