"""Concurrent runs, rule locks, holds placed mid-run and row locks (SPEC sections 4, 5, 6).

Every test builds its own tables with SQLAlchemy Core, writes its policy beside the
database and asserts on the rows that are left and on the audit records written.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import builders
import pytest
from builders import Invocation, feedback_schema, lease_held, write_policy
from conftest import HASH_KEY
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    insert,
    select,
    update,
)

from retention import api
from retention.audit.records import audit_tables
from retention.cli import cli
from retention.settings import Settings

META = feedback_schema(feedback=["user_id", "body"], contacts=["email"], holds=True)
FEEDBACK, CONTACTS = META.tables["feedback"], META.tables["feedback_contacts"]
HOLDS = META.tables["legal_holds"]
ACCESS_LOG = Table(
    "access_log",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("logged_at", DateTime, nullable=False),
    Column("ip_address", String(45)),
)
SESSIONS = Table(
    "sessions",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime, nullable=False),
)
RECORDS = audit_tables("retention_audit")[1]

FEEDBACK_RULE = "feedback-after-3-months"
ACCESS_RULE = "access-log-after-30-days"
SESSIONS_RULE = "sessions-after-7-days"

POLICY = """\
version: 1
defaults:
  batch_size: {batch_size}
  sleep: {sleep}
  guard: {{max_rows: 1000000, max_fraction: 1.0}}
holds:
  table: legal_holds
  subject_column: subject_id
  active: {{released_at: {{is_null: true}}}}
rules:
  - name: feedback-after-3-months
    table: feedback
    clock: submitted_at
    after: P3M
    hold_subject: user_id
    action: delete
    cascade:
      - table: feedback_contacts
        on: {{feedback_id: id}}
  - name: access-log-after-30-days
    table: access_log
    clock: logged_at
    after: 30 days
    action: delete
  - name: sessions-after-7-days
    table: sessions
    clock: created_at
    after: P7D
    action: delete
"""


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def is_due(row_id: int) -> bool:
    """Three rows in four are due; the others are interleaved, so batches walk past them."""
    return row_id % 4 != 0


def body_of(row_id: int) -> str:
    return f"body-secret-{row_id}"


def email_of(row_id: int) -> str:
    return f"person-{row_id}@example.invalid"


def build(
    engine: Engine, settings: Settings, rows: int, *, batch_size: int, sleep: float = 0
) -> None:
    """``rows`` rows in each table (user ``n`` owns feedback 3n-2..3n) and the policy file."""
    old = utc_now() - timedelta(days=400)
    new = utc_now() - timedelta(hours=1)
    ids = range(1, rows + 1)
    META.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(FEEDBACK),
            [
                {
                    "id": i,
                    "user_id": (i + 2) // 3,
                    "submitted_at": old if is_due(i) else new,
                    "body": body_of(i),
                }
                for i in ids
            ],
        )
        conn.execute(
            insert(CONTACTS), [{"id": i, "feedback_id": i, "email": email_of(i)} for i in ids]
        )
        conn.execute(
            insert(ACCESS_LOG),
            [
                {"id": i, "logged_at": old if is_due(i) else new, "ip_address": "203.0.113.7"}
                for i in ids
            ],
        )
        conn.execute(
            insert(SESSIONS), [{"id": i, "created_at": old if is_due(i) else new} for i in ids]
        )
    write_policy(settings.policy_file, POLICY.format(batch_size=batch_size, sleep=sleep))


def ids_in(engine: Engine, table: Table) -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(select(table.c.id)))


def records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(RECORDS).order_by(RECORDS.c.seq))
        return [dict(row._mapping) for row in rows]


def with_changes(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update=changes)


@pytest.fixture
def invoke() -> Callable[..., Invocation]:
    """Run the CLI in-process against the test database and policy."""

    def call(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Invocation:
        base = {
            "RETENTION_HASH_KEY": HASH_KEY,
            "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
            "RETENTION_POLICY_FILE": str(settings.policy_file),
            "RETENTION_LOG_FORMAT": "json",
        }
        return builders.invoke(args, {**base, **(env or {})}, catch_exceptions=True)

    return call


# --- three runs at once ---------------------------------------------------------------


def cli_in_child(args: list[str], out: str, err: str) -> None:
    """A forked process running the CLI, as cron would, its output in two files."""
    os.environ.update(RETENTION_HASH_KEY=HASH_KEY, RETENTION_LOG_FORMAT="json")
    with open(out, "w", encoding="utf-8") as stdout, open(err, "w", encoding="utf-8") as stderr:
        sys.stdout, sys.stderr = stdout, stderr
        try:
            cli.main(args=args, prog_name="retention")
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def test_three_runs_started_at_once_remove_every_due_row_exactly_once(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """Three processes on a fresh database: one chain, one audit table, each row once."""
    rows = 1200
    # Pauses between batches make each rule last long enough for the runs to meet.
    build(engine, settings, rows, batch_size=40, sleep=0.02)
    engine.dispose()  # the children must not share the parent's pooled connections
    due = {i for i in range(1, rows + 1) if is_due(i)}
    args = [
        "run",
        "--database",
        settings.database_url.get_secret_value(),
        "--policy",
        str(settings.policy_file),
        "--output",
        "json",
    ]
    fork = multiprocessing.get_context("fork")
    files = [(str(tmp_path / f"out-{n}.json"), str(tmp_path / f"err-{n}.log")) for n in range(3)]
    procs = [fork.Process(target=cli_in_child, args=(args, out, err)) for out, err in files]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
    outputs = [(Path(out).read_text(), Path(err).read_text()) for out, err in files]

    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.exitcode in (0, 75), err
        assert "Traceback" not in err and '"level": "error"' not in err, err
        report = json.loads(out)
        statuses = {r["status"] for r in report["rules"]}
        assert statuses <= {"done", "skipped"}, report
        assert (proc.exitcode == 75) == (statuses == {"skipped"}), report
        reports.append(report)
    removed: Counter[str] = Counter()
    for report in reports:
        for r in report["rules"]:
            removed[r["rule"]] += r["deleted"]
    assert removed == {FEEDBACK_RULE: len(due), ACCESS_RULE: len(due), SESSIONS_RULE: len(due)}
    survivors = set(range(1, rows + 1)) - due
    for table in (FEEDBACK, CONTACTS, ACCESS_LOG, SESSIONS):
        assert ids_in(engine, table) == survivors, table.name

    verified = api.verify(settings)
    log = records(engine)
    assert verified.records == len(log)
    assert verified.head in {r["audit_head"] for r in reports}
    events = Counter(r["event"] for r in log)
    assert events["run_started"] == 3 and events["run_finished"] == 3
    assert events["run_interrupted"] == 0  # no live run was taken for a dead one
    per_rule = Counter((r["rule"], r["event"]) for r in log if r["rule"])
    for rule in (FEEDBACK_RULE, ACCESS_RULE, SESSIONS_RULE):
        assert per_rule[(rule, "rule_finished")] + per_rule[(rule, "rule_skipped")] == 3
        batches = [r for r in log if r["rule"] == rule and r["event"] == "batch"]
        assert sum(r["row_count"] for r in batches) == len(due)
    head_table = audit_tables("retention_audit")[2]
    with engine.connect() as conn:
        assert conn.execute(select(head_table.c.id, head_table.c.seq)).all() == [(1, len(log))]


# --- a rule held by another run ---------------------------------------------------------


def test_a_rule_whose_lease_is_held_is_skipped_and_the_others_still_run(
    settings: Settings, engine: Engine
) -> None:
    """The held rule is 'skipped' with a rule_skipped record; its rows stay; the rest run."""
    build(engine, settings, 40, batch_size=10)
    with lease_held(engine, rule=ACCESS_RULE):
        result = api.run(settings)
    status = {r.rule: r.status for r in result.rules}
    assert status == {FEEDBACK_RULE: "done", ACCESS_RULE: "skipped", SESSIONS_RULE: "done"}
    assert ids_in(engine, ACCESS_LOG) == set(range(1, 41))
    assert ids_in(engine, SESSIONS) == {i for i in range(1, 41) if not is_due(i)}
    skipped = [r for r in records(engine) if r["event"] == "rule_skipped"]
    assert [(r["rule"], r["table_name"], r["run_id"]) for r in skipped] == [
        (ACCESS_RULE, "access_log", result.run_id)
    ]
    api.verify(settings)


def test_a_run_whose_only_rule_is_held_exits_75(
    settings: Settings, engine: Engine, invoke: Callable[..., Any]
) -> None:
    """Every rule skipped because another run holds it: retry later (exit 75)."""
    build(engine, settings, 8, batch_size=10)
    with lease_held(engine, rule=SESSIONS_RULE):
        outcome = invoke(settings, "run", "--rule", SESSIONS_RULE, "--output", "json")
    assert outcome.exit_code == 75, outcome.output
    report = json.loads(outcome.stdout)
    assert [(r["rule"], r["status"]) for r in report["rules"]] == [(SESSIONS_RULE, "skipped")]
    assert ids_in(engine, SESSIONS) == set(range(1, 9))


def test_a_released_rule_lease_lets_the_next_run_take_the_rule(
    settings: Settings, engine: Engine
) -> None:
    """The lease is released when its holder is done: the next run is not skipped."""
    build(engine, settings, 8, batch_size=10)
    with lease_held(engine, rule=SESSIONS_RULE):
        pass
    result = api.run(settings, rules=[SESSIONS_RULE])
    assert [r.status for r in result.rules] == ["done"]
    assert ids_in(engine, SESSIONS) == {4, 8}


# --- a legal hold placed while the run is under way -------------------------------------


def place_hold_after_first_batch(engine: Engine, subject: int) -> Callable[[str, int, int], None]:
    def on_batch(rule: str, done: int, due: int) -> None:
        if rule == FEEDBACK_RULE and done == 4:
            with engine.begin() as conn:
                conn.execute(insert(HOLDS).values(id=1, subject_id=subject, released_at=None))

    return on_batch


def test_a_hold_placed_during_a_run_keeps_its_rows_due_in_a_later_batch(
    settings: Settings, engine: Engine
) -> None:
    """Rows held mid-run survive with their dependents; committed batches stay removed."""
    build(engine, settings, 40, batch_size=4)
    # User 9 owns feedback 25, 26, 27 (all due), reached in the seventh batch.
    result = api.run(
        settings, rules=[FEEDBACK_RULE], on_batch=place_hold_after_first_batch(engine, subject=9)
    )
    [rule] = result.rules
    assert rule.status == "done"
    due = {i for i in range(1, 41) if is_due(i)}
    held = {25, 26, 27}
    kept = (set(range(1, 41)) - due) | held
    assert ids_in(engine, FEEDBACK) == kept
    assert ids_in(engine, CONTACTS) == kept
    assert rule.rows == len(due) - len(held)
    batches = [r for r in records(engine) if r["event"] == "batch"]
    assert sum(r["row_count"] for r in batches) == len(due) - len(held)

    [planned] = api.plan(settings, rules=[FEEDBACK_RULE]).rules
    assert (planned.counts.due, planned.counts.kept_holds) == (0, len(held))


def test_a_hold_lifted_between_runs_lets_the_next_run_remove_the_rows(
    settings: Settings, engine: Engine
) -> None:
    """Releasing the hold (released_at set) makes the held rows due again."""
    build(engine, settings, 40, batch_size=4)
    with engine.begin() as conn:
        conn.execute(insert(HOLDS).values(id=1, subject_id=9, released_at=None))
    api.run(settings, rules=[FEEDBACK_RULE])
    assert {25, 26, 27} <= ids_in(engine, FEEDBACK)

    with engine.begin() as conn:
        conn.execute(update(HOLDS).values(released_at=utc_now()))
    [rule] = api.run(settings, rules=[FEEDBACK_RULE]).rules
    assert (rule.status, rule.rows) == ("done", 3)
    survivors = {i for i in range(1, 41) if not is_due(i)}
    assert ids_in(engine, FEEDBACK) == survivors
    assert ids_in(engine, CONTACTS) == survivors


# --- a row lock held by the application -------------------------------------------------

needs_row_locks = pytest.mark.parametrize(
    "db_url", ["postgresql", "mysql"], indirect=True
)  # SQLite has no row locks: a writer waits for the whole database instead.

ERROR_CLASS_AND_CODE = re.compile(r"^[A-Za-z_.]+ \((55P03|1205)\)$")


@contextmanager
def row_locked(engine: Engine, table: Table, row_id: int) -> Iterator[None]:
    """Another transaction holds a row lock on one row until the block ends."""
    with engine.connect() as conn, conn.begin():
        conn.execute(select(table.c.id).where(table.c.id == row_id).with_for_update())
        yield


@needs_row_locks
def test_a_row_lock_held_elsewhere_fails_the_rule_without_a_half_batch(
    settings: Settings, engine: Engine
) -> None:
    """The batch gives up after the lock timeout and rolls back whole; other rules run."""
    build(engine, settings, 24, batch_size=5)
    quick = with_changes(settings, lock_timeout_ms=500, max_retries=1)
    # Due rows are 1 2 3 5 6 | 7 9 10 11 13 | ...: feedback 7 is in the second batch.
    with row_locked(engine, FEEDBACK, 7):
        started = datetime.now(UTC)
        result = api.run(quick, rules=[FEEDBACK_RULE, SESSIONS_RULE])
        waited = datetime.now(UTC) - started
    assert waited < timedelta(seconds=10)
    status = {r.rule: (r.status, r.rows) for r in result.rules}
    assert status == {FEEDBACK_RULE: ("failed", 5), SESSIONS_RULE: ("done", 18)}
    left = ids_in(engine, FEEDBACK)
    assert {1, 2, 3, 5, 6} & left == set()
    assert {7, 9, 10, 11} <= left
    assert ids_in(engine, CONTACTS) == left


@needs_row_locks
def test_a_locked_dependent_row_rolls_back_the_whole_batch(
    settings: Settings, engine: Engine
) -> None:
    """A cascade that times out leaves the batch's rows and other dependents in place."""
    build(engine, settings, 24, batch_size=5)
    quick = with_changes(settings, lock_timeout_ms=500, max_retries=1)
    with row_locked(engine, CONTACTS, 9):
        [rule] = api.run(quick, rules=[FEEDBACK_RULE]).rules
    assert (rule.status, rule.rows) == ("failed", 5)
    second_batch = {7, 9, 10, 11, 13}  # the first was 1 2 3 5 6
    assert second_batch <= ids_in(engine, FEEDBACK)
    assert second_batch <= ids_in(engine, CONTACTS)
    assert [r["row_count"] for r in records(engine) if r["event"] == "batch"] == [5]


@pytest.mark.parametrize("db_url", ["postgresql", "mysql"], indirect=True)
def test_a_rule_failed_record_names_the_error_class_and_code_but_no_row_value(
    settings: Settings, engine: Engine
) -> None:
    """The failure's record carries what an operator needs, and nothing from the rows."""
    build(engine, settings, 24, batch_size=5)
    quick = with_changes(settings, lock_timeout_ms=500, max_retries=1)
    with row_locked(engine, FEEDBACK, 7):
        result = api.run(quick, rules=[FEEDBACK_RULE])
    [failed] = [r for r in records(engine) if r["event"] == "rule_failed"]
    assert (failed["rule"], failed["run_id"], failed["row_count"]) == (
        FEEDBACK_RULE,
        result.run_id,
        5,
    )
    details = json.loads(failed["details"])
    assert set(details) == {"error", "batches"}
    assert ERROR_CLASS_AND_CODE.match(details["error"]), details
    assert details["error"] == result.rules[0].error
    text = json.dumps(failed, default=str)
    for i in range(1, 25):
        assert body_of(i) not in text and email_of(i) not in text
    api.verify(settings)


@needs_row_locks
def test_a_rule_failed_on_a_row_lock_makes_the_cli_exit_1(
    settings: Settings, engine: Engine, invoke: Callable[..., Any]
) -> None:
    """Exit 1: a rule failed at run time; the other rule still ran."""
    build(engine, settings, 24, batch_size=5)
    env = {"RETENTION_LOCK_TIMEOUT_MS": "500", "RETENTION_MAX_RETRIES": "1"}
    with row_locked(engine, FEEDBACK, 7):
        outcome = invoke(
            settings,
            "run",
            "--rule",
            FEEDBACK_RULE,
            "--rule",
            ACCESS_RULE,
            "--output",
            "json",
            env=env,
        )
    assert outcome.exit_code == 1, outcome.output
    report = json.loads(outcome.stdout)
    assert {r["rule"]: r["status"] for r in report["rules"]} == {
        FEEDBACK_RULE: "failed",
        ACCESS_RULE: "done",
    }
    assert ids_in(engine, ACCESS_LOG) == {i for i in range(1, 25) if not is_due(i)}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_table_lock_held_while_the_rule_counts_fails_that_rule_only(
    settings: Settings, engine: Engine
) -> None:
    """A migration's table lock: counting gives up, the rule fails, the run goes on."""
    build(engine, settings, 24, batch_size=5)
    quick = with_changes(settings, lock_timeout_ms=500, max_retries=1)
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE")
        result = api.run(quick, rules=[FEEDBACK_RULE, SESSIONS_RULE])
    status = {r.rule: (r.status, r.rows) for r in result.rules}
    assert status == {FEEDBACK_RULE: ("failed", 0), SESSIONS_RULE: ("done", 18)}
    assert ids_in(engine, FEEDBACK) == set(range(1, 25))
    log = records(engine)
    [failed] = [r for r in log if r["event"] == "rule_failed"]
    assert failed["rule"] == FEEDBACK_RULE
    assert ERROR_CLASS_AND_CODE.match(json.loads(failed["details"])["error"])
    assert log[-1]["event"] == "run_finished"
    api.verify(settings)
