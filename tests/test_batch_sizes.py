"""Batch sizes shrink on conflicts and grow back after clean batches (throttle.py; SPEC 5).

The policy itself needs no database; which driver errors are conflicts is each backend's
business (backends/*.py), checked here with the errors the drivers raise.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable

import psycopg.errors
import pymysql.err
import pytest
from sqlalchemy.exc import DBAPIError

from retention.backends import Conflict
from retention.backends.mysql import MySQLBackend
from retention.backends.postgresql import PostgreSQLBackend
from retention.backends.sqlite import SQLiteBackend
from retention.control import Control
from retention.throttle import GROW_AFTER, BatchSizer, floor_for, retrying


def test_the_floor_is_one_percent_of_the_batch_size_and_at_least_ten_rows() -> None:
    assert floor_for(5000) == 50
    assert floor_for(500) == 10
    assert floor_for(100_000) == 1000
    assert floor_for(4) == 4  # a batch size under ten rows is its own floor


def test_one_conflict_keeps_the_size_and_a_second_in_a_row_halves_it() -> None:
    sizer = BatchSizer(1000)
    assert sizer.failed(Conflict.CONTENTION, 1) is False
    assert sizer.size == 1000
    assert sizer.failed(Conflict.CONTENTION, 1) is True
    assert sizer.size == 500


def test_a_conflict_in_each_of_two_batches_is_repeated_and_halves_the_size() -> None:
    sizer = BatchSizer(1000)
    sizer.failed(Conflict.CONTENTION, 1)
    sizer.committed(1)
    sizer.failed(Conflict.CONTENTION, 2)
    assert sizer.size == 500


def test_a_clean_batch_forgets_an_earlier_conflict() -> None:
    sizer = BatchSizer(1000)
    sizer.failed(Conflict.CONTENTION, 1)
    sizer.committed(1)
    sizer.committed(2)
    sizer.failed(Conflict.CONTENTION, 3)
    assert sizer.size == 1000


def test_a_write_set_refusal_halves_the_size_at_once() -> None:
    sizer = BatchSizer(1000)
    assert sizer.failed(Conflict.WRITE_SET, 1) is True
    assert sizer.size == 500


def test_the_size_never_shrinks_below_the_floor() -> None:
    sizer = BatchSizer(1000)
    for _ in range(20):
        sizer.failed(Conflict.WRITE_SET, 1)
    assert sizer.size == sizer.floor == 10
    assert sizer.failed(Conflict.WRITE_SET, 1) is False


def test_the_size_doubles_after_clean_batches_up_to_the_batch_size() -> None:
    sizer = BatchSizer(1000)
    for _ in range(6):
        sizer.failed(Conflict.CONTENTION, 1)
    assert sizer.size == 125
    sizer.committed(1)  # the batch that failed commits at the smaller size: not clean
    batch = 2
    for expected in (250, 500, 1000, 1000):
        for _ in range(GROW_AFTER):
            sizer.committed(batch)
            batch += 1
        assert sizer.size == expected


def test_a_batch_that_needed_a_retry_is_not_clean() -> None:
    sizer = BatchSizer(1000)
    sizer.failed(Conflict.CONTENTION, 1)
    sizer.failed(Conflict.CONTENTION, 1)
    for batch in range(1, GROW_AFTER + 1):
        sizer.failed(Conflict.CONTENTION, batch)
        sizer.committed(batch)
    assert sizer.size <= 500


def test_the_summary_names_the_smallest_and_largest_committed_sizes_and_each_change() -> None:
    sizer = BatchSizer(100)
    assert sizer.summary() is None  # no batch committed
    sizer.committed(1)
    sizer.failed(Conflict.WRITE_SET, 2)
    sizer.committed(2)
    assert sizer.summary() == {
        "min": 50,
        "max": 100,
        "resized": 1,
        "changes": [{"from_batch": 2, "size": 50, "reason": "write_set_limit"}],
    }


def test_after_a_write_set_refusal_the_size_grows_back_only_below_the_refused_size() -> None:
    sizer = BatchSizer(1000)
    sizer.failed(Conflict.WRITE_SET, 1)  # 1000 refused: 500
    sizer.failed(Conflict.WRITE_SET, 1)  # 500 refused: 250
    sizer.committed(1)
    for batch in range(2, 4 * GROW_AFTER):
        sizer.committed(batch)
    assert sizer.size == 250  # 500 was refused: it does not grow back to it


def test_after_conflicts_alone_the_size_grows_back_to_the_batch_size() -> None:
    sizer = BatchSizer(1000)
    for _ in range(2):
        sizer.failed(Conflict.CONTENTION, 1)
    sizer.committed(1)
    for batch in range(2, 2 + GROW_AFTER):
        sizer.committed(batch)
    assert sizer.size == 1000


def _error(orig: BaseException) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("backend", "orig", "kind"),
    [
        (MySQLBackend(), pymysql.err.OperationalError(1180, "wsrep_max_ws_rows exceeded"), "w"),
        (MySQLBackend(), pymysql.err.OperationalError(1105, "Maximum writeset size exceeded"), "w"),
        (MySQLBackend(), pymysql.err.OperationalError(1105, "Some other unknown error"), None),
        (MySQLBackend(), pymysql.err.OperationalError(1213, "Deadlock found"), "c"),
        (MySQLBackend(), pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), "c"),
        (MySQLBackend(), pymysql.err.IntegrityError(1062, "Duplicate entry"), None),
        (PostgreSQLBackend(), psycopg.errors.SerializationFailure(), "c"),
        (PostgreSQLBackend(), psycopg.errors.DeadlockDetected(), "c"),
        (PostgreSQLBackend(), psycopg.errors.LockNotAvailable(), "c"),
        (PostgreSQLBackend(), psycopg.errors.UniqueViolation(), None),
        # a dependent added during the lock wait, unseen by the batch's one statement
        (PostgreSQLBackend(), psycopg.errors.ForeignKeyViolation(), "c"),
        (SQLiteBackend(), sqlite3.OperationalError("database is locked"), "c"),
        (SQLiteBackend(), sqlite3.OperationalError("no such table: t"), None),
    ],
)
def test_each_backend_says_which_driver_errors_are_conflicts(
    backend: object, orig: BaseException, kind: str | None
) -> None:
    expected = {"w": Conflict.WRITE_SET, "c": Conflict.CONTENTION, None: None}[kind]
    assert backend.conflict(_error(orig)) is expected  # type: ignore[attr-defined]


def _clock() -> Callable[[], float]:
    """A clock that moves a second at each reading: pauses end at once."""
    ticks = itertools.count()
    return lambda: float(next(ticks))


def _control(max_retries: int = 5) -> Control:
    return Control(max_retries=max_retries, sleep=lambda _s: None, monotonic=_clock())


def test_a_write_set_refusal_is_retried_smaller_until_the_batch_fits() -> None:
    sizer, tried = BatchSizer(1000), []

    def attempt(size: int) -> str:
        tried.append(size)
        if size > 100:
            raise _error(pymysql.err.OperationalError(1180, "wsrep_max_ws_rows exceeded"))
        return "committed"

    # More halvings than max_retries: a retry at a smaller size costs none of them.
    assert retrying(attempt, sizer, 1, MySQLBackend(), _control(max_retries=1)) == "committed"
    assert tried == [1000, 500, 250, 125, 62]


def test_a_write_set_refusal_at_the_floor_is_final() -> None:
    sizer = BatchSizer(20)

    def attempt(size: int) -> str:
        raise _error(pymysql.err.OperationalError(1180, "wsrep_max_ws_rows exceeded"))

    with pytest.raises(DBAPIError):
        retrying(attempt, sizer, 1, MySQLBackend(), _control())
    assert sizer.size == 10


def test_conflicts_at_the_floor_give_up_after_max_retries() -> None:
    sizer, tried = BatchSizer(10), []

    def attempt(size: int) -> str:
        tried.append(size)
        raise _error(sqlite3.OperationalError("database is locked"))

    with pytest.raises(DBAPIError):
        retrying(attempt, sizer, 1, SQLiteBackend(), _control(max_retries=3))
    assert tried == [10, 10, 10, 10]


def test_an_error_that_is_no_conflict_is_never_retried() -> None:
    tried = []

    def attempt(size: int) -> str:
        tried.append(size)
        raise _error(sqlite3.OperationalError("no such table: t"))

    with pytest.raises(DBAPIError):
        retrying(attempt, BatchSizer(100), 1, SQLiteBackend(), _control())
    assert tried == [100]


def test_persisting_conflicts_are_tried_at_most_twice_max_retries_plus_one_times() -> None:
    """The retry that halves the batch is free, the others count: 11 attempts by default,
    from 5000 rows down to 156."""
    sizer, tried = BatchSizer(5000), []

    def attempt(size: int) -> str:
        tried.append(size)
        raise _error(sqlite3.OperationalError("database is locked"))

    with pytest.raises(DBAPIError):
        retrying(attempt, sizer, 1, SQLiteBackend(), _control(max_retries=5))
    assert tried == [5000, 5000, 2500, 2500, 1250, 1250, 625, 625, 312, 312, 156]
