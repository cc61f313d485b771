"""The auditors' commands as Python functions: records, export, certificate, find_keys.

``retention.api`` names every public function here (and imports this module when one is
first used); import them from there. Each
function reads the log through a read-only connection, checks its period first
(``UsageError`` for one that holds no instant) and returns data; rendering is the
caller's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Select, case, func
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import Case, ColumnElement

from retention.api import load
from retention.api_db import _compile, read_heads, read_only
from retention.audit.erasures import erasure_requests
from retention.audit.evidence import OldestKept
from retention.audit.export import write_export
from retention.audit.formats import Format
from retention.audit.query import (
    Record,
    When,
    check_period,
    first_keyed_record,
    iter_records,
    key_proof,
)
from retention.audit.records import key_fingerprint
from retention.audit.report import certificate as build_certificate
from retention.audit.report import report_data
from retention.audit.verify import key_fingerprints
from retention.coverage.scan import CoverageReport, scan
from retention.db import make_engine, reachable
from retention.errors import AuditTampered, PolicyError
from retention.plan import RulePlan, StepKind
from retention.policy.loader import LoadedPolicy
from retention.policy.model import Cascade, Policy
from retention.settings import Settings


@contextmanager
def _reading(settings: Settings) -> Iterator[tuple[LoadedPolicy, Engine, Connection]]:
    loaded = load(settings)
    engine = make_engine(settings, read_only=True)
    try:
        with reachable(engine), read_only(engine) as conn:
            yield loaded, engine, conn
    finally:
        engine.dispose()


def coverage(settings: Settings) -> CoverageReport:
    """The columns that look personal, and the rules that cover them (``coverage.scan``).
    Reads a bounded sample of each table; writes nothing."""
    with _reading(settings) as (loaded, _, conn):
        return scan(conn, loaded.policy)


@contextmanager
def audit_records(
    settings: Settings,
    *,
    since: When | None = None,
    until: When | None = None,
    rule: str | None = None,
    run_id: str | None = None,
) -> Iterator[Iterator[Record]]:
    """The log's records, oldest first, streamed while the ``with`` block lasts."""
    check_period(since, until)
    with _reading(settings) as (loaded, _, conn):
        records = iter_records(
            conn, loaded.policy.audit.table, since=since, until=until, rule=rule, run_id=run_id
        )
        with closing(records):
            yield records


def export(
    settings: Settings,
    out: TextIO,
    *,
    fmt: Format = "jsonl",
    since: When | None = None,
    until: When | None = None,
) -> int:
    """Write every record of the period to ``out`` (JSON Lines or CSV); returns how many."""
    with audit_records(settings, since=since, until=until) as records:
        return write_export(records, fmt, out)


@dataclass(frozen=True)
class Certificate:
    """The certificate's document, and the chain's break to raise once it is written."""

    data: dict[str, Any]
    error: AuditTampered | None


def certificate(
    settings: Settings,
    *,
    since: When | None = None,
    until: When | None = None,
    expect_head: str | None = None,
    heads_file: str | None = None,
    now: datetime | None = None,
) -> Certificate:
    """The certificate of deletion for a period: a broken chain is in it, not raised."""
    check_period(since, until)
    kept_heads = read_heads(heads_file)
    now = now or datetime.now(UTC)
    with _reading(settings) as (loaded, engine, conn):
        oldest = oldest_kept(settings, engine, loaded, now)
        report = build_certificate(
            conn,
            loaded,
            database=settings.masked_url(),
            now=now,
            since=since,
            until=until,
            expect_head=expect_head,
            kept_heads=kept_heads,
            heads_file=heads_file,
            oldest_kept=oldest,
        )
        data = report_data(report)
        data["erasure_requests"] = erasure_requests(
            conn, loaded, report.verification.ok, since, until
        )
    return Certificate(data, report.verification.error)


def oldest_kept(
    settings: Settings, engine: Engine, loaded: LoadedPolicy, now: datetime
) -> dict[str, OldestKept]:
    """Per rule, the age in days of the oldest row past its cutoff that ``unless`` or a
    hold keeps now: an exception that never ends shows as an age that only grows.

    Read-only, one query per rule, each in its own transaction so that a table the
    auditor may not read costs that rule's figure only.
    """
    names = [rule.name for rule in loaded.policy.rules]
    try:
        _, plan = _compile(settings, engine, names, now, loaded)
    except PolicyError:
        note = "the policy does not fit the database's schema; run `retention validate`"
        return {name: OldestKept(note=note) for name in names}
    out: dict[str, OldestKept] = {}
    for rule_plan in plan.rules:
        try:
            with read_only(engine) as conn:
                out[rule_plan.name] = _oldest(conn, rule_plan, now, loaded)
        except DBAPIError as exc:
            reason = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
            out[rule_plan.name] = OldestKept(note=f"its table could not be read ({reason})")
    return out


def _oldest(conn: Connection, plan: RulePlan, now: datetime, loaded: LoadedPolicy) -> OldestKept:
    count = _count_statement(plan)
    unless, held = (_kept_when(count, label) for label in ("kept_unless", "kept_holds"))
    clock = plan.clock
    # The count's own WHERE (rows past the cutoff) and its own split of the kept rows,
    # so these ages are of exactly the rows `plan` counts as kept.
    stmt = count.with_only_columns(func.min(case((unless, clock))), func.min(case((held, clock))))
    first_unless, first_held = conn.execute(stmt).one()
    timezone = ZoneInfo(loaded.policy.defaults.timezone)
    return OldestKept(
        _age(first_unless, plan, now, timezone), _age(first_held, plan, now, timezone)
    )


def _count_statement(plan: RulePlan) -> Select[Any]:
    """The plan's count of the rows past the cutoff, the statement ``plan`` runs first."""
    statement = plan.statement(StepKind.COUNT_SELECTION)
    assert isinstance(statement, Select)
    return statement


def _kept_when(count: Select[Any], label: str) -> ColumnElement[bool]:
    """The condition inside the count's ``sum(case((kept, 1), else_=0))`` column."""
    for element in visitors.iterate(count.selected_columns[label]):
        if isinstance(element, Case):
            condition: ColumnElement[bool] = element.whens[0][0]
            return condition
    raise AssertionError(f"the count of the rows past the cutoff has no {label} column")


def _age(value: Any, plan: RulePlan, now: datetime, timezone: ZoneInfo) -> int | None:
    if value is None:
        return None
    unit = plan.rule.clock_unit
    if unit is not None and isinstance(value, int | float):
        value = datetime.fromtimestamp(value / (1000 if unit == "milliseconds" else 1), UTC)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return max((now - aware) // timedelta(days=1), 0)
    if isinstance(value, date):
        return max((now.astimezone(timezone).date() - value).days, 0)
    return None


@dataclass(frozen=True)
class KeyProof:
    """What the log says about one key: the records that removed it, and the limits."""

    found: list[Record]
    record_keys: bool  # the policy in force records keys
    first_keyed: Record | None  # the first batch with per-key digests, if any
    policy_path: str
    rule_tables: tuple[str, ...]
    # Runs whose records were written under another hash key (their run_started carries
    # another key fingerprint): their digests cannot match a lookup under this key.
    written_under_other_key: int = 0
    # (rule, parent table) for each cascade that reaches the table asked about: a
    # dependent's rows go with their parent's, whose keys are the ones recorded.
    dependent_of: tuple[tuple[str, str], ...] = ()


def _cascades_to(policy: Policy, table: str) -> tuple[tuple[str, str], ...]:
    """(rule, parent table) for every cascade, at any depth, whose table is ``table``."""
    found: list[tuple[str, str]] = []

    def walk(rule: str, parent: str, cascades: Sequence[Cascade]) -> None:
        for cascade in cascades:
            if cascade.table == table:
                found.append((rule, parent))
            walk(rule, cascade.table, cascade.cascade)

    for rule in policy.rules:
        walk(rule.name, rule.table, rule.cascade)
    return tuple(dict.fromkeys(found))


def find_keys(
    settings: Settings,
    *,
    table: str,
    keys: Sequence[str],
    since: When | None = None,
    until: When | None = None,
) -> KeyProof:
    """The batch records that removed one key of ``table``; the key is never returned."""
    check_period(since, until)
    hash_key = settings.require_hash_key()
    with _reading(settings) as (loaded, _, conn):
        audit_table = loaded.policy.audit.table
        first = first_keyed_record(conn, audit_table)
        found = key_proof(conn, audit_table, hash_key, table, keys, since=since, until=until)
        fingerprints = key_fingerprints(conn, audit_table)
    ours = key_fingerprint(hash_key)
    other = sum(runs for fingerprint, runs in fingerprints.items() if fingerprint != ours)
    return KeyProof(
        found,
        loaded.policy.audit.record_keys,
        first,
        loaded.path,
        tuple(sorted({r.table for r in loaded.policy.rules})),
        other,
        _cascades_to(loaded.policy, table),
    )


__all__ = [
    "Certificate",
    "KeyProof",
    "audit_records",
    "certificate",
    "coverage",
    "export",
    "find_keys",
    "oldest_kept",
]
