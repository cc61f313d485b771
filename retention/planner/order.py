"""The rule order (``retention.policy.order``) with the reflected schema's names: one
table however the file spells its schema, and the foreign keys ON DELETE CASCADE that
make the database delete dependents along with a rule's rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from retention.catalog import Catalog
from retention.errors import Problem
from retention.policy.locator import Locator
from retention.policy.model import Policy
from retention.policy.order import Notes, check_order, order_notes, rule_order


class _Names:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def resolve(self, name: str) -> str:
        table = self.catalog.table(name)
        return table.fullname if table is not None else name

    def follow(self, name: str) -> Iterable[str]:
        table = self.catalog.table(name)
        if table is None:
            return ()
        return [
            fk.parent.fullname
            for fk in self.catalog.foreign_keys_to(table)
            if (fk.ondelete or "").upper() == "CASCADE"
        ]


def ordered(
    policy: Policy, catalog: Catalog, chosen: Sequence[int]
) -> tuple[tuple[int, ...], dict[int, Notes]]:
    """The chosen rules (indices into ``policy.rules``) in run order, with their notes."""
    names = _Names(catalog)
    order = rule_order(policy, names.resolve, names.follow)
    notes = order_notes(policy, order, chosen, names.resolve, names.follow)
    return tuple(i for i in order.order if i in notes), notes


def order_problems(policy: Policy, catalog: Catalog, locator: Locator) -> list[Problem]:
    """A line per cycle in the rule order (SPEC section 2, "Rule order")."""
    names = _Names(catalog)
    return check_order(policy, locator, names.resolve, names.follow)
