"""One run per rule at a time, across processes and machines (SPEC section 5).

PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a dedicated connection.
MySQL/MariaDB: ``GET_LOCK``, whose names are server-wide and at most 64 characters, so the
name is a hash of the database and the rule. SQLite: an exclusive ``flock`` on a file next
to the database, held for the whole run (SQLite's own locks last one transaction).
Every lock is taken without waiting: a rule held elsewhere is skipped, not queued.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

from retention.errors import LockNotAcquired


def lock_id(scope: str, name: str) -> int:
    """A stable signed 64-bit id for PostgreSQL's advisory lock functions."""
    digest = hashlib.sha256(f"retention:{scope}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_name(database: str, scope: str, name: str) -> str:
    """A GET_LOCK name: server-wide, so it includes the database; at most 64 characters."""
    digest = hashlib.sha256(f"{database}:{scope}:{name}".encode()).hexdigest()
    return f"retention:{digest[:48]}"


@contextmanager
def rule_lock(
    engine: Engine, rule: str, *, scope: str = "rule", forget: bool = False
) -> Iterator[None]:
    """Hold ``rule``'s lock for the duration; ``LockNotAcquired`` if another run has it.

    ``forget`` removes SQLite's lock file afterwards: for locks named once (a run's own),
    so lock files do not pile up beside the database.
    """
    backend = engine.dialect.name
    if backend == "postgresql":
        with _pg_lock(engine, lock_id(scope, rule), rule):
            yield
    elif backend == "mysql":
        name = lock_name(str(engine.url.database), scope, rule)
        with _mysql_lock(engine, name, rule):
            yield
    else:
        with _file_lock(engine, scope, rule, forget=forget):
            yield


@contextmanager
def _pg_lock(engine: Engine, key: int, rule: str) -> Iterator[None]:
    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()  # the lock is session-level; no transaction stays open
        if not got:
            raise LockNotAcquired(rule)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


@contextmanager
def _mysql_lock(engine: Engine, name: str, rule: str) -> Iterator[None]:
    with engine.connect() as conn:
        got = conn.execute(text("SELECT GET_LOCK(:n, 0)"), {"n": name}).scalar()
        conn.commit()
        if got != 1:
            raise LockNotAcquired(rule)
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
            conn.commit()


def _lock_path(engine: Engine, scope: str, rule: str) -> str | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    digest = hashlib.sha256(f"{scope}:{rule}".encode()).hexdigest()[:16]
    return f"{os.path.abspath(database)}.retention-{digest}.lock"


@contextmanager
def _file_lock(engine: Engine, scope: str, rule: str, *, forget: bool = False) -> Iterator[None]:
    path = _lock_path(engine, scope, rule)
    if path is None:  # an in-memory database belongs to one process
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockNotAcquired(rule) from None
        try:
            yield
        finally:
            if forget:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
