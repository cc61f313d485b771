"""Whether an anonymisation strategy fits its column (SPEC section 2): its type,
nullability, uniqueness and length. Used by stage three of validation (``schema_check``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Table

from retention.backends.types import is_address
from retention.catalog import describe_type, is_datetime, is_text, is_unique, text_length
from retention.literals import LiteralMisfit, in_column_type
from retention.policy.strategies import (
    HashStrategy,
    MaskStrategy,
    Strategy,
    TruncateDateStrategy,
    ValueStrategy,
    strategy_name,
)


def strategy_misfit(strategy: Strategy, table: Table, col: Any, dialect: str = "") -> str | None:
    """Why ``strategy`` cannot be applied to ``col``, or None when it fits."""
    name = strategy_name(strategy)
    kind = describe_type(col)
    if strategy is None:
        if not col.nullable:
            instead = (
                "truncate_date: month (or year), or a value"
                if is_datetime(col.type)
                else "redact, hash or a value"
            )
            return f"null on '{col.name}', which is NOT NULL: use {instead}"
        return None
    if isinstance(strategy, ValueStrategy):
        reason = value_misfit(strategy.value, col, dialect)
        if reason:
            return reason
    if strategy == "redact" or isinstance(strategy, ValueStrategy):
        if is_unique(table, col):
            return f"{name} on '{col.name}', which is UNIQUE, would collide: use hash or null"
        if strategy == "redact":
            if not is_text(col.type):
                return f"redact writes text; '{col.name}' is {kind}"
            length = text_length(col.type)
            if length is not None and length < len("[redacted]"):
                return f"redact needs 10 characters; '{col.name}' is {kind}"
        return None
    if isinstance(strategy, HashStrategy | MaskStrategy) or strategy == "truncate_ip":
        if strategy == "truncate_ip" and is_address(col.type):
            return None
        if not is_text(col.type):
            return f"{name} works on text columns; '{col.name}' is {kind}"
        if isinstance(strategy, HashStrategy):
            size = len(strategy.hash.prefix) + strategy.hash.length + len(strategy.hash.suffix)
            length = text_length(col.type)
            if length is not None and size > length:
                return (
                    f"hash gives {size} characters; '{col.name}' holds {length}: "
                    "shorten with hash.length"
                )
        return None
    if isinstance(strategy, TruncateDateStrategy) and not is_datetime(col.type):
        return f"truncate_date works on date/time columns; '{col.name}' is {kind}"
    return None


def value_misfit(value: Any, col: Any, dialect: str) -> str | None:
    """Why a fixed value cannot be written to ``col`` as it is, or None.

    A value is written as given, so it must already be of the column's type (a text that
    would parse as a date is not one); and it must fit the column's length.
    """
    kind = describe_type(col)
    try:
        converted = in_column_type(value, col.type, dialect)
    except LiteralMisfit as exc:
        return f"value for '{col.name}', which is {kind}: {exc}"
    if type(converted) is not type(value) and not isinstance(value, bool):
        shown = value.isoformat() if isinstance(value, date) else repr(value)
        return (
            f"value {shown} for '{col.name}' is not written as {kind}: "
            f"write {_as_written(converted)} (unquoted)"
        )
    length = text_length(col.type)
    if isinstance(value, str) and length is not None and len(value) > length:
        return f"value for '{col.name}' has {len(value)} characters; the column holds {length}"
    return None


def _as_written(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return repr(value)
