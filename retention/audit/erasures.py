"""Erasure requests in the audit log: the subject's digest, the lookup, the certificate's part.

A request's records share its ``run_id``: ``erasure_started`` (its details hold
``subject_digest``, a keyed HMAC of the subject id, never the id), the rules' ``batch``
and ``rule_finished`` records, and ``erasure_finished`` (outcome, rows per table). Only a
holder of ``RETENTION_HASH_KEY`` can compute a subject's digest, so only they can ask
whether that person's data was erased; the certificate lists the requests without any
subject's digest.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from retention.audit.query import When, iter_records, record_from_row, utc_bounds
from retention.audit.records import FIELDS, audit_exists, audit_tables, iso
from retention.outcomes import Event
from retention.policy.loader import LoadedPolicy

# A fixed prefix, so a subject's digest is never the digest of a key of the same text.
_SUBJECT_TEXT = b"retention erasure subject v1\x00"
_STREAM = {"stream_results": True, "yield_per": 1000}


def subject_digest(hash_key: bytes, subject: str) -> str:
    """The keyed digest recorded for a data subject's id: HMAC-SHA-256, lowercase hex."""
    return hmac.new(hash_key, _SUBJECT_TEXT + subject.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class ErasureSeen:
    """One erasure request as the log tells it."""

    request_id: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str = "no end record"
    rules: dict[str, str] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    records: list[int] = field(default_factory=list)
    rows: int = 0  # of the rules' own tables; their cascades' are dependent rows

    @property
    def dependent_rows(self) -> int:
        return sum(self.tables.values()) - self.rows

    def add(self, record: dict[str, Any]) -> None:
        event, details = record["event"], record["details"] or {}
        if event == Event.ERASURE_STARTED:
            self.started_at = record["at"]
            self.records.append(int(record["seq"]))
        elif event == Event.ERASURE_FINISHED:
            self.finished_at = record["at"]
            self.outcome = str(details.get("outcome", "done"))
            self.records.append(int(record["seq"]))
        elif event == Event.RUN_INTERRUPTED:
            # Written by a later run that found the request dead (runner.record_dead_runs).
            self.outcome = "interrupted"
            self.records.append(int(record["seq"]))
        elif event == Event.BATCH:
            table, rows = str(record["table_name"]), int(record["row_count"] or 0)
            self.tables[table] = self.tables.get(table, 0) + rows
            self.rows += rows
            for name, count in (record["dependents"] or {}).items():
                self.tables[name] = self.tables.get(name, 0) + int(count)
        elif event == Event.RULE_FINISHED:
            self.rules[str(record["rule"])] = "done" if details.get("complete", True) else "partial"
        elif record["rule"] is not None:
            self.rules[str(record["rule"])] = str(event)

    def data(self) -> dict[str, Any]:
        """The request as the certificate and ``audit find --subject`` show it."""
        return {
            "request_id": self.request_id,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "outcome": self.outcome,
            "rules": dict(self.rules),
            "tables": [{"table": t, "rows": n} for t, n in self.tables.items()],
            "rows": self.rows,
            "dependent_rows": self.dependent_rows,
            "records": list(self.records),
        }


def requests_of(
    conn: Connection,
    table_name: str,
    *,
    digest: str | None = None,
    since: When | None = None,
    until: When | None = None,
) -> list[ErasureSeen]:
    """The erasure requests started in the period (of one subject, given its digest),
    oldest first, each with its rows per table read from its own records."""
    found = list(_started(conn, table_name, digest, since, until))
    for seen in found:
        for record in iter_records(conn, table_name, run_id=seen.request_id):
            if record["event"] != Event.ERASURE_STARTED:
                seen.add(record)
    return found


def _started(
    conn: Connection,
    table_name: str,
    digest: str | None,
    since: When | None,
    until: When | None,
) -> Iterator[ErasureSeen]:
    if not audit_exists(conn, table_name):
        return
    _, records, _ = audit_tables(table_name)
    stmt = select(*(records.c[name] for name in FIELDS)).where(
        records.c.event == Event.ERASURE_STARTED
    )
    if digest is not None:
        # Canonical JSON (keys sorted, no spaces) spells the entry exactly so.
        stmt = stmt.where(records.c.details.contains(f'"subject_digest":"{digest}"'))
    lower, upper = utc_bounds(since, until)
    if lower is not None:
        stmt = stmt.where(records.c.at >= lower)
    if upper is not None:
        stmt = stmt.where(records.c.at < upper)
    rows = conn.execution_options(**_STREAM).execute(stmt.order_by(records.c.seq))
    with rows:
        started = [record_from_row(row._mapping) for row in rows]
    for record in started:
        seen = ErasureSeen(str(record["run_id"]))
        seen.add(record)
        yield seen


def erasure_requests(
    conn: Connection, loaded: LoadedPolicy, chain_ok: bool, since: When | None, until: When | None
) -> list[dict[str, Any]] | None:
    """The certificate's erasure requests of the period (when, outcome, rows per table;
    no subject's id or digest); None when a broken chain leaves records unreadable."""
    if not chain_ok:
        return None
    found = requests_of(conn, loaded.policy.audit.table, since=since, until=until)
    return [{k: v for k, v in q.data().items() if k != "records"} for q in found]


def erasures_html(requests: list[dict[str, Any]] | None) -> str:
    """The certificate's section on erasure requests (``report_html`` draws the rest)."""
    head = "<h2>Erasure requests</h2>"
    if requests is None:
        return head + "<p>Not listed: the chain is broken (see above).</p>"
    if not requests:
        return head + "<p>No erasure request in the period.</p>"
    rows = []
    for q in requests:
        tables = ", ".join(f"{t['table']}: {t['rows']}" for t in q["tables"]) or "none"
        total = q["rows"] + q["dependent_rows"]
        cells = [q["request_id"], q["started_at"], q["outcome"], tables, total]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    names = ["Request", "Started (UTC)", "Outcome", "Rows per table", "Rows in all"]
    thead = "".join(f"<th>{n}</th>" for n in names)
    note = (
        '<p class="muted">One request per data subject. The log holds a keyed digest of '
        "the subject's id, never the id, and this certificate shows neither: `retention "
        "audit find --subject ID` answers for one person, with the hash key.</p>"
    )
    return (
        f"{head}<table><thead><tr>{thead}</tr></thead><tbody>{''.join(rows)}</tbody></table>{note}"
    )
