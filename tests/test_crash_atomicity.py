"""A run killed at any instant leaves no half batch and loses no evidence (SPEC sections 5, 6).

PostgreSQL only: the whole module is skipped when ``RETENTION_TEST_POSTGRES_URL`` is unset,
and fails when it is set and the server cannot be reached.

``retention run`` runs as a subprocess over ~3000 due ``feedback`` rows with one or two
``feedback_contacts`` each (no foreign key, so the database itself would not stop a half
batch), in batches of 100 with per-key digests (``record_keys: true``), and is SIGKILLed
at a seeded random moment, again and again. After every kill:

- the hash chain verifies;
- the parent rows that are gone are exactly the keys of the new ``batch`` records: one
  side-table digest per removed key, no digest for a row that still exists;
- each new ``batch`` record's ``row_count``, ``dependents`` and ``key_digest`` are those of
  the keys its side-table digests name;
- no child row outlives its parent, and every child of a remaining parent remains.

Then a normal run finishes the rest, exits 0, verifies, and records the killed runs as
``run_interrupted``. A killed run's leases hold until they expire (SPEC section 5): the
runs here take one-second leases, and each kill waits for them to run out.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import feedback_schema, write_policy
from conftest import HASH_KEY, wipe
from pydantic import SecretStr
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Text,
    create_engine,
    func,
    select,
    text,
)
from sqlalchemy.pool import NullPool

from retention import api
from retention.audit.query import removed_key_digest
from retention.audit.records import key_digest
from retention.settings import Settings

POSTGRES = "RETENTION_TEST_POSTGRES_URL"
pytestmark = pytest.mark.skipif(not os.environ.get(POSTGRES), reason=f"{POSTGRES} is not set")

ROWS = 3000
ITERATIONS = int(os.environ.get("RETENTION_TEST_CRASH_ITERATIONS", "30"))
MAX_DELAY = 1.5  # seconds
AHEAD = 1  # processes importing while an earlier one runs
EARLY = 0.2  # the share of kills timed from the process's start, not its run_started
RULE = "feedback-after-30-days"
LEASE_SECONDS = 1  # how long a killed run keeps its rule from the next one
KEY = HASH_KEY.encode()
OLD = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=400)

META = feedback_schema(
    feedback=[Column("body", Text, nullable=False)],
    contacts=[Column("value", Text, nullable=False)],
    key_type=BigInteger,
    # No foreign key on purpose: only the batch's transaction keeps children and parents
    # together, so a half batch would show as an orphan instead of a constraint error.
    foreign_key=False,
)
FEEDBACK, CONTACTS = META.tables["feedback"], META.tables["feedback_contacts"]
POLICY = f"""\
version: 1
audit: {{table: retention_audit, record_keys: true}}
rules:
  - name: {RULE}
    table: feedback
    clock: submitted_at
    after: 30 days
    action: delete
    batch_size: 100
    guard: {{max_rows: 10000000, max_fraction: 1}}
    cascade:
      - table: feedback_contacts
        on: {{feedback_id: id}}
        action: delete
"""


def children_of(parent: int) -> set[int]:
    """One or two contacts per feedback row, with ids derived from the parent's."""
    return {parent * 10 + j for j in range(1 + parent % 2)}


@dataclass
class Database:
    """The admin's view of the database under test, and what it holds before a run."""

    engine: Engine
    settings: Settings
    next_id: int = 1
    stats: Counter[str] = field(default_factory=Counter)

    def top_up(self) -> None:
        """Add fresh due rows, so each run starts with ``ROWS`` parents left to remove."""
        with self.engine.begin() as conn:
            have = conn.execute(select(func.count()).select_from(FEEDBACK)).scalar_one()
            new = list(range(self.next_id, self.next_id + ROWS - have))
            self.next_id += len(new)
            if not new:
                return
            conn.execute(
                FEEDBACK.insert(),
                [{"id": i, "submitted_at": OLD, "body": f"feedback {i}"} for i in new],
            )
            conn.execute(
                CONTACTS.insert(),
                [
                    {"id": c, "feedback_id": i, "value": f"contact {c}"}
                    for i in new
                    for c in children_of(i)
                ],
            )

    def parents(self) -> set[int]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(FEEDBACK.c.id)).scalars())

    def children(self) -> dict[int, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(CONTACTS.c.id, CONTACTS.c.feedback_id))
            return {int(c): int(p) for c, p in rows}

    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT seq FROM retention_audit_head")).scalar_one())

    def batches_after(self, seq: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT * FROM retention_audit WHERE seq > :s AND event = 'batch' ORDER BY seq"
                ),
                {"s": seq},
            ).mappings()
            return [dict(row) for row in rows]

    def digests_after(self, seq: int) -> list[tuple[int, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT seq, key_digest FROM retention_audit_keys WHERE seq > :s"), {"s": seq}
            )
            return [(int(s), str(d)) for s, d in rows]

    def wait_for_seq_after(self, seq: int, proc: subprocess.Popen[bytes]) -> None:
        """Until a record after ``seq`` is committed (or the process has ended)."""
        deadline = time.monotonic() + 30
        while self.last_seq() == seq and proc.poll() is None:
            assert time.monotonic() < deadline, "the run wrote no record in 30 s"
            time.sleep(0.002)

    def wait_for_backends_to_end(self) -> None:
        """A killed client's server process ends when it sees the closed socket.

        Until then its transaction is open and its locks held; the checks, and the next
        run's search for dead runs, look at the database after it has gone.
        """
        deadline = time.monotonic() + 10
        query = text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                if conn.execute(query).scalar_one() == 0:
                    return
            time.sleep(0.02)
        raise AssertionError("a killed run's server process is still alive after 10 s")

    def wait_for_leases_to_expire(self) -> None:
        """A killed run's leases (its rule's and its own) hold until they expire; the next
        run takes the rule, and finds the killed run dead, only then."""
        deadline = time.monotonic() + 10 * LEASE_SECONDS
        query = text("SELECT count(*) FROM retention_audit_leases WHERE expires_at > :now")
        while True:
            now = datetime.now(UTC).replace(tzinfo=None)
            with self.engine.connect() as conn:
                if conn.execute(query, {"now": now}).scalar_one() == 0:
                    return
            assert time.monotonic() < deadline, "a killed run's lease outlived its length"
            time.sleep(0.05)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    url = os.environ[POSTGRES]
    wipe(url)  # fails, not skips, when the server is unreachable
    engine = create_engine(url, poolclass=NullPool)
    META.create_all(engine)
    policy = tmp_path / "policies.yaml"
    write_policy(policy, POLICY)
    settings = Settings(
        database_url=SecretStr(url),
        hash_key=SecretStr(HASH_KEY),
        policy_file=policy,
        _env_file=None,
    )
    api.audit_init(settings)
    try:
        yield Database(engine, settings)
    finally:
        engine.dispose()


# The real CLI, its imports done before the start signal: importing takes longer than a
# run over 3000 rows, so the next process is started ahead and told to go when its turn
# comes.
WARM_CLI = """\
import sys
import psycopg
import sqlalchemy.dialects.postgresql.psycopg
import retention.cli
sys.stdin.readline()
sys.argv = ["retention", "run", "--output", "json"]
retention.cli.main()
"""


@dataclass
class Launcher:
    """Starts ``retention run`` processes, keeping the next one imported and waiting."""

    db: Database
    tmp_path: Path
    count: int = 0
    warm: list[tuple[subprocess.Popen[bytes], str]] = field(default_factory=list)

    def _spawn(self) -> tuple[subprocess.Popen[bytes], str]:
        self.count += 1
        name = f"run-{self.count}"
        env = {
            **os.environ,
            "RETENTION_DATABASE_URL": self.db.settings.database_url.get_secret_value(),
            "RETENTION_HASH_KEY": HASH_KEY,
            "RETENTION_POLICY_FILE": str(self.db.settings.policy_file),
            "RETENTION_LOG_FORMAT": "json",
            "RETENTION_LEASE_SECONDS": str(LEASE_SECONDS),
            "RETENTION_LEASE_RENEW_SECONDS": "0.3",
        }
        out = (self.tmp_path / f"{name}.out").open("wb")
        err = (self.tmp_path / f"{name}.err").open("wb")
        with out, err:
            proc = subprocess.Popen(
                [sys.executable, "-c", WARM_CLI],
                cwd=self.tmp_path,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
            )
        return proc, name

    def start(self) -> tuple[subprocess.Popen[bytes], str]:
        """A run that has just been told to go; its output goes to ``<name>.out/.err``."""
        while len(self.warm) < AHEAD + 1:
            self.warm.append(self._spawn())
        proc, name = self.warm.pop(0)
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        return proc, name

    def output(self, name: str, suffix: str) -> str:
        return (self.tmp_path / f"{name}.{suffix}").read_text()

    def close(self) -> None:
        for proc, _ in self.warm:
            proc.kill()
            proc.wait(timeout=30)


def kill(db: Database, proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    db.wait_for_backends_to_end()
    db.wait_for_leases_to_expire()


def check_after_kill(db: Database, before: set[int], children: dict[int, int], seq: int) -> int:
    """Every invariant of a killed run; returns how many parents the run removed."""
    api.verify(db.settings)
    after = db.parents()
    assert after <= before, "rows appeared"
    removed = before - after

    # No orphan, no half cascade: a child is gone exactly when its parent is.
    left = db.children()
    for child, parent in children.items():
        if parent in removed:
            assert child not in left, f"child {child} outlived its removed parent {parent}"
        else:
            assert left.get(child) == parent, f"child {child} of remaining {parent} is gone"
    assert set(left) <= set(children)

    # The removed keys are exactly the keys the new records prove, one digest each.
    of_digest = {removed_key_digest(KEY, "feedback", [k]): k for k in before}
    digests = db.digests_after(seq)
    assert len(digests) == len(removed), "side-table digests != removed rows"
    proven = [of_digest.get(d) for _, d in digests]
    assert None not in proven, "a digest names no row of this run's table"
    assert set(proven) == removed, "a removed row lacks its record, or a record claims a kept row"

    # Each batch record is the batch its digests name.
    batches = db.batches_after(seq)
    keys_of: dict[int, list[int]] = {}
    for s, d in digests:
        keys_of.setdefault(s, []).append(of_digest[d])
    assert set(keys_of) == {b["seq"] for b in batches}, "digests without a batch record"
    for batch in batches:
        keys = keys_of[batch["seq"]]
        assert batch["rule"] == RULE
        assert batch["row_count"] == len(keys)
        assert batch["key_digest"] == key_digest(KEY, [(k,) for k in keys])
        dependents = sum(len(children_of(k)) for k in keys)
        assert json.loads(batch["dependents"]) == {"feedback_contacts": dependents}
    assert sum(b["row_count"] for b in batches) == len(removed)
    return len(removed)


def run_records(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT run_id, event, details FROM retention_audit WHERE event IN "
                "('run_started', 'run_finished', 'run_interrupted') ORDER BY seq"
            )
        ).mappings()
        return [dict(row) for row in rows]


def unfinished_runs(db: Database) -> set[str]:
    records = run_records(db)
    started = {r["run_id"] for r in records if r["event"] == "run_started"}
    return started - {r["run_id"] for r in records if r["event"] != "run_started"}


@pytest.fixture
def launcher(database: Database, tmp_path: Path) -> Iterator[Launcher]:
    started = Launcher(database, tmp_path)
    try:
        yield started
    finally:
        started.close()


def kill_at_random_moments(db: Database, launcher: Launcher) -> Counter[str]:
    """``ITERATIONS`` runs, each killed at a seeded random moment and checked; the outcomes."""
    rng = random.Random(20260601)  # noqa: S311 - reproducible kill times, not secrets
    outcomes: Counter[str] = Counter()
    for _ in range(ITERATIONS):
        db.top_up()
        before, children, seq = db.parents(), db.children(), db.last_seq()
        proc, name = launcher.start()
        if rng.random() < EARLY:
            time.sleep(rng.uniform(0, MAX_DELAY))  # while it starts, reflects, finds dead runs
        else:
            db.wait_for_seq_after(seq, proc)  # its run_started is committed
            time.sleep(rng.uniform(0, MAX_DELAY))  # while it walks the batches
        finished = proc.poll() is not None
        kill(db, proc)
        removed = check_after_kill(db, before, children, seq)
        if finished:
            assert proc.returncode == 0, launcher.output(name, "err")
            outcomes["finished"] += 1
        elif removed == 0:
            outcomes["none removed"] += 1
        else:
            outcomes["all removed" if removed == len(before) else "partly removed"] += 1
    return outcomes


def kill_after_first_batch(db: Database, launcher: Launcher) -> set[str]:
    """One more run, killed right after its first batch; the runs left unfinished."""
    db.top_up()
    before, children, seq = db.parents(), db.children(), db.last_seq()
    proc, _ = launcher.start()
    deadline = time.monotonic() + 30
    while not db.batches_after(seq) and time.monotonic() < deadline:
        time.sleep(0.002)
    kill(db, proc)
    assert 0 < check_after_kill(db, before, children, seq) < len(before)
    return unfinished_runs(db)


def test_a_run_killed_at_any_moment_leaves_whole_batches_with_their_records(
    database: Database, launcher: Launcher
) -> None:
    db = database
    started_at = time.monotonic()
    outcomes = kill_at_random_moments(db, launcher)
    dead = kill_after_first_batch(db, launcher)
    assert dead, "the killed run wrote no run_started"

    final, name = launcher.start()
    assert final.wait(timeout=60) == 0, launcher.output(name, "err")
    summary = json.loads(launcher.output(name, "out"))

    elapsed = time.monotonic() - started_at
    assert db.parents() == set()
    assert db.children() == {}
    assert summary["exit_code"] == 0
    assert api.verify(db.settings).head == summary["audit_head"]
    assert unfinished_runs(db) == set()
    records = run_records(db)
    ends = Counter(r["run_id"] for r in records if r["event"] != "run_started")
    assert all(count == 1 for count in ends.values()), "a run ended twice"
    found = {
        r["run_id"]: json.loads(r["details"]) for r in records if r["event"] == "run_interrupted"
    }
    for run_id in dead:
        assert found[run_id]["found_by"] == summary["run_id"]
        assert "killed" in found[run_id]["reason"] or "crashed" in found[run_id]["reason"]
    with db.engine.connect() as conn:
        digests = conn.execute(text("SELECT count(*) FROM retention_audit_keys")).scalar_one()
        rows = conn.execute(
            text("SELECT sum(row_count) FROM retention_audit WHERE event = 'batch'")
        ).scalar_one()
    assert digests == rows == db.next_id - 1, "every row ever removed has its one digest"
    print(f"\nkill outcomes over {ITERATIONS} runs: {dict(outcomes)}; {elapsed:.1f} s")
    assert outcomes["partly removed"] >= 3, f"too few kills landed mid-run: {dict(outcomes)}"
