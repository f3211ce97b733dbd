"""Turning a record from another system into an event: decode it, filter it, pick its key and value.

Shared by the Kafka topic bridge and the webhook's raw mode. A mapping error names what is missing,
so the record can go to the dead-letter topic with that reason.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader

from aiflow.errors import AIFlowError
from aiflow.protocol.codec import default_codec

FORMATS = ("json", "avro", "confluent-avro", "bytes")
_FIELD = re.compile(r"\{([^{}]+)\}")


class MappingError(AIFlowError):
    """The record cannot be made into an event; the message says why."""


@dataclass
class Mapping:
    """How records become events.

    key: a template over the record's fields (`"orders.{status}"`, `"{source.table}.{op}"`), or
    `header:<name>` (a record header), or `record-key` (the record's own key).
    value: a field path whose value becomes the event's value, or None for the whole record as JSON.
    filters: field path -> the text it must equal; records that do not match are skipped, not errors.
    debezium: unwrap Debezium's change envelope (`payload`, `op`, `before`, `after`, `source`); then
    fields of `after` (or `before` for deletes) are also reachable at the top level.
    """

    key: str
    value: str | None = None
    namespace: str = "default"
    filters: dict[str, str] = field(default_factory=dict)
    format: str = "json"
    avro_schema: str | None = None
    debezium: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise MappingError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.format == "confluent-avro" and not self.avro_schema:
            raise MappingError("confluent-avro needs the writer's schema (--avro-schema FILE): no registry is used")
        raw_schema = json.loads(Path(self.avro_schema).read_text()) if self.avro_schema else None
        self._schema = parse_schema(raw_schema) if raw_schema is not None else None
        if self.format == "avro" and raw_schema is not None:
            default_codec().register(raw_schema)  # a known writer schema for single-object records
        if not self.key:
            raise MappingError("the key mapping is empty")

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            raise MappingError("the record has no value")
        if self.format == "bytes":
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise MappingError("the value is not UTF-8 text") from None
        if self.format == "json":
            record = parse_json(data)
        elif self.format == "confluent-avro":
            if len(data) < 5 or data[0] != 0:
                raise MappingError("not Confluent-framed Avro (no magic byte 0 and schema id)")
            try:
                record = schemaless_reader(io.BytesIO(data[5:]), self._schema, None)  # type: ignore[arg-type]
            except Exception as exc:
                raise MappingError(f"the Avro body does not match the schema: {exc}") from None
        else:
            try:
                _, record = default_codec().decode(data)
            except AIFlowError as exc:
                raise MappingError(str(exc)) from None
        if self.debezium:
            record = unwrap_debezium(record)
        return record

    def event(self, record: Any, record_key: bytes | None = None,
              headers: list[tuple[str, bytes | None]] | None = None) -> tuple[str, str | None] | None:
        """(event key, event value), or None when a filter leaves the record out."""
        for path, expected in self.filters.items():
            if str(lookup(record, path)) != expected:
                return None
        if self.key == "record-key":
            if not record_key:
                raise MappingError("the record has no key")
            key = record_key.decode("utf-8", errors="replace")
        elif self.key.startswith("header:"):
            name = self.key.removeprefix("header:")
            found = [v for k, v in headers or [] if k == name and v is not None]
            if not found:
                raise MappingError(f"the record has no header {name!r}")
            key = found[0].decode("utf-8", errors="replace")
        else:
            key = _FIELD.sub(lambda m: str(lookup(record, m.group(1))), self.key)
        if not key:
            raise MappingError("the mapped event key is empty")
        picked = record if self.value is None else lookup(record, self.value)
        try:
            value = picked if isinstance(picked, str) else json.dumps(picked, default=str, sort_keys=True)
        except RecursionError:
            raise MappingError("the value is nested too deeply to write as JSON") from None
        return key, value


def parse_json(data: bytes | str) -> Any:
    """JSON text as Python values; MappingError for anything else, JSON nested too deeply included."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(f"the value is not JSON: {exc}") from None
    except RecursionError:
        raise MappingError("the value is JSON nested too deeply") from None


def lookup(record: Any, path: str) -> Any:
    """A dotted path into nested dicts (`source.table`); a missing field is a MappingError."""
    current = record
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        else:
            raise MappingError(f"the record has no field {path!r}")
    return current


def unwrap_debezium(record: Any) -> Any:
    """Debezium's envelope (with or without the `payload` wrapper of the JSON converter): keep `op`,
    `source`, `before`, `after`, and lift the row's fields (`after`, or `before` for a delete) to the top."""
    if isinstance(record, dict) and "payload" in record and isinstance(record["payload"], dict):
        record = record["payload"]
    if not isinstance(record, dict) or "op" not in record:
        raise MappingError("not a Debezium change event (no 'op')")
    row = record.get("after") if record.get("after") is not None else record.get("before")
    return {**(row or {}), **record}

