"""Erasure requests: one data subject's rows, removed now through the rules (SPEC 4).

Each subject is one request, with a request id of its own (the ``run_id`` of its
records). The request first looks for an active legal hold on the subject: a held subject
is refused before any write, recorded as ``erasure_started`` then ``erasure_finished``
with outcome ``held``. Otherwise every enabled rule with a ``hold_subject`` runs under its
lease, as in a run, with a plan whose selection is the subject's rows
(``planner.scoped``): the same batches, cascades, ``batch`` and ``rule_finished``
records, between ``erasure_started`` and ``erasure_finished``. The records hold a keyed
digest of the subject id (``audit.erasures.subject_digest``), never the id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from retention.audit.erasures import subject_digest
from retention.audit.records import key_fingerprint
from retention.audit.writer import AuditWriter
from retention.backends import backend_for
from retention.catalog import Catalog
from retention.control import Control
from retention.counting import count_rule
from retention.errors import ConfigError
from retention.executor import Executor, RuleResult
from retention.leases import Leases, LeaseTerms, rule_lease, run_lease
from retention.logs import get_logger
from retention.outcomes import Event, ExitCode, Status
from retention.plan import RulePlan
from retention.planner.order import ordered
from retention.planner.scoped import SubjectPlanner, hold_check
from retention.policy.loader import LoadedPolicy

log = get_logger("retention.erase")

HELD = "held"


@dataclass
class ErasedRule:
    """One rule's part of a request: the rows it removed (or, in a dry run, would)."""

    rule: str
    table: str
    action: str
    status: str
    rows: int = 0
    dependents: dict[str, int] = field(default_factory=dict)
    kept_unless: int = 0
    error: str | None = None

    @classmethod
    def of(cls, result: RuleResult) -> ErasedRule:
        counts = result.counts
        return cls(
            result.rule,
            result.table,
            result.action,
            str(result.status),
            result.rows,
            dict(result.dependents),
            (counts.kept_unless or 0) if counts else 0,  # erase plans are counted exactly
            result.error,
        )


@dataclass
class ErasureRequest:
    """One subject's request; ``subject`` is its position in the command (1, 2, ...), so
    the output names no subject id."""

    subject: int
    subject_digest: str
    held: bool
    request_id: str | None = None
    rules: list[ErasedRule] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.rules)

    @property
    def outcome(self) -> str:
        if self.held:
            return HELD
        statuses = {r.status for r in self.rules}
        for status in (Status.FAILED, Status.SKIPPED, Status.INTERRUPTED, Status.PARTIAL):
            if status in statuses:
                return "incomplete"
        return "planned" if Status.PLANNED in statuses else "done"

    def tables(self) -> dict[str, int]:
        """Rows per table, the rules' own tables and their cascades' together."""
        found: dict[str, int] = {}
        for r in self.rules:
            found[r.table] = found.get(r.table, 0) + r.rows
            for table, n in r.dependents.items():
                found[table] = found.get(table, 0) + n
        return found


@dataclass
class ErasureResult:
    requests: list[ErasureRequest]
    dry_run: bool
    now: datetime

    @property
    def exit_code(self) -> ExitCode:
        """SPEC 4's order: a failed rule (1), then a held subject (3), then a rule another
        run held or a signal (75), else 0. A dry run reports holds and exits 0, as plan."""
        statuses = {r.status for q in self.requests for r in q.rules}
        if Status.FAILED in statuses:
            return ExitCode.FAILED
        if not self.dry_run and any(q.held for q in self.requests):
            return ExitCode.GUARD
        if statuses & {Status.SKIPPED, Status.INTERRUPTED}:
            return ExitCode.TEMPFAIL
        return ExitCode.OK


@dataclass
class Eraser:
    """Erases subjects on one database, with one policy and schema, at one clock reading."""

    engine: Engine
    loaded: LoadedPolicy
    catalog: Catalog
    hash_key: bytes
    now: datetime
    control: Control = field(default_factory=Control)
    lease_terms: LeaseTerms = field(default_factory=LeaseTerms)

    def __post_init__(self) -> None:
        policy = self.loaded.policy
        chosen = [i for i, r in enumerate(policy.rules) if r.enabled and r.hold_subject is not None]
        if not chosen:
            raise ConfigError(
                f"{self.loaded.path}: no enabled rule names hold_subject, so erase cannot "
                "find a subject's rows: give the rules of personal tables a hold_subject"
            )
        order, _ = ordered(policy, self.catalog, chosen)
        self.rules = [policy.rules[i] for i in order]
        self.backend = backend_for(self.engine)

    def plans(self, subject: str) -> list[RulePlan]:
        policy = self.loaded.policy
        planner = SubjectPlanner(policy, self.catalog, self.now, self.backend, subject)
        return [planner.plan(rule) for rule in self.rules]

    def held(self, conn: Connection, subject: str) -> bool:
        check = hold_check(self.loaded.policy, self.catalog, self.now, subject)
        return check is not None and conn.execute(check).first() is not None

    def dry_run(self, conn: Connection, subjects: Sequence[str]) -> ErasureResult:
        """What each request would remove, counted in ``conn`` (read-only): writes nothing."""
        requests = []
        for n, subject in enumerate(subjects, 1):
            digest = subject_digest(self.hash_key, subject)
            request = ErasureRequest(n, digest, self.held(conn, subject))
            for plan in self.plans(subject):
                counts = count_rule(conn, plan)
                request.rules.append(
                    ErasedRule(
                        plan.name,
                        plan.table.fullname,
                        plan.action,
                        Status.PLANNED,
                        0 if request.held else counts.due,
                        {} if request.held else counts.dependents,
                        counts.kept_unless or 0,  # count_rule counts it: never None
                    )
                )
            requests.append(request)
        return ErasureResult(requests, True, self.now)

    def erase(self, subjects: Sequence[str]) -> ErasureResult:
        """Erase each subject in turn, each a request with its own records."""
        result = ErasureResult([], False, self.now)
        for n, subject in enumerate(subjects, 1):
            if self.control.stop_requested():
                break
            result.requests.append(self.one(n, subject))
        return result

    def one(self, n: int, subject: str) -> ErasureRequest:
        policy = self.loaded.policy
        with self.engine.connect() as conn:
            held = self.held(conn, subject)
            conn.rollback()
        request = ErasureRequest(n, subject_digest(self.hash_key, subject), held, str(uuid.uuid4()))
        audit = AuditWriter(
            policy.audit.table,
            self.loaded.sha256,
            run_id=request.request_id or "",
            record_keys=policy.audit.record_keys,
            stopping=self.control.stopping,
        )
        audit.ensure_tables(self.engine)
        leases = Leases(
            self.engine,
            audit.table_name,
            audit.run_id,
            self.lease_terms,
            stopping=self.control.stopping,
        )
        with leases.heartbeat(), leases.holding(run_lease(audit.run_id), forget=True):
            audit.append_committed(
                self.engine,
                Event.ERASURE_STARTED,
                cutoff=self.now,
                details={
                    "subject_digest": request.subject_digest,
                    "rules": [r.name for r in self.rules],
                    "now": self.now.isoformat(),
                    "key_fingerprint": key_fingerprint(self.hash_key),
                },
            )
            if not held:
                for plan in self.plans(subject):
                    executor = Executor(self.engine, audit, self.hash_key, self.control)
                    lease = leases.holding(rule_lease(plan.name))
                    request.rules.append(ErasedRule.of(executor.run_rule(plan, lease, leases)))
            audit.append_committed(
                self.engine,
                Event.ERASURE_FINISHED,
                cutoff=self.now,
                row_count=request.rows,
                dependents=_dependents(request) or None,
                details=_finished(request),
            )
        log.info(
            "erasure finished"
            if not held
            else "erasure refused: the subject is under a legal hold",
            request_id=request.request_id,
            outcome=request.outcome,
            rows=request.rows,
        )
        return request


def _dependents(request: ErasureRequest) -> dict[str, int]:
    found: dict[str, int] = {}
    for r in request.rules:
        for table, n in r.dependents.items():
            found[table] = found.get(table, 0) + n
    return found


def _finished(request: ErasureRequest) -> dict[str, Any]:
    details: dict[str, Any] = {
        "subject_digest": request.subject_digest,
        "outcome": request.outcome,
        "rules": {r.rule: r.status for r in request.rules},
        "tables": request.tables(),
    }
    if request.held:
        details["reason"] = "an active legal hold names the subject: nothing was erased"
    return details
