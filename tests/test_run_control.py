"""Stopping a run early and resuming it (SPEC sections 4, 5, 6).

``--max-batches`` and ``--max-runtime`` end a run with work left (exit 0, status
'partial'); SIGTERM finishes the current batch, records ``run_interrupted`` and exits 75;
``run_started`` is committed before any batch. A later run always finishes the rest.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import builders
import pytest
from builders import Invocation, child_env, command, started, write_policy
from conftest import HASH_KEY
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import DBAPIError

from retention import api
from retention.audit.records import audit_tables
from retention.audit.writer import ensure_audit_tables
from retention.settings import Settings

META = MetaData()
TICKETS = Table(
    "tickets",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("closed_at", DateTime, nullable=False),
    Column("note", String(100)),
)
VISITS = Table(
    "visits",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seen_at", DateTime, nullable=False),
)
RECORDS = audit_tables("retention_audit")[1]

TICKETS_RULE = "tickets-after-1-year"
VISITS_RULE = "visits-after-30-days"

POLICY = """\
version: 1
defaults:
  batch_size: {batch_size}
  guard: {{max_rows: 1000000, max_fraction: 1.0}}
rules:
  - name: tickets-after-1-year
    table: tickets
    clock: closed_at
    after: P1Y
    action: delete
    sleep: {sleep}
  - name: visits-after-30-days
    table: visits
    clock: seen_at
    after: 30 days
    action: delete
"""


def is_due(row_id: int) -> bool:
    """Every fifth row is recent; the rest are long expired."""
    return row_id % 5 != 0


def build(
    engine: Engine, settings: Settings, rows: int, *, batch_size: int, sleep: float = 0
) -> set[int]:
    """``rows`` rows in each table and the policy file; returns the ids that are not due."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    old, new = now - timedelta(days=800), now - timedelta(hours=1)
    ids = range(1, rows + 1)
    META.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(TICKETS),
            [{"id": i, "closed_at": old if is_due(i) else new, "note": f"note-{i}"} for i in ids],
        )
        conn.execute(insert(VISITS), [{"id": i, "seen_at": old if is_due(i) else new} for i in ids])
    policy = POLICY.format(batch_size=batch_size, sleep=sleep)
    write_policy(settings.policy_file, policy)
    return {i for i in ids if not is_due(i)}


def ids_in(engine: Engine, table: Table) -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(select(table.c.id)))


def records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(RECORDS).order_by(RECORDS.c.seq))
        return [dict(row._mapping) for row in rows]


def batch_records(engine: Engine) -> list[dict[str, Any]]:
    """The batch records written so far; none while the audit table does not exist."""
    try:
        return [r for r in records(engine) if r["event"] == "batch"]
    except DBAPIError:
        return []


@pytest.fixture
def invoke() -> Callable[..., Invocation]:
    """Run the CLI in-process against the test database and policy."""

    def call(settings: Settings, *args: str) -> Invocation:
        env = {
            "RETENTION_HASH_KEY": HASH_KEY,
            "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
            "RETENTION_POLICY_FILE": str(settings.policy_file),
            "RETENTION_LOG_FORMAT": "json",
        }
        return builders.invoke(args, env, catch_exceptions=True)

    return call


# --- --max-batches and --max-runtime ----------------------------------------------------


def test_max_batches_stops_every_rule_partial_and_a_later_run_converges(
    settings: Settings, engine: Engine
) -> None:
    """Each rule stops after N batches with status 'partial'; the next run finishes."""
    keep = build(engine, settings, 50, batch_size=4)
    first = api.run(settings, max_batches=2)
    assert [(r.rule, r.status, r.batches, r.rows, r.stopped_by) for r in first.rules] == [
        (TICKETS_RULE, "partial", 2, 8, "max_batches"),
        (VISITS_RULE, "partial", 2, 8, "max_batches"),
    ]
    assert first.exit_code == 0
    assert len(ids_in(engine, TICKETS)) == len(ids_in(engine, VISITS)) == 50 - 8
    finished = [r for r in records(engine) if r["event"] == "rule_finished"]
    assert [json.loads(r["details"])["complete"] for r in finished] == [False, False]

    second = api.run(settings)
    assert [(r.status, r.rows) for r in second.rules] == [("done", 32), ("done", 32)]
    assert ids_in(engine, TICKETS) == ids_in(engine, VISITS) == keep
    api.verify(settings)


def test_max_runtime_stops_starting_batches_and_a_later_run_converges(
    settings: Settings, engine: Engine
) -> None:
    """Past the deadline no batch starts: 'partial', rows of whole batches, then resumed."""
    # Ten batches, 0.25 s apart, cannot all fit in 1.5 s. The audit tables exist already,
    # so that creating them (slow DDL on MariaDB) does not use up the budget.
    keep = build(engine, settings, 50, batch_size=4, sleep=0.25)
    ensure_audit_tables(engine, "retention_audit")
    first = api.run(settings, max_runtime=1.5)
    tickets, visits = first.rules
    assert (tickets.status, tickets.stopped_by) == ("partial", "max_runtime")
    assert 1 <= tickets.batches < 10 and tickets.rows == 4 * tickets.batches
    assert (visits.status, visits.stopped_by, visits.rows) == ("partial", "max_runtime", 0)
    assert first.exit_code == 0
    assert len(ids_in(engine, TICKETS)) == 50 - tickets.rows

    fast = settings.policy_file.read_text().replace("sleep: 0.25", "sleep: 0")
    write_policy(settings.policy_file, fast)
    second = api.run(settings)
    assert [r.status for r in second.rules] == ["done", "done"]
    assert second.rules[0].rows == 40 - tickets.rows
    assert ids_in(engine, TICKETS) == ids_in(engine, VISITS) == keep
    api.verify(settings)


def test_a_run_stopped_by_max_batches_exits_0_and_says_so(
    settings: Settings, engine: Engine, invoke: Callable[..., Any]
) -> None:
    """Work left by --max-batches is success (exit 0); the summary names the stop."""
    build(engine, settings, 50, batch_size=4)
    outcome = invoke(settings, "run", "--max-batches", "1", "--output", "json")
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.stdout)
    assert [(r["status"], r["deleted"], r["stopped_by"]) for r in report["rules"]] == [
        ("partial", 4, "max_batches"),
        ("partial", 4, "max_batches"),
    ]


def test_a_rule_whose_last_allowed_batch_finishes_it_is_done(
    settings: Settings, engine: Engine
) -> None:
    """40 due rows in batches of 16: the third and last batch is short, so the rule is done."""
    build(engine, settings, 50, batch_size=16)
    result = api.run(settings, rules=[VISITS_RULE], max_batches=3)
    assert [(r.status, r.rows, r.stopped_by) for r in result.rules] == [("done", 40, None)]


# --- SIGTERM ----------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def test_sigterm_finishes_the_batch_records_the_interruption_and_exits_75(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """SIGTERM mid-run: exit 75, run_interrupted last, no half batch; a later run finishes."""
    keep = build(engine, settings, 100, batch_size=5, sleep=0.2)
    run = command(settings, "run", "--output", "json")
    with started(run, child_env(RETENTION_LOG_FORMAT="json"), tmp_path) as proc:
        wait_for(lambda: batch_records(engine), seconds=30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 75, err
    report = json.loads(out)
    assert report["interrupted"] is True, out
    assert [r["status"] for r in report["rules"]] == ["interrupted"], out

    log = records(engine)
    assert log[-1]["event"] == "run_interrupted"
    assert api.verify(settings).head == report["audit_head"] == log[-1]["hash"]
    batches = [r for r in log if r["event"] == "batch"]
    removed = 100 - len(ids_in(engine, TICKETS))
    assert 0 < removed == sum(r["row_count"] for r in batches) == report["rules"][0]["deleted"]
    assert removed < 80  # the run really stopped early
    assert ids_in(engine, VISITS) == set(range(1, 101))  # the next rule never started

    write_policy(
        settings.policy_file, settings.policy_file.read_text().replace("sleep: 0.2", "sleep: 0")
    )
    later = api.run(settings)
    assert [r.status for r in later.rules] == ["done", "done"]
    assert later.rules[0].rows == 80 - removed
    assert ids_in(engine, TICKETS) == ids_in(engine, VISITS) == keep
    api.verify(settings)


# --- run_started ------------------------------------------------------------------------


def test_run_started_is_committed_before_the_first_batch(
    settings: Settings, engine: Engine
) -> None:
    """Another connection sees run_started, and every row still there, before any batch."""
    build(engine, settings, 20, batch_size=5)
    seen: list[tuple[list[str], int]] = []

    def look_from_another_connection() -> bool:
        # The run asks whether to stop before each rule and each batch: the first time,
        # nothing can have been removed yet.
        if not seen:
            events = [r["event"] for r in records(engine)]
            seen.append((events, len(ids_in(engine, TICKETS))))
        return False

    result = api.run(settings, stop_requested=look_from_another_connection)
    assert seen == [(["run_started"], 20)]
    [started] = [r for r in records(engine) if r["event"] == "run_started"]
    assert started["run_id"] == result.run_id
    assert [r.status for r in result.rules] == ["done", "done"]
