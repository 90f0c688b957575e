"""Protobuf messages for the sink tables, derived from the Arrow schemas in :mod:`roadlens.schema`.

No ``protoc`` is needed: the message descriptors are built in code from the Arrow schemas
(the source of truth), and :func:`render_proto` writes the same descriptors as ``.proto``
text. The committed ``roadlens/sinks/proto/roadlens_v1.proto`` must equal that text
(``tests/sinks/test_proto.py``), so a schema change cannot silently drift from what Kafka
consumers compile against. Regenerate it with ``python -m roadlens.sinks.proto --write``.

Mapping (proto3, package ``roadlens.v1``):

- field numbers follow column order (column ``i`` is field ``i + 1``), so columns may only
  be appended, never inserted, renamed or reordered, within one schema version;
- ``int16``/``int32`` -> ``int32``, ``int64`` -> ``int64``, ``float32`` -> ``float``,
  ``float64`` -> ``double``, ``string`` -> ``string``, ``bool`` -> ``bool``;
- timestamps -> ``int64`` microseconds since the Unix epoch (UTC), the Arrow storage value;
- a nullable scalar column -> a proto3 ``optional`` field (absent = null);
- ``list<string>`` -> ``repeated string`` (a null list reads back as an empty one).

Encoding is vectorised: each field becomes one Arrow binary column of its wire bytes
(tag, varint or fixed-width value, length prefix) built with numpy, and the fields are
joined per row by Arrow; no message object is created per row. The bytes equal those of
``Message.SerializeToString()`` (fields in number order, proto3 defaults omitted), which
the tests check row by row.

Example:
    >>> from roadlens.synth.tables import synthetic_detections
    >>> payloads = encode_protobuf(synthetic_detections(2))
    >>> decode_protobuf("detections", payloads[0])["frame_number"]
    0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from roadlens.lake import SINK_TABLES
from roadlens.schema import SCHEMA_VERSION

PACKAGE = f"roadlens.v{SCHEMA_VERSION}"
PROTO_FILE = f"roadlens_v{SCHEMA_VERSION}.proto"
# The committed .proto text (package data of roadlens: ``sinks/proto/*.proto``).
PROTO_PATH = Path(__file__).with_name("proto") / PROTO_FILE
MESSAGE_NAMES: dict[str, str] = {
    "detections": "Detection",
    "events": "Event",
    "event_stats": "EventStat",
    "heatmaps": "Heatmap",
}
# Columns that hold JSON text: decoded to an object, as in the JSON payload.
JSON_TEXT_COLUMNS = frozenset({"attributes"})
CONTENT_TYPE = "application/x-protobuf"

_F = descriptor_pb2.FieldDescriptorProto
_TYPE_NAMES = {
    _F.TYPE_INT32: "int32",
    _F.TYPE_INT64: "int64",
    _F.TYPE_UINT32: "uint32",
    _F.TYPE_UINT64: "uint64",
    _F.TYPE_FLOAT: "float",
    _F.TYPE_DOUBLE: "double",
    _F.TYPE_BOOL: "bool",
    _F.TYPE_STRING: "string",
    _F.TYPE_BYTES: "bytes",
}
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LEN, _WIRE_FIXED32 = 0, 1, 2, 5


def _scalar_type(arrow_type: pa.DataType, column: str) -> _F.Type.ValueType:
    """The protobuf scalar type that carries ``arrow_type`` without loss."""
    t = arrow_type
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_int32(t):
        return _F.TYPE_INT32
    if pa.types.is_int64(t) or pa.types.is_timestamp(t):
        return _F.TYPE_INT64
    if pa.types.is_uint8(t) or pa.types.is_uint16(t) or pa.types.is_uint32(t):
        return _F.TYPE_UINT32
    if pa.types.is_uint64(t):
        return _F.TYPE_UINT64
    if pa.types.is_float32(t):
        return _F.TYPE_FLOAT
    if pa.types.is_float64(t):
        return _F.TYPE_DOUBLE
    if pa.types.is_boolean(t):
        return _F.TYPE_BOOL
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return _F.TYPE_STRING
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return _F.TYPE_BYTES
    raise TypeError(f"column {column!r}: no protobuf mapping for Arrow type {t}")


def _message_proto(table: str, schema: pa.Schema) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=MESSAGE_NAMES[table])
    for number, field in enumerate(schema, start=1):
        proto_field = message.field.add(name=field.name, number=number)
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            proto_field.label = _F.LABEL_REPEATED
            proto_field.type = _scalar_type(field.type.value_type, field.name)
            continue
        proto_field.label = _F.LABEL_OPTIONAL
        proto_field.type = _scalar_type(field.type, field.name)
        if field.nullable:
            # proto3 `optional`: a synthetic oneof named `_<field>` tracks presence.
            proto_field.proto3_optional = True
            proto_field.oneof_index = len(message.oneof_decl)
            message.oneof_decl.add(name=f"_{field.name}")
    return message


@cache
def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The ``roadlens_v1.proto`` file descriptor, one message per table of ``SINK_TABLES``."""
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"roadlens/{PROTO_FILE}", package=PACKAGE, syntax="proto3"
    )
    for table, schema in SINK_TABLES.items():
        proto.message_type.append(_message_proto(table, schema))
    return proto


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    # A private pool, so the generated file never clashes with other protos in the default one.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor_proto())
    return pool


@cache
def message_class(table: str) -> type[Message]:
    """The generated message class of ``table`` (e.g. ``roadlens.v1.Detection``).

    >>> message_class("detections").DESCRIPTOR.full_name
    'roadlens.v1.Detection'
    """
    if table not in MESSAGE_NAMES:
        raise KeyError(f"no protobuf message for table {table!r}; expected {sorted(MESSAGE_NAMES)}")
    descriptor = _pool().FindMessageTypeByName(f"{PACKAGE}.{MESSAGE_NAMES[table]}")
    return message_factory.GetMessageClass(descriptor)


def render_proto() -> str:
    """The descriptors of :func:`file_descriptor_proto` as ``.proto`` source text."""
    proto = file_descriptor_proto()
    lines = [
        "// Generated from roadlens/schema.py by roadlens.sinks.proto; do not edit.",
        "// Regenerate with: python -m roadlens.sinks.proto --write",
        "//",
        "// Field numbers follow the Arrow column order: append new columns, never reuse",
        "// or renumber a field. Timestamps are int64 microseconds since the Unix epoch (UTC).",
        "// An `optional` field is absent when the column is null.",
        "",
        f'syntax = "{proto.syntax}";',
        "",
        f"package {proto.package};",
    ]
    tables = {MESSAGE_NAMES[t]: t for t in MESSAGE_NAMES}
    for message in proto.message_type:
        schema = SINK_TABLES[tables[message.name]]
        lines += ["", f"// Table `{tables[message.name]}`, schema version {SCHEMA_VERSION}."]
        lines.append(f"message {message.name} {{")
        for field in message.field:
            arrow_type = schema.field(field.name).type
            label = ""
            if field.label == _F.LABEL_REPEATED:
                label = "repeated "
            elif field.proto3_optional:
                label = "optional "
            comment = ""
            if pa.types.is_timestamp(arrow_type):
                comment = "  // microseconds since 1970-01-01T00:00:00Z"
            elif field.name in JSON_TEXT_COLUMNS:
                comment = "  // a JSON object as text"
            type_name = _TYPE_NAMES[field.type]
            lines.append(f"  {label}{type_name} {field.name} = {field.number};{comment}")
        lines.append("}")
    return "\n".join(lines) + "\n"


# --- encoding -----------------------------------------------------------------------------
#
# A field's bytes for all rows come either as a byte matrix with a per-row length (numeric
# fields: tag + varint or fixed-width value), as an Arrow binary column (strings, lists), or
# as one constant (a column with the same value in every row, as video_id or model_sha256
# are within a video). Runs of numeric fields are cut from their joined matrices in one
# gather, constants are folded into their neighbours, and Arrow joins the pieces per row.


def _varint_matrix(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Base-128 varint bytes of uint64 ``values``: an ``(n, width)`` byte matrix and lengths.

    ``width`` is what the largest value needs (a negative int64 needs all 10 bytes).
    """
    v = values.astype(np.uint64, copy=False)
    n = v.shape[0]
    top = int(v.max()) if n else 0
    width = max(1, -(-top.bit_length() // 7))
    shifts = np.arange(0, 7 * width, 7, dtype=np.uint64)
    groups = ((v[:, None] >> shifts[None, :]) & np.uint64(0x7F)).astype(np.uint8)
    lengths = np.ones(n, dtype=np.int64)
    for i in range(1, width):
        # A value needs byte i when any bit at or above 7 * i is set.
        lengths += v >= np.uint64(1 << (7 * i))
    groups |= (np.arange(width)[None, :] < (lengths[:, None] - 1)).astype(np.uint8) << 7
    return groups, lengths


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _binary_from(data: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] < 2**31 - 1:
        buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
        return pa.BinaryArray.from_buffers(pa.binary(), len(lengths), buffers)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(lengths), buffers)


def _ragged(parts: list[tuple[np.ndarray, np.ndarray]]) -> pa.Array:
    """Per row, the first ``length`` bytes of each ``(matrix, lengths)`` part, concatenated."""
    matrix = np.concatenate([m for m, _ in parts], axis=1)
    keep = np.concatenate([np.arange(m.shape[1])[None, :] < n[:, None] for m, n in parts], axis=1)
    data = matrix[keep]  # row-major: row 0's kept bytes, then row 1's, ...
    return _binary_from(data, cast(np.ndarray, sum(n for _, n in parts)))


def _valid(column: pa.Array) -> np.ndarray:
    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    return column.is_valid().to_numpy(zero_copy_only=False)


def _with_tag(tag: bytes, body: np.ndarray) -> np.ndarray:
    head = np.broadcast_to(np.frombuffer(tag, np.uint8), (body.shape[0], len(tag)))
    return np.concatenate([head, body], axis=1)


def _numeric(column: pa.Array, field: _F) -> tuple[np.ndarray, np.ndarray]:
    """Tag + value bytes of a numeric field; length 0 where the field is not written."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    if field.type == _F.TYPE_BOOL:
        values = column.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
    else:
        values = column.fill_null(0).to_numpy(zero_copy_only=False)
    present = _valid(column)
    is_float = field.type in (_F.TYPE_FLOAT, _F.TYPE_DOUBLE)
    if not field.proto3_optional:
        # proto3 omits default values; for floats only +0.0 (-0.0 and NaN have bits set).
        nonzero = values != 0
        if is_float:
            nonzero |= np.signbit(values) | np.isnan(values)
        present &= nonzero
    n = len(values)
    if field.type == _F.TYPE_FLOAT:
        body = values.astype("<f4").view(np.uint8).reshape(n, 4)
        matrix = _with_tag(_varint_bytes(field.number << 3 | _WIRE_FIXED32), body)
        return matrix, np.where(present, matrix.shape[1], 0)
    if field.type == _F.TYPE_DOUBLE:
        body = values.astype("<f8").view(np.uint8).reshape(n, 8)
        matrix = _with_tag(_varint_bytes(field.number << 3 | _WIRE_FIXED64), body)
        return matrix, np.where(present, matrix.shape[1], 0)
    tag = _varint_bytes(field.number << 3 | _WIRE_VARINT)
    # Negative integers are sign-extended to 64 bits (10 varint bytes), as protobuf does.
    body, body_len = _varint_matrix(values.astype(np.int64).view(np.uint64))
    return _with_tag(tag, body), np.where(present, len(tag) + body_len, 0)


def _length_delimited(column: pa.Array, field: _F, emit_empty: bool) -> pa.Array:
    """Tag + length + bytes of string/bytes values; empty where the field is not written."""
    raw = column if pa.types.is_binary(column.type) else column.cast(pa.binary())
    lengths = pc.binary_length(raw).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    present = _valid(raw)
    if not emit_empty:
        present &= lengths > 0
    tag = _varint_bytes(field.number << 3 | _WIRE_LEN)
    body, body_len = _varint_matrix(lengths.astype(np.uint64))
    prefix = _ragged([(_with_tag(tag, body), np.where(present, len(tag) + body_len, 0))])
    # Rows that write nothing are null or empty, so their prefix and body are both empty.
    return pc.binary_join_element_wise(prefix, raw.fill_null(b""), b"")


def _repeated(column: pa.Array, field: _F) -> pa.Array:
    if field.type not in (_F.TYPE_STRING, _F.TYPE_BYTES):
        raise TypeError(f"{field.name}: only repeated string/bytes fields are supported")
    lists = column.cast(pa.list_(pa.binary()))
    # Every element is written, empty strings included. ``values`` + ``offsets`` (rather
    # than ``flatten``) keep the offsets valid for sliced arrays and null lists.
    elements = _length_delimited(lists.values, field, emit_empty=True)
    joined = pc.binary_join(pa.ListArray.from_arrays(lists.offsets, elements), b"")
    return joined.fill_null(b"")


def _is_constant(column: pa.Array) -> bool:
    """Whether every row holds the same value (all null counts as constant)."""
    if len(column) <= 1 or pa.types.is_list(column.type):
        return len(column) == 1
    if column.null_count:
        return column.null_count == len(column)
    if pa.types.is_floating(column.type):
        return False  # NaN != NaN and -0.0 == 0.0 would make equality lie
    return bool(pc.all(pc.equal(column, column[0])).as_py())


def _field_piece(column: pa.Array, field: _F) -> tuple[np.ndarray, np.ndarray] | pa.Array:
    if field.label == _F.LABEL_REPEATED:
        return _repeated(column, field)
    if field.type in (_F.TYPE_STRING, _F.TYPE_BYTES):
        return _length_delimited(column, field, emit_empty=field.proto3_optional)
    return _numeric(column, field)


def _message_proto_of(name: str) -> descriptor_pb2.DescriptorProto:
    if name not in MESSAGE_NAMES:
        raise KeyError(f"no protobuf message for table {name!r}; expected {sorted(MESSAGE_NAMES)}")
    return next(m for m in file_descriptor_proto().message_type if m.name == MESSAGE_NAMES[name])


def _message_descriptor(
    table: pa.Table, table_name: str | None
) -> tuple[str, descriptor_pb2.DescriptorProto]:
    name = table_name or (table.schema.metadata or {}).get(b"table", b"").decode()
    if name not in MESSAGE_NAMES:
        raise KeyError(f"no protobuf message for table {name!r}; pass table_name")
    return name, _message_proto_of(name)


def encode_protobuf_array(table: pa.Table, table_name: str | None = None) -> pa.BinaryArray:
    """One serialized message per row of ``table``, as one Arrow binary array.

    ``table`` is conformed to a sink table's schema; ``table_name`` defaults to the
    ``table`` entry of its schema metadata.
    """
    name, descriptor = _message_descriptor(table, table_name)
    if table.num_rows == 0:
        return pa.array([], pa.binary())
    pieces: list[pa.Array | pa.Scalar] = []
    numeric_run: list[tuple[np.ndarray, np.ndarray]] = []
    constant = b""

    def flush_run() -> None:
        if numeric_run:
            pieces.append(_ragged(numeric_run))
            numeric_run.clear()

    def flush_constant() -> None:
        nonlocal constant
        if constant:
            pieces.append(pa.scalar(constant, pa.binary()))
            constant = b""

    for field in descriptor.field:
        if field.name not in table.column_names:
            raise ValueError(f"{name}: table lacks column {field.name!r}")
        column = table.column(field.name).combine_chunks()
        if _is_constant(column):
            piece = _field_piece(column.slice(0, 1), field)
            value = _ragged([piece])[0] if isinstance(piece, tuple) else piece[0]
            flush_run()
            constant += value.as_py()
            continue
        piece = _field_piece(column, field)
        if isinstance(piece, tuple):
            flush_constant()
            numeric_run.append(piece)
            continue
        flush_run()
        flush_constant()
        pieces.append(piece)
    flush_run()
    flush_constant()
    if len(pieces) == 1 and isinstance(pieces[0], pa.Scalar):
        return pa.array([pieces[0].as_py()] * table.num_rows, pa.binary())
    joined = pc.binary_join_element_wise(*pieces, b"")
    if pa.types.is_large_binary(joined.type):
        joined = joined.cast(pa.binary())
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def encode_protobuf(table: pa.Table, table_name: str | None = None) -> list[bytes]:
    """One serialized message per row of ``table`` (see :func:`encode_protobuf_array`).

    >>> from roadlens.synth.tables import synthetic_events
    >>> len(encode_protobuf(synthetic_events(3)))
    3
    """
    return encode_protobuf_array(table, table_name).to_pylist()


# --- decoding -----------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso_micros(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _float32_text(value: float) -> float:
    # The shortest decimal that round-trips the float32, as the JSON payload writes it.
    return float(str(np.float32(value)))


@cache
def _converters(table: str) -> tuple[tuple[str, bool, Callable[[Any], Any] | None], ...]:
    """Per field: (name, has presence, converter to the JSON payload's value)."""
    schema = SINK_TABLES[table]
    out = []
    for field in _message_proto_of(table).field:
        arrow_type = schema.field(field.name).type
        convert: Callable[[Any], Any] | None = None
        if pa.types.is_timestamp(arrow_type):
            convert = _iso_micros
        elif pa.types.is_float32(arrow_type):
            convert = _float32_text
        elif field.name in JSON_TEXT_COLUMNS:
            convert = json.loads
        elif field.label == _F.LABEL_REPEATED:
            convert = list
        out.append((field.name, field.proto3_optional, convert))
    return tuple(out)


def decode_protobuf(table_name: str, payload: bytes) -> dict[str, Any]:
    """One message as a dict shaped like the JSON payload of the same row.

    Absent optional fields are ``None``, timestamps ISO 8601 UTC strings with
    microseconds, float32 values their shortest decimal, ``attributes`` a parsed object:
    a consumer gets the same dict whichever value format the topic uses.
    """
    message = message_class(table_name).FromString(payload)
    row: dict[str, Any] = {}
    for name, has_presence, convert in _converters(table_name):
        if has_presence and not message.HasField(name):
            row[name] = None
            continue
        value = getattr(message, name)
        row[name] = convert(value) if convert is not None else value
    return row


def main(argv: list[str] | None = None) -> int:
    """Print the generated ``.proto`` text, or write it over the committed file."""
    parser = argparse.ArgumentParser(description=render_proto.__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {PROTO_PATH}")
    args = parser.parse_args(argv)
    text = render_proto()
    if args.write:
        PROTO_PATH.parent.mkdir(parents=True, exist_ok=True)
        PROTO_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {PROTO_PATH}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
