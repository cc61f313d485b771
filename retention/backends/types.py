"""Column and parameter types whose form differs per database."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, String, TypeDecorator
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.types import TypeEngine, UserDefinedType


class JsonList(TypeDecorator[list[Any]]):
    """A Python list bound as one JSON text parameter (SQLite's ``json_each``)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: list[Any] | None, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False)


def timestamp() -> DateTime:
    """A timestamp with microseconds on every database: MySQL drops them unless the
    column keeps them."""
    return DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class _StoredDateTime(datetime):
    """A datetime read from SQLite, with the text it was stored as."""

    stored: str


class _StoredDate(date):
    """A date read from SQLite, with the text it was stored as."""

    stored: str


class _KeepsStoredText:
    """Reads a SQLite date/time value together with its stored text and binds that text
    back as it was: a key written by SQLite itself ('2024-01-01 08:00:00', from
    CURRENT_TIMESTAMP) would otherwise come back as '2024-01-01 08:00:00.000000' and
    match nothing."""

    def bind_processor(self, dialect: Dialect) -> Any:
        inner = super().bind_processor(dialect)  # type: ignore[misc]

        def process(value: Any) -> Any:
            stored = getattr(value, "stored", None)
            if stored is not None:
                return stored
            return inner(value) if inner is not None else value

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        inner = super().result_processor(dialect, coltype)  # type: ignore[misc]

        def process(value: Any) -> Any:
            out = inner(value) if inner is not None else value
            if not isinstance(value, str) or out is None:
                return out
            kept: Any
            if isinstance(out, datetime):
                kept = _StoredDateTime(
                    out.year,
                    out.month,
                    out.day,
                    out.hour,
                    out.minute,
                    out.second,
                    out.microsecond,
                    out.tzinfo,
                )
            else:
                kept = _StoredDate(out.year, out.month, out.day)
            kept.stored = value
            return kept

        return process


class StoredDATETIME(_KeepsStoredText, sqlite.DATETIME):
    """SQLite's DATETIME, bound back exactly as stored."""


class StoredDATE(_KeepsStoredText, sqlite.DATE):
    """SQLite's DATE, bound back exactly as stored."""


class INET4(UserDefinedType[str]):
    """MariaDB's INET4 column type (10.10), which SQLAlchemy does not know."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "INET4"


class INET6(UserDefinedType[str]):
    """MariaDB's INET6 column type (10.5), which SQLAlchemy does not know."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "INET6"


def is_address(type_: TypeEngine[Any]) -> bool:
    """Whether a column type holds IP addresses (PostgreSQL inet/cidr, MariaDB
    INET4/INET6), which ``truncate_ip`` accepts beside text."""
    if isinstance(type_, INET4 | INET6):
        return True
    # PostgreSQL's dialect is loaded only where a PostgreSQL database is in use (it costs
    # 80 ms at start-up); without it no column can be of its types.
    postgresql = sys.modules.get("sqlalchemy.dialects.postgresql")
    return postgresql is not None and isinstance(type_, postgresql.INET | postgresql.CIDR)
