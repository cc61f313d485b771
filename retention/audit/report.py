"""The certificate of deletion: what the audit log shows for a period, as one document.

One pass over the period's records builds tallies (per rule, per run, per day), never a
list of records, so a year of nightly runs reports in small memory. The chain is verified
over the whole log, not the period, and a broken chain is the first thing the report says.
Days are UTC days, as the log's timestamps are UTC. ``report_data`` is the JSON document;
``report_html`` draws the same document as a page.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection

from retention.audit.evidence import (
    HeadsCheck,
    OldestKept,
    Verification,
    check_chain,
    check_heads,
)
from retention.audit.fates import ColumnFate, column_fates
from retention.audit.query import When, iter_records, utc_bounds
from retention.audit.records import iso
from retention.outcomes import Event
from retention.policy.loader import LoadedPolicy
from retention.policy.model import Cascade, Policy

NOT_PROVEN = (
    "Copies elsewhere. Backups, replicas, exports, data warehouses, caches and log files "
    "keep their copies until they expire on their own schedules. This log proves removal "
    "from this database only.",
    "Removals by other means. Rows deleted by hand or by the application are not in this "
    "log; nor does the log show that every table holding personal data has a rule.",
    "Which values were removed. The log never holds a removed value or key, only counts, "
    "rules and keyed digests; a single key can be traced with `retention audit find` only "
    "where the policy set `audit: {record_keys: true}` before the key was removed.",
    "That anonymised rows cannot be re-identified. The log shows that a rule's strategies "
    "overwrote the columns it names; whether what remains identifies a person is a matter "
    "for the policy, not for the log.",
    "That the log was never rewritten as a whole. The hash chain shows any change to, "
    "removal of, or insertion into the records it holds; someone able to write the table "
    "could still rebuild the whole chain. Only a head kept outside the database "
    "(RETENTION_AUDIT_HEAD_FILE, `audit verify --expect-head`) rules that out. Timestamps "
    "come from the clock of the machine that ran the job.",
)

_OUTCOMES = {
    Event.GUARD_TRIPPED: "guard tripped",
    Event.RULE_FAILED: "failed",
    Event.RULE_SKIPPED: "skipped",
}
VERBS = {"delete": "deleted", "anonymise": "anonymised", "detach": "detached"}


@dataclass(frozen=True)
class RuleInfo:
    """What the policy file in force says about a rule."""

    name: str
    table: str
    action: str
    after: str
    basis: str | None
    description: str | None
    cascade_actions: dict[str, str]
    columns: tuple[ColumnFate, ...] = ()


def rule_infos(policy: Policy) -> list[RuleInfo]:
    def walk(cascades: list[Cascade], into: dict[str, str]) -> dict[str, str]:
        for cascade in cascades:
            into[cascade.table] = cascade.action
            walk(cascade.cascade, into)
        return into

    return [
        RuleInfo(
            r.name,
            r.table,
            r.action,
            str(r.after),
            r.basis,
            r.description,
            walk(r.cascade, {}),
            column_fates(r),
        )
        for r in policy.rules
    ]


@dataclass
class RuleRun:
    """One rule within one run."""

    run_id: str
    at: datetime
    cutoff: datetime | None
    rows: int = 0
    batches: int = 0
    dependents: dict[str, int] = field(default_factory=dict)
    outcome: str = "no end record"
    due: int | None = None
    kept_unless: int | None = None
    kept_holds: int | None = None
    #: whether the rule's finish record counts the rows kept by unless and holds: a run
    #: counts due rows only up to its guard (counting.py), so it does not count them;
    #: None when the rule did not finish in this run
    kept_counted: bool | None = None
    note: str | None = None


@dataclass
class RuleTally:
    name: str
    info: RuleInfo | None
    table: str | None = None
    action: str | None = None
    runs: dict[str, RuleRun] = field(default_factory=dict)
    day_rows: dict[date, int] = field(default_factory=dict)
    day_ran: set[date] = field(default_factory=set)
    day_trouble: set[date] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)  # guard trips and failures


@dataclass
class RunTally:
    run_id: str
    started: datetime | None = None
    ended: datetime | None = None
    outcome: str = "no end record"
    rows: int = 0
    overridden_guards: list[str] = field(default_factory=list)


@dataclass
class PolicySeen:
    sha256: str
    first: datetime
    last: datetime
    runs: set[str] = field(default_factory=set)


@dataclass
class Report:
    generated_at: datetime
    since: When | None
    until: When | None
    database: str
    audit_table: str
    policy_path: str
    policy_sha256: str
    verification: Verification
    rules: dict[str, RuleTally]
    heads: HeadsCheck = field(default_factory=HeadsCheck)
    oldest_kept: dict[str, OldestKept] = field(default_factory=dict)
    runs: dict[str, RunTally] = field(default_factory=dict)
    policies: dict[str, PolicySeen] = field(default_factory=dict)
    records: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    unreadable: list[int | None] = field(default_factory=list)  # seqs, in a broken log

    def add(self, record: dict[str, Any]) -> None:
        if record.get("unreadable"):
            self.records += 1
            self.unreadable.append(record["seq"])
            return
        at: datetime = record["at"]
        run_id = str(record["run_id"])
        self.records += 1
        self.first_at = self.first_at or at
        self.last_at = at
        seen = self.policies.setdefault(
            record["policy_sha256"], PolicySeen(record["policy_sha256"], at, at)
        )
        seen.last = at
        seen.runs.add(run_id)
        run = self.runs.setdefault(run_id, RunTally(run_id))
        event = record["event"]
        details = record["details"] or {}
        if event in (Event.RUN_STARTED, Event.ERASURE_STARTED):
            run.started = at
            run.overridden_guards = list(details.get("overridden_guards") or [])
        elif event in (Event.RUN_FINISHED, Event.RUN_INTERRUPTED, Event.ERASURE_FINISHED):
            run.ended = at
            run.outcome = "interrupted" if event == Event.RUN_INTERRUPTED else "finished"
        if record["rule"] is not None:
            self._add_rule_record(record, run)

    def _add_rule_record(self, record: dict[str, Any], run: RunTally) -> None:
        at: datetime = record["at"]
        name = str(record["rule"])
        tally = self.rules.setdefault(name, RuleTally(name, None))
        tally.table = tally.table or record["table_name"]
        tally.action = tally.action or record["action"]
        one = tally.runs.setdefault(run.run_id, RuleRun(run.run_id, at, record["cutoff"]))
        day = at.date()
        tally.day_ran.add(day)
        details = record["details"] or {}
        event = record["event"]
        if event == Event.BATCH:
            rows = int(record["row_count"] or 0)
            one.rows += rows
            one.batches += 1
            run.rows += rows
            tally.day_rows[day] = tally.day_rows.get(day, 0) + rows
            for table, count in (record["dependents"] or {}).items():
                one.dependents[table] = one.dependents.get(table, 0) + int(count)
        elif event == Event.RULE_FINISHED:
            stopped = details.get("stopped_by")
            one.outcome = "done" if details.get("complete", True) else f"partial ({stopped})"
            if stopped == "signal":
                one.outcome = "interrupted"
            one.due = details.get("due")
            one.kept_unless = details.get("kept_unless")
            one.kept_holds = details.get("kept_holds")
            one.kept_counted = "kept_holds" in details
            if details.get("guard_overridden"):
                one.note = f"guard overridden ({details['guard_overridden']})"
        else:
            one.outcome = _OUTCOMES.get(event, event)
            if event == Event.GUARD_TRIPPED:
                # None when the count stopped at the guard's bound (the verdict says so)
                one.due = details.get("due")
                one.note = str(details.get("verdict", ""))
            elif event == Event.RULE_FAILED:
                one.note = str(details.get("error", ""))
            elif event == Event.RULE_SKIPPED:
                one.note = str(details.get("reason", ""))
            if event in (Event.GUARD_TRIPPED, Event.RULE_FAILED):
                tally.day_trouble.add(day)
                tally.events.append(
                    {
                        "event": event,
                        "at": iso(at),
                        "run_id": run.run_id,
                        "seq": record["seq"],
                        "details": details,
                    }
                )


def build_report(
    records: Iterable[dict[str, Any]],
    *,
    policy_path: str,
    policy_sha256: str,
    rules: Iterable[RuleInfo],
    verification: Verification,
    database: str,
    audit_table: str,
    since: When | None = None,
    until: When | None = None,
    generated_at: datetime,
) -> Report:
    """Tally the period's records; rules of the policy with no record still appear."""
    report = Report(
        generated_at,
        since,
        until,
        database,
        audit_table,
        policy_path,
        policy_sha256,
        verification,
        {info.name: RuleTally(info.name, info) for info in rules},
    )
    for record in records:
        report.add(record)
    return report


def certificate(
    conn: Connection,
    loaded: LoadedPolicy,
    *,
    database: str,
    now: datetime,
    since: When | None = None,
    until: When | None = None,
    expect_head: str | None = None,
    kept_heads: Sequence[str] = (),
    heads_file: str | None = None,
    oldest_kept: dict[str, OldestKept] | None = None,
) -> Report:
    """Verify the whole log, then tally the period's records against the policy in force.

    ``kept_heads`` are heads kept outside the database (read from ``heads_file``): each
    must still be in the log.
    """
    table = loaded.policy.audit.table
    verification = check_chain(conn, table, expect_head, kept_heads)
    heads = check_heads(conn, table, verification, heads_file, kept_heads)
    # A broken log may hold records that do not parse: read tolerantly, so the certificate
    # still states the break (an intact chain proves every record parses).
    tolerant = not verification.ok
    with closing(iter_records(conn, table, since=since, until=until, tolerant=tolerant)) as records:
        report = build_report(
            records,
            policy_path=loaded.path,
            policy_sha256=loaded.sha256,
            rules=rule_infos(loaded.policy),
            verification=verification,
            database=database,
            audit_table=table,
            since=since,
            until=until,
            generated_at=now,
        )
    report.heads = heads
    report.oldest_kept = dict(oldest_kept or {})
    return report


# --- the JSON document -----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready: ISO 8601 UTC timestamps, ISO dates, sets as sorted lists."""
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def rule_rows(tally: RuleTally) -> list[dict[str, Any]]:
    """Rows per table and action: the rule's own table, then its cascade tables."""
    info = tally.info
    action = tally.action or (info.action if info else "delete")
    dependents: dict[str, int] = {}
    for run in tally.runs.values():
        for name, count in run.dependents.items():
            dependents[name] = dependents.get(name, 0) + count
    own = sum(r.rows for r in tally.runs.values())
    out = [
        {
            "table": tally.table or (info.table if info else None),
            "dependent": False,
            "action": VERBS.get(action, action),
            "rows": own,
        }
    ]
    for name, count in dependents.items():
        how = (info.cascade_actions if info else {}).get(name, "")
        verb = VERBS.get(how, "removed with their parent rows")
        out.append({"table": name, "dependent": True, "action": verb, "rows": count})
    return out


def _rule_data(tally: RuleTally, oldest: OldestKept | None) -> dict[str, Any]:
    info = tally.info
    runs = list(tally.runs.values())
    finished = [r for r in runs if r.kept_counted is not None]
    return {
        "rule": tally.name,
        "in_current_policy": info is not None,
        "description": info.description if info else None,
        "basis": info.basis if info else None,
        "retention_period": info.after if info else None,
        "table": tally.table or (info.table if info else None),
        "action": tally.action or (info.action if info else None),
        "cutoffs": _plain({r.cutoff for r in runs if r.cutoff is not None}),
        "rows": rule_rows(tally),
        "kept_by_holds_at_last_run": finished[-1].kept_holds if finished else None,
        "columns": [asdict(c) for c in info.columns] if info else [],
        "oldest_kept_days": asdict(oldest) if oldest is not None else None,
        "runs": [_plain(asdict(r)) for r in runs],
        "guard_trips": [e for e in tally.events if e["event"] == Event.GUARD_TRIPPED],
        "failures": [e for e in tally.events if e["event"] == Event.RULE_FAILED],
        "rows_per_day": _plain(dict(sorted(tally.day_rows.items()))),
        "days_with_a_run": _plain(tally.day_ran),
        "days_with_trips_or_failures": _plain(tally.day_trouble),
    }


def report_data(report: Report) -> dict[str, Any]:
    """The report as one JSON-ready document; the HTML page renders exactly this."""
    v = report.verification
    lower, upper = utc_bounds(report.since, report.until)
    rules = [_rule_data(t, report.oldest_kept.get(t.name)) for t in report.rules.values()]
    tables: dict[tuple[str, str], int] = {}
    for rule in rules:
        for row in rule["rows"]:
            key = (str(row["table"]), str(row["action"]))
            tables[key] = tables.get(key, 0) + row["rows"]
    stored = {"seq": v.stored_head[0], "hash": v.stored_head[1]} if v.stored_head else None
    policies = [
        {
            "sha256": p.sha256,
            "first_seen": iso(p.first),
            "last_seen": iso(p.last),
            "runs": len(p.runs),
            "current": p.sha256 == report.policy_sha256,
        }
        for p in report.policies.values()
    ]
    return {
        "title": "Certificate of deletion",
        "generated_at": iso(report.generated_at),
        "database": report.database,
        "audit_table": report.audit_table,
        "period": {
            "since": _plain(report.since),
            "until": _plain(report.until),
            "from_utc": iso(lower),
            "before_utc": iso(upper),
        },
        "verification": {
            "ok": v.ok,
            "records": v.records if v.ok else None,
            "head": v.head,
            "broken_at_record": v.broken_at,
            "reason": v.reason,
            "stored_head": stored,
            "expected_head": v.expected_head,
        },
        "kept_heads": {**asdict(report.heads), "checked": report.heads.checked},
        "no_rule_ran": not any(rule["runs"] for rule in rules),
        "records_in_period": report.records,
        "unreadable_records": report.unreadable,
        "first_record_at": iso(report.first_at),
        "last_record_at": iso(report.last_at),
        "policy_file": {"path": report.policy_path, "sha256": report.policy_sha256},
        "policies_in_force": policies,
        "rules": rules,
        "tables": [{"table": t, "action": a, "rows": n} for (t, a), n in tables.items()],
        "runs": [_plain(asdict(r)) for r in report.runs.values()],
        "what_this_log_does_not_prove": list(NOT_PROVEN),
    }
