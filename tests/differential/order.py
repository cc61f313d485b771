"""The oracle's rule order, from SPEC section 2 ("Rule order") alone: file order, except
that a rule whose conditions read a table (``related``, at any depth, or the holds
registry behind ``hold_subject``) runs after every rule that deletes from that table,
itself or through a ``delete`` cascade.

Shares no code with ``retention.policy.order``.
"""

from __future__ import annotations

from typing import Any


def run_order(policy: dict[str, Any]) -> list[int]:
    """SPEC "Rule order": file order, except that a rule reading a table (through its
    conditions' ``related`` or the holds registry) runs after every rule deleting from it."""
    rules = policy["rules"]
    reads = [_reads(r, policy) for r in rules]
    deletes = [_deletes(r) for r in rules]
    left = list(range(len(rules)))
    order: list[int] = []
    while left:
        ready = [i for i in left if not any(j != i and reads[i] & deletes[j] for j in left)]
        assert ready, "a cycle: validation refuses the policy"
        order.append(ready[0])
        left.remove(ready[0])
    return order


def _reads(rule: dict[str, Any], policy: dict[str, Any]) -> set[str]:
    found: set[str] = set()

    def walk(cond: Any) -> None:
        if isinstance(cond, list):
            for c in cond:
                walk(c)
        elif isinstance(cond, dict):
            for key, value in cond.items():
                if key == "related":
                    found.add(value["table"])
                    walk(value.get("where"))
                elif key in ("all", "any", "not"):
                    walk(value)

    walk(rule.get("where"))
    walk(rule.get("unless"))
    if "hold_subject" in rule:
        found.add(policy["holds"]["table"])
    return found


def _deletes(rule: dict[str, Any]) -> set[str]:
    out = {rule["table"]} if rule["action"] == "delete" else set()

    def walk(cascades: list[dict[str, Any]]) -> None:
        for cascade in cascades:
            if cascade.get("action", "delete") == "delete":
                out.add(cascade["table"])
                walk(cascade.get("cascade", []))

    walk(rule.get("cascade", []))
    return out
