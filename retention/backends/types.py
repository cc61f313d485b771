"""Column and parameter types whose form differs per database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import DateTime, Dialect, String, TypeDecorator
from sqlalchemy.dialects import mysql


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
