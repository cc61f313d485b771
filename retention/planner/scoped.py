"""Pure: a rule planned for a selection other than its cutoff.

``retention erase`` plans a rule for one data subject: ``hold_subject = :subject`` (read
through its relations, as holds read it) in place of ``clock < :cutoff``, whatever the
rows' age; the rule's ``where``, cascades and holds stay, its ``unless`` too unless the
rule says ``erase: {ignore_unless: true}``. ``retention audit reapply`` plans a rule for
a page of keys the audit log records as removed: the keys in place of the cutoff, without
``where`` and ``unless`` (the removal was decided when it was recorded), with its cascades
and holds. Everything else (batches, locks, cascades, the apply step, the audit records)
is the run's plan, so the executor runs these plans as it runs any other.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, bindparam, exists, false, select, tuple_

from retention.backends import Backend
from retention.catalog import Catalog, is_integer
from retention.literals import LiteralMisfit, in_column_type
from retention.plan import GUARD_COUNTS, RulePlan
from retention.planner.conditions import Compiler
from retention.planner.rules import RulePlanner
from retention.policy.fields import MAX_INT
from retention.policy.model import Guard, Policy, Rule

#: the subject id, bound at planning time (named so ``--show-sql`` reads well)
SUBJECT = "subject"
#: a request is not a periodic sweep: no guard stops it (the subject's rows are wanted)
UNGUARDED = Guard(max_rows=MAX_INT, max_fraction=1.0)


class SubjectPlanner(RulePlanner):
    """Plans a rule for the rows of one data subject (``retention erase``)."""

    def __init__(
        self, policy: Policy, catalog: Catalog, now: datetime, backend: Backend, subject: Any
    ) -> None:
        super().__init__(policy, catalog, now, backend)
        self.subject = subject

    def plan(self, rule: Rule) -> RulePlan:
        if rule.erase.ignore_unless:
            rule = rule.model_copy(update={"unless": None})
        planned = super().plan(rule)
        # The request's time stands for the cutoff in its records: every row of the
        # subject goes, whatever its age.
        return _unguarded(planned, self.now)

    def past(self, rule: Rule, table: Table, cut: datetime) -> ColumnElement[bool]:
        assert rule.hold_subject is not None, "only rules with hold_subject are erased"
        froms, links, column = self.compiler.through(rule.hold_subject, table)
        value = subject_value(self.subject, column, self.catalog.dialect)
        if value is None:
            return false()  # the id cannot be in this column
        same = column == bindparam(SUBJECT, value, type_=column.type)
        if not froms:
            return same  # type: ignore[no-any-return]
        return exists(select(1).select_from(*froms).where(*links, same))


class KeysPlanner(RulePlanner):
    """Plans a rule for a page of keys the log records as removed (``audit reapply``)."""

    def __init__(
        self,
        policy: Policy,
        catalog: Catalog,
        now: datetime,
        backend: Backend,
        keys: Sequence[tuple[Any, ...]],
    ) -> None:
        super().__init__(policy, catalog, now, backend)
        self.keys = list(keys)

    def plan(self, rule: Rule) -> RulePlan:
        rule = rule.model_copy(update={"unless": None, "where": None})
        return _unguarded(super().plan(rule), self.now)

    def past(self, rule: Rule, table: Table, cut: datetime) -> ColumnElement[bool]:
        key = rule.key or [c.name for c in table.primary_key.columns]
        cols = [table.c[k] for k in key]
        if len(cols) == 1:
            return cols[0].in_([k[0] for k in self.keys])
        return tuple_(*cols).in_(self.keys)


def subject_value(subject: str, column: Any, dialect: str) -> Any:
    """The subject id in the column's type, or None when the column cannot hold it (a
    text id against an integer column): then no row of that rule is the subject's."""
    value: Any = subject
    if is_integer(column.type) and re.fullmatch(r"-?[0-9]{1,20}", subject):
        value = int(subject)
    try:
        return in_column_type(value, column.type, dialect)
    except LiteralMisfit:
        return None


def hold_check(policy: Policy, catalog: Catalog, now: datetime, subject: str) -> Select[Any] | None:
    """``SELECT 1`` from the holds registry where an active hold names ``subject``; None
    when there is no registry or its subject column cannot hold the id."""
    holds = policy.holds
    if holds is None:
        return None
    registry = catalog.table(holds.table)
    assert registry is not None, f"unchecked table {holds.table}"
    column = registry.c[holds.subject_column]
    value = subject_value(subject, column, catalog.dialect)
    if value is None:
        return None
    compiler = Compiler(catalog, now, policy.defaults.timezone)
    active = [compiler.condition(holds.active, registry)] if holds.active else []
    return select(1).select_from(registry).where(column == value, *active).limit(1)


def _unguarded(planned: RulePlan, now: datetime) -> RulePlan:
    """No guard, so no guard count: these plans are counted exactly (their records keep
    ``kept_unless`` and ``kept_holds``)."""
    steps = tuple(s for s in planned.steps if s.kind not in GUARD_COUNTS)
    return replace(planned, guard=UNGUARDED, cutoff=now, next_run=None, steps=steps)
