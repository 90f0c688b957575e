"""Recorded schema contracts: the fields of every table, per table version.

The Arrow schemas in :mod:`roadlens.schema` are the source of truth. For each table and
version, ``schema_contracts.json`` (next to this module) records the fields (name, type,
nullability, in order) and their :func:`~roadlens.schema.schema_fingerprint`. A table
whose fields differ from the contract recorded for its current version changed without a
version bump: :func:`check_all` (run by ``tests/contracts/test_contracts.py``) reports what
changed and what to do. Every older recorded version must still be readable through
:func:`~roadlens.schema.upgrade_table`.

Command line::

    python -m roadlens.contracts            # check, exit status 1 on a problem
    python -m roadlens.contracts --record   # record the current version of every table

Example:
    >>> from roadlens.schema import DETECTIONS
    >>> check_contract(DETECTIONS, load_contracts())
    []
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from roadlens import schema as schema_module
from roadlens.schema import (
    SchemaVersionError,
    schema_fingerprint,
    table_name,
    table_version,
    upgrade_table,
)

CONTRACTS_PATH = Path(__file__).with_name("schema_contracts.json")
RECORD_COMMAND = "python -m roadlens.contracts --record"

# {table: {version: {"fingerprint": str, "fields": [{"name", "type", "nullable"}, ...]}}}
Contracts = dict[str, dict[int, dict[str, Any]]]


def published_schemas() -> dict[str, pa.Schema]:
    """Every table schema of :mod:`roadlens.schema` (a ``pa.Schema`` with a ``table`` name).

    A schema added to that module is picked up here, so it fails the contract check until
    its contract is recorded.

    >>> sorted(published_schemas())[:3]
    ['detections', 'event_stats', 'events']
    """
    found: dict[str, pa.Schema] = {}
    for value in vars(schema_module).values():
        if isinstance(value, pa.Schema) and b"table" in (value.metadata or {}):
            name = table_name(value)
            if name in found and not found[name].equals(value, check_metadata=True):
                raise ValueError(f"two schemas in roadlens.schema name table {name!r}")
            found[name] = value
    return dict(sorted(found.items()))


def schema_fields(schema: pa.Schema) -> list[dict[str, Any]]:
    """The recorded form of ``schema``'s fields: name, Arrow type text, nullability.

    >>> schema_fields(pa.schema([pa.field("a", pa.int16(), nullable=False)]))
    [{'name': 'a', 'type': 'int16', 'nullable': False}]
    """
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]


_TIMESTAMP = re.compile(r"timestamp\[(s|ms|us|ns)(?:, tz=(.+))?\]")
_LIST = re.compile(r"list<item: (.+?)( not null)?>")


def parse_type(text: str) -> pa.DataType:
    """The Arrow type whose ``str()`` is ``text`` (the recorded spelling of a field type).

    >>> parse_type("timestamp[us, tz=UTC]"), parse_type("list<item: string>")
    (TimestampType(timestamp[us, tz=UTC]), ListType(list<item: string>))
    """
    if m := _TIMESTAMP.fullmatch(text):
        result: pa.DataType = pa.timestamp(m.group(1), tz=m.group(2))
    elif m := _LIST.fullmatch(text):
        result = pa.list_(pa.field("item", parse_type(m.group(1)), nullable=not m.group(2)))
    else:
        try:
            result = pa.type_for_alias(text)
        except ValueError as exc:
            raise ValueError(f"cannot parse recorded Arrow type {text!r}") from exc
    if str(result) != text:
        raise ValueError(f"recorded Arrow type {text!r} parses to {result}")
    return result


def contract_schema(contracts: Contracts, table: str, version: int) -> pa.Schema:
    """The Arrow schema recorded for ``table`` at ``version``, with its table metadata.

    >>> contract_schema(load_contracts(), "frames", 1).names[:2]
    ['video_id', 'frame_number']
    """
    recorded = contracts[table][version]["fields"]
    return pa.schema(
        [pa.field(f["name"], parse_type(f["type"]), nullable=f["nullable"]) for f in recorded],
        metadata={"table": table, "schema_version": str(version)},
    )


def load_contracts(path: Path | str = CONTRACTS_PATH) -> Contracts:
    """The recorded contracts (an empty mapping when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        table: {int(version): entry for version, entry in versions.items()}
        for table, versions in data["tables"].items()
    }


def render_contracts(contracts: Contracts) -> str:
    """The JSON text of ``contracts``: sorted, one field per line, stable across runs."""
    lines = [
        "{",
        f'  "comment": "Recorded by `{RECORD_COMMAND}` from roadlens/schema.py; '
        'never edit a released version.",',
        '  "tables": {',
    ]
    tables = sorted(contracts)
    for ti, table in enumerate(tables):
        lines.append(f"    {json.dumps(table)}: {{")
        versions = sorted(contracts[table])
        for vi, version in enumerate(versions):
            entry = contracts[table][version]
            lines.append(f'      "{version}": {{')
            lines.append(f'        "fingerprint": {json.dumps(entry["fingerprint"])},')
            lines.append('        "fields": [')
            fields = entry["fields"]
            for fi, f in enumerate(fields):
                item = json.dumps({k: f[k] for k in ("name", "type", "nullable")})
                lines.append(f"          {item}{',' if fi < len(fields) - 1 else ''}")
            lines.append("        ]")
            lines.append(f"      }}{',' if vi < len(versions) - 1 else ''}")
        lines.append(f"    }}{',' if ti < len(tables) - 1 else ''}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FieldChanges:
    """How a table's fields differ from a recorded contract."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retyped: list[str] = field(default_factory=list)
    nullability: list[str] = field(default_factory=list)
    reordered: bool = False

    def lines(self) -> list[str]:
        """One line per kind of change, for an error message."""
        out = []
        for label, items in (
            ("added", self.added),
            ("removed", self.removed),
            ("retyped", self.retyped),
            ("nullability changed", self.nullability),
        ):
            if items:
                out.append(f"  {label}: {', '.join(items)}")
        if self.reordered:
            out.append("  reordered: the column order changed (protobuf field numbers follow it)")
        return out


def diff_fields(recorded: Sequence[Mapping[str, Any]], current: pa.Schema) -> FieldChanges:
    """What changed from the ``recorded`` fields to ``current``'s.

    >>> old = [{"name": "a", "type": "int16", "nullable": False}]
    >>> diff_fields(old, pa.schema([("a", pa.int32()), ("b", pa.string())])).lines()
    ['  added: b string (nullable)', '  retyped: a int16 -> int32', '  nullability changed: a NOT NULL -> nullable']
    """
    old = {f["name"]: f for f in recorded}
    new = {f["name"]: f for f in schema_fields(current)}

    def nullable(flag: bool) -> str:
        return "nullable" if flag else "NOT NULL"

    changes = FieldChanges(
        added=[
            f"{n} {f['type']} ({nullable(f['nullable'])})" for n, f in new.items() if n not in old
        ],
        removed=[n for n in old if n not in new],
        retyped=[
            f"{n} {old[n]['type']} -> {f['type']}"
            for n, f in new.items()
            if n in old and old[n]["type"] != f["type"]
        ],
        nullability=[
            f"{n} {nullable(old[n]['nullable'])} -> {nullable(f['nullable'])}"
            for n, f in new.items()
            if n in old and old[n]["nullable"] != f["nullable"]
        ],
        reordered=[n for n in old if n in new] != [n for n in new if n in old],
    )
    return changes


def _what_to_do(table: str, version: int) -> list[str]:
    return [
        "If the change is intended:",
        f'  1. bump the table\'s version in roadlens/schema.py: metadata={{"table": '
        f'"{table}", "schema_version": "{version + 1}"}};',
        f"  2. record the new contract: {RECORD_COMMAND}",
        f"  3. keep version {version} readable: roadlens.schema.upgrade_table fills added "
        "nullable columns with nulls and drops removed ones; an added NOT NULL column needs "
        'a default (field metadata {"default": <JSON literal>}), a retype a lossless cast; '
        f"add a test that reads a version-{version} table;",
        "  4. for a sink table, regenerate the protobuf file (python -m roadlens.sinks.proto "
        "--write) and add a migration under roadlens/sql/postgres/.",
        "Otherwise revert the field change.",
    ]


def check_contract(schema: pa.Schema, contracts: Contracts) -> list[str]:
    """Problems of ``schema`` against the recorded ``contracts`` (empty when it conforms)."""
    table = table_name(schema)
    version = table_version(schema)
    recorded = contracts.get(table, {})
    if not recorded:
        return [
            f"table {table!r} (version {version}) has no recorded contract: "
            f"run `{RECORD_COMMAND}` and commit {CONTRACTS_PATH.name}"
        ]
    problems = []
    for v, entry in sorted(recorded.items()):
        fields_fp = schema_fingerprint(contract_schema(contracts, table, v))
        if entry["fingerprint"] != fields_fp:
            problems.append(
                f"table {table!r} version {v}: the recorded fingerprint does not match the "
                f"recorded fields ({CONTRACTS_PATH.name} was edited by hand?); re-record it"
            )
    newest = max(recorded)
    if version < newest:
        problems.append(
            f"table {table!r} is at version {version} but version {newest} is already "
            "recorded: a version never goes back; bump past it"
        )
    elif version not in recorded:
        problems.append(
            f"table {table!r} is at version {version}, which has no recorded contract yet: "
            f"run `{RECORD_COMMAND}`"
        )
    elif recorded[version]["fingerprint"] != schema_fingerprint(schema):
        changes = diff_fields(recorded[version]["fields"], schema)
        problems.append(
            "\n".join(
                [
                    f"table {table!r} changed without a version bump: its fields no longer "
                    f"match the contract recorded for version {version} in "
                    f"roadlens/contracts/{CONTRACTS_PATH.name}.",
                    *changes.lines(),
                    *_what_to_do(table, version),
                ]
            )
        )
    return problems


def check_upgrades(schema: pa.Schema, contracts: Contracts) -> list[str]:
    """Problems reading each older recorded version of ``schema``'s table as the current one.

    An empty table of each older version's recorded fields goes through
    :func:`~roadlens.schema.upgrade_table`: a missing NOT NULL column without a default
    or a type with no cast fails there.
    """
    table = table_name(schema)
    problems = []
    for version in sorted(v for v in contracts.get(table, {}) if v < table_version(schema)):
        old = contract_schema(contracts, table, version)
        try:
            upgraded = upgrade_table(old.empty_table(), schema)
        except SchemaVersionError as exc:
            problems.append(f"readers cannot take {table!r} version {version}: {exc}")
            continue
        if not upgraded.schema.equals(schema, check_metadata=True):
            problems.append(f"upgrading {table!r} version {version} gave {upgraded.schema}")
    return problems


def check_all(
    schemas: Mapping[str, pa.Schema] | None = None, contracts: Contracts | None = None
) -> list[str]:
    """Every contract and upgrade problem of ``schemas`` (default: all published tables)."""
    schemas = published_schemas() if schemas is None else schemas
    contracts = load_contracts() if contracts is None else contracts
    problems = []
    for schema in schemas.values():
        problems += check_contract(schema, contracts)
        problems += check_upgrades(schema, contracts)
    return problems


def record(
    schemas: Mapping[str, pa.Schema], contracts: Contracts, *, overwrite: bool = False
) -> tuple[Contracts, list[str]]:
    """``contracts`` with the current version of each of ``schemas`` recorded.

    Returns the new contracts and ``"table vN"`` for each entry written. An existing entry
    with other fields is an error unless ``overwrite`` (only for a version not released).
    """
    out: Contracts = {t: dict(vs) for t, vs in contracts.items()}
    written = []
    for schema in schemas.values():
        table, version = table_name(schema), table_version(schema)
        entry = {"fingerprint": schema_fingerprint(schema), "fields": schema_fields(schema)}
        existing = out.get(table, {}).get(version)
        if existing is not None and existing["fingerprint"] == entry["fingerprint"]:
            continue
        if existing is not None and not overwrite:
            raise ValueError(
                f"table {table!r} version {version} is already recorded with other fields; "
                "bump the table's version instead (or pass --overwrite for a version that "
                "was never released)"
            )
        out.setdefault(table, {})[version] = entry
        written.append(f"{table} v{version}")
    return out, written


def main(argv: Sequence[str] | None = None) -> int:
    """Check the contracts (default) or record the current version of every table."""
    parser = argparse.ArgumentParser(prog="python -m roadlens.contracts", description=__doc__)
    parser.add_argument("--record", action="store_true", help="record current versions")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --record: replace a recorded version whose fields changed (unreleased only)",
    )
    parser.add_argument("--path", type=Path, default=CONTRACTS_PATH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    contracts = load_contracts(args.path)
    if args.record:
        try:
            contracts, written = record(published_schemas(), contracts, overwrite=args.overwrite)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        args.path.write_text(render_contracts(contracts), encoding="utf-8")
        print(f"recorded {', '.join(written)}" if written else "nothing to record")
    problems = check_all(contracts=contracts)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0
