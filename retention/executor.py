"""Runs a plan in keyset batches, one transaction per batch (SPEC section 5).

Per batch: select and lock the next rows under the full condition (walking the key
forward from the last batch), handle their dependents, delete or anonymise exactly those
keys, and append the batch's audit record, all in one transaction. A crash at any instant
leaves either the whole batch with its record, or neither.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError

from retention.anonymisers import HmacKeys
from retention.audit.writer import AuditWriter
from retention.errors import RuleFailed
from retention.logs import get_logger
from retention.plan import CascadePlan, RulePlan
from retention.planner import KEYS, PARENT_VALUES, UPTO

log = get_logger("retention.executor")

# PostgreSQL SQLSTATEs and MySQL error numbers worth a retry: deadlock, serialisation
# failure, lock wait timed out (after which MySQL rolled back only the statement; the
# whole batch is rolled back here).
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})
RETRYABLE_MYSQL = frozenset({1213, 1205})


@dataclass
class Control:
    """How far a run may go, and the flag a signal handler sets to stop it."""

    max_batches: int | None = None
    deadline: float | None = None  # time.monotonic() value
    stop_requested: Callable[[], bool] = lambda: False
    on_batch: Callable[[str, int, int], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    max_retries: int = 5


@dataclass
class Counts:
    total: int
    due: int
    kept_unless: int
    kept_holds: int
    dependents: dict[str, int]


@dataclass
class RuleResult:
    """What happened to one rule; rendered by the CLI, recorded in the audit log."""

    rule: str
    table: str
    action: str
    cutoff: datetime
    status: str  # planned | done | partial | skipped | guard_tripped | failed | interrupted
    counts: Counts | None = None
    rows: int = 0
    dependents: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    guard: str = "ok"
    guard_overridden: bool = False
    stopped_by: str | None = None
    error: str | None = None
    next_run: datetime | None = None


def count_rule(conn: Connection, plan: RulePlan, *, dependents: bool = True) -> Counts:
    """The counts a plan shows and the guard checks.

    A run skips the dependents' counts (a join over every due row): it counts the
    dependents it really handles, batch by batch.
    """

    def scalar(statement: Any) -> int:
        return int(conn.execute(statement).scalar_one()) if statement is not None else 0

    found: dict[str, int] = {}

    def walk(cascades: Sequence[CascadePlan]) -> None:
        for cascade in cascades:
            found[cascade.name] = found.get(cascade.name, 0) + scalar(cascade.count)
            walk(cascade.children)

    row = conn.execute(plan.count_selection).one()
    kept_unless, kept_holds = int(row.kept_unless), int(row.kept_holds)
    due = int(row.matched) - kept_unless - kept_holds
    if dependents:
        walk(plan.cascades)
    # The table's size only matters to a fraction guard, and only when something is due.
    total = scalar(plan.count_total) if dependents or due else 0
    return Counts(
        total=total, due=due, kept_unless=kept_unless, kept_holds=kept_holds, dependents=found
    )


def guard_verdict(plan: RulePlan, counts: Counts) -> str:
    """'ok', or why the guard trips: checked after counting, before the first write."""
    guard = plan.guard
    if counts.due > guard.max_rows:
        return f"max_rows: {counts.due} due > {guard.max_rows}"
    if counts.total and counts.due / counts.total > guard.max_fraction:
        share = counts.due / counts.total
        return f"max_fraction: {share:.3f} of the table due > {guard.max_fraction}"
    return "ok"


def key_digest(hash_key: bytes, keys: Sequence[tuple[Any, ...]]) -> str:
    """HMAC-SHA-256 over the batch's sorted keys, canonically encoded."""
    return hmac.new(hash_key, encode_keys(keys), hashlib.sha256).hexdigest()


def encode_keys(keys: Sequence[tuple[Any, ...]]) -> bytes:
    """The keys as compact JSON: an array of arrays, sorted by value (2 before 10)."""
    if keys and all(len(key) == 1 and type(key[0]) is int for key in keys):
        # Fast path, the same bytes: single integer keys (not bool, a subclass of int).
        ordered = sorted(key[0] for key in keys)
        return ("[" + ",".join([f"[{v}]" for v in ordered]) + "]").encode()
    plain = sorted([_plain(v) for v in key] for key in keys)
    return json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@dataclass
class Executor:
    """Executes one rule's plan against an engine; the caller holds the rule's lock."""

    engine: Engine
    audit: AuditWriter
    hash_key: bytes
    control: Control
    override_guard: bool = False

    def run_rule(self, plan: RulePlan) -> RuleResult:
        started = self.control.monotonic()
        result = RuleResult(
            plan.name, plan.table.fullname, plan.action, plan.cutoff, "done", next_run=plan.next_run
        )
        with self.engine.connect() as raw:
            conn = self._for_writing(raw)
            with conn.begin():
                counts = count_rule(conn, plan, dependents=False)
            result.counts = counts
            result.guard = guard_verdict(plan, counts)
            if result.guard != "ok" and not self.override_guard:
                result.status = "guard_tripped"
                with conn.begin():
                    self.audit.append(
                        conn,
                        "guard_tripped",
                        **self._about(plan),
                        row_count=0,
                        details={"due": counts.due, "total": counts.total, "verdict": result.guard},
                    )
                log.warning("guard tripped", rule=plan.name, verdict=result.guard)
                return result
            result.guard_overridden = result.guard != "ok"
            try:
                self._batches(conn, plan, result, counts)
            except (DBAPIError, RuleFailed) as exc:
                result.status = "failed"
                result.error = describe_error(exc)
                with conn.begin():
                    self.audit.append(
                        conn,
                        "rule_failed",
                        **self._about(plan),
                        row_count=result.rows,
                        details={"error": result.error, "batches": result.batches},
                    )
                log.error("rule failed", rule=plan.name, error=result.error, rows=result.rows)
                result.seconds = self.control.monotonic() - started
                return result
            result.seconds = self.control.monotonic() - started
            details: dict[str, Any] = {
                "due": counts.due,
                "kept_unless": counts.kept_unless,
                "kept_holds": counts.kept_holds,
                "batches": result.batches,
                "complete": result.status == "done",
            }
            if result.stopped_by:
                details["stopped_by"] = result.stopped_by
            if result.guard_overridden:
                details["guard_overridden"] = result.guard
            with conn.begin():
                self.audit.append(
                    conn,
                    "rule_finished",
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
        return result

    def _for_writing(self, conn: Connection) -> Connection:
        if self.engine.dialect.name == "mysql":
            # READ COMMITTED: locking reads take no gap locks on the rows they skip.
            return conn.execution_options(isolation_level="READ COMMITTED")
        return conn

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
        if plan.key_top is not None:
            with conn.begin():
                top = conn.execute(plan.key_top).scalar()
        window = 2 * plan.batch_size
        while True:
            if self.control.stop_requested():
                result.status, result.stopped_by = "interrupted", "signal"
                return
            if self.control.max_batches is not None and result.batches >= self.control.max_batches:
                result.status, result.stopped_by = "partial", "max_batches"
                return
            if (
                self.control.deadline is not None
                and self.control.monotonic() >= self.control.deadline
            ):
                result.status, result.stopped_by = "partial", "max_runtime"
                return
            upto: int | None = None
            if top is not None and last is not None and last[0] + window < top:
                upto = last[0] + window
            done = self._retrying(functools.partial(self._one_batch, conn, plan, last, upto))
            if done is None:
                if upto is None:
                    return
                # Nothing due in the window: walk on past it, in a wider one.
                last, window = (upto,), window * 2
                continue
            last, rows, dependents = done
            if upto is not None:
                if rows < plan.batch_size:
                    # The whole window was read: every row due in it is in this batch.
                    last, window = (upto,), window * 2
                else:
                    window = max(2 * plan.batch_size, window // 2)
            result.batches += 1
            result.rows += rows
            for name, n in dependents.items():
                result.dependents[name] = result.dependents.get(name, 0) + n
            if self.control.on_batch is not None:
                self.control.on_batch(plan.name, result.rows, counts.due)
            if upto is None and rows < plan.batch_size:
                return  # a short batch read every due row left: the rule is done
            if plan.sleep:
                self.control.sleep(plan.sleep)

    def _retrying(self, attempt: Callable[[], Any]) -> Any:
        delay = 0.05
        for tries in range(self.control.max_retries + 1):
            try:
                return attempt()
            except DBAPIError as exc:
                if not is_retryable(exc) or tries == self.control.max_retries:
                    raise
                log.warning("batch retried", error=describe_error(exc), attempt=tries + 1)
                self.control.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _one_batch(
        self,
        conn: Connection,
        plan: RulePlan,
        last: tuple[Any, ...] | None,
        upto: int | None = None,
    ) -> tuple[tuple[Any, ...], int, dict[str, int]] | None:
        with conn.begin():
            if last is None:
                rows = conn.execute(plan.select_first).all()
            elif upto is not None and plan.select_window is not None:
                params = {"last_0": last[0], UPTO: upto}
                rows = conn.execute(plan.select_window, params).all()
            else:
                params = {f"last_{i}": v for i, v in enumerate(last)}
                rows = conn.execute(plan.select_next, params).all()
            if not rows:
                return None
            width = len(plan.key)
            keys = [tuple(row[:width]) for row in rows]
            dependents: dict[str, int] = {}
            for cascade in plan.cascades:
                self._cascade(conn, cascade, plan.fetch, rows, dependents)
            params = self._secret_params()
            params[KEYS] = [k[0] for k in keys] if width == 1 else keys
            affected = conn.execute(plan.apply, params).rowcount
            if affected != len(keys):
                # The rows were locked by the select; anything else is a bug, and the
                # batch must not commit with a digest over keys it did not remove.
                raise RuleFailed(
                    plan.name, plan.table.fullname, f"{affected} rows changed for {len(keys)} keys"
                )
            self.audit.append(
                conn,
                "batch",
                **self._about(plan),
                row_count=affected,
                dependents=dependents or None,
                key_digest=key_digest(self.hash_key, keys),
            )
            self.audit.append_keys(conn, self.hash_key, plan.table.fullname, keys)
        return keys[-1], affected, dependents

    def _cascade(
        self,
        conn: Connection,
        cascade: CascadePlan,
        parent_columns: Sequence[str],
        parent_rows: Sequence[Row[Any]],
        dependents: dict[str, int],
    ) -> None:
        positions = [parent_columns.index(p) for p in cascade.link.values()]
        values = sorted(
            {
                tuple(row[i] for i in positions)
                for row in parent_rows
                if all(row[i] is not None for i in positions)
            }
        )
        if not values:
            return
        bound: Any = [v[0] for v in values] if len(positions) == 1 else values
        params = self._secret_params()
        params[PARENT_VALUES] = bound
        if cascade.select_links is not None and cascade.children:
            children = conn.execute(cascade.select_links, params).all()
            for child in cascade.children:
                self._cascade(conn, child, cascade.needs, children, dependents)
        n = conn.execute(cascade.apply, params).rowcount
        dependents[cascade.name] = dependents.get(cascade.name, 0) + max(n, 0)

    def _secret_params(self) -> dict[str, Any]:
        """The HMAC pads as parameters (SQLite has them in a registered function)."""
        if self.engine.dialect.name == "sqlite":
            return {}
        return {"hmac_inner": self._pads.inner, "hmac_outer": self._pads.outer}

    @functools.cached_property
    def _pads(self) -> HmacKeys:
        return HmacKeys.from_key(self.hash_key)


def is_retryable(exc: DBAPIError) -> bool:
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in RETRYABLE_MYSQL:
        return True
    return "database is locked" in str(orig).lower()


def describe_error(exc: BaseException) -> str:
    """An error's class and code, never its message: messages can quote row values."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    # MySQL drivers carry the server's error number first (1205, 1213); their sqlstate is
    # often the generic HY000. PostgreSQL drivers carry a precise sqlstate.
    code: Any = args[0] if args and isinstance(args[0], int) else None
    if code is None:
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    name = type(orig).__name__
    return f"{name} ({code})" if code is not None else name
