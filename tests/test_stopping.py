"""Stopping on time (SPEC section 5): SIGTERM and ``--max-runtime`` take effect within a
second while a rule sleeps between batches, not after its whole ``sleep`` (a Kubernetes
pod has 30 s of grace by default; ``sleep: 20`` used to delay SIGTERM by 19 s), and while a
batch waits for a lock: a row lock on PostgreSQL and MariaDB (the statement is cancelled),
the file's write lock on SQLite (waited for in ticks that look at the stop flag).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import child_env, command, dated_table, started, write_policy
from sqlalchemy import Engine, MetaData, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from retention import api
from retention.audit.records import audit_tables
from retention.audit.writer import AuditWriter, ensure_audit_tables
from retention.backends import backend_for
from retention.control import Control
from retention.errors import DatabaseBusy
from retention.outcomes import Event
from retention.render import run_data, run_text
from retention.settings import Settings

META = MetaData()
TICKETS = dated_table(META, "tickets", "closed_at")
RECORDS = audit_tables("retention_audit")[1]
POLICY = """\
version: 1
defaults:
  batch_size: 5
  guard: {max_rows: 1000000, max_fraction: 1.0}
rules:
  - name: tickets-after-1-year
    table: tickets
    clock: closed_at
    after: P1Y
    action: delete
    sleep: 20
"""
#: how late a stop may take effect here: a second, plus room for a loaded test machine
LATE = 3.0


def build(engine: Engine, settings: Settings) -> None:
    """Twenty expired tickets: four batches of five, 20 s of sleep between them."""
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=800)
    META.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(TICKETS), [{"id": i, "closed_at": old} for i in range(1, 21)])
    ensure_audit_tables(engine, "retention_audit")  # DDL is slow on MariaDB; not timed
    write_policy(settings.policy_file, POLICY)


def batches(engine: Engine) -> int:
    try:
        with engine.connect() as conn:
            events = conn.scalars(select(RECORDS.c.event))
            return sum(1 for event in events if event == "batch")
    except DBAPIError:
        return 0


def wait_for(condition: Callable[[], Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.05)


# --- the pause itself -------------------------------------------------------------------


def test_a_pause_ends_within_a_tick_of_a_stop_request() -> None:
    stop = threading.Event()
    control = Control(stop_requested=stop.is_set)
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    control.pause(20)
    assert time.monotonic() - started < 0.3 + 5 * Control.TICK


def test_a_pause_ends_at_the_deadline() -> None:
    control = Control(deadline=time.monotonic() + 0.3)
    started = time.monotonic()
    control.pause(20)
    assert time.monotonic() - started < 0.3 + 5 * Control.TICK


def test_a_pause_with_nothing_to_stop_it_lasts_its_time() -> None:
    control = Control()
    started = time.monotonic()
    control.pause(0.35)
    assert 0.35 <= time.monotonic() - started < 0.35 + 5 * Control.TICK


# --- a real run -------------------------------------------------------------------------


def test_max_runtime_ends_a_rule_s_sleep(settings: Settings, engine: Engine) -> None:
    """--max-runtime 1 with sleep: 20: the run ends about a second in, 'partial'."""
    build(engine, settings)
    started = time.monotonic()
    result = api.run(settings, max_runtime=1.0)
    assert time.monotonic() - started < 1.0 + LATE
    [rule] = result.rules
    assert (rule.status, rule.stopped_by, rule.batches) == ("partial", "max_runtime", 1)
    assert result.exit_code == 0


def test_sigterm_during_a_rule_s_sleep_ends_the_run_within_a_second(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """The first batch commits, the rule sleeps 20 s, SIGTERM: exit 75 at once, the
    interruption recorded, the rows of one whole batch removed."""
    build(engine, settings)
    run = command(settings, "run", "--output", "json")
    with started(run, child_env(RETENTION_LOG_FORMAT="json"), tmp_path) as proc:
        wait_for(lambda: batches(engine) >= 1, seconds=30)
        time.sleep(0.3)  # well into the 20 s sleep
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    assert proc.returncode == 75, err
    assert took < LATE, f"SIGTERM took {took:.1f} s"
    report = json.loads(out)
    assert report["interrupted"] is True
    assert [(r["status"], r["deleted"]) for r in report["rules"]] == [("interrupted", 5)]
    with engine.connect() as conn:
        last = conn.execute(select(RECORDS.c.event).order_by(RECORDS.c.seq.desc())).first()
    assert last is not None and last.event == "run_interrupted"


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_max_runtime_never_starts_a_run(
    settings: Settings, engine: Engine, value: str
) -> None:
    build(engine, settings)
    done = subprocess.run(
        command(settings, "run", "--max-runtime", value),
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert batches(engine) == 0


# --- a lock wait ------------------------------------------------------------------------


@contextmanager
def tickets_locked(engine: Engine) -> Iterator[None]:
    """Another transaction holds what a batch on tickets needs: every ticket's row lock,
    or on SQLite, which locks the whole file, the file's write lock (BEGIN IMMEDIATE)."""
    holder = engine.connect()
    holder.begin()
    try:
        if backend_for(engine).locks_rows:
            holder.execute(select(TICKETS.c.id).with_for_update()).all()
        yield
    finally:
        holder.rollback()
        holder.close()


@pytest.fixture
def locked_tickets(settings: Settings, engine: Engine) -> Iterator[Settings]:
    """The tickets locked from before the run starts; lock waits are allowed 30 s."""
    build(engine, settings)
    with tickets_locked(engine):
        yield settings.model_copy(update={"lock_timeout_ms": 30_000})


def test_max_runtime_ends_a_lock_wait(locked_tickets: Settings, engine: Engine) -> None:
    """The batch waiting on a locked row is cancelled at the deadline, rolled back whole."""
    started = time.monotonic()
    result = api.run(locked_tickets, max_runtime=1.0)
    assert time.monotonic() - started < 1.0 + LATE
    [rule] = result.rules
    assert (rule.status, rule.stopped_by, rule.rows) == ("partial", "max_runtime", 0)
    assert batches(engine) == 0


def test_a_stop_request_ends_a_lock_wait(locked_tickets: Settings, engine: Engine) -> None:
    """What SIGTERM sets, set while the batch waits: the run ends interrupted at once."""
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    result = api.run(locked_tickets, stop_requested=stop.is_set)
    assert time.monotonic() - started < 1.0 + LATE
    [rule] = result.rules
    assert (rule.status, rule.stopped_by, rule.rows) == ("interrupted", "signal", 0)
    assert result.interrupted and result.exit_code == 75


def test_a_stop_request_ends_a_lock_wait_that_began_mid_run(
    settings: Settings, engine: Engine
) -> None:
    """After the first batch another transaction locks the rest (on SQLite the file, so
    not even the end of the run can be recorded); the stop asked a second later ends the
    wait at once, with the first batch committed."""
    build(engine, settings)
    write_policy(settings.policy_file, POLICY.replace("sleep: 20", "sleep: 0"))
    stop = threading.Event()
    with ExitStack() as held:

        def lock_after_first_batch(_rule: str, rows: int, _due: int) -> None:
            if rows == 5:
                held.enter_context(tickets_locked(engine))
                threading.Timer(1.0, stop.set).start()

        waiting = settings.model_copy(update={"lock_timeout_ms": 30_000})
        started = time.monotonic()
        result = api.run(waiting, stop_requested=stop.is_set, on_batch=lock_after_first_batch)
        assert time.monotonic() - started < 1.0 + LATE
    [rule] = result.rules
    assert (rule.status, rule.stopped_by, rule.rows) == ("interrupted", "signal", 5)
    assert result.interrupted and result.exit_code == 75
    assert remaining(engine) == 15
    assert batches(engine) == 1


def test_sigterm_during_a_lock_wait_exits_75_within_a_second(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    build(engine, settings)
    write_policy(settings.policy_file, POLICY.replace("sleep: 20", "sleep: 0"))
    env = child_env(RETENTION_LOCK_TIMEOUT_MS="30000")
    with tickets_locked(engine), started(command(settings, "run"), env, tmp_path) as proc:
        # The signal handlers are in place before the database is opened, and the run
        # waits for the lock from its start (SQLite) or its first batch.
        wait_for(lambda: holds_a_connection(proc.pid, settings), seconds=30)
        time.sleep(1.0)
        assert proc.poll() is None
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    assert proc.returncode == 75, err
    assert took < LATE, f"SIGTERM took {took:.1f} s"
    assert "unexpected" not in err + out
    assert remaining(engine) == 20


def test_a_sqlite_write_lock_held_past_the_lock_timeout_is_busy_not_unexpected(
    settings: Settings, engine: Engine
) -> None:
    """Without a stop: the lock outlasts RETENTION_LOCK_TIMEOUT_MS before the run could
    record its start: 75, 'busy' (on a server the run does not wait to start)."""
    if backend_for(engine).locks_rows:
        pytest.skip("a server's run records its start without waiting for row locks")
    build(engine, settings)
    impatient = settings.model_copy(update={"lock_timeout_ms": 300})
    with tickets_locked(engine), pytest.raises(DatabaseBusy, match="LOCK_TIMEOUT_MS ran out"):
        api.run(impatient)
    assert remaining(engine) == 20


def holds_a_connection(pid: int, settings: Settings) -> bool:
    """Whether process ``pid`` has the database file open, or any socket (Linux's /proc)."""
    url = make_url(settings.database_url.get_secret_value())
    wanted = os.path.realpath(url.database) if url.get_backend_name() == "sqlite" else None
    try:
        targets = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    if wanted is None:
        return any(target.startswith("socket:") for target in targets)
    return wanted in targets


def remaining(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(TICKETS.c.id)).all())


def test_a_run_whose_end_could_not_be_recorded_says_so_instead_of_a_head(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped while another connection held the lock the run's end record needs (SQLite's
    file lock; runner.py): the summary said ``audit head None``; it says the end was not
    recorded, and the JSON output's head is null."""
    build(engine, settings)
    real = AuditWriter.append_committed

    def locked_at_the_end(self: AuditWriter, bind: Any, event: Event, **fields: Any) -> Any:
        if event in (Event.RUN_FINISHED, Event.RUN_INTERRUPTED):
            raise DBAPIError("INSERT", {}, Exception("database is locked"))
        return real(self, bind, event, **fields)

    monkeypatch.setattr(AuditWriter, "append_committed", locked_at_the_end)
    monkeypatch.setattr(Control, "ended_a_wait", lambda self, backend, exc: True)
    result = api.run(settings, stop_requested=lambda: True)
    assert result.head is None and result.interrupted
    text = run_text(result)
    assert "audit head not recorded" in text and "None" not in text
    assert run_data(result)["audit_head"] is None
