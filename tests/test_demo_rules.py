"""The demo data at work: every rule of the shipped policies.yaml has rows due, rows kept
by its ``unless`` and rows kept by holds, written out in Core independently of the planner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    func,
    not_,
    select,
    true,
)

from retention.demo import create_demo, demo_metadata
from retention.policy.loader import load_policy

POLICY_FILE = Path(__file__).resolve().parent.parent / "policies.yaml"
NOW = datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Shanghai")  # defaults.timezone of policies.yaml
DEMO = demo_metadata()
OPEN = ("open", "pending")


def cutoff(period: relativedelta) -> datetime:
    """Calendar periods move Beijing wall-clock time; columns hold naive UTC."""
    return (NOW.astimezone(ZONE) - period).astimezone(UTC).replace(tzinfo=None)


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
