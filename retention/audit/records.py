"""The audit record, its tables and its canonical encoding (SPEC section 6).

``hash`` is SHA-256 over ``prev_hash`` followed by the canonical JSON of every other
field: keys sorted, no whitespace, timestamps as ISO 8601 UTC with microseconds and a
``Z``, numbers as numbers, NULL as null. Anyone can recompute it from an export.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
)

from retention.backends.types import timestamp

ZERO_HASH = "0" * 64
FIELDS = (
    "seq",
    "run_id",
    "at",
    "event",
    "rule",
    "table_name",
    "action",
    "cutoff",
    "row_count",
    "dependents",
    "key_digest",
    "policy_sha256",
    "version",
    "details",
    "prev_hash",
    "hash",
)
JSON_FIELDS = ("dependents", "details")
TIME_FIELDS = ("at", "cutoff")

Timestamp = timestamp()
Count = BigInteger().with_variant(Integer, "sqlite")


def audit_tables(name: str) -> tuple[MetaData, Table, Table]:
    """The audit table and its one-row head (the chain's tip, locked to append)."""
    metadata = MetaData()
    records = Table(
        name,
        metadata,
        Column("seq", Count, primary_key=True, autoincrement=False),
        Column("run_id", String(36), nullable=False),
        Column("at", Timestamp, nullable=False),
        Column("event", String(32), nullable=False),
        Column("rule", String(63)),
        Column("table_name", String(130)),
        Column("action", String(16)),
        Column("cutoff", Timestamp),
        Column("row_count", BigInteger),
        Column("dependents", Text),
        Column("key_digest", String(64)),
        Column("policy_sha256", String(64), nullable=False),
        Column("version", String(32), nullable=False),
        Column("details", Text),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False, unique=True),
        # Finding runs that died without recording their end reads by event and run.
        Index(f"ix_{name}_event_run", "event", "run_id"),
    )
    head = Table(
        f"{name}_head",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seq", Count, nullable=False),
        Column("hash", String(64), nullable=False),
    )
    return metadata, records, head


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(record: dict[str, Any]) -> str:
    """Canonical JSON of every field but ``prev_hash`` and ``hash``."""
    body: dict[str, Any] = {}
    for name in FIELDS:
        if name in ("prev_hash", "hash"):
            continue
        value = record.get(name)
        if name in TIME_FIELDS:
            value = iso(value) if isinstance(value, datetime) else value
        elif name in JSON_FIELDS and isinstance(value, str):
            value = json.loads(value)
        body[name] = value
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(record)).encode("utf-8")).hexdigest()


def to_json_text(value: dict[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def truncate_to_micros(value: datetime) -> datetime:
    """Naive UTC, as stored: the hash must be computed over what the database keeps."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def audit_exists(conn: Connection, table_name: str) -> bool:
    return bool(inspect(conn).has_table(table_name))


def key_digest(hash_key: bytes, keys: Sequence[tuple[Any, ...]]) -> str:
    """A batch record's ``key_digest``: HMAC-SHA-256 over the batch's sorted keys."""
    return hmac.new(hash_key, encode_keys(keys), hashlib.sha256).hexdigest()


def encode_keys(keys: Sequence[tuple[Any, ...]]) -> bytes:
    """The keys as compact JSON: an array of arrays, sorted by value (2 before 10)."""
    if keys and all(len(key) == 1 and type(key[0]) is int for key in keys):
        # Fast path, the same bytes: single integer keys (not bool, a subclass of int).
        ordered = sorted(key[0] for key in keys)
        return ("[" + ",".join([f"[{v}]" for v in ordered]) + "]").encode()
    plain = sorted([_plain(v) for v in key] for key in keys)
    return json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# A fixed text, keyed: the fingerprint tells keys apart and reveals nothing of the key.
_FINGERPRINT_TEXT = b"retention hash key fingerprint v1"


def key_fingerprint(hash_key: bytes) -> str:
    """``run_started``'s ``key_fingerprint``: an HMAC of a fixed text, never the key."""
    return hmac.new(hash_key, _FINGERPRINT_TEXT, hashlib.sha256).hexdigest()[:16]
