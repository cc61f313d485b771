"""What a rule needs to drop a RANGE partition of its table whole (``plan.WholePartitions``).

Only a delete rule whose clock is its table's own column qualifies: a partition's bounds
say nothing about a related row's age, and anonymising keeps the rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable, Table, func, select, tuple_

from retention.plan import WholePartitions
from retention.policy.model import Rule

if TYPE_CHECKING:
    from retention.planner.rules import RulePlanner


def whole_partitions(
    planner: RulePlanner, rule: Rule, table: Table, key: tuple[str, ...], cut: datetime
) -> WholePartitions | None:
    if rule.action != "delete" or not isinstance(rule.clock, str):
        return None
    froms, _, clock = planner.compiler.through(rule.clock, table)
    if froms:
        return None
    dependents: list[tuple[str, Executable]] = []
    for cascade in rule.cascade:
        child = planner.table(cascade.table)
        if child is table:
            return None  # a row's dependents in its own partition: left to the rows path
        mapping, reason = planner.catalog.link(cascade.on, child, table)
        assert mapping is not None, reason
        ours = select(*[table.c[p] for p in mapping.values()])
        theirs: Any = [child.c[c] for c in mapping]
        linked = theirs[0].in_(ours) if len(theirs) == 1 else tuple_(*theirs).in_(ours)
        dependents.append((child.fullname, select(func.count()).select_from(child).where(linked)))
    key_cols = [table.c[k] for k in key]
    return WholePartitions(
        clock=clock.name,
        cut=planner.clock_value(rule, clock, cut),
        keys=select(*key_cols).order_by(*key_cols),
        dependents=tuple(dependents),
    )
