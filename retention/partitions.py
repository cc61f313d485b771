"""A RANGE partition of a rule's table dropped whole instead of deleted row by row.

A partition goes whole when the rule deletes, the table is RANGE-partitioned on the
rule's own clock, the partition's upper bound is at or before the cutoff, every row in it
is due under the rule's full condition (``where``, ``unless``, holds, a key that is not
NULL), and no row of a cascade's table links to one of its rows. Anything else leaves it
to the row batches, which handle its rows exactly as they would have.

Its evidence is a batch's: one ``batch`` record per partition with the row count, the
key digest over every key it held (read from the partition itself, in key order), the
per-key proofs when ``record_keys`` is on, and ``details.partition``.

Where DDL is transactional (PostgreSQL), the partition is detached, checked, read,
dropped and recorded in one transaction. Where each DDL statement commits (MariaDB), its
rows are first exchanged into an empty staging table named from the table and the
partition; then one transaction checks them, reads their keys and writes the record; then
the staging table is dropped. A staging table found at a rule's start is settled first:
dropped when a batch record certifies exactly its keys, recorded and dropped when its rows
are still due, put back in the table when not. So a crash at any instant neither loses
the evidence of a removal nor certifies one that did not happen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Executable, Integer, Select, inspect, select, text
from sqlalchemy.exc import DBAPIError

from retention.audit.records import key_digest
from retention.backends import Backend, describe_error
from retention.backends.partitioning import RangePartition, WholeDrop, like, retarget
from retention.logs import get_logger
from retention.outcomes import Event
from retention.plan import RulePlan, StepKind

if TYPE_CHECKING:
    from retention.executor import Executor, RuleResult

log = get_logger("retention.partitions")

View = Callable[[Any], Any]


@dataclass(frozen=True)
class Verdict:
    """Whether one partition goes whole, and if not, why (its rows go by batches)."""

    partition: str
    rows: int | None  # None where its rows were not counted (refused by its bounds)
    whole: bool
    reason: str = ""
    sql: tuple[Any, ...] = ()  # what dropping it runs (``plan --show-sql``), when it goes


def for_plan(conn: Connection, plan: RulePlan, backend: Backend) -> list[Verdict]:
    """Whether each partition goes whole, with the statements it runs when it does."""
    return [
        replace(v, sql=tuple(statements(conn, plan, backend, part))) if v.whole else v
        for part, v in _judged(conn, plan, backend)
    ]


class _Kept(Exception):
    """A staged partition holds a row that must stay: its rows go by batches."""


def _judged(
    conn: Connection, plan: RulePlan, backend: Backend
) -> list[tuple[RangePartition, Verdict]]:
    """Each partition of the plan's table, read where it stands (``plan``, and a run
    before it takes a partition's locks)."""
    whole = plan.whole
    if whole is None:
        return []
    out = []
    for part in backend.range_partitions(conn, plan.table, whole.clock, whole.cut):
        if part.refused is not None:
            out.append((part, Verdict(part.name, None, False, part.refused)))
            continue
        rows, reason = check(conn, plan, _in_place(backend, plan, part))
        out.append((part, Verdict(part.name, rows, reason is None, reason or "")))
    return out


def check(conn: Connection, plan: RulePlan, view: View) -> tuple[int, str | None]:
    """The rows of one partition (read through ``view``) and why they cannot go whole,
    or None when every one is due and none has a dependent."""
    assert plan.whole is not None
    rows = int(conn.execute(view(plan.statement(StepKind.COUNT_TOTAL))).scalar_one())
    if rows == 0:
        return 0, "it holds no rows"
    counted = conn.execute(view(plan.statement(StepKind.COUNT_SELECTION))).one()
    kept = {
        "not matched by where, or with a NULL clock": rows - int(counted.matched),
        "kept by unless": int(counted.kept_unless),
        "kept by holds": int(counted.kept_holds),
        "with a NULL key": int(counted._mapping.get("unaddressable", 0)),
    }
    reasons = [f"{n} rows {why}" for why, n in kept.items() if n]
    for table, statement in plan.whole.dependents:
        n = int(conn.execute(view(statement)).scalar_one())
        if n:
            reasons.append(f"{n} rows in {table} depend on its rows")
    return rows, "; ".join(reasons) or None


def statements(
    conn: Connection, plan: RulePlan, backend: Backend, part: RangePartition
) -> list[Any]:
    """What dropping ``part`` whole runs, in order: SQL text and statements."""
    assert plan.whole is not None
    drop = backend.whole_drop(conn, plan.table, part)
    view = _staged(plan, part, drop)
    reads: list[Any] = [
        view(plan.statement(StepKind.COUNT_TOTAL)),
        view(plan.statement(StepKind.COUNT_SELECTION)),
        *[view(s) for _, s in plan.whole.dependents],
        view(plan.whole.keys),
    ]
    return [*drop.stage, *drop.take, *reads, *drop.remove, *drop.finish]


def recover(executor: Executor, conn: Connection, plan: RulePlan, result: RuleResult) -> None:
    """Settle a staging table a crashed run left behind (see the module's docstring)."""
    if plan.whole is None:
        return
    backend = executor.backend
    with conn.begin():
        parts = backend.range_partitions(conn, plan.table, plan.whole.clock, plan.whole.cut)
        drops = [(p, backend.whole_drop(conn, plan.table, p)) for p in parts]
        left = [
            (p, d)
            for p, d in drops
            if d.stage and inspect(conn).has_table(d.rows_in, schema=p.schema)
        ]
    for part, drop in left:
        log.warning("staged partition found", rule=plan.name, partition=part.name)
        staged = _certified(executor, conn, plan, part, drop)
        if staged is None:  # its rows are not recorded: recorded now, or put back
            _counted(result, _settle(executor, conn, plan, part, drop))
        else:
            _finish(conn, drop)


def _certified(
    executor: Executor, conn: Connection, plan: RulePlan, part: RangePartition, drop: WholeDrop
) -> int | None:
    """How many rows the staging table holds when none, or when a batch record
    certifies exactly its keys (their removal was recorded); None otherwise."""
    with conn.begin():
        keys = _keys(conn, plan, _staged(plan, part, drop))
        if not keys:
            return 0
        records = executor.audit.records
        recorded = conn.execute(
            select(records.c.seq)
            .where(records.c.event == Event.BATCH)
            .where(records.c.table_name == plan.table.fullname)
            .where(records.c.key_digest == key_digest(executor.hash_key, keys))
            .limit(1)
        ).first()
    return len(keys) if recorded is not None else None


def drop_whole(executor: Executor, conn: Connection, plan: RulePlan, result: RuleResult) -> None:
    """Drop every partition that goes whole, before the row batches do the rest."""
    if plan.whole is None:
        return
    with conn.begin():
        going = [part for part, v in _judged(conn, plan, executor.backend) if v.whole]
    limit = executor.control.max_batches  # a partition is one batch (the batches stop too)
    for part in going:
        if executor._stopped(result) or (limit is not None and result.batches >= limit):
            return
        with conn.begin():
            if executor.lease is not None:  # nothing is staged by a run that lost its lease
                executor.lease[0].check(conn, executor.lease[1])
            drop = executor.backend.whole_drop(conn, plan.table, part)
        try:
            _autocommitted(conn, drop.stage)
        except DBAPIError as refused:  # no right to create or exchange: rows it is
            _left_to_batches(part, refused)
            with suppress(DBAPIError):
                if _certified(executor, conn, plan, part, drop) == 0:
                    _finish(conn, drop)  # made, and empty: not exchanged
            continue
        _counted(result, _settle(executor, conn, plan, part, drop))


def _settle(
    executor: Executor, conn: Connection, plan: RulePlan, part: RangePartition, drop: WholeDrop
) -> int | None:
    """The record's transaction: check the rows, read their keys, remove them, record.
    Returns the rows removed, or None when they stay (put back where they were staged)."""
    view = _staged(plan, part, drop)
    try:
        with conn.begin():
            if executor.lease is not None:
                executor.lease[0].check(conn, executor.lease[1])
            for statement in drop.take:
                conn.execute(text(statement))
            _, reason = check(conn, plan, view)
            if reason is not None:
                raise _Kept(reason)
            keys = _keys(conn, plan, view)
            for statement in drop.remove:
                conn.execute(text(statement))
            details = {"partition": part.name}
            if drop.stage:
                details["staging"] = drop.rows_in
            executor.audit.append(
                conn,
                Event.BATCH,
                **executor._about(plan),
                row_count=len(keys),
                key_digest=key_digest(executor.hash_key, keys),
                details=details,
            )
            executor.audit.append_keys(conn, executor.hash_key, plan.table.fullname, keys)
    except (_Kept, DBAPIError) as kept:
        # Rolled back: the partition is where it was, or its rows are put back, unless a
        # failed commit did commit the record (then they are gone, recorded).
        _left_to_batches(part, kept)
        done = None
        if drop.stage and isinstance(kept, DBAPIError):
            done = _certified(executor, conn, plan, part, drop)
        if not done and drop.put_back:
            with conn.begin():
                for statement in drop.put_back:
                    conn.execute(text(statement))
        _finish(conn, drop)
        return done
    _finish(conn, drop)
    log.info("partition dropped whole", rule=plan.name, partition=part.name, rows=len(keys))
    return len(keys)


def _left_to_batches(part: RangePartition, why: Exception) -> None:
    reason = str(why) if isinstance(why, _Kept) else describe_error(why)
    log.warning("partition left to the row batches", partition=part.name, reason=reason)


def _autocommitted(conn: Connection, statements: Sequence[str]) -> None:
    """DDL that commits on its own, run outside any transaction: MariaDB's EXCHANGE
    PARTITION waits on its own session's locks forever when autocommit is off."""
    if not statements:
        return
    level = conn.get_isolation_level()
    conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        for statement in statements:
            with conn.begin():
                conn.execute(text(statement))
    finally:
        conn.execution_options(isolation_level=level)


def _finish(conn: Connection, drop: WholeDrop) -> None:
    for statement in drop.finish:
        with conn.begin():
            conn.execute(text(statement))


def _counted(result: RuleResult, rows: int | None) -> None:
    if rows:
        result.rows += rows
        result.batches += 1


def _keys(conn: Connection, plan: RulePlan, view: View) -> list[tuple[Any, ...]]:
    assert plan.whole is not None
    read = conn.execute(view(plan.whole.keys))
    if all(isinstance(plan.table.c[k].type, Integer) for k in plan.key):
        # Integers come from the driver as they would through a Row: its tuples, read at
        # once, are several times faster than a Row per key (millions of them).
        keys = list(read.cursor.fetchall())
        read.close()
        return keys
    return [tuple(row) for row in read.all()]


def _in_place(backend: Backend, plan: RulePlan, part: RangePartition) -> View:
    def view(statement: Executable) -> Any:
        return backend.partition_rows(statement, plan.table, part)

    return view


def _staged(plan: RulePlan, part: RangePartition, drop: WholeDrop) -> View:
    """Reads the table that holds the partition's rows while it goes."""
    other = like(plan.table, drop.rows_in, part.schema)

    def view(statement: Select[Any] | Executable) -> Any:
        return retarget(statement, plan.table, other)

    return view
