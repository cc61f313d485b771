"""SQLite: one file, one writer at a time.

Transactions are begun explicitly (``BEGIN IMMEDIATE`` for writing, so a batch never fails
half-way on SQLITE_BUSY upgrading a read lock); rows are not locked one by one. A run's
write transactions wait for another connection's write lock in ticks, so a signal or
``--max-runtime`` ends the wait (``sqlite3_interrupt`` does not end SQLite's busy wait). The
anonymisation strategies call Python functions registered on each connection
(``sqlite_functions``), which hold the hash key: no pads are bound. Rule leases are rows
of a table, as on every database (``retention/leases.py``).
"""

from __future__ import annotations

import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Integer,
    String,
    bindparam,
    event,
    func,
    select,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import Table

from retention.backends import errors, sqlite_catalog, strategies
from retention.backends.defaults import DefaultBackend
from retention.backends.registry import register
from retention.backends.sqlite_catalog import OddValues
from retention.backends.sqlite_functions import register_functions
from retention.backends.types import JsonList

#: the execution option that carries a run's "stop now?" (``SQLiteBackend.interruptible``)
_STOPPING = "retention_stopping"
#: how long one attempt at the write lock waits before the stop flag is looked at again
TICK_MS = 100


@register
class SQLiteBackend(DefaultBackend):
    dialect = "sqlite"
    locks_rows = False
    is_server = False
    enforces_column_types = False
    append_only_trigger = (
        "CREATE TRIGGER IF NOT EXISTS {name} BEFORE {event} ON {table} "
        "BEGIN SELECT RAISE(ABORT, '{message}'); END",
    )

    def keys_in(self, cols: Sequence[Any], name: str) -> ColumnElement[bool]:
        if len(cols) == 1 and isinstance(cols[0].type, Integer | String):
            # One JSON parameter instead of one placeholder per key (measured: ~23 ms a
            # statement saved at 5000 keys).
            items = func.json_each(bindparam(name, type_=JsonList())).table_valued("value")
            return cols[0].in_(select(items.c.value))  # type: ignore[no-any-return]
        return super().keys_in(cols, name)

    def engine_url(self, url: URL, *, read_only: bool) -> URL:
        database = url.database
        if not read_only or not database or database == ":memory:" or "uri" in url.query:
            return url
        path = os.path.abspath(database)
        if not os.path.exists(path) and os.path.isdir(os.path.dirname(path)):
            # A mistyped path reads as the empty database it always read as (no tables, no
            # audit log), but no empty file is left behind.
            return URL.create(url.drivername)  # in memory
        # Opened read-only as a URI, so that nothing can create or change the file.
        quoted = urllib.parse.quote(path)
        return url.set(database=f"file:{quoted}").update_query_dict({"mode": "ro", "uri": "true"})

    def interrupt(self, engine: Engine, conn: Connection) -> None:
        # Safe from another thread; a no-op when no statement runs.
        conn.connection.dbapi_connection.interrupt()  # type: ignore[union-attr]

    def interruptible(self, engine: Engine, stopping: Callable[[], bool]) -> Engine:
        # sqlite3_interrupt() ends a running statement, not a wait in the busy handler:
        # a write transaction waits for the file's lock in ticks that ask ``stopping``.
        return engine.execution_options(**{_STOPPING: stopping})

    def engine_options(self, lock_timeout_ms: int) -> dict[str, Any]:
        # One connection per checkout: file locks are per connection, and SQLite
        # connections are cheap.
        return {"connect_args": {"timeout": lock_timeout_ms / 1000}, "poolclass": NullPool}

    def install_session_setup(
        self, engine: Engine, lock_timeout_ms: int, hash_key: bytes | None
    ) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Transactions are begun explicitly (below); the driver must not begin them
            # on its own.
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(lock_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()
            register_functions(dbapi_connection, hash_key)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Take the write lock at the start, so a batch never fails half-way on
            # SQLITE_BUSY when upgrading a read lock.
            # A read-only connection (plan, verify) begins a deferred transaction instead.
            options = conn.get_execution_options()
            stopping = options.get(_STOPPING)
            if options.get("retention_readonly", False):
                conn.exec_driver_sql("BEGIN")
            elif stopping is None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                _begin_in_ticks(conn, lock_timeout_ms, stopping)

    @contextmanager
    def read_only(self, engine: Engine) -> Iterator[Connection]:
        with engine.connect() as raw:
            conn = raw.execution_options(retention_readonly=True)
            conn.exec_driver_sql("PRAGMA query_only = 1")
            conn.commit()
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.exec_driver_sql("PRAGMA query_only = 0")
                conn.commit()

    def secret_params(self, hash_key: bytes) -> dict[str, Any]:
        return {}  # the registered retention_hmac function holds the key

    # ddl_lock: the default; the write transaction (BEGIN IMMEDIATE) is exclusive.

    def supplement_reflection(self, conn: Connection, tables: Iterable[Table]) -> None:
        sqlite_catalog.supplement(conn, tables)

    def odd_dates(
        self, conn: Connection, table: Table, names: Collection[str] | None = None
    ) -> dict[str, OddValues]:
        return sqlite_catalog.odd_dates(conn, table, names)

    def is_retryable(self, exc: DBAPIError) -> bool:
        return "database is locked" in str(exc.orig).lower()

    def is_already_exists(self, exc: DBAPIError) -> bool:
        return "already exists" in str(exc.orig).lower()

    def is_connect_failure(self, exc: DBAPIError) -> bool:
        if isinstance(exc.orig, sqlite3.OperationalError) and not exc.connection_invalidated:
            return "unable to open database" in str(exc.orig).lower()
        return errors.unreachable(exc)


def _begin_in_ticks(conn: Connection, lock_timeout_ms: int, stopping: Callable[[], bool]) -> None:
    """``BEGIN IMMEDIATE``, waiting for another connection's write lock ``lock_timeout_ms``
    in all, in attempts of ``TICK_MS``: a stop request ends the wait within a tick (the
    "database is locked" error then reaches the run, which stops)."""
    raw: Any = conn.connection.dbapi_connection
    deadline = time.monotonic() + lock_timeout_ms / 1000
    raw.execute(f"PRAGMA busy_timeout = {min(TICK_MS, int(lock_timeout_ms))}")
    try:
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                locked = "database is locked" in str(exc.orig).lower()
                if not locked or stopping() or time.monotonic() >= deadline:
                    raise
    finally:
        # Statements inside the transaction (a commit waiting for readers) wait as before.
        raw.execute(f"PRAGMA busy_timeout = {int(lock_timeout_ms)}")


@strategies.compiles_as(strategies.HmacHex, "sqlite")
def _hmac_hex(element: strategies.HmacHex) -> ColumnElement[Any]:
    return func.retention_hmac(element.arg(0))


@strategies.compiles_as(strategies.Mask, "sqlite")
def _mask(element: strategies.Mask) -> ColumnElement[Any]:
    return func.retention_mask(element.arg(0), element.keep, element.arg(1))


@strategies.compiles_as(strategies.TruncateIp, "sqlite")
def _truncate_ip(element: strategies.TruncateIp) -> ColumnElement[Any]:
    return func.retention_truncate_ip(element.arg(0))


@strategies.compiles_as(strategies.TruncateDate, "sqlite")
def _truncate_date(element: strategies.TruncateDate) -> ColumnElement[Any]:
    return func.retention_truncate_date(element.arg(0), element.unit)
