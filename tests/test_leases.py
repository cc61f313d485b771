"""Rule leases with fencing tokens (SPEC section 5; issue 12, items 1 and 2).

A lease is a row of ``retention_audit_leases``: taken in a committed transaction, renewed
by a heartbeat, checked and extended inside every batch's transaction. Every test runs on
SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import builders
import pytest
from builders import lease_held, write_policy
from conftest import HASH_KEY
from sqlalchemy import Column, Connection, DateTime, Engine, Integer, MetaData, Table, select
from sqlalchemy import insert as sql_insert
from sqlalchemy import update as sql_update
from sqlalchemy.exc import OperationalError

from retention import api
from retention.audit import writer as audit_writer
from retention.audit.records import audit_tables
from retention.audit.writer import ensure_audit_tables
from retention.errors import LeaseLost, LockNotAcquired
from retention.leases import Leases, LeaseTerms, lease_table, rule_lease, run_lease
from retention.settings import Settings

RULE = "sessions-after-30-days"
OTHER = "11111111-1111-4111-8111-111111111111"
OLD = datetime(2025, 1, 10, 8, 0)
META = MetaData()
SESSIONS = Table(
    "sessions",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime, nullable=False),
)
RECORDS = audit_tables("retention_audit")[1]
LEASES = lease_table(MetaData(), "retention_audit")
POLICY = f"""\
version: 1
rules:
  - name: {RULE}
    table: sessions
    clock: created_at
    after: 30 days
    action: delete
    batch_size: 5
    guard: {{max_fraction: 1}}
"""


def build(settings: Settings, engine: Engine, rows: int = 20) -> None:
    with engine.begin() as conn:
        META.create_all(conn)
        conn.execute(sql_insert(SESSIONS), [{"id": i, "created_at": OLD} for i in range(rows)])
    write_policy(settings.policy_file, POLICY)
    ensure_audit_tables(engine, "retention_audit")


def remaining(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(SESSIONS.c.id)).all())


def log(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(RECORDS).order_by(RECORDS.c.seq)).mappings()
        return [dict(row) for row in rows]


def lease_row(engine: Engine, name: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(LEASES).where(LEASES.c.name == name)).one()


def expire(engine: Engine, name: str) -> None:
    """As if its holder had paused for longer than the lease."""
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    with engine.begin() as conn:
        conn.execute(sql_update(LEASES).where(LEASES.c.name == name).values(expires_at=past))


# --- taking, renewing, expiring ----------------------------------------------------------


def test_each_acquisition_of_a_lease_bumps_its_fencing_token(engine: Engine) -> None:
    ensure_audit_tables(engine, "retention_audit")
    leases = Leases(engine, "retention_audit", OTHER)
    with leases.holding(rule_lease(RULE)) as first:
        assert lease_row(engine, rule_lease(RULE)).owner == OTHER
    with leases.holding(rule_lease(RULE)) as second:
        pass
    assert (first.token, second.token) == (1, 2)
    assert lease_row(engine, rule_lease(RULE)).token == 2


def test_a_live_lease_is_not_taken_and_the_refusal_names_its_holder(engine: Engine) -> None:
    with lease_held(engine, rule=RULE, owner=OTHER):
        mine = Leases(engine, "retention_audit", "22222222-2222-4222-8222-222222222222")
        with pytest.raises(LockNotAcquired) as refused:
            mine.take(rule_lease(RULE))
    assert refused.value.holder == OTHER
    assert refused.value.expires_at is not None
    assert refused.value.expires_at > datetime.now(UTC)
    assert OTHER in refused.value.reason


def test_an_expired_lease_is_taken_over_and_the_old_holder_fails_its_check(
    engine: Engine,
) -> None:
    ensure_audit_tables(engine, "retention_audit")
    old = Leases(engine, "retention_audit", OTHER)
    new = Leases(engine, "retention_audit", "22222222-2222-4222-8222-222222222222")
    stale = old.take(rule_lease(RULE))
    expire(engine, rule_lease(RULE))
    fresh = new.take(rule_lease(RULE))
    assert fresh.token == stale.token + 1
    with engine.begin() as conn, pytest.raises(LeaseLost, match="taken over by run 2222"):
        old.check(conn, stale)
    with engine.begin() as conn:
        new.check(conn, fresh)  # the new holder's batches go on


def test_an_expired_lease_that_nobody_took_fails_its_holders_check(engine: Engine) -> None:
    ensure_audit_tables(engine, "retention_audit")
    leases = Leases(engine, "retention_audit", OTHER)
    lease = leases.take(rule_lease(RULE))
    expire(engine, rule_lease(RULE))
    with engine.begin() as conn, pytest.raises(LeaseLost, match="expired at"):
        leases.check(conn, lease)


def test_the_heartbeat_renews_a_held_lease_past_its_length(engine: Engine) -> None:
    """A rule that pauses (sleep, lag waits) for longer than the lease keeps it."""
    ensure_audit_tables(engine, "retention_audit")
    # 3 s of lease renewed every 0.3 s, held for 4.5 s: a renewal may come 2.7 s late (a
    # loaded machine) and the lease still holds; without the heartbeat it would expire.
    leases = Leases(engine, "retention_audit", OTHER, LeaseTerms(seconds=3, renew_seconds=0.3))
    with leases.heartbeat(), leases.holding(rule_lease(RULE)) as lease:
        time.sleep(4.5)
        with engine.begin() as conn:
            leases.check(conn, lease)  # still ours, still live
    assert not lease.lost


# --- runs under leases ------------------------------------------------------------------


def on_first_batch(action: Callable[[], None]) -> Callable[[str, int, int], None]:
    def hook(rule: str, done: int, due: int) -> None:
        if done == 5:
            action()

    return hook


def test_a_run_whose_lease_was_taken_over_commits_no_further_batch(
    settings: Settings, engine: Engine
) -> None:
    """After its first batch the lease expires and another run takes the rule: the next
    batch rolls back, the rule fails naming the new holder, its rows stay for that run."""
    build(settings, engine)
    thief = Leases(engine, "retention_audit", OTHER)

    def take_over() -> None:
        expire(engine, rule_lease(RULE))
        thief.take(rule_lease(RULE))

    result = api.run(settings, on_batch=on_first_batch(take_over))

    assert [(r.rule, r.status, r.rows) for r in result.rules] == [(RULE, "failed", 5)]
    assert result.exit_code == 1
    assert remaining(engine) == 15
    records = log(engine)
    assert sum(r["event"] == "batch" for r in records) == 1
    (failed,) = [r for r in records if r["event"] == "rule_failed"]
    details = json.loads(failed["details"])
    assert details["error"] == "LeaseLost"
    assert f"taken over by run {OTHER}" in details["reason"]
    assert lease_row(engine, rule_lease(RULE)).owner == OTHER
    api.verify(settings)


def test_a_run_whose_lease_expired_commits_no_further_batch(
    settings: Settings, engine: Engine
) -> None:
    """A pause longer than the lease (the heartbeat did not run either) ends the rule."""
    build(settings, engine)
    result = api.run(settings, on_batch=on_first_batch(lambda: expire(engine, rule_lease(RULE))))
    assert [(r.status, r.rows) for r in result.rules] == [("failed", 5)]
    (failed,) = [r for r in log(engine) if r["event"] == "rule_failed"]
    assert "expired at" in json.loads(failed["details"])["reason"]
    assert remaining(engine) == 15


def test_a_rule_leased_by_another_run_is_skipped_naming_that_run(
    settings: Settings, engine: Engine
) -> None:
    build(settings, engine)
    with lease_held(engine, rule=RULE, owner=OTHER):
        result = api.run(settings)
    assert result.exit_code == 75  # every due rule is held elsewhere
    (skipped,) = [r for r in log(engine) if r["event"] == "rule_skipped"]
    details = json.loads(skipped["details"])
    assert details["held_by"] == OTHER
    assert datetime.fromisoformat(details["lease_expires_at"]) > datetime.now(UTC)
    assert remaining(engine) == 20


def test_a_live_run_is_never_recorded_as_interrupted_by_a_run_that_starts_meanwhile(
    settings: Settings, engine: Engine
) -> None:
    """A run paused between batches for longer than its lease, renewing it, is alive:
    a second run that starts then skips its rule and records no run_interrupted."""
    build(settings, engine)
    short = settings.model_copy(update={"lease_seconds": 1.0, "lease_renew_seconds": 0.2})
    paused, resume = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def pause_once() -> None:
        paused.set()
        resume.wait(30)

    first = threading.Thread(
        target=lambda: outcome.append(api.run(short, on_batch=on_first_batch(pause_once)))
    )
    first.start()
    try:
        assert paused.wait(30)
        time.sleep(2.0)  # twice the lease: only the heartbeat keeps it
        second = api.run(short)
    finally:
        resume.set()
        first.join(60)
    assert [r.status for r in second.rules] == ["skipped"]
    assert [r.status for r in outcome[0].rules] == ["done"]
    events = Counter(r["event"] for r in log(engine))
    assert events["run_interrupted"] == 0
    assert events["run_finished"] == 2
    assert remaining(engine) == 0


def test_a_run_whose_liveness_lease_expired_is_recorded_dead_once(
    settings: Settings, engine: Engine
) -> None:
    build(settings, engine)
    ghost = audit_writer.AuditWriter("retention_audit", "0" * 64)
    leases = Leases(engine, "retention_audit", ghost.run_id)
    leases.take(run_lease(ghost.run_id))
    with engine.begin() as conn:
        ghost.append(conn, "run_started", details={"rules": [RULE]})
    expire(engine, run_lease(ghost.run_id))

    api.run(settings)
    api.run(settings)

    found = [r for r in log(engine) if r["event"] == "run_interrupted"]
    assert [r["run_id"] for r in found] == [ghost.run_id]


# --- a scheduled run happens once across `serve` replicas ----------------------------------


def test_a_scheduled_run_of_a_rule_runs_once_across_replicas(
    settings: Settings, engine: Engine
) -> None:
    """Two replicas fire the same slot at once, a third a moment later: one runs it."""
    build(settings, engine)
    slot = "2026-06-01T03:00Z"
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def replica() -> None:
        barrier.wait()
        results.append(api.run(settings, slot=slot))

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    late = api.run(settings, slot=slot)
    statuses = sorted(r.rules[0].status for r in [*results, late])
    assert statuses == ["done", "skipped", "skipped"]
    assert [r.status for r in late.rules] == ["skipped"]
    records = log(engine)
    (late_skip,) = [
        r for r in records if r["run_id"] == late.run_id and r["event"] == "rule_skipped"
    ]
    assert (
        f"the scheduled run of {slot} was already done"
        in json.loads(late_skip["details"])["reason"]
    )
    assert sum(r["event"] == "rule_finished" for r in records) == 1
    next_slot = api.run(settings, slot="2026-06-02T03:00Z")
    assert [r.status for r in next_slot.rules] == ["done"]


# --- audit records outside batches are written once -------------------------------------


class _Deadlock(Exception):
    """What each backend's classifier reads as a deadlock / serialisation failure."""

    sqlstate = "40P01"


@contextmanager
def commits_then_fails(events: set[str]) -> Iterator[None]:
    """The first transaction that appends each of ``events`` commits, then reports a
    deadlock: the client cannot tell whether it committed (an ambiguous commit)."""
    real = audit_writer._transaction
    real_append = audit_writer.AuditWriter.append
    appended: list[str] = []
    failed: set[str] = set()

    @contextmanager
    def flaky(target: Engine | Connection) -> Iterator[Connection]:
        before = len(appended)
        with real(target) as conn:
            yield conn
        for event in appended[before:]:
            if event in events and event not in failed:
                failed.add(event)
                orig = _Deadlock(1213, "database is locked: deadlock (injected)")
                raise OperationalError("COMMIT", {}, orig)

    def append(self: Any, conn: Connection, event: str, **kwargs: Any) -> str:
        appended.append(event)
        return real_append(self, conn, event, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audit_writer, "_transaction", flaky)
        patch.setattr(audit_writer.AuditWriter, "append", append)
        yield
    assert failed == events, f"not injected: {events - failed}"


def test_a_run_level_record_whose_commit_looked_failed_is_written_once(
    settings: Settings, engine: Engine
) -> None:
    build(settings, engine)
    once = {"run_started", "rule_finished", "run_finished"}
    with commits_then_fails(once):
        result = api.run(settings)
    assert result.exit_code == 0
    counts = Counter(r["event"] for r in log(engine) if r["run_id"] == result.run_id)
    assert {event: counts[event] for event in once} == dict.fromkeys(once, 1)
    assert api.verify(settings).head == result.head


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETENTION_LEASE_SECONDS", "0"),
        ("RETENTION_LEASE_SECONDS", "ten"),
        ("RETENTION_LEASE_SECONDS", "inf"),
        ("RETENTION_LEASE_RENEW_SECONDS", "200"),
    ],
)
def test_a_nonsensical_lease_setting_is_78_naming_it(
    settings: Settings, variable: str, value: str
) -> None:
    write_policy(settings.policy_file, POLICY)
    env = {
        "RETENTION_HASH_KEY": HASH_KEY,
        "RETENTION_POLICY_FILE": str(settings.policy_file),
        "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
        variable: value,
    }
    outcome = builders.invoke(["run"], env, catch_exceptions=True)
    assert outcome.exit_code == 78, outcome.output
    assert variable in outcome.stderr
    assert "Traceback" not in outcome.output
