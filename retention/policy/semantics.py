"""Checks that relate several parts of a policy file; no database needed.

The model checks each value on its own; these check what only the whole file can tell:
unique rule names, ``hold_subject`` without a ``holds`` registry, ``set`` where the action
needs or forbids it, that an anonymise rule can recognise what it already did, and that
the rules can be ordered (``order.py``; by the tables' names as written, so with the
schema ``validate`` finds also the cycles that other spellings or ON DELETE CASCADE make).
"""

from __future__ import annotations

from retention.errors import Problem
from retention.policy.locator import Locator, Path
from retention.policy.model import Cascade, Policy, Rule
from retention.policy.order import check_order
from retention.policy.strategies import is_recognisable, strategy_name
from retention.policy.walk import Node, NodeKind, walk


def check(policy: Policy, locator: Locator) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}

    def visit(node: Node) -> None:
        if node.kind is NodeKind.RULE:
            rule, i = node.item, node.path[-1]
            assert isinstance(i, int)
            if rule.name in seen:
                problems.append(
                    locator.problem(
                        (*node.path, "name"),
                        f"duplicate rule name (also rule #{seen[rule.name] + 1}); "
                        "names must be unique",
                    )
                )
            seen.setdefault(rule.name, i)
            problems.extend(_check_rule(policy, rule, node.path, locator))
        elif node.kind is NodeKind.CASCADE:
            problems.extend(_check_cascade(node.item, node.path, locator))

    walk(policy, visit)
    problems.extend(check_order(policy, locator))
    return problems


def _check_rule(policy: Policy, rule: Rule, at: Path, locator: Locator) -> list[Problem]:
    out: list[Problem] = []
    if rule.hold_subject is not None and policy.holds is None:
        out.append(
            locator.problem(
                (*at, "hold_subject"),
                "hold_subject needs a 'holds' registry at the top of the file",
            )
        )
    if rule.action == "anonymise":
        if not rule.set:
            out.append(locator.problem((*at, "action"), "an anonymise rule needs 'set'"))
        else:
            out.extend(_check_set(rule, at, locator))
    else:
        if rule.set is not None:
            out.append(
                locator.problem(
                    (*at, "set"), "'set' belongs to anonymise rules; this rule deletes", at_key=True
                )
            )
        if rule.mark is not None:
            out.append(
                locator.problem(
                    (*at, "mark"),
                    "'mark' belongs to anonymise rules; this rule deletes",
                    at_key=True,
                )
            )
    if rule.key and rule.set:
        for column in rule.key:
            if column in rule.set:
                out.append(
                    locator.problem(
                        (*at, "set", column),
                        f"'{column}' is part of the key; "
                        "anonymising it would lose the row's identity",
                    )
                )
    return out


def _check_set(rule: Rule, at: Path, locator: Locator) -> list[Problem]:
    out: list[Problem] = []
    assert rule.set is not None
    if rule.mark is not None and rule.mark in rule.set:
        out.append(
            locator.problem(
                (*at, "set", rule.mark), f"'{rule.mark}' is the mark column; it cannot also be set"
            )
        )
    if isinstance(rule.clock, str) and rule.clock in rule.set:
        out.append(
            locator.problem(
                (*at, "set", rule.clock),
                f"'{rule.clock}' is the clock; changing it would change which rows are due",
            )
        )
    if rule.mark is None:
        for column, strategy in rule.set.items():
            if not is_recognisable(strategy):
                out.append(
                    locator.problem(
                        (*at, "set", column),
                        f"the result of {strategy_name(strategy)} cannot be recognised, so a "
                        "second run would anonymise again: name a 'mark' column "
                        "(or give hash a prefix)",
                    )
                )
    return out


def _check_cascade(cascade: Cascade, at: Path, locator: Locator) -> list[Problem]:
    out: list[Problem] = []
    if cascade.action == "anonymise" and not cascade.set:
        out.append(locator.problem((*at, "action"), "an anonymise cascade needs 'set'"))
    if cascade.action != "anonymise" and cascade.set is not None:
        out.append(
            locator.problem(
                (*at, "set"),
                f"'set' belongs to anonymise cascades; this one is '{cascade.action}'",
                at_key=True,
            )
        )
    if cascade.action == "detach" and cascade.cascade:
        out.append(
            locator.problem(
                (*at, "cascade"), "a detached row stays; it cannot have dependents removed with it"
            )
        )
    return out
