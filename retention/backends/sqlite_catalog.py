"""What SQLAlchemy's SQLite reflection misses, read from SQLite's own PRAGMAs, and what a
SQLite date/time column really stores.

SQLAlchemy reads UNIQUE and ON DELETE from the ``CREATE TABLE`` text with patterns that
miss an inline ``UNIQUE`` after a parameterised type (``VARCHAR(64) NOT NULL UNIQUE``) and
an inline ``REFERENCES ... ON DELETE CASCADE``; ``PRAGMA index_list`` and
``PRAGMA foreign_key_list`` are what SQLite itself enforces.

SQLite columns keep any value: a DATETIME column can hold Unix numbers or ISO text with a
``T`` and an offset, which compare as text against the cutoff (a number sorts before every
text, so it is always "due"). Only ISO 8601 text in UTC, as SQLAlchemy writes it
(``YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]``), compares in time order. Date/time columns are
read with the text they hold, so a key goes back exactly as stored (``types.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, ForeignKeyConstraint, Table, UniqueConstraint
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import Date, DateTime, TypeEngine

from retention.backends.types import StoredDATE, StoredDATETIME

# Date/time columns read with their stored text, so keys are bound back exactly.
_EXACT: dict[type, type[TypeEngine[Any]]] = {
    sqltypes.DATETIME: StoredDATETIME,
    sqlite.DATETIME: StoredDATETIME,
    sqltypes.DATE: StoredDATE,
    sqlite.DATE: StoredDATE,
}

#: at most this many odd values are counted per column: enough to refuse, and the scan
#: stops there on a table full of them
ODD_LIMIT = 1000

_DAY = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
_MINUTE = _DAY + " [0-9][0-9]:[0-9][0-9]"
_SECOND = _MINUTE + ":[0-9][0-9]"


@dataclass(frozen=True)
class OddValues:
    """How many values of a date/time column are not ISO 8601 text in UTC (at most
    ``ODD_LIMIT``), and what SQLite stores them as ('integer', 'real', 'text', 'blob').
    Never the values themselves."""

    count: int
    kinds: tuple[str, ...]

    def describe(self) -> str:
        many = f"{self.count}+" if self.count >= ODD_LIMIT else str(self.count)
        kinds = []
        for kind in self.kinds:
            if kind in ("integer", "real"):
                kinds.append(f"{kind} numbers (Unix time?)")
            elif kind == "text":
                kinds.append("text that is not 'YYYY-MM-DD HH:MM:SS' UTC (a 'T', an offset?)")
            else:
                kinds.append(kind)
        return f"{many} values stored as " + ", ".join(kinds)


def supplement(conn: Connection, tables: Iterable[Table]) -> None:
    """Add the unique constraints and ON DELETE actions the reflection missed."""
    for table in tables:
        _unique_indexes(conn, table)
        _on_delete(conn, table)
        for col in table.columns:
            exact = _EXACT.get(type(col.type))
            if exact is not None:
                col.type = exact()


def _pragma(
    conn: Connection, name: str, table: Table, arg: str | None = None
) -> list[tuple[Any, ...]]:
    quote = conn.dialect.identifier_preparer.quote
    schema = f"{quote(table.schema)}." if table.schema else ""
    target = quote(arg if arg is not None else table.name)
    return [tuple(row) for row in conn.exec_driver_sql(f"PRAGMA {schema}{name}({target})")]


def _unique_indexes(conn: Connection, table: Table) -> None:
    known = {
        tuple(c.name for c in con.columns)
        for con in table.constraints
        if isinstance(con, UniqueConstraint)
    }
    known |= {tuple(c.name for c in ix.columns) for ix in table.indexes if ix.unique}
    # index_list rows: seq, name, unique, origin ('c' CREATE INDEX, 'u' UNIQUE, 'pk'), partial
    for _seq, name, unique, origin, partial in _pragma(conn, "index_list", table):
        if not unique or partial or origin == "pk":
            continue
        names = tuple(str(row[2]) for row in _pragma(conn, "index_info", table, name))
        if names in known or not names or not all(n in table.c for n in names):
            continue
        table.append_constraint(UniqueConstraint(*(table.c[n] for n in names), name=name))
        known.add(names)


def _on_delete(conn: Connection, table: Table) -> None:
    # foreign_key_list rows: id, seq, table, from, to, on_update, on_delete, match
    actions: dict[int, tuple[list[str], str]] = {}
    for fk_id, _seq, _parent, local, _to, _upd, on_delete, _match in _pragma(
        conn, "foreign_key_list", table
    ):
        cols, _ = actions.get(fk_id, ([], on_delete))
        actions[fk_id] = ([*cols, str(local)], str(on_delete))
    for fk in table.foreign_key_constraints:
        if fk.ondelete:
            continue
        for cols, action in actions.values():
            if cols == list(fk.column_keys) and action.upper() != "NO ACTION":
                _set_on_delete(fk, action.upper())
                break


def _set_on_delete(fk: ForeignKeyConstraint, action: str) -> None:
    fk.ondelete = action
    for element in fk.elements:
        element.ondelete = action


def odd_dates(
    conn: Connection, table: Table, names: Collection[str] | None = None
) -> dict[str, OddValues]:
    """The date/time columns of ``table`` (of ``names``, when given) holding values that
    are not ISO 8601 text in UTC, by name: one scan per column, stopped at the first
    ``ODD_LIMIT`` odd values (so a whole scan where there are none: the table's size)."""
    quote = conn.dialect.identifier_preparer.quote
    name = (f"{quote(table.schema)}." if table.schema else "") + quote(table.name)
    found: dict[str, OddValues] = {}
    for col in table.columns:
        if not isinstance(col.type, DateTime | Date):
            continue
        if names is not None and col.name not in names:
            continue
        rows = conn.exec_driver_sql(
            f"SELECT typeof(v) FROM (SELECT {quote(col.name)} AS v FROM {name}) "
            f"WHERE {_odd()} LIMIT {ODD_LIMIT}"
        ).all()
        if rows:
            kinds = tuple(sorted({str(row[0]) for row in rows}))
            found[col.name] = OddValues(len(rows), kinds)
    return found


def _odd() -> str:
    """SQL true for a value ``v`` that is neither NULL nor ISO 8601 text in UTC.

    It reads every value of a clock column (``odd_dates``), so the cheap tests go first:
    a length decides most values before any GLOB runs (a third less time at 3M rows)."""
    fraction = "(substr(v, 20, 1) = '.' AND length(v) > 20 AND substr(v, 21) NOT GLOB '*[^0-9]*')"
    iso = (
        f"(length(v) = 10 AND v GLOB '{_DAY}')"
        f" OR (length(v) = 16 AND v GLOB '{_MINUTE}')"
        f" OR ((length(v) = 19 OR {fraction}) AND substr(v, 1, 19) GLOB '{_SECOND}')"
    )
    return f"v IS NOT NULL AND NOT (typeof(v) = 'text' AND ({iso}))"
