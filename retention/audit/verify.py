"""Recompute the chain (SPEC section 6): exit 4 naming the first bad record.

Anything that makes a record unreadable (a ``details`` that is not JSON, an ``at`` that is
not a timestamp, a number stored as text) is tampering too: it is reported like an altered
record, never as an unexpected error, so the certificate is still written with the break.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, select, type_coerce

from retention.audit.records import (
    FIELDS,
    JSON_FIELDS,
    TIME_FIELDS,
    ZERO_HASH,
    audit_exists,
    audit_tables,
    record_hash,
    to_json_text,
)
from retention.backends import backend_for
from retention.errors import AuditTampered
from retention.outcomes import Event

_TEXT_FIELDS = ("run_id", "event", "policy_sha256", "version", "prev_hash", "hash")
_OPTIONAL_TEXT_FIELDS = ("rule", "table_name", "action", "key_digest")


@dataclass(frozen=True)
class Verified:
    """A chain that verifies: its length and head.

    ``expected_at`` is the record whose hash is ``--expect-head`` when the log has grown
    since that head was kept. ``key_fingerprints`` are the hash-key fingerprints the
    ``run_started`` records carry, so a caller holding a key can tell whether the records
    were written under it.
    """

    records: int
    head: str
    expected_at: int | None = None
    key_fingerprints: frozenset[str] = field(default_factory=frozenset)
    stored_head: tuple[int, str] | None = None


def verify_records(
    rows: Iterable[Mapping[Any, Any]],
    expect_head: str | None = None,
    kept_heads: Sequence[str] = (),
    stored_head: tuple[int, str] | None = None,
) -> Verified:
    """Check an ordered iterable of record mappings; raise ``AuditTampered`` at the first bad one.

    ``kept_heads`` are heads recorded outside the database (``RETENTION_AUDIT_HEAD_FILE``):
    each must still be a record's hash, or the log was cut or rewritten after it.
    ``stored_head`` is the head table's ``(seq, hash)``, read before the records: the chain
    must reach it (it may go past it, when a run appended meanwhile).
    """
    missing = {h for h in kept_heads if h != ZERO_HASH}
    prev = ZERO_HASH
    count = 0
    expected_at: int | None = 0 if expect_head == ZERO_HASH else None
    at_zero = stored_head is not None and stored_head[0] == 0
    hash_at_head: str | None = ZERO_HASH if at_zero else None
    fingerprints: set[str] = set()
    for row in rows:
        record = dict(row)
        count += 1
        seq = record.get("seq")
        if seq != count or type(seq) is not int:
            raise AuditTampered(count, _misplaced(count, seq))
        problem = field_problem(record)
        if problem is not None:
            raise AuditTampered(seq, problem)
        if record["prev_hash"] != prev:
            raise AuditTampered(seq, "prev_hash does not match the previous record's hash")
        if record_hash(prev, record) != record["hash"]:
            raise AuditTampered(seq, "contents do not match its hash (altered)")
        prev = str(record["hash"])
        missing.discard(prev)
        if prev == expect_head:
            expected_at = seq
        if stored_head is not None and seq == stored_head[0]:
            hash_at_head = prev
        if record["event"] == Event.RUN_STARTED:
            fingerprint = json.loads(record["details"] or "{}").get("key_fingerprint")
            if isinstance(fingerprint, str):
                fingerprints.add(fingerprint)
    if stored_head is not None:
        _check_stored_head(stored_head, count, hash_at_head)
    if missing:
        first = next(h for h in kept_heads if h in missing)
        raise AuditTampered(
            None, f"kept head {first} is not in the log: it was cut or rewritten after it"
        )
    if expect_head is not None and expected_at is None:
        raise AuditTampered(
            None, f"head is {prev} after {count} records, expected {expect_head} (tail cut?)"
        )
    grew = expected_at if expected_at is not None and expected_at < count else None
    return Verified(count, prev, grew, frozenset(fingerprints), stored_head)


def _misplaced(count: int, seq: Any) -> str:
    # Name the first record that is not where it belongs: a removed record is named by its
    # own seq, not by the survivor that follows it.
    if type(seq) is int and seq > count:
        gap = f"record {count} is" if seq == count + 1 else f"records {count}-{seq - 1} are"
        return f"{gap} missing (found {seq} in its place)"
    if type(seq) is not int and seq is not None and str(seq) == str(count):
        return f"its seq is stored as {type(seq).__name__}, not as a number"
    return f"expected record {count} here, found {seq} (reordered or duplicated)"


def _check_stored_head(stored: tuple[int, str], count: int, hash_at_head: str | None) -> None:
    seq, expected = stored
    if count < seq:
        cut = f"record {seq} was" if count + 1 == seq else f"records {count + 1}-{seq} were"
        raise AuditTampered(
            count + 1,
            f"the chain ends at record {count} but the head table says record {seq}: "
            f"{cut} cut from the tail",
        )
    if hash_at_head != expected:
        raise AuditTampered(seq, "its hash is not the one the head table holds (rewritten)")


def field_problem(record: dict[str, Any]) -> str | None:
    """Why a record's fields cannot be what the writer stored, or None.

    Parsed values replace the stored ones in ``record`` (timestamps read as text on SQLite),
    so the hash is computed over what readers see.
    """
    for name in _TEXT_FIELDS:
        if not isinstance(record.get(name), str):
            return f"{name} is {_kind(record.get(name))}, not text"
    for name in _OPTIONAL_TEXT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"{name} is {_kind(record[name])}, not text"
    count = record.get("row_count")
    if count is not None and type(count) is not int:
        return f"row_count is {_kind(count)}, not a number"
    for name in TIME_FIELDS:
        value = record.get(name)
        if value is None and name == "at":
            return "at is empty"
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return f"{name} is not a timestamp"
            record[name] = value
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is not None):
            return f"{name} is not a UTC timestamp"
    for name in JSON_FIELDS:
        problem = _json_problem(name, record.get(name))
        if problem is not None:
            return problem
    return None


def _json_problem(name: str, text: Any) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        return f"{name} is {_kind(text)}, not JSON text"
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return f"{name} is not JSON"
    if not isinstance(value, dict):
        return f"{name} is not a JSON object"
    if name == "dependents" and not all(type(v) is int for v in value.values()):
        return "dependents holds a count that is not a number"
    # Text that parses to the same object but is not its canonical form (a duplicate key,
    # reformatting) would show SQL readers something the hash does not cover.
    if to_json_text(value) != text:
        return f"{name} is not stored in its canonical form (a duplicate key or reformatting)"
    return None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _kind(value: Any) -> str:
    return "empty" if value is None else type(value).__name__


def verify_table(
    conn: Connection,
    table_name: str,
    expect_head: str | None = None,
    kept_heads: Sequence[str] = (),
    *,
    allow_empty: bool = False,
) -> Verified:
    """Verify the log in ``table_name`` against its head table.

    A database without the audit table raises ``AuditTampered`` unless ``allow_empty``: a
    dropped log must not read as an empty one.
    """
    if not audit_exists(conn, table_name):
        if not allow_empty:
            raise AuditTampered(
                None,
                f"no audit log in this database (no table {table_name}; "
                "--allow-empty accepts a database where no run has written one)",
            )
        return verify_records([], expect_head, kept_heads)
    _, records, head = audit_tables(table_name)
    # The head first: a run appending meanwhile can only make the chain longer than it.
    stored = None
    if audit_exists(conn, head.name):
        row = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).first()
        stored = (int(row.seq), str(row.hash)) if row is not None else None
    if stored is None:
        raise AuditTampered(None, f"the head table {head.name} is missing or empty")
    # SQLite keeps any text in a timestamp column: read it as text, so a bad one is named
    # by its record instead of failing the read.
    as_text = not backend_for(conn).enforces_column_types
    cols = [
        type_coerce(records.c[name], String).label(name)
        if as_text and name in TIME_FIELDS
        else records.c[name]
        for name in FIELDS
    ]
    result = conn.execution_options(stream_results=True, yield_per=1000).execute(
        select(*cols).order_by(records.c.seq)
    )
    # Closed however verify ends: a stream left half read when a bad record stops it
    # would make MariaDB's driver warn ("Previous unbuffered result was left incomplete")
    # on the connection's next statement.
    with result:
        return verify_records((row._mapping for row in result), expect_head, kept_heads, stored)


def key_fingerprints(conn: Connection, table_name: str) -> dict[str, int]:
    """The hash-key fingerprints ``run_started`` records carry, with how many runs each.

    ``audit find`` compares them with the current key's (``records.key_fingerprint``): a
    lookup under another key finds nothing, which must not read as "no record".
    """
    if not audit_exists(conn, table_name):
        return {}
    _, records, _ = audit_tables(table_name)
    found: dict[str, int] = {}
    rows = conn.execute(select(records.c.details).where(records.c.event == Event.RUN_STARTED))
    for (details,) in rows:
        try:
            fingerprint = json.loads(details or "{}").get("key_fingerprint")
        except (ValueError, AttributeError):
            continue  # verify names such a record; this is only a hint
        if isinstance(fingerprint, str):
            found[fingerprint] = found.get(fingerprint, 0) + 1
    return found
