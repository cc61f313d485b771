"""Condition trees -> SQLAlchemy boolean expressions (SPEC section 2, "Conditions").

Every compiled condition is two-valued: it is TRUE or FALSE, never NULL. A test on a
nullable column is guarded with ``IS NOT NULL``, ``ne`` is ``IS DISTINCT FROM`` and
``not_in`` holds for NULL, so ``not`` is true exactly when its condition is not true, as
the SPEC says, on every database. Values are always bound parameters; columns and tables
come from the reflected schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Table,
    and_,
    exists,
    false,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.types import Date, DateTime

from retention.backends.text_match import TextMatch
from retention.catalog import Catalog
from retention.literals import in_column_type
from retention.periods import Period, cutoff
from retention.policy.conditions import ConditionMap, Related, Tests
from retention.policy.model import RelatedColumn, hops


@dataclass
class Compiler:
    """Compiles conditions for one rule; ``now`` is the run's single clock reading."""

    catalog: Catalog
    now: datetime
    timezone: str
    _aliases: count[int] = field(default_factory=lambda: count(1))
    _taken: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # An alias that spells a table's name would capture that table's columns in the
        # subquery it names (a rule on a table called ``rel1`` correlating to its own
        # related table): no alias ever spells the name of a table in the schemas read,
        # compared without case since SQLite and MariaDB may fold it.
        self._taken.update(t.name.lower() for t in self.catalog.metadata.tables.values())

    def alias(self, table: Table, stem: str, *, once: bool = True) -> FromClause:
        """``table`` under a name that no table has: ``stem`` itself when free, else the
        first free ``stem<n>``. With ``once`` no later alias takes the name again (the
        ``rel<n>`` of nested relations share a statement); the holds registry's occurs
        once per statement, so every rule may call it the same."""
        candidates = (f"{stem}{n}" if n else stem for n in count(0))
        name = next(c for c in candidates if c.lower() not in self._taken)
        if once:
            self._taken.add(name.lower())
        return table.alias(name)

    def condition(self, cond: Any, table: FromClause) -> ColumnElement[bool]:
        if isinstance(cond, list):
            return or_(false(), *(self.condition(c, table) for c in cond))
        assert isinstance(cond, ConditionMap)
        parts: list[ColumnElement[bool]] = []
        for name, test in cond.columns():
            col = table.c[name]
            if isinstance(test, Tests):
                parts.extend(self.test(col, op, value, test.unit) for op, value in test.items())
            else:
                parts.append(self.test(col, "eq", test))
        if cond.related is not None:
            parts.append(self.related(cond.related, table))
        if cond.all_ is not None:
            parts.append(and_(true(), *(self.condition(c, table) for c in cond.all_)))
        if cond.any_ is not None:
            parts.append(or_(false(), *(self.condition(c, table) for c in cond.any_)))
        if cond.not_ is not None:
            parts.append(not_(self.condition(cond.not_, table)))
        return and_(true(), *parts)

    def test(self, col: Any, op: str, value: Any, unit: str | None = None) -> ColumnElement[bool]:
        if op == "is_null":
            return col.is_(None) if value else col.is_not(None)  # type: ignore[no-any-return]
        if op == "ne":
            return col.is_distinct_from(self.value(col, value))  # type: ignore[no-any-return]
        if op == "not_in":
            return or_(col.is_(None), col.not_in([self.value(col, v) for v in value]))
        expr: ColumnElement[bool]
        if op == "in":
            expr = col.in_([self.value(col, v) for v in value])
        elif op in ("older_than", "newer_than"):
            bound = self.instant(col, value, unit)
            expr = col < bound if op == "older_than" else col >= bound
        elif op in ("starts_with", "ends_with", "contains"):
            # Literal and case-sensitive on every database (SPEC 2); the SQL is per backend.
            expr = TextMatch(col, op, value)
        else:
            v = self.value(col, value)
            expr = {
                "eq": lambda: col == v,
                "lt": lambda: col < v,
                "le": lambda: col <= v,
                "gt": lambda: col > v,
                "ge": lambda: col >= v,
            }[op]()
        if col.nullable:
            # NULL compared is unknown; make it FALSE so that `not` reads as the SPEC says.
            return and_(col.is_not(None), expr)
        return expr

    def related(self, rel: Related, ours: FromClause) -> ColumnElement[bool]:
        base = self.catalog.table(rel.table)
        assert base is not None
        ours_table = ours if isinstance(ours, Table) else ours.element  # type: ignore[attr-defined]
        mapping, reason = self.catalog.link(rel.on, base, ours_table)
        assert mapping is not None, reason
        theirs = self.alias(base, f"rel{next(self._aliases)}")
        links = [theirs.c[t] == ours.c[o] for t, o in mapping.items()]
        where = [self.condition(rel.where, theirs)] if rel.where is not None else []
        return exists(select(1).select_from(theirs).where(*links, *where))

    def through(
        self, value: str | RelatedColumn, ours: FromClause
    ) -> tuple[list[FromClause], list[ColumnElement[bool]], Any]:
        """A value read in ``ours`` or through relations (a related clock or subject):
        the related tables (aliased), the conditions linking them to ``ours`` and each
        other (with their ``where``), and the column read, in the last of them."""
        relations, column = hops(value)
        froms: list[FromClause] = []
        conds: list[ColumnElement[bool]] = []
        for rel in relations:
            base = self.catalog.table(rel.table)
            assert base is not None
            ours_table = ours if isinstance(ours, Table) else ours.element  # type: ignore[attr-defined]
            mapping, reason = self.catalog.link(rel.on, base, ours_table)
            assert mapping is not None, reason
            theirs = self.alias(base, f"rel{next(self._aliases)}")
            conds.extend(theirs.c[t] == ours.c[o] for t, o in mapping.items())
            if rel.where is not None:
                conds.append(self.condition(rel.where, theirs))
            froms.append(theirs)
            ours = theirs
        return froms, conds, ours.c[column]

    def instant(self, col: Any, period: Period, unit: str | None = None) -> Any:
        """``now - period`` in the column's own terms, as a bound value."""
        instant = cutoff(self.now, period, self.timezone)
        if unit is not None:
            return unix_bound(instant, unit)
        return adapt_instant(col, instant, self.timezone)

    def value(self, col: Any, value: Any) -> Any:
        # In the column's type, as stage 3 checked it (``retention.literals``): a date's
        # text is bound as a date, never compared as text or refused by the database.
        value = in_column_type(value, col.type, self.catalog.dialect)
        if isinstance(value, datetime) and isinstance(col.type, DateTime):
            return adapt_instant(col, value if value.tzinfo else value.replace(tzinfo=UTC))
        return value


def unix_bound(instant: datetime, unit: str) -> int:
    """The cutoff as a whole number of Unix ``unit``s: for whole numbers,
    ``clock < cutoff`` is ``clock < ceil(cutoff)`` (and ``>=`` likewise); rounding down,
    or going through a float, would move the unit just before the cutoff."""
    micros = (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    per_unit = 1000 if unit == "milliseconds" else 1_000_000
    return -(-micros // per_unit)


def adapt_instant(col: Any, instant: datetime, timezone: str = "UTC") -> Any:
    """An aware UTC instant as the column stores it: naive UTC, aware, or a date.

    A DATE column holds a calendar day, which only has meaning on a wall clock: the
    instant becomes its date in the policy's timezone, and ``day < that date`` keeps the
    cutoff's own day (erring on the side of keeping).
    """
    if isinstance(col.type, DateTime) and not col.type.timezone:
        return instant.astimezone(UTC).replace(tzinfo=None)
    if isinstance(col.type, Date) and not isinstance(col.type, DateTime):
        return instant.astimezone(ZoneInfo(timezone)).date()
    if isinstance(instant, date) and not isinstance(instant, datetime):
        return instant
    return instant.astimezone(UTC)
