"""The plan as frozen data, and its rendering as SQL text.

A plan holds, per rule, one ordered tuple of steps: the very statement objects the
executor runs, in the order it runs them. ``--show-sql`` prints that same tuple, so what
is shown cannot drift from what runs. SQL text has placeholders only, never a key, a value
or a secret: values are bound parameters, compiled without ``literal_binds``.

The executor binds values to the statements by the names below; the planner builds the
statements with them. They are the protocol between the two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, Dialect, Executable, Table

from retention.policy.model import Guard, Rule

# Bound per batch by the executor.
KEYS = "keys"  # the batch's keys, as read by the batch's selection
PARENT_VALUES = "parent_values"  # the linked values of a cascade's parent rows
UPTO = "upto"  # the top of the window of keys a batch looks in
BATCH_LIMIT = "batch_limit"  # how many rows a batch takes (throttle.py may shrink it)
# Bound at planning time, named so ``--show-sql`` reads well.
CUTOFF = "cutoff"
MARK_TIME = "mark_time"
# Bound by a run's guard count (counting.py): how far each count reads before it stops.
GUARD_BOUND = "guard_bound"  # due rows: max_rows + 1
TABLE_BOUND = "table_bound"  # the table's rows: enough to settle max_fraction
# The HMAC pads of the ``hash`` strategy, bound per batch where no function holds the key.
HMAC_INNER = "hmac_inner"
HMAC_OUTER = "hmac_outer"


def last_key(i: int) -> str:
    """The name bound to the previous batch's last key, column ``i`` (keyset walking)."""
    return f"last_{i}"


class StepKind(Enum):
    COUNT_SELECTION = "count_selection"  # rows past the cutoff: matched, kept_unless, kept_holds
    COUNT_TOTAL = "count_total"  # rows in the table (for max_fraction)
    COUNT_DEPENDENTS = "count_dependents"  # dependents of every due row (for plan)
    COUNT_GUARD = "count_guard"  # due rows, up to GUARD_BOUND (for run's guard)
    COUNT_TABLE_UPTO = "count_table_upto"  # rows in the table, up to TABLE_BOUND (for run)
    KEY_TOP = "key_top"  # the highest key, which bounds the windows of keys
    SELECT_FIRST = "select_first"
    SELECT_WINDOW = "select_window"  # the next batch, within (last, upto]
    SELECT_NEXT = "select_next"
    SELECT_DEPENDENTS = "select_dependents"  # dependents' columns that their cascades link to
    APPLY_DEPENDENTS = "apply_dependents"  # delete / anonymise / detach the dependents
    APPLY = "apply"  # delete / anonymise the batch's rows, by KEYS
    # A whole batch in one statement (where the database can: ``one_statement.py``): the
    # selection, then every IN_BATCH step, each reading the rows of the ones before it.
    BATCH_FIRST = "batch_first"
    BATCH_WINDOW = "batch_window"
    BATCH_NEXT = "batch_next"


#: the counts a run takes for its guard alone (counting.py), in place of the exact ones
GUARD_COUNTS = frozenset({StepKind.COUNT_GUARD, StepKind.COUNT_TABLE_UPTO})
#: the steps run inside each batch's transaction after its selection, in step order
IN_BATCH = frozenset({StepKind.SELECT_DEPENDENTS, StepKind.APPLY_DEPENDENTS, StepKind.APPLY})
#: a batch's selection, by how it walks: its own statements, or the whole batch in one
SELECTIONS = {
    "first": (StepKind.SELECT_FIRST, StepKind.BATCH_FIRST),
    "window": (StepKind.SELECT_WINDOW, StepKind.BATCH_WINDOW),
    "next": (StepKind.SELECT_NEXT, StepKind.BATCH_NEXT),
}


@dataclass(frozen=True)
class Step:
    """One statement of a rule's plan, labelled as ``--show-sql`` shows it.

    A dependents' step binds ``PARENT_VALUES`` from rows read earlier in the batch: those
    of the step at index ``source`` of the rule's steps, or the batch's own rows when
    ``source`` is None; ``columns`` are the positions of the linked values in those rows.
    A whole batch in one statement returns a count for each table of ``dependents``.
    """

    kind: StepKind
    label: str
    statement: Executable
    table: str
    source: int | None = None
    columns: tuple[int, ...] = ()
    dependents: tuple[str, ...] = ()


@dataclass(frozen=True)
class WholePartitions:
    """What a delete rule whose clock is its table's own column needs to drop a RANGE
    partition of that table whole (``retention/partitions.py``): the statements are over
    the table, and read one partition when pointed at it (``backends.partitioning.retarget``)."""

    clock: str  # the table's column the rule's clock reads
    cut: Any  # the cutoff as that column compares it (the value ``:cutoff`` binds)
    keys: Executable  # every row's key, in key order
    #: per top-level cascade: (its table, the count of its rows linking to any row of ours,
    #: whatever the cascade's ``where``)
    dependents: tuple[tuple[str, Executable], ...]


@dataclass(frozen=True)
class RulePlan:
    """One rule compiled against the reflected schema, at one clock reading."""

    rule: Rule
    table: Table
    cutoff: datetime  # aware UTC
    key: tuple[str, ...]
    fetch: tuple[str, ...]  # what a batch's selection reads: key columns, then link columns
    batch_size: int
    sleep: float
    guard: Guard
    next_run: datetime | None
    steps: tuple[Step, ...]
    # The row's age, as an expression over ``table``: the clock column, or the related
    # row's column as a scalar subquery (validate makes the link reach one row).
    clock: ColumnElement[Any]
    # Rule order (SPEC section 2): earlier rules of the plan that change this rule's
    # table, and (rule, table) for each rule later in the file that runs first because it
    # deletes from a table this rule reads. ``plan``'s counts are all read before any
    # rule runs, so these say where they will differ.
    acts_first: tuple[str, ...] = ()
    moved_after: tuple[tuple[str, str], ...] = ()
    # Seconds a replica may lag before the next batch waits (SPEC 5; None: not watched).
    max_lag: float | None = None
    # Set where a partition of the table may go whole (a delete rule on its own clock).
    whole: WholePartitions | None = None
    # Why each batch runs its statements one by one where the database could run a whole
    # batch as one (a table changed twice, a RESTRICT foreign key); None otherwise.
    batch_note: str | None = None

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def action(self) -> str:
        return self.rule.action

    @property
    def one_statement(self) -> bool:
        """Whether each batch runs as one statement (``StepKind.BATCH_*``)."""
        return self.step(StepKind.BATCH_FIRST) is not None

    def step(self, kind: StepKind) -> Step | None:
        """The plan's one step of ``kind`` (None when the plan has none)."""
        return next((s for s in self.steps if s.kind is kind), None)

    def statement(self, kind: StepKind) -> Executable:
        """The statement of a step every plan has (counts, selections, apply)."""
        step = self.step(kind)
        if step is None:
            raise LookupError(f"rule {self.name} has no {kind.value} step")
        return step.statement

    def steps_of(self, kind: StepKind) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.kind is kind)


@dataclass(frozen=True)
class Plan:
    rules: tuple[RulePlan, ...]
    now: datetime
    policy_sha256: str
    dialect: str  # for display only
    now_pinned: bool = False  # ``now`` was given (--now), not read from the clock


def render(statement: Executable, dialect: Dialect) -> str:
    """SQL text of a statement with placeholders, exactly as the driver receives it."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    sql = " ".join(str(compiled).split())
    # A list bound per batch (keys, parent values) is expanded by the driver layer into
    # one placeholder per item, or (integers on MySQL) into the integers themselves;
    # show that, not SQLAlchemy's internal marker.
    inlined = {name for name, bind in compiled.binds.items() if bind.literal_execute}

    def marker(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in inlined:
            return f"<the integers of :{name}, inline>"
        return f"<one placeholder per item of :{name}>"

    return re.sub(r"__\[POSTCOMPILE_(\w+)\]", marker, sql)
