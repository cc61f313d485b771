"""The counts before the first write: exact ones for ``plan``, bounded ones for ``run``.

``plan`` (and ``run --dry-run``, ``erase``, ``audit reapply``) shows every due row and
the rows kept by ``unless`` and by holds: ``count_rule``, one scan of the rows past the
cutoff and a count of the table. A run needs only its guard's verdict (SPEC section 5),
so ``guard_count`` reads no more rows than settle it:

- the due rows, under the batches' own condition, up to ``max_rows + 1``: below that
  bound the figure is exact (it is the rule's ``due``); at the bound the guard trips, and
  the records say the count stopped there;
- then the table's rows, up to the first number at which ``max_fraction`` cannot trip:
  below it the figure is exact and the verdict is the exact count's.

No catalog estimate of the table's size stands in for a count: an estimate can be high
(rows deleted since the last ANALYZE; InnoDB's TABLE_ROWS), and a guard must never pass
on an estimate when the exact count would trip it. The bounded count of the table gives
the exact verdict instead, reading at most ``due / max_fraction`` rows. The estimate only
picks the statement: where it says the table is smaller than that bound, the bounded
count would read it all, and the plain ``count(*)`` does that faster (PostgreSQL scans in
parallel under no LIMIT). A wrong estimate costs time, never the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection

from retention.backends import backend_for
from retention.plan import GUARD_BOUND, TABLE_BOUND, RulePlan, StepKind

#: a LIMIT every database binds (a signed 64-bit integer) and no table reaches
LIMIT_CEILING = 2**62


@dataclass
class Counts:
    total: int
    due: int
    #: rows kept by ``unless`` and by holds; None where the run did not count them
    kept_unless: int | None
    kept_holds: int | None
    dependents: dict[str, int]
    #: rows past the cutoff, not kept, whose key is NULL: never selected (SPEC 2)
    unaddressable: int = 0
    #: the due count stopped at its bound: ``due`` is a lower bound, not an exact figure
    due_at_least: bool = False
    #: the table count stopped at its bound: ``total`` is a lower bound
    total_at_least: bool = False


def count_rule(conn: Connection, plan: RulePlan, *, dependents: bool = True) -> Counts:
    """The exact counts a plan shows and the guard checks.

    Without ``dependents`` the dependents' counts (a join over every due row) are skipped:
    a rule that runs counts the dependents it really handles, batch by batch.
    """
    found: dict[str, int] = {}
    row = conn.execute(plan.statement(StepKind.COUNT_SELECTION)).one()
    kept_unless, kept_holds = int(row.kept_unless), int(row.kept_holds)
    unaddressable = int(row._mapping.get("unaddressable", 0))
    due = int(row.matched) - kept_unless - kept_holds - unaddressable
    if dependents:
        for step in plan.steps:
            if step.kind is StepKind.COUNT_DEPENDENTS:
                n = int(conn.execute(step.statement).scalar_one())
                found[step.table] = found.get(step.table, 0) + n
    # The table's size only matters to a fraction guard, and only when something is due.
    total = 0
    if dependents or due:
        total = int(conn.execute(plan.statement(StepKind.COUNT_TOTAL)).scalar_one())
    return Counts(
        total=total,
        due=due,
        kept_unless=kept_unless,
        kept_holds=kept_holds,
        dependents=found,
        unaddressable=unaddressable,
    )


def guard_count(conn: Connection, plan: RulePlan) -> Counts:
    """Counts that settle the guard exactly as ``count_rule``'s would, reading fewer rows
    (the module docstring); ``kept_unless`` and ``kept_holds`` are not counted."""
    guard = plan.guard
    bound = min(guard.max_rows + 1, LIMIT_CEILING)
    statement = plan.statement(StepKind.COUNT_GUARD)
    due = int(conn.execute(statement, {GUARD_BOUND: bound}).scalar_one())
    counts = Counts(total=0, due=due, kept_unless=None, kept_holds=None, dependents={})
    if due >= bound:
        counts.due_at_least = True  # more than max_rows: the guard trips, whatever the table
        return counts
    if due == 0:
        return counts
    enough = fraction_settled(due, guard.max_fraction)
    estimate = backend_for(conn).row_estimate(conn, plan.table)
    if estimate is not None and estimate < enough:
        counts.total = int(conn.execute(plan.statement(StepKind.COUNT_TOTAL)).scalar_one())
        return counts
    statement = plan.statement(StepKind.COUNT_TABLE_UPTO)
    counts.total = int(conn.execute(statement, {TABLE_BOUND: enough}).scalar_one())
    counts.total_at_least = counts.total >= enough
    return counts


def fraction_settled(due: int, max_fraction: float) -> int:
    """The fewest rows a table must hold for ``due`` of them not to trip ``max_fraction``.

    The least integer above ``due / max_fraction``, in exact arithmetic: for every total
    from there up, ``due / total`` is below ``max_fraction``, and so is its rounding to a
    float (``max_fraction`` is a float itself), so ``guard_verdict`` passes exactly when it
    would with the exact total.
    """
    least = int(Fraction(due) / Fraction(max_fraction)) + 1
    return min(least, LIMIT_CEILING)


def counts_for_run(conn: Connection, plan: RulePlan, *, exact: bool) -> Counts:
    """What a run counts before its first write: the guard count, or the exact counts
    (without dependents) when asked for, or when the plan has no guard count (erase)."""
    if exact or plan.step(StepKind.COUNT_GUARD) is None:
        return count_rule(conn, plan, dependents=False)
    return guard_count(conn, plan)


def guard_verdict(plan: RulePlan, counts: Counts) -> str:
    """'ok', or why the guard trips: checked after counting, before the first write."""
    guard = plan.guard
    if counts.due_at_least:
        return f"max_rows: more than {guard.max_rows} due (counted up to {counts.due})"
    if counts.due > guard.max_rows:
        return f"max_rows: {counts.due} due > {guard.max_rows}"
    if counts.total and counts.due / counts.total > guard.max_fraction:
        share = counts.due / counts.total
        return f"max_fraction: {share:.3f} of the table due > {guard.max_fraction}"
    return "ok"


def due_details(counts: Counts, *, total: bool = False) -> dict[str, Any]:
    """The counts an audit record states (with the table's rows when ``total``): exact
    figures only, a count that stopped at its bound said as one."""
    if counts.due_at_least:
        details: dict[str, Any] = {"due_at_least": counts.due}
    else:
        details = {"due": counts.due}
    if total and counts.total and not counts.total_at_least:
        details["total"] = counts.total
    if counts.kept_unless is not None:
        details["kept_unless"] = counts.kept_unless
    if counts.kept_holds is not None:
        details["kept_holds"] = counts.kept_holds
    return details
