"""The oracle's anonymisation strategies, from SPEC section 2 alone: what each leaves in
place of a value, and when a value already reads as its result ("Idempotency").

Shares no code with ``retention.anonymisers`` or ``retention.backends.strategies``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from datetime import date, datetime
from typing import Any


def anonymised(strategy: Any, value: Any, hash_key: bytes) -> Any:
    """The value a ``set`` strategy leaves in place of ``value``."""
    if strategy is None:
        return None
    if strategy == "redact":
        return "[redacted]"
    if strategy == "truncate_ip":
        return truncate_ip(value)
    if "value" in strategy:
        return strategy["value"]
    if value is None:
        return None  # hash, mask and truncate_date leave NULL as it is
    if "hash" in strategy:
        digest = hmac.new(hash_key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{strategy['hash'].get('prefix', '')}{digest}"
    if "mask" in strategy:
        return mask(value, strategy["mask"].get("keep_last", 4), strategy["mask"].get("char", "*"))
    if "truncate_date" in strategy:
        return truncate_date(value, strategy["truncate_date"])
    raise AssertionError(f"strategy not modelled: {strategy!r}")


def recognised(strategy: Any, value: Any) -> bool:
    """Whether ``value`` already reads as the strategy's result (SPEC, idempotency)."""
    if strategy is None:
        return value is None
    if strategy == "redact":
        return bool(value == "[redacted]")
    if strategy == "truncate_ip":
        return bool(value == truncate_ip(value))
    if "value" in strategy:
        return bool(value == strategy["value"])
    if "hash" in strategy:
        # NULL stays NULL under hash, so a NULL is as finished as it will ever be.
        return value is None or str(value).startswith(strategy["hash"]["prefix"])
    if "truncate_date" in strategy:
        return value is None or value == truncate_date(value, strategy["truncate_date"])
    raise AssertionError(f"strategy not recognisable (the rule needs a mark): {strategy!r}")


def truncate_ip(value: Any) -> Any:
    """IPv4 to its /24, IPv6 to its /48; anything that is not an address stays as it is."""
    if value is None:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return value
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def mask(value: str, keep_last: int, char: str) -> str:
    """All but the last ``keep_last`` characters replaced by ``char`` (a value no longer
    than ``keep_last`` stays whole)."""
    hidden = max(len(value) - keep_last, 0)
    return char * hidden + value[hidden:]


def truncate_date(value: date, unit: str) -> date:
    """The first instant of the value's month or year, in the value's own type."""
    first = value.replace(day=1) if unit == "month" else value.replace(month=1, day=1)
    if isinstance(first, datetime):
        return first.replace(hour=0, minute=0, second=0, microsecond=0)
    return first
