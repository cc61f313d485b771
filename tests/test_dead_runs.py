"""Runs that died without recording their end (SPEC section 6, ``run_interrupted``).

A live run holds a lease named by its run id (``run:<run id>``) and renews it for as long
as it runs. At its start, a run looks for runs that have ``run_started`` but no end
record: one whose lease expired (or never existed) died (SIGKILL, a crash, a lost
machine) and is recorded once as ``run_interrupted``; one whose lease is live is still
running and is left alone.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

from builders import lease_held, write_policy
from sqlalchemy import Column, DateTime, Engine, Integer, MetaData, Table, text

from retention import api
from retention.audit.writer import AuditWriter
from retention.runner import RunResult
from retention.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2025, 1, 10, 8, 0)
POLICY = """\
version: 1
rules:
  - name: sessions-after-30-days
    table: sessions
    clock: created_at
    after: 30 days
    action: delete
    guard: {max_fraction: 1}
"""


def make_sessions(settings: Settings, engine: Engine) -> None:
    """One table with two due rows, the policy beside it, and the audit tables."""
    meta = MetaData()
    sessions = Table(
        "sessions",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", DateTime, nullable=False),
    )
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(
            sessions.insert(), [{"id": 1, "created_at": OLD}, {"id": 2, "created_at": OLD}]
        )
    write_policy(settings.policy_file, POLICY)
    api.audit_init(settings)


def start_a_run_that_dies(engine: Engine) -> str:
    """A ``run_started`` record, as a run writes it before it is killed; returns its run id."""
    writer = AuditWriter("retention_audit", "0" * 64)
    with engine.begin() as conn:
        writer.append(conn, "run_started", details={"rules": ["sessions-after-30-days"]})
    return writer.run_id


def records(engine: Engine, run_id: str, event: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM retention_audit WHERE run_id = :r AND event = :e ORDER BY seq"),
            {"r": run_id, "e": event},
        ).mappings()
        return [dict(row) for row in rows]


def test_a_run_that_died_is_recorded_once_as_interrupted(
    settings: Settings, engine: Engine
) -> None:
    """The next run records it, with who found it; the run after that does not repeat it."""
    make_sessions(settings, engine)
    dead = start_a_run_that_dies(engine)

    first = api.run(settings, now=NOW)

    assert first.exit_code == 0
    (found,) = records(engine, dead, "run_interrupted")
    details = json.loads(found["details"])
    assert "killed" in details["reason"] or "crashed" in details["reason"]
    assert details["found_by"] == first.run_id
    assert api.verify(settings).head == first.head

    second = api.run(settings, now=NOW)

    assert second.exit_code == 0
    assert len(records(engine, dead, "run_interrupted")) == 1
    assert records(engine, first.run_id, "run_finished") != []
    assert records(engine, first.run_id, "run_interrupted") == []
    assert api.verify(settings).head == second.head


def test_a_run_whose_lease_is_live_is_not_recorded_as_dead(
    settings: Settings, engine: Engine
) -> None:
    """While its lease is live it is alive; once the lease is given up, the next run
    records it."""
    make_sessions(settings, engine)
    alive = start_a_run_that_dies(engine)

    with lease_held(engine, run=alive, owner=alive):
        during = api.run(settings, now=NOW)

    assert during.exit_code == 0
    assert records(engine, alive, "run_interrupted") == []
    api.verify(settings)

    after = api.run(settings, now=NOW)

    (found,) = records(engine, alive, "run_interrupted")
    assert json.loads(found["details"])["found_by"] == after.run_id
    assert api.verify(settings).head == after.head


def test_a_finished_run_is_never_recorded_as_dead(settings: Settings, engine: Engine) -> None:
    """A run with its ``run_finished`` record, and the run that is running now, are left alone."""
    make_sessions(settings, engine)
    finished = api.run(settings, now=NOW)

    later = api.run(settings, now=NOW)

    with engine.connect() as conn:
        interrupted = conn.execute(
            text("SELECT count(*) FROM retention_audit WHERE event = 'run_interrupted'")
        ).scalar_one()
    assert interrupted == 0
    assert records(engine, finished.run_id, "run_finished") != []
    assert records(engine, later.run_id, "run_finished") != []


def test_runs_starting_together_record_a_dead_run_once(settings: Settings, engine: Engine) -> None:
    """Each finder re-checks under the dead run's lock, so racing finders write one record."""
    make_sessions(settings, engine)
    dead = start_a_run_that_dies(engine)
    barrier = threading.Barrier(4)
    results: list[RunResult] = []
    errors: list[BaseException] = []

    def one_run() -> None:
        barrier.wait()
        try:
            results.append(api.run(settings, now=NOW))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(results) == 4
    (found,) = records(engine, dead, "run_interrupted")
    assert json.loads(found["details"])["found_by"] in {r.run_id for r in results}
    api.verify(settings)
