"""A literal of the policy file in its column's type (SPEC section 2, "Real schemas").

Every literal in a condition or a ``value`` strategy is checked against its column at
stage 3 (``schema_check``) and converted by the same function when conditions compile
(``planner.conditions``), so what validation accepted is exactly what is bound: a date
written as text becomes a date for a date column, a number must fit its column, text must
encode. Comparisons then happen in the column's type on every database, never as text
against a number (SQLite would compare ``'31/12/2019'`` with timestamps as text;
PostgreSQL refuses ``integer = character varying`` at run time).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Uuid,
)
from sqlalchemy.types import TypeEngine

from retention.backends import backend_for

# MariaDB's own integer widths; INTEGER is 32 bits on PostgreSQL and MariaDB.
_BITS = {"TINYINT": 8, "MEDIUMINT": 24}


class LiteralMisfit(ValueError):
    """A literal that its column cannot hold or compare; the message says why."""


def in_column_type(value: Any, type_: TypeEngine[Any], dialect: str) -> Any:
    """``value`` as the column's Python type, or ``LiteralMisfit`` saying why it is not one."""
    if isinstance(type_, Boolean):
        if isinstance(value, bool):
            return value
        raise LiteralMisfit(f"{_shown(value)} is not true or false, which the column holds")
    if isinstance(type_, DateTime):
        return _datetime(value)
    if isinstance(type_, Date):
        return _date(value)
    if isinstance(type_, Integer):
        return _integer(value, type_, dialect)
    if isinstance(type_, Numeric):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise LiteralMisfit(
            f"{_shown(value)} is not a number, which the column holds{_unquote(value)}"
        )
    if isinstance(type_, String):
        return _text(value)
    if isinstance(type_, Uuid):
        try:
            return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        except ValueError:
            raise LiteralMisfit(f"{_shown(value)} is not a UUID, which the column holds") from None
    return value  # a type of its own (JSON, inet, ...): the database judges it


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time())  # a bare date means its midnight
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise LiteralMisfit(
        f"{_shown(value)} is not a date or time: write it as YYYY-MM-DD or "
        "YYYY-MM-DD HH:MM:SS (UTC unless it names an offset)"
    )


def _date(value: Any) -> date:
    found: date | None = None
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, date):
        return value
    elif isinstance(value, str):
        try:
            found = datetime.fromisoformat(value.strip())
        except ValueError:
            found = None
    if isinstance(found, datetime) and found.time() == time() and found.tzinfo is None:
        return found.date()
    raise LiteralMisfit(
        f"{_shown(value)} is not a day, which the DATE column holds: write it as YYYY-MM-DD"
    )


def _integer(value: Any, type_: TypeEngine[Any], dialect: str) -> int:
    number: int | None = None
    if isinstance(value, bool):
        number = int(value)  # MariaDB's BOOLEAN is TINYINT(1)
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None:
        raise LiteralMisfit(
            f"{_shown(value)} is not a whole number, which the column holds{_unquote(value)}"
        )
    # Where columns keep any value (SQLite), an integer column holds 64 bits whatever its
    # declared name.
    enforced = backend_for(dialect).enforces_column_types if dialect else True
    bits = _bits(type_) if enforced else 64
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    if getattr(type_, "unsigned", False):
        low, high = 0, 2**bits - 1
    if not low <= number <= high:
        raise LiteralMisfit(f"{number} does not fit the column: it holds {low} to {high}")
    return number


def _bits(type_: TypeEngine[Any]) -> int:
    if isinstance(type_, BigInteger):
        return 64
    if isinstance(type_, SmallInteger):
        return 16
    return _BITS.get(type(type_).__name__.upper(), 32)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        shown = value.isoformat() if isinstance(value, date) else _shown(value)
        raise LiteralMisfit(
            f"{shown} is not text, and the column holds text: quote it ('{shown}') "
            "so that it is compared as the text it is"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise LiteralMisfit(
            "the text holds a lone surrogate (an escape such as \\ud800), which no database "
            "stores: write the character itself"
        ) from None
    if "\x00" in value:
        raise LiteralMisfit("the text holds a NUL character (\\0), which text columns refuse")
    return value


def _unquote(value: Any) -> str:
    return ": write the number without quotes" if isinstance(value, str) else ""


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        # Only its length when it cannot be printed safely; else a short repr.
        text = repr(value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"))
        return text if len(text) <= 40 else text[:37] + "...'"
    return repr(value)
