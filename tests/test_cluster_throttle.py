"""Throttling on clusters (issue 12, items 3 and 4; SPEC section 5), on the rigs of
tests/rigs: a Galera node whose write-set limit is lowered, or whose rows an application
updates on another node, takes the rule in smaller batches and finishes it; with replay
paused on the PostgreSQL standby, a rule with ``max_lag`` waits, never lets the standby
fall more than ``max_lag`` plus one batch behind, and finishes once replay resumes.

Like tests/test_rigs.py these run only where the rigs' variables are set, and then fail
(never skip) when a rig is unreachable. Each test works in a database of its own.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import feedback_schema, write_policy
from conftest import HASH_KEY
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from retention import api
from retention.outcomes import Status
from retention.runner import RunResult
from retention.settings import Settings

GALERA = "RETENTION_TEST_GALERA_URLS"
PG_PRIMARY = "RETENTION_TEST_PG_PRIMARY_URL"
PG_STANDBY = "RETENTION_TEST_PG_STANDBY_URL"
needs_galera = pytest.mark.skipif(not os.environ.get(GALERA), reason=f"{GALERA} is not set")
needs_pg = pytest.mark.skipif(
    not (os.environ.get(PG_PRIMARY) and os.environ.get(PG_STANDBY)),
    reason=f"{PG_PRIMARY} and {PG_STANDBY} are not set",
)


def policy(batch_size: int, *, sleep: float = 0.0, max_lag: float | None = None) -> str:
    lag = f"  max_lag: {max_lag}\n" if max_lag is not None else ""
    return f"""\
version: 1
defaults:
  batch_size: {batch_size}
{lag}  guard: {{max_rows: 1000000, max_fraction: 1.0}}
rules:
  - name: feedback-after-30-days
    table: feedback
    clock: submitted_at
    after: 30 days
    action: delete
    sleep: {sleep}
    cascade:
      - table: feedback_contacts
        on: {{feedback_id: id}}
"""


def fill(engine: Engine, rows: int) -> set[int]:
    """``rows`` feedback rows with a contact each; every fifth is recent. Returns the
    ids that are kept."""
    meta = feedback_schema()
    meta.create_all(engine)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    ids = range(1, rows + 1)
    with engine.begin() as conn:
        conn.execute(
            insert(meta.tables["feedback"]),
            [{"id": i, "submitted_at": now - timedelta(days=90 if i % 5 else 1)} for i in ids],
        )
        conn.execute(
            insert(meta.tables["feedback_contacts"]), [{"id": i, "feedback_id": i} for i in ids]
        )
    return {i for i in ids if i % 5 == 0}


def ids_in(engine: Engine, table: str = "feedback") -> set[int]:
    column = "id" if table == "feedback" else "feedback_id"
    with engine.connect() as conn:
        return set(conn.scalars(select(feedback_schema().tables[table].c[column])))


def settings_for(url: str, tmp_path: Path, text_policy: str) -> Settings:
    policy_file = write_policy(tmp_path / "policies.yaml", text_policy)
    return Settings(
        database_url=url,  # type: ignore[arg-type]
        hash_key=HASH_KEY,  # type: ignore[arg-type]
        policy_file=policy_file,
        _env_file=None,  # type: ignore[call-arg]
    )


def own_database(server_url: str) -> Iterator[str]:
    """A database of the test's own on the rig (created on the node or primary given,
    replicated to the others), dropped afterwards; yields its URL."""
    name = f"h4_{uuid.uuid4().hex[:12]}"
    server = create_engine(server_url, isolation_level="AUTOCOMMIT")
    quote = server.dialect.identifier_preparer.quote
    try:
        with server.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {quote(name)}"))
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            if server.dialect.name == "postgresql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)"))
            else:
                conn.execute(text(f"DROP DATABASE IF EXISTS {quote(name)}"))
        server.dispose()


# --- Galera: a write-set limit ------------------------------------------------------------

WS_ROWS = 120  # a batch of n rows writes 2n rows (feedback, contact) and its audit rows


@pytest.fixture
def galera_node1() -> Iterator[str]:
    urls = [u.strip() for u in os.environ[GALERA].split(",") if u.strip()]
    assert len(urls) == 3, f"{GALERA} must hold three node URLs, has {len(urls)}"
    yield from own_database(urls[0])


@needs_galera
def test_galera_write_set_limit_shrinks_the_batches_and_the_rule_finishes(
    galera_node1: str, tmp_path: Path
) -> None:
    settings = settings_for(galera_node1, tmp_path, policy(500))
    engine = create_engine(galera_node1)
    try:
        kept = fill(engine, 1000)
        with engine.connect() as conn:
            conn.execute(text(f"SET GLOBAL wsrep_max_ws_rows = {WS_ROWS}"))
        try:
            result = api.run(settings)
        finally:
            with engine.connect() as conn:
                conn.execute(text("SET GLOBAL wsrep_max_ws_rows = 0"))
        (rule,) = result.rules
        assert rule.status == Status.DONE, rule.error
        assert rule.rows == 800
        assert ids_in(engine) == kept == ids_in(engine, "feedback_contacts")
        sizes = rule.batch_sizes
        # batches of 62 rows and more write over 120 rows: the full ones were all smaller
        assert sizes is not None and sizes["min"] * 2 < WS_ROWS < sizes["min"] * 4
        reasons = {change["reason"] for change in sizes["changes"]}
        assert "write_set_limit" in reasons
        print(f"galera write-set limit {WS_ROWS}: batch sizes {sizes}, batches {rule.batches}")
    finally:
        engine.dispose()


@needs_galera
def test_galera_application_writing_on_another_node_the_rule_finishes_in_smaller_batches(
    galera_node1: str, tmp_path: Path
) -> None:
    """An application updates, on node 2, the very rows the rule is about to delete on
    node 1: certification aborts the large batches; smaller ones get through."""
    settings = settings_for(galera_node1, tmp_path, policy(500))
    engine = create_engine(galera_node1)
    node2 = make_url(os.environ[GALERA].split(",")[1].strip()).set(
        database=make_url(galera_node1).database
    )
    app = create_engine(node2, isolation_level="AUTOCOMMIT")
    stop = threading.Event()
    writes = {"done": 0, "aborted": 0}

    def application(seed: int) -> None:
        # Random due rows all over the table, as an application's own traffic would be: a
        # large batch nearly always holds one of them, a small one seldom does.
        pick = random.Random(seed)  # noqa: S311 - which rows to touch, not a secret
        due = [i for i in range(1, 3001) if i % 5]
        with app.connect() as conn:
            while not stop.is_set():
                try:
                    conn.execute(
                        text(
                            "UPDATE feedback SET submitted_at = submitted_at "
                            "+ INTERVAL 1 SECOND WHERE id = :i"  # a no-op would write nothing
                        ),
                        {"i": pick.choice(due)},
                    )
                    writes["done"] += 1
                except DBAPIError:
                    writes["aborted"] += 1  # certification went the rule's way

    try:
        kept = fill(engine, 3000)
        writers = [threading.Thread(target=application, args=(n,)) for n in range(2)]
        for writer in writers:
            writer.start()
        try:
            while writes["done"] < 100:
                time.sleep(0.05)
            result = api.run(settings)
        finally:
            stop.set()
            for writer in writers:
                writer.join(30)
        (rule,) = result.rules
        assert rule.status == Status.DONE, rule.error
        assert ids_in(engine) == kept == ids_in(engine, "feedback_contacts")
        sizes = rule.batch_sizes
        print(f"galera with an application on node 2 ({writes}): batch sizes {sizes}")
        assert sizes is not None and sizes["resized"] >= 1 and sizes["min"] < 500
    finally:
        engine.dispose()
        app.dispose()


# --- PostgreSQL: a standby whose replay is paused ---------------------------------------

MAX_LAG = 1.0
SLEEP = 0.2  # between batches, so the lag builds up over several batches


@pytest.fixture
def pg_primary_db() -> Iterator[str]:
    yield from own_database(os.environ[PG_PRIMARY])


def replay(standby: Engine, what: str) -> None:
    with standby.connect() as conn:
        conn.execute(text(f"SELECT pg_wal_replay_{what}()"))


def standby_lag(primary: Engine) -> float:
    """The standby's lag as the primary reports it (test's own query): the replay lag of
    the standby's last report plus the time since, 0 when it replayed every byte."""
    with primary.connect() as conn:
        row = conn.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM replay_lag + GREATEST(now() - reply_time, "
                "interval '0')), pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) "
                "FROM pg_stat_replication"
            )
        ).one()
    return 0.0 if not row[1] else float(row[0] or 0.0)


@needs_pg
def test_pg_standby_paused_the_run_waits_within_max_lag_and_finishes_on_resume(
    pg_primary_db: str, tmp_path: Path
) -> None:
    settings = settings_for(pg_primary_db, tmp_path, policy(50, sleep=SLEEP, max_lag=MAX_LAG))
    engine = create_engine(pg_primary_db)
    primary = create_engine(os.environ[PG_PRIMARY])
    standby = create_engine(os.environ[PG_STANDBY], isolation_level="AUTOCOMMIT")
    lags: list[float] = []
    outcome: dict[str, Any] = {}
    try:
        kept = fill(engine, 1000)
        replay(standby, "pause")

        paused = threading.Event()
        paused.set()

        def after_batch(rule: str, done: int, due: int) -> None:
            # Measured while replay is paused: once it resumes, the standby reports how
            # long the old WAL waited, which is the pause this test chose, not the run.
            if paused.is_set():
                lags.append(standby_lag(primary))

        def run() -> None:
            try:
                outcome["result"] = api.run(settings, on_batch=after_batch)
            except BaseException as exc:  # reported by the test thread
                outcome["error"] = exc

        worker = threading.Thread(target=run)
        worker.start()
        try:
            # The run waits: the rows stop going while replay is paused.
            still, last, deadline = 0, -1, time.monotonic() + 30
            while still < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
                left = len(ids_in(engine))
                still, last = (still + 1 if left == last else 0), left
            assert still >= 3, "the run did not pause while the standby lagged"
            assert len(kept) < last < 1000, "the run paused before its first batch, or never"
        finally:
            paused.clear()
            replay(standby, "resume")
            worker.join(60)
        assert "error" not in outcome, outcome.get("error")
        result: RunResult = outcome["result"]
        (rule,) = result.rules
        assert rule.status == Status.DONE, (rule.status, rule.stopped_by)
        assert ids_in(engine) == kept
        assert rule.replica_lag is not None and rule.replica_lag["waited_seconds"] >= 1.5
        # max_lag plus one batch: a batch and the pause after it take well under a second.
        largest = max(lags)
        print(f"largest standby lag after a batch: {largest:.3f}s (max_lag {MAX_LAG}s): {lags}")
        assert largest <= MAX_LAG + SLEEP + 0.5, lags
    finally:
        replay(standby, "resume")
        engine.dispose()
        primary.dispose()
        standby.dispose()
