"""Stage three of validation: a policy held against the real, reflected schema.

Tables, columns and keys must exist; the clock must be a date/time column (or an integer
with ``clock_unit``); each anonymisation strategy must fit its column's type, nullability
and uniqueness; ``on`` links must name real columns (or be implied by exactly one foreign
key); and a foreign key that would block a delete must be covered by ``cascade`` or by
ON DELETE CASCADE / SET NULL. Every problem is one ``file:line:col`` line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, UniqueConstraint

from retention.catalog import (
    Catalog,
    Wanted,
    describe_type,
    is_datetime,
    is_integer,
    is_text,
    is_unique,
    is_unique_set,
    on_from_fk,
    suggest,
)
from retention.errors import Problem
from retention.literals import LiteralMisfit, in_column_type
from retention.planner.order import order_problems
from retention.policy.conditions import ConditionMap, Tests
from retention.policy.fields import TEXT_TESTS, TIME_TESTS
from retention.policy.locator import Locator, Path
from retention.policy.model import Cascade, Holds, Policy, RelatedColumn, Rule
from retention.policy.strategies import (
    Strategy,
    ValueStrategy,
)
from retention.policy.walk import Node, NodeKind, nodes, walk
from retention.strategy_fit import strategy_misfit


class _Checker:
    def __init__(self, catalog: Catalog, locator: Locator) -> None:
        self.catalog = catalog
        self.locator = locator
        self.problems: list[Problem] = []

    def add(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.locator.problem(path, message, at_key=at_key))

    def table(self, name: str, path: Path) -> Table | None:
        table = self.catalog.table(name)
        if table is None:
            self.add(path, f"no table '{name}' in the database{self.catalog.suggest_table(name)}")
        return table

    def col(self, table: Table, name: str, path: Path) -> Any:
        found = table.columns.get(name)
        if found is None:
            hint = suggest(name, table.columns.keys())
            self.add(path, f"no column '{name}' in {table.name}{hint}")
        return found

    def visit(self, node: Node) -> bool:
        """Check one node; False (skip what is below) when its table does not exist."""
        if node.kind is NodeKind.CONDITION:
            table = self.catalog.table(node.table)
            assert table is not None, "a condition is visited only when its table exists"
            self.condition(node.item, table, node.path)
            return True
        table = self.table(node.table, (*node.path, "table"))
        if table is None:
            return False
        if node.kind is NodeKind.RULE:
            self.rule(node.item, table, node.path)
        elif node.kind is NodeKind.HOLDS:
            self.holds(node.item, table)
        else:
            assert node.links_to is not None
            ours = self.catalog.table(node.links_to)
            assert ours is not None, "a child is visited only when its parent's table exists"
            if node.kind is NodeKind.RELATED:
                self.link(node.item.on, table, ours, node.path)
            else:
                self.cascade(node.item, table, ours, node.path)
        return True

    # -- rules ------------------------------------------------------------------------

    def rule(self, rule: Rule, table: Table, at: Path) -> None:
        if rule.key:
            for j, name in enumerate(rule.key):
                key_col = self.col(table, name, (*at, "key", j))
                # A unique key may allow NULL: those rows are never selected, and `plan`
                # counts them as unaddressable (SPEC 2).
                if key_col is not None and key_col.nullable and not _unique_key(table, rule.key):
                    self.add(
                        (*at, "key", j),
                        f"key column '{name}' is nullable: a NULL key cannot name its row; "
                        "use NOT NULL columns",
                    )
        elif not table.primary_key.columns:
            self.add(
                (*at, "table"), f"table {table.name} has no primary key: name the 'key' columns"
            )
        self.clock(rule, table, at)
        if rule.hold_subject is not None:
            found = self.through(rule.hold_subject, table, (*at, "hold_subject"))
            if found is not None:
                self.col(*found)
        if rule.action == "anonymise" and rule.set:
            self.strategies(rule.set, table, (*at, "set"))
            key_names = rule.key or [c.name for c in table.primary_key.columns]
            for name in rule.set:
                if name in key_names:
                    self.add(
                        (*at, "set", name), f"'{name}' is part of the key; it cannot be anonymised"
                    )
        if rule.mark is not None:
            mark = self.col(table, rule.mark, (*at, "mark"))
            if mark is not None and not (is_datetime(mark.type) and mark.nullable):
                self.add((*at, "mark"), f"mark '{rule.mark}' must be a nullable date/time column")
        if rule.action == "delete":
            self.blocking_keys(table, rule.cascade, (*at,))

    def through(
        self, value: str | RelatedColumn, table: Table, at: Path, *, one_row: bool = False
    ) -> tuple[Table, str, Path] | None:
        """The table a clock or subject is read in, its column, and where that column is
        written; None when a relation cannot be followed (reported where it is written,
        as a ``related`` node). With ``one_row``, each relation must reach one row."""
        while isinstance(value, RelatedColumn):
            rel = value.related
            theirs = self.catalog.table(rel.table)
            if theirs is None:
                return None
            mapping, _ = self.catalog.link(rel.on, theirs, table)
            if mapping is None or not set(mapping) <= set(theirs.columns.keys()):
                return None
            if one_row and not is_unique_set(theirs, mapping):
                cols = ", ".join(mapping)
                self.add(
                    (*at, "related", "on") if rel.on else (*at, "related", "table"),
                    f"the clock is read in {theirs.name}({cols}), which is not unique (no "
                    "primary key or unique constraint on it): a row would have several "
                    "ages; link through unique columns",
                    at_key=rel.on is not None,
                )
            table, value, at = theirs, value.column, (*at, "column")
        return table, value, at

    def clock(self, rule: Rule, table: Table, at: Path) -> None:
        found = self.through(rule.clock, table, (*at, "clock"), one_row=True)
        if found is None:
            return
        table, name, where = found
        clock = self.col(table, name, where)
        if clock is None:
            return
        if where != (*at, "clock"):
            name = f"{table.name}.{name}"  # read through a relation
        kind = describe_type(clock)
        if rule.clock_unit is not None:
            if not is_integer(clock.type):
                self.add(
                    (*at, "clock_unit"),
                    f"clock_unit needs an integer clock; '{name}' is {kind}",
                )
        elif is_integer(clock.type):
            self.add(
                where,
                f"clock '{name}' is an integer: add clock_unit: seconds (or milliseconds)",
            )
        elif not is_datetime(clock.type):
            self.add(
                where,
                f"clock '{name}' is {kind}: it must be a date/time column "
                "(or an integer of Unix time with clock_unit)",
            )
        elif (odd := self.catalog.odd_values(table, clock)) is not None:
            # Compared as text, a Unix number sorts before every date: always due.
            self.add(
                where,
                f"clock '{name}' holds {odd.describe()}, which would compare as text: "
                "store ISO 8601 UTC text ('YYYY-MM-DD HH:MM:SS'), or Unix time in an "
                "integer column with clock_unit",
            )

    # -- conditions -------------------------------------------------------------------

    def condition(self, cond: ConditionMap, table: Table, at: Path) -> None:
        """The columns one condition map tests (its nested conditions are nodes of their own)."""
        for name, test in cond.columns():
            col = self.col(table, name, (*at, name))
            if col is None:
                continue
            if not isinstance(test, Tests):
                self.literal(test, col, (*at, name))
                continue
            if test.unit is not None and not is_integer(col.type):
                self.add(
                    (*at, name, "unit"),
                    f"unit needs an integer column of Unix time; '{name}' is {describe_type(col)}",
                )
            for op, value in test.items():
                if op in TIME_TESTS:
                    self.time_test(op, test.unit, col, (*at, name, op))
                elif op in TEXT_TESTS and not is_text(col.type):
                    self.add(
                        (*at, name, op),
                        f"{op} needs a text column; '{name}' is {describe_type(col)}",
                    )
                elif op in ("in", "not_in"):
                    for j, item in enumerate(value):
                        self.literal(item, col, (*at, name, op, j))
                elif op != "is_null":  # a text test's text must encode too
                    self.literal(value, col, (*at, name, op))

    def time_test(self, op: str, unit: str | None, col: Any, at: Path) -> None:
        """older_than/newer_than compare a date/time, or Unix time with ``unit`` (SPEC 2)."""
        if is_integer(col.type):
            if unit is None:
                self.add(at, f"'{col.name}' is an integer: add unit: seconds (or milliseconds)")
        elif not is_datetime(col.type):
            self.add(at, f"{op} needs a date/time column; '{col.name}' is {describe_type(col)}")

    def literal(self, value: Any, col: Any, at: Path) -> None:
        """A literal must fit its column's type (SPEC 2): the planner binds it converted."""
        try:
            in_column_type(value, col.type, self.catalog.dialect)
        except LiteralMisfit as exc:
            self.add(at, f"'{col.name}' is {describe_type(col)}: {exc}")

    def link(self, on: Mapping[str, str] | None, theirs: Table, ours: Table, at: Path) -> None:
        mapping, reason = self.catalog.link(on, theirs, ours)
        if mapping is None:
            self.add((*at, "table"), str(reason))
            return
        if on and all(
            t not in theirs.columns and t in ours.columns and o in theirs.columns
            for t, o in on.items()
        ):
            flipped = ", ".join(f"{o}: {t}" for t, o in on.items())
            self.add(
                (*at, "on"),
                f"on is written the wrong way round: it reads {{their column: our column}} "
                f"({theirs.name}'s first, then {ours.name}'s): write on: {{{flipped}}}",
                at_key=True,
            )
            return
        for their_name, our_name in mapping.items():
            if their_name not in theirs.columns:
                hint = suggest(their_name, theirs.columns.keys())
                # at the `on` key, as SPEC section 2's example shows
                self.add(
                    (*at, "on"), f"no column '{their_name}' in {theirs.name}{hint}", at_key=True
                )
            if our_name not in ours.columns:
                hint = suggest(our_name, ours.columns.keys())
                self.add((*at, "on", their_name), f"no column '{our_name}' in {ours.name}{hint}")

    # -- strategies -------------------------------------------------------------------

    def strategies(self, set_map: Mapping[str, Strategy], table: Table, at: Path) -> None:
        for name, strategy in set_map.items():
            col = self.col(table, name, (*at, name))
            if col is not None:
                reason = strategy_misfit(strategy, table, col, self.catalog.dialect)
                if reason is None and isinstance(strategy, ValueStrategy):
                    parent = self.catalog.lacking_parent(table, name, strategy.value)
                    if parent is not None:
                        reason = (
                            f"value for '{name}' is not in {parent}, which its foreign key "
                            "refers to: use a value the parent holds (or null)"
                        )
                if reason:
                    self.add((*at, name), reason)

    # -- cascades and foreign keys ----------------------------------------------------

    def cascade(self, cascade: Cascade, child: Table, parent: Table, at: Path) -> None:
        self.link(cascade.on, child, parent, at)
        mapping, _ = self.catalog.link(cascade.on, child, parent)
        if mapping and all(p in parent.columns for p in mapping.values()):
            self.unique_link(mapping, child, parent, at, named=cascade.on is not None)
        if cascade.action == "detach" and mapping:
            for name in mapping:
                col = child.columns.get(name)
                if col is not None and not col.nullable:
                    self.add(
                        (*at, "action"),
                        f"detach sets {child.name}.{name} to NULL, but it is NOT NULL",
                    )
        if cascade.action == "anonymise" and cascade.set:
            self.strategies(cascade.set, child, (*at, "set"))
        if cascade.action == "delete":
            self.blocking_keys(child, cascade.cascade, at)

    def unique_link(
        self, mapping: dict[str, str], child: Table, parent: Table, at: Path, *, named: bool
    ) -> None:
        """A cascade reaches one parent row per dependent (SPEC 2, "Real schemas"): through
        a column many parent rows share, a removed row would take the dependents of the
        rows kept with it."""
        if is_unique_set(parent, mapping.values()):
            return
        cols = ", ".join(mapping.values())
        # The same link seen from the dependent table: {parent's column: child's column}.
        back = ", ".join(f"{p}: {c}" for c, p in mapping.items())
        self.add(
            (*at, "on") if named else (*at, "table"),
            f"cascade links {child.name} through {parent.name}({cols}), which is not unique "
            f"(no primary key or unique constraint on it): a kept {parent.name} row could "
            f"share it and lose its {child.name} rows; give {child.name} a rule of its own "
            f"with unless: {{related: {{table: {parent.name}, on: {{{back}}}}}}}",
            at_key=named,
        )

    def blocking_keys(self, target: Table, cascades: list[Cascade], at: Path) -> None:
        """Every FK pointing at ``target`` must be handled, or the delete would fail."""
        for fk in self.catalog.foreign_keys_to(target):
            ondelete = (fk.ondelete or "").upper()
            if ondelete in ("CASCADE", "SET NULL"):
                continue
            referencing = fk.parent
            fk_on = on_from_fk(fk)
            covered = False
            named: Path | None = None  # a cascade for the table, linked some other way
            misnamed = False  # ... whose `on` names an unknown column
            filtered: Path | None = None  # a cascade for the table that handles some rows
            for j, cascade in enumerate(cascades):
                child = self.catalog.table(cascade.table)
                if child is not referencing or cascade.action == "anonymise":
                    continue  # an anonymised child keeps its reference: still blocks
                if cascade.where is not None:
                    filtered = (*at, "cascade", j, "where")
                    continue  # the dependents it leaves out still block
                mapping, _ = self.catalog.link(cascade.on, child, target)
                if mapping is not None and mapping == fk_on:
                    covered = True
                    continue
                named = (*at, "cascade", j, "on") if cascade.on else (*at, "cascade", j)
                if mapping is not None and any(
                    theirs not in child.columns or ours not in target.columns
                    for theirs, ours in mapping.items()
                ):
                    misnamed = True
            if covered or misnamed:
                continue  # an unknown column is reported where it is written (self.link)
            cols = ", ".join(fk_on)
            blocked = (
                f"foreign key {referencing.name}({cols}) -> {target.name} would block the delete"
            )
            if filtered is not None:
                self.add(
                    filtered,
                    f"{blocked}: the {referencing.name} rows this where leaves out still "
                    f"refer to theirs; with where, that foreign key must be ON DELETE CASCADE "
                    "or SET NULL",
                    at_key=True,
                )
                continue
            if named is not None:
                link = ", ".join(f"{c}: {p}" for c, p in fk_on.items())
                self.add(named, f"{blocked}: link the cascade by it: on: {{{link}}}", at_key=True)
            else:
                self.add(
                    at if at[-2:-1] == ("cascade",) else (*at, "table"),
                    f"{blocked}: add a cascade for {referencing.name} (or ON DELETE CASCADE)",
                )

    def holds(self, holds: Holds, table: Table) -> None:
        self.col(table, holds.subject_column, ("holds", "subject_column"))


def _unique_key(table: Table, names: Sequence[str]) -> bool:
    """Whether the columns ``names`` together are a primary key, unique constraint or
    unique index of ``table``."""
    wanted = set(names)
    if {c.name for c in table.primary_key.columns} == wanted:
        return True
    if len(names) == 1 and names[0] in table.c and is_unique(table, table.c[names[0]]):
        return True
    groups = [c.columns for c in table.constraints if isinstance(c, UniqueConstraint)]
    groups += [ix.columns for ix in table.indexes if ix.unique]
    return any({c.name for c in cols} == wanted for cols in groups)


def check_schema(
    policy: Policy, catalog: Catalog, locator: Locator, parked: frozenset[str] = frozenset()
) -> list[Problem]:
    """All problems of ``policy`` against ``catalog``; empty when it fits. The ``parked``
    rules (disabled, SPEC 2) are checked offline only: their tables may not exist yet."""
    checker = _Checker(catalog, locator)

    def visit(node: Node) -> bool:
        if node.kind is NodeKind.RULE and node.item.name in parked:
            return False
        return checker.visit(node)

    walk(policy, visit)
    checker.problems.extend(order_problems(policy, catalog, locator))
    return sorted(checker.problems, key=lambda p: (p.line or 0, p.column or 0))


def policy_tables(policy: Policy) -> Wanted:
    """Every table a policy names, so the schemas they live in can be reflected, and the
    fixed values it writes, so those bound for a foreign key can be looked up."""
    found = [node for node in nodes(policy) if node.kind is not NodeKind.CONDITION]
    values = [
        (node.table, column, strategy.value)
        for node in found
        if node.kind in (NodeKind.RULE, NodeKind.CASCADE)
        for column, strategy in (node.item.set or {}).items()
        if isinstance(strategy, ValueStrategy)
    ]
    return Wanted([node.table for node in found], values, map(_clock_column, policy.rules))


def _clock_column(rule: Rule) -> str:
    """The name of the column a rule's clock reads, in its table or a related one."""
    clock = rule.clock
    while not isinstance(clock, str):
        clock = clock.column
    return clock
