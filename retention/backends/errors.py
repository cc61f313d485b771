"""What a driver error says, read without its message (messages can quote row values).

PostgreSQL drivers carry a precise SQLSTATE; MySQL drivers carry the server's error number
first in ``args`` (1205, 1213), their SQLSTATE often the generic HY000. Which codes mean
what is each backend's business; reading them is shared.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import DBAPIError

# Text a driver gives when the server cannot be reached at all, on any database.
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "can't connect",
    "connection failed",
    "unknown database",
    "does not exist",
    "name or service not known",
    "timeout expired",
)


class Conflict(StrEnum):
    """Why a batch failed in a way that a retry, or a smaller batch, can get past."""

    #: a deadlock, a serialisation or certification failure, a lock wait that timed out
    CONTENTION = "contention"
    #: the batch's write set is over a cluster's limit (Galera's wsrep_max_ws_rows/size)
    WRITE_SET = "write_set_limit"


def sqlstate(orig: Any) -> str | None:
    """The SQLSTATE a PostgreSQL driver error carries (psycopg 3 or psycopg2)."""
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(code) if code else None


def error_number(orig: Any) -> int | None:
    """The server's error number a MySQL driver error carries first."""
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def describe_error(exc: BaseException) -> str:
    """An error's class and code, never its message: messages can quote row values.

    A constraint violation also names the table and column (or the constraint) it is
    about, read from the driver's structured fields or from the fixed parts of the
    message, so an operator knows where to look without a value ever being shown.
    """
    orig = getattr(exc, "orig", None) or exc
    code: Any = error_number(orig)
    if code is None:
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    name = type(orig).__name__
    described = f"{name} ({code})" if code is not None else name
    where = constraint_place(orig)
    return f"{described} on {where}" if where else described


# Identifiers only: a match that is anything else is dropped, never shown.
_NAMES = r"\w+(?:\.\w+)?(?:, \w+(?:\.\w+)?)*"
# PostgreSQL's detail: "Key (col, col2)=(value, ...) ..." (the values are never read).
_PG_KEY = re.compile(rf"^Key \(({_NAMES})\)=\(")
# SQLite: "NOT NULL constraint failed: t.c" (SQLite never quotes a value here).
_SQLITE = re.compile(rf"^(?:NOT NULL|UNIQUE|CHECK) constraint failed: ({_NAMES})$")
# MariaDB, by error number; each pattern anchored where the message has no value.
_MYSQL = {
    1048: re.compile(r"^Column '(\w+)' cannot be null$"),
    1062: re.compile(r" for key '([\w.]+)'$"),
    1406: re.compile(r"^Data too long for column '(\w+)' at row \d+$"),
    1366: re.compile(r" for column `\w+`\.`(\w+)`\.`(\w+)` at row \d+$"),
    4025: re.compile(r"^CONSTRAINT `(\w+)` failed for `\w+`\.`(\w+)`$"),
    1451: re.compile(
        r"^Cannot delete or update a parent row: a foreign key constraint fails "
        r"\(`\w+`\.`(\w+)`, CONSTRAINT `(\w+)`"
    ),
    1452: re.compile(
        r"^Cannot add or update a child row: a foreign key constraint fails "
        r"\(`\w+`\.`(\w+)`, CONSTRAINT `(\w+)`"
    ),
}


def constraint_place(orig: Any) -> str | None:
    """The table and column (or constraint) a driver error is about, or None."""
    diag = getattr(orig, "diag", None)
    if diag is not None and getattr(diag, "table_name", None):
        table = diag.table_name
        if diag.column_name:
            return f"{table}.{diag.column_name}"
        # A foreign key's detail names the other table's columns when a parent is deleted.
        detail = "" if diag.sqlstate == "23503" else diag.message_detail or ""
        found = _PG_KEY.match(detail)
        cols = f"({found.group(1)})" if found else ""
        constraint = f", constraint {diag.constraint_name}" if diag.constraint_name else ""
        return f"{table}{cols}{constraint}"
    args: tuple[Any, ...] = getattr(orig, "args", ())
    number = error_number(orig)
    if number in _MYSQL and len(args) > 1 and isinstance(args[1], str):
        found = _MYSQL[number].search(args[1])
        if found is None:
            return None
        if number in (1451, 1452):
            return f"{found.group(1)}, constraint {found.group(2)}"
        if number == 4025:
            return f"{found.group(2)}, constraint {found.group(1)}"
        if number == 1062:
            return f"key {found.group(1)}"
        return ".".join(found.groups()) if number == 1366 else f"column {found.group(1)}"
    if args and isinstance(args[0], str):
        found = _SQLITE.match(args[0])
        return found.group(1) if found else None
    return None


def unreachable(exc: DBAPIError) -> bool:
    """The pool lost the connection, or the driver says it could not connect."""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(marker in text for marker in _UNREACHABLE)
