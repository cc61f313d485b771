"""Recompute the chain (SPEC section 6): exit 4 naming the first bad record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from retention.audit.records import FIELDS, ZERO_HASH, audit_exists, audit_tables, record_hash
from retention.errors import AuditTampered


@dataclass(frozen=True)
class Verified:
    records: int
    head: str


def verify_records(
    rows: Any, expect_head: str | None = None, kept_heads: Sequence[str] = ()
) -> Verified:
    """Check an ordered iterable of record mappings; raise ``AuditTampered`` at the first bad one.

    ``kept_heads`` are heads recorded outside the database (``RETENTION_AUDIT_HEAD_FILE``):
    each must still be a record's hash, or the log was cut or rewritten after it.
    """
    missing = {h for h in kept_heads if h != ZERO_HASH}
    prev = ZERO_HASH
    count = 0
    for row in rows:
        record = dict(row)
        count += 1
        seq = record.get("seq")
        if seq != count:
            # Name the first record that is not where it belongs: a removed record is
            # named by its own seq, not by the survivor that follows it.
            if isinstance(seq, int) and seq > count:
                gap = f"record {count} is" if seq == count + 1 else f"records {count}-{seq - 1} are"
                reason = f"{gap} missing (found {seq} in its place)"
            else:
                reason = f"expected record {count} here, found {seq} (reordered or duplicated)"
            raise AuditTampered(count, reason)
        if record.get("prev_hash") != prev:
            raise AuditTampered(seq, "prev_hash does not match the previous record's hash")
        if record_hash(prev, record) != record.get("hash"):
            raise AuditTampered(seq, "contents do not match its hash (altered)")
        prev = str(record["hash"])
        missing.discard(prev)
    if missing:
        first = next(h for h in kept_heads if h in missing)
        raise AuditTampered(
            None, f"kept head {first} is not in the log: it was cut or rewritten after it"
        )
    if expect_head is not None and expect_head != prev:
        raise AuditTampered(
            None, f"head is {prev} after {count} records, expected {expect_head} (tail cut?)"
        )
    return Verified(count, prev)


def verify_table(
    conn: Connection,
    table_name: str,
    expect_head: str | None = None,
    kept_heads: Sequence[str] = (),
) -> Verified:
    if not audit_exists(conn, table_name):
        return verify_records([], expect_head, kept_heads)
    _, records, _ = audit_tables(table_name)
    cols = [records.c[name] for name in FIELDS]
    result = conn.execution_options(stream_results=True, yield_per=1000).execute(
        select(*cols).order_by(records.c.seq)
    )
    return verify_records((row._mapping for row in result), expect_head, kept_heads)
