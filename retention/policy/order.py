"""The order rules run in (SPEC section 2, "Rule order").

Rules run in file order, except that a rule that reads a table (through ``related`` in
its ``where`` or ``unless``, a related clock, or the holds registry behind
``hold_subject``) runs after every rule that deletes from that table, itself or by a
``delete`` cascade. Otherwise the first run would keep a row for a related row that a
later rule deletes, and the second run would delete it: the second run right after the
first must change nothing. A rule's reads of its own deletes are no constraint (it
cannot run after itself). When the constraints form a cycle no order satisfies them, and
the policy is refused, naming the rules.

Tables are compared by the names ``resolve`` gives them: the reflected table's full name
when a schema is at hand, so ``tickets`` and ``public.tickets`` are one table; and with
the schema, a delete also deletes from the tables that ``follow`` names (foreign keys
ON DELETE CASCADE). This module sees neither: ``retention.planner.order`` passes them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from retention.errors import Problem
from retention.policy.locator import Locator, Path
from retention.policy.model import Cascade, Policy, Rule
from retention.policy.walk import NodeKind, nodes

Resolve = Callable[[str], str]
Follow = Callable[[str], Iterable[str]]  # tables whose rows a delete from a table removes


def _nothing(table: str) -> Iterable[str]:
    return ()


@dataclass(frozen=True)
class Read:
    """A rule reads ``table`` at ``path`` (the place a cycle is reported)."""

    table: str
    path: Path


@dataclass(frozen=True)
class RuleOrder:
    """The run order of a policy's rules, by index into ``policy.rules``."""

    order: tuple[int, ...]  # every rule once
    # (deleter, reader) -> the read that puts the reader after the deleter
    edges: dict[tuple[int, int], Read] = field(default_factory=dict)
    cycles: tuple[tuple[int, ...], ...] = ()  # each a cycle of rule indices, in edge order


def deletes(rule: Rule, resolve: Resolve = str, follow: Follow = _nothing) -> set[str]:
    """The tables ``rule`` deletes rows from: its own (a delete rule), its ``delete``
    cascades', and those the database deletes with them (``follow``)."""
    out: set[str] = set()

    def add(table: str) -> None:
        if table not in out:
            out.add(table)
            for dependent in follow(table):
                add(dependent)

    def walk(cascades: Sequence[Cascade]) -> None:
        for cascade in cascades:
            if cascade.action == "delete":
                add(resolve(cascade.table))
                walk(cascade.cascade)

    if rule.action == "delete":
        add(resolve(rule.table))
    walk(rule.cascade)
    return out


def writes(rule: Rule, resolve: Resolve = str) -> set[str]:
    """The tables ``rule`` changes: its own, and every cascade's (delete, anonymise, detach)."""
    out = {resolve(rule.table)}

    def walk(cascades: Sequence[Cascade]) -> None:
        for cascade in cascades:
            out.add(resolve(cascade.table))
            walk(cascade.cascade)

    walk(rule.cascade)
    return out


def reads(policy: Policy, resolve: Resolve = str) -> list[list[Read]]:
    """Per rule (by index), the tables read through ``related`` or the holds registry:
    their rows decide which of the rule's rows are due."""
    found: list[list[Read]] = [[] for _ in policy.rules]
    registry: list[Read] = []
    index = {id(rule): i for i, rule in enumerate(policy.rules)}
    for node in nodes(policy):
        if node.kind is NodeKind.HOLDS:
            registry.append(Read(resolve(node.table), (*node.path, "table")))
        elif node.kind is NodeKind.RELATED:
            if node.rule is None:
                registry.append(Read(resolve(node.table), (*node.path, "table")))
            elif "cascade" not in node.path:
                # A cascade's own conditions choose dependents of rows already due.
                found[index[id(node.rule)]].append(Read(resolve(node.table), (*node.path, "table")))
    if policy.holds is not None:
        for i, rule in enumerate(policy.rules):
            if rule.hold_subject is not None:
                found[i].extend(Read(r.table, ("rules", i, "hold_subject")) for r in registry)
    return found


def rule_order(policy: Policy, resolve: Resolve = str, follow: Follow = _nothing) -> RuleOrder:
    """File order, moved only as far as the reads require; cycles found, never raised."""
    rules = policy.rules
    deleted = [deletes(rule, resolve, follow) for rule in rules]
    edges: dict[tuple[int, int], Read] = {}
    for reader, rule_reads in enumerate(reads(policy, resolve)):
        for read in rule_reads:
            for deleter, tables in enumerate(deleted):
                if deleter != reader and read.table in tables:
                    edges.setdefault((deleter, reader), read)
    after: list[set[int]] = [set() for _ in rules]  # after[d]: the rules that wait for d
    waiting = [0] * len(rules)
    for deleter, reader in edges:
        after[deleter].add(reader)
        waiting[reader] += 1
    # Kahn's algorithm, always taking the earliest rule in the file that may run.
    ready = [i for i, n in enumerate(waiting) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in sorted(after[i]):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    # Rules on or behind a cycle keep their file order at the end, so a plan still holds
    # every rule; validation refuses the policy before any plan is run.
    placed = set(order)
    stuck = [i for i in range(len(rules)) if i not in placed]
    return RuleOrder((*order, *stuck), edges, _cycles(stuck, after))


def _cycles(stuck: list[int], after: list[set[int]]) -> tuple[tuple[int, ...], ...]:
    """One shortest cycle through each earliest rule not yet on a cycle found."""
    out: list[tuple[int, ...]] = []
    covered: set[int] = set()
    for start in stuck:
        if start in covered:
            continue
        cycle = _shortest_cycle(start, after, set(stuck))
        if cycle is not None:
            out.append(cycle)
            covered.update(cycle)
    return tuple(out)


def _shortest_cycle(start: int, after: list[set[int]], within: set[int]) -> tuple[int, ...] | None:
    previous: dict[int, int] = {}
    frontier = [start]
    while frontier:
        nxt: list[int] = []
        for i in frontier:
            for j in sorted(after[i] & within):
                if j == start:
                    path = [i]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return tuple(reversed(path))
                if j not in previous:
                    previous[j] = i
                    nxt.append(j)
        frontier = nxt
    return None  # waits on a cycle without being on one


def check_order(
    policy: Policy, locator: Locator, resolve: Resolve = str, follow: Follow = _nothing
) -> list[Problem]:
    """One problem per cycle, at its first rule's read, naming every rule on it."""
    found = rule_order(policy, resolve, follow)
    problems = []
    for cycle in found.cycles:
        steps = []
        for k, deleter in enumerate(cycle):
            reader = cycle[(k + 1) % len(cycle)]
            table = found.edges[(deleter, reader)].table
            steps.append(
                f"'{policy.rules[reader].name}' reads {table}, "
                f"which '{policy.rules[deleter].name}' deletes from"
            )
        names = ", ".join(f"'{policy.rules[i].name}'" for i in sorted(cycle))
        read = found.edges[(cycle[-1], cycle[0])]
        problems.append(
            locator.problem(
                read.path,
                f"rules {names} cannot be ordered: a rule that reads a table runs after the "
                f"rules that delete from it, and {'; '.join(steps)}; "
                "drop one of these reads or delete those rows in one rule",
            )
        )
    return problems


def order_notes(
    policy: Policy,
    order: RuleOrder,
    chosen: Sequence[int],
    resolve: Resolve = str,
    follow: Follow = _nothing,
) -> dict[int, Notes]:
    """Per chosen rule, what ``plan`` says about the chosen rules that run before it."""
    running = [i for i in order.order if i in set(chosen)]
    acting = {
        i: writes(policy.rules[i], resolve) | deletes(policy.rules[i], resolve, follow)
        for i in running
    }
    out: dict[int, Notes] = {}
    for k, i in enumerate(running):
        own = resolve(policy.rules[i].table)
        earlier = running[:k]
        first = tuple(policy.rules[j].name for j in earlier if own in acting[j])
        moved = tuple(
            (policy.rules[d].name, read.table)
            for (d, r), read in sorted(order.edges.items())
            if r == i and d > i and d in earlier
        )
        out[i] = Notes(first, moved)
    return out


@dataclass(frozen=True)
class Notes:
    """``acts_first``: earlier rules (in run order) that change this rule's table;
    ``moved_after``: (rule, table) for each later rule in the file that runs first,
    because it deletes from a table this rule reads."""

    acts_first: tuple[str, ...] = ()
    moved_after: tuple[tuple[str, str], ...] = ()
