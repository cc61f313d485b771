"""The rule planner: one rule and the reflected schema -> its plan's steps.

Each rule becomes SQLAlchemy Core statements: counts for the plan and the guard, a keyset
batch selection that walks the key forward and locks the batch's rows under the full
condition, the cascade statements for exactly those rows, and the delete or anonymise
statement by exactly those keys. What differs per database comes from the ``Backend``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    tuple_,
    update,
)

from retention import anonymisers
from retention.backends import Backend
from retention.catalog import Catalog, is_integer
from retention.periods import cutoff as compute_cutoff
from retention.plan import (
    BATCH_LIMIT,
    CUTOFF,
    GUARD_BOUND,
    KEYS,
    MARK_TIME,
    PARENT_VALUES,
    TABLE_BOUND,
    UPTO,
    RulePlan,
    Step,
    StepKind,
    last_key,
)
from retention.planner.cascades import PlannedCascade, count_steps, dependents_steps
from retention.planner.conditions import Compiler, adapt_instant
from retention.planner.one_statement import fuse
from retention.planner.whole import whole_partitions
from retention.policy.model import Cascade, Policy, Rule
from retention.policy.strategies import Strategy
from retention.schedules import next_fire_time


def after_key(cols: Sequence[Any]) -> ColumnElement[bool]:
    """Keyset predicate ``key > :last``, spelled so an index range scan can use it.

    A bare row-value comparison is misestimated by PostgreSQL's planner; the expanded form
    with a leading ``>=`` on the first column is not.
    """
    lasts = [bindparam(last_key(i), type_=c.type) for i, c in enumerate(cols)]
    if len(cols) == 1:
        return cols[0] > lasts[0]  # type: ignore[no-any-return]
    ors = []
    for i in range(len(cols)):
        eqs = [cols[j] == lasts[j] for j in range(i)]
        ors.append(and_(*eqs, cols[i] > lasts[i]))
    return and_(cols[0] >= lasts[0], or_(*ors))


def _null_key(key_cols: Sequence[Any]) -> ColumnElement[bool] | None:
    """True where a key column that allows NULL holds NULL; None when none allows it."""
    nullable = [c.is_(None) for c in key_cols if c.nullable]
    return or_(*nullable) if nullable else None


def _count_selection(
    base: ColumnElement[bool],
    kept_by_unless: ColumnElement[bool],
    kept_by_hold: ColumnElement[bool],
    null_key: ColumnElement[bool] | None,
) -> Select[Any]:
    """One scan of the rows past the cutoff: matched, kept by `unless`, kept by a hold,
    and (where the key allows NULL) unaddressable; due is the rest."""
    count = select(
        func.count().label("matched"),
        func.coalesce(func.sum(case((kept_by_unless, 1), else_=0)), 0).label("kept_unless"),
        func.coalesce(func.sum(case((kept_by_hold, 1), else_=0)), 0).label("kept_holds"),
    ).where(base)
    if null_key is None:
        return count
    not_kept = not_(or_(kept_by_unless, kept_by_hold))
    unaddressable = case((and_(not_kept, null_key), 1), else_=0)
    return count.add_columns(func.coalesce(func.sum(unaddressable), 0).label("unaddressable"))


def _count_upto(table: Table, where: ColumnElement[bool] | None, bound: str) -> Select[Any]:
    """``count(*)`` of at most ``:bound`` rows: the scan stops once it has read them."""
    rows: Select[Any] = select(literal_column("1")).select_from(table)
    if where is not None:
        rows = rows.where(where)
    limited = rows.limit(bindparam(bound, type_=BigInteger)).subquery("upto")
    return select(func.count()).select_from(limited)


class RulePlanner:
    """Plans the rules of one policy at one clock reading, for one database."""

    def __init__(self, policy: Policy, catalog: Catalog, now: datetime, backend: Backend) -> None:
        self.policy = policy
        self.catalog = catalog
        self.now = now
        self.backend = backend
        self.compiler = Compiler(catalog, now, policy.defaults.timezone)

    def table(self, name: str) -> Table:
        table = self.catalog.table(name)
        assert table is not None, f"unchecked table {name}"
        return table

    def plan(self, rule: Rule) -> RulePlan:
        table = self.table(rule.table)
        key = tuple(rule.key or [c.name for c in table.primary_key.columns])
        key_cols = [table.c[k] for k in key]
        tz = self.policy.defaults.timezone
        cut = compute_cutoff(self.now, rule.after, tz)
        base = self.past(rule, table, cut)
        if rule.where is not None:
            base = and_(base, self.compiler.condition(rule.where, table))
        pending = self.not_done(rule, table)
        if pending is not None:
            base = and_(base, pending)
        unless = self.compiler.condition(rule.unless, table) if rule.unless is not None else None
        held = self.held(rule, table)
        due = base
        if unless is not None:
            due = and_(due, not_(unless))
        if held is not None:
            due = and_(due, not_(held))
        # A key column that allows NULL (a unique column named as key; on SQLite, a
        # PRIMARY KEY that is not the rowid) cannot name a row whose key is NULL: such rows
        # are never selected, and counted apart (SPEC 2, `unaddressable`).
        null_key = _null_key(key_cols)
        if null_key is not None:
            due = and_(due, not_(null_key))

        cascades = tuple(self.cascade(c, table, select(table).where(due)) for c in rule.cascade)
        fetch = list(key)
        for cascade in cascades:
            fetch.extend(p for p in cascade.link.values() if p not in fetch)
        fetch_cols = [table.c[c] for c in fetch]
        size = self.batch_size(rule)

        def batch(*where: ColumnElement[bool]) -> Select[Any]:
            limit = bindparam(BATCH_LIMIT, size, type_=Integer)
            chosen = select(*fetch_cols).where(due, *where).order_by(*key_cols).limit(limit)
            return chosen.with_for_update() if self.backend.locks_rows else chosen

        # One scan counts the rows past the cutoff and splits them: kept by `unless`,
        # kept by a hold, due (the rest).
        kept_by_unless = unless if unless is not None else false()
        kept_by_hold = and_(not_(kept_by_unless), held) if held is not None else false()
        count_selection = _count_selection(base, kept_by_unless, kept_by_hold, null_key)
        count_selection = count_selection.select_from(table)  # base may be a subquery alone
        name = table.fullname
        steps = [
            Step(
                StepKind.COUNT_SELECTION,
                "count rows past the cutoff: due, kept by unless, kept by holds",
                count_selection,
                name,
            ),
            Step(
                StepKind.COUNT_TOTAL,
                "count rows in table (for max_fraction; in run, where the catalog estimates "
                "fewer rows than the bounded count below would read)",
                select(func.count()).select_from(table),
                name,
            ),
            # A run needs only the guard's verdict (counting.py): the due rows, under the
            # batches' own condition, up to one past max_rows; then, for max_fraction,
            # the table's rows up to the number that settles it.
            Step(
                StepKind.COUNT_GUARD,
                "count due rows, up to one past the guard's max_rows (for run)",
                _count_upto(table, due, GUARD_BOUND),
                name,
            ),
            Step(
                StepKind.COUNT_TABLE_UPTO,
                "count rows in table, up to what settles max_fraction (for run)",
                _count_upto(table, None, TABLE_BOUND),
                name,
            ),
        ]
        steps.extend(count_steps(cascades))
        if self.backend.uses_key_windows(key_cols):
            # The next batch is looked for in a window of keys (last, last + window] while
            # that stays below the highest key read at the start. A bounded range lets
            # MariaDB evaluate `[NOT] EXISTS` per row by primary key instead of
            # materialising the whole related table for every batch.
            steps.append(
                Step(
                    StepKind.KEY_TOP,
                    "highest key (bounds the windows of keys)",
                    select(func.max(key_cols[0])).select_from(table),
                    name,
                )
            )
            first = Step(StepKind.SELECT_FIRST, "select and lock the first batch", batch(), name)
            window = batch(after_key(key_cols), key_cols[0] <= bindparam(UPTO, type_=Integer))
            steps.append(first)
            steps.append(
                Step(
                    StepKind.SELECT_WINDOW,
                    "select and lock the next batch within a window of keys",
                    window,
                    name,
                )
            )
        else:
            steps.append(
                Step(StepKind.SELECT_FIRST, "select and lock the first batch", batch(), name)
            )
        steps.append(
            Step(
                StepKind.SELECT_NEXT,
                "select and lock the next batch",
                batch(after_key(key_cols)),
                name,
            )
        )
        dependents_steps(cascades, None, fetch, steps)
        steps.append(
            Step(
                StepKind.APPLY,
                f"{rule.action} the batch's rows in {name}",
                self.apply(rule, table, key_cols),
                name,
            )
        )
        steps, batch_note = self.one_statement(steps, key)
        schedule = rule.schedule or self.policy.defaults.schedule
        defaults = self.policy.defaults
        return RulePlan(
            rule=rule,
            table=table,
            cutoff=cut,
            key=key,
            fetch=tuple(fetch),
            batch_size=size,
            sleep=rule.sleep if rule.sleep is not None else defaults.sleep,
            max_lag=rule.max_lag if rule.max_lag is not None else defaults.max_lag,
            guard=rule.guard.over(defaults.guard) if rule.guard else defaults.guard,
            next_run=next_fire_time(schedule, tz, self.now) if schedule else None,
            steps=tuple(steps),
            clock=self.age(rule, table),
            whole=whole_partitions(self, rule, table, key, cut),
            batch_note=batch_note,
        )

    def one_statement(self, steps: list[Step], key: Sequence[str]) -> tuple[list[Step], str | None]:
        """Where the database can, each batch as one statement (``one_statement.py``)."""
        if not self.backend.one_statement_batches:
            return steps, None
        return fuse(steps, key)

    def past(self, rule: Rule, table: Table, cut: datetime) -> ColumnElement[bool]:
        """``clock < :cutoff``; for a clock read in a related row, the row's age is that
        row's (SPEC 2): without a related row, or with a NULL there, never due. Batches
        still walk this table's key."""
        froms, links, clock = self.compiler.through(rule.clock, table)
        past = and_(clock < bindparam(CUTOFF, self.clock_value(rule, clock, cut)))
        if not froms:
            return past
        return exists(select(1).select_from(*froms).where(*links, past))

    def age(self, rule: Rule, table: Table) -> ColumnElement[Any]:
        """The clock as a value per row of ``table`` (the report's oldest kept row)."""
        froms, links, clock = self.compiler.through(rule.clock, table)
        if not froms:
            return clock  # type: ignore[no-any-return]
        return select(clock).select_from(*froms).where(*links).scalar_subquery()

    def batch_size(self, rule: Rule) -> int:
        return rule.batch_size or self.policy.defaults.batch_size

    def clock_value(self, rule: Rule, clock: Any, cut: datetime) -> Any:
        if rule.clock_unit is not None and is_integer(clock.type):
            # For a whole number of units, clock < cutoff is clock < ceil(cutoff). Rounding
            # down, or going through a float, would keep the unit just before the cutoff.
            micros = (cut - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            per_unit = 1000 if rule.clock_unit == "milliseconds" else 1_000_000
            return -(-micros // per_unit)
        return adapt_instant(clock, cut, self.policy.defaults.timezone)

    def not_done(self, rule: Rule, table: Table) -> ColumnElement[bool] | None:
        """Anonymise rules skip rows already anonymised (SPEC "Idempotency")."""
        if rule.action != "anonymise":
            return None
        if rule.mark is not None:
            return table.c[rule.mark].is_(None)
        assert rule.set is not None
        checks = []
        for name, strategy in rule.set.items():
            check = anonymisers.recognised(strategy, table.c[name], f"set_{name}")
            assert check is not None, "semantics guarantees recognisable strategies"
            checks.append(check)
        return not_(and_(*checks))

    def held(self, rule: Rule, table: Table) -> ColumnElement[bool] | None:
        holds = self.policy.holds
        if rule.hold_subject is None or holds is None:
            return None
        # A subject read through relations: the row is held when a related row's subject
        # is (SPEC 2); without a related row, not by this path.
        froms, links, subject = self.compiler.through(rule.hold_subject, table)
        registry = self.compiler.alias(self.table(holds.table), "hold", once=False)
        link = registry.c[holds.subject_column] == subject
        active = [self.compiler.condition(holds.active, registry)] if holds.active else []
        return exists(select(1).select_from(*froms, registry).where(*links, link, *active))

    def apply(self, rule: Rule, table: Table, key_cols: list[Any]) -> Executable:
        by_keys = self.backend.keys_in(key_cols, KEYS)
        if rule.action == "delete":
            return delete(table).where(by_keys)
        assert rule.set is not None
        values = self.set_values(rule.set, table, "set")
        if rule.mark is not None:
            mark = table.c[rule.mark]
            values[rule.mark] = bindparam(MARK_TIME, adapt_instant(mark, self.now), type_=mark.type)
        return update(table).where(by_keys).values(values)

    def set_values(self, set_map: dict[str, Strategy], table: Table, prefix: str) -> dict[str, Any]:
        return {
            name: anonymisers.expression(strategy, table.c[name], f"{prefix}_{name}")
            for name, strategy in set_map.items()
        }

    def cascade(self, cascade: Cascade, parent: Table, parents: Select[Any]) -> PlannedCascade:
        child = self.table(cascade.table)
        mapping, reason = self.catalog.link(cascade.on, child, parent)
        assert mapping is not None, reason
        link_cols = [child.c[c] for c in mapping]
        parent_cols = [parents.selected_columns[p] for p in mapping.values()]
        linked: ColumnElement[bool] = self.backend.keys_in(link_cols, PARENT_VALUES)
        # Dependents of every due parent, for the plan's counts.
        sub = parents.with_only_columns(*parent_cols)
        of_due: ColumnElement[bool] = (
            link_cols[0].in_(sub) if len(link_cols) == 1 else tuple_(*link_cols).in_(sub)
        )
        if cascade.where is not None:
            # Only matching dependents are handled (SPEC 2: polymorphic links), counted
            # and followed by nested cascades; validate made the others' foreign keys
            # to the parent ON DELETE CASCADE / SET NULL.
            matching = self.compiler.condition(cascade.where, child)
            linked = and_(linked, matching)
            of_due = and_(of_due, matching)
        grandchildren = tuple(
            self.cascade(c, child, select(child).where(of_due)) for c in cascade.cascade
        )
        needs: list[str] = []
        for g in grandchildren:
            needs.extend(p for p in g.link.values() if p not in needs)
        select_links = None
        if needs:
            select_links = select(*[child.c[n] for n in needs]).where(linked)
            if self.backend.locks_rows:
                select_links = select_links.with_for_update()
        if cascade.action == "delete":
            apply: Executable = delete(child).where(linked)
        elif cascade.action == "detach":
            # NULL as SQL text, never bound under the link's name (a link called
            # ``parent_values`` would clash with the parent values' parameter).
            apply = update(child).where(linked).values({c: null() for c in mapping})
        else:
            assert cascade.set is not None
            apply = (
                update(child)
                .where(linked)
                .values(self.set_values(cascade.set, child, f"{child.name}_set"))
            )
        return PlannedCascade(
            table=child,
            action=cascade.action,
            link=mapping,
            needs=tuple(needs),
            select_links=select_links,
            apply=apply,
            count=select(func.count()).select_from(child).where(of_due),
            children=grandchildren,
        )
