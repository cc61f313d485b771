"""The demo database: reproducible, refusing foreign databases, and useful for every rule."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    func,
    inspect,
    not_,
    select,
    true,
)

from retention.demo import DEMO_TABLES, DemoSummary, create_demo, demo_metadata
from retention.errors import DemoRefused
from retention.policy.loader import load_policy

POLICY_FILE = Path(__file__).resolve().parent.parent / "policies.yaml"
NOW = datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")  # defaults.timezone of policies.yaml
DEMO = demo_metadata()
OPEN = ("open", "pending")


def checksum(engine: Engine) -> str:
    """A digest of every row of every demo table, in key order."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for name in DEMO_TABLES:
            table = DEMO.tables[name]
            for row in conn.execute(select(table).order_by(*table.primary_key.columns)):
                digest.update(repr((name, *row)).encode())
    return digest.hexdigest()


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(DEMO.tables[name])).scalar_one()
            for name in DEMO_TABLES
        }


def cutoff(period: relativedelta) -> datetime:
    """Calendar periods move Beijing wall-clock time; columns hold naive UTC."""
    return (NOW.astimezone(ZONE) - period).astimezone(UTC).replace(tzinfo=None)


def add_orders(engine: Engine) -> Table:
    meta = MetaData()
    orders = Table(
        "orders", meta, Column("id", Integer, primary_key=True), Column("item", String(20))
    )
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(orders.insert(), [{"id": 1, "item": "kettle"}])
    return orders


def test_same_seed_gives_identical_rows(engine: Engine) -> None:
    """Two demos with the same seed and clock hold the same rows; another seed does not."""
    create_demo(engine, now=NOW)
    first = checksum(engine)
    create_demo(engine, now=NOW)
    assert checksum(engine) == first
    create_demo(engine, now=NOW, seed=7)
    assert checksum(engine) != first


def test_summary_counts_the_rows_written(engine: Engine) -> None:
    """DemoSummary reports, per demo table, the rows that are in the database."""
    summary = create_demo(engine, now=NOW)
    assert isinstance(summary, DemoSummary)
    assert list(summary.rows) == list(DEMO_TABLES)
    assert summary.rows == counts(engine)
    assert summary.rows["accounts"] == 600
    assert summary.rows["feedback"] == 3000
    assert 3000 <= summary.rows["feedback_contacts"] <= 6000
    assert summary.rows["access_log"] == 8000
    assert 550 <= summary.rows["marketing_consents"] <= 850
    assert summary.rows["legal_holds"] == 20


def test_refuses_a_database_holding_other_tables(engine: Engine) -> None:
    """Without force, a database with a foreign table is refused and left untouched."""
    orders = add_orders(engine)
    with pytest.raises(DemoRefused, match=r"other tables \(orders\).*--force"):
        create_demo(engine, now=NOW)
    assert inspect(engine).get_table_names() == ["orders"]
    with engine.connect() as conn:
        assert conn.execute(select(orders.c.item)).scalars().all() == ["kettle"]


def test_force_creates_the_demo_beside_other_tables(engine: Engine) -> None:
    """With force, the demo is created and the foreign table keeps its rows."""
    orders = add_orders(engine)
    summary = create_demo(engine, now=NOW, force=True)
    assert set(inspect(engine).get_table_names()) == {"orders", *DEMO_TABLES}
    assert summary.rows == counts(engine)
    with engine.connect() as conn:
        assert conn.execute(select(orders.c.item)).scalars().all() == ["kettle"]


def test_rerunning_recreates_the_demo_and_drops_the_audit_log(engine: Engine) -> None:
    """A second run over a used demo database restores the demo rows and drops audit tables."""
    summary = create_demo(engine, now=NOW)
    pristine = checksum(engine)
    meta = MetaData()
    audit = Table("retention_audit", meta, Column("seq", Integer, primary_key=True))
    feedback, contacts = DEMO.tables["feedback"], DEMO.tables["feedback_contacts"]
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(audit.insert(), [{"seq": 1}])
        conn.execute(contacts.delete())
        conn.execute(feedback.delete().where(feedback.c.id > 10))
    assert checksum(engine) != pristine

    assert create_demo(engine, now=NOW) == summary
    assert checksum(engine) == pristine
    assert set(inspect(engine).get_table_names()) == set(DEMO_TABLES)


# --- every rule of policies.yaml has work to do, and work to leave -------------------


@dataclass(frozen=True)
class RuleRows:
    """A rule's rows at NOW, written out in Core, independent of the planner."""

    table: str
    due: Callable[[Table], ColumnElement[bool]]  # clock before cutoff, mark not set
    unless: Callable[[Table], ColumnElement[bool]] | None
    subject: str


def open_ticket(on: str, ours: str) -> Callable[[Table], ColumnElement[bool]]:
    tickets = DEMO.tables["tickets"]
    return lambda t: (
        select(tickets.c.id).where(tickets.c[on] == t.c[ours], tickets.c.status.in_(OPEN)).exists()
    )


RULES = {
    "feedback-after-3-months": RuleRows(
        "feedback",
        lambda t: t.c.submitted_at < cutoff(relativedelta(months=3)),
        open_ticket("id", "ticket_id"),
        "account_id",
    ),
    "access-log-ip-after-30-days": RuleRows(
        "access_log",
        lambda t: and_(
            t.c.logged_at < cutoff(relativedelta(days=30)), t.c.ip_anonymised_at.is_(None)
        ),
        None,
        "account_id",
    ),
    "access-log-after-1-year": RuleRows(
        "access_log", lambda t: t.c.logged_at < cutoff(relativedelta(years=1)), None, "account_id"
    ),
    "closed-accounts-after-30-days": RuleRows(
        "accounts",
        lambda t: and_(t.c.closed_at < cutoff(relativedelta(days=30)), t.c.anonymised_at.is_(None)),
        open_ticket("account_id", "id"),
        "id",
    ),
    "withdrawn-marketing-consent": RuleRows(
        "marketing_consents",
        lambda t: t.c.withdrawn_at < NOW.replace(tzinfo=None),
        None,
        "account_id",
    ),
}


def test_the_checks_below_cover_policies_yaml() -> None:
    """Every rule of the shipped policy is checked below, on the table and subject it names."""
    policy = load_policy(POLICY_FILE).policy
    assert policy.defaults.timezone == ZONE.key
    assert {rule.name: (rule.table, rule.hold_subject) for rule in policy.rules} == {
        name: (rows.table, rows.subject) for name, rows in RULES.items()
    }


def count(conn: Connection, table: Table, *conditions: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(table).where(*conditions)
    return conn.execute(query).scalar_one()


def breakdown(conn: Connection, rows: RuleRows) -> dict[str, int]:
    """How many rows of a rule's table are due, and how many are kept, and why."""
    table = DEMO.tables[rows.table]
    holds = DEMO.tables["legal_holds"]

    def hold(active: bool) -> ColumnElement[bool]:
        released = holds.c.released_at.is_(None) if active else holds.c.released_at.is_not(None)
        return (
            select(holds.c.id).where(holds.c.subject_id == table.c[rows.subject], released).exists()
        )

    due, held = rows.due(table), hold(active=True)
    unless = rows.unless(table) if rows.unless else None
    not_kept = not_(unless) if unless is not None else true()
    found = {
        "rows": count(conn, table),
        "due": count(conn, table, due, not_kept, not_(held)),
        "kept by holds": count(conn, table, due, not_kept, held),
        "due despite a lifted hold": count(conn, table, due, not_kept, not_(held), hold(False)),
    }
    if unless is not None:
        found["kept by unless"] = count(conn, table, due, unless, not_(held))
    return found


def test_every_rule_has_due_rows_and_rows_it_keeps(engine: Engine) -> None:
    """At NOW every rule has rows due, rows kept by its unless (if it has one) and rows kept
    by an active hold, while a lifted hold keeps nothing; and what is due stays within the
    policy's guard (max_fraction 0.9), so the first run of the demo is not refused."""
    create_demo(engine, now=NOW)
    with engine.connect() as conn:
        found = {name: breakdown(conn, rows) for name, rows in RULES.items()}
    missing = [
        f"{name}: {what}" for name, part in found.items() for what, n in part.items() if n == 0
    ]
    assert not missing, found
    over_guard = [name for name, part in found.items() if part["due"] >= 0.9 * part["rows"]]
    assert not over_guard, found


def test_due_feedback_carries_contacts_for_the_cascade(engine: Engine) -> None:
    """Feedback due for deletion has contact rows, so the cascade has work to do."""
    create_demo(engine, now=NOW)
    feedback, contacts = DEMO.tables["feedback"], DEMO.tables["feedback_contacts"]
    due = RULES["feedback-after-3-months"].due(feedback)
    with engine.connect() as conn:
        joined = contacts.join(feedback, contacts.c.feedback_id == feedback.c.id)
        kinds = conn.execute(
            select(contacts.c.kind).select_from(joined).where(due).distinct()
        ).scalars()
        assert set(kinds) == {"mobile", "email", "qq", "wechat"}


def test_some_closed_accounts_are_not_yet_due(engine: Engine) -> None:
    """Accounts closed in the last 30 days exist and are not due for anonymisation."""
    create_demo(engine, now=NOW)
    accounts = DEMO.tables["accounts"]
    with engine.connect() as conn:
        recent = count(conn, accounts, accounts.c.closed_at >= cutoff(relativedelta(days=30)))
    assert recent > 0
