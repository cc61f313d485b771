"""Which columns look personal, and which rule (if any) deletes or anonymises them.

Reflects every table of the default schema (and of the schemas the policy names), reads
a bounded sample of each table's text and integer columns, and holds what the name and
value detectors (``detectors.py``) find against the enabled rules: a table a rule or a
cascade deletes from is covered in every column; an anonymise rule or cascade covers its
``set`` columns. A column the policy lists under ``coverage.ignore`` is reported as
reviewed, with its reason. The audit log's own tables are never reported.

Sampled values are only counted: no value leaves this module.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from sqlalchemy import Column, Connection, Date, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.types import TypeEngine

from retention.audit.query import audit_keys_table
from retention.audit.records import audit_tables
from retention.catalog import Catalog, reflect
from retention.coverage.detectors import context_words, detect, name_categories, row_context
from retention.leases import lease_table
from retention.policy.model import Cascade, Policy
from retention.schema_check import policy_tables

#: rows read per table; enough to see what a column holds, bounded on any table
SAMPLE_ROWS = 200
#: the share of a column's sampled values that must look personal for the column to
#: count (a stray address in a free-text column does not make it a contact column)
MIN_SHARE = 0.2
# Type names of address columns that SQLAlchemy does not class as text.
_ADDRESS_TYPES = frozenset({"INET", "CIDR", "INET4", "INET6"})


class Status(Enum):
    COVERED = "covered"
    IGNORED = "ignored"
    UNCOVERED = "uncovered"


@dataclass(frozen=True)
class Finding:
    """One column that looks personal, why it looks so, and what covers it."""

    table: str
    column: str
    by_name: tuple[str, ...]  # name categories: email, phone, ...
    by_values: dict[str, int]  # detector -> sampled values it fired on
    sampled: int  # non-NULL values sampled
    status: Status
    covered_by: tuple[str, ...] = ()  # "rule-name (delete)", ...
    reason: str | None = None  # the ignore's reason

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class CoverageReport:
    findings: tuple[Finding, ...]
    tables: int
    columns: int
    sample_rows: int = SAMPLE_ROWS
    stale_ignores: tuple[str, ...] = ()  # ignores naming no column of the database

    @property
    def uncovered(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status is Status.UNCOVERED)


@dataclass
class _Cover:
    """What the enabled rules remove, by table's full name."""

    tables: dict[str, list[str]] = field(default_factory=dict)  # every column
    columns: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, catalog: Catalog, name: str, by: str, columns: list[str] | None) -> None:
        table = catalog.table(name)
        if table is None:
            return
        if columns is None:
            self.tables.setdefault(table.fullname, []).append(by)
        for column in columns or ():
            self.columns.setdefault((table.fullname, column), []).append(by)

    def of(self, table: str, column: str) -> tuple[str, ...]:
        return tuple(self.tables.get(table, []) + self.columns.get((table, column), []))


def _cover(policy: Policy, catalog: Catalog) -> _Cover:
    cover = _Cover()

    def cascade(item: Cascade, rule: str) -> None:
        by = f"{rule} (cascade {item.action})"
        if item.action == "delete":
            cover.add(catalog, item.table, by, None)
        elif item.action == "anonymise":
            cover.add(catalog, item.table, by, list(item.set or {}))
        for child in item.cascade:
            cascade(child, rule)

    for rule in policy.rules:
        if not rule.enabled:
            continue
        by = f"{rule.name} ({rule.action})"
        columns = None if rule.action == "delete" else list(rule.set or {})
        cover.add(catalog, rule.table, by, columns)
        for item in rule.cascade:
            cascade(item, rule.name)
    return cover


def _own_tables(policy: Policy) -> frozenset[str]:
    """The audit log's tables and the lease table: the tool's, never reported."""
    metadata, records, head = audit_tables(policy.audit.table)
    keys = audit_keys_table(metadata, policy.audit.table)
    leases = lease_table(MetaData(), policy.audit.table)
    return frozenset(t.name for t in (records, head, keys, leases))


def _kind(type_: TypeEngine[object]) -> str:
    if type(type_).__name__.upper() in _ADDRESS_TYPES:
        return "text"
    if isinstance(type_, String):
        return "text"
    if isinstance(type_, Integer):
        return "number"
    if isinstance(type_, Date | DateTime):
        return "date"
    return "other"


def _sample(
    conn: Connection, table: Table, columns: list[Column[object]]
) -> Iterator[tuple[object, ...]]:
    query = select(*columns).limit(SAMPLE_ROWS)
    if table.primary_key.columns:
        query = query.order_by(*table.primary_key.columns)
    yield from conn.execute(query)


def _plain(value: object) -> object:
    # Address types come back as ipaddress objects (psycopg); bytes are not read.
    if value is None or isinstance(value, str | int | bytes):
        return value
    return str(value)


def _scan_table(conn: Connection, table: Table) -> dict[str, tuple[Counter[str], int]]:
    """Per sampled column: how many values each detector fired on, and how many values."""
    columns = [c for c in table.columns if _kind(c.type) in ("text", "number")]
    if not columns:
        return {}
    counts: dict[str, Counter[str]] = {c.name: Counter() for c in columns}
    seen: Counter[str] = Counter()
    own = {c.name: context_words(table.name, c.name) for c in columns}
    for row in _sample(conn, table, columns):
        values = [_plain(v) for v in row]
        around = row_context(values)
        for col, value in zip(columns, values, strict=True):
            if value is None or isinstance(value, bytes):
                continue
            seen[col.name] += 1
            fired = detect(value, own[col.name] | around)
            counts[col.name].update(fired)
            if fired:
                counts[col.name]["*"] += 1  # values that fired any detector
    return {name: (counts[name], seen[name]) for name in counts}


def scan(conn: Connection, policy: Policy) -> CoverageReport:
    """Reflect, sample and hold the personal-looking columns against the policy."""
    catalog = reflect(conn, policy_tables(policy))
    cover = _cover(policy, catalog)
    own = _own_tables(policy)
    ignores = {}
    for item in policy.coverage.ignore:
        table = catalog.table(item.table)
        if table is not None and item.column_name in table.columns:
            ignores[(table.fullname, item.column_name)] = item.reason
    stale = tuple(
        i.column
        for i in policy.coverage.ignore
        if (t := catalog.table(i.table)) is None or i.column_name not in t.columns
    )
    findings: list[Finding] = []
    tables = [t for t in catalog.metadata.sorted_tables if t.name not in own]
    tables.sort(key=lambda t: t.fullname)
    for table in tables:
        sampled = _scan_table(conn, table)
        for col in table.columns:
            by_name = name_categories(table.name, col.name, _kind(col.type))
            fired, seen = sampled.get(col.name, (Counter(), 0))
            hits = fired.pop("*", 0)
            personal_values = hits > 0 and hits >= math.ceil(MIN_SHARE * seen)
            if not by_name and not personal_values:
                continue
            covered_by = cover.of(table.fullname, col.name)
            reason = ignores.get((table.fullname, col.name))
            status = (
                Status.COVERED
                if covered_by
                else Status.IGNORED
                if reason is not None
                else Status.UNCOVERED
            )
            findings.append(
                Finding(
                    table.fullname,
                    col.name,
                    by_name,
                    dict(sorted(fired.items())),
                    seen,
                    status,
                    covered_by,
                    reason,
                )
            )
    columns = sum(len(t.columns) for t in tables)
    return CoverageReport(tuple(findings), len(tables), columns, SAMPLE_ROWS, stale)


__all__ = ["MIN_SHARE", "SAMPLE_ROWS", "CoverageReport", "Finding", "Status", "scan"]
