"""Pure: (policy, reflected schema, now, backend) -> plan. No connection is touched.

Rules are planned in the order they run (``order.py``): file order, except
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
from retention.planner.order import ordered
from retention.planner.rules import RulePlanner
from retention.policy.model import Policy


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

    order, notes = ordered(policy, catalog, chosen)
    planner = RulePlanner(policy, catalog, now, backend)
    planned = tuple(
        replace(
            planner.plan(policy.rules[i]),
            acts_first=notes[i].acts_first,
            moved_after=notes[i].moved_after,
        )
        for i in order
    )
    return Plan(planned, now, policy_sha256, backend.dialect)


__all__ = ["make_plan"]
