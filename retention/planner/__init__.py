"""Pure: (policy, reflected schema, now, backend) -> plan. No connection is touched.

Rules are planned in the order they run (``retention.policy.order``): file order, except
that a rule reading a table runs after the rules that delete from it.

``rules.py`` plans each rule's steps; ``conditions.py`` compiles the policy's conditions
to SQL expressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from retention.backends import Backend
from retention.catalog import Catalog
from retention.plan import Plan
from retention.planner.rules import RulePlanner
from retention.policy.model import Policy
from retention.policy.order import order_notes, rule_order


def make_plan(
    policy: Policy,
    catalog: Catalog,
    now: datetime,
    backend: Backend,
    *,
    policy_sha256: str = "",
    rules: Sequence[str] | None = None,
) -> Plan:
    """Compile the enabled rules (or the ``rules`` named) at the clock reading ``now``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    chosen = [
        i
        for i, r in enumerate(policy.rules)
        if (r.name in rules if rules is not None else r.enabled)
    ]

    def resolve(name: str) -> str:
        table = catalog.table(name)
        return table.fullname if table is not None else name

    order = rule_order(policy, resolve)
    notes = order_notes(policy, order, chosen, resolve)
    planner = RulePlanner(policy, catalog, now, backend)
    planned = tuple(
        replace(
            planner.plan(policy.rules[i]),
            acts_first=notes[i].acts_first,
            moved_after=notes[i].moved_after,
        )
        for i in order.order
        if i in notes
    )
    return Plan(planned, now, policy_sha256, backend.dialect)


__all__ = ["make_plan"]
