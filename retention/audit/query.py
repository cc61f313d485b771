"""Reading the audit log: filtered record streams, and per-key proof of removal.

Records come back as dicts keyed by SPEC section 6's field names, in order: ``at`` and
``cutoff`` as aware UTC datetimes, ``dependents`` and ``details`` parsed from their JSON
text. Everything streams (``yield_per``), so a log of any length reads in flat memory.

Per-key proof: with ``audit: {record_keys: true}``, each batch also writes one keyed
digest per removed key into ``<audit table>_keys``. The digest is keyed with
``RETENTION_HASH_KEY``, so the side table reveals no key to anyone without the secret; a
person who gives their key can be told which record removed it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Generator, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    String,
    Table,
    select,
    type_coerce,
)
from sqlalchemy.sql import ColumnElement

from retention.audit.records import (
    FIELDS,
    JSON_FIELDS,
    TIME_FIELDS,
    Count,
    audit_exists,
    audit_tables,
)
from retention.backends import backend_for
from retention.errors import UsageError

When = date | datetime
Record = dict[str, Any]

_STREAM = {"stream_results": True, "yield_per": 1000}


def audit_keys_table(metadata: MetaData, name: str) -> Table:
    """The side table of per-key digests of the audit table ``name`` (``<name>_keys``).

    ``seq`` is the batch record that removed the key. The primary key starts with ``seq``
    so appends stay in order; lookups go through the index on ``key_digest``.
    """
    return Table(
        f"{name}_keys",
        metadata,
        Column("seq", Count, nullable=False),
        Column("key_digest", String(64), nullable=False, index=True),
        PrimaryKeyConstraint("seq", "key_digest"),
    )


def removed_key_digest(hash_key: bytes, table: str, key_values: Sequence[Any]) -> str:
    """The keyed digest of one removed key, as written to the side table.

    ``table`` is the table's full name as the audit record names it (``support.feedback``);
    the key's values are compared as text, so ``42`` and ``"42"`` are the same key.
    """
    message = json.dumps(
        [table, [str(v) for v in key_values]], separators=(",", ":"), ensure_ascii=False
    )
    return hmac.new(hash_key, message.encode(), hashlib.sha256).hexdigest()


def parse_when(text: str) -> When:
    """``2026-03-31`` (a date) or an ISO 8601 date-time; a naive date-time is UTC."""
    value = text.strip()
    if len(value) == 10:
        return date.fromisoformat(value)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def utc_bounds(since: When | None, until: When | None) -> tuple[datetime | None, datetime | None]:
    """The half-open range ``[since, until)`` as naive UTC, as ``at`` is stored.

    A date ``until`` takes in that whole day: ``--since 2026-01-01 --until 2026-03-31`` is
    the first quarter. A date-time ``until`` is exclusive. A bound at the calendar's end
    (``--until 9999-12-31``) is no bound at all, rather than a day Python cannot count to.
    """
    lower = _naive_utc(since, next_day=False) if since is not None else None
    upper = _naive_utc(until, next_day=True) if until is not None else None
    return (None if lower == datetime.min else lower), (None if upper == datetime.max else upper)


def check_period(since: When | None, until: When | None) -> None:
    """``UsageError`` for a period that holds no instant (``--since`` not before ``--until``)."""
    lower, upper = utc_bounds(since, until)
    if lower is not None and upper is not None and lower >= upper:
        raise UsageError(
            f"--since {_shown(since)} is not before --until {_shown(until)}: the period is empty"
        )


def _shown(value: When | None) -> str:
    return value.isoformat() if value is not None else ""


def _naive_utc(value: When, *, next_day: bool) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            try:
                value = value.astimezone(UTC).replace(tzinfo=None)
            except OverflowError:
                # 0001-01-01T00:00+01:00 or 9999-12-31T23:00-05:00: past the calendar's
                # ends in UTC, so before or after every record.
                return datetime.min if value.year == 1 else datetime.max
        return value
    if next_day and value == date.max:
        return datetime.max
    day = value + timedelta(days=1) if next_day else value
    return datetime.combine(day, time())


def record_from_row(row: Mapping[Any, Any], *, tolerant: bool = False) -> Record:
    """A stored row as a record: aware UTC timestamps, parsed JSON, SPEC field order.

    ``tolerant`` (for a log already known broken): a row whose fields do not parse comes
    back as ``unreadable_record``, naming only its ``seq``, since its raw text could hold
    anything a tamperer wrote there, personal data included.
    """
    if not tolerant:
        return _parsed(row)
    try:
        record = _parsed(row)
    except (ValueError, TypeError, ArithmeticError):
        return unreadable_record(row)
    return record if _readable(record) else unreadable_record(row)


def unreadable_record(row: Mapping[Any, Any]) -> Record:
    """A record whose fields do not parse: its ``seq`` alone, marked ``unreadable``."""
    try:
        seq: int | None = int(row["seq"])
    except (ValueError, TypeError, ArithmeticError):
        seq = None
    return {"seq": seq, "unreadable": True}


def _parsed(row: Mapping[Any, Any]) -> Record:
    record: Record = {}
    for name in FIELDS:
        value = row[name]
        if name in TIME_FIELDS and isinstance(value, str):
            value = datetime.fromisoformat(value)  # read as text from SQLite when tolerant
        if name in TIME_FIELDS and isinstance(value, datetime):
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        elif name in JSON_FIELDS and isinstance(value, str):
            value = json.loads(value)
        elif name in ("seq", "row_count") and value is not None:
            value = int(value)  # MySQL's BIGINT can come back as Decimal from some drivers
        record[name] = value
    return record


def _readable(record: Record) -> bool:
    """Whether the tallies can read every field as the writer stores it."""
    times_ok = isinstance(record["at"], datetime) and (
        record["cutoff"] is None or isinstance(record["cutoff"], datetime)
    )
    json_ok = all(record[name] is None or isinstance(record[name], dict) for name in JSON_FIELDS)
    dependents = record["dependents"] or {}
    counts_ok = all(type(count) is int for count in dependents.values())
    texts_ok = all(isinstance(record[name], str) for name in ("run_id", "event", "policy_sha256"))
    return times_ok and json_ok and counts_ok and texts_ok


def iter_records(
    conn: Connection,
    table_name: str,
    *,
    since: When | None = None,
    until: When | None = None,
    rule: str | None = None,
    run_id: str | None = None,
    tolerant: bool = False,
) -> Generator[Record, None, None]:
    """The records in ``seq`` order, filtered; an absent log has none.

    ``run_id`` may be a whole run id or its first characters, as ``audit show`` prints it.
    ``tolerant``: see ``record_from_row``.
    """
    if not audit_exists(conn, table_name):
        return
    _, records, _ = audit_tables(table_name)
    conditions: list[ColumnElement[bool]] = []
    lower, upper = utc_bounds(since, until)
    if lower is not None:
        conditions.append(records.c.at >= lower)
    if upper is not None:
        conditions.append(records.c.at < upper)
    if rule is not None:
        conditions.append(records.c.rule == rule)
    if run_id is not None:
        conditions.append(records.c.run_id.startswith(run_id, autoescape=True))
    stmt = (_select_as_text(conn, records) if tolerant else _select_all(records)).where(*conditions)
    result = conn.execution_options(**_STREAM).execute(stmt.order_by(records.c.seq))
    try:
        for row in result:
            yield record_from_row(row._mapping, tolerant=tolerant)
    finally:
        result.close()


def stored_head(conn: Connection, table_name: str) -> tuple[int, str] | None:
    """The head table's ``(seq, hash)``: what the writer believes the tip is."""
    _, _, head = audit_tables(table_name)
    if not audit_exists(conn, head.name):
        return None
    row = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).first()
    return (int(row.seq), str(row.hash)) if row is not None else None


def hashes_present(conn: Connection, table_name: str, hashes: Iterable[str]) -> set[str]:
    """Which of ``hashes`` are the hash of a record in the log (by its unique index)."""
    if not audit_exists(conn, table_name):
        return set()
    _, records, _ = audit_tables(table_name)
    wanted, found = sorted(set(hashes)), set[str]()
    for start in range(0, len(wanted), 500):  # a bounded IN list on every database
        chunk = wanted[start : start + 500]
        found.update(
            conn.execute(select(records.c.hash).where(records.c.hash.in_(chunk))).scalars()
        )
    return found


def keys_recorded(conn: Connection, table_name: str) -> bool:
    """Whether the log has a side table of per-key digests (``record_keys`` was on)."""
    return audit_exists(conn, f"{table_name}_keys")


def first_keyed_record(conn: Connection, table_name: str) -> Record | None:
    """The earliest batch record with per-key digests: keys removed before it cannot be found."""
    if not keys_recorded(conn, table_name):
        return None
    _, records, _ = audit_tables(table_name)
    keys = audit_keys_table(MetaData(), table_name)
    first = select(keys.c.seq).order_by(keys.c.seq).limit(1).scalar_subquery()
    row = conn.execute(_select_all(records).where(records.c.seq == first)).first()
    return record_from_row(row._mapping) if row is not None else None


def key_proof(
    conn: Connection,
    table_name: str,
    hash_key: bytes,
    table: str,
    key_values: Sequence[Any],
    *,
    since: When | None = None,
    until: When | None = None,
) -> list[Record]:
    """The batch records that removed this key of ``table``, oldest first.

    Empty when no record did, or when the log keeps no per-key digests (see
    ``keys_recorded``). The key itself is never stored, logged or returned.
    """
    if not keys_recorded(conn, table_name):
        return []
    _, records, _ = audit_tables(table_name)
    keys = audit_keys_table(MetaData(), table_name)
    digest = removed_key_digest(hash_key, table, key_values)
    stmt = (
        _select_all(records)
        .select_from(records.join(keys, keys.c.seq == records.c.seq))
        .where(keys.c.key_digest == digest)
    )
    lower, upper = utc_bounds(since, until)
    if lower is not None:
        stmt = stmt.where(records.c.at >= lower)
    if upper is not None:
        stmt = stmt.where(records.c.at < upper)
    rows = conn.execute(stmt.order_by(records.c.seq))
    return [record_from_row(row._mapping) for row in rows]


def _select_all(records: Table) -> Select[Any]:
    return select(*(records.c[name] for name in FIELDS))


def _select_as_text(conn: Connection, records: Table) -> Select[Any]:
    """As ``_select_all``, but SQLite's timestamps as text: it keeps any text in them, and
    the driver's parsing would fail the whole read at one bad value."""
    if backend_for(conn).enforces_column_types:
        return _select_all(records)
    return select(
        *(
            type_coerce(records.c[name], String).label(name)
            if name in TIME_FIELDS
            else records.c[name]
            for name in FIELDS
        )
    )
