"""Anonymisation strategy -> SQL expression, per dialect (SPEC section 2).

Every strategy runs inside one set-based UPDATE. ``hash`` is HMAC-SHA-256 keyed with
``RETENTION_HASH_KEY``: PostgreSQL and MySQL compute it from their built-in SHA-256 as
``H((K ^ opad) || H((K ^ ipad) || m))`` (RFC 2104), with the two padded keys bound as
parameters; SQLite calls a function registered on the connection (``sqlite_functions``).
The padded keys are secrets: they are bound, never rendered, and engines hide parameters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Date, DateTime

from retention.policy.model import (
    HashStrategy,
    MaskStrategy,
    Strategy,
    TruncateDateStrategy,
    ValueStrategy,
)

REDACTED = "[redacted]"
_BLOCK = 64  # SHA-256 block size in bytes
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_DOTTED = _OCTET + r"(\." + _OCTET + "){3}"


def _ipv6_pattern() -> str:
    """Exactly the textual IPv6 forms (RFC 4291 2.2): PostgreSQL's ``::inet`` cast fails
    the whole UPDATE on anything else, so address-like garbage must not reach it."""
    h = "[0-9A-Fa-f]{1,4}"
    forms = [f"({h}:){{7}}{h}", f"({h}:){{6}}{_DOTTED}"]
    for left in range(8):  # groups before '::', which stands for at least one
        room = 7 - left
        head = f"({h}:){{{left - 1}}}{h}" if left else ""
        tails = [f"{h}(:{h}){{0,{room - 1}}}"] if room else []
        if room >= 2:
            tails.append(f"({h}:){{0,{room - 2}}}{_DOTTED}")
        forms.append(f"{head}::" + (f"({'|'.join(tails)})?" if tails else ""))
    return "^(" + "|".join(forms) + ")$"


_IPV4 = f"^{_DOTTED}$"
_IPV6 = _ipv6_pattern()


@dataclass(frozen=True)
class HmacKeys:
    """The HMAC inner and outer padded keys, derived once per run."""

    inner: bytes
    outer: bytes

    @classmethod
    def from_key(cls, key: bytes) -> HmacKeys:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        return cls(bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key))


def expression(strategy: Strategy, col: Any, dialect: str, name: str) -> ColumnElement[Any]:
    """The new value of ``col`` under ``strategy``, as an expression over the old value.

    ``name`` makes the bound parameters' names unique and readable in ``--show-sql``.
    """
    if strategy is None:
        return literal(None, type_=col.type)
    if strategy == "redact":
        return bindparam(f"{name}_redacted", REDACTED, type_=col.type)
    if isinstance(strategy, ValueStrategy):
        return bindparam(f"{name}_value", strategy.value, type_=col.type)
    if strategy == "truncate_ip":
        return _truncate_ip(col, dialect)
    if isinstance(strategy, MaskStrategy):
        return _mask(col, dialect, strategy, name)
    if isinstance(strategy, HashStrategy):
        return _hash(col, dialect, strategy, name)
    if isinstance(strategy, TruncateDateStrategy):
        return _truncate_date(col, dialect, strategy.truncate_date)
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
    if isinstance(strategy, HashStrategy) and strategy.hash.prefix:
        # NULL stays NULL under hash, so NULL is a finished result too.
        prefix = strategy.hash.prefix
        head = func.substr(col, 1, len(prefix), type_=String())
        return or_(col.is_(None), _exactly(head, bindparam(f"{name}_prefix", prefix, String())))
    return None


class _as_bytes(FunctionElement[Any]):
    """Text compared byte for byte. MySQL's default collations ignore case, accents and
    trailing spaces, and LIKE ignores case on SQLite: 'ANON-Smith' must not pass for a
    finished 'anon-' pseudonym, nor 'Unknown' for {value: unknown}."""

    inherit_cache = True
    name = "as_bytes"

    def __init__(self, expr: ColumnElement[Any]) -> None:
        super().__init__(expr)
        self.type = expr.type


@compiles(_as_bytes)
def _compile_as_bytes(element: _as_bytes, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(_as_bytes, "mysql")
def _compile_as_bytes_mysql(element: _as_bytes, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS BINARY)"


def _exactly(col: Any, value: Any) -> ColumnElement[bool]:
    if isinstance(col.type, String):
        return _as_bytes(col) == _as_bytes(value)
    return col == value  # type: ignore[no-any-return]


def _hash(col: Any, dialect: str, strategy: HashStrategy, name: str) -> ColumnElement[Any]:
    params = strategy.hash
    if dialect == "sqlite":
        digest: ColumnElement[Any] = func.retention_hmac(col)
    else:
        inner = bindparam("hmac_inner", type_=LargeBinary())
        outer = bindparam("hmac_outer", type_=LargeBinary())
        if dialect == "postgresql":
            message = func.convert_to(col, literal("UTF8"))
            step = func.sha256(type_coerce(inner, LargeBinary()).op("||")(message))
            digest = func.encode(
                func.sha256(type_coerce(outer, LargeBinary()).op("||")(step)), "hex"
            )
        else:  # mysql / mariadb: SHA2 returns hex; UNHEX gives the inner digest's bytes
            step = func.unhex(func.sha2(func.concat(inner, col), 256))
            digest = func.lower(func.sha2(func.concat(outer, step), 256))
    if params.length < 64:
        digest = func.substr(digest, 1, params.length)
    parts: list[Any] = []
    if params.prefix:
        parts.append(bindparam(f"{name}_prefix_text", params.prefix, type_=String()))
    parts.append(digest)
    if params.suffix:
        parts.append(bindparam(f"{name}_suffix_text", params.suffix, type_=String()))
    return _concat(parts, dialect, col)


def _concat(parts: list[Any], dialect: str, col: Any) -> ColumnElement[Any]:
    if len(parts) == 1:
        return type_coerce(parts[0], col.type)
    if dialect == "mysql":
        return type_coerce(func.concat(*parts), col.type)
    expr = parts[0]
    for part in parts[1:]:
        expr = expr.op("||")(part)
    return type_coerce(expr, col.type)


def _mask(col: Any, dialect: str, strategy: MaskStrategy, name: str) -> ColumnElement[Any]:
    keep = strategy.mask.keep_last
    char = bindparam(f"{name}_mask_char", strategy.mask.char, type_=String())
    if dialect == "sqlite":
        return func.retention_mask(col, keep, char)
    length = func.char_length(col)
    hidden = func.greatest(length - keep, 0)
    tail = func.right(col, keep) if keep else literal("")
    if dialect == "mysql":
        return func.concat(func.repeat(char, hidden), tail)
    return func.repeat(char, hidden).op("||")(tail)


def _truncate_ip(col: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return func.retention_truncate_ip(col)
    if dialect == "postgresql":
        inet = cast(col, INET())

        def net(bits: int) -> Any:
            return func.host(func.network(func.set_masklen(inet, bits)))

        return case(
            (col.regexp_match(_IPV4), net(24)),
            (col.regexp_match(_IPV6), net(48)),
            else_=literal(None, type_=String()),
        )
    v4 = func.concat(func.substring_index(col, ".", 3), ".0")
    raw = func.inet6_aton(col)
    v6 = func.inet6_ntoa(func.concat(func.substring(raw, 1, 6), func.unhex("00000000000000000000")))
    return case(
        (col.regexp_match(_IPV4), v4),
        (and_(col.regexp_match(_IPV6), raw.is_not(None)), v6),
        else_=literal(None, type_=String()),
    )


def _truncate_date(col: Any, dialect: str, unit: str) -> ColumnElement[Any]:
    is_date_only = isinstance(col.type, Date) and not isinstance(col.type, DateTime)
    if dialect == "sqlite":
        return func.retention_truncate_date(col, unit)
    if dialect == "postgresql":
        truncated = func.date_trunc(unit, col)
        return cast(truncated, col.type) if is_date_only else truncated
    month = "%m" if unit == "month" else "01"
    fmt = f"%Y-{month}-01" + ("" if is_date_only else " 00:00:00")
    return func.date_format(col, fmt)
