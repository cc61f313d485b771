"""A batch that keeps failing on conflicts is retried smaller, and the rule still removes
exactly the due rows (SPEC section 5; throttle.py), on every database.

The conflict is injected where a cluster raises it: at the end of the batch's
transaction, after its deletes ran (Galera certifies at commit), as the error the
database's driver raises (a serialisation failure, a deadlock, a locked database). It
strikes every batch larger than ``FITS`` rows, as a write-set limit or a hot row would.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg.errors
import pymysql.err
import pytest
from builders import feedback_schema, write_policy
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import DBAPIError

from retention import api
from retention.audit.records import audit_tables
from retention.audit.writer import AuditWriter
from retention.outcomes import Event, Status
from retention.render import run_text
from retention.settings import Settings
from retention.throttle import floor_for

BATCH_SIZE = 100
FITS = 25  # batches of more rows than this fail
ROWS = 300

POLICY = f"""\
version: 1
defaults:
  batch_size: {BATCH_SIZE}
  guard: {{max_rows: 1000000, max_fraction: 1.0}}
rules:
  - name: feedback-after-30-days
    table: feedback
    clock: submitted_at
    after: 30 days
    action: delete
    cascade:
      - table: feedback_contacts
        on: {{feedback_id: id}}
"""

# What each database's driver raises for a conflict that a retry can get past.
CONFLICTS: dict[str, Any] = {
    "sqlite": lambda: sqlite3.OperationalError("database is locked"),
    "postgresql": psycopg.errors.SerializationFailure,
    "mysql": lambda: pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
}


def is_due(i: int) -> bool:
    return i % 5 != 0


def build(engine: Engine, settings: Settings) -> set[int]:
    meta = feedback_schema()
    meta.create_all(engine)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    ids = range(1, ROWS + 1)
    with engine.begin() as conn:
        conn.execute(
            insert(meta.tables["feedback"]),
            [{"id": i, "submitted_at": now - timedelta(days=90 if is_due(i) else 1)} for i in ids],
        )
        conn.execute(
            insert(meta.tables["feedback_contacts"]), [{"id": i, "feedback_id": i} for i in ids]
        )
    write_policy(settings.policy_file, POLICY)
    return {i for i in ids if not is_due(i)}


@pytest.fixture
def conflicts_over_fits(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Batches over FITS rows fail at the end of their transaction; returns the sizes of
    the batches that failed so."""
    real = AuditWriter.append
    make_error = CONFLICTS[engine.dialect.name]
    failed: list[int] = []

    def append(self: AuditWriter, conn: Any, event: str, **fields: Any) -> Any:
        if event == Event.BATCH:
            size = (fields.get("details") or {}).get("batch_size", BATCH_SIZE)
            if size > FITS:
                failed.append(size)
                raise DBAPIError("COMMIT", {}, make_error())
        return real(self, conn, event, **fields)

    monkeypatch.setattr(AuditWriter, "append", append)
    return failed


def test_repeated_conflicts_shrink_the_batch_and_exactly_the_due_rows_go(
    engine: Engine, settings: Settings, conflicts_over_fits: list[int]
) -> None:
    kept = build(engine, settings)
    result = api.run(settings)
    (rule,) = result.rules
    assert rule.status == Status.DONE, rule.error
    assert rule.rows == ROWS - len(kept)
    assert rule.dependents == {"feedback_contacts": ROWS - len(kept)}
    meta = feedback_schema()
    with engine.connect() as conn:
        assert set(conn.scalars(select(meta.tables["feedback"].c.id))) == kept
        contacts = meta.tables["feedback_contacts"]
        assert set(conn.scalars(select(contacts.c.feedback_id))) == kept
    # Two conflicts in a row halve the batch: 100, 100, 50, 50, then 25 commits.
    assert conflicts_over_fits[:4] == [100, 100, 50, 50]
    assert rule.batch_sizes is not None
    assert (rule.batch_sizes["min"], rule.batch_sizes["max"]) == (FITS, FITS)
    assert rule.batch_sizes["changes"][:2] == [
        {"from_batch": 1, "size": 50, "reason": "contention"},
        {"from_batch": 1, "size": 25, "reason": "contention"},
    ]
    assert "batches of 25-25 rows (resized on conflicts)" in run_text(result)


def test_the_audit_log_says_which_sizes_the_batches_were_taken_at(
    engine: Engine, settings: Settings, conflicts_over_fits: list[int]
) -> None:
    build(engine, settings)
    api.run(settings)
    records = audit_tables("retention_audit")[1]
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(records).order_by(records.c.seq))]
    for row in rows:
        row["details"] = json.loads(row["details"]) if row["details"] else None
    batches = [r for r in rows if r["event"] == "batch"]
    assert batches and all(b["details"] == {"batch_size": FITS} for b in batches)
    assert all(b["row_count"] <= FITS for b in batches)
    (finished,) = [r for r in rows if r["event"] == "rule_finished"]
    sizes = finished["details"]["batch_sizes"]
    assert (sizes["min"], sizes["max"]) == (FITS, FITS)
    assert finished["details"]["complete"] is True


def test_a_run_without_conflicts_takes_whole_batches_and_records_no_size_per_batch(
    engine: Engine, settings: Settings
) -> None:
    build(engine, settings)
    (rule,) = api.run(settings).rules
    assert rule.batch_sizes == {
        "min": BATCH_SIZE,
        "max": BATCH_SIZE,
        "resized": 0,
        "changes": [],
    }
    records = audit_tables("retention_audit")[1]
    with engine.connect() as conn:
        details = conn.scalars(select(records.c.details).where(records.c.event == "batch"))
        assert all(d is None for d in details)


def test_conflicts_that_persist_at_the_floor_fail_the_rule_with_nothing_half_done(
    engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch conflicts: the batch shrinks to the floor, gives up after max_retries,
    and the rule fails with every row still there."""
    kept = build(engine, settings)
    real = AuditWriter.append
    make_error = CONFLICTS[engine.dialect.name]

    def append(self: AuditWriter, conn: Any, event: str, **fields: Any) -> Any:
        if event == Event.BATCH:
            raise DBAPIError("COMMIT", {}, make_error())
        return real(self, conn, event, **fields)

    monkeypatch.setattr(AuditWriter, "append", append)
    fast = settings.model_copy(update={"max_retries": 1})
    (rule,) = api.run(fast).rules
    assert rule.status == Status.FAILED
    assert rule.rows == 0
    with engine.connect() as conn:
        table = feedback_schema().tables["feedback"]
        assert len(set(conn.scalars(select(table.c.id)))) == ROWS
    assert floor_for(BATCH_SIZE) == 10 and kept
