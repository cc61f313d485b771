"""Results -> plain data (for ``--output json``) and text (for people).

Nothing here prints a key or a value of a row: only names, counts, times and SQL with
placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from retention.outcomes import Status

if TYPE_CHECKING:
    from sqlalchemy import Dialect, Executable

    from retention.api import PlanReport, Validation
    from retention.executor import RuleResult
    from retention.partitions import Verdict
    from retention.plan import RulePlan
    from retention.runner import RunResult


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def plan_data(report: PlanReport, *, show_sql: bool) -> dict[str, Any]:
    rules = []
    for planned in report.rules:
        p, c = planned.plan, planned.counts
        item: dict[str, Any] = {
            "rule": p.name,
            "table": p.table.fullname,
            "action": p.action,
            "cutoff": _iso(p.cutoff),
            "rows_in_table": c.total,
            "due": c.due,
            "kept_by_unless": c.kept_unless,
            "kept_by_holds": c.kept_holds,
            "unaddressable": c.unaddressable,
            "dependents": c.dependents,
            "guard": planned.guard,
            "guard_would_trip": planned.guard != "ok",
            "batch_size": p.batch_size,
            "next_run": _iso(p.next_run),
            "runs_after_rules_on_same_table": list(p.acts_first),
            "moved_after": [{"rule": r, "deletes_from": t} for r, t in p.moved_after],
            "partitions": [_partition_data(v, report, show_sql) for v in planned.partitions],
        }
        if show_sql:
            item["sql"] = [
                {"step": step.label, "sql": _sql(step.statement, report.dialect)}
                for step in p.steps
            ]
            if p.batch_note:
                item["batch_statements_one_by_one"] = p.batch_note
        rules.append(item)
    return {
        "now": _iso(report.plan.now),
        "dialect": report.plan.dialect,
        "policy_sha256": report.plan.policy_sha256,
        "rules": rules,
    }


def plan_text(report: PlanReport, *, show_sql: bool) -> str:
    lines = [f"plan at {_iso(report.plan.now)} ({report.plan.dialect})"]
    for planned in report.rules:
        p, c = planned.plan, planned.counts
        verb = "delete" if p.action == "delete" else "anonymise"
        lines.append("")
        lines.append(f"rule {p.name}: {verb} from {p.table.fullname}")
        lines.append(f"  cutoff         {_iso(p.cutoff)}")
        lines.append(f"  would {verb:<9} {c.due} of {c.total} rows")
        lines.append(f"  kept by unless {c.kept_unless}")
        lines.append(f"  kept by holds  {c.kept_holds}")
        if c.unaddressable:
            lines.append(f"  unaddressable  {c.unaddressable} (their key is NULL: never selected)")
        for table, n in c.dependents.items():
            lines.append(f"  dependents     {n} in {table}")
        guard = "ok" if planned.guard == "ok" else f"WOULD TRIP ({planned.guard})"
        lines.append(f"  guard          {guard}")
        lines.append(f"  next run       {_iso(p.next_run) or 'not scheduled'}")
        lines.extend(_order_notes(p))
        lines.extend(_partition_lines(planned.partitions, report, show_sql))
        if show_sql:
            if p.batch_note:
                lines.append(f"  -- each batch runs its statements one by one: {p.batch_note}")
            for step in p.steps:
                lines.append(f"  -- {step.label}")
                lines.append(f"  {_sql(step.statement, report.dialect)};")
    return "\n".join(lines)


def _sql(statement: Executable, dialect: Dialect) -> str:
    # Only a plan shows SQL: rendering a validation leaves SQLAlchemy unloaded.
    from retention.plan import render  # noqa: PLC0415

    return render(statement, dialect)


def _partition_data(v: Verdict, report: PlanReport, show_sql: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"partition": v.partition, "rows": v.rows, "whole": v.whole}
    if not v.whole:
        item["reason"] = v.reason
    if show_sql and v.sql:
        item["sql"] = [_partition_sql(s, report) for s in v.sql]
    return item


def _partition_lines(verdicts: Sequence[Verdict], report: PlanReport, show_sql: bool) -> list[str]:
    """Which partitions go whole (dropped, not deleted row by row), and why the others
    do not; empty partitions are not worth a line."""
    out = []
    for v in verdicts:
        if v.whole:
            out.append(f"  partition      {v.partition} goes whole: {v.rows} rows")
            out.extend(f"    {_partition_sql(s, report)};" for s in v.sql if show_sql)
        elif v.rows != 0:
            out.append(f"  partition      {v.partition} by rows: {v.reason}")
    return out


def _partition_sql(statement: Any, report: PlanReport) -> str:
    return statement if isinstance(statement, str) else _sql(statement, report.dialect)


def _order_notes(p: RulePlan) -> list[str]:
    """SPEC section 2, "Rule order": the counts above are read before any rule runs."""
    out = []
    for rule, table in p.moved_after:
        out.append(
            f"  note           runs after rule '{rule}' (later in the file): "
            f"it deletes from {table}, which this rule reads"
        )
    if p.acts_first:
        names = ", ".join(f"'{n}'" for n in p.acts_first)
        out.append(
            f"  note           an earlier rule acts on {p.table.fullname} first ({names}); "
            "the counts above are read before it runs"
        )
    return out


def rule_data(r: RuleResult) -> dict[str, Any]:
    c = r.counts
    done_key = "deleted" if r.action == "delete" else "anonymised"
    return {
        "rule": r.rule,
        "table": r.table,
        "action": r.action,
        "status": r.status,
        "cutoff": _iso(r.cutoff),
        # A run counts due rows only up to its guard's bound: past it, a lower bound.
        "due": c.due if c and not c.due_at_least else None,
        "due_at_least": c.due if c and c.due_at_least else None,
        done_key: r.rows,
        "kept_by_unless": c.kept_unless if c else None,
        "kept_by_holds": c.kept_holds if c else None,
        "dependents": r.dependents,
        "batches": r.batches,
        "batch_sizes": r.batch_sizes,
        "replica_lag": r.replica_lag,
        "seconds": round(r.seconds, 3),
        "guard": r.guard,
        "guard_overridden": r.guard_overridden,
        "stopped_by": r.stopped_by,
        "error": r.error,
        "next_run": _iso(r.next_run),
    }


def run_data(result: RunResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "exit_code": int(result.exit_code),
        "interrupted": result.interrupted,
        "now": _iso(result.now),
        "audit_head": result.head,
        "rules": [rule_data(r) for r in result.rules],
    }


def run_text(result: RunResult) -> str:
    lines = [f"run {result.run_id}"]
    for r in result.rules:
        c = r.counts
        verb = "deleted" if r.action == "delete" else "anonymised"
        line = f"  {r.rule:<34} {r.status:<13}"
        if c is not None:
            line += f" {verb} {r.rows} of {'at least ' if c.due_at_least else ''}{c.due} due"
            if c.kept_unless is not None and c.kept_holds is not None:
                line += f" (kept: {c.kept_unless} unless, {c.kept_holds} holds)"
        if r.dependents:
            line += "; dependents " + ", ".join(f"{t}: {n}" for t, n in r.dependents.items())
        sizes = r.batch_sizes
        if sizes and sizes["changes"]:
            line += f"; batches of {sizes['min']}-{sizes['max']} rows (resized on conflicts)"
        lag = r.replica_lag
        if lag and lag["waited_seconds"]:
            waited, bound = lag["waited_seconds"], lag["max_lag"]
            line += f"; waited {waited:.1f}s for replicas (max_lag {bound:g}s)"
        if r.stopped_by:
            line += f"; stopped by {r.stopped_by}, a later run continues"
        if r.status == Status.GUARD_TRIPPED:
            line += f"; guard: {r.guard}"
        if r.guard_overridden:
            line += f"; guard overridden ({r.guard})"
        if r.error:
            line += f"; error: {r.error}"
        lines.append(line)
    if result.interrupted:
        lines.append("interrupted by a signal: the current batch finished; run again to continue")
    if result.head is None:
        # Stopped in a lock wait before the run's end was recorded (runner.py): the next
        # run records this one as interrupted; the log's head is what `audit verify` says.
        lines.append("audit head not recorded: the end of the run was not written")
    else:
        lines.append(f"audit head {result.head}")
    return "\n".join(lines)


def validation_data(result: Validation) -> dict[str, Any]:
    return {
        "policy": str(result.loaded.path),
        "rules": len(result.loaded.policy.rules),
        "valid": True,
        "checked_against": result.checked_against,
        "parked": list(result.parked),
    }


def validation_text(result: Validation) -> str:
    rules = len(result.loaded.policy.rules)
    against = f" against {result.checked_against}" if result.checked_against else " (offline)"
    lines = [f"{result.loaded.path}: {rules} rules valid{against}"]
    lines += [
        f"rule '{name}' is disabled: checked offline only, not against the database"
        for name in result.parked
    ]
    return "\n".join(lines)
