"""Which rows a rule removes, and which it leaves alone (SPEC sections 2 and 5).

Every test builds its own small schema, runs the real api against it on each backend,
and asserts on the rows left in the database, not only on the counts reported.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from builders import write_policy
from conftest import BACKENDS, HASH_KEY, wipe
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    create_engine,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects import mysql

from retention import api
from retention.errors import PolicyError
from retention.periods import cutoff, parse_period
from retention.settings import Settings

# Microseconds on MySQL too, where a plain DATETIME keeps whole seconds.
TS = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")

NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)
OLD = datetime(2024, 1, 1, 8, 0, 0)  # naive UTC, long past any cutoff below
RECENT = datetime(2024, 6, 14, 8, 0, 0)  # naive UTC, within every period below


# --- helpers ---------------------------------------------------------------------------


def selection_policy(body: str, timezone: str = "UTC") -> str:
    """A policy whose guard never trips: these tests are about selection."""
    head = f"version: 1\ndefaults: {{guard: {{max_fraction: 1}}, timezone: {timezone}}}\n"
    return head + textwrap.dedent(body)


def create(engine: Engine, meta: MetaData, rows: dict[Table, list[dict[str, Any]]]) -> None:
    meta.create_all(engine)
    with engine.begin() as conn:
        for table, values in rows.items():
            if values:
                conn.execute(insert(table), values)


def column_values(engine: Engine, table: Table, *cols: str) -> list[Any]:
    """The table's rows as tuples of ``cols`` (or single values), in that order."""
    columns = [table.c[c] for c in cols]
    with engine.connect() as conn:
        found = conn.execute(select(*columns).order_by(*columns)).all()
    if len(cols) == 1:
        return [row[0] for row in found]
    return sorted((tuple(row) for row in found), key=repr)


def ids(engine: Engine, table: Table) -> set[int]:
    return set(column_values(engine, table, "id"))


def snapshot(engine: Engine, *tables: Table) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with engine.connect() as conn:
        for table in tables:
            found = conn.execute(select(table)).all()
            out[table.name] = sorted((tuple(r) for r in found), key=repr)
    return out


# --- conditions: every operator, the NULL rules, all/any/not -----------------------------

# Four rows, all due by their clock. Row 3 holds NULL in every tested column.
#   id  status   score  seen_at        owner (kind)
#   1   open     1      NOW - 100 days 1 (staff)
#   2   closed   5      NOW - 10 days  2 (guest)
#   3   NULL     NULL   NULL           NULL
#   4   pending  10     NOW - 40 days  1 (staff)
ALL = {1, 2, 3, 4}
CONDITIONS = [
    ("{status: open}", {1}, "bare value means equality"),
    ("{status: {eq: closed}}", {2}, "eq never matches NULL"),
    ("{status: {ne: closed}}", {1, 3, 4}, "ne holds for NULL"),
    ("{score: {ne: 5}}", {1, 3, 4}, "ne on a number holds for NULL"),
    ("{score: {lt: 5}}", {1}, "lt never matches NULL"),
    ("{score: {le: 5}}", {1, 2}, "le never matches NULL"),
    ("{score: {gt: 5}}", {4}, "gt never matches NULL"),
    ("{score: {ge: 5}}", {2, 4}, "ge never matches NULL"),
    ("{score: {ge: 1, lt: 10}}", {1, 2}, "several tests on one column all hold"),
    ("{status: {in: [open, closed]}}", {1, 2}, "in never matches NULL"),
    ("{status: {not_in: [open, closed]}}", {3, 4}, "not_in holds for NULL"),
    ("{score: {not_in: [1, 10]}}", {2, 3}, "not_in on numbers holds for NULL"),
    ("{status: {is_null: true}}", {3}, "is_null true"),
    ("{status: {is_null: false}}", {1, 2, 4}, "is_null false"),
    ("{seen_at: {older_than: P30D}}", {1, 4}, "older_than never matches a NULL time"),
    ("{seen_at: {newer_than: P30D}}", {2}, "newer_than never matches a NULL time"),
    ("{seen_at: {lt: 2024-05-10 00:00:00}}", {1, 4}, "lt with a timestamp value"),
    ("{seen_at: {ge: 2024-05-10}}", {2}, "ge with a date value"),
    ("{not: {status: closed}}", {1, 3, 4}, "not is true for NULL"),
    ("{not: {status: open}}", {2, 3, 4}, "not of equality matches NULL"),
    ("{not: {score: {lt: 5}}}", {2, 3, 4}, "not of lt matches NULL"),
    ("{not: {status: {ne: closed}}}", {2}, "not of ne leaves NULL out"),
    ("{not: {status: {not_in: [open]}}}", {1}, "not of not_in leaves NULL out"),
    ("{not: {not: {status: open}}}", {1}, "double not is the condition"),
    ("{all: [{status: {ne: closed}}, {score: {lt: 5}}]}", {1}, "all"),
    ("{any: [{status: closed}, {score: {gt: 5}}]}", {2, 4}, "any"),
    ("[{status: closed}, {score: {gt: 5}}]", {2, 4}, "a list means any"),
    ("{not: {any: [{status: open}, {score: 5}]}}", {3, 4}, "not of any"),
    ("{status: {ne: open}, score: {ge: 5}}", {2, 4}, "entries of a mapping all hold"),
    (
        "{score: {lt: 10}, related: {table: owners, where: {kind: staff}}}",
        {1},
        "a column test mixed with related",
    ),
    ("{related: {table: owners, on: {id: owner_id}}}", {1, 2, 4}, "related with explicit on"),
    ("{not: {related: {table: owners}}}", {3}, "not related: no linked row"),
    (
        "{any: [{related: {table: owners, where: {kind: guest}}}, {status: {is_null: true}}]}",
        {2, 3},
        "related inside any",
    ),
]


@dataclass(frozen=True)
class ConditionOutcome:
    """Per case, the rows left by the ``where`` rule and by the ``unless`` rule; and the
    counts that plan and run reported for each rule."""

    left_by_where: dict[int, set[int]]
    left_by_unless: dict[int, set[int]]
    planned: dict[str, tuple[int, int]]  # rule: (due, kept_unless)
    removed: dict[str, int]  # rule: rows


def items_table(meta: MetaData, name: str) -> Table:
    return Table(
        name,
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("case_no", Integer, nullable=False),
        Column("status", String(20), nullable=True),
        Column("score", Integer, nullable=True),
        Column("seen_at", TS, nullable=True),
        Column("owner_id", Integer, ForeignKey("owners.id"), nullable=True),
        Column("created_at", TS, nullable=False),
    )


def item_rows(case_no: int) -> list[dict[str, Any]]:
    now = NOW.replace(tzinfo=None)
    rows = [
        (1, "open", 1, now - timedelta(days=100), 1),
        (2, "closed", 5, now - timedelta(days=10), 2),
        (3, None, None, None, None),
        (4, "pending", 10, now - timedelta(days=40), 1),
    ]
    return [
        {
            "id": case_no * 10 + row,
            "case_no": case_no,
            "status": status,
            "score": score,
            "seen_at": seen_at,
            "owner_id": owner_id,
            "created_at": OLD,
        }
        for row, status, score, seen_at, owner_id in rows
    ]


@pytest.fixture(scope="module", params=list(BACKENDS))
def conditions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> ConditionOutcome:
    """Every case of CONDITIONS at once, as a ``where`` rule and as an ``unless`` rule, each
    on its own rows: one plan and one run per backend instead of one per case.

    Module-scoped to keep the suite fast, so it reads the database URL the way
    ``conftest.db_url`` does; the outcome is read back into memory before any other test
    wipes the database.
    """
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"conditions-{backend}")
    variable = BACKENDS[backend]
    if variable is None:
        url = f"sqlite:///{tmp / 'test.db'}"
    else:
        url = os.environ.get(variable, "")
        if not url:
            pytest.skip(f"{variable} is not set")
        wipe(url)
    settings = Settings(
        database_url=url,  # type: ignore[arg-type]
        hash_key=HASH_KEY,  # type: ignore[arg-type]
        policy_file=tmp / "policies.yaml",
        _env_file=None,  # type: ignore[call-arg]
    )
    meta = MetaData()
    owners = Table(
        "owners",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("kind", String(20), nullable=True),
    )
    by_where = items_table(meta, "items_where")
    by_unless = items_table(meta, "items_unless")
    rows = [row for case_no in range(len(CONDITIONS)) for row in item_rows(case_no)]
    # One rule each for where and unless, every case on its own rows:
    # any: [{all: [{case_no: N}, <condition N>]}, ...]
    per_case = ", ".join(
        f"{{all: [{{case_no: {n}}}, {condition}]}}"
        for n, (condition, _, _) in enumerate(CONDITIONS)
    )
    policy = f"""\
        rules:
          - name: by-where
            table: items_where
            clock: created_at
            after: P30D
            where: {{any: [{per_case}]}}
            action: delete
          - name: by-unless
            table: items_unless
            clock: created_at
            after: P30D
            unless: {{any: [{per_case}]}}
            action: delete
        """
    engine = create_engine(url)
    try:
        create(
            engine,
            meta,
            {
                owners: [{"id": 1, "kind": "staff"}, {"id": 2, "kind": "guest"}],
                by_where: rows,
                by_unless: rows,
            },
        )
        write_policy(settings.policy_file, selection_policy(policy))
        report = api.plan(settings, now=NOW)
        result = api.run(settings, now=NOW)
        left_where = column_values(engine, by_where, "case_no", "id")
        left_unless = column_values(engine, by_unless, "case_no", "id")
        assert ids(engine, owners) == {1, 2}
    finally:
        engine.dispose()

    def left(found: list[tuple[int, int]]) -> dict[int, set[int]]:
        out: dict[int, set[int]] = {n: set() for n in range(len(CONDITIONS))}
        for case_no, id_ in found:
            out[case_no].add(id_ % 10)
        return out

    return ConditionOutcome(
        left_by_where=left(left_where),
        left_by_unless=left(left_unless),
        planned={r.plan.name: (r.counts.due, r.counts.kept_unless) for r in report.rules},
        removed={r.rule: r.rows for r in result.rules},
    )


@pytest.mark.parametrize(
    ("case_no", "matching"),
    [pytest.param(n, m, id=label) for n, (_, m, label) in enumerate(CONDITIONS)],
)
def test_a_condition_in_where_removes_exactly_the_matching_rows(
    conditions: ConditionOutcome, case_no: int, matching: set[int]
) -> None:
    assert conditions.left_by_where[case_no] == ALL - matching


@pytest.mark.parametrize(
    ("case_no", "matching"),
    [pytest.param(n, m, id=label) for n, (_, m, label) in enumerate(CONDITIONS)],
)
def test_a_condition_in_unless_keeps_exactly_the_matching_rows(
    conditions: ConditionOutcome, case_no: int, matching: set[int]
) -> None:
    assert conditions.left_by_unless[case_no] == matching


def test_plan_and_run_count_the_rows_the_conditions_select(
    conditions: ConditionOutcome,
) -> None:
    """The plan's due and kept-by-unless counts, and the rows run reports, agree with the
    cases: ``where`` selects the matching rows, ``unless`` keeps them."""
    matching = sum(len(m) for _, m, _ in CONDITIONS)
    others = len(ALL) * len(CONDITIONS) - matching
    assert conditions.planned == {"by-where": (matching, 0), "by-unless": (others, matching)}
    assert conditions.removed == {"by-where": matching, "by-unless": others}


# --- related, three levels deep ---------------------------------------------------------


def test_related_nests_three_levels_deep_with_and_without_explicit_on(
    settings: Settings, engine: Engine
) -> None:
    """Feedback is kept while its ticket is open, or its standard-tier account has an open
    dispute: feedback -> tickets (one FK, no ``on``) -> accounts (explicit ``on``) ->
    disputes (one FK, no ``on``), with column tests beside ``related`` at each level."""
    meta = MetaData()
    accounts = Table(
        "accounts",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("tier", String(20), nullable=True),
    )
    disputes = Table(
        "disputes",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
        Column("resolved_at", TS, nullable=True),
    )
    tickets = Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("account_id", Integer, ForeignKey("accounts.id"), nullable=False),
        Column("status", String(20), nullable=False),
    )
    feedback = Table(
        "feedback",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=True),
        Column("channel", String(20), nullable=False),
        Column("submitted_at", TS, nullable=False),
    )
    create(
        engine,
        meta,
        {
            accounts: [
                {"id": 1, "tier": "standard"},
                {"id": 2, "tier": "standard"},
                {"id": 3, "tier": "vip"},
                {"id": 4, "tier": None},
            ],
            disputes: [
                {"id": 1, "account_id": 1, "resolved_at": None},
                {"id": 2, "account_id": 2, "resolved_at": OLD},
                {"id": 3, "account_id": 3, "resolved_at": None},
                {"id": 4, "account_id": 4, "resolved_at": None},
            ],
            tickets: [
                {"id": 10, "account_id": 1, "status": "closed"},
                {"id": 11, "account_id": 1, "status": "open"},
                {"id": 12, "account_id": 2, "status": "closed"},
                {"id": 13, "account_id": 3, "status": "closed"},
                {"id": 14, "account_id": 4, "status": "closed"},
            ],
            feedback: [
                {"id": 100, "ticket_id": 10, "channel": "app", "submitted_at": OLD},
                {"id": 101, "ticket_id": 11, "channel": "app", "submitted_at": OLD},
                {"id": 102, "ticket_id": 12, "channel": "app", "submitted_at": OLD},
                {"id": 103, "ticket_id": 13, "channel": "app", "submitted_at": OLD},
                {"id": 104, "ticket_id": 14, "channel": "app", "submitted_at": OLD},
                {"id": 105, "ticket_id": None, "channel": "app", "submitted_at": OLD},
                {"id": 106, "ticket_id": 10, "channel": "web", "submitted_at": OLD},
                {"id": 107, "ticket_id": 12, "channel": "web", "submitted_at": OLD},
            ],
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: feedback
            table: feedback
            clock: submitted_at
            after: P3M
            where: {channel: app}
            unless:
              related:
                table: tickets
                where:
                  any:
                    - {status: open}
                    - related:
                        table: accounts
                        on: {id: account_id}
                        where:
                          tier: standard
                          related:
                            table: disputes
                            where: {resolved_at: {is_null: true}}
            action: delete
        """),
    )

    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_unless) == (4, 2)

    api.run(settings, now=NOW)
    assert ids(engine, feedback) == {100, 101, 106, 107}
    assert ids(engine, tickets) == {10, 11, 12, 13, 14}


# --- composite keys and keyset batches -------------------------------------------------


def test_a_two_column_primary_key_is_walked_in_small_batches(
    settings: Settings, engine: Engine
) -> None:
    """Every due row goes, batch after batch, and due rows between kept ones are not skipped."""
    meta = MetaData()
    pairs = Table(
        "pairs",
        meta,
        Column("tenant", String(20), nullable=False),
        Column("seq", Integer, nullable=False, autoincrement=False),
        Column("created_at", TS, nullable=False),
        PrimaryKeyConstraint("tenant", "seq"),
    )
    keep = {("a", 2), ("b", 1), ("c", 3)}
    keys = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("b", 10), ("c", 1), ("c", 3)]
    create(
        engine,
        meta,
        {
            pairs: [
                {"tenant": t, "seq": s, "created_at": RECENT if (t, s) in keep else OLD}
                for t, s in keys
            ]
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: pairs
            table: pairs
            clock: created_at
            after: P30D
            batch_size: 2
            action: delete
        """),
    )

    outcome = api.run(settings, now=NOW).rules[0]
    assert (outcome.status, outcome.rows, outcome.batches) == ("done", 5, 3)
    assert set(column_values(engine, pairs, "tenant", "seq")) == keep


def test_sparse_integer_keys_are_walked_past_every_gap_in_small_batches(
    settings: Settings, engine: Engine
) -> None:
    """Gaps far wider than a batch (MySQL looks in windows of keys): no due row is skipped,
    and dependents go exactly with their removed rows."""
    meta = MetaData()
    items = Table(
        "items",
        meta,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("created_at", TS, nullable=False),
    )
    notes = Table(
        "notes",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("item_id", BigInteger, ForeignKey("items.id"), nullable=False),
    )
    keys = [1, 2, 3, 4, 5, 6, 40, 41, 200, 201, 202, 5000, 5001, 100_000, 100_003, 9_000_000]
    keep = {2, 41, 201, 5001, 9_000_000}
    create(
        engine,
        meta,
        {
            items: [{"id": k, "created_at": RECENT if k in keep else OLD} for k in keys],
            notes: [{"id": i, "item_id": k} for i, k in enumerate(keys)],
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: items
            table: items
            clock: created_at
            after: P30D
            batch_size: 2
            action: delete
            cascade:
              - {table: notes, on: {item_id: id}, action: delete}
        """),
    )

    outcome = api.run(settings, now=NOW).rules[0]
    due = len(keys) - len(keep)
    assert (outcome.status, outcome.rows, outcome.dependents) == ("done", due, {"notes": due})
    assert ids(engine, items) == keep
    assert set(column_values(engine, notes, "item_id")) == keep
    assert api.run(settings, now=NOW).rules[0].rows == 0


def test_a_table_without_primary_key_is_walked_by_its_named_key(
    settings: Settings, engine: Engine
) -> None:
    """``key: [a, b]`` on a table with no primary key: due rows removed, the rest untouched."""
    meta = MetaData()
    loose = Table(
        "loose",
        meta,
        Column("a", Integer, nullable=False),
        Column("b", String(10), nullable=False),
        Column("payload", String(20), nullable=True),
        Column("created_at", TS, nullable=True),
    )
    rows = [
        {"a": 1, "b": "x", "payload": "p1", "created_at": OLD},
        {"a": 1, "b": "y", "payload": "p2", "created_at": RECENT},
        {"a": 1, "b": "z", "payload": "p3", "created_at": OLD},
        {"a": 2, "b": "x", "payload": None, "created_at": OLD},
        {"a": 2, "b": "y", "payload": "p5", "created_at": None},
        {"a": 3, "b": "a", "payload": "p6", "created_at": OLD},
        {"a": 3, "b": "b", "payload": "p7", "created_at": OLD},
    ]
    create(engine, meta, {loose: rows})
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: loose
            table: loose
            key: [a, b]
            clock: created_at
            after: P30D
            batch_size: 2
            action: delete
        """),
    )

    outcome = api.run(settings, now=NOW).rules[0]
    assert (outcome.status, outcome.rows, outcome.batches) == ("done", 5, 3)
    assert column_values(engine, loose, "a", "b", "payload") == [(1, "y", "p2"), (2, "y", "p5")]


# --- cascades --------------------------------------------------------------------------


def test_cascades_handle_exactly_the_dependents_of_removed_rows(
    settings: Settings, engine: Engine
) -> None:
    """Two levels of delete (the grandchild without a primary key), a detach and an
    anonymise cascade; counted per table in plan and run; dependents of rows kept by
    ``unless`` or a hold, and of rows not due, stay as they were."""
    meta = MetaData()
    holds = Table(
        "legal_holds",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("subject_id", Integer, nullable=True),
        Column("released_at", TS, nullable=True),
    )
    orders = Table(
        "orders",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=True),
        Column("status", String(20), nullable=True),
        Column("placed_at", TS, nullable=False),
    )
    items = Table(
        "order_items",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
        Column("sku", String(20), nullable=False),
    )
    notes = Table(
        "item_notes",
        meta,
        Column("item_id", Integer, ForeignKey("order_items.id"), nullable=False),
        Column("line", Integer, nullable=False),
        Column("note", String(40), nullable=True),
    )
    shipments = Table(
        "shipments",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("order_id", Integer, ForeignKey("orders.id"), nullable=True),
        Column("carrier", String(20), nullable=False),
    )
    logs = Table(  # linked by convention only: no foreign key
        "order_logs",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("order_id", Integer, nullable=True),
        Column("ip", String(45), nullable=False),
        Column("agent", String(80), nullable=True),
    )
    create(
        engine,
        meta,
        {
            holds: [{"id": 1, "subject_id": 9, "released_at": None}],
            orders: [
                {"id": 1, "user_id": 1, "status": None, "placed_at": OLD},
                {"id": 2, "user_id": 2, "status": "disputed", "placed_at": OLD},
                {"id": 3, "user_id": 9, "status": None, "placed_at": OLD},
                {"id": 4, "user_id": 2, "status": "closed", "placed_at": OLD},
                {"id": 5, "user_id": 1, "status": None, "placed_at": RECENT},
                {"id": 6, "user_id": 3, "status": None, "placed_at": OLD},
            ],
            items: [
                {"id": i, "order_id": o, "sku": f"sku-{i}"}
                for i, o in [(10, 1), (11, 1), (12, 2), (13, 3), (14, 4), (15, 5)]
            ],
            notes: [
                {"item_id": i, "line": n, "note": f"n{i}-{n}"}
                for i, n in [(10, 1), (10, 2), (11, 1), (12, 1), (13, 1), (14, 1), (15, 1)]
            ],
            shipments: [
                {"id": s, "order_id": o, "carrier": "post"}
                for s, o in [(20, 1), (21, 2), (22, 3), (23, 4), (24, 5), (25, None)]
            ],
            logs: [
                {"id": g, "order_id": o, "ip": f"203.0.113.{g}", "agent": "curl"}
                for g, o in [(30, 1), (31, 1), (32, 2), (33, 3), (34, 4), (35, 5), (36, None)]
            ],
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        holds:
          table: legal_holds
          subject_column: subject_id
          active: {released_at: {is_null: true}}
        rules:
          - name: orders
            table: orders
            clock: placed_at
            after: P30D
            unless: {status: disputed}
            hold_subject: user_id
            action: delete
            batch_size: 2
            cascade:
              - table: order_items
                cascade:
                  - table: item_notes
              - table: shipments
                on: {order_id: id}
                action: detach
              - table: order_logs
                on: {order_id: id}
                action: anonymise
                set: {ip: {value: hidden}, agent: null}
        """),
    )
    expected = {"order_items": 3, "item_notes": 4, "shipments": 2, "order_logs": 3}

    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_unless, counts.kept_holds) == (3, 1, 1)
    assert counts.dependents == expected

    outcome = api.run(settings, now=NOW).rules[0]
    assert (outcome.rows, outcome.batches) == (3, 2)
    assert outcome.dependents == expected
    assert ids(engine, orders) == {2, 3, 5}
    assert ids(engine, items) == {12, 13, 15}
    assert column_values(engine, notes, "item_id", "line") == [(12, 1), (13, 1), (15, 1)]
    assert column_values(engine, shipments, "id", "order_id") == [
        (20, None),
        (21, 2),
        (22, 3),
        (23, None),
        (24, 5),
        (25, None),
    ]
    assert column_values(engine, logs, "id", "ip", "agent") == [
        (30, "hidden", None),
        (31, "hidden", None),
        (32, "203.0.113.32", "curl"),
        (33, "203.0.113.33", "curl"),
        (34, "hidden", None),
        (35, "203.0.113.35", "curl"),
        (36, "203.0.113.36", "curl"),
    ]


def test_an_anonymise_rule_anonymises_its_cascade_for_exactly_the_rows_it_changes(
    settings: Settings, engine: Engine
) -> None:
    """A cascade ``anonymise`` with ``set`` under an anonymise rule with ``mark``."""
    meta = MetaData()
    customers = Table(
        "customers",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(40), nullable=True),
        Column("left_at", TS, nullable=True),
        Column("anonymised_at", TS, nullable=True),
    )
    addresses = Table(
        "addresses",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
        Column("street", String(40), nullable=True),
        Column("zip", String(10), nullable=True),
    )
    create(
        engine,
        meta,
        {
            customers: [
                {"id": 1, "name": "Ann", "left_at": OLD},
                {"id": 2, "name": "Bob", "left_at": RECENT},
                {"id": 3, "name": "Cy", "left_at": None},
            ],
            addresses: [
                {"id": 10, "customer_id": 1, "street": "1 Road", "zip": "100"},
                {"id": 11, "customer_id": 1, "street": "2 Road", "zip": "101"},
                {"id": 12, "customer_id": 2, "street": "3 Road", "zip": "102"},
                {"id": 13, "customer_id": 3, "street": "4 Road", "zip": "103"},
            ],
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: customers
            table: customers
            clock: left_at
            after: P30D
            action: anonymise
            mark: anonymised_at
            set: {name: redact}
            cascade:
              - table: addresses
                action: anonymise
                set: {street: redact, zip: null}
        """),
    )

    assert api.plan(settings, now=NOW).rules[0].counts.dependents == {"addresses": 2}
    outcome = api.run(settings, now=NOW).rules[0]
    assert (outcome.rows, outcome.dependents) == (1, {"addresses": 2})
    assert column_values(engine, customers, "id", "name") == [
        (1, "[redacted]"),
        (2, "Bob"),
        (3, "Cy"),
    ]
    assert column_values(engine, addresses, "id", "street", "zip") == [
        (10, "[redacted]", None),
        (11, "[redacted]", None),
        (12, "3 Road", "102"),
        (13, "4 Road", "103"),
    ]


# --- clocks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "scale", "column_type"),
    [("seconds", 1, Integer), ("milliseconds", 1000, BigInteger)],
)
def test_an_integer_unix_time_clock_is_due_strictly_before_the_cutoff(
    settings: Settings, engine: Engine, unit: str, scale: int, column_type: type[Any]
) -> None:
    """One unit before the cutoff is due; the cutoff itself, one unit after, and NULL are not."""
    limit = int(cutoff(NOW, parse_period("P30D"), "UTC").timestamp()) * scale
    meta = MetaData()
    events = Table(
        "events",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ts", column_type, nullable=True),
    )
    create(
        engine,
        meta,
        {
            events: [
                {"id": 1, "ts": limit - 1},
                {"id": 2, "ts": limit},
                {"id": 3, "ts": limit + 1},
                {"id": 4, "ts": None},
                {"id": 5, "ts": 0},
            ]
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy(f"""\
        rules:
          - name: events
            table: events
            clock: ts
            clock_unit: {unit}
            after: P30D
            action: delete
        """),
    )

    assert api.plan(settings, now=NOW).rules[0].counts.due == 2
    api.run(settings, now=NOW)
    assert ids(engine, events) == {2, 3, 4}


@pytest.mark.parametrize(
    ("unit", "scale", "column_type"),
    [("seconds", 1, Integer), ("milliseconds", 1000, BigInteger)],
)
def test_an_integer_clock_compares_with_a_cutoff_between_two_whole_units(
    settings: Settings, engine: Engine, unit: str, scale: int, column_type: type[Any]
) -> None:
    """With the cutoff at .1239 of a unit, the whole unit just before it is due and the one
    just after is not (``clock < cutoff`` exactly, not after rounding the cutoff down)."""
    now = NOW.replace(microsecond=123_900)
    exact = cutoff(now, parse_period("P30D"), "UTC")
    # The whole units either side of the cutoff, computed without floating point.
    micros = (exact - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    below = micros * scale // 1_000_000
    meta = MetaData()
    events = Table(
        "events",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ts", column_type, nullable=False),
    )
    create(
        engine,
        meta,
        {events: [{"id": 1, "ts": below - 1}, {"id": 2, "ts": below}, {"id": 3, "ts": below + 1}]},
    )
    write_policy(
        settings.policy_file,
        selection_policy(f"""\
        rules:
          - name: events
            table: events
            clock: ts
            clock_unit: {unit}
            after: P30D
            action: delete
        """),
    )

    api.run(settings, now=now)
    assert ids(engine, events) == {3}


def test_a_null_clock_is_never_due(settings: Settings, engine: Engine) -> None:
    """Not even under a zero period with a ``where`` that every row matches."""
    meta = MetaData()
    things = Table(
        "things",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", TS, nullable=True),
        Column("kind", String(10), nullable=True),
    )
    create(
        engine,
        meta,
        {
            things: [
                {"id": 1, "created_at": None, "kind": "x"},
                {"id": 2, "created_at": OLD, "kind": "x"},
                {"id": 3, "created_at": None, "kind": None},
                {"id": 4, "created_at": RECENT, "kind": None},
            ]
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: things
            table: things
            clock: created_at
            after: 0 days
            where: {kind: {ne: y}}
            action: delete
        """),
    )

    assert api.plan(settings, now=NOW).rules[0].counts.due == 2
    api.run(settings, now=NOW)
    assert ids(engine, things) == {1, 3}


def test_rows_one_second_either_side_of_a_calendar_cutoff_in_shanghai(
    settings: Settings, engine: Engine
) -> None:
    """P3M on Shanghai's wall clock: 1 July 01:00 CST less three months is 1 April 01:00 CST,
    31 March 17:00 UTC (a UTC wall clock would give 30 March). Due strictly before it."""
    now = datetime(2024, 6, 30, 17, 0, 0, tzinfo=UTC)
    limit = cutoff(now, parse_period("P3M"), "Asia/Shanghai")
    assert limit == datetime(2024, 3, 31, 17, 0, 0, tzinfo=UTC)
    at = limit.replace(tzinfo=None)
    meta = MetaData()
    feedback = Table(
        "feedback",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("submitted_at", TS, nullable=False),
    )
    create(
        engine,
        meta,
        {
            feedback: [
                {"id": 1, "submitted_at": at - timedelta(seconds=1)},
                {"id": 2, "submitted_at": at},
                {"id": 3, "submitted_at": at + timedelta(seconds=1)},
                {"id": 4, "submitted_at": at - timedelta(microseconds=1)},
            ]
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy(
            """\
        rules:
          - name: feedback
            table: feedback
            clock: submitted_at
            after: P3M
            action: delete
        """,
            timezone="Asia/Shanghai",
        ),
    )

    report = api.plan(settings, now=now)
    assert report.rules[0].plan.cutoff == limit
    api.run(settings, now=now)
    assert ids(engine, feedback) == {2, 3}


# --- holds -----------------------------------------------------------------------------


def test_an_active_hold_keeps_a_subjects_rows_and_a_lifted_or_null_one_does_not(
    settings: Settings, engine: Engine
) -> None:
    """User 1 is held; user 2's hold was lifted; user 4 has one lifted and one active hold;
    a NULL subject is never held, not even by a hold row whose subject is NULL."""
    meta = MetaData()
    holds = Table(
        "legal_holds",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("subject_id", Integer, nullable=True),
        Column("released_at", TS, nullable=True),
    )
    messages = Table(
        "messages",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=True),
        Column("sent_at", TS, nullable=False),
    )
    create(
        engine,
        meta,
        {
            holds: [
                {"id": 1, "subject_id": 1, "released_at": None},
                {"id": 2, "subject_id": 2, "released_at": RECENT},
                {"id": 3, "subject_id": None, "released_at": None},
                {"id": 4, "subject_id": 4, "released_at": RECENT},
                {"id": 5, "subject_id": 4, "released_at": None},
            ],
            messages: [
                {"id": 1, "user_id": 1, "sent_at": OLD},
                {"id": 2, "user_id": 2, "sent_at": OLD},
                {"id": 3, "user_id": None, "sent_at": OLD},
                {"id": 4, "user_id": 4, "sent_at": OLD},
                {"id": 5, "user_id": 5, "sent_at": OLD},
                {"id": 6, "user_id": 1, "sent_at": RECENT},
            ],
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        holds:
          table: legal_holds
          subject_column: subject_id
          active: {released_at: {is_null: true}}
        rules:
          - name: messages
            table: messages
            clock: sent_at
            after: P30D
            hold_subject: user_id
            action: delete
        """),
    )

    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_holds) == (3, 2)
    api.run(settings, now=NOW)
    assert ids(engine, messages) == {1, 4, 6}
    assert ids(engine, holds) == {1, 2, 3, 4, 5}


# --- validation before any write -------------------------------------------------------


def test_a_foreign_key_without_cascade_stops_the_run_before_any_write(
    settings: Settings, engine: Engine
) -> None:
    """A child referencing the rule's table, with no cascade and no ON DELETE action, is a
    ``PolicyError`` from ``run``; no table changes and no audit log is created."""
    meta = MetaData()
    parents = Table(
        "parents",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", TS, nullable=False),
    )
    children = Table(
        "children",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("parent_id", Integer, ForeignKey("parents.id"), nullable=True),
    )
    unrelated = Table(
        "unrelated",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", TS, nullable=False),
    )
    create(
        engine,
        meta,
        {
            parents: [{"id": 1, "created_at": OLD}, {"id": 2, "created_at": OLD}],
            children: [{"id": 10, "parent_id": 1}, {"id": 11, "parent_id": None}],
            unrelated: [{"id": 1, "created_at": OLD}],
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: unrelated
            table: unrelated
            clock: created_at
            after: P30D
            action: delete
          - name: parents
            table: parents
            clock: created_at
            after: P30D
            action: delete
        """),
    )
    before = snapshot(engine, parents, children, unrelated)

    with pytest.raises(PolicyError, match="children"):
        api.run(settings, now=NOW)

    assert snapshot(engine, parents, children, unrelated) == before
    with engine.connect() as conn:
        assert not inspect(conn).has_table("retention_audit")


def test_an_anonymise_cascade_does_not_unblock_a_foreign_key_to_deleted_rows(
    settings: Settings, engine: Engine
) -> None:
    """Anonymising a child leaves its reference in place, so deleting the parent would
    still violate the foreign key: validation must say so before any write."""
    meta = MetaData()
    parents = Table(
        "parents",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", TS, nullable=False),
    )
    children = Table(
        "children",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("parent_id", Integer, ForeignKey("parents.id"), nullable=True),
        Column("note", String(20), nullable=True),
    )
    create(
        engine,
        meta,
        {
            parents: [{"id": 1, "created_at": OLD}],
            children: [{"id": 10, "parent_id": 1, "note": "n"}],
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: parents
            table: parents
            clock: created_at
            after: P30D
            action: delete
            cascade:
              - table: children
                action: anonymise
                set: {note: redact}
        """),
    )

    with pytest.raises(PolicyError, match="children"):
        api.run(settings, now=NOW)


# --- bounded runs ----------------------------------------------------------------------


def test_bounded_runs_converge_on_the_state_of_one_unbounded_run(
    settings: Settings, engine: Engine
) -> None:
    """``max_batches=2`` with ``batch_size: 3`` removes 6 of 20 due rows and says 'partial';
    repeated runs finish the rest, ending where one unbounded run over a twin table ends;
    the audit chain verifies."""
    meta = MetaData()
    twins = []
    for name in ("bounded", "whole"):
        twins.append(
            Table(
                name,
                meta,
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("created_at", TS, nullable=True),
            )
        )
    rows = [
        {"id": i, "created_at": OLD if i % 4 else (RECENT if i % 8 else None)} for i in range(1, 27)
    ]
    assert sum(r["created_at"] == OLD for r in rows) == 20
    create(engine, meta, dict.fromkeys(twins, rows))
    bounded, whole = twins
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: bounded
            table: bounded
            clock: created_at
            after: P30D
            batch_size: 3
            action: delete
          - name: whole
            table: whole
            clock: created_at
            after: P30D
            batch_size: 3
            action: delete
        """),
    )

    first = api.run(settings, rules=["bounded"], now=NOW, max_batches=2).rules[0]
    assert (first.status, first.rows, first.batches) == ("partial", 6, 2)
    assert len(ids(engine, bounded)) == 26 - 6

    outcomes = [first]
    while outcomes[-1].status == "partial":
        assert len(outcomes) < 10, "bounded runs do not converge"
        outcomes.append(api.run(settings, rules=["bounded"], now=NOW, max_batches=2).rules[0])
    assert [o.rows for o in outcomes] == [6, 6, 6, 2]
    assert outcomes[-1].status == "done"

    api.run(settings, rules=["whole"], now=NOW)
    assert ids(engine, bounded) == ids(engine, whole) == {4, 8, 12, 16, 20, 24}
    last = api.run(settings, rules=["bounded"], now=NOW)
    assert last.rules[0].rows == 0
    assert api.verify(settings).head == last.head


# --- idempotency -----------------------------------------------------------------------


def hmac_hex(settings: Settings, value: str) -> str:
    """The pseudonym SPEC's ``hash`` promises: HMAC-SHA-256 keyed with the hash key."""
    return hmac.new(settings.require_hash_key(), value.encode(), hashlib.sha256).hexdigest()


def test_a_second_run_right_after_the_first_changes_nothing_and_reports_zero_rows(
    settings: Settings, engine: Engine
) -> None:
    """A delete rule, an anonymise rule with ``mark``, and one without ``mark`` using null,
    redact, a fixed value and a prefixed hash: the second run finds nothing to do."""
    meta = MetaData()
    sessions = Table(
        "sessions",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("started_at", TS, nullable=False),
    )
    visits = Table(
        "visits",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ip", String(45), nullable=True),
        Column("token", String(80), nullable=True),
        Column("seen_at", TS, nullable=False),
        Column("anonymised_at", TS, nullable=True),
    )
    people = Table(
        "people",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("phone", String(20), nullable=True),
        Column("name", String(40), nullable=True),
        Column("country", String(20), nullable=True),
        Column("email", String(120), nullable=True, unique=True),
        Column("joined_at", TS, nullable=False),
    )
    done = {"phone": None, "name": "[redacted]", "country": "XX"}
    create(
        engine,
        meta,
        {
            sessions: [{"id": i, "started_at": OLD if i < 4 else RECENT} for i in range(1, 6)],
            visits: [
                {"id": 1, "ip": "203.0.113.77", "token": "t1", "seen_at": OLD},
                {"id": 2, "ip": "198.51.100.9", "token": None, "seen_at": OLD},
                {"id": 3, "ip": "203.0.113.5", "token": "t3", "seen_at": RECENT},
            ],
            people: [
                {
                    "id": 1,
                    "phone": "555-1",
                    "name": "Ann",
                    "country": "DE",
                    "email": "zoë@例え.jp",
                    "joined_at": OLD,
                },
                {
                    "id": 2,
                    "phone": None,
                    "name": "Bob",
                    "country": "XX",
                    "email": None,
                    "joined_at": OLD,
                },
                {"id": 3, **done, "email": "anon-already", "joined_at": OLD},
                {
                    "id": 4,
                    "phone": "555-4",
                    "name": "Di",
                    "country": "FR",
                    "email": "d@x.org",
                    "joined_at": RECENT,
                },
            ],
        },
    )
    write_policy(
        settings.policy_file,
        selection_policy("""\
        rules:
          - name: sessions
            table: sessions
            clock: started_at
            after: P30D
            action: delete
          - name: visits
            table: visits
            clock: seen_at
            after: P30D
            action: anonymise
            mark: anonymised_at
            set: {ip: truncate_ip, token: {hash: {}}}
          - name: people
            table: people
            clock: joined_at
            after: P30D
            action: anonymise
            set:
              phone: null
              name: redact
              country: {value: XX}
              email: {hash: {prefix: "anon-"}}
        """),
    )

    first = {r.rule: r.rows for r in api.run(settings, now=NOW).rules}
    assert first == {"sessions": 3, "visits": 2, "people": 2}
    assert ids(engine, sessions) == {4, 5}
    assert column_values(engine, visits, "id", "ip", "token") == [
        (1, "203.0.113.0", hmac_hex(settings, "t1")),
        (2, "198.51.100.0", None),
        (3, "203.0.113.5", "t3"),
    ]
    assert column_values(engine, people, "id", "phone", "name", "country", "email") == [
        (1, None, "[redacted]", "XX", "anon-" + hmac_hex(settings, "zoë@例え.jp")),
        (2, None, "[redacted]", "XX", None),
        (3, None, "[redacted]", "XX", "anon-already"),
        (4, "555-4", "Di", "FR", "d@x.org"),
    ]
    after_first = snapshot(engine, sessions, visits, people)

    plan = {r.plan.name: r.counts.due for r in api.plan(settings, now=NOW).rules}
    assert plan == {"sessions": 0, "visits": 0, "people": 0}
    second = api.run(settings, now=NOW + timedelta(seconds=1)).rules
    assert {r.rule: (r.rows, r.batches) for r in second} == {
        "sessions": (0, 0),
        "visits": (0, 0),
        "people": (0, 0),
    }
    assert snapshot(engine, sessions, visits, people) == after_first
    api.verify(settings)
