"""The cluster rigs behave as the cluster tests assume (tests/rigs/README.md).

These run only where the rigs' variables are set (``tests/rigs/galera.sh env``,
``tests/rigs/pg_standby.sh env``). A variable that is set but whose rig is unreachable
FAILS: a silent skip would let the cluster tests pass against nothing.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

GALERA = "RETENTION_TEST_GALERA_URLS"
PG_PRIMARY = "RETENTION_TEST_PG_PRIMARY_URL"
PG_STANDBY = "RETENTION_TEST_PG_STANDBY_URL"

# Asynchronous replay on the standby is usually done in milliseconds; this is a ceiling.
REPLAY_SECONDS = 30.0

needs_galera = pytest.mark.skipif(not os.environ.get(GALERA), reason=f"{GALERA} is not set")
needs_pg = pytest.mark.skipif(
    not (os.environ.get(PG_PRIMARY) and os.environ.get(PG_STANDBY)),
    reason=f"{PG_PRIMARY} and {PG_STANDBY} are not set",
)


def _unique(prefix: str) -> str:
    """A name no other test or xdist worker uses: the rigs' databases are shared."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def galera() -> Iterator[list[Engine]]:
    urls = [u.strip() for u in os.environ[GALERA].split(",") if u.strip()]
    assert len(urls) == 3, f"{GALERA} must hold three node URLs, has {len(urls)}"
    engines = [create_engine(u, isolation_level="AUTOCOMMIT") for u in urls]
    try:
        for engine in engines:
            with engine.connect() as conn:
                size = conn.execute(text("SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'")).one()
                assert size[1] == "3", f"{engine.url.port}: cluster size {size[1]}, not 3"
        yield engines
    finally:
        for engine in engines:
            engine.dispose()


@pytest.fixture
def pg() -> Iterator[tuple[Engine, Engine]]:
    primary = create_engine(os.environ[PG_PRIMARY], isolation_level="AUTOCOMMIT")
    standby = create_engine(os.environ[PG_STANDBY], isolation_level="AUTOCOMMIT")
    try:
        with primary.connect() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False
        with standby.connect() as conn:
            assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
        yield primary, standby
    finally:
        primary.dispose()
        standby.dispose()


@needs_galera
def test_galera_row_written_on_node_1_is_read_on_node_3(galera: list[Engine]) -> None:
    node1, _, node3 = galera
    table = _unique("rig_rows")
    with node1.connect() as conn:
        conn.execute(text(f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(20))"))
    try:
        with node1.connect() as conn:
            conn.execute(text(f"INSERT INTO {table} VALUES (1, 'from node 1')"))
        with node3.connect() as conn:
            # causality: this read waits until node 3 has applied what node 1 committed
            conn.execute(text("SET SESSION wsrep_sync_wait = 1"))
            rows = conn.execute(text(f"SELECT id, v FROM {table}")).all()
        assert [tuple(r) for r in rows] == [(1, "from node 1")]
    finally:
        with node1.connect() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))


@needs_galera
def test_galera_get_lock_is_local_to_one_node(galera: list[Engine]) -> None:
    """GET_LOCK is not replicated: two nodes both grant the same name at once. So a
    named lock cannot keep two runs on different nodes apart; leases in a table can."""
    node1, node2, _ = galera
    name = _unique("rig_lock")
    with node1.connect() as holder, node2.connect() as other:
        assert holder.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar_one() == 1
        # on node 1 itself, the same name is taken ...
        with node1.connect() as same_node:
            taken = same_node.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name})
            assert taken.scalar_one() == 0
        # ... while node 2 grants it at once, not seeing node 1's holder
        assert other.execute(text("SELECT IS_FREE_LOCK(:n)"), {"n": name}).scalar_one() == 1
        assert other.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar_one() == 1
        other.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
        holder.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})


def _wait_for_row(conn: Connection, table: str) -> list[tuple[object, ...]]:
    deadline = time.monotonic() + REPLAY_SECONDS
    while True:
        exists = conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar_one()
        if exists is not None:
            rows = [tuple(r) for r in conn.execute(text(f"SELECT id, v FROM {table}")).all()]
            if rows or time.monotonic() > deadline:
                return rows
        elif time.monotonic() > deadline:
            return []
        time.sleep(0.1)


@needs_pg
def test_pg_row_written_on_primary_appears_on_standby(pg: tuple[Engine, Engine]) -> None:
    primary, standby = pg
    table = _unique("rig_rows")
    with primary.connect() as conn:
        conn.execute(text(f"CREATE TABLE {table} (id INT PRIMARY KEY, v TEXT)"))
        conn.execute(text(f"INSERT INTO {table} VALUES (1, 'from the primary')"))
    try:
        with standby.connect() as conn:
            paused = conn.execute(text("SELECT pg_get_wal_replay_pause_state()")).scalar_one()
            assert paused == "not paused", "replay is paused: run pg_standby.sh resume-replay"
            rows = _wait_for_row(conn, table)
        assert rows == [(1, "from the primary")], f"not replayed within {REPLAY_SECONDS}s"
    finally:
        with primary.connect() as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))


@needs_pg
def test_pg_write_on_standby_fails_read_only(pg: tuple[Engine, Engine]) -> None:
    _, standby = pg
    with standby.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(text(f"CREATE TABLE {_unique('rig_refused')} (id INT)"))
    assert getattr(caught.value.orig, "sqlstate", None) == "25006"  # read_only_sql_transaction
