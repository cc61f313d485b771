"""Pure: a rule's batch steps fused into one statement per batch (data-modifying WITH).

Where the backend can (``Backend.one_statement_batches``: PostgreSQL), each selection
step and the batch steps after it become one statement::

    WITH chosen AS (SELECT key, links ... ORDER BY key LIMIT :batch_limit FOR UPDATE),
         read_1 AS (SELECT ... FROM child WHERE fk = ANY (SELECT DISTINCT link FROM
                    chosen WHERE link IS NOT NULL) FOR UPDATE),
         changed_2 AS (DELETE FROM grandchild WHERE ... = ANY (SELECT DISTINCT ... FROM
                       read_1 ...) RETURNING 1),
         changed_3 AS (DELETE FROM child WHERE fk = ANY (SELECT DISTINCT link FROM
                       chosen ...) RETURNING 1),
         applied AS (DELETE FROM t WHERE key = ANY (SELECT key FROM chosen) RETURNING 1)
    SELECT chosen.key, (SELECT count(*) FROM changed_2), EXISTS (SELECT DISTINCT ...
           FROM read_1 ...), ..., (SELECT count(*) FROM applied) FROM chosen ORDER BY key

(the parts' names carry a ``retention_`` prefix).

Each part is the very statement the step runs on its own, with its list parameter
(``KEYS``, ``PARENT_VALUES``) replaced by a subquery on the rows the step would have been
bound from, so the SQL of a step is defined once (``rules.py``). The statement returns
the batch's keys in key order, per dependents' step its rows and whether any parent row
linked to it (a step with no parent values is not run on its own, and then not counted),
and the rows changed.

All parts see one snapshot, and PostgreSQL does not change a row twice in one statement.
So a batch whose steps read or change a table an earlier step changed (a self-reference,
the same dependent table reached twice, the rule's own table as a dependent) keeps its
statements; the plan's ``batch_note`` says why. Foreign keys need nothing: their checks
(NO ACTION and RESTRICT alike; tests/test_one_statement.py holds RESTRICT on the server)
run at the end of the statement, after every part, as they run after each statement
today. One difference remains: the snapshot is taken before the selection waits for a
row lock, so a dependent that another transaction adds to a chosen row during that wait
is not seen, and the foreign key fails the batch (rolled back whole); PostgreSQL's backend
calls that a conflict, so the batch is retried with a new snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Executable,
    Table,
    Update,
    and_,
    cast,
    distinct,
    exists,
    func,
    literal_column,
    select,
)
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import CTE
from sqlalchemy.sql.util import find_tables
from sqlalchemy.sql.visitors import iterate, replacement_traverse
from sqlalchemy.types import ARRAY

from retention.plan import IN_BATCH, KEYS, PARENT_VALUES, SELECTIONS, Step, StepKind

# The parts' names, in the tool's own namespace so that no table of the policy is hidden
# behind one (a CTE's name shadows a table's in the statement).
CHOSEN = "retention_chosen"
APPLIED = "retention_applied"
_LABELS = {
    "first": "the first batch",
    "window": "the next batch within a window of keys",
    "next": "the next batch",
}


def fuse(steps: Sequence[Step], key: Sequence[str]) -> tuple[list[Step], str | None]:
    """The plan's steps with each selection and the batch steps after it as one statement,
    or the steps unchanged and why they cannot be fused."""
    batch = [s for s in steps if s.kind in IN_BATCH]
    why = why_not(batch)
    if why is not None:
        return list(steps), why
    fused: dict[StepKind, Step] = {}
    for variant, (selection, one) in SELECTIONS.items():
        step = next((s for s in steps if s.kind is selection), None)
        if step is not None:
            fused[selection] = _fused(one, _LABELS[variant], step, steps, key)
    out = []
    for step in steps:
        if step.kind in fused:
            out.append(fused[step.kind])
        elif step.kind not in IN_BATCH:
            out.append(step)
    return out, None


def why_not(batch: Sequence[Step]) -> str | None:
    """Why a batch's steps cannot run as one statement, or None when they can."""
    changed: set[Table] = set()
    for step in batch:
        statement = step.statement
        touched = find_tables(statement, include_crud=True)  # type: ignore[arg-type]
        again = next((t for t in touched if t in changed), None)
        if again is not None:
            return (
                f"{again.fullname} is read or changed again after an earlier statement of "
                "the batch changed it; one statement sees one snapshot"
            )
        if isinstance(statement, Delete | Update):
            assert isinstance(statement.table, Table)
            changed.add(statement.table)
    return None


def _fused(
    kind: StepKind, label: str, selection: Step, steps: Sequence[Step], key: Sequence[str]
) -> Step:
    chosen = selection.statement.cte(CHOSEN)  # type: ignore[attr-defined]
    read: dict[int, CTE] = {}  # the CTEs of the dependents' selections, by step index
    counted: list[ColumnElement[Any]] = []
    dependents: list[str] = []
    applied: CTE | None = None
    for i, step in enumerate(steps):
        if step.kind not in IN_BATCH:
            continue
        if step.kind is StepKind.APPLY:
            statement = _bound(step.statement, KEYS, [chosen.c[k] for k in key])
            applied = statement.returning(literal_column("1")).cte(APPLIED)
            continue
        source = chosen if step.source is None else read[step.source]
        cols = [list(source.c)[p] for p in step.columns]
        linked = and_(*[c.is_not(None) for c in cols])
        statement = _bound(step.statement, PARENT_VALUES, cols, linked)
        if step.kind is StepKind.SELECT_DEPENDENTS:
            read[i] = statement.cte(f"retention_read_{i}")
            continue
        part = statement.returning(literal_column("1")).cte(f"retention_changed_{i}")
        counted.append(_count(part, f"n{i}"))
        counted.append(exists(select(*cols).where(linked)).label(f"any{i}"))
        dependents.append(step.table)
    assert applied is not None, "every plan has an apply step"
    verb = "delete" if isinstance(applied.element, Delete) else "anonymise"
    does = ["select and lock its rows", "handle their dependents", f"{verb} them"]
    key_cols = [chosen.c[k] for k in key]
    # The parts in step order: the rows' own change is last, as when run one by one.
    result = select(*key_cols, *counted, _count(applied, "applied")).order_by(*key_cols)
    return Step(
        kind,
        f"{label} in one statement: {', '.join(does if dependents else does[::2])}",
        result,
        selection.table,
        dependents=tuple(dependents),
    )


def _count(part: CTE, name: str) -> ColumnElement[Any]:
    return select(func.count()).select_from(part).scalar_subquery().label(name)


def _bound(
    statement: Executable,
    name: str,
    cols: Sequence[ColumnElement[Any]],
    linked: ColumnElement[bool] | None = None,
) -> Any:
    """``statement`` with its list parameter ``name`` replaced by the values of ``cols``
    (the distinct ones where ``linked``, as ``parent_values`` are bound).

    An array parameter (``col = ANY (:name)``) becomes the array of those values, built
    once: the index is then probed by a sorted list, as with the bound list, instead of
    joined to a hashed subquery in hash order (which made anonymising slower than the
    statements one by one). A list of tuples becomes ``IN (SELECT ...)``.
    """
    array = _bind(statement, name).type
    if isinstance(array, ARRAY):
        [col] = cols
        rows = select(func.array_agg(col if linked is None else distinct(col)))
    else:
        rows = select(*cols)
        rows = rows if linked is None else rows.distinct()
    rows = rows if linked is None else rows.where(linked)
    values: Any = rows.scalar_subquery()
    if isinstance(array, ARRAY):
        # ANY (CAST ((SELECT ...) AS T[])): the array form; ANY ((SELECT ...)) would
        # compare each value with each row of the subquery, arrays.
        values = cast(values, array)

    def swap(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and element.key == name:
            return values
        return None

    return replacement_traverse(statement, {}, swap)  # type: ignore[call-overload]


def _bind(statement: Executable, name: str) -> BindParameter[Any]:
    found = [b for b in iterate(statement) if isinstance(b, BindParameter) and b.key == name]  # type: ignore[arg-type]
    assert found, f"no :{name} to bind"
    return found[0]


__all__ = ["fuse", "why_not"]
