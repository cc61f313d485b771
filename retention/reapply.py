"""``retention audit reapply``: rows the log records as removed, removed again (SPEC 4).

After a backup is restored (or an import replayed), rows the rules removed are back.
With ``audit: {record_keys: true}`` the log holds, per removed key, a keyed digest of the
table's name and the key (``audit.query.removed_key_digest``), and the batch record that
removed it names the rule. The digests cannot be turned back into keys, so each rule's
table is walked in key order, a page of keys at a time: their digests are computed here
and looked up, by the side table's index, among the digests the log holds for that rule.
The keys found go through the rule again, as one plan per page whose selection is those
keys (``planner.scoped.KeysPlanner``: no cutoff, ``where`` or ``unless``, since the
removal was decided when it was recorded; holds and an anonymise rule's "already done"
still apply), with its cascades, in the run's batches, records and leases. Memory stays
that of one page, however many keys the log records.

Cost: one read of every key of each rule's table (an index-only scan where the database
can), one HMAC per key in Python, and one indexed lookup of up to ``PAGE`` digests per
page; then the usual batches for the rows found.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, MetaData, Table, select, tuple_

from retention.audit.query import audit_keys_table, keys_recorded, removed_key_digest
from retention.audit.records import audit_tables, key_fingerprint
from retention.audit.writer import AuditWriter
from retention.backends import backend_for
from retention.catalog import Catalog
from retention.control import Control
from retention.counting import Counts, count_rule
from retention.errors import ConfigError, LockNotAcquired, UsageError
from retention.executor import Executor
from retention.leases import Leases, LeaseTerms, rule_lease, run_lease
from retention.logs import get_logger
from retention.outcomes import Event, ExitCode, Status
from retention.plan import RulePlan
from retention.planner.order import ordered
from retention.planner.scoped import KeysPlanner
from retention.policy.loader import LoadedPolicy
from retention.policy.model import Rule
from retention.throttle import BatchSizer, retrying

log = get_logger("retention.reapply")

#: live keys per page: their digests are looked up in one bounded IN list
PAGE = 1000


@dataclass
class Reapplied:
    """One rule: live rows whose key the log records as removed by it, and what became
    of them."""

    rule: str
    table: str
    action: str
    recorded: int = 0  # live rows whose key's digest the log holds for this rule
    rows: int = 0  # removed or anonymised again (in a dry run: would be)
    dependents: dict[str, int] = field(default_factory=dict)
    kept_holds: int = 0
    batches: int = 0
    status: str = Status.DONE
    error: str | None = None

    @property
    def already_done(self) -> int:
        """Recorded rows an anonymise rule finds anonymised already."""
        return max(self.recorded - self.rows - self.kept_holds, 0)


@dataclass
class ReapplyResult:
    run_id: str | None
    dry_run: bool
    rules: list[Reapplied] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        statuses = {r.status for r in self.rules}
        if Status.FAILED in statuses:
            return ExitCode.FAILED
        if statuses & {Status.SKIPPED, Status.INTERRUPTED}:
            return ExitCode.TEMPFAIL
        return ExitCode.OK


@dataclass
class Reapplier:
    engine: Engine
    loaded: LoadedPolicy
    catalog: Catalog
    hash_key: bytes
    now: datetime
    table: str | None = None
    control: Control = field(default_factory=Control)
    lease_terms: LeaseTerms = field(default_factory=LeaseTerms)

    def __post_init__(self) -> None:
        policy = self.loaded.policy
        if not policy.audit.record_keys:
            raise ConfigError(
                f"{self.loaded.path}: audit reapply needs the log's per-key digests: set "
                "`audit: {record_keys: true}` (keys removed before it was set cannot be found)"
            )
        tables = sorted({r.table for r in policy.rules if r.enabled})
        if self.table is not None and self.table not in tables:
            raise UsageError(
                f"--table: no enabled rule acts on table '{self.table}' "
                f"(rules act on: {', '.join(tables)})"
            )
        chosen = [
            i
            for i, r in enumerate(policy.rules)
            if r.enabled and (self.table is None or r.table == self.table)
        ]
        order, _ = ordered(policy, self.catalog, chosen)
        self.rules: list[Rule] = [policy.rules[i] for i in order]
        self.backend = backend_for(self.engine)
        metadata = MetaData()
        self.keys = audit_keys_table(metadata, policy.audit.table)
        _, self.records, _ = audit_tables(policy.audit.table)
        #: batch records already read: seq -> (rule, table)
        self._batches: dict[int, tuple[str, str]] = {}

    def page_plan(self, rule: Rule, keys: Sequence[tuple[Any, ...]]) -> RulePlan:
        planner = KeysPlanner(self.loaded.policy, self.catalog, self.now, self.backend, keys)
        return planner.plan(rule)

    def recorded_pages(self, conn: Connection, rule: Rule) -> Iterator[list[tuple[Any, ...]]]:
        """Pages of live keys of the rule's table whose digest the log holds for the rule.

        Each page is read in a transaction of its own, closed before the caller writes."""
        table = self.catalog.table(rule.table)
        assert table is not None
        key = rule.key or [c.name for c in table.primary_key.columns]
        cols = [table.c[k] for k in key]
        present = [c.is_not(None) for c in cols if c.nullable]
        last: tuple[Any, ...] | None = None
        while True:
            page = select(*cols).where(*present).order_by(*cols).limit(PAGE)
            if last is not None:
                page = page.where(_after(cols, last))
            # A dry run's read-only connection is in its one transaction already.
            with nullcontext() if conn.in_transaction() else conn.begin():
                keys = [tuple(row) for row in conn.execute(page)]
                if not keys:
                    return
                digests = {removed_key_digest(self.hash_key, table.fullname, k): k for k in keys}
                found = self._lookup(conn, rule.name, table, list(digests))
            last = keys[-1]
            matched = [k for d, k in digests.items() if d in found]
            if matched:
                yield matched
            if len(keys) < PAGE:
                return

    def _lookup(self, conn: Connection, rule: str, table: Table, digests: list[str]) -> set[str]:
        """Which of ``digests`` the log holds for ``rule`` on ``table``: the side table by
        its index, then the rule of each batch record found (kept, by ``seq``: a log holds
        few batch records for many keys). Two plain lookups: MariaDB joined the two
        tables for every page at a fraction of the speed."""
        k, r = self.keys, self.records
        pairs = conn.execute(
            select(k.c.key_digest, k.c.seq).where(k.c.key_digest.in_(digests))
        ).all()
        if len(self._batches) > 100_000:
            self._batches.clear()  # memory stays bounded on a log of very many batches
        unknown = sorted({int(seq) for _, seq in pairs} - self._batches.keys())
        for start in range(0, len(unknown), PAGE):
            chunk = unknown[start : start + PAGE]
            query = select(r.c.seq, r.c.rule, r.c.table_name).where(r.c.seq.in_(chunk))
            for seq, name, where in conn.execute(query):
                self._batches[int(seq)] = (name, where)
        wanted = (rule, table.fullname)
        return {d for d, seq in pairs if self._batches.get(int(seq)) == wanted}

    def dry_run(self, conn: Connection) -> ReapplyResult:
        """Counts only, in ``conn`` (read-only): writes nothing."""
        result = ReapplyResult(None, True)
        if not keys_recorded(conn, self.loaded.policy.audit.table):
            result.rules = [self._about(rule) for rule in self.rules]
            return result
        for rule in self.rules:
            about = self._about(rule)
            for matched in self.recorded_pages(conn, rule):
                counts = count_rule(conn, self.page_plan(rule, matched))
                _add_counts(about, len(matched), counts)
            about.status = Status.PLANNED
            result.rules.append(about)
        return result

    def reapply(self) -> ReapplyResult:
        """Remove the recorded rows again, rule by rule, between ``run_started`` and
        ``run_finished``; each rule ends with a ``reapplied`` record of its counts."""
        policy = self.loaded.policy
        audit = AuditWriter(
            policy.audit.table,
            self.loaded.sha256,
            run_id=str(uuid.uuid4()),
            record_keys=True,
            stopping=self.control.stopping,
        )
        audit.ensure_tables(self.engine)
        result = ReapplyResult(audit.run_id, False)
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
                Event.RUN_STARTED,
                details={
                    "command": "audit reapply",
                    "rules": [r.name for r in self.rules],
                    "now": self.now.isoformat(),
                    "key_fingerprint": key_fingerprint(self.hash_key),
                },
            )
            for rule in self.rules:
                if self.control.stop_requested():
                    break
                result.rules.append(self._rule(rule, audit, leases))
            stopped = self.control.stop_requested()
            audit.append_committed(
                self.engine,
                Event.RUN_INTERRUPTED if stopped else Event.RUN_FINISHED,
                ended_by=(Event.RUN_FINISHED, Event.RUN_INTERRUPTED),
                details={
                    "rules": {r.rule: r.status for r in result.rules},
                    "rows": sum(r.rows for r in result.rules),
                },
            )
        return result

    def _rule(self, rule: Rule, audit: AuditWriter, leases: Leases) -> Reapplied:
        about = self._about(rule)
        executor = Executor(self.engine, audit, self.hash_key, self.control)
        try:
            with leases.holding(rule_lease(rule.name)) as lease, self.engine.connect() as raw:
                executor.lease = (leases, lease)
                conn = self.backend.for_writing(raw)
                for matched in self.recorded_pages(conn, rule):
                    plan = self.page_plan(rule, matched)
                    with conn.begin():
                        counts = count_rule(conn, plan, dependents=False)
                    about.recorded += len(matched)
                    about.kept_holds += counts.kept_holds or 0  # exact: never None
                    self._page(executor, conn, plan, about)
        except LockNotAcquired as taken:
            about.status = executor.skipped(self.page_plan(rule, []), taken).status
            return about
        except Exception as exc:  # the boundary of a rule, as in a run (Executor.run_rule)
            failed = executor.failed(self.page_plan(rule, []), exc)
            about.status, about.error = Status.FAILED, failed.error
            return about
        audit.append_committed(
            self.engine,
            Event.REAPPLIED,
            rule=rule.name,
            table_name=about.table,
            action=rule.action,
            row_count=about.rows,
            dependents=about.dependents or None,
            details={
                "recorded": about.recorded,
                "kept_holds": about.kept_holds,
                "already_done": about.already_done,
                "batches": about.batches,
            },
        )
        log.info("reapplied", rule=rule.name, rows=about.rows, recorded=about.recorded)
        return about

    def _page(self, executor: Executor, conn: Connection, plan: RulePlan, about: Reapplied) -> None:
        """The page's rows in batches (one unless a conflict shrinks them), recorded as a
        run's batches are; ``about.rows`` becomes what was really removed."""
        sizer = BatchSizer(plan.batch_size)
        while True:
            batch = functools.partial(executor._one_batch, conn, plan, None, None)
            done = retrying(batch, sizer, about.batches + 1, self.backend, self.control)
            if done is None:
                break
            _, rows, dependents = done
            sizer.committed(about.batches + 1)
            about.batches += 1
            about.rows += rows
            for name, n in dependents.items():
                about.dependents[name] = about.dependents.get(name, 0) + n
            if rows < sizer.size:
                break

    def _about(self, rule: Rule) -> Reapplied:
        table = self.catalog.table(rule.table)
        assert table is not None
        return Reapplied(rule.name, table.fullname, rule.action)


def _add_counts(about: Reapplied, recorded: int, counts: Counts) -> None:
    about.recorded += recorded
    about.rows += counts.due
    about.kept_holds += counts.kept_holds or 0  # exact: never None
    for name, n in counts.dependents.items():
        about.dependents[name] = about.dependents.get(name, 0) + n


def _after(cols: Sequence[Any], last: tuple[Any, ...]) -> ColumnElement[bool]:
    """``key > last``, for the walk over the live keys (a row-value comparison where the
    key has several columns)."""
    if len(cols) == 1:
        return cols[0] > last[0]  # type: ignore[no-any-return]
    return tuple_(*cols) > tuple_(*last)
