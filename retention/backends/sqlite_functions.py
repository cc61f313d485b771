"""SQL functions SQLite lacks, registered on each connection, so that anonymisation stays
one set-based UPDATE on SQLite too (PostgreSQL and MySQL compute these in SQL)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import sqlite3
from typing import Any

from retention.backends.addresses import IPV4, IPV6


def hmac_hex(key: bytes, value: Any) -> str | None:
    if value is None:
        return None
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def mask_text(value: Any, keep_last: int, char: str) -> str | None:
    if value is None:
        return None
    text = str(value)
    keep = min(keep_last, len(text))
    return char * (len(text) - keep) + (text[len(text) - keep :] if keep else "")


def truncate_ip(value: Any) -> Any:
    """203.0.113.77 -> 203.0.113.0; IPv6 to its /48 network. A value that is not exactly
    an address's text ('', 'unknown') is left as it is (SPEC 2), as on the servers, which
    read addresses with the same patterns."""
    if not isinstance(value, str):
        return value
    if re.fullmatch(IPV4, value):
        prefix = 24
    elif re.fullmatch(IPV6, value):
        prefix = 48
    else:
        return value
    address = ipaddress.ip_address(value)
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return str(network.network_address)


def truncate_date(value: Any, unit: str) -> str | None:
    """Truncate SQLAlchemy's SQLite date/datetime text ('YYYY-MM-DD[ HH:MM:SS[.ffffff]]')."""
    if value is None:
        return None
    text = str(value)
    if len(text) < 10:
        return None
    head = text[:4] + ("-01-01" if unit == "year" else text[4:7] + "-01")
    if len(text) == 10:
        return head
    tail = "".join("0" if ch.isdigit() else ch for ch in text[10:])
    return head + tail


def register_functions(connection: sqlite3.Connection, hash_key: bytes | None) -> None:
    if hash_key is not None:
        key = hash_key
        connection.create_function(
            "retention_hmac", 1, lambda v: hmac_hex(key, v), deterministic=True
        )
    connection.create_function("retention_mask", 3, mask_text, deterministic=True)
    connection.create_function("retention_truncate_ip", 1, truncate_ip, deterministic=True)
    connection.create_function("retention_truncate_date", 2, truncate_date, deterministic=True)
