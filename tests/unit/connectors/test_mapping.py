import io
import json
from pathlib import Path

import pytest
from fastavro import parse_schema, schemaless_writer

from aiflow.connectors.mapping import Mapping, MappingError

ORDER = {"id": 7, "status": "paid", "customer": {"country": "FR"}, "total": 12.5}


def test_template_key_whole_record_value() -> None:
    mapping = Mapping(key="orders.{status}")
    key, value = mapping.event(mapping.decode(json.dumps(ORDER).encode()))  # type: ignore[misc]
    assert key == "orders.paid" and json.loads(value) == ORDER  # type: ignore[arg-type]


def test_nested_fields_value_field_and_filters() -> None:
    mapping = Mapping(key="orders.{customer.country}", value="id", filters={"status": "paid"})
    assert mapping.event(ORDER) == ("orders.FR", "7")
    assert mapping.event({**ORDER, "status": "new"}) is None


def test_key_from_a_header_or_the_record_key() -> None:
    assert Mapping(key="header:type").event(ORDER, headers=[("type", b"order.created")])[0] == "order.created"  # type: ignore[index]
    assert Mapping(key="record-key").event(ORDER, record_key=b"k-7")[0] == "k-7"  # type: ignore[index]
    with pytest.raises(MappingError, match="no header 'type'"):
        Mapping(key="header:type").event(ORDER, headers=[])
    with pytest.raises(MappingError, match="no key"):
        Mapping(key="record-key").event(ORDER)


def test_a_missing_field_is_a_mapping_error_naming_it() -> None:
    with pytest.raises(MappingError, match="no field 'state'"):
        Mapping(key="orders.{state}").event(ORDER)


@pytest.mark.parametrize(("data", "reason"), [(b"{not json", "not JSON"), (None, "no value")])
def test_undecodable_values(data: bytes | None, reason: str) -> None:
    with pytest.raises(MappingError, match=reason):
        Mapping(key="k").decode(data)


def test_debezium_envelope_with_and_without_payload() -> None:
    change = {"op": "u", "before": {"id": 1, "status": "new"}, "after": {"id": 1, "status": "paid"},
              "source": {"table": "orders", "db": "shop"}}
    mapping = Mapping(key="{source.table}.{op}", value="after.status", debezium=True)
    for body in (change, {"schema": {}, "payload": change}):
        assert mapping.event(mapping.decode(json.dumps(body).encode())) == ("orders.u", "paid")
    deleted = {"op": "d", "before": {"id": 1, "status": "paid"}, "after": None, "source": {"table": "orders"}}
    assert Mapping(key="{source.table}.{op}.{id}", debezium=True).event(
        Mapping(key="x", debezium=True).decode(json.dumps(deleted).encode()))[0] == "orders.d.1"  # type: ignore[index]
    with pytest.raises(MappingError, match="not a Debezium"):
        mapping.decode(b'{"id": 1}')


def test_confluent_framed_avro_with_the_writers_schema(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "int"},
                                                            {"name": "status", "type": "string"}]}
    (tmp_path / "order.avsc").write_text(json.dumps(schema))
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), {"id": 3, "status": "paid"})
    framed = b"\x00\x00\x00\x00\x2a" + buf.getvalue()
    mapping = Mapping(key="orders.{status}", value="id", format="confluent-avro",
                      avro_schema=str(tmp_path / "order.avsc"))
    assert mapping.event(mapping.decode(framed)) == ("orders.paid", "3")
    with pytest.raises(MappingError, match="Confluent-framed"):
        mapping.decode(b"\x01abc")
    with pytest.raises(MappingError, match="needs the writer's schema"):
        Mapping(key="k", format="confluent-avro")


def test_bytes_format() -> None:
    mapping = Mapping(key="lines", format="bytes")
    assert mapping.event(mapping.decode(b"hello")) == ("lines", "hello")
    with pytest.raises(MappingError, match="not UTF-8"):
        mapping.decode(b"\xff\xfe")
