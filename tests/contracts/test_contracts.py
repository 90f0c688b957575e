"""Schema contracts: the Arrow schemas are the source of truth, and nothing drifts from them.

- every table's fields equal the contract recorded for its version
  (``roadlens/contracts/schema_contracts.json``); a change without a version bump fails
  with a message that names the change and the fix (checked by mutating copies);
- readers take tables written with an older version (:func:`upgrade_table`, and
  :func:`conform` for lake files) and refuse incompatible or newer ones clearly;
- the protobuf messages sent to Kafka and the PostgreSQL tables built by the migrations
  have the Arrow fields, with the deliberate differences listed here with their reasons.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from google.protobuf.descriptor import FieldDescriptor

from roadlens import contracts
from roadlens.contracts import (
    CONTRACTS_PATH,
    RECORD_COMMAND,
    check_all,
    check_contract,
    check_upgrades,
    contract_schema,
    diff_fields,
    load_contracts,
    parse_type,
    published_schemas,
    record,
    render_contracts,
)
from roadlens.lake import CATALOG, SINK_TABLES, ParquetLake
from roadlens.quality.quarantine import QUARANTINE
from roadlens.schema import (
    DETECTIONS,
    EVENTS,
    FRAMES,
    SCHEMA_VERSION,
    TIMESTAMP,
    SchemaVersionError,
    conform,
    schema_fingerprint,
    table_name,
    table_version,
    upgrade_table,
)
from roadlens.sinks.postgres import TYPE_OVERRIDES, upgrade
from roadlens.sinks.proto import MESSAGE_NAMES, PACKAGE, PROTO_PATH, message_class
from roadlens.synth.tables import synthetic_detections, synthetic_events

# Every table of the lake's catalogue has a recorded contract.
ALL_TABLES = set(CATALOG)


def bumped(
    schema: pa.Schema,
    *,
    version: int | None = None,
    add: list[pa.Field] | None = None,
    drop: list[str] | None = None,
    replace: dict[str, pa.Field] | None = None,
) -> pa.Schema:
    """A copy of ``schema`` with fields added/dropped/replaced and optionally a new version."""
    fields = [
        replace.get(f.name, f) if replace else f for f in schema if f.name not in (drop or [])
    ]
    meta = dict(schema.metadata)
    if version is not None:
        meta[b"schema_version"] = str(version).encode()
    return pa.schema([*fields, *(add or [])], metadata=meta)


def recorded_with(schema: pa.Schema) -> dict[str, Any]:
    """The recorded contracts plus ``schema``'s current version (in memory only)."""
    return record({table_name(schema): schema}, load_contracts())[0]


# --- the recorded contracts ---------------------------------------------------------------


def test_every_table_matches_its_recorded_contract() -> None:
    problems = check_all()
    assert problems == [], "\n\n".join(problems)


def test_every_table_schema_is_versioned_and_recorded() -> None:
    schemas = published_schemas()
    assert set(schemas) == ALL_TABLES
    recorded = load_contracts()
    assert set(recorded) == ALL_TABLES
    for name, schema in schemas.items():
        assert table_name(schema) == name
        assert table_version(schema) >= SCHEMA_VERSION
        entry = recorded[name][table_version(schema)]
        assert entry["fingerprint"] == schema_fingerprint(schema)
        assert [f["name"] for f in entry["fields"]] == schema.names
        if "schema_version" in schema.names:
            # The per-row version column leads the row and can never be null.
            assert schema.field("schema_version") == pa.field(
                "schema_version", pa.int16(), nullable=False
            )
            assert schema.names[0] == "schema_version"


def test_committed_contract_file_is_in_canonical_form() -> None:
    text = CONTRACTS_PATH.read_text(encoding="utf-8")
    assert render_contracts(load_contracts()) == text
    assert json.loads(text)["tables"].keys() == ALL_TABLES


def test_every_recorded_type_parses_back_to_itself() -> None:
    for table, versions in load_contracts().items():
        for version in versions:
            rebuilt = contract_schema(load_contracts(), table, version)
            assert schema_fingerprint(rebuilt) == versions[version]["fingerprint"]
    assert parse_type("list<item: string not null>") == pa.list_(
        pa.field("item", pa.string(), nullable=False)
    )
    with pytest.raises(ValueError, match="cannot parse"):
        parse_type("struct<a: int32>")


# --- the fingerprint ----------------------------------------------------------------------


def test_fingerprint_is_stable_and_ignores_metadata() -> None:
    tiny = pa.schema([pa.field("a", pa.int64(), nullable=False)])
    # Pinned: a pyarrow upgrade that respelled a type would change every fingerprint.
    assert (
        schema_fingerprint(tiny)
        == "4f42a16b21c1bc62479aca71589034ad5ea2c072a10b4ff68a893868ec19c172"
    )
    assert schema_fingerprint(DETECTIONS) == schema_fingerprint(
        DETECTIONS.with_metadata({"table": "x", "schema_version": "9"})
    )


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda s: s.append(pa.field("extra", pa.string())), id="added"),
        pytest.param(lambda s: s.remove(s.get_field_index("lat")), id="removed"),
        pytest.param(
            lambda s: s.set(s.get_field_index("x1"), pa.field("x1", pa.float64(), False)),
            id="retyped",
        ),
        pytest.param(
            lambda s: s.set(s.get_field_index("lat"), pa.field("lat", pa.float64(), False)),
            id="nullability",
        ),
        pytest.param(
            lambda s: s.set(s.get_field_index("x1"), pa.field("x_1", pa.float32(), False)),
            id="renamed",
        ),
        pytest.param(
            lambda s: pa.schema([s.field(1), s.field(0), *list(s)[2:]], metadata=s.metadata),
            id="reordered",
        ),
    ],
)
def test_any_field_change_changes_the_fingerprint(mutate: Any) -> None:
    assert schema_fingerprint(mutate(DETECTIONS)) != schema_fingerprint(DETECTIONS)


# --- the contract check, on mutated copies --------------------------------------------------


def test_a_field_change_without_a_version_bump_fails_with_what_changed_and_what_to_do() -> None:
    changed = bumped(
        DETECTIONS,
        add=[pa.field("lane", pa.int8())],
        drop=["gps_age_s"],
        replace={
            "confidence": pa.field("confidence", pa.float64(), nullable=False),
            "lat": pa.field("lat", pa.float64(), nullable=False),
        },
    )
    [problem] = check_contract(changed, load_contracts())
    assert "table 'detections' changed without a version bump" in problem
    assert "contract recorded for version 1" in problem
    assert "added: lane int8 (nullable)" in problem
    assert "removed: gps_age_s" in problem
    assert "retyped: confidence float -> double" in problem
    assert "nullability changed: lat nullable -> NOT NULL" in problem
    assert '"schema_version": "2"' in problem  # the bump to make
    assert RECORD_COMMAND in problem
    assert "upgrade_table" in problem and "version-1 table" in problem
    assert "  reordered:" not in problem


def test_a_reorder_alone_is_reported() -> None:
    fields = list(EVENTS)
    swapped = pa.schema([fields[0], fields[2], fields[1], *fields[3:]], metadata=EVENTS.metadata)
    [problem] = check_contract(swapped, load_contracts())
    assert "reordered" in problem and "protobuf field numbers" in problem
    assert "  added:" not in problem and "  removed:" not in problem


def test_a_bumped_version_must_be_recorded_then_passes() -> None:
    v2 = bumped(DETECTIONS, version=2, add=[pa.field("lane", pa.int8())])
    [problem] = check_contract(v2, load_contracts())
    assert "version 2, which has no recorded contract yet" in problem
    assert RECORD_COMMAND in problem
    contracts_v2 = recorded_with(v2)
    assert sorted(contracts_v2["detections"]) == [1, 2]
    assert check_contract(v2, contracts_v2) == []
    assert check_upgrades(v2, contracts_v2) == []
    # The released version 1 is still the recorded one, untouched.
    assert contracts_v2["detections"][1] == load_contracts()["detections"][1]


def test_a_new_table_without_a_contract_fails() -> None:
    new = pa.schema([pa.field("a", pa.int32())], metadata={"table": "lanes", "schema_version": "1"})
    [problem] = check_contract(new, load_contracts())
    assert "'lanes' (version 1) has no recorded contract" in problem and RECORD_COMMAND in problem


def test_a_version_never_goes_back() -> None:
    v2 = bumped(FRAMES, version=2, add=[pa.field("blur", pa.float32())])
    contracts_v2 = recorded_with(v2)
    [problem] = check_contract(FRAMES, contracts_v2)
    assert "is at version 1 but version 2 is already recorded" in problem


def test_a_hand_edited_fingerprint_is_caught() -> None:
    edited = load_contracts()
    edited["frames"][1] = {**edited["frames"][1], "fingerprint": "0" * 64}
    problems = check_contract(FRAMES, edited)
    assert any("edited by hand" in p for p in problems)


def test_an_incompatible_bump_fails_the_upgrade_check() -> None:
    v2 = bumped(EVENTS, version=2, add=[pa.field("severity", pa.int16(), nullable=False)])
    [problem] = check_upgrades(v2, recorded_with(v2))
    assert "readers cannot take 'events' version 1" in problem
    assert "['severity']" in problem and "no default" in problem
    with_default = bumped(
        EVENTS,
        version=2,
        add=[pa.field("severity", pa.int16(), nullable=False, metadata={"default": "0"})],
    )
    assert check_upgrades(with_default, recorded_with(with_default)) == []


def test_record_refuses_to_rewrite_a_recorded_version() -> None:
    changed = bumped(FRAMES, add=[pa.field("blur", pa.float32())])
    with pytest.raises(ValueError, match="already recorded with other fields; bump"):
        record({"frames": changed}, load_contracts())
    rewritten, written = record({"frames": changed}, load_contracts(), overwrite=True)
    assert written == ["frames v1"]
    assert check_contract(changed, rewritten) == []
    assert record(published_schemas(), load_contracts()) == (load_contracts(), [])


def test_command_line_records_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "contracts.json"
    assert contracts.main(["--path", str(path)]) == 1
    assert "has no recorded contract" in capsys.readouterr().err
    assert contracts.main(["--record", "--path", str(path)]) == 0
    assert "recorded detections v1" in capsys.readouterr().out
    assert path.read_text(encoding="utf-8") == CONTRACTS_PATH.read_text(encoding="utf-8")
    assert contracts.main(["--path", str(path)]) == 0


def test_diff_names_each_kind_of_change() -> None:
    old = [
        {"name": "a", "type": "int16", "nullable": False},
        {"name": "b", "type": "string", "nullable": True},
    ]
    new = pa.schema([pa.field("b", pa.string(), nullable=True), pa.field("c", pa.int64(), False)])
    changes = diff_fields(old, new)
    assert changes.added == ["c int64 (NOT NULL)"]
    assert changes.removed == ["a"]
    assert changes.retyped == [] and changes.nullability == [] and not changes.reordered


# --- readers take the previous version -------------------------------------------------------


def v2_detections() -> pa.Schema:
    """DETECTIONS at version 2: a nullable ``lane`` added, ``gps_age_s`` removed,
    ``frame_width`` widened to int64, a NOT NULL ``lens`` with a default."""
    return bumped(
        DETECTIONS,
        version=2,
        drop=["gps_age_s"],
        replace={"frame_width": pa.field("frame_width", pa.int64(), nullable=False)},
        add=[
            pa.field("lane", pa.int8()),
            pa.field("lens", pa.string(), nullable=False, metadata={"default": '"wide"'}),
        ],
    )


def test_upgrade_fills_drops_casts_and_rewrites_the_version() -> None:
    v1 = synthetic_detections(5)
    v2 = v2_detections()
    out = upgrade_table(v1, v2)
    assert out.schema.equals(v2, check_metadata=True)
    assert out.column("lane").to_pylist() == [None] * 5
    assert out.column("lens").to_pylist() == ["wide"] * 5
    assert "gps_age_s" not in out.column_names
    assert out.column("frame_width").to_pylist() == v1.column("frame_width").to_pylist()
    assert out.column("schema_version").to_pylist() == [2] * 5
    assert out.column("detection_id").equals(v1.column("detection_id"))


def test_conform_upgrades_a_lake_file_written_with_the_previous_version(tmp_path: Path) -> None:
    lake = ParquetLake(tmp_path)
    v1 = synthetic_detections(4)
    assert v1.schema.metadata[b"schema_version"] == b"1"
    lake.write_video("detections", v1, date="2026-05-04", source_id="veh-01", video_id="v")
    stored = lake.read_video("detections", "v")
    # Today's reader: the file is the current version and reads back unchanged.
    assert conform(stored, DETECTIONS).equals(v1)
    # Tomorrow's reader (version 2): the same file is upgraded, not refused.
    out = conform(stored, v2_detections())
    assert out.column("schema_version").to_pylist() == [2] * 4
    assert out.column("lane").null_count == 4
    assert out.column("video_id").to_pylist() == v1.column("video_id").to_pylist()


def test_upgrade_refuses_a_newer_version() -> None:
    v2_rows = upgrade_table(synthetic_detections(2), v2_detections())
    with pytest.raises(SchemaVersionError, match="version 2, newer than this reader's version 1"):
        upgrade_table(v2_rows, DETECTIONS)
    # conform reads the newer version from the metadata a file keeps, and refuses too.
    with pytest.raises(SchemaVersionError, match="newer than this reader's"):
        conform(v2_rows, DETECTIONS)


def test_upgrade_refuses_a_new_not_null_column_without_default() -> None:
    v2 = bumped(DETECTIONS, version=2, add=[pa.field("lane", pa.int8(), nullable=False)])
    with pytest.raises(SchemaVersionError, match=r"NOT NULL columns \['lane'\] are missing"):
        upgrade_table(synthetic_detections(2), v2)


def test_upgrade_refuses_a_lossy_cast_and_nulls_in_a_not_null_column() -> None:
    v2 = bumped(FRAMES, version=2, replace={"image_path": pa.field("image_path", pa.int32())})
    old = pa.table(
        {
            "video_id": ["v"],
            "frame_number": [1],
            "pts_sec": [0.0],
            "captured_at": pa.array([0], TIMESTAMP),
            "width": [64],
            "height": [48],
            "image_path": ["frames/000001.jpg"],
        }
    ).replace_schema_metadata({"table": "frames", "schema_version": "1"})
    with pytest.raises(SchemaVersionError, match=r"'image_path' of type string .* as int32"):
        upgrade_table(old, v2)
    tightened = bumped(
        FRAMES, version=2, replace={"image_path": pa.field("image_path", pa.string(), False)}
    )
    with pytest.raises(SchemaVersionError, match="'image_path' holds 1 nulls but is NOT NULL"):
        upgrade_table(old.set_column(6, "image_path", pa.array([None], pa.string())), tightened)


def test_a_current_version_table_must_have_every_column() -> None:
    rows = synthetic_detections(2).drop_columns(["lat"])
    with pytest.raises(SchemaVersionError, match=r"detections lacks columns \['lat'\]"):
        upgrade_table(rows, DETECTIONS)
    # Declared older, the same table is upgraded: lat is nullable.
    assert upgrade_table(rows, DETECTIONS, from_version=0).column("lat").null_count == 2


def test_conform_refuses_rows_whose_version_column_disagrees() -> None:
    rows = synthetic_events(3).replace_schema_metadata(None)
    rows = rows.set_column(0, "schema_version", pa.array([0, 1, 1], pa.int16()))
    with pytest.raises(SchemaVersionError, match=r"schema_version 0\.\.1 .* call upgrade_table"):
        conform(rows, EVENTS)
    # upgrade_table reads the version from that column (no metadata) and rewrites it.
    assert upgrade_table(rows, EVENTS).column("schema_version").to_pylist() == [1, 1, 1]


def test_conform_ignores_the_metadata_of_another_table() -> None:
    frames = pa.table(
        {
            "video_id": ["v"],
            "frame_number": [1],
            "pts_sec": [0.0],
            "captured_at": pa.array([0], TIMESTAMP),
            "width": [64],
            "height": [48],
            "image_path": [None],
        }
    ).replace_schema_metadata({"table": "videos", "schema_version": "7"})
    out = conform(frames, FRAMES)
    assert out.schema.metadata[b"table"] == b"frames"
    assert out.num_rows == 1


# --- Protobuf (Kafka) against the Arrow schemas ------------------------------------------------

_FD = FieldDescriptor
# Arrow type -> the protobuf scalar types that carry it without loss (independent of the
# mapping in roadlens.sinks.proto, so a wrong mapping there fails here).
PROTO_TYPES: list[tuple[Any, set[int]]] = [
    (pa.types.is_int16, {_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32}),
    (pa.types.is_int32, {_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32}),
    (pa.types.is_int64, {_FD.TYPE_INT64, _FD.TYPE_SINT64, _FD.TYPE_SFIXED64}),
    (pa.types.is_float32, {_FD.TYPE_FLOAT}),
    (pa.types.is_float64, {_FD.TYPE_DOUBLE}),
    (pa.types.is_string, {_FD.TYPE_STRING}),
    (pa.types.is_boolean, {_FD.TYPE_BOOL}),
    # Deliberate: timestamps travel as int64 microseconds since the Unix epoch (UTC), the
    # Arrow storage value, instead of google.protobuf.Timestamp (no import, no conversion).
    (lambda t: pa.types.is_timestamp(t) and t.unit == "us" and t.tz == "UTC", {_FD.TYPE_INT64}),
]


def compatible_proto_types(arrow_type: pa.DataType) -> set[int]:
    for matches, proto_types in PROTO_TYPES:
        if matches(arrow_type):
            return proto_types
    raise AssertionError(f"no protobuf mapping is allowed for Arrow type {arrow_type}")


def test_kafka_tables_have_a_protobuf_message_each() -> None:
    assert set(MESSAGE_NAMES) == set(SINK_TABLES)
    assert f"roadlens.v{SCHEMA_VERSION}" == PACKAGE


@pytest.mark.parametrize("table", sorted(SINK_TABLES))
def test_protobuf_message_fields_match_the_arrow_fields(table: str) -> None:
    schema = SINK_TABLES[table]
    descriptor = message_class(table).DESCRIPTOR
    assert descriptor.full_name == f"{PACKAGE}.{MESSAGE_NAMES[table]}"
    assert [f.name for f in descriptor.fields] == schema.names
    # Field numbers follow the column order, so only appending keeps old readers working.
    assert [f.number for f in descriptor.fields] == list(range(1, len(schema) + 1))
    for proto_field in descriptor.fields:
        arrow = schema.field(proto_field.name)
        where = f"{table}.{arrow.name}"
        if pa.types.is_list(arrow.type):
            # Deliberate: list<string> -> repeated string; a null list reads back as an
            # empty one (repeated fields have no presence in proto3).
            assert proto_field.label == _FD.LABEL_REPEATED, where
            assert proto_field.type in compatible_proto_types(arrow.type.value_type), where
            continue
        assert proto_field.label != _FD.LABEL_REPEATED, where
        assert proto_field.type in compatible_proto_types(arrow.type), where
        # A nullable column is a proto3 `optional` (absent = null); a NOT NULL one is plain.
        assert proto_field.has_presence == arrow.nullable, where


def test_committed_proto_names_each_tables_version() -> None:
    text = PROTO_PATH.read_text(encoding="utf-8")
    found = dict(re.findall(r"// Table `(\w+)`, schema version (\d+)\.", text))
    assert found == {t: str(table_version(s)) for t, s in SINK_TABLES.items()}


# --- PostgreSQL migrations against the Arrow schemas -----------------------------------------

# information_schema.columns data_type (udt_name for arrays) of each Arrow type.
SQL_TYPES: list[tuple[Any, str]] = [
    (pa.types.is_int16, "smallint"),
    (pa.types.is_int32, "integer"),
    (pa.types.is_int64, "bigint"),
    (pa.types.is_float32, "real"),
    (pa.types.is_float64, "double precision"),
    (pa.types.is_string, "text"),
    (pa.types.is_boolean, "boolean"),
    (lambda t: pa.types.is_timestamp(t) and t.tz is not None, "timestamp with time zone"),
    (lambda t: pa.types.is_list(t) and pa.types.is_string(t.value_type), "ARRAY of _text"),
]
# Deliberate differences between the Arrow type and the PostgreSQL type, with the reason.
SQL_DIFFERENCES: dict[tuple[str, str], tuple[str, str]] = {
    ("detections", "detection_id"): (
        "uuid",
        "ids are deterministic UUIDv8 text in Arrow; uuid stores 16 bytes and keeps the "
        "time-ordered primary key compact",
    ),
    ("events", "event_id"): ("uuid", "as detection_id"),
    ("events", "attributes"): (
        "jsonb",
        "Arrow holds the JSON object as text (protobuf and Parquet have no JSON type); "
        "jsonb makes it queryable in SQL",
    ),
    ("quarantine", "row_json"): ("jsonb", "as attributes: the original row, queryable"),
}
# Every table the migrations create with an Arrow contract: the sink tables and the
# quarantine of rows that failed validation (roadlens.quality.quarantine).
SQL_CONTRACT_TABLES: dict[str, pa.Schema] = {**SINK_TABLES, "quarantine": QUARANTINE}
# Tables the migrations create that are bookkeeping, not contract tables.
SQL_BOOKKEEPING = {"export_batches", "schema_migrations"}


def expected_sql_type(table: str, field: pa.Field) -> str:
    if (table, field.name) in SQL_DIFFERENCES:
        return SQL_DIFFERENCES[table, field.name][0]
    for matches, sql_type in SQL_TYPES:
        if matches(field.type):
            return sql_type
    raise AssertionError(f"no PostgreSQL mapping is allowed for {table}.{field.name}")


def test_the_listed_sql_differences_are_the_sinks_type_overrides() -> None:
    # The sink encodes exactly these columns specially; a new override must be listed here.
    assert {c: t for (_, c), (t, _) in SQL_DIFFERENCES.items()} == TYPE_OVERRIDES
    for table, column in SQL_DIFFERENCES:
        assert column in SQL_CONTRACT_TABLES[table].names


@pytest.mark.postgres
def test_postgres_columns_match_the_arrow_fields(postgres_url: str, pg_schema: str) -> None:
    upgrade(postgres_url, pg_schema)
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            """
            SELECT table_name, column_name, data_type, udt_name, is_nullable
            FROM information_schema.columns
            WHERE table_schema = %s
              AND table_name IN (SELECT relname FROM pg_class c
                                 JOIN pg_namespace n ON n.oid = c.relnamespace
                                 WHERE n.nspname = %s AND NOT c.relispartition)
            ORDER BY table_name, ordinal_position
            """,
            (pg_schema, pg_schema),
        ).fetchall()
    columns: dict[str, list[tuple[str, str, bool]]] = {}
    for table, column, data_type, udt_name, is_nullable in rows:
        spelled = f"ARRAY of {udt_name}" if data_type == "ARRAY" else data_type
        columns.setdefault(table, []).append((column, spelled, is_nullable == "YES"))
    assert set(columns) - SQL_BOOKKEEPING == set(SQL_CONTRACT_TABLES)
    for table, schema in SQL_CONTRACT_TABLES.items():
        expected = [(f.name, expected_sql_type(table, f), f.nullable) for f in schema]
        # Compared as lists: same names, same order ("column for column"), same types and
        # NOT NULL exactly where Arrow says nullable=False.
        assert columns[table] == expected, table
