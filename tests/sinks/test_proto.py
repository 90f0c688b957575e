"""The Protobuf schema is derived from the Arrow contract, and its encoder is exact.

- the committed ``roadlens_v1.proto`` equals the text generated from ``roadlens.schema``,
  and that text parses back to the very descriptors the encoder uses;
- the vectorised encoder writes the same bytes as ``Message.SerializeToString()`` row by
  row, edge values included (nulls, zeros, -0.0, NaN, negative ints, unicode, lists);
- a decoded message equals the JSON payload of the same row, so consumers see one shape.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest
from google.protobuf import descriptor_pb2

from roadlens.lake import SINK_TABLES
from roadlens.schema import DETECTIONS, EVENTS
from roadlens.sinks.kafka import encode_json_array
from roadlens.sinks.proto import (
    MESSAGE_NAMES,
    PROTO_PATH,
    decode_protobuf,
    encode_protobuf,
    encode_protobuf_array,
    file_descriptor_proto,
    message_class,
    render_proto,
)
from roadlens.synth.tables import synthetic_detections, synthetic_events

F = descriptor_pb2.FieldDescriptorProto


def reference_bytes(table: pa.Table, name: str) -> list[bytes]:
    """Serialize row by row through the generated message class (the slow, trusted path)."""
    cls = message_class(name)
    micros = {
        f.name: table.column(f.name).cast(pa.int64()).to_pylist()
        for f in table.schema
        if pa.types.is_timestamp(f.type)
    }
    out = []
    for i, row in enumerate(table.to_pylist()):
        kwargs = {k: v for k, v in row.items() if v is not None}
        for column, values in micros.items():
            if values[i] is not None:
                kwargs[column] = values[i]
        out.append(cls(**kwargs).SerializeToString())
    return out


def parse_proto_text(text: str) -> dict[str, list[tuple[str, str, str, int]]]:
    """A tiny parser for the generated subset: {message: [(label, type, name, number)]}."""
    messages: dict[str, list[tuple[str, str, str, int]]] = {}
    current: list[tuple[str, str, str, int]] | None = None
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if m := re.fullmatch(r"message (\w+) \{", line):
            current = messages.setdefault(m.group(1), [])
        elif line == "}":
            current = None
        elif current is not None:
            m = re.fullmatch(r"(?:(optional|repeated) )?(\w+) (\w+) = (\d+);", line)
            assert m, f"unexpected line in .proto: {raw!r}"
            current.append((m.group(1) or "", m.group(2), m.group(3), int(m.group(4))))
    return messages


def test_committed_proto_file_matches_the_arrow_schemas() -> None:
    assert PROTO_PATH.read_text(encoding="utf-8") == render_proto(), (
        "roadlens/sinks/proto/roadlens_v1.proto is stale: "
        "run `python -m roadlens.sinks.proto --write` and review the diff"
    )


def test_proto_text_states_the_descriptors_the_encoder_uses() -> None:
    parsed = parse_proto_text(PROTO_PATH.read_text(encoding="utf-8"))
    type_names = {F.TYPE_INT32: "int32", F.TYPE_INT64: "int64", F.TYPE_FLOAT: "float"}
    type_names |= {F.TYPE_DOUBLE: "double", F.TYPE_STRING: "string", F.TYPE_BOOL: "bool"}
    proto = file_descriptor_proto()
    assert proto.package == "roadlens.v1"
    assert set(parsed) == {m.name for m in proto.message_type} == set(MESSAGE_NAMES.values())
    for message in proto.message_type:
        expected = [
            (
                "repeated"
                if f.label == F.LABEL_REPEATED
                else "optional"
                if f.proto3_optional
                else "",
                type_names[f.type],
                f.name,
                f.number,
            )
            for f in message.field
        ]
        assert parsed[message.name] == expected


@pytest.mark.parametrize("table", sorted(SINK_TABLES))
def test_fields_follow_the_arrow_columns(table: str) -> None:
    schema = SINK_TABLES[table]
    fields = list(message_class(table).DESCRIPTOR.fields)
    assert [f.name for f in fields] == schema.names
    assert [f.number for f in fields] == list(range(1, len(schema) + 1))
    for arrow_field, proto_field in zip(schema, fields, strict=True):
        is_list = pa.types.is_list(arrow_field.type)
        assert proto_field.is_repeated == is_list, arrow_field.name
        # Presence (proto3 `optional`) exactly for the nullable scalar columns.
        assert proto_field.has_presence == (arrow_field.nullable and not is_list), arrow_field.name
        if pa.types.is_timestamp(arrow_field.type):
            assert proto_field.type == F.TYPE_INT64


@pytest.mark.parametrize(
    ("make", "name"), [(synthetic_detections, "detections"), (synthetic_events, "events")]
)
def test_vectorised_encoding_equals_serialize_to_string(
    make: Callable[..., pa.Table], name: str
) -> None:
    table = make(3000)
    assert encode_protobuf(table) == reference_bytes(table, name)
    # A slice (non-zero Arrow offsets) encodes the same as a fresh copy of it.
    part = table.slice(1234, 500)
    assert encode_protobuf(part) == reference_bytes(part, name)


def edge_detections() -> pa.Table:
    base = synthetic_detections(6).to_pylist()
    edits = [
        {"track_id": None, "lat": None, "lon": None, "heading_deg": None},  # GPS gap
        {"track_id": 0, "lat": 0.0, "speed_mps": 0.0, "x1": 0.0},  # optional zeros are set
        {"track_id": -5, "class_id": -1, "frame_number": 2**62, "x2": -0.0},  # sign, big
        {"confidence": float("nan"), "gps_age_s": float("-inf"), "lon": 1e-300},
        {"vehicle_id": "", "session_id": None, "class_name": "Straßenschild ✓", "y1": 3.4e38},
        {"model_name": "", "pts_sec": 0.0, "frame_width": 0},  # proto3 defaults are omitted
    ]
    rows = [{**row, **edit} for row, edit in zip(base, edits, strict=True)]
    return pa.Table.from_pylist(rows, schema=DETECTIONS)


def edge_events() -> pa.Table:
    base = synthetic_events(4).to_pylist()
    edits = [
        {"detection_ids": None, "media_paths": [], "attributes": None, "value": None},
        {"detection_ids": ["", "a"], "media_paths": ["x" * 300], "direction": None},
        {"detection_ids": ["é" * 70], "attributes": '{"k": [1, 2]}', "track_id": None},
        {"detection_ids": [], "value": 0.0, "class_name": ""},
    ]
    rows = [{**row, **edit} for row, edit in zip(base, edits, strict=True)]
    return pa.Table.from_pylist(rows, schema=EVENTS)


@pytest.mark.parametrize(
    ("make", "name"), [(edge_detections, "detections"), (edge_events, "events")]
)
def test_edge_values_encode_like_protobuf_itself(make: Callable[..., pa.Table], name: str) -> None:
    table = make()
    ours = encode_protobuf(table)
    assert ours == reference_bytes(table, name)
    cls = message_class(name)
    second = cls.FromString(ours[1])
    if name == "detections":
        # An optional field set to zero is present; a null one is absent.
        assert second.HasField("track_id") and second.track_id == 0
        assert not cls.FromString(ours[0]).HasField("lat")
        third = cls.FromString(ours[2])
        assert (third.track_id, third.class_id, third.frame_number) == (-5, -1, 2**62)
        assert math.copysign(1.0, third.x2) == -1.0


def test_constant_and_varying_columns_give_the_same_bytes() -> None:
    # Constant folding must not change the bytes: compare a table whose columns are all
    # constant (one row repeated) with the same row encoded alone.
    row = synthetic_detections(1)
    repeated = pa.concat_tables([row] * 50)
    assert encode_protobuf(repeated) == encode_protobuf(row) * 50


def as_float32(rows: list[dict], schema: pa.Schema) -> list[dict]:
    """Float32 columns as np.float32: two shortest-decimal printers may pick different
    digits for one float32 (DuckDB ``305.171875``, numpy ``305.17188``), same value."""
    columns = [f.name for f in schema if pa.types.is_float32(f.type)]
    return [
        {**row, **{c: None if row[c] is None else np.float32(row[c]) for c in columns}}
        for row in rows
    ]


def test_decoded_message_equals_the_json_payload() -> None:
    tables = ((synthetic_detections(2000), "detections"), (synthetic_events(300), "events"))
    for table, name in tables:
        payloads = encode_protobuf(table)
        json_rows = [json.loads(v) for v in encode_json_array(table).to_pylist()]
        decoded = [decode_protobuf(name, p) for p in payloads]
        assert as_float32(decoded, table.schema) == as_float32(json_rows, table.schema)
        assert decoded[0].keys() == json_rows[0].keys()


def test_decode_keeps_nulls_and_values() -> None:
    table = edge_detections()
    decoded = [decode_protobuf("detections", p) for p in encode_protobuf(table)]
    assert decoded[0]["lat"] is None and decoded[0]["track_id"] is None
    assert decoded[1]["lat"] == 0.0 and decoded[1]["track_id"] == 0
    assert decoded[4]["class_name"] == "Straßenschild ✓" and decoded[4]["session_id"] is None
    assert decoded[4]["vehicle_id"] == ""  # empty, not null: a set optional field
    assert decoded[0]["captured_at"] == "2026-05-04T10:00:00.000000Z"
    assert np.float32(decoded[2]["x1"]) == table.column("x1")[2].as_py()


def test_protobuf_is_smaller_than_json() -> None:
    table = synthetic_detections(1000)
    proto = encode_protobuf_array(table)
    json_values = encode_json_array(table)
    assert proto.nbytes < 0.5 * json_values.nbytes


def test_unknown_table_is_refused() -> None:
    with pytest.raises(KeyError, match="no protobuf message"):
        encode_protobuf(pa.table({"a": [1]}))
