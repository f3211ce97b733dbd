"""Workflow definitions on the compacted workflows topic: what the router indexes event keys from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from confluent_kafka import KafkaError, Message

from aiflow.config import Config
from aiflow.errors import KafkaUnavailable
from aiflow.events.codec import WORKFLOW_DEFINITION, default_codec
from aiflow.kafka import clients, topics


@dataclass
class WorkflowDefinition:
    namespace: str
    workflow: str
    version: int
    snapshot_uri: str
    snapshot_sha256: str
    workflow_file: str
    enabled: bool = True
    rule_keys: list[tuple[str, str]] = field(default_factory=list)
    trigger_keys: list[tuple[str, str]] = field(default_factory=list)
    definition: str = "{}"
    triggers: str = "[]"  # JSON: [{"id": int, "condition": spec, "paused": bool}]
    schedules: str = "[]"  # JSON: [{"id": int, "expression": str, "paused": bool}]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.workflow}"

    def to_avro(self) -> dict[str, object]:
        return {
            "namespace": self.namespace, "workflow": self.workflow, "version": self.version,
            "snapshot_uri": self.snapshot_uri, "snapshot_sha256": self.snapshot_sha256,
            "workflow_file": self.workflow_file, "enabled": self.enabled,
            "rule_keys": [{"namespace": ns, "key": k} for ns, k in self.rule_keys],
            "trigger_keys": [{"namespace": ns, "key": k} for ns, k in self.trigger_keys],
            "definition": self.definition,
            "triggers": self.triggers,
            "schedules": self.schedules,
            "update_time": datetime.now(timezone.utc),
        }

    @classmethod
    def from_avro(cls, record: dict[str, object]) -> WorkflowDefinition:
        return cls(
            namespace=str(record["namespace"]), workflow=str(record["workflow"]), version=int(record["version"]),  # type: ignore[call-overload]
            snapshot_uri=str(record["snapshot_uri"]), snapshot_sha256=str(record["snapshot_sha256"]),
            workflow_file=str(record["workflow_file"]), enabled=bool(record["enabled"]),
            rule_keys=[(s["namespace"], s["key"]) for s in record["rule_keys"]],  # type: ignore[attr-defined]
            trigger_keys=[(s["namespace"], s["key"]) for s in record["trigger_keys"]],  # type: ignore[attr-defined]
            definition=str(record["definition"]), triggers=str(record["triggers"]),
            schedules=str(record["schedules"]),
        )


def _produce(config: Config, key: str, value: bytes | None) -> None:
    producer = clients.producer(config, role="workflows")
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            errors.append(err)

    producer.produce(topics.name(config, topics.WORKFLOWS), key=key.encode(), value=value, on_delivery=delivered)
    if producer.flush(30) or errors:
        raise KafkaUnavailable(f"could not publish workflow {key} on {topics.name(config, topics.WORKFLOWS)}: "
                               f"{errors[0].str() if errors else 'timed out'}")


def publish(config: Config, definition: WorkflowDefinition) -> None:
    """Publish the definition; returns once it is durable."""
    _produce(config, definition.key, default_codec().encode(WORKFLOW_DEFINITION, definition.to_avro()))


def publish_deletion(config: Config, namespace: str, workflow: str) -> None:
    """A tombstone: compaction then forgets the workflow, and the router drops its keys."""
    _produce(config, f"{namespace}/{workflow}", None)
