"""The anonymisation strategies as SQL constructs, compiled per dialect.

``retention.anonymisers`` builds these; each backend module registers, with ``@compiles``,
the SQL its database computes them with (SQLite calls functions registered on the
connection, PostgreSQL and MySQL compute them in SQL). A construct's settings that shape
its SQL (``keep``, ``unit``) are part of its cache key, so a cached statement never serves
another setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal, _TraverseInternalsType
from sqlalchemy.types import TypeEngine

_UNGROUPED = "ungrouped"


class _Construct(FunctionElement[Any]):
    inherit_cache = True

    def __init__(self, *clauses: ColumnElement[Any], type_: TypeEngine[Any] | None = None) -> None:
        super().__init__(*clauses)
        if type_ is not None:
            self.type = type_

    def arg(self, i: int) -> Any:
        """The ``i``-th expression the construct was built from."""
        return self.clauses.clauses[i]


class _Built(_Construct):
    """A construct each backend builds as an ordinary SQLAlchemy expression.

    Where the construct is placed, its parent asks it to group itself (``self_group``);
    the request is kept and passed on to the built expression, so ``a || b`` is
    parenthesised exactly where it would have been had it been placed there itself.
    """

    inherit_cache = True
    _against: Any = _UNGROUPED
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012  (read per class)
        *FunctionElement._traverse_internals,
        ("_against", InternalTraversal.dp_plain_obj),
    ]

    def self_group(self, against: Any = None) -> Any:
        grouped = super().self_group(against=against)
        if grouped is not self:
            return grouped
        marked = self._clone()
        marked._against = against
        return marked

    def render(self, expr: ColumnElement[Any], compiler: Any, **kw: Any) -> str:
        if self._against is not _UNGROUPED:
            expr = expr.self_group(against=self._against)
        return str(compiler.process(expr, **kw))


Builder = Callable[[Any], ColumnElement[Any]]


def compiles_as(construct: type[_Built], *dialects: str) -> Callable[[Builder], Builder]:
    """Register ``build(element) -> expression`` as ``construct``'s SQL on ``dialects``."""

    def decorate(build: Builder) -> Builder:
        def compile_(element: _Built, compiler: Any, **kw: Any) -> str:
            return element.render(build(element), compiler, **kw)

        for dialect in dialects:
            compiles(construct, dialect)(compile_)
        return build

    return decorate


class AsBytes(_Construct):
    """Text compared byte for byte. MySQL's default collations ignore case, accents and
    trailing spaces, and LIKE ignores case on SQLite: 'ANON-Smith' must not pass for a
    finished 'anon-' pseudonym, nor 'Unknown' for {value: unknown}."""

    inherit_cache = True
    name = "as_bytes"

    def __init__(self, expr: ColumnElement[Any]) -> None:
        super().__init__(expr, type_=expr.type)


class Concat(_Built):
    """Text parts joined in order."""

    inherit_cache = True
    name = "concat"


class HmacHex(_Built):
    """HMAC-SHA-256 of the value under the run's hash key, as lowercase hex; NULL stays NULL."""

    inherit_cache = True
    name = "hmac_hex"

    def __init__(self, col: ColumnElement[Any]) -> None:
        super().__init__(col)


class Mask(_Built):
    """All but the last ``keep`` characters of the value replaced by the character ``char``."""

    inherit_cache = True
    name = "mask"
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012  (read per class)
        *_Built._traverse_internals,
        ("keep", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, col: ColumnElement[Any], keep: int, char: ColumnElement[Any]) -> None:
        super().__init__(col, char)
        self.keep = keep


class TruncateIp(_Built):
    """An IPv4 address to its /24 network, IPv6 to its /48; anything else as it is."""

    inherit_cache = True
    name = "truncate_ip"

    def __init__(self, col: ColumnElement[Any]) -> None:
        super().__init__(col)


class TruncateDate(_Built):
    """A date or timestamp to the first instant of its month or year."""

    inherit_cache = True
    name = "truncate_date"
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012  (read per class)
        *_Built._traverse_internals,
        ("unit", InternalTraversal.dp_string),
    ]

    def __init__(self, col: ColumnElement[Any], unit: str) -> None:
        super().__init__(col)
        self.unit = unit


@compiles(AsBytes)
def _as_bytes(element: AsBytes, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(Concat)
def _concat(element: Concat, compiler: Any, **kw: Any) -> str:
    parts = list(element.clauses.clauses)
    expr = parts[0]
    for part in parts[1:]:
        expr = expr.op("||")(part)
    return element.render(expr, compiler, **kw)


@compiles(HmacHex)
@compiles(Mask)
@compiles(TruncateIp)
@compiles(TruncateDate)
def _unsupported(element: _Construct, compiler: Any, **kw: Any) -> str:
    raise CompileError(f"no SQL for {element.name} on {compiler.dialect.name}")
