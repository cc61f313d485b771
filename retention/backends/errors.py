"""What a driver error says, read without its message (messages can quote row values).

PostgreSQL drivers carry a precise SQLSTATE; MySQL drivers carry the server's error number
first in ``args`` (1205, 1213), their SQLSTATE often the generic HY000. Which codes mean
what is each backend's business; reading them is shared.
"""

from __future__ import annotations

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


def sqlstate(orig: Any) -> str | None:
    """The SQLSTATE a PostgreSQL driver error carries (psycopg 3 or psycopg2)."""
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(code) if code else None


def error_number(orig: Any) -> int | None:
    """The server's error number a MySQL driver error carries first."""
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def describe_error(exc: BaseException) -> str:
    """An error's class and code, never its message: messages can quote row values."""
    orig = getattr(exc, "orig", None) or exc
    code: Any = error_number(orig)
    if code is None:
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    name = type(orig).__name__
    return f"{name} ({code})" if code is not None else name


def unreachable(exc: DBAPIError) -> bool:
    """The pool lost the connection, or the driver says it could not connect."""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    return any(marker in text for marker in _UNREACHABLE)
