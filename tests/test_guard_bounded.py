"""A run counts only what its guard needs (issue 13, item 2); ``plan`` still counts all.

A run counts due rows up to one past ``max_rows`` and the table's rows up to the number
that settles ``max_fraction``; no catalog estimate stands in for a count, so the verdict
is the exact count's whatever the statistics say.
"""

from __future__ import annotations

import json

import pytest
from builders import TS, create, holds_registry, write_policy
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, delete, text
from test_guards_and_dry_run import (
    FRESH,
    NOW,
    OLD,
    RULE,
    add_feedback,
    audit_records,
    count,
    guard_policy,
    invoke,
    make_feedback,
)

from retention import api
from retention.backends import backend_for
from retention.render import plan_text
from retention.settings import Settings


def only(engine: Engine, event: str) -> dict[str, object]:
    (record,) = [r for r in audit_records(engine) if r["event"] == event]
    return record


def test_max_rows_trips_when_more_are_due_and_the_record_says_the_count_stopped(
    settings: Settings, engine: Engine
) -> None:
    """8 due, max_rows 5: the count stops at 6 and the record says "at least 6"."""
    make_feedback(engine, due=8, fresh=2)
    write_policy(settings.policy_file, guard_policy(guard="{max_rows: 5, max_fraction: 1}"))

    (rule,) = api.run(settings, now=NOW).rules

    assert (rule.status, rule.rows) == ("guard_tripped", 0)
    assert rule.counts is not None and (rule.counts.due, rule.counts.due_at_least) == (6, True)
    details = only(engine, "guard_tripped")["details"]
    assert details == {"due_at_least": 6, "verdict": rule.guard}
    assert rule.guard == "max_rows: more than 5 due (counted up to 6)"
    assert count(engine, "feedback") == 10


def test_the_cli_says_at_least_when_the_count_stopped_at_the_bound(
    settings: Settings, engine: Engine
) -> None:
    make_feedback(engine, due=8, fresh=2)
    write_policy(settings.policy_file, guard_policy(guard="{max_rows: 5, max_fraction: 1}"))

    text_out = invoke(settings, "run")
    json_out = invoke(settings, "run", "--output", "json")

    assert text_out.exit_code == json_out.exit_code == 3
    assert "deleted 0 of at least 6 due" in text_out.stdout
    (rule,) = json.loads(json_out.stdout)["rules"]
    assert (rule["due"], rule["due_at_least"]) == (None, 6)


def test_max_rows_does_not_trip_when_exactly_max_rows_are_due(
    settings: Settings, engine: Engine
) -> None:
    make_feedback(engine, due=5, fresh=5)
    write_policy(settings.policy_file, guard_policy(guard="{max_rows: 5, max_fraction: 1}"))

    (rule,) = api.run(settings, now=NOW).rules

    assert (rule.status, rule.rows, rule.guard) == ("done", 5, "ok")
    assert only(engine, "rule_finished")["details"]["due"] == 5


@pytest.mark.parametrize(
    ("fresh", "max_fraction", "trips"),
    [
        (4, 0.6, False),  # 6 of 10: exactly the fraction, not over it
        (3, 0.6, True),  # 6 of 9
        (100, 0.05, True),  # 6 of 106: the whole table is counted
        (200, 0.05, False),  # 6 of 206: the count stops at 121 rows, enough to pass
    ],
)
def test_max_fraction_trips_exactly_as_the_exact_count_would(
    settings: Settings, engine: Engine, fresh: int, max_fraction: float, trips: bool
) -> None:
    make_feedback(engine, due=6, fresh=fresh)
    guard = f"{{max_rows: 1000, max_fraction: {max_fraction}}}"
    write_policy(settings.policy_file, guard_policy(guard=guard))

    (rule,) = api.run(settings, now=NOW).rules

    assert rule.status == ("guard_tripped" if trips else "done")
    assert rule.rows == (0 if trips else 6)
    if trips:
        assert only(engine, "guard_tripped")["details"]["total"] == 6 + fresh


@pytest.mark.parametrize("analysed_at", [1010, 7], ids=["stale-high", "stale-low"])
def test_max_fraction_trips_whatever_the_catalog_estimate_says(
    settings: Settings, engine: Engine, analysed_at: int
) -> None:
    """The statistics are gathered at ``analysed_at`` rows, then the table becomes 6 due
    of 10: the guard trips on the real table, never passes on a stale estimate."""
    feedback = make_feedback(engine, due=6, fresh=analysed_at - 6)
    analyse(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM feedback_contacts WHERE feedback_id > 6"))
        conn.execute(delete(feedback).where(feedback.c.id > 6))
    add_feedback(engine, feedback, range(2001, 2005), FRESH)
    write_policy(settings.policy_file, guard_policy(guard="{max_fraction: 0.5}"))

    (rule,) = api.run(settings, now=NOW).rules

    assert (rule.status, rule.rows) == ("guard_tripped", 0)
    assert only(engine, "guard_tripped")["details"]["total"] == 10


def analyse(engine: Engine) -> None:
    """Gather the catalog's statistics now (PostgreSQL reltuples, InnoDB TABLE_ROWS)."""
    statement = {
        "postgresql": "ANALYZE feedback",
        "mysql": "ANALYZE TABLE feedback",
        "sqlite": "ANALYZE",
    }[engine.dialect.name]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(statement).close()


KEPT_POLICY = """\
version: 1
holds: {table: legal_holds, subject_column: subject_id, active: {released_at: {is_null: true}}}
rules:
  - name: feedback-after-3-months
    table: feedback
    clock: submitted_at
    after: P3M
    action: delete
    unless: {status: open}
    hold_subject: subject_id
    guard: GUARD
"""


def kept_feedback(engine: Engine) -> None:
    """10 rows: 4 due, 2 past the cutoff but open (unless), 1 held, 3 fresh."""
    meta = MetaData()
    feedback = Table(
        "feedback",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("submitted_at", TS, nullable=False),
        Column("status", String(20)),
        Column("subject_id", Integer),
    )
    holds = holds_registry(meta)
    rows = [
        {"id": i, "submitted_at": OLD, "status": "closed", "subject_id": i} for i in range(1, 5)
    ]
    rows += [{"id": i, "submitted_at": OLD, "status": "open", "subject_id": i} for i in (5, 6)]
    rows += [{"id": 7, "submitted_at": OLD, "status": "closed", "subject_id": 77}]
    rows += [
        {"id": i, "submitted_at": FRESH, "status": "closed", "subject_id": i} for i in (8, 9, 10)
    ]
    create(
        engine, meta, {feedback: rows, holds: [{"id": 1, "subject_id": 77, "released_at": None}]}
    )


def test_plan_still_counts_exactly_with_the_rows_kept_by_unless_and_holds(
    settings: Settings, engine: Engine
) -> None:
    kept_feedback(engine)
    write_policy(settings.policy_file, KEPT_POLICY.replace("GUARD", "{max_rows: 2}"))

    (planned,) = api.plan(settings, now=NOW).rules

    c = planned.counts
    assert (c.due, c.kept_unless, c.kept_holds, c.total) == (4, 2, 1, 10)
    assert not c.due_at_least
    assert planned.guard == "max_rows: 4 due > 2"


def test_a_runs_recorded_due_is_the_rows_it_removed_under_unless_and_holds(
    settings: Settings, engine: Engine
) -> None:
    kept_feedback(engine)
    write_policy(settings.policy_file, KEPT_POLICY.replace("GUARD", "{max_rows: 4}"))

    (rule,) = api.run(settings, now=NOW).rules

    assert (rule.status, rule.rows) == ("done", 4)
    finished = only(engine, "rule_finished")
    assert (finished["details"]["due"], finished["row_count"]) == (4, 4)
    # not counted by a run: left out, never recorded as 0
    assert "kept_unless" not in finished["details"] and "kept_holds" not in finished["details"]
    assert count(engine, "feedback") == 6


def test_an_overridden_guard_records_the_exact_due_count(
    settings: Settings, engine: Engine
) -> None:
    make_feedback(engine, due=8, fresh=2)
    write_policy(settings.policy_file, guard_policy(guard="{max_rows: 5, max_fraction: 1}"))

    (rule,) = api.run(settings, now=NOW, override_guard=[RULE]).rules

    assert (rule.status, rule.rows, rule.guard_overridden) == ("done", 8, True)
    details = only(engine, "rule_finished")["details"]
    assert (details["due"], details["guard_overridden"]) == (8, "max_rows: 8 due > 5")


def test_show_sql_shows_the_bounded_guard_count(settings: Settings, engine: Engine) -> None:
    make_feedback(engine)
    write_policy(settings.policy_file, guard_policy(guard="{max_rows: 5}"))

    shown = plan_text(api.plan(settings, now=NOW), show_sql=True).splitlines()

    label = "  -- count due rows, up to one past the guard's max_rows (for run)"
    statement = shown[shown.index(label) + 1]
    assert statement.startswith("  SELECT count(*) AS count_1 FROM (SELECT 1 FROM feedback")
    assert "LIMIT" in statement and statement.endswith(") AS upto;")
    assert "  -- count rows in table, up to what settles max_fraction (for run)" in shown


def test_the_catalog_estimate_is_read_where_the_database_keeps_one(engine: Engine) -> None:
    """Only a hint for choosing the count's statement: None on SQLite, which keeps none."""
    feedback = make_feedback(engine, due=6, fresh=4)
    analyse(engine)

    with engine.connect() as conn:
        estimate = backend_for(conn).row_estimate(conn, feedback)

    assert estimate == (None if engine.dialect.name == "sqlite" else 10)


def test_the_report_says_a_run_did_not_count_the_kept_rows_never_zero(
    settings: Settings, engine: Engine
) -> None:
    kept_feedback(engine)
    write_policy(settings.policy_file, KEPT_POLICY.replace("GUARD", "{max_rows: 4}"))
    api.run(settings, now=NOW)

    page = invoke(settings, "audit", "report", "--format", "html")
    data = json.loads(invoke(settings, "audit", "report", "--format", "json").stdout)

    assert page.exit_code == 0, page.output
    assert "not counted by this run" in page.stdout
    (rule,) = data["rules"]
    (run,) = rule["runs"]
    assert (run["rows"], run["due"], run["kept_counted"]) == (4, 4, False)
    assert (run["kept_unless"], run["kept_holds"], rule["kept_by_holds_at_last_run"]) == (
        None,
        None,
        None,
    )
