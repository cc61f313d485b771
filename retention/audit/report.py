"""The certificate of deletion: what the audit log shows for a period, as HTML or JSON.

One pass over the period's records builds tallies (per rule, per run, per day), never a
list of records, so a year of nightly runs reports in small memory. The chain is verified
over the whole log, not the period, and a broken chain is the first thing the report says.
Days are UTC days, as the log's timestamps are UTC.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from retention.audit.query import When, iter_records, stored_head, utc_bounds
from retention.audit.records import iso
from retention.audit.verify import verify_table
from retention.errors import AuditTampered
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

_OUTCOMES = {"guard_tripped": "guard tripped", "rule_failed": "failed", "rule_skipped": "skipped"}
_VERBS = {"delete": "deleted", "anonymise": "anonymised", "detach": "detached"}


@dataclass(frozen=True)
class Verification:
    """The chain's state over the whole log, and the head the database holds."""

    ok: bool
    records: int
    head: str | None
    broken_at: int | None = None
    reason: str | None = None
    stored_head: tuple[int, str] | None = None
    expected_head: str | None = None
    error: AuditTampered | None = None


def check_chain(
    conn: Connection,
    table_name: str,
    expect_head: str | None = None,
    kept_heads: Sequence[str] = (),
) -> Verification:
    """Verify the whole chain; a broken chain is a result here, not an error."""
    stored = stored_head(conn, table_name)
    try:
        verified = verify_table(conn, table_name, expect_head, kept_heads)
    except AuditTampered as exc:
        return Verification(False, 0, None, exc.seq, exc.reason, stored, expect_head, exc)
    return Verification(True, verified.records, verified.head, None, None, stored, expect_head)


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


def rule_infos(policy: Policy) -> list[RuleInfo]:
    def walk(cascades: list[Cascade], into: dict[str, str]) -> dict[str, str]:
        for cascade in cascades:
            into[cascade.table] = cascade.action
            walk(cascade.cascade, into)
        return into

    return [
        RuleInfo(
            r.name, r.table, r.action, str(r.after), r.basis, r.description, walk(r.cascade, {})
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
    runs: dict[str, RunTally] = field(default_factory=dict)
    policies: dict[str, PolicySeen] = field(default_factory=dict)
    records: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None

    def add(self, record: dict[str, Any]) -> None:
        at: datetime = record["at"]
        run_id = str(record["run_id"])
        self.records += 1
        self.first_at = self.first_at or at
        self.last_at = at
        seen = self.policies.setdefault(record["policy_sha256"],
                                        PolicySeen(record["policy_sha256"], at, at))  # fmt: skip
        seen.last = at
        seen.runs.add(run_id)
        run = self.runs.setdefault(run_id, RunTally(run_id))
        event = record["event"]
        details = record["details"] or {}
        if event == "run_started":
            run.started = at
            run.overridden_guards = list(details.get("overridden_guards") or [])
        elif event in ("run_finished", "run_interrupted"):
            run.ended = at
            run.outcome = "finished" if event == "run_finished" else "interrupted"
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
        if event == "batch":
            rows = int(record["row_count"] or 0)
            one.rows += rows
            one.batches += 1
            run.rows += rows
            tally.day_rows[day] = tally.day_rows.get(day, 0) + rows
            for table, count in (record["dependents"] or {}).items():
                one.dependents[table] = one.dependents.get(table, 0) + int(count)
        elif event == "rule_finished":
            stopped = details.get("stopped_by")
            one.outcome = "done" if details.get("complete", True) else f"partial ({stopped})"
            if stopped == "signal":
                one.outcome = "interrupted"
            one.due = details.get("due")
            one.kept_unless = details.get("kept_unless")
            one.kept_holds = details.get("kept_holds")
            if details.get("guard_overridden"):
                one.note = f"guard overridden ({details['guard_overridden']})"
        else:
            one.outcome = _OUTCOMES.get(event, event)
            if event == "guard_tripped":
                one.due = details.get("due")
                one.note = str(details.get("verdict", ""))
            elif event == "rule_failed":
                one.note = str(details.get("error", ""))
            elif event == "rule_skipped":
                one.note = str(details.get("reason", ""))
            if event in ("guard_tripped", "rule_failed"):
                tally.day_trouble.add(day)
                tally.events.append({"event": event, "at": iso(at), "run_id": run.run_id,
                                     "seq": record["seq"], "details": details})  # fmt: skip


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
        generated_at, since, until, database, audit_table, policy_path, policy_sha256,
        verification, {info.name: RuleTally(info.name, info) for info in rules},
    )  # fmt: skip
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
) -> Report:
    """Verify the whole log, then tally the period's records against the policy in force.

    ``kept_heads`` are heads kept outside the database: each must still be in the log.
    """
    table = loaded.policy.audit.table
    verification = check_chain(conn, table, expect_head, kept_heads)
    with closing(iter_records(conn, table, since=since, until=until)) as records:
        return build_report(
            records, policy_path=loaded.path, policy_sha256=loaded.sha256,
            rules=rule_infos(loaded.policy), verification=verification, database=database,
            audit_table=table, since=since, until=until, generated_at=now,
        )  # fmt: skip


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
    out = [{"table": tally.table or (info.table if info else None), "dependent": False,
            "action": _VERBS.get(action, action), "rows": own}]  # fmt: skip
    for name, count in dependents.items():
        how = (info.cascade_actions if info else {}).get(name, "")
        verb = _VERBS.get(how, "removed with their parent rows")
        out.append({"table": name, "dependent": True, "action": verb, "rows": count})
    return out


def _rule_data(tally: RuleTally) -> dict[str, Any]:
    info = tally.info
    runs = list(tally.runs.values())
    finished = [r for r in runs if r.kept_holds is not None]
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
        "runs": [_plain(asdict(r)) for r in runs],
        "guard_trips": [e for e in tally.events if e["event"] == "guard_tripped"],
        "failures": [e for e in tally.events if e["event"] == "rule_failed"],
        "rows_per_day": _plain(dict(sorted(tally.day_rows.items()))),
        "days_with_a_run": _plain(tally.day_ran),
        "days_with_trips_or_failures": _plain(tally.day_trouble),
    }


def report_data(report: Report) -> dict[str, Any]:
    """The report as one JSON-ready document; the HTML page renders exactly this."""
    v = report.verification
    lower, upper = utc_bounds(report.since, report.until)
    rules = [_rule_data(t) for t in report.rules.values()]
    tables: dict[tuple[str, str], int] = {}
    for rule in rules:
        for row in rule["rows"]:
            key = (str(row["table"]), str(row["action"]))
            tables[key] = tables.get(key, 0) + row["rows"]
    stored = {"seq": v.stored_head[0], "hash": v.stored_head[1]} if v.stored_head else None
    policies = [
        {"sha256": p.sha256, "first_seen": iso(p.first), "last_seen": iso(p.last),
         "runs": len(p.runs), "current": p.sha256 == report.policy_sha256}
        for p in report.policies.values()
    ]  # fmt: skip
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
        "records_in_period": report.records,
        "first_record_at": iso(report.first_at),
        "last_record_at": iso(report.last_at),
        "policy_file": {"path": report.policy_path, "sha256": report.policy_sha256},
        "policies_in_force": policies,
        "rules": rules,
        "tables": [{"table": t, "action": a, "rows": n} for (t, a), n in tables.items()],
        "runs": [_plain(asdict(r)) for r in report.runs.values()],
        "what_this_log_does_not_prove": list(NOT_PROVEN),
    }


# --- the HTML page ---------------------------------------------------------------------

_CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 10pt/1.4 system-ui, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
  max-width: 190mm; margin: 0 auto; padding: 8mm 0; }
h1 { font-size: 18pt; margin: 0 0 2mm; }
h2 { font-size: 13pt; margin: 7mm 0 2mm; border-bottom: 1px solid #999; break-after: avoid; }
h3 { font-size: 11pt; margin: 5mm 0 1mm; break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; font-size: 8.5pt; }
th, td { border: 1px solid #bbb; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
thead { display: table-header-group; }
tr, figure, .verdict, blockquote { break-inside: avoid; }
.hash { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 8pt;
  word-break: break-all; }
blockquote { margin: 1mm 0 2mm; padding: 1mm 3mm; border-left: 3px solid #888;
  background: #f6f6f6; }
.verdict { padding: 3mm 4mm; margin: 3mm 0; border: 2px solid; }
.ok { border-color: #2d7d46; background: #eaf6ee; }
.broken { border-color: #b00020; background: #fdecee; color: #700; font-size: 12pt; }
.muted { color: #666; }
svg { width: 100%; height: auto; }
@media print { body { padding: 0; max-width: none; } }
"""

_COLOURS = {"delete": "#b03a2e", "anonymise": "#2e6da4"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(head: Iterable[str], rows: Iterable[Iterable[Any]], numeric: Iterable[int] = ()) -> str:
    right = set(numeric)
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    lines = [
        "<tr>" + "".join(
            f'<td class="n">{_e(v)}</td>' if i in right else f"<td>{_e(v)}</td>"
            for i, v in enumerate(row)
        ) + "</tr>"
        for row in rows
    ]  # fmt: skip
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _day(text: str | None, *, minus: timedelta = timedelta()) -> date | None:
    if not text:
        return None
    return (datetime.fromisoformat(text.replace("Z", "+00:00")) - minus).date()


def _chart_span(data: dict[str, Any]) -> tuple[date, date] | None:
    """From the period's start (or the first record) to its last day, never past today."""
    period = data["period"]
    start = _day(period["from_utc"]) or _day(data["first_record_at"])
    end = _day(period["before_utc"], minus=timedelta(microseconds=1))
    end = end or _day(data["last_record_at"])
    today = _day(data["generated_at"])
    if end is not None and today is not None:
        end = min(end, today)
    if start is None or end is None or end < start:
        return None
    return start, end


def chart_svg(data: dict[str, Any]) -> str:
    """Rows per rule per day, one strip per rule; a day without a run is an empty slot."""
    span = _chart_span(data)
    if span is None:
        return '<p class="muted">No records in this period: nothing to chart.</p>'
    start, end = span
    step = 1 if (end - start).days < 731 else 7  # weeks beyond two years keep bars visible
    buckets = (end - start).days // step + 1
    unit = "day" if step == 1 else "week"
    width, pad, strip, tall = 760.0, 6.0, 58.0, 34.0
    slot = (width - 2 * pad) / buckets
    bar = max(slot * 0.8, 0.6)
    height = strip * len(data["rules"]) + 18

    def bucket(day: str) -> int:
        return (date.fromisoformat(day) - start).days // step

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'role="img" aria-label="Rows removed and anonymised per rule per {unit}" '
        'font-family="sans-serif" font-size="10">'
    ]
    for n, rule in enumerate(data["rules"]):
        rows: dict[int, int] = {}
        for day, count in rule["rows_per_day"].items():
            rows[bucket(day)] = rows.get(bucket(day), 0) + count
        ran = {bucket(day) for day in rule["days_with_a_run"]}
        trouble = {bucket(day) for day in rule["days_with_trips_or_failures"]}
        peak = max(rows.values(), default=0) or 1
        verb = _VERBS.get(rule["action"] or "", "removed")
        base = n * strip + 14 + tall
        out.append(
            f'<text x="{pad}" y="{n * strip + 10:.1f}">{_e(rule["rule"])} '
            f'<tspan fill="#666">(tallest bar: {peak} rows {_e(verb)} in a {unit})</tspan></text>'
            f'<line x1="{pad}" x2="{width - pad}" y1="{base:.1f}" y2="{base:.1f}" '
            'stroke="#ccc" stroke-width="0.5"/>'
        )
        if not ran:
            out.append(f'<text x="{width / 2:.0f}" y="{base - 12:.1f}" text-anchor="middle" '
                       'fill="#b00020">no run in this period</text>')  # fmt: skip
        for i in sorted(ran):
            x, count = pad + i * slot, rows.get(i, 0)
            # A log scale: the first run's backlog must not flatten the nightly rhythm.
            h = max(2.0, tall * math.log1p(count) / math.log1p(peak)) if count else 1.0
            fill = _COLOURS.get(rule["action"] or "", "#555") if count else "#999"
            label = f"{(start + timedelta(days=i * step)).isoformat()}: {count} rows {verb}"
            out.append(
                f'<rect x="{x:.2f}" y="{base - h:.2f}" width="{bar:.2f}" height="{h:.2f}" '
                f'fill="{fill}"><title>{_e(label)}</title></rect>'
            )
            if i in trouble:
                out.append(
                    f'<rect x="{x:.2f}" y="{base + 1:.2f}" width="{bar:.2f}" height="4" '
                    'fill="#e08000"><title>guard trip or failure</title></rect>'
                )
    last_x = -1e9
    for i in range(buckets):
        day, x = start + timedelta(days=i * step), pad + i * slot
        mark = day.day <= step if buckets > 62 else i % 7 == 0  # months, or weeks
        if (i == 0 or mark) and x - last_x >= 60:
            out.append(f'<text x="{x:.1f}" y="{height - 4:.1f}" fill="#444">{day}</text>')
            last_x = x
    out.append("</svg>")
    return "".join(out)


def _verdict(v: dict[str, Any]) -> str:
    stored = v["stored_head"]
    head_table = (
        f'<br>Head table: record {stored["seq"]}, <span class="hash">{_e(stored["hash"])}</span>'
        if stored
        else ""
    )
    if v["ok"]:
        kept = "<br>It matches the head kept outside the database." if v["expected_head"] else ""
        return (
            '<div class="verdict ok"><strong>Audit chain verified</strong> over the whole log: '
            f'{v["records"]} records. Head hash: <span class="hash">{_e(v["head"])}</span>'
            f"{head_table}{kept}</div>"
        )
    where = "the log" if v["broken_at_record"] is None else f"record {v['broken_at_record']}"
    return (
        '<div class="verdict broken"><strong>THE AUDIT LOG FAILED VERIFICATION.</strong> '
        f"The chain is broken at {_e(where)}: {_e(v['reason'])}. The figures below are read "
        f"from a log that was altered, and cannot be relied on as evidence.{head_table}</div>"
    )


def _rule_section(rule: dict[str, Any]) -> str:
    cutoffs = rule["cutoffs"]
    used = f"{cutoffs[0]} to {cutoffs[-1]} ({len(cutoffs)} distinct)" if cutoffs else "none"
    if len(cutoffs) == 1:
        used = cutoffs[0]
    parts = [f"<section><h3>{_e(rule['rule'])}</h3>"]
    if not rule["in_current_policy"]:
        parts.append('<p class="muted">This rule is not in the current policy file.</p>')
    if rule["basis"]:
        parts.append(f"<blockquote>{_e(rule['basis'])}</blockquote>")
    if rule["description"]:
        parts.append(f"<p>{_e(rule['description'])}</p>")
    about = [rule["table"], rule["action"], rule["retention_period"], used]
    parts.append(_table(["Table", "Action", "Retention period", "Cutoffs used (UTC)"], [about]))
    counts = [[r["table"], r["rows"], r["action"]] for r in rule["rows"]]
    parts.append(_table(["Table", "Rows", "How"], counts, [1]))
    runs = [
        [r["at"], r["run_id"][:8], r["cutoff"], r["outcome"], r["rows"],
         ", ".join(f"{t}: {n}" for t, n in r["dependents"].items()),
         r["kept_unless"], r["kept_holds"], r["note"]]
        for r in rule["runs"]
    ]  # fmt: skip
    head = ["At (UTC)", "Run", "Cutoff", "Outcome", "Rows", "Dependents", "Kept by unless",
            "Kept by holds", "Note"]  # fmt: skip
    parts.append(_table(head, runs, [4, 6, 7]) if runs else "<p>No run in this period.</p>")
    for title, key in (("Guard trips", "guard_trips"), ("Failures", "failures")):
        if rule[key]:
            events = [[e["at"], e["seq"], e["run_id"], _details(e["details"])] for e in rule[key]]
            parts.append(f"<p><strong>{title}</strong></p>")
            parts.append(_table(["At (UTC)", "Record", "Run", "Details"], events))
    return "".join(parts) + "</section>"


def _details(details: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(details.items()) if v is not None)


def render_html(data: dict[str, Any]) -> str:
    """The report document (``report_data``) as one self-contained, printable page."""
    period = data["period"]
    since, until = period["since"] or "the start of the log", period["until"] or "now"
    summary = [
        [r["rule"], r["table"], r["action"], r["retention_period"], len(r["runs"]),
         r["rows"][0]["rows"], sum(x["rows"] for x in r["rows"][1:]),
         r["kept_by_holds_at_last_run"], len(r["guard_trips"]), len(r["failures"])]
        for r in data["rules"]
    ]  # fmt: skip
    summary_head = ["Rule", "Table", "Action", "Kept for", "Runs", "Rows", "Dependent rows",
                    "Kept by holds (last run)", "Guard trips", "Failures"]  # fmt: skip
    runs = [
        [r["run_id"], r["started"], r["ended"], r["outcome"], r["rows"],
         ", ".join(r["overridden_guards"])]
        for r in data["runs"]
    ]  # fmt: skip
    policies = [
        [p["sha256"] + (" (the current file)" if p["current"] else ""), p["first_seen"],
         p["last_seen"], p["runs"]]
        for p in data["policies_in_force"]
    ]  # fmt: skip
    about = [[f"{since} to {until}", data["database"], data["audit_table"], data["generated_at"]]]
    body = [
        "<h1>Certificate of deletion</h1>",
        _table(["Period", "Database", "Audit table", "Generated (UTC)"], about),
        _verdict(data["verification"]),
        "<h2>Summary</h2>",
        _table(summary_head, summary, [4, 5, 6, 7, 8, 9]),
        "<h2>Rhythm</h2><figure>",
        chart_svg(data),
        '<figcaption class="muted">Rows per rule per UTC day (per week beyond two years), '
        "on a logarithmic scale so that small nightly runs stay visible next to a backlog. "
        "A grey stub is a run that found nothing due; an empty slot is a day without a run; "
        "an orange mark is a guard trip or a failure.</figcaption></figure>",
        "<h2>Rules</h2>",
        *(_rule_section(rule) for rule in data["rules"]),
        "<h2>Rows per table</h2>",
        _table(["Table", "How", "Rows"], [list(t.values()) for t in data["tables"]], [2]),
        "<h2>Runs</h2>",
        _table(
            ["Run", "Started (UTC)", "Ended (UTC)", "Outcome", "Rows", "Guards overridden"],
            runs,
            [4],
        ),
        "<h2>Policy files in force</h2>",
        _table(["SHA-256 of the policy file", "First seen", "Last seen", "Runs"], policies, [3]),
        f'<p class="muted">Rule texts are from {_e(data["policy_file"]["path"])} (SHA-256 '
        f'<span class="hash">{_e(data["policy_file"]["sha256"])}</span>).</p>',
        "<h2>What this log does not prove</h2><ul>",
        *(f"<li>{_e(text)}</li>" for text in data["what_this_log_does_not_prove"]),
        "</ul>",
    ]
    title = _e(f"Certificate of deletion: {since} to {until}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
