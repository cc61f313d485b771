"""Anonymisation strategy -> SQL expression (SPEC section 2).

Every strategy runs inside one set-based UPDATE. The expressions are the same on every
database: the strategies that need SQL of their own (``hash``, ``mask``, ``truncate_ip``,
``truncate_date``) are constructs from ``retention.backends.strategies``, which each
backend compiles for its dialect. ``hash`` is HMAC-SHA-256 keyed with
``RETENTION_HASH_KEY``; where it is computed in SQL, its padded keys are bound parameters
(``Backend.secret_params``), never rendered.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    func,
    null,
    or_,
    type_coerce,
)

from retention.backends.strategies import (
    AsBytes,
    Concat,
    HmacHex,
    Mask,
    TruncateDate,
    TruncateIp,
)
from retention.policy.strategies import (
    HashStrategy,
    MaskStrategy,
    Strategy,
    TruncateDateStrategy,
    ValueStrategy,
)

REDACTED = "[redacted]"


def expression(strategy: Strategy, col: Any, name: str) -> ColumnElement[Any]:
    """The new value of ``col`` under ``strategy``, as an expression over the old value.

    ``name`` makes the bound parameters' names unique and readable in ``--show-sql``.
    """
    if strategy is None:
        # NULL as SQL text: a bound NULL would be named after the column in SET, which
        # clashes with a parameter of the same name (a column called ``keys``).
        return null()
    if strategy == "redact":
        return bindparam(f"{name}_redacted", REDACTED, type_=col.type)
    if isinstance(strategy, ValueStrategy):
        return bindparam(f"{name}_value", strategy.value, type_=col.type)
    if strategy == "truncate_ip":
        return TruncateIp(col)
    if isinstance(strategy, MaskStrategy):
        char = bindparam(f"{name}_mask_char", strategy.mask.char, type_=String())
        return Mask(col, strategy.mask.keep_last, char)
    if isinstance(strategy, HashStrategy):
        return _hash(col, strategy, name)
    if isinstance(strategy, TruncateDateStrategy):
        return TruncateDate(col, strategy.truncate_date)
    raise AssertionError(f"unhandled strategy {strategy!r}")


def recognised(strategy: Strategy, col: Any, name: str) -> ColumnElement[bool] | None:
    """True where ``col`` already holds this strategy's result (SPEC "Idempotency")."""
    if strategy is None:
        return col.is_(None)  # type: ignore[no-any-return]
    if strategy == "redact":
        redacted = bindparam(f"{name}_redacted", REDACTED, type_=col.type)
        return and_(col.is_not(None), _exactly(col, redacted))
    if isinstance(strategy, ValueStrategy):
        value = bindparam(f"{name}_value", strategy.value, type_=col.type)
        return and_(col.is_not(None), _exactly(col, value))
    if strategy == "truncate_ip":
        # A truncated address, and a value that is not an address, are their own
        # truncation.
        return or_(col.is_(None), _exactly(col, TruncateIp(col)))
    if isinstance(strategy, TruncateDateStrategy):
        # A first of the month (or year) at midnight is its own truncation; NULL stays NULL.
        return or_(col.is_(None), _exactly(col, TruncateDate(col, strategy.truncate_date)))
    if isinstance(strategy, HashStrategy) and strategy.hash.prefix:
        # NULL stays NULL under hash, so NULL is a finished result too.
        prefix = strategy.hash.prefix
        head = func.substr(col, 1, len(prefix), type_=String())
        return or_(col.is_(None), _exactly(head, bindparam(f"{name}_prefix", prefix, String())))
    return None


def _exactly(col: Any, value: Any) -> ColumnElement[bool]:
    if isinstance(col.type, String):
        return AsBytes(col) == AsBytes(value)
    return col == value  # type: ignore[no-any-return]


def _hash(col: Any, strategy: HashStrategy, name: str) -> ColumnElement[Any]:
    params = strategy.hash
    digest: ColumnElement[Any] = HmacHex(col)
    if params.length < 64:
        digest = func.substr(digest, 1, params.length)
    parts: list[Any] = []
    if params.prefix:
        parts.append(bindparam(f"{name}_prefix_text", params.prefix, type_=String()))
    parts.append(digest)
    if params.suffix:
        parts.append(bindparam(f"{name}_suffix_text", params.suffix, type_=String()))
    if len(parts) == 1:
        return type_coerce(parts[0], col.type)
    return type_coerce(Concat(*parts), col.type)
