"""The one walk over a policy's tree, for every check and compiler that needs it.

Nodes come in document order, each with its path in the file (for ``file:line:col``), the
table whose columns it names, and, for a ``related`` condition or a cascade, the table it
links to. A visitor returns ``False`` to skip a node's subtree (a check does when the
node's table does not exist, since nothing below it can be checked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from retention.policy.conditions import ConditionMap, Related
from retention.policy.locator import Path
from retention.policy.model import Cascade, Policy, RelatedColumn, Rule


class NodeKind(Enum):
    HOLDS = "holds"  # the legal-hold registry; its ``active`` conditions below it
    RULE = "rule"  # its where, unless, related clock or subject, and cascades below it
    CONDITION = "condition"  # one condition map (a list's items are nodes of their own)
    RELATED = "related"  # a condition on linked rows; their ``where`` below it
    CASCADE = "cascade"  # dependent rows; their ``where`` and nested cascades below it


@dataclass(frozen=True)
class Node:
    kind: NodeKind
    path: Path
    item: Any  # Holds | Rule | ConditionMap | Related | Cascade, as ``kind`` says
    table: str  # the table whose columns the node names
    links_to: str | None = None  # related / cascade: the table whose rows it links to
    rule: Rule | None = None  # the rule the node belongs to (None under holds)


Visit = Callable[[Node], bool | None]


def walk(policy: Policy, visit: Visit) -> None:
    """Call ``visit`` on every node, parents before children; ``False`` skips a subtree."""
    holds = policy.holds
    if holds is not None:
        node = Node(NodeKind.HOLDS, ("holds",), holds, holds.table)
        if visit(node) is not False and holds.active is not None:
            _condition(holds.active, holds.table, ("holds", "active"), None, visit)
    for i, rule in enumerate(policy.rules):
        at: Path = ("rules", i)
        if visit(Node(NodeKind.RULE, at, rule, rule.table, rule=rule)) is False:
            continue
        if rule.where is not None:
            _condition(rule.where, rule.table, (*at, "where"), rule, visit)
        if rule.unless is not None:
            _condition(rule.unless, rule.table, (*at, "unless"), rule, visit)
        for key in ("clock", "hold_subject"):
            value = getattr(rule, key)
            if isinstance(value, RelatedColumn):
                _through(value, rule.table, (*at, key), rule, visit)
        for j, cascade in enumerate(rule.cascade):
            _cascade(cascade, rule.table, (*at, "cascade", j), rule, visit)


def nodes(policy: Policy) -> list[Node]:
    """Every node of the policy, in walking order."""
    found: list[Node] = []
    walk(policy, found.append)
    return found


def _condition(cond: Any, table: str, at: Path, rule: Rule | None, visit: Visit) -> None:
    if isinstance(cond, list):
        for j, item in enumerate(cond):
            _condition(item, table, (*at, j), rule, visit)
        return
    assert isinstance(cond, ConditionMap)
    if visit(Node(NodeKind.CONDITION, at, cond, table, rule=rule)) is False:
        return
    if cond.related is not None:
        _related(cond.related, table, (*at, "related"), rule, visit)
    for key, items in (("all", cond.all_), ("any", cond.any_)):
        for j, item in enumerate(items or ()):
            _condition(item, table, (*at, key, j), rule, visit)
    if cond.not_ is not None:
        _condition(cond.not_, table, (*at, "not"), rule, visit)


def _related(rel: Related, ours: str, at: Path, rule: Rule | None, visit: Visit) -> None:
    node = Node(NodeKind.RELATED, at, rel, rel.table, links_to=ours, rule=rule)
    if visit(node) is not False and rel.where is not None:
        _condition(rel.where, rel.table, (*at, "where"), rule, visit)


def _through(value: RelatedColumn, ours: str, at: Path, rule: Rule, visit: Visit) -> None:
    """A clock or subject read in a related row: each relation is a ``related`` node
    (so its table is checked, reflected and ordered like a condition's), the next one
    linking to the table of the one before."""
    rel = value.related
    node = Node(NodeKind.RELATED, (*at, "related"), rel, rel.table, links_to=ours, rule=rule)
    if visit(node) is False:
        return
    if rel.where is not None:
        _condition(rel.where, rel.table, (*at, "related", "where"), rule, visit)
    if isinstance(value.column, RelatedColumn):
        _through(value.column, rel.table, (*at, "column"), rule, visit)


def _cascade(cascade: Cascade, parent: str, at: Path, rule: Rule, visit: Visit) -> None:
    node = Node(NodeKind.CASCADE, at, cascade, cascade.table, links_to=parent, rule=rule)
    if visit(node) is False:
        return
    if cascade.where is not None:
        _condition(cascade.where, cascade.table, (*at, "where"), rule, visit)
    for j, child in enumerate(cascade.cascade):
        _cascade(child, cascade.table, (*at, "cascade", j), rule, visit)
