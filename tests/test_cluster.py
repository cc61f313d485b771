"""Runs on clusters (issue 12, items 1, 2, 5; SPEC section 5): on the rigs of tests/rigs.

Galera: three runs started at the same moment on three nodes, round after round: no rule
is worked by two runs at once (its batches never interleave in the chain), every due row
is removed once, no live run is recorded as interrupted, exit codes are only 0 or 75, and
the chain verifies on every node. PostgreSQL: the server closes idle connections under a
running rule, and no second run works the rule meanwhile; ``run`` on the hot standby
exits 75 while ``plan``, ``validate`` and ``audit verify`` work there.

Like tests/test_rigs.py these run only where the rigs' variables are set, and then fail
(never skip) when a rig is unreachable. Each test works in a database of its own.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import builders
import pytest
from builders import write_policy
from conftest import HASH_KEY
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from retention import api
from retention.audit.records import audit_tables
from retention.db import make_engine
from retention.leases import Leases, rule_lease
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

RULES = ("alpha", "beta", "gamma")
ROUNDS = 10
ROWS = 30  # per rule and round
META = MetaData()
TABLES = {
    rule: Table(
        f"{rule}_events",
        META,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", DateTime, nullable=False),
    )
    for rule in RULES
}
RECORDS = audit_tables("retention_audit")[1]


def policy(batch_size: int = 10, sleep: float = 0.0) -> str:
    rules = "".join(
        f"""  - name: {rule}
    table: {rule}_events
    clock: created_at
    after: 30 days
    action: delete
    batch_size: {batch_size}
    sleep: {sleep}
    guard: {{max_fraction: 1}}
"""
        for rule in RULES
    )
    return f"version: 1\nrules:\n{rules}"


def settings_for(url: str, policy_file: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=url,  # type: ignore[arg-type]
        hash_key=HASH_KEY,  # type: ignore[arg-type]
        policy_file=policy_file,
        _env_file=None,  # type: ignore[call-arg]
        **extra,
    )


@contextmanager
def own_database(urls: list[str]) -> Iterator[list[str]]:
    """A fresh database on the rig (made through the first server, replicated to the
    others); the URLs of each server in it. Dropped afterwards."""
    name = f"h_{uuid.uuid4().hex[:12]}"
    admin = create_engine(urls[0], isolation_level="AUTOCOMMIT")
    quote = admin.dialect.identifier_preparer.quote
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {quote(name)}"))
        yield [make_url(u).set(database=name).render_as_string(hide_password=False) for u in urls]
    finally:
        force = " WITH (FORCE)" if admin.dialect.name == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {quote(name)}{force}"))
        admin.dispose()


@pytest.fixture
def galera_urls() -> Iterator[list[str]]:
    urls = [u.strip() for u in os.environ[GALERA].split(",") if u.strip()]
    assert len(urls) == 3, f"{GALERA} must hold three node URLs, has {len(urls)}"
    with own_database(urls) as mine:
        yield mine


@pytest.fixture
def pg_urls() -> Iterator[list[str]]:
    with own_database([os.environ[PG_PRIMARY], os.environ[PG_STANDBY]]) as mine:
        yield mine


def seed(engine: Engine, first_id: int, rows: int, rules: tuple[str, ...] = RULES) -> None:
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=90)
    with engine.begin() as conn:
        for rule in rules:
            batch = [{"id": first_id + i, "created_at": old} for i in range(rows)]
            conn.execute(insert(TABLES[rule]), batch)


def chain(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(RECORDS).order_by(RECORDS.c.seq)).mappings()
        return [dict(row) for row in rows]


def interleavings(records: list[dict[str, Any]], rule: str) -> int:
    """How often a run's batches of ``rule`` resume after another run's batches of it."""
    groups: list[str] = []
    for record in records:
        is_batch = record["event"] == "batch" and record["rule"] == rule
        if is_batch and (not groups or groups[-1] != record["run_id"]):
            groups.append(record["run_id"])
    return len(groups) - len(set(groups))


def remaining(engine: Engine, rule: str) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(TABLES[rule].c.id)).all())


def run_or_code(settings: Settings, **kwargs: Any) -> tuple[int, RunResult | None]:
    from retention.errors import DatabaseUnavailable

    try:
        result = api.run(settings, **kwargs)
    except DatabaseUnavailable:
        return 75, None
    return int(result.exit_code), result


def at_once(nodes: list[Settings], label: str) -> list[tuple[int, RunResult | None]]:
    """One run per node, released at the same moment; their exit codes and results."""
    barrier = threading.Barrier(len(nodes))
    outcomes: list[tuple[int, RunResult | None]] = []
    errors: list[BaseException] = []

    def one(settings: Settings) -> None:
        barrier.wait()
        try:
            outcomes.append(run_or_code(settings))
        except BaseException as exc:  # reported below, with its round
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, f"{label}: {errors!r}"
    assert len(outcomes) == len(nodes), f"{label}: a run did not end within 120 s"
    return outcomes


def replayed(engine: Engine, head: str) -> bool:
    try:
        records = chain(engine)
    except DBAPIError:
        return False  # the audit tables are not replayed yet
    return bool(records) and records[-1]["hash"] == head


# --- Galera -------------------------------------------------------------------------------


@needs_galera
def test_three_runs_started_at_once_on_three_galera_nodes_never_share_a_rule(
    galera_urls: list[str], tmp_path: Path
) -> None:
    policy_file = write_policy(tmp_path / "policies.yaml", policy(batch_size=10, sleep=0.02))
    nodes = [settings_for(url, policy_file) for url in galera_urls]
    node1 = make_engine(nodes[0], hash_key=HASH_KEY.encode())
    node3 = make_engine(nodes[2], hash_key=HASH_KEY.encode())
    META.create_all(node1)
    codes: Counter[int] = Counter()
    started = time.monotonic()
    try:
        for round_no in range(ROUNDS):
            seed(node1, round_no * ROWS, ROWS)
            outcomes = at_once(nodes, f"round {round_no}")
            codes.update(code for code, _ in outcomes)
        seconds = time.monotonic() - started
        records = chain(node3)  # a causal read on another node than the one that seeded
        per_rule = {rule: interleavings(records, rule) for rule in RULES}
        removed = Counter()
        for record in records:
            if record["event"] == "batch":
                removed[record["rule"]] += record["row_count"]
        events = Counter(record["event"] for record in records)
        print(
            f"\ngalera: {ROUNDS} rounds x 3 runs in {seconds:.1f}s; exit codes {dict(codes)}; "
            f"interleavings {per_rule}; run_interrupted {events['run_interrupted']}; "
            f"rows removed {dict(removed)}; skipped {events['rule_skipped']}"
        )
        assert set(codes) <= {0, 75}, codes
        assert per_rule == dict.fromkeys(RULES, 0)
        assert events["run_interrupted"] == 0
        assert events["run_started"] == events["run_finished"] == 3 * ROUNDS
        assert removed == dict.fromkeys(RULES, ROUNDS * ROWS)
        for settings in nodes:
            engine = make_engine(settings, hash_key=HASH_KEY.encode())
            try:
                assert {rule: remaining(engine, rule) for rule in RULES} == dict.fromkeys(RULES, 0)
            finally:
                engine.dispose()
            assert api.verify(settings).head == records[-1]["hash"]
    finally:
        node1.dispose()
        node3.dispose()


@needs_galera
def test_a_run_whose_lease_another_node_took_over_commits_no_further_batch(
    galera_urls: list[str], tmp_path: Path
) -> None:
    """After the first batch on node 1, its lease expires and a run on node 2 takes it:
    node 1's next batch rolls back (its lease check fails, or certification aborts it
    and the retry's check fails), whatever node 1's own session believes."""
    policy_file = write_policy(tmp_path / "policies.yaml", policy(batch_size=5))
    node1, node2 = (settings_for(url, policy_file) for url in galera_urls[:2])
    engine1 = make_engine(node1, hash_key=HASH_KEY.encode())
    engine2 = make_engine(node2, hash_key=HASH_KEY.encode())
    META.create_all(engine1)
    seed(engine1, 0, 20, ("alpha",))
    thief = Leases(engine2, "retention_audit", "33333333-3333-4333-8333-333333333333")

    def take_over(rule: str, done: int, due: int) -> None:
        if rule == "alpha" and done == 5:
            past = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
            with engine2.begin() as conn:
                conn.execute(update(thief.table).values(expires_at=past))
            thief.take(rule_lease("alpha"))

    try:
        code, result = run_or_code(node1, rules=["alpha"], on_batch=take_over)
        records = chain(engine2)
        left = remaining(engine2, "alpha")
    finally:
        engine1.dispose()
        engine2.dispose()
    assert code == 1 and result is not None
    assert [(r.status, r.rows) for r in result.rules] == [("failed", 5)]
    (failed,) = [r for r in records if r["event"] == "rule_failed"]
    assert "taken over by run 3333" in json.loads(failed["details"])["reason"]
    assert sum(r["event"] == "batch" for r in records) == 1
    assert left == 15


@needs_galera
def test_reads_on_a_galera_node_are_causal(galera_urls: list[str], tmp_path: Path) -> None:
    """Every session on a node with wsrep on waits for the cluster's earlier commits."""
    settings = settings_for(galera_urls[1], tmp_path / "policies.yaml")
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT @@session.wsrep_sync_wait")).scalar_one() == 1
    finally:
        engine.dispose()


# --- PostgreSQL primary and hot standby -----------------------------------------------


@needs_pg
def test_pg_idle_connections_closed_mid_rule_let_no_second_run_work_it(
    pg_urls: list[str], tmp_path: Path
) -> None:
    """The server closes every connection idle for a second (``idle_session_timeout``)
    while the run pauses after its first batch for longer than its lease. A second run
    that starts then finds the rule's lease live and skips it, and records no
    run_interrupted: the lease is a row, not a session, and the heartbeat renews it,
    replacing the pooled connections the server closed between its beats."""
    primary_url = pg_urls[0]
    policy_file = write_policy(tmp_path / "policies.yaml", policy(batch_size=5))
    terms = {"lease_seconds": 3.0, "lease_renew_seconds": 1.5}
    first, second, third = (settings_for(primary_url, policy_file, **terms) for _ in range(3))
    admin = make_engine(first, hash_key=HASH_KEY.encode())
    META.create_all(admin)
    seed(admin, 0, 40, ("alpha",))
    database = make_url(primary_url).database
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" SET idle_session_timeout = 1000'))
        conn.commit()
    during: list[tuple[int, RunResult | None]] = []

    def meanwhile(rule: str, done: int, due: int) -> None:
        if rule == "alpha" and done == 5:
            time.sleep(4.0)  # past the lease: only renewals on fresh connections keep it
            during.append(run_or_code(second, rules=["alpha"]))

    try:
        code, result = run_or_code(first, rules=["alpha"], on_batch=meanwhile)
        assert result is not None
        [(second_code, second_result)] = during
        assert second_code == 75 and second_result is not None
        assert [r.status for r in second_result.rules] == ["skipped"]
        third_code, _ = run_or_code(third, rules=["alpha"])  # finishes what is left
        records = chain(admin)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" RESET idle_session_timeout'))
            conn.commit()
        admin.dispose()
    (skip,) = [r for r in records if r["event"] == "rule_skipped"]
    assert json.loads(skip["details"])["held_by"] == result.run_id
    assert not [r for r in records if r["event"] == "run_interrupted"]
    assert interleavings(records, "alpha") == 0
    assert sum(r["row_count"] for r in records if r["event"] == "batch") == 40
    print(
        f"\npg idle_session_timeout: first run {code} ({result.rules[0].status}, "
        f"{result.rules[0].rows} rows, error {result.rules[0].error}); second run "
        f"{second_code} (skipped); third run {third_code}"
    )


@needs_pg
def test_run_on_the_hot_standby_exits_75_and_the_read_commands_work_there(
    pg_urls: list[str], tmp_path: Path
) -> None:
    primary_url, standby_url = pg_urls
    policy_file = write_policy(tmp_path / "policies.yaml", policy())
    primary = make_engine(settings_for(primary_url, policy_file), hash_key=HASH_KEY.encode())
    META.create_all(primary)
    seed(primary, 0, 10)
    env = {"RETENTION_HASH_KEY": HASH_KEY, "RETENTION_POLICY_FILE": str(policy_file)}

    def cli(url: str, *args: str) -> builders.Invocation:
        return builders.invoke(args, {**env, "RETENTION_DATABASE_URL": url}, catch_exceptions=True)

    try:
        assert cli(primary_url, "audit", "init").exit_code == 0
        assert cli(primary_url, "run", "--rule", "alpha").exit_code == 0
        head = chain(primary)[-1]["hash"]
        standby = create_engine(standby_url)
        deadline = time.monotonic() + 30
        while not replayed(standby, head):
            assert time.monotonic() < deadline, "the standby did not replay within 30 s"
            time.sleep(0.2)
        standby.dispose()

        refused = cli(standby_url, "run")
        assert refused.exit_code == 75, refused.output
        assert "standby" in refused.stderr
        assert "Traceback" not in refused.output
        for args in (("plan",), ("validate",), ("audit", "verify")):
            outcome = cli(standby_url, *args)
            assert outcome.exit_code == 0, (args, outcome.output)
        assert {rule: remaining(primary, rule) for rule in RULES} == {
            "alpha": 0,
            "beta": 10,
            "gamma": 10,
        }
    finally:
        primary.dispose()
