"""Runs a plan in keyset batches, one transaction per batch (SPEC section 5).

Per batch: select and lock the next rows under the full condition (walking the key
forward from the last batch), then run the plan's batch steps in their order (the
dependents, then the rows themselves, by exactly those keys), and append the batch's
audit record, all in one transaction. A crash at any instant leaves either the whole
batch with its record, or neither.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from retention import batch_one, partitions
from retention.audit.records import key_digest
from retention.audit.writer import AuditWriter
from retention.backends import Backend, backend_for, describe_error
from retention.control import Control, Watchdog
from retention.counting import Counts, counts_for_run, due_details, guard_verdict
from retention.errors import LeaseLost, LockNotAcquired, RuleFailed
from retention.leases import Lease, Leases
from retention.logs import get_logger
from retention.outcomes import Event, Status
from retention.plan import RulePlan, StepKind
from retention.throttle import BatchSizer, retrying

log = get_logger("retention.executor")


@dataclass
class RuleResult:
    """What happened to one rule; rendered by the CLI, recorded in the audit log."""

    rule: str
    table: str
    action: str
    cutoff: datetime
    status: Status
    counts: Counts | None = None
    rows: int = 0
    dependents: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    guard: str = "ok"
    guard_overridden: bool = False
    #: the batch sizes used: {min, max, changes} (throttle.BatchSizer.summary)
    batch_sizes: dict[str, Any] | None = None
    #: max_lag, the largest replica lag seen, seconds waited, why it stopped (throttle.py)
    replica_lag: dict[str, Any] | None = None
    stopped_by: str | None = None
    error: str | None = None
    next_run: datetime | None = None

    @classmethod
    def of(cls, plan: RulePlan, status: Status) -> RuleResult:
        return cls(
            plan.name, plan.table.fullname, plan.action, plan.cutoff, status, next_run=plan.next_run
        )


@dataclass
class Executor:
    """Executes one rule's plan against an engine; the caller holds the rule's lock."""

    engine: Engine
    audit: AuditWriter
    hash_key: bytes
    control: Control
    override_guard: bool = False
    backend: Backend = field(init=False)
    watchdog: Watchdog = field(init=False)
    #: the rule's lease and its keeper: every batch checks it in its own transaction
    lease: tuple[Leases, Lease] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.backend = backend_for(self.engine)

    def run_rule(
        self,
        plan: RulePlan,
        lock: AbstractContextManager[Any] | None = None,
        leases: Leases | None = None,
    ) -> RuleResult:
        """Run one rule under ``lock`` (the rule's lease, taken without waiting, which
        every batch checks through ``leases``).

        The boundary of a rule: whatever goes wrong inside it (taking the lease, counting,
        a batch, a lost lease, a bug) is recorded as ``rule_failed`` and the run goes on
        with the other rules (SPEC section 4, exit 1).
        """
        started = self.control.monotonic()
        result = RuleResult.of(plan, Status.DONE)
        try:
            with lock or nullcontext() as held, self.engine.connect() as raw:
                if leases is not None and held is not None:
                    self.lease = (leases, held)
                cancel = functools.partial(self.backend.interrupt, self.engine, raw)
                self.watchdog = Watchdog(self.control.stopping, cancel)
                with self.watchdog.watching(self.control.TICK):
                    self._run(self.backend.for_writing(raw), plan, result, started)
        except LockNotAcquired as taken:
            return self.skipped(plan, taken)
        except Exception as exc:  # the one boundary of a rule (see the docstring)
            result.seconds = self.control.monotonic() - started
            if self.control.ended_a_wait(self.backend, exc) and self._stopped(result):
                log.warning("rule stopped; its end is not recorded: a lock is held", rule=plan.name)
                return result
            return self.failed(plan, exc, result)
        return result

    def failed(
        self, plan: RulePlan, exc: BaseException, result: RuleResult | None = None
    ) -> RuleResult:
        """The one place a rule's failure is recorded (``rule_failed``) and logged.

        Recorded in a transaction of its own: the failed batch rolled back whole, and its
        connection may be the thing that failed.
        """
        result = result or RuleResult.of(plan, Status.FAILED)
        result.status = Status.FAILED
        result.error = describe_error(exc)
        details: dict[str, Any] = {"error": result.error, "batches": result.batches}
        if isinstance(exc, LeaseLost):
            details["reason"] = f"the rule's lease was lost ({exc.reason}): no batch after it"
        self.audit.append_committed(
            self.engine,
            Event.RULE_FAILED,
            **self._about(plan),
            row_count=result.rows,
            details=details,
        )
        log.error("rule failed", rule=plan.name, error=result.error, rows=result.rows)
        return result

    def skipped(self, plan: RulePlan, taken: LockNotAcquired) -> RuleResult:
        """A rule another run holds: recorded as ``rule_skipped``, naming that run and its
        lease's expiry, and left alone."""
        details = {"reason": taken.reason, "held_by": taken.holder}
        if taken.expires_at is not None:
            details["lease_expires_at"] = taken.expires_at.isoformat()
        self.audit.append_committed(
            self.engine, Event.RULE_SKIPPED, **self._about(plan), details=details
        )
        log.info("rule skipped: held by another run", rule=plan.name, **details)
        return RuleResult.of(plan, Status.SKIPPED)

    def _run(self, conn: Connection, plan: RulePlan, result: RuleResult, started: float) -> None:
        partitions.recover(self, conn, plan, result)  # a crashed run's staged partition
        with conn.begin():
            # Exact counts where the guard is lifted: the run goes on whatever they are.
            counts = counts_for_run(conn, plan, exact=self.override_guard)
        result.counts = counts
        result.guard = guard_verdict(plan, counts)
        if result.guard != "ok" and not self.override_guard:
            result.status = Status.GUARD_TRIPPED
            self.audit.append_committed(
                conn,
                Event.GUARD_TRIPPED,
                **self._about(plan),
                row_count=0,
                details={**due_details(counts, total=True), "verdict": result.guard},
            )
            log.warning("guard tripped", rule=plan.name, verdict=result.guard)
            return
        result.guard_overridden = result.guard != "ok"
        # Rows of a staged partition the recovery above recorded were due too, though no
        # longer in the table to count: the run said "deleted 635039 of 372240 due".
        counts.due += result.rows
        if counts.due:  # partitions that go whole first, then the row batches do the rest
            partitions.drop_whole(self, conn, plan, result)
        self._batches(conn, plan, result, counts)
        result.seconds = self.control.monotonic() - started
        details: dict[str, Any] = {
            **due_details(counts),  # a run counts no kept rows: none recorded
            "batches": result.batches,
            "complete": result.status == Status.DONE,
        }
        if result.batch_sizes:
            details["batch_sizes"] = result.batch_sizes
        if result.replica_lag:
            details["replica_lag"] = result.replica_lag
        if result.stopped_by:
            details["stopped_by"] = result.stopped_by
        if result.guard_overridden:
            details["guard_overridden"] = result.guard
        self.audit.append_committed(
            conn,
            Event.RULE_FINISHED,
            **self._about(plan),
            row_count=result.rows,
            dependents=result.dependents or None,
            details=details,
        )
        log.info(
            "rule finished",
            rule=plan.name,
            rows=result.rows,
            batches=result.batches,
            status=result.status,
            seconds=round(result.seconds, 3),
        )

    def _about(self, plan: RulePlan) -> dict[str, Any]:
        return {
            "rule": plan.name,
            "table_name": plan.table.fullname,
            "action": plan.action,
            "cutoff": plan.cutoff,
        }

    def _batches(
        self, conn: Connection, plan: RulePlan, result: RuleResult, counts: Counts
    ) -> None:
        last: tuple[Any, ...] | None = None
        if counts.due == 0:
            return
        top: int | None = None
        key_top = plan.step(StepKind.KEY_TOP)
        if key_top is not None:
            with conn.begin():
                top = conn.execute(key_top.statement).scalar()
        window = 2 * plan.batch_size
        sizer = BatchSizer(plan.batch_size)
        while True:
            if self._stopped(result):
                return
            if self.control.max_batches is not None and result.batches >= self.control.max_batches:
                result.status, result.stopped_by = Status.PARTIAL, "max_batches"
                return
            if self._replicas_behind(plan, result) or self._stopped(result):
                return
            upto: int | None = None
            if top is not None and last is not None and last[0] + window < top:
                upto = last[0] + window
            try:
                with self.watchdog.batch():
                    batch = functools.partial(self._one_batch, conn, plan, last, upto)
                    number = result.batches + 1
                    done = retrying(batch, sizer, number, self.backend, self.control)
            except DBAPIError:
                if self._stopped(result):
                    return  # cancelled in a lock wait (control.py): rolled back whole
                raise
            if done is None:
                if upto is None:
                    return
                # Nothing due in the window: walk on past it, in a wider one.
                last, window = (upto,), window * 2
                continue
            last, rows, dependents = done
            size = sizer.size  # the size this batch was taken at
            sizer.committed(number)
            result.batch_sizes = sizer.summary()
            if upto is not None:
                if rows < size:
                    # The whole window was read: every row due in it is in this batch.
                    last, window = (upto,), window * 2
                else:
                    window = max(2 * size, window // 2)
            result.batches += 1
            result.rows += rows
            for name, n in dependents.items():
                result.dependents[name] = result.dependents.get(name, 0) + n
            if self.control.on_batch is not None:
                self.control.on_batch(plan.name, result.rows, counts.due)
            if upto is None and rows < size:
                return  # a short batch read every due row left: the rule is done
            if plan.sleep:
                self.control.pause(plan.sleep)

    def _replicas_behind(self, plan: RulePlan, result: RuleResult) -> bool:
        """Waits while a replica lags past the rule's max_lag; True when the wait ran out
        (the rule stops partial, the reason in ``replica_lag``)."""
        watch = self.control.replicas
        if plan.max_lag is None or watch is None:
            return False
        stop = watch.wait(plan.name, plan.max_lag, self.control)
        result.replica_lag = watch.stats.get(plan.name)
        if stop is not None:
            result.status, result.stopped_by = Status.PARTIAL, "replica_lag"
        return stop is not None

    def _stopped(self, result: RuleResult) -> bool:
        """Whether a signal or the deadline ends the rule here; if so, says which."""
        if self.control.stop_requested():
            result.status, result.stopped_by = Status.INTERRUPTED, "signal"
        elif self.control.time_is_up():
            result.status, result.stopped_by = Status.PARTIAL, "max_runtime"
        else:
            return False
        return True

    def _one_batch(
        self,
        conn: Connection,
        plan: RulePlan,
        last: tuple[Any, ...] | None,
        upto: int | None,
        size: int,
    ) -> tuple[tuple[Any, ...], int, dict[str, int]] | None:
        with conn.begin():
            if self.lease is not None:
                self.lease[0].check(conn, self.lease[1])  # fenced: LeaseLost rolls back
            selection, params = batch_one.selection(plan, last, upto, size)
            run = batch_one.run_one if plan.one_statement else batch_one.run_steps
            done = run(conn, plan, selection, params, self._secrets)
            if done is None:
                return None
            keys, affected, dependents = done
            if affected != len(keys):
                # The rows were locked by the select; anything else is a bug, and the
                # batch must not commit with a digest over keys it did not remove.
                raise RuleFailed(
                    plan.name, plan.table.fullname, f"{affected} rows changed for {len(keys)} keys"
                )
            self.audit.append(
                conn,
                Event.BATCH,
                **self._about(plan),
                row_count=affected,
                dependents=dependents or None,
                key_digest=key_digest(self.hash_key, keys),
                # a batch taken smaller than the rule's batch_size says so (throttle.py)
                details={"batch_size": size} if size != plan.batch_size else None,
            )
            self.audit.append_keys(conn, self.hash_key, plan.table.fullname, keys)
        return keys[-1], affected, dependents

    @functools.cached_property
    def _secrets(self) -> dict[str, Any]:
        """The HMAC pads as bound parameters (empty where a registered function has them)."""
        return self.backend.secret_params(self.hash_key)
