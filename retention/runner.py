"""A whole run: the run's records around each rule's lease and execution.

The run first takes its own liveness lease (``run:<run id>``, renewed by the heartbeat
for as long as it runs), then commits ``run_started``; each rule runs under its lease (a
rule leased by another run is recorded as ``rule_skipped``, naming that run, and left
alone); the run ends with ``run_finished``, or ``run_interrupted`` when a signal asked it
to stop, and gives its lease back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError

from retention.audit.records import key_fingerprint
from retention.audit.writer import AuditWriter
from retention.backends import backend_for
from retention.control import Control
from retention.errors import LockNotAcquired
from retention.executor import Executor, RuleResult
from retention.leases import Leases, LeaseTerms, rule_lease, run_lease
from retention.logs import get_logger
from retention.outcomes import Event, ExitCode, Status
from retention.plan import Plan

log = get_logger("retention.runner")


@dataclass
class RunResult:
    run_id: str
    rules: list[RuleResult] = field(default_factory=list)
    interrupted: bool = False
    head: str | None = None
    now: datetime | None = None  # the run's one clock reading (its cutoffs'), for the output

    @property
    def all_skipped(self) -> bool:
        return bool(self.rules) and all(r.status == Status.SKIPPED for r in self.rules)

    @property
    def exit_code(self) -> ExitCode:
        """The one place a run's exit code is decided (SPEC section 4): the first of 1, 3,
        75 that applies, else 0. Errors that end a command are mapped by the CLI."""
        statuses = {r.status for r in self.rules}
        if Status.FAILED in statuses:
            return ExitCode.FAILED
        if Status.GUARD_TRIPPED in statuses:
            return ExitCode.GUARD
        if self.interrupted or self.all_skipped:
            return ExitCode.TEMPFAIL
        return ExitCode.OK


def run_plan(
    engine: Engine,
    plan: Plan,
    audit: AuditWriter,
    hash_key: bytes,
    control: Control,
    *,
    override_guard: frozenset[str] = frozenset(),
    lease_terms: LeaseTerms | None = None,
    slot: str | None = None,
) -> RunResult:
    """Run ``plan``; ``slot`` names the scheduled time of a ``serve`` job, so replicas
    run each scheduled run of a rule once."""
    try:
        audit.ensure_tables(engine)
        terms = lease_terms or LeaseTerms()
        leases = Leases(engine, audit.table_name, audit.run_id, terms, stopping=control.stopping)
        with leases.heartbeat(), leases.holding(run_lease(audit.run_id), forget=True):
            record_dead_runs(engine, audit, leases)
            return _run(engine, plan, audit, hash_key, control, override_guard, leases, slot)
    except DBAPIError as exc:
        if not control.ended_a_wait(backend_for(engine), exc):
            raise
        return _stopped_before_start(plan, audit.run_id, control)


def _stopped_before_start(plan: Plan, run_id: str, control: Control) -> RunResult:
    """A stop (a signal, the deadline) while the run waited to record its start (SQLite:
    another connection held the file's write lock): nothing was written, and the rules
    end as a stop during their first batch would end them (75 on a signal, 0 otherwise)."""
    signal = control.stop_requested()
    status, why = (Status.INTERRUPTED, "signal") if signal else (Status.PARTIAL, "max_runtime")
    rules = [RuleResult.of(rule, status) for rule in plan.rules]
    for rule in rules:
        rule.stopped_by = why
    log.warning("the run stopped before it could record its start: a lock is held", run_id=run_id)
    return RunResult(run_id, rules=rules, interrupted=signal)


def record_dead_runs(engine: Engine, audit: AuditWriter, leases: Leases) -> list[str]:
    """Record ``run_interrupted`` for runs (and erasure requests) that started, never
    ended, and whose lease expired (or that never had one).

    A live run renews its ``run:`` lease for its whole duration; a run whose lease ran
    out died (SIGKILL, a crash, a lost machine, a pause longer than the lease) before it
    could record its end. The finder takes the dead run's lease first, so of several
    finders one writes the record, and it writes it fenced by that lease.
    """
    records = audit.records
    ends = {Event.RUN_STARTED: Event.RUN_FINISHED, Event.ERASURE_STARTED: Event.ERASURE_FINISHED}
    ended = select(records.c.run_id).where(
        records.c.event.in_((*ends.values(), Event.RUN_INTERRUPTED))
    )
    unfinished = select(records.c.run_id, records.c.event).where(
        records.c.event.in_(tuple(ends)), records.c.run_id.not_in(ended)
    )
    with engine.connect() as conn:
        candidates = [(row.run_id, Event(row.event)) for row in conn.execute(unfinished)]
    found = []
    for run_id, started in candidates:
        if run_id == audit.run_id:
            continue
        what = "erasure request" if started is Event.ERASURE_STARTED else "run"
        written = audit.last_seq
        try:
            with leases.holding(run_lease(run_id), forget=True) as lease:
                audit.append_committed(
                    engine,
                    Event.RUN_INTERRUPTED,
                    ended_by=(ends[started],),
                    fence=functools.partial(leases.check, lease=lease),
                    run_id=run_id,
                    details={
                        "reason": f"the {what} ended without recording its end (killed or crashed)",
                        "found_by": audit.run_id,
                    },
                )
        except LockNotAcquired:
            continue  # its lease is live: still running elsewhere
        if audit.last_seq != written:  # not recorded meanwhile by another finder
            found.append(run_id)
            log.warning("found a run that died without finishing", dead_run_id=run_id)
    return found


def _run(
    engine: Engine,
    plan: Plan,
    audit: AuditWriter,
    hash_key: bytes,
    control: Control,
    override_guard: frozenset[str],
    leases: Leases,
    slot: str | None,
) -> RunResult:
    result = RunResult(audit.run_id)
    audit.append_committed(
        engine,
        Event.RUN_STARTED,
        details={
            "rules": [r.name for r in plan.rules],
            "dialect": plan.dialect,
            "overridden_guards": sorted(override_guard) or None,
            "now": plan.now.isoformat(),
            "now_pinned": plan.now_pinned,
            # Lets `audit find` and `verify` say a record was written under another key.
            "key_fingerprint": key_fingerprint(hash_key),
        },
    )
    log.info("run started", run_id=audit.run_id, rules=len(plan.rules))
    for rule_plan in plan.rules:
        if control.stop_requested():
            result.interrupted = True
            break
        executor = Executor(
            engine, audit, hash_key, control, override_guard=rule_plan.name in override_guard
        )
        # Whatever fails inside the rule is that rule's failure (Executor.run_rule).
        lease = leases.holding(rule_lease(rule_plan.name), slot=slot)
        outcome = executor.run_rule(rule_plan, lease, leases)
        result.rules.append(outcome)
        if outcome.status == Status.INTERRUPTED:
            result.interrupted = True
            break
    event = Event.RUN_INTERRUPTED if result.interrupted else Event.RUN_FINISHED
    summary = {
        "rules": {r.rule: r.status for r in result.rules},
        "rows": sum(r.rows for r in result.rules),
    }
    try:
        result.head = audit.append_committed(
            engine, event, ended_by=(Event.RUN_FINISHED, Event.RUN_INTERRUPTED), details=summary
        )
    except DBAPIError as exc:
        log.error("could not record the end of the run", run_id=audit.run_id)
        if not control.ended_a_wait(backend_for(engine), exc):
            raise
        return result  # a later run records this one as interrupted (record_dead_runs)
    log.info(event.replace("_", " "), run_id=audit.run_id, head=result.head, **summary)
    return result
