"""Pure: (policy, reflected schema, now, backend) -> plan. No connection is touched.

``rules.py`` plans each rule's steps; ``conditions.py`` compiles the policy's conditions
to SQL expressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from retention.backends import Backend
from retention.catalog import Catalog
from retention.plan import Plan
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
    chosen = [r for r in policy.rules if (r.name in rules if rules is not None else r.enabled)]
    planner = RulePlanner(policy, catalog, now, backend)
    return Plan(tuple(planner.plan(rule) for rule in chosen), now, policy_sha256, backend.dialect)


__all__ = ["make_plan"]
