"""One batch's statements, inside the transaction ``Executor._one_batch`` holds.

A batch runs either as its plan's statements one by one (the selection, then each
``IN_BATCH`` step bound with the rows read before it), or, where the plan fused them
(``planner/one_statement.py``), as one statement that returns the same things: the keys
chosen, the rows changed, and the rows of each dependents' table. Both give the executor
the same (keys, rows changed, dependents) for the same batch, so its check and its audit
record do not depend on which ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row

from retention.plan import (
    BATCH_LIMIT,
    IN_BATCH,
    KEYS,
    PARENT_VALUES,
    SELECTIONS,
    UPTO,
    RulePlan,
    Step,
    StepKind,
    last_key,
)

#: the batch's keys in key order, the rows its apply step changed, rows per dependents' table
Outcome = tuple[list[tuple[Any, ...]], int, dict[str, int]]


def selection(
    plan: RulePlan, last: tuple[Any, ...] | None, upto: int | None, size: int
) -> tuple[Step, dict[str, Any]]:
    """The step that selects the next batch (after ``last``, within ``upto``), bound."""
    at = 1 if plan.one_statement else 0  # SELECTIONS: (own statements, one statement)
    window = plan.step(SELECTIONS["window"][at])
    if last is None:
        return _step(plan, "first", at), {BATCH_LIMIT: size}
    if upto is not None and window is not None:
        return window, {last_key(0): last[0], UPTO: upto, BATCH_LIMIT: size}
    params: dict[str, Any] = {last_key(i): v for i, v in enumerate(last)}
    params[BATCH_LIMIT] = size
    return _step(plan, "next", at), params


def _step(plan: RulePlan, variant: str, at: int) -> Step:
    step = plan.step(SELECTIONS[variant][at])
    if step is None:
        raise LookupError(f"rule {plan.name} has no {variant} batch selection")
    return step


def run_one(
    conn: Connection, plan: RulePlan, step: Step, params: dict[str, Any], secrets: dict[str, Any]
) -> Outcome | None:
    """The whole batch in one statement; None when nothing was chosen."""
    rows = conn.execute(step.statement, {**secrets, **params}).all()
    if not rows:
        return None
    width = len(plan.key)
    head = rows[0]  # the counts repeat on every row: per dependents' step, then the rows'
    dependents: dict[str, int] = {}
    for j, table in enumerate(step.dependents):
        n, linked = head[width + 2 * j], head[width + 2 * j + 1]
        if linked:  # a step without parent values is not run, nor counted, on its own
            dependents[table] = dependents.get(table, 0) + int(n)
    return [tuple(row[:width]) for row in rows], int(head[-1]), dependents


def run_steps(
    conn: Connection, plan: RulePlan, step: Step, params: dict[str, Any], secrets: dict[str, Any]
) -> Outcome | None:
    """The selection, then the plan's batch steps one by one; None when nothing was chosen."""
    rows = conn.execute(step.statement, params).all()
    if not rows:
        return None
    width = len(plan.key)
    keys = [tuple(row[:width]) for row in rows]
    dependents: dict[str, int] = {}
    read: dict[int, Sequence[Row[Any]]] = {}  # rows of the dependents' selections
    affected = 0
    for i, s in enumerate(plan.steps):
        if s.kind not in IN_BATCH:
            continue
        if s.kind is StepKind.APPLY:
            bound: Any = [k[0] for k in keys] if width == 1 else keys
            affected = conn.execute(s.statement, {**secrets, KEYS: bound}).rowcount
            continue
        source = rows if s.source is None else read.get(s.source, ())
        values = parent_values(source, s.columns)
        if not values:
            continue  # no parent row links anywhere: nothing depends on this batch
        outcome = conn.execute(s.statement, {**secrets, PARENT_VALUES: values})
        if s.kind is StepKind.SELECT_DEPENDENTS:
            read[i] = outcome.all()
        else:
            dependents[s.table] = dependents.get(s.table, 0) + max(outcome.rowcount, 0)
    return keys, affected, dependents


def parent_values(rows: Sequence[Row[Any]], positions: Sequence[int]) -> Any:
    """The distinct linked values of the parent rows, sorted; a row with a NULL link has
    no dependents. One column binds as a list of values, several as a list of tuples."""
    values = sorted(
        {
            tuple(row[i] for i in positions)
            for row in rows
            if all(row[i] is not None for i in positions)
        }
    )
    return [v[0] for v in values] if len(positions) == 1 else values
