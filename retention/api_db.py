"""The commands that open a database: plan, run, verify, demo, serve, ``validate`` online.

Part of the Python API: ``retention.api`` names every function here and imports this
module the first time one is used, so that the commands without a database (``schema``,
``validate --offline``, ``--help``) start without SQLAlchemy. ``serve`` and ``demo`` load
their own modules (APScheduler, the demo's tables) when called, for the same reason.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from sqlalchemy import Connection, Dialect, Engine

from retention.api import load, parked_rules
from retention.audit.writer import AuditWriter, ensure_audit_tables
from retention.backends import backend_for
from retention.catalog import Catalog, reflect, suggest
from retention.control import Control
from retention.counting import Counts, count_rule, guard_verdict
from retention.db import lock_waits, make_engine, reachable, require_writable, shown_url
from retention.errors import DatabaseUnavailable, PolicyError, UsageError
from retention.leases import LeaseTerms
from retention.partitions import Verdict, for_plan
from retention.plan import Plan, RulePlan
from retention.planner import make_plan
from retention.policy.loader import LoadedPolicy
from retention.policy.model import Policy
from retention.runner import RunResult, run_plan
from retention.schema_check import check_schema, policy_tables
from retention.settings import DEFAULT_DATABASE_URL, Settings
from retention.throttle import ReplicaWatch, watch_replicas

if TYPE_CHECKING:
    from retention.audit.verify import Verified

_HEAD = re.compile(r"[0-9a-f]{64}")


def reflect_checked(engine: Engine, loaded: LoadedPolicy, named: Sequence[str] = ()) -> Catalog:
    """Reflect the schema and hold the policy against it; ``PolicyError`` if it misfits,
    each problem naming the database it was checked against (masked)."""
    with reachable(engine), engine.connect() as conn:
        catalog = reflect(conn, policy_tables(loaded.policy))
        conn.rollback()
    problems = check_schema(
        loaded.policy, catalog, loaded.locator, parked_rules(loaded.policy, named)
    )
    if problems:
        where = f" (in {shown_url(engine)})"
        raise PolicyError([replace(p, message=p.message + where) for p in problems])
    return catalog


def check_database(settings: Settings, loaded: LoadedPolicy) -> None:
    """``validate`` without ``--offline``: hold the policy against the database's schema."""
    engine = make_engine(settings, read_only=True)
    try:
        reflect_checked(engine, loaded)
    finally:
        engine.dispose()


def demo_hash_key(settings: Settings, env_file: Path = Path(".env")) -> Path | None:
    """When no hash key is set, append a generated one to ``env_file`` (mode 0600) so the
    demo's runs have one; returns the file written, or None when a key was set."""
    if settings.hash_key is not None:
        return None
    with env_file.open("a", encoding="utf-8") as fh:
        fh.write(f"RETENTION_HASH_KEY={secrets.token_urlsafe(32)}\n")
    env_file.chmod(0o600)
    return env_file


def demo(
    settings: Settings,
    *,
    force: bool = False,
    now: datetime | None = None,
    database_given: bool = False,
    before_changes: Callable[[], None] | None = None,
) -> Any:
    """Create the demo database for the shipped policies.yaml.

    ``database_given``: the caller named the database (``--database``); without it the demo
    works on SQLite only. Anything written outside the database (``.env``) goes in
    ``before_changes``: it runs after the demo decided to proceed and before its first
    change, so a refused demo leaves no file behind.
    """
    if not settings.database_url.get_secret_value():
        # The one command that may pick its own database: a file here, named in .env so
        # that the commands after it find it.
        settings = settings.model_copy(update={"database_url": SecretStr(DEFAULT_DATABASE_URL)})
        before_changes = _then(before_changes, demo_database_url)
    from retention.demo import create_demo  # noqa: PLC0415  (the demo's tables: demo only)

    engine = make_engine(settings)
    try:
        with reachable(engine):
            return create_demo(
                engine,
                now=now or datetime.now(UTC),
                force=force,
                named=database_given,
                before_changes=before_changes,
            )
    finally:
        engine.dispose()


def demo_database_url(env_file: Path = Path(".env")) -> Path:
    """Append the demo's own database URL to ``env_file``, for the commands after it."""
    with env_file.open("a", encoding="utf-8") as fh:
        fh.write(f"RETENTION_DATABASE_URL={DEFAULT_DATABASE_URL}\n")
    env_file.chmod(0o600)
    return env_file


def _then(first: Callable[[], Any] | None, second: Callable[[], Any]) -> Callable[[], None]:
    def both() -> None:
        if first is not None:
            first()
        second()

    return both


@dataclass(frozen=True)
class PlannedRule:
    plan: RulePlan
    counts: Counts
    guard: str
    partitions: tuple[Verdict, ...] = ()  # each partition of the table: does it go whole?


@dataclass(frozen=True)
class PlanReport:
    """What a run would do: per rule, its plan, counts and guard verdict."""

    plan: Plan
    rules: tuple[PlannedRule, ...]
    dialect: Dialect


def _check_names(policy: Policy, names: Sequence[str], what: str) -> None:
    known = [r.name for r in policy.rules]
    for name in names:
        if name not in known:
            raise UsageError(f"{what}: no rule named '{name}'{suggest(name, known)}")


def _compile(
    settings: Settings,
    engine: Engine,
    rules: Sequence[str],
    now: datetime,
    loaded: LoadedPolicy | None = None,
) -> tuple[LoadedPolicy, Plan]:
    loaded = loaded or load(settings)
    # SPEC section 4's order: a policy that does not fit the database (78) is named before
    # an unknown --rule (2), and an unknown --rule before an unreachable database (75).
    try:
        _check_names(loaded.policy, rules, "--rule")
    except UsageError as unknown:
        with suppress(DatabaseUnavailable):
            reflect_checked(engine, loaded)
        raise unknown from None
    catalog = reflect_checked(engine, loaded, rules)
    plan = make_plan(
        loaded.policy,
        catalog,
        now,
        backend_for(engine),
        policy_sha256=loaded.sha256,
        rules=list(rules) or None,
    )
    return loaded, plan


def plan(
    settings: Settings, *, rules: Sequence[str] = (), now: datetime | None = None
) -> PlanReport:
    """A dry run: the counts and guard verdicts ``run`` would meet. Writes nothing."""
    now = now or datetime.now(UTC)
    engine = make_engine(settings, read_only=True)
    try:
        _, compiled = _compile(settings, engine, rules, now)
        planned = []
        with reachable(engine), read_only(engine) as conn:
            for rule_plan in compiled.rules:
                counts = count_rule(conn, rule_plan)
                verdict = guard_verdict(rule_plan, counts)
                whole = tuple(for_plan(conn, rule_plan, backend_for(conn)))
                planned.append(PlannedRule(rule_plan, counts, verdict, whole))
        return PlanReport(compiled, tuple(planned), engine.dialect)
    finally:
        engine.dispose()


def run(
    settings: Settings,
    *,
    rules: Sequence[str] = (),
    max_batches: int | None = None,
    max_runtime: float | None = None,
    override_guard: Sequence[str] = (),
    now: datetime | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    on_batch: Callable[[str, int, int], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    loaded: LoadedPolicy | None = None,
    run_id: str | None = None,
    slot: str | None = None,
    on_lag: Callable[[float], None] | None = None,
) -> RunResult:
    """Enforce the policy: delete or anonymise every due row, with its audit records.

    ``slot`` (from ``serve``) names the scheduled time this run is for: a rule another
    replica already ran for the same slot is skipped. ``on_lag`` receives each reading of
    the replicas' lag (seconds) while a rule with ``max_lag`` runs."""
    hash_key = settings.require_hash_key()
    _check_max_runtime(max_runtime)
    pinned = now is not None
    if now is not None and now > datetime.now(UTC):
        raise UsageError("--now: a run cannot be pinned to a time later than the clock")
    now = now or datetime.now(UTC)
    engine = make_engine(settings, hash_key=hash_key)
    control = Control(
        max_batches=max_batches,
        deadline=time.monotonic() + max_runtime if max_runtime else None,
        stop_requested=stop_requested,
        on_batch=on_batch,
        max_retries=settings.max_retries,
    )
    # Its lock waits end on a signal or at the deadline, on every database.
    writer = backend_for(engine).interruptible(engine, control.stopping)
    named: dict[str, Any] = {"run_id": run_id} if run_id else {}
    heads, replicas = None, None
    try:
        with reachable(engine), lock_waits(engine, control.why_stopped):
            # Reading the schema waits for no write lock (SQLite's file lock).
            reader = writer.execution_options(retention_readonly=True)
            loaded, compiled = _compile(settings, reader, rules, now, loaded)
            compiled = replace(compiled, now_pinned=pinned)
            _check_names(loaded.policy, override_guard, "--override-guard")
            # Every check that can refuse the run comes before its first write.
            heads = settings.open_audit_head_file()
            replicas = _watch_replicas(settings, engine, compiled, on_lag)
            require_writable(writer)
            audit = AuditWriter(
                loaded.policy.audit.table,
                loaded.sha256,
                clock=clock or (lambda: datetime.now(UTC)),
                record_keys=loaded.policy.audit.record_keys,
                stopping=control.stopping,
                **named,
            )
            control.replicas = replicas
            result = run_plan(
                writer,
                compiled,
                audit,
                hash_key,
                control,
                override_guard=frozenset(override_guard),
                lease_terms=LeaseTerms(settings.lease_seconds, settings.lease_renew_every),
                slot=slot,
            )
        result.now = now
        if heads is not None and result.head:
            heads.write(f"{result.head}\n")
        return result
    finally:
        if heads is not None:
            heads.close()
        if replicas is not None:
            replicas.close()
        engine.dispose()


def _watch_replicas(
    settings: Settings, engine: Engine, plan: Plan, on_lag: Callable[[float], None] | None
) -> ReplicaWatch | None:
    """The replicas' watch when a rule has ``max_lag`` (SPEC 5); nothing is read otherwise."""
    if all(rule.max_lag is None for rule in plan.rules):
        return None
    return watch_replicas(settings, engine, on_lag)


def _check_max_runtime(max_runtime: float | None) -> None:
    if max_runtime is not None and not (math.isfinite(max_runtime) and max_runtime > 0):
        raise UsageError(f"--max-runtime: {max_runtime} is not a positive number of seconds")


def verify(
    settings: Settings,
    *,
    expect_head: str | None = None,
    heads_file: str | None = None,
    allow_empty: bool = False,
) -> Verified:
    """Recompute the audit chain; ``AuditTampered`` names the first bad record.

    ``heads_file`` holds heads kept outside the database, one per line (the file
    ``RETENTION_AUDIT_HEAD_FILE`` collects); each must still be in the log.
    """
    from retention.audit.verify import verify_table  # noqa: PLC0415  (verify only)

    loaded = load(settings)
    kept = read_heads(heads_file)
    engine = make_engine(settings, read_only=True)
    try:
        with reachable(engine), read_only(engine) as conn:
            return verify_table(
                conn, loaded.policy.audit.table, expect_head, kept, allow_empty=allow_empty
            )
    finally:
        engine.dispose()


def audit_init(settings: Settings) -> str:
    """Create the audit tables and their append-only guards, so runs need no DDL right."""
    loaded = load(settings)
    engine = make_engine(settings)
    try:
        with reachable(engine):
            require_writable(engine)
            ensure_audit_tables(engine, loaded.policy.audit.table)
    finally:
        engine.dispose()
    return loaded.policy.audit.table


def serve(settings: Settings) -> None:
    """Run the rules on their schedules until SIGTERM/SIGINT; reload on SIGHUP."""
    from retention.worker import Worker  # noqa: PLC0415  (APScheduler: serve only)

    settings.require_hash_key()
    Worker(settings, load_checked=partial(_load_checked, settings), run=run).serve()


def _load_checked(settings: Settings) -> LoadedPolicy:
    loaded = load(settings)
    engine = make_engine(settings, read_only=True)
    try:
        reflect_checked(engine, loaded)
    finally:
        engine.dispose()
    return loaded


def read_only(engine: Engine) -> AbstractContextManager[Connection]:
    """A connection whose transaction cannot write, where the database can say so."""
    return backend_for(engine).read_only(engine)


def read_heads(path: str | None) -> list[str]:
    """The heads in a heads file, one per line; ``UsageError`` for a line that is not one.

    The line itself is not repeated in the error: a wrong file could hold anything.
    """
    if path is None:
        return []
    try:
        with open(path, encoding="utf-8") as fh:
            lines = [line.strip() for line in fh]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise UsageError(f"cannot read heads file {path}: {reason}") from None
    heads = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        if not _HEAD.fullmatch(line.lower()):
            raise UsageError(
                f"heads file {path}, line {number}: not a head (64 hexadecimal digits)"
            )
        heads.append(line.lower())
    return heads
