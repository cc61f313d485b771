"""Attacks on the real-schema features (cascade ``where``, clock and ``hold_subject``
through a relation; SPEC section 2, "Real schemas"), each a defect found by trying what
the features' own tests did not, kept as a regression test on SQLite, PostgreSQL and
MariaDB. Each test builds its own small schema; the expected rows are worked out by hand
from the SPEC, never from the planner.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from builders import create, write_policy
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, select

from retention import api
from retention.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2025, 11, 1)  # naive UTC, past a 90-day period at NOW
RECENT = datetime(2026, 5, 27)


def policy(settings: Settings, *rules: dict[str, Any], **top: Any) -> None:
    body = {"version": 1, "defaults": {"guard": {"max_fraction": 1}}, **top}
    write_policy(settings.policy_file, body | {"rules": list(rules)})


def table_rows(engine: Engine, table: Table) -> dict[Any, dict[str, Any]]:
    key = next(iter(table.primary_key.columns))
    with engine.connect() as conn:
        return {r._mapping[key.name]: dict(r._mapping) for r in conn.execute(select(table))}


# --- column names equal to the plan's bind parameters ----------------------------------


def _bind_named_schema() -> tuple[MetaData, Table, Table]:
    """``parents`` whose key is called ``keys`` (the batch's keys parameter) and
    ``children`` whose link is called ``parent_values`` (a cascade's parameter)."""
    meta = MetaData()
    parents = Table(
        "parents",
        meta,
        Column("keys", Integer, primary_key=True, autoincrement=False),
        Column("closed_at", DateTime, nullable=False),
        Column("note", String(20)),
    )
    children = Table(
        "children",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("parent_values", Integer),
        Column("kind", String(5), nullable=False),
    )
    return meta, parents, children


def _bind_named(engine: Engine) -> tuple[Table, Table]:
    meta, parents, children = _bind_named_schema()
    create(
        engine,
        meta,
        {
            parents: [
                {"keys": 1, "closed_at": OLD, "note": "a"},
                {"keys": 2, "closed_at": RECENT, "note": "b"},
            ],
            children: [
                {"id": 10, "parent_values": 1, "kind": "x"},
                {"id": 11, "parent_values": 1, "kind": "y"},
                {"id": 12, "parent_values": 2, "kind": "x"},
            ],
        },
    )
    return parents, children


def test_a_detach_cascade_sets_a_link_named_parent_values_to_null(
    settings: Settings, engine: Engine
) -> None:
    """Setting the link to NULL once failed to compile (CompileError, rule failed):
    the NULL was bound under the column's name, which the parent values already use."""
    parents, children = _bind_named(engine)
    cascade = {"table": "children", "on": {"parent_values": "keys"}, "action": "detach"}
    rule = {"name": "p", "table": "parents", "clock": "closed_at", "after": "P90D"}
    policy(settings, rule | {"action": "delete", "cascade": [cascade | {"where": {"kind": "x"}}]})
    result = api.run(settings, now=NOW).rules[0]
    assert (result.status, result.rows, result.dependents) == ("done", 1, {"children": 1})
    left = table_rows(engine, children)
    assert [left[i]["parent_values"] for i in (10, 11, 12)] == [None, 1, 2]
    assert sorted(table_rows(engine, parents)) == [2]


def test_null_anonymises_columns_named_keys_and_parent_values(
    settings: Settings, engine: Engine
) -> None:
    """``null`` on a column named like a bound parameter of the same statement (the
    batch's ``keys``, a cascade's ``parent_values``) anonymises it, not a CompileError."""
    meta = MetaData()
    people = Table(
        "people",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("keys", String(20)),
        Column("closed_at", DateTime, nullable=False),
    )
    notes = Table(
        "notes",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("person_id", Integer),
        Column("parent_values", String(20)),
    )
    create(
        engine,
        meta,
        {
            people: [{"id": 1, "keys": "k1", "closed_at": OLD}],
            notes: [{"id": 5, "person_id": 1, "parent_values": "v"}],
        },
    )
    cascade = {
        "table": "notes",
        "on": {"person_id": "id"},
        "action": "anonymise",
        "set": {"parent_values": None},
    }
    rule = {"name": "p", "table": "people", "clock": "closed_at", "after": "P90D"}
    policy(settings, rule | {"action": "anonymise", "set": {"keys": None}, "cascade": [cascade]})
    result = api.run(settings, now=NOW).rules[0]
    assert (result.status, result.rows) == ("done", 1)
    assert table_rows(engine, people)[1]["keys"] is None
    assert table_rows(engine, notes)[5]["parent_values"] is None
    assert api.run(settings, now=NOW).rules[0].rows == 0
