"""One run per rule at a time, across processes and machines (SPEC section 5).

Each backend holds the lock its own way (``Backend.rule_lock``): a session advisory lock
on PostgreSQL, ``GET_LOCK`` on MySQL/MariaDB, an exclusive ``flock`` on a file next to the
database on SQLite. Every lock is taken without waiting: a rule held elsewhere is skipped,
not queued.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from sqlalchemy import Engine

from retention.backends import backend_for
from retention.backends.mysql import lock_name
from retention.backends.postgresql import lock_id


def rule_lock(
    engine: Engine, rule: str, *, scope: str = "rule", forget: bool = False
) -> AbstractContextManager[None]:
    """Hold ``rule``'s lock for the duration; ``LockNotAcquired`` if another run has it.

    ``forget`` removes SQLite's lock file afterwards: for locks named once (a run's own),
    so lock files do not pile up beside the database.
    """
    return backend_for(engine).rule_lock(engine, rule, scope=scope, forget=forget)


__all__ = ["lock_id", "lock_name", "rule_lock"]
