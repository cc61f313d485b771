"""The certificate of deletion drawn as one self-contained, printable page (A4).

It renders exactly the document ``report.report_data`` builds, nothing read from
elsewhere: no scripts, no external files. Long words (rule names, hashes, run ids) wrap,
so no table is wider than an A4 page or a 1280 px window.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from retention.audit.erasures import erasures_html
from retention.audit.report import VERBS

_CSS = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { font: 10pt/1.4 system-ui, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
  max-width: 190mm; margin: 0 auto; padding: 8mm 0; }
h1 { font-size: 18pt; margin: 0 0 2mm; }
h2 { font-size: 13pt; margin: 7mm 0 2mm; border-bottom: 1px solid #999; break-after: avoid; }
h3 { font-size: 11pt; margin: 5mm 0 1mm; break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; font-size: 8.5pt; }
th, td { border: 1px solid #bbb; padding: 1mm 1.5mm; text-align: left; vertical-align: top;
  overflow-wrap: break-word; hyphens: auto; }
th { background: #eee; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
thead { display: table-header-group; }
tr, figure, .verdict, blockquote { break-inside: avoid; }
.hash { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 8pt;
  word-break: break-all; }
blockquote { margin: 1mm 0 2mm; padding: 1mm 3mm; border-left: 3px solid #888;
  background: #f6f6f6; }
.verdict { padding: 3mm 4mm; margin: 3mm 0; border: 2px solid; }
.ok { border-color: #2d7d46; background: #eaf6ee; }
.broken { border-color: #b00020; background: #fdecee; color: #700; font-size: 12pt; }
.warn { border-color: #b06000; background: #fff4e0; color: #5a3000; }
.flag { font-weight: bold; color: #8a4b00; }
.muted { color: #666; }
svg { width: 100%; height: auto; }
@media print { body { padding: 0; max-width: none; } }
"""

_COLOURS = {"delete": "#b03a2e", "anonymise": "#2e6da4"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(
    head: Iterable[str],
    rows: Iterable[Iterable[Any]],
    numeric: Iterable[int] = (),
    unbroken: Iterable[int] = (),
) -> str:
    """``numeric`` columns align right; ``unbroken`` ones (hashes, URLs) wrap anywhere."""
    kinds = {**dict.fromkeys(unbroken, ' class="hash"'), **dict.fromkeys(numeric, ' class="n"')}
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    lines = [
        "<tr>" + "".join(f"<td{kinds.get(i, '')}>{_e(v)}</td>" for i, v in enumerate(row)) + "</tr>"
        for row in rows
    ]
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
        verb = VERBS.get(rule["action"] or "", "removed")
        base = n * strip + 14 + tall
        out.append(
            f'<text x="{pad}" y="{n * strip + 10:.1f}">{_e(rule["rule"])} '
            f'<tspan fill="#666">(tallest bar: {peak} rows {_e(verb)} in a {unit})</tspan></text>'
            f'<line x1="{pad}" x2="{width - pad}" y1="{base:.1f}" y2="{base:.1f}" '
            'stroke="#ccc" stroke-width="0.5"/>'
        )
        if not ran:
            out.append(
                f'<text x="{width / 2:.0f}" y="{base - 12:.1f}" text-anchor="middle" '
                'fill="#b00020">no run in this period</text>'
            )
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


def _verdict(v: dict[str, Any], unreadable: list[int | None]) -> str:
    stored = v["stored_head"]
    head_table = (
        f'<br>Head table: record {stored["seq"]}, <span class="hash">{_e(stored["hash"])}</span>'
        if stored
        else ""
    )
    if v["ok"]:
        return (
            '<div class="verdict ok"><strong>Audit chain verified</strong> over the whole log: '
            f'{v["records"]} records. Head hash: <span class="hash">{_e(v["head"])}</span>'
            f"{head_table}</div>"
        )
    where = (
        "The log as a whole does not verify"
        if v["broken_at_record"] is None
        else f"The chain is broken at record {v['broken_at_record']}"
    )
    return (
        '<div class="verdict broken"><strong>THE AUDIT LOG FAILED VERIFICATION.</strong> '
        f"{_e(where)}: {_e(v['reason'])}. The figures below are read from a log that was "
        f"altered or cut, and cannot be relied on as evidence.{_unreadable(unreadable)}"
        f"{head_table}</div>"
    )


def _unreadable(seqs: list[int | None]) -> str:
    """Records left out of the figures: named by number, never by their stored text."""
    if not seqs:
        return ""
    named = ", ".join("?" if seq is None else str(seq) for seq in seqs[:20])
    more = f" and {len(seqs) - 20} more" if len(seqs) > 20 else ""
    noun = "record" if len(seqs) == 1 else "records"
    return (
        f"<br>Unreadable {noun}, left out of the figures below: {_e(named)}{_e(more)} "
        "(their stored text is not shown)."
    )


def _rule_section(rule: dict[str, Any]) -> str:
    cutoffs = rule["cutoffs"]
    used = f"{_t(cutoffs[0])} to {_t(cutoffs[-1])} ({len(cutoffs)} distinct)" if cutoffs else "none"
    if len(cutoffs) == 1:
        used = str(_t(cutoffs[0]))
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
    parts.append(_columns(rule))
    parts.append(_oldest(rule))
    runs = [
        [
            _t(r["at"]),
            r["run_id"][:8],
            _t(r["cutoff"]),
            r["outcome"],
            r["rows"],
            ", ".join(f"{t}: {n}" for t, n in r["dependents"].items()),
            *(NOT_COUNTED if r["kept_counted"] is False else r[k] for k in _KEPT),
            r["note"],
        ]
        for r in rule["runs"]
    ]
    head = [
        "At (UTC)",
        "Run",
        "Cutoff",
        "Outcome",
        "Rows",
        "Dependents",
        "Kept by unless",
        "Kept by holds",
        "Note",
    ]
    parts.append(_table(head, runs, [4, 6, 7]) if runs else "<p>No run in this period.</p>")
    for title, key in (("Guard trips", "guard_trips"), ("Failures", "failures")):
        if rule[key]:
            events = [
                [_t(e["at"]), e["seq"], e["run_id"][:8], _details(e["details"])] for e in rule[key]
            ]
            parts.append(f"<p><strong>{title}</strong></p>")
            parts.append(_table(["At (UTC)", "Record", "Run", "Details"], events))
    return "".join(parts) + "</section>"


def _t(text: str | None) -> str | None:
    """An ISO timestamp as the page shows it: to the second, the column says UTC."""
    return text[:19].replace("T", " ") if text else text


def _heads(kept: dict[str, Any]) -> str:
    if not kept["checked"]:
        return (
            '<div class="verdict warn"><strong>No head kept outside the database was '
            "checked.</strong> The chain shows changes inside the log, but not a log rebuilt "
            "as a whole or cut at its end: give <code>--heads-file</code> or "
            "<code>--expect-head</code> (auditors' guide, section 4).</div>"
        )
    lines = []
    if kept["file"] is not None:
        missing = kept["heads"] - kept["found"]
        verdict = "all found in the log" if not missing else f"{missing} NOT in the log"
        lines.append(f"Heads file {_e(kept['file'])}: {kept['heads']} distinct heads, {verdict}.")
    if kept["expected_head"] is not None:
        verdict = "is NOT in the log"
        if kept["expected_head_matches"]:
            verdict = "is the head of the log"
        elif kept["expected_head_in_log"]:
            verdict = "is in the log, before its head: the log grew since it was kept"
        lines.append(
            f'Expected head <span class="hash">{_e(kept["expected_head"])}</span> {verdict}.'
        )
    good = kept["found"] == kept["heads"] and kept["expected_head_in_log"] is not False
    return f'<div class="verdict {"ok" if good else "broken"}">{"<br>".join(lines)}</div>'


def _columns(rule: dict[str, Any]) -> str:
    if not rule["columns"]:
        return ""
    rows = [
        [
            f"{c['table']}.{c['column']}",
            c["strategy"],
            ("PSEUDONYM: " if c["pseudonym"] else "") + c["becomes"],
        ]
        for c in rule["columns"]
    ]
    return "<p><strong>What each column became</strong></p>" + _table(
        ["Column", "Strategy", "What remains"], rows
    )


_KEPT = ("kept_unless", "kept_holds")
#: a finished run that did not count its kept rows (counting.py), never shown as 0
NOT_COUNTED = "not counted by this run"


def _or_not_counted(value: int | None) -> int | str:
    return "not counted by the last run" if value is None else value


def _oldest(rule: dict[str, Any]) -> str:
    oldest = rule["oldest_kept_days"]
    if oldest is None:
        return ""
    if oldest["note"]:
        return f'<p class="muted">Oldest rows kept: not read ({_e(oldest["note"])}).</p>'

    def age(days: int | None, why: str) -> str:
        if days is None:
            return f"no row past the cutoff is kept by {why}"
        return f'<span class="flag">the oldest row kept by {why} is {days} days old</span>'

    return (
        f"<p>Now, {age(oldest['unless_days'], '<code>unless</code>')}; "
        f"{age(oldest['holds_days'], 'a legal hold')} (retention period "
        f"{_e(rule['retention_period'])}). An exception that never ends shows here as an age "
        "that only grows.</p>"
    )


def _details(details: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(details.items()) if v is not None)


_NO_RUN = (
    '<div class="verdict broken"><strong>NO RULE RAN IN THIS PERIOD.</strong> The log holds '
    "no batch, finish, trip or failure of any rule between these dates: nothing was deleted "
    "or anonymised by this tool, whatever the policy promises.</div>"
)


def _oldest_cell(oldest: dict[str, Any] | None) -> str:
    if oldest is None or oldest["note"]:
        return "not read"
    return " / ".join(
        "-" if d is None else str(d) for d in (oldest["unless_days"], oldest["holds_days"])
    )


def render_html(data: dict[str, Any]) -> str:
    """The report document (``report_data``) as one self-contained, printable page."""
    period = data["period"]
    since, until = period["since"] or "the start of the log", period["until"] or "now"
    summary = [
        [
            r["rule"],
            f"{r['table']}: {r['action']}",
            r["retention_period"],
            len(r["runs"]),
            r["rows"][0]["rows"],
            sum(x["rows"] for x in r["rows"][1:]),
            _or_not_counted(r["kept_by_holds_at_last_run"]) if r["runs"] else None,
            _oldest_cell(r["oldest_kept_days"]),
            f"{len(r['guard_trips'])} / {len(r['failures'])}",
        ]
        for r in data["rules"]
    ]
    # Nine columns at most: the summary must fit the width of an A4 page.
    summary_head = [
        "Rule",
        "Table: action",
        "Kept for",
        "Runs",
        "Rows",
        "Dependent rows",
        "Kept by holds (last run)",
        "Oldest kept now, days (unless / holds)",
        "Guard trips / failures",
    ]
    runs = [
        [
            r["run_id"],
            _t(r["started"]),
            _t(r["ended"]),
            r["outcome"],
            r["rows"],
            ", ".join(r["overridden_guards"]),
        ]
        for r in data["runs"]
    ]
    policies = [
        [
            p["sha256"] + (" (the current file)" if p["current"] else ""),
            _t(p["first_seen"]),
            _t(p["last_seen"]),
            p["runs"],
        ]
        for p in data["policies_in_force"]
    ]
    about = [
        [f"{since} to {until}", data["database"], data["audit_table"], _t(data["generated_at"])]
    ]
    body = [
        "<h1>Certificate of deletion</h1>",
        _table(["Period", "Database", "Audit table", "Generated (UTC)"], about, (), [1]),
        _verdict(data["verification"], data["unreadable_records"]),
        _heads(data["kept_heads"]),
        _NO_RUN if data["no_rule_ran"] else "",
        "<h2>Summary</h2>",
        _table(summary_head, summary, [3, 4, 5, 6, 8]),
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
            [0],
        ),
        erasures_html(data.get("erasure_requests")),
        "<h2>Policy files in force</h2>",
        _table(
            ["SHA-256 of the policy file", "First seen", "Last seen", "Runs"], policies, [3], [0]
        ),
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
