"""Engines: one per command, with row values kept out of every log and error.

``hide_parameters=True`` keeps bound values out of SQLAlchemy's exception text and logs.
Each dialect gets a bounded wait for row locks, so a batch never hangs on a lock held by
the application; SQLite gets the user functions that anonymisation needs.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from retention.errors import DatabaseUnavailable
from retention.settings import Settings, mask_url
from retention.sqlite_functions import register_functions


def make_engine(settings: Settings, *, hash_key: bytes | None = None) -> Engine:
    """An engine for the configured database; nothing is connected yet."""
    url = make_url(settings.database_url.get_secret_value())
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"hide_parameters": True, "future": True}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": settings.lock_timeout_ms / 1000}
        # One connection per checkout: file locks are per connection, and SQLite
        # connections are cheap.
        kwargs["poolclass"] = NullPool
    elif backend == "mysql":
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    _install_session_setup(engine, backend, settings.lock_timeout_ms, hash_key)
    return engine


def _install_session_setup(
    engine: Engine, backend: str, lock_timeout_ms: int, hash_key: bytes | None
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if backend == "sqlite":
            # Transactions are begun explicitly (BEGIN IMMEDIATE) by the executor; the
            # driver must not begin them on its own.
            dbapi_connection.isolation_level = None
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(lock_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.close()
            register_functions(dbapi_connection, hash_key)
        elif backend == "postgresql":
            cur = dbapi_connection.cursor()
            cur.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
            cur.execute("SET TIME ZONE 'UTC'")
            cur.close()
            dbapi_connection.commit()
        elif backend == "mysql":
            cur = dbapi_connection.cursor()
            seconds = max(1, math.ceil(lock_timeout_ms / 1000))
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
            # Table locks (LOCK TABLES, DDL) wait on lock_wait_timeout, a year by default.
            cur.execute(f"SET SESSION lock_wait_timeout = {seconds}")
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.close()

    if backend == "sqlite":

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Take the write lock at the start, so a batch never fails half-way on
            # SQLITE_BUSY when upgrading a read lock.
            # A read-only connection (plan, verify) begins a deferred transaction instead.
            readonly = conn.get_execution_options().get("retention_readonly", False)
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


@contextmanager
def reachable(engine: Engine) -> Iterator[None]:
    """Turn "cannot connect" into ``DatabaseUnavailable`` (exit 75) with a masked URL."""
    try:
        yield
    except OperationalError as exc:
        if _is_connect_failure(exc):
            raise DatabaseUnavailable(mask_url(str(engine.url)), type(exc.orig).__name__) from None
        raise


def _is_connect_failure(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    text = str(orig).lower()
    if isinstance(orig, sqlite3.OperationalError):
        return "unable to open database" in text
    markers = (
        "connection refused",
        "could not connect",
        "can't connect",
        "connection failed",
        "unknown database",
        "does not exist",
        "name or service not known",
        "timeout expired",
    )
    return any(m in text for m in markers)
