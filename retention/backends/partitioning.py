"""RANGE partitions as the backends describe them, and the SQL that drops one whole.

What each database says about its partitions, and how one goes, is a method of its
backend (``postgresql.py``, ``mysql.py``); what they share is here. The flow (check,
keys, record) is ``retention/partitions.py``'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Column, Table, column
from sqlalchemy.sql.expression import Alias, TableClause
from sqlalchemy.sql.visitors import replacement_traverse

E = TypeVar("E")  # a statement: Select, Executable


@dataclass(frozen=True)
class RangePartition:
    """One partition of a table RANGE-partitioned on a rule's clock."""

    name: str
    schema: str | None
    #: why it can never go whole, whatever its rows (DEFAULT, MAXVALUE, reaching past the
    #: cutoff, not partitioned on the clock), or None
    refused: str | None = None


@dataclass(frozen=True)
class WholeDrop:
    """The SQL that removes one partition whole, in the order it runs.

    ``rows_in`` is the table its rows are checked and their keys read in while it goes:
    the partition itself (PostgreSQL: detached in the record's transaction), or the
    staging table its rows were exchanged into (MariaDB: each DDL statement commits).
    """

    rows_in: str
    #: each committing on its own, before the record's transaction
    stage: tuple[str, ...] = ()
    #: in the record's transaction, before the rows are checked (takes the locks)
    take: tuple[str, ...] = ()
    #: in the record's transaction, after the keys are read
    remove: tuple[str, ...] = ()
    #: after the record committed
    finish: tuple[str, ...] = ()
    #: the staged rows back into the table, in one transaction, when they must stay
    put_back: tuple[str, ...] = ()


def like(table: Table, name: str, schema: str | None = None) -> TableClause:
    """A table of ``table``'s columns called ``name`` (a partition, a staging table)."""
    return TableClause(name, *[column(c.name, c.type) for c in table.c], schema=schema)


def retarget(statement: E, table: Table, other: TableClause) -> E:
    """``statement`` reading ``other`` (a partition, a staging table, made by ``like``)
    where it read ``table``: ``FROM other AS table``, so every condition, however
    correlated, reads as it did. An alias of ``table`` (a relation to another row of the
    same table) still reads the whole table."""
    alias = other.alias(table.name)

    def swap(element: Any, **_: Any) -> Any:
        if isinstance(element, Alias) and element.element is table:
            return element  # a related row of the same table: still read in all of it
        if element is table:
            return alias
        if isinstance(element, Column) and element.table is table:
            return alias.c[element.name]
        return None

    return replacement_traverse(statement, {}, swap)  # type: ignore[no-any-return,call-overload]


def staging_name(table: str, partition: str) -> str:
    """The staging table of one partition: named from both, within 64 characters."""
    digest = hashlib.sha256(f"{table}\0{partition}".encode()).hexdigest()[:10]
    return f"{table[:40]}__staged_{digest}"
