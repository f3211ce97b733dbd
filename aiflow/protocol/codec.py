"""Avro single-object encoding of aiflow's messages.

A message is `C3 01`, the 8-byte CRC-64-AVRO fingerprint of the writer's schema (little-endian, as
the Avro specification writes it), then the Avro binary body. A reader finds the writer's schema by
its fingerprint, with no registry: the known schemas are the `.avsc` files in `avro/` (the current
version of each message kind) and `avro/history/` (earlier versions still to be read). A record
written with an older version is resolved into the current one by Avro's schema-resolution rules.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import UnknownType, fingerprint, to_parsing_canonical_form

from aiflow.errors import DecodeError, RecordError

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8

EVENT = "aiflow.Event"
TASK_COMMAND = "aiflow.TaskCommand"
CONTROL_COMMAND = "aiflow.ControlCommand"
TASK_STATUS_REPORT = "aiflow.TaskStatusReport"
INBOX_MESSAGE = "aiflow.InboxMessage"
WORKFLOW_DEFINITION = "aiflow.WorkflowDefinition"
STATE_RECORD = "aiflow.StateRecord"
LOG_CHUNK = "aiflow.LogChunk"


@dataclass(frozen=True)
class _Schema:
    name: str
    parsed: Any
    fingerprint: bytes


def schema_dir() -> Path:
    """The schemas shipped in the package (aiflow/avro), found beside this module rather than through
    importlib.resources, whose import (about 10 ms) every command that sends would pay."""
    return Path(__file__).resolve().parent.parent / "avro"


class Codec:
    """Encodes and decodes aiflow messages; one instance is enough for a process."""

    def __init__(self, directory: Path | None = None) -> None:
        self._named: dict[str, Any] = {}
        self._current: dict[str, _Schema] = {}
        self._by_fingerprint: dict[bytes, _Schema] = {}
        directory = directory or schema_dir()
        self._load_dir(directory, current=True)
        if (directory / "history").is_dir():
            self._load_dir(directory / "history", current=False)

    def _load_dir(self, directory: Path, current: bool) -> None:
        pending = {p: json.loads(p.read_text()) for p in sorted(directory.glob("*.avsc"))}
        # Schemas refer to each other by name (InboxMessage uses Event); parse until all resolve.
        while pending:
            progressed = False
            for path, raw in list(pending.items()):
                try:
                    self.register(raw, current=current)
                except UnknownType:  # refers to a schema not parsed yet; try again after the others
                    continue
                del pending[path]
                progressed = True
            if not progressed:
                names = ", ".join(p.name for p in pending)
                raise DecodeError(f"schemas that cannot be parsed (unknown named types?): {names}")

    def register(self, raw_schema: dict[str, Any], current: bool = False) -> bytes:
        """Make a schema known. `current=True` makes it the version this process writes and reads into."""
        named = dict(self._named) if not current else self._named
        parsed = parse_schema(raw_schema, named_schemas=named)
        fp = schema_fingerprint(parsed, named)
        schema = _Schema(parsed["name"] if isinstance(parsed, dict) else str(parsed), parsed, fp)
        self._by_fingerprint[fp] = schema
        if current:
            self._current[schema.name] = schema
        return fp

    def names(self) -> Iterable[str]:
        return self._current.keys()

    def fingerprint_of(self, name: str) -> bytes:
        return self._current[name].fingerprint

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        schema = self._current[name]
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(schema.fingerprint)
        try:
            schemaless_writer(buf, schema.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # UnicodeEncodeError is a ValueError
            raise RecordError(f"record does not fit {name}: {exc}") from None
        return buf.getvalue()

    def encode_with(self, raw_schema: dict[str, Any], record: dict[str, Any]) -> bytes:
        """Encode with a given (e.g. older) schema; it is registered as a known writer schema."""
        fp = self.register(raw_schema)
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(fp)
        schemaless_writer(buf, self._by_fingerprint[fp].parsed, record)
        return buf.getvalue()

    @staticmethod
    def is_single_object(data: bytes | None) -> bool:
        return data is not None and len(data) >= HEADER_SIZE and data[:2] == MAGIC

    def decode(self, data: bytes, expected: str | None = None) -> tuple[str, dict[str, Any]]:
        """Return (schema name, record). Raises DecodeError with the reason for anything unreadable."""
        if not self.is_single_object(data):
            raise DecodeError("not an Avro single-object encoded message (no C3 01 marker)")
        fp = data[2:HEADER_SIZE]
        writer = self._by_fingerprint.get(fp)
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {fp.hex()}: add its .avsc to avro/history/")
        reader = self._current.get(writer.name, writer)
        if expected is not None and reader.name != expected:
            raise DecodeError(f"expected {expected}, got {writer.name}")
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            record: Any = schemaless_reader(buf, writer.parsed, reader.parsed)
        except Exception as exc:  # fastavro raises many kinds on corrupt bodies
            raise DecodeError(f"corrupt {writer.name} body: {type(exc).__name__}: {exc}") from None
        if buf.tell() != len(data):
            raise DecodeError(f"{len(data) - buf.tell()} trailing bytes after the {writer.name} body")
        return writer.name, record


def schema_fingerprint(parsed: Any, named: dict[str, Any] | None = None) -> bytes:
    """The 8 bytes of the single-object header: CRC-64-AVRO of the parsing canonical form.

    It covers the named types a schema refers to, so a change to Event changes InboxMessage's too.
    """
    expanded = _inline(parsed, named or {}, set())
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(expanded), "CRC-64-AVRO"))


def _inline(schema: Any, named: dict[str, Any], seen: set[str]) -> Any:
    """The schema with each named type it refers to written out at its first use, as Avro requires."""
    if isinstance(schema, str):
        if schema in named and schema not in seen:
            return _inline(named[schema], named, seen)
        return schema
    if isinstance(schema, list):
        return [_inline(s, named, seen) for s in schema]
    if isinstance(schema, dict):
        if "name" in schema and schema.get("type") in ("record", "enum", "fixed"):
            seen.add(schema["name"])
        out = dict(schema)
        if "fields" in out:
            out["fields"] = [{**f, "type": _inline(f["type"], named, seen)} for f in out["fields"]]
        for attr in ("items", "values"):
            if attr in out:
                out[attr] = _inline(out[attr], named, seen)
        return out
    return schema


_default: Codec | None = None


def default_codec() -> Codec:
    global _default
    if _default is None:
        _default = Codec()
    return _default
