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


class RecordError(AIFlowError):
    """A record cannot be written: it does not fit its schema, cannot be encoded or is over the size
    limit. Permanent: sending it again cannot succeed, so a service dead-letters the input that made it."""


class EventError(AIFlowError):
    """An event cannot be sent or read."""


class WorkflowDefinitionError(AIFlowError):
    """A workflow or task is defined wrongly. `line` is the line of the user's file that did it, if known."""

    def __init__(self, message: str, line: int | None = None, filename: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.filename = filename

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line}: " if self.filename and self.line else (
            f"line {self.line}: " if self.line else "")
        return f"{where}{self.message}"


class WorkflowFileError(AIFlowError):
    """A workflow file cannot be loaded; the message holds the file, the line and the error."""


class NotFound(AIFlowError):
    """The named namespace, workflow, snapshot or execution does not exist."""


class Conflict(AIFlowError):
    """The request contradicts what is stored (a name taken, a namespace not empty, ...)."""


class StoreError(AIFlowError):
    """The metadata store cannot be used (unreachable, or at another schema revision)."""


class StoreUnavailable(StoreError):
    """The metadata store does not answer; it may later."""
