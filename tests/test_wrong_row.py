"""Never the wrong row (issue 9): table names that SQL aliases once captured, and the
order rules run in (SPEC section 2, "Rule order"), on SQLite, PostgreSQL and MariaDB.

Each test checks the rows left one by one, not only the counts.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from builders import TS, create, guardless_policy, holds_registry, ids, write_policy
from builders import cli_on as cli
from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
)

from retention import api
from retention.catalog import Catalog
from retention.planner.order import ordered
from retention.policy.loader import load_policy_bytes
from retention.policy.order import rule_order
from retention.settings import Settings

NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)
OLD = datetime(2024, 1, 1, 8, 0, 0)  # naive UTC, past every cutoff below
RECENT = datetime(2024, 6, 10, 8, 0, 0)  # within every period below
HOLDS = """\
holds:
  table: {table}
  subject_column: subject_id
  active: {{released_at: {{is_null: true}}}}
"""


def policy(settings: Settings, rules: str, *, holds: str | None = None) -> None:
    head = HOLDS.format(table=holds) if holds is not None else ""
    write_policy(settings.policy_file, guardless_policy(rules, head=head))


# --- aliases never capture a table ----------------------------------------------------


def test_a_rule_on_a_table_named_hold_keeps_exactly_its_held_rows(
    settings: Settings, db: Engine
) -> None:
    """Rows 2 (active hold) and 4 (not due) stay; 1 (no hold) and 3 (released hold) go,
    though the registry has a ``user_id`` column as the rule's table ``hold`` does."""
    meta = MetaData()
    hold = Table(
        "hold",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=True),
        Column("created_at", TS, nullable=True),
    )
    holds = holds_registry(meta, Column("user_id", Integer, nullable=True))
    create(
        db,
        meta,
        {
            holds: [
                {"id": 1, "subject_id": 2, "released_at": None, "user_id": 1},
                {"id": 2, "subject_id": 3, "released_at": OLD, "user_id": 3},
            ],
            hold: [
                {"id": 1, "user_id": 1, "created_at": OLD},
                {"id": 2, "user_id": 2, "created_at": OLD},
                {"id": 3, "user_id": 3, "created_at": OLD},
                {"id": 4, "user_id": 1, "created_at": RECENT},
            ],
        },
    )
    policy(
        settings,
        """\
        rules:
          - name: hold
            table: hold
            clock: created_at
            after: P30D
            hold_subject: user_id
            action: delete
        """,
        holds="legal_holds",
    )

    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_holds) == (2, 1)
    assert api.run(settings, now=NOW).rules[0].rows == 2
    assert ids(db, hold) == [2, 4]
    assert api.run(settings, now=NOW).rules[0].rows == 0


def test_a_rule_on_rel1_reading_rel2_and_itself_keeps_exactly_its_unless_kept_rows(
    settings: Settings, db: Engine
) -> None:
    """Feedback in table ``rel1`` stays while its ticket (table ``rel2``) is open or has
    recent feedback: 1 (open) and 3 (closed, recent feedback 4) stay with 4; 2 (closed,
    no recent feedback) and 5 (no ticket) go. Every relation's alias differs from both."""
    meta = MetaData()
    feedback = Table(
        "rel1",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ticket_id", Integer, nullable=True),
        Column("submitted_at", TS, nullable=True),
    )
    tickets = Table(
        "rel2",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ticket_id", Integer, nullable=True),  # shares a name with rel1's column
        Column("status", String(20), nullable=True),
    )
    create(
        db,
        meta,
        {
            tickets: [
                {"id": 10, "ticket_id": 5, "status": "open"},
                {"id": 11, "ticket_id": 1, "status": "closed"},
                {"id": 12, "ticket_id": 2, "status": "closed"},
            ],
            feedback: [
                {"id": 1, "ticket_id": 10, "submitted_at": OLD},
                {"id": 2, "ticket_id": 11, "submitted_at": OLD},
                {"id": 3, "ticket_id": 12, "submitted_at": OLD},
                {"id": 4, "ticket_id": 12, "submitted_at": RECENT},
                {"id": 5, "ticket_id": None, "submitted_at": OLD},
            ],
        },
    )
    policy(
        settings,
        """\
        rules:
          - name: feedback
            table: rel1
            clock: submitted_at
            after: P30D
            unless:
              related:
                table: rel2
                on: {id: ticket_id}
                where:
                  - {status: open}
                  - related:
                      table: rel1
                      on: {ticket_id: id}
                      where: {submitted_at: {newer_than: P30D}}
            action: delete
        """,
    )

    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_unless) == (2, 2)
    assert api.run(settings, now=NOW).rules[0].rows == 2
    assert ids(db, feedback) == [1, 3, 4]
    assert ids(db, tickets) == [10, 11, 12]


def test_a_holds_registry_named_rel1_and_a_table_named_hold_keep_exactly_their_rows(
    settings: Settings, db: Engine
) -> None:
    """Registry ``rel1``, rule table ``rel2``, unless through table ``hold``: 2 (held)
    and 3 (its case is open) stay; 1 (nothing) and 4 (hold released) go."""
    meta = MetaData()
    holds = holds_registry(meta, name="rel1")
    cases = Table(
        "hold",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("subject_id", Integer, nullable=True),
    )
    accounts = Table(
        "rel2",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("subject_id", Integer, nullable=True),
        Column("case_id", Integer, nullable=True),
        Column("created_at", TS, nullable=True),
    )
    create(
        db,
        meta,
        {
            holds: [
                {"id": 1, "subject_id": 2, "released_at": None},
                {"id": 2, "subject_id": 4, "released_at": OLD},
            ],
            cases: [{"id": 7, "subject_id": 1}],
            accounts: [
                {"id": 1, "subject_id": 1, "case_id": None, "created_at": OLD},
                {"id": 2, "subject_id": 2, "case_id": None, "created_at": OLD},
                {"id": 3, "subject_id": 3, "case_id": 7, "created_at": OLD},
                {"id": 4, "subject_id": 4, "case_id": 8, "created_at": OLD},
            ],
        },
    )
    policy(
        settings,
        """\
        rules:
          - name: accounts
            table: rel2
            clock: created_at
            after: P30D
            unless: {related: {table: hold, on: {id: case_id}}}
            hold_subject: subject_id
            action: delete
        """,
        holds="rel1",
    )

    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_unless, counts.kept_holds) == (2, 1, 1)
    assert api.run(settings, now=NOW).rules[0].rows == 2
    assert ids(db, accounts) == [2, 3]
    assert ids(db, holds) == [1, 2]
    assert ids(db, cases) == [7]


# --- rule order -------------------------------------------------------------------------

TICKETS_UNLESS_FEEDBACK = """\
  - name: tickets
    table: tickets
    clock: closed_at
    after: P30D
    unless: {related: {table: feedback, on: {ticket_id: id}}}
    action: delete
"""
FEEDBACK = """\
  - name: feedback
    table: feedback
    clock: submitted_at
    after: P30D
    action: delete
"""


def tickets_and_feedback(engine: Engine) -> tuple[Table, Table]:
    """Ticket 1 (old) has old feedback 1; ticket 2 (old) recent feedback 2; ticket 3
    (old) none; ticket 4 is recent."""
    meta = MetaData()
    tickets = Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("closed_at", TS, nullable=True),
    )
    feedback = Table(
        "feedback",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ticket_id", Integer, nullable=True),
        Column("submitted_at", TS, nullable=True),
    )
    create(
        engine,
        meta,
        {
            tickets: [
                {"id": 1, "closed_at": OLD},
                {"id": 2, "closed_at": OLD},
                {"id": 3, "closed_at": OLD},
                {"id": 4, "closed_at": RECENT},
            ],
            feedback: [
                {"id": 1, "ticket_id": 1, "submitted_at": OLD},
                {"id": 2, "ticket_id": 2, "submitted_at": RECENT},
            ],
        },
    )
    return tickets, feedback


def test_a_rule_reading_a_table_runs_after_the_rule_deleting_from_it_so_a_second_run_does_nothing(
    settings: Settings, db: Engine
) -> None:
    """``tickets`` comes first in the file but reads feedback, so ``feedback`` runs first:
    the first run removes ticket 1 with its old feedback, and the second run removes
    nothing more."""
    tickets, feedback = tickets_and_feedback(db)
    policy(settings, "rules:\n" + TICKETS_UNLESS_FEEDBACK + FEEDBACK)

    first = api.run(settings, now=NOW)
    assert [(r.rule, r.rows) for r in first.rules] == [("feedback", 1), ("tickets", 2)]
    assert ids(db, tickets) == [2, 4]
    assert ids(db, feedback) == [2]

    second = api.run(settings, now=NOW)
    assert [(r.rule, r.rows) for r in second.rules] == [("feedback", 0), ("tickets", 0)]
    assert ids(db, tickets) == [2, 4]
    assert ids(db, feedback) == [2]


def test_rules_that_read_what_each_other_deletes_are_one_error_line_naming_both(
    settings: Settings, db: Engine
) -> None:
    """A cycle is a validation error (exit 78, nothing written), one ``file:line:col:
    rule '...'`` line at the first rule's read, naming both rules."""
    tickets, feedback = tickets_and_feedback(db)
    feedback_unless_tickets = FEEDBACK.replace(
        "    action: delete\n",
        "    unless: {related: {table: tickets, on: {id: ticket_id}}}\n    action: delete\n",
    )
    policy(settings, "rules:\n" + TICKETS_UNLESS_FEEDBACK + feedback_unless_tickets)

    for command in (["validate"], ["run"], ["plan"]):
        result = cli(settings, *command)
        assert result.exit_code == 78, result.output
        lines = result.stderr.strip().splitlines()
        problems = [line for line in lines if line.startswith(str(settings.policy_file))]
        assert len(problems) == 1, result.stderr
        # line 8 is the tickets rule's `unless`; its related table starts at column 31
        where = re.escape(f"{settings.policy_file}:8:31: rule 'tickets': unless.related.table: ")
        assert re.match(where + r"rules 'tickets', 'feedback' cannot be ordered", problems[0])
        assert "'tickets' reads feedback, which 'feedback' deletes from" in problems[0]
        assert "'feedback' reads tickets, which 'tickets' deletes from" in problems[0]
    assert ids(db, tickets) == [1, 2, 3, 4]
    assert ids(db, feedback) == [1, 2]


def test_plan_notes_a_rule_moved_after_a_later_one_and_an_earlier_rule_on_the_same_table(
    settings: Settings, db: Engine
) -> None:
    """``plan`` lists rules in run order and says, in text and JSON, which rule moved
    ahead and which rule acts on the same table first."""
    tickets_and_feedback(db)
    all_feedback = FEEDBACK.replace("name: feedback", "name: feedback-all").replace("P30D", "P1Y")
    policy(settings, "rules:\n" + TICKETS_UNLESS_FEEDBACK + FEEDBACK + all_feedback)

    as_json = cli(settings, "plan", "--output", "json")
    assert as_json.exit_code == 0, as_json.output
    rules = {r["rule"]: r for r in json.loads(as_json.stdout)["rules"]}
    # both feedback rules delete what the tickets rule reads
    assert list(rules) == ["feedback", "feedback-all", "tickets"]
    assert rules["feedback"]["runs_after_rules_on_same_table"] == []
    assert rules["feedback"]["moved_after"] == []
    assert rules["tickets"]["moved_after"] == [
        {"rule": "feedback", "deletes_from": "feedback"},
        {"rule": "feedback-all", "deletes_from": "feedback"},
    ]
    assert rules["tickets"]["runs_after_rules_on_same_table"] == []
    assert rules["feedback-all"]["runs_after_rules_on_same_table"] == ["feedback"]
    assert rules["feedback-all"]["moved_after"] == []

    as_text = cli(settings, "plan")
    assert as_text.exit_code == 0, as_text.output
    blocks = {b.split(":")[0]: b for b in as_text.stdout.split("\n\nrule ")[1:]}
    assert "note" not in blocks["feedback"]
    assert (
        "note           runs after rule 'feedback' (later in the file): "
        "it deletes from feedback, which this rule reads"
    ) in blocks["tickets"]
    assert (
        "note           an earlier rule acts on feedback first ('feedback'); "
        "the counts above are read before it runs"
    ) in blocks["feedback-all"]


# --- the order itself, without a database ---------------------------------------------


def order_of(rules: str, holds: bool = False) -> list[str]:
    head = "version: 1\n" + (HOLDS.format(table="legal_holds") if holds else "")
    loaded = load_policy_bytes((head + rules).encode(), "policies.yaml")
    found = rule_order(loaded.policy)
    return [loaded.policy.rules[i].name for i in found.order]


def test_a_delete_cascade_counts_as_deleting_from_its_table() -> None:
    rules = """\
rules:
  - {name: users, table: users, clock: seen_at, after: P1Y, action: delete,
     unless: {related: {table: orders, on: {user_id: id}}}}
  - {name: carts, table: carts, clock: at, after: P1Y, action: anonymise,
     set: {note: null}, cascade: [{table: orders, on: {cart_id: id}}]}
"""
    assert order_of(rules) == ["carts", "users"]


def test_the_holds_registry_is_read_by_every_rule_with_hold_subject() -> None:
    rules = """\
rules:
  - {name: orders, table: orders, clock: at, after: P1Y, action: delete, hold_subject: user_id}
  - {name: old-holds, table: legal_holds, clock: released_at, after: P7Y, action: delete}
  - {name: logs, table: logs, clock: at, after: P1Y, action: delete}
"""
    assert order_of(rules, holds=True) == ["old-holds", "orders", "logs"]


def test_unrelated_rules_and_rules_on_one_table_keep_file_order() -> None:
    rules = """\
rules:
  - {name: b, table: feedback, clock: at, after: P1Y, action: delete}
  - {name: a, table: feedback, clock: at, after: P3M, action: delete, where: {channel: app}}
  - {name: c, table: logs, clock: at, after: P1Y, action: delete}
"""
    assert order_of(rules) == ["b", "a", "c"]


def test_a_delete_the_database_cascades_counts_as_deleting_from_the_dependent_table() -> None:
    """``feedback_contacts`` rows go with their feedback (ON DELETE CASCADE), so a rule
    reading them runs after the rule that deletes feedback."""
    meta = MetaData()
    Table("feedback", meta, Column("id", Integer, primary_key=True))
    Table(
        "feedback_contacts",
        meta,
        Column("id", Integer, primary_key=True),
        Column("feedback_id", Integer, ForeignKey("feedback.id", ondelete="CASCADE")),
        Column("user_id", Integer),
    )
    Table("users", meta, Column("id", Integer, primary_key=True))
    rules = """\
rules:
  - {name: users, table: users, clock: seen_at, after: P1Y, action: delete,
     unless: {related: {table: feedback_contacts, on: {user_id: id}}}}
  - {name: feedback, table: feedback, clock: at, after: P1Y, action: delete}
"""
    found = load_policy_bytes(("version: 1\n" + rules).encode(), "policies.yaml").policy
    order, notes = ordered(found, Catalog(meta, None), [0, 1])
    assert [found.rules[i].name for i in order] == ["feedback", "users"]
    assert notes[0].moved_after == (("feedback", "feedback_contacts"),)
