"""How aiflow's errors answer over HTTP, for the API and the pages alike."""

from __future__ import annotations

from aiflow.errors import AIFlowError, Conflict, KafkaUnavailable, NotFound, StoreUnavailable


def http_status(exc: AIFlowError) -> int:
    """404 for what does not exist, 409 for a conflict, 503 when the database or Kafka is away, else 400."""
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, (KafkaUnavailable, StoreUnavailable)):
        return 503
    return 400
