"""Stage 3 against the real schema (SPEC section 2, "Real schemas", "Anonymisation
strategies", "Validation"; issue 9 items 2, 3, 6 and 9), on every database.

Literals are checked against their columns' types and compared in them; a cascade must
reach unique parent columns; a strategy must fit its column; a rule's failure names the
table and column of the constraint it broke, never a value.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import TS, ids, invoke, rules_policy
from sqlalchemy import (
    CheckConstraint,
    Column,
    Date,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    insert,
)

from retention import api
from retention.settings import Settings

NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)
OLD = datetime(2019, 6, 1, 8, 0, 0)  # naive UTC, past every cutoff below
CONFIG_ERROR = 78


def events_table(meta: MetaData) -> Table:
    return Table(
        "events",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=False),
        Column("kind", String(20), nullable=True),
        Column("seen_at", TS, nullable=False),
        Column("day", Date, nullable=False),
        Column("status", String(20)),
        CheckConstraint("status <> 'zzvalue'", name="ck_status"),
    )


def make_events(db: Engine) -> Table:
    meta = MetaData()
    events = events_table(meta)
    meta.create_all(db)
    rows = [
        {"id": i, "user_id": i, "kind": "app", "seen_at": seen, "day": seen.date()}
        for i, seen in enumerate(
            [datetime(1999, 12, 31, 23, 0), datetime(2000, 1, 1), OLD], start=1
        )
    ]
    with db.begin() as conn:
        conn.execute(insert(events), rows)
    return events


def write_policy(settings: Settings, rules: str) -> None:
    settings.policy_file.write_text(rules_policy(rules))


def rule(extra: str, *, action: str = "delete") -> str:
    return f"""\
    - name: events
      table: events
      clock: seen_at
      after: P30D
      action: {action}
    """ + textwrap.indent(textwrap.dedent(extra), "  ")


def validate(settings: Settings) -> Any:
    env = {
        "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
        "RETENTION_POLICY_FILE": str(settings.policy_file),
        "RETENTION_LOG_FORMAT": "console",
    }
    return invoke(["validate"], env)


def refused(settings: Settings, *expected: str) -> str:
    """Validation exits 78 with one ``file:line:col: rule 'events': ...`` line holding
    every text of ``expected``; the line is returned."""
    result = validate(settings)
    assert result.exit_code == CONFIG_ERROR, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if "rule 'events'" in line]
    assert lines, result.output
    line = next((x for x in lines if all(e in x for e in expected)), None)
    assert line is not None, result.output
    assert f"{settings.policy_file}:" in line
    return line


# --- literals (item 3) ------------------------------------------------------------------


def test_a_date_that_does_not_parse_is_refused_and_nothing_is_deleted(
    settings: Settings, db: Engine
) -> None:
    """``lt: "31/12/2019"`` would match every row compared as text on SQLite: refused."""
    events = make_events(db)
    write_policy(settings, rule('where: {seen_at: {lt: "31/12/2019"}}'))
    line = refused(settings, "where.seen_at.lt", "'31/12/2019' is not a date", "YYYY-MM-DD")
    assert ":9:27:" in line  # where the literal is written
    with pytest.raises(Exception, match="not a date"):
        api.run(settings, now=NOW)
    assert ids(db, events) == [1, 2, 3]


def test_a_quoted_iso_date_compares_as_a_date_on_a_timestamp_and_a_date_column(
    settings: Settings, db: Engine
) -> None:
    """``lt: "2000-01-01"`` (text under YAML 1.2) is midnight on a timestamp column and a
    day on a DATE column: only the row of 1999 is before it, on every database."""
    events = make_events(db)
    write_policy(settings, rule('where: {seen_at: {lt: "2000-01-01"}, day: {lt: "2000-01-01"}}'))
    assert validate(settings).exit_code == 0
    assert api.plan(settings, now=NOW).rules[0].counts.due == 1
    assert api.run(settings, now=NOW).rules[0].rows == 1
    assert ids(db, events) == [2, 3]


def test_text_compared_with_an_integer_column_is_refused(settings: Settings, db: Engine) -> None:
    """A string against an integer column (an error at run time on PostgreSQL) is a
    validation error that says to write the number unquoted."""
    make_events(db)
    write_policy(settings, rule('where: {user_id: {in: [1, "two"]}}'))
    refused(settings, "where.user_id.in[1]", "not a whole number", "without quotes")


def test_a_number_compared_with_a_text_column_is_refused(settings: Settings, db: Engine) -> None:
    """A number against a text column is never compared as text against a number."""
    make_events(db)
    write_policy(settings, rule("where: {kind: 42}"))
    refused(settings, "where.kind", "42 is not text", "quote it")


def test_an_integer_beyond_the_column_is_refused_before_any_rule_runs(
    settings: Settings, db: Engine
) -> None:
    """A number the column cannot hold is refused at validation, not mid-run."""
    make_events(db)
    too_big = 2**63 - 1 if settings.database_url.get_secret_value().startswith("sqlite") else 2**40
    if too_big == 2**63 - 1:
        pytest.skip("SQLite integers hold 64 bits: the model's own range check applies")
    write_policy(settings, rule(f"where: {{user_id: {{gt: {too_big}}}}}"))
    refused(settings, "where.user_id.gt", "does not fit the column")


def test_a_lone_surrogate_is_refused_with_one_line_not_an_encoding_error(
    settings: Settings, db: Engine
) -> None:
    make_events(db)
    write_policy(settings, rule('where: {kind: "a\\ud800b"}'))
    refused(settings, "where.kind", "lone surrogate")
    # The text of a text test is checked as well (a NUL fails PostgreSQL's driver).
    write_policy(settings, rule('where: {kind: {starts_with: "a\\0b"}}'))
    refused(settings, "where.kind.starts_with", "NUL character")


# --- cascades (item 2) ------------------------------------------------------------------


def test_a_cascade_through_a_non_unique_column_is_refused_with_the_hint(
    settings: Settings, db: Engine
) -> None:
    """Contacts linked by user_id are shared by every event of the user: a kept event
    would lose them, so validate says to give them a rule of their own."""
    meta = MetaData()
    events_table(meta)
    Table(
        "user_contacts",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=False),
    )
    meta.create_all(db)
    write_policy(settings, rule("cascade: [{table: user_contacts, on: {user_id: user_id}}]"))
    refused(
        settings,
        "cascade[0].on",
        "events(user_id), which is not unique",
        "a rule of its own with unless: {related: {table: events, on: {user_id: user_id}}}",
    )


def test_a_cascade_through_the_primary_key_is_accepted(settings: Settings, db: Engine) -> None:
    meta = MetaData()
    events_table(meta)
    Table(
        "event_notes",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("event_id", Integer, ForeignKey("events.id"), nullable=False),
    )
    meta.create_all(db)
    write_policy(settings, rule("cascade: [{table: event_notes, on: {event_id: id}}]"))
    result = validate(settings)
    assert result.exit_code == 0, result.output


# --- strategies (item 6) ----------------------------------------------------------------


def test_null_on_a_not_null_date_column_suggests_truncate_date(
    settings: Settings, db: Engine
) -> None:
    make_events(db)
    write_policy(settings, rule("set: {day: null}", action="anonymise"))
    line = refused(settings, "set.day", "NOT NULL", "truncate_date")
    assert "redact" not in line


def test_a_fixed_value_must_be_written_in_its_columns_type(settings: Settings, db: Engine) -> None:
    """``{value: "2000-01-01"}`` is text, and a date column is written a date."""
    make_events(db)
    write_policy(settings, rule('set: {day: {value: "2000-01-01"}}', action="anonymise"))
    refused(settings, "set.day", "write 2000-01-01 (unquoted)")


# --- failures name the constraint (item 9) ----------------------------------------------


def test_a_constraint_violation_names_its_table_or_constraint_never_the_value(
    settings: Settings, db: Engine
) -> None:
    """A CHECK constraint the validation cannot see fails the rule at run time: the
    recorded error names where (the constraint), never the value written."""
    make_events(db)
    write_policy(settings, rule("set: {status: {value: zzvalue}}", action="anonymise"))
    result = api.run(settings, now=NOW).rules[0]
    assert result.error is not None
    assert "ck_status" in result.error, result.error
    assert "zzvalue" not in result.error


def test_a_fixed_value_its_foreign_keys_parent_lacks_is_refused(
    settings: Settings, db: Engine
) -> None:
    """``{value: 999}`` on a column referring to owners.id, where no owner 999 exists,
    would fail every batch: validate refuses it; a value the parent holds passes."""
    meta = MetaData()
    owners = Table("owners", meta, Column("id", Integer, primary_key=True, autoincrement=False))
    Table(
        "events",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("owner_id", Integer, ForeignKey("owners.id"), nullable=False),
        Column("seen_at", TS, nullable=False),
    )
    meta.create_all(db)
    with db.begin() as conn:
        conn.execute(insert(owners), [{"id": 1}])
    write_policy(settings, rule("set: {owner_id: {value: 999}}", action="anonymise"))
    refused(settings, "set.owner_id", "not in owners.id")
    write_policy(settings, rule("set: {owner_id: {value: 1}}", action="anonymise"))
    result = validate(settings)
    assert result.exit_code == 0, result.output
