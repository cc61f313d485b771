"""One statement per batch on PostgreSQL (issue 13 item 1; planner/one_statement.py).

On PostgreSQL a batch's selection, its dependents' steps and its own change run as one
statement of data-modifying WITH parts; elsewhere, and on PostgreSQL for the shapes one
statement cannot take (a table changed twice, an ON DELETE RESTRICT foreign key), as
statements one by one. Either way the same rows go and the audit records the same batch.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import create, ids, write_policy
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    event,
    insert,
    select,
    text,
)

from retention import api
from retention.backends import backend_for
from retention.backends.postgresql import PostgreSQLBackend
from retention.catalog import Catalog
from retention.plan import StepKind
from retention.planner import make_plan
from retention.policy.loader import load_policy_bytes
from retention.render import plan_text
from retention.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2025, 11, 1)  # past a 90-day period at NOW
RECENT = datetime(2026, 5, 27)


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every statement any engine sends while inside, as its SQL text."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _data_writes(seen: list[str]) -> list[str]:
    """The statements that lock or change the data's rows (not the audit's, nor leases')."""
    return [
        s
        for s in seen
        if "retention_audit" not in s
        and (s.startswith(("WITH", "DELETE", "UPDATE")) or "FOR UPDATE" in s)
    ]


# --- feedback, its contacts, and the contacts' notes ---------------------------------


def nested(meta: MetaData, *, contacts_fk: str | None = None) -> tuple[Table, Table, Table]:
    feedback = Table(
        "feedback",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("submitted_at", DateTime, nullable=False),
    )
    contacts = Table(
        "feedback_contacts",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("feedback_id", ForeignKey("feedback.id", ondelete=contacts_fk), nullable=False),
        Column("email", String(100)),
    )
    notes = Table(
        "contact_notes",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("contact_id", ForeignKey("feedback_contacts.id"), nullable=True),
    )
    return feedback, contacts, notes


NESTED_POLICY = """
version: 1
defaults: {guard: {max_rows: 1000, max_fraction: 1.0}}
rules:
  - name: feedback
    table: feedback
    clock: submitted_at
    after: P90D
    action: delete
    batch_size: 2
    cascade:
      - table: feedback_contacts
        on: {feedback_id: id}
        cascade:
          - table: contact_notes
            on: {contact_id: id}
            action: detach
"""


def _nested_rows(tables: tuple[Table, Table, Table]) -> dict[Table, list[dict[str, Any]]]:
    feedback, contacts, notes = tables
    dates = [OLD, OLD, OLD, OLD, OLD, RECENT]  # five due, in batches of 2, 2 and 1
    return {
        feedback: [{"id": i, "submitted_at": d} for i, d in enumerate(dates, 1)],
        contacts: [{"id": 10 + i, "feedback_id": i, "email": f"u{i}@x.test"} for i in range(1, 7)],
        notes: [{"id": 100 + i, "contact_id": 10 + i} for i in range(1, 7)],
    }


def test_each_batch_is_one_statement_on_postgresql_and_its_steps_elsewhere(
    settings: Settings, engine: Engine
) -> None:
    tables = nested(meta := MetaData())
    create(engine, meta, _nested_rows(tables))
    write_policy(settings.policy_file, NESTED_POLICY)
    with statements() as seen:
        result = api.run(settings, now=NOW).rules[0]
    assert (result.rows, result.batches) == (5, 3)
    assert result.dependents == {"contact_notes": 5, "feedback_contacts": 5}
    writes = _data_writes(seen)
    if backend_for(engine).one_statement_batches:
        assert len(writes) == 3  # one per batch: nothing else locks or changes a row
        assert all(s.startswith("WITH retention_chosen AS (SELECT") for s in writes)
    else:  # detach the notes, delete the contacts, delete the rows; lock rows first
        locks = [s for s in writes if s.startswith("SELECT")]
        assert len(writes) - len(locks) == 3 * 3
        assert len(locks) == (3 * 2 if backend_for(engine).locks_rows else 0)
    feedback, contacts, notes = tables
    assert ids(engine, feedback) == [6]
    assert ids(engine, contacts) == [16]
    with engine.connect() as conn:
        linked = dict(conn.execute(select(notes.c.id, notes.c.contact_id)).all())
    assert linked == {101: None, 102: None, 103: None, 104: None, 105: None, 106: 16}


def test_show_sql_prints_the_one_statement_that_runs(settings: Settings, engine: Engine) -> None:
    nested(meta := MetaData())
    meta.create_all(engine)
    write_policy(settings.policy_file, NESTED_POLICY)
    report = api.plan(settings, now=NOW)
    [planned] = report.rules
    kinds = [s.kind for s in planned.plan.steps]
    fused = backend_for(engine).one_statement_batches
    assert (StepKind.BATCH_FIRST in kinds) == fused
    assert (StepKind.APPLY in kinds) == (not fused)
    shown = plan_text(report, show_sql=True)
    assert ("WITH retention_chosen AS" in shown) == fused
    if fused:  # the selection is not listed apart from the statement it is part of
        assert "FOR UPDATE" not in shown.split("WITH retention_chosen AS")[0]
    assert ("-- delete the batch's rows in feedback" in shown) == (not fused)


# --- shapes that keep their statements, and one that need not ---------------------


def test_a_self_referencing_cascade_keeps_its_statements_and_removes_the_right_rows(
    settings: Settings, engine: Engine
) -> None:
    """comments.parent_id -> comments: one statement would change comments twice."""
    comments = Table(
        "comments",
        meta := MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("parent_id", ForeignKey("comments.id", ondelete="CASCADE"), nullable=True),
        Column("created_at", DateTime, nullable=False),
    )
    rows = [
        {"id": 1, "parent_id": None, "created_at": OLD},  # due: takes its reply 2
        {"id": 3, "parent_id": None, "created_at": RECENT},
        {"id": 2, "parent_id": 1, "created_at": RECENT},
        {"id": 4, "parent_id": 3, "created_at": OLD},  # due, a leaf
    ]
    create(engine, meta, {comments: rows})
    write_policy(
        settings.policy_file,
        """
version: 1
defaults: {guard: {max_rows: 1000, max_fraction: 1.0}}
rules:
  - name: comments
    table: comments
    clock: created_at
    after: P90D
    action: delete
    cascade:
      - table: comments
        on: {parent_id: id}
""",
    )
    [planned] = api.plan(settings, now=NOW).rules
    assert planned.plan.one_statement is False
    if backend_for(engine).one_statement_batches:
        assert "comments is read or changed again" in (planned.plan.batch_note or "")
    result = api.run(settings, now=NOW).rules[0]
    assert (result.status, result.rows, result.dependents) == ("done", 2, {"comments": 1})
    assert ids(engine, comments) == [3]


def test_an_on_delete_restrict_foreign_key_does_not_stop_one_statement(
    settings: Settings, engine: Engine
) -> None:
    """RESTRICT is checked at the end of the statement, as NO ACTION is (PostgreSQL 15):
    after the part that removed the dependents, so the batch stays one statement."""
    tables = nested(meta := MetaData(), contacts_fk="RESTRICT")
    create(engine, meta, _nested_rows(tables))
    write_policy(settings.policy_file, NESTED_POLICY)
    [planned] = api.plan(settings, now=NOW).rules
    assert planned.plan.one_statement == backend_for(engine).one_statement_batches
    assert planned.plan.batch_note is None
    with statements() as seen:
        result = api.run(settings, now=NOW).rules[0]
    assert (result.status, result.rows, result.batches) == ("done", 5, 3)
    assert result.dependents == {"contact_notes": 5, "feedback_contacts": 5}
    if planned.plan.one_statement:
        assert len(_data_writes(seen)) == 3
    feedback, contacts, _ = tables
    assert ids(engine, feedback) == [6]
    assert ids(engine, contacts) == [16]


def test_a_dependent_added_while_the_batch_waits_for_its_lock_is_removed_by_a_retry(
    settings: Settings, engine: Engine
) -> None:
    """The one statement reads the snapshot taken before its lock wait: a contact that
    another transaction adds to a chosen row meanwhile is unseen, the foreign key fails
    that attempt (rolled back whole), and the retry removes the contact with its row."""
    if not backend_for(engine).one_statement_batches:
        pytest.skip("only PostgreSQL runs a batch as one statement")
    tables = nested(meta := MetaData())
    create(engine, meta, _nested_rows(tables))
    write_policy(settings.policy_file, NESTED_POLICY)
    feedback, contacts, _ = tables
    other = engine.connect()
    adding = other.begin()  # its foreign key check holds a KEY SHARE lock on feedback 1
    other.execute(insert(contacts).values(id=99, feedback_id=1, email="late@x.test"))
    outcome: dict[str, Any] = {}
    run = threading.Thread(target=lambda: outcome.update(r=api.run(settings, now=NOW)))
    run.start()
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with engine.connect() as watch:
        while run.is_alive() and not watch.execute(waiting).scalar_one():
            watch.rollback()  # a new snapshot of pg_stat_activity at each look
            time.sleep(0.02)
    adding.commit()
    other.close()
    run.join()
    result = outcome["r"].rules[0]
    assert (result.status, result.rows) == ("done", 5)
    assert result.dependents == {"contact_notes": 5, "feedback_contacts": 6}
    assert ids(engine, feedback) == [6]
    assert ids(engine, contacts) == [16]


# --- the same audit record either way -------------------------------------------------


CARDS_POLICY = """
version: 1
defaults: {guard: {max_rows: 1000, max_fraction: 1.0}}
rules:
  - name: accounts
    table: accounts
    clock: closed_at
    after: P90D
    action: anonymise
    mark: anonymised_at
    set: {username: {hash: {prefix: "anon-"}}}
    batch_size: 2
    cascade:
      - table: cards
        on: {account_card: card_no}
        action: anonymise
        set: {holder: redact}
        cascade:
          - table: card_uses
            on: {card_id: id}
"""


def _cards(engine: Engine) -> MetaData:
    meta = MetaData()
    accounts = Table(
        "accounts",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("card_no", Integer, unique=True, nullable=True),
        Column("username", String(80), nullable=False),
        Column("closed_at", DateTime, nullable=False),
        Column("anonymised_at", DateTime, nullable=True),
    )
    cards = Table(
        "cards",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("account_card", Integer, nullable=False),
        Column("holder", String(80)),
    )
    uses = Table(
        "card_uses",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("card_id", ForeignKey("cards.id"), nullable=False),
    )
    # Batch 1 (accounts 1, 2) links no card: that table is not in its record; batch 2
    # (3, 4) reaches one card and its uses; batch 3 (5) links a card no row has: 0.
    cards_of = {1: None, 2: None, 3: 30, 4: 40, 5: 50}
    create(
        engine,
        meta,
        {
            accounts: [
                {"id": i, "card_no": c, "username": f"user{i}", "closed_at": OLD}
                for i, c in cards_of.items()
            ],
            cards: [{"id": 7, "account_card": 30, "holder": "Ann"}],
            uses: [{"id": 70, "card_id": 7}, {"id": 71, "card_id": 7}],
        },
    )
    return meta


def _batch_records(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT row_count, dependents, key_digest FROM retention_audit "
                "WHERE event = 'batch' ORDER BY seq"
            )
        ).all()
    return [(n, json.loads(d) if isinstance(d, str) else d, digest) for n, d, digest in rows]


def test_one_statement_writes_the_audit_record_the_statements_write(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """row_count, dependents per table (a table no parent row links to is left out, one
    linked but without rows counts 0) and the key digest are those of the same batches
    run statement by statement."""
    if not backend_for(engine).one_statement_batches:
        pytest.skip("only PostgreSQL runs a batch as one statement")
    write_policy(settings.policy_file, CARDS_POLICY)
    records = []
    for one_statement in (True, False):
        monkeypatch.setattr(PostgreSQLBackend, "one_statement_batches", one_statement)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        _cards(engine)
        [planned] = api.plan(settings, now=NOW).rules
        assert planned.plan.one_statement is one_statement
        result = api.run(settings, now=NOW).rules[0]
        assert (result.status, result.rows, result.batches) == ("done", 5, 3)
        records.append(_batch_records(engine))
        with engine.connect() as conn:
            holders = conn.execute(text("SELECT holder FROM cards")).scalars().all()
            uses = conn.execute(text("SELECT count(*) FROM card_uses")).scalar_one()
            names = conn.execute(text("SELECT username FROM accounts ORDER BY id")).scalars()
            assert (holders, uses) == (["[redacted]"], 0)
            assert all(n.startswith("anon-") and len(n) > 20 for n in names)
    fused, stepwise = records
    assert fused == stepwise
    assert [r[1] for r in fused] == [
        None,
        {"card_uses": 2, "cards": 1},
        {"cards": 0},
    ]


def test_a_plan_without_a_catalog_restrict_is_fused_on_postgresql_only() -> None:
    """The planner alone (no connection): the capability comes from the backend."""
    meta = MetaData()
    nested(meta)
    policy = load_policy_bytes(NESTED_POLICY.encode(), "policies.yaml").policy
    for dialect in ("sqlite", "postgresql", "mysql"):
        plan = make_plan(policy, Catalog(meta, None), NOW, backend_for(dialect)).rules[0]
        assert plan.one_statement == (dialect == "postgresql"), dialect
        assert plan.batch_note is None
        if plan.one_statement:
            batch = plan.step(StepKind.BATCH_NEXT)
            assert batch is not None
            assert batch.dependents == ("contact_notes", "feedback_contacts")
            assert not plan.steps_of(StepKind.APPLY_DEPENDENTS)
