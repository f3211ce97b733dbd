"""Workflow definitions on the compacted workflows topic: what the router indexes event keys from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from aiflow.config import Config
from aiflow.events.codec import WORKFLOW_DEFINITION, default_codec
from aiflow.kafka import messages, topics
from aiflow.kafka.messages import Record


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


def publish(config: Config, definition: WorkflowDefinition) -> None:
    """Publish the definition; returns once it is durable."""
    messages.send(config, Record(topics.WORKFLOWS, definition.key,
                                 default_codec().encode(WORKFLOW_DEFINITION, definition.to_avro())), "workflows")


def publish_deletion(config: Config, namespace: str, workflow: str) -> None:
    """A tombstone: compaction then forgets the workflow, and the router drops its keys."""
    messages.send(config, Record(topics.WORKFLOWS, f"{namespace}/{workflow}", None), "workflows")
