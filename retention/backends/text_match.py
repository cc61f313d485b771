"""Literal, case-sensitive text tests (``starts_with``, ``ends_with``, ``contains``; SPEC
section 2), compiled per dialect.

The text is bound twice, escaped for LIKE and for GLOB, and each database renders the
one it compares with: PostgreSQL's LIKE already respects case; SQLite's LIKE folds ASCII
case, so it uses GLOB; MariaDB's default collations fold case, so it compares bytes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, bindparam
from sqlalchemy.types import Boolean, String

from retention.backends.strategies import AsBytes, _Built, compiles_as

_ESCAPE = "/"


class TextMatch(_Built):
    """The column's text starts with, ends with or contains ``text``, literally."""

    inherit_cache = True
    name = "text_match"

    def __init__(self, col: ColumnElement[Any], op: str, text: str) -> None:
        like = text.replace(_ESCAPE, 2 * _ESCAPE).replace("%", "/%").replace("_", "/_")
        # In GLOB a bracket makes a wildcard literal; ']' alone is literal already.
        glob = "".join(f"[{c}]" if c in "*?[" else c for c in text)
        around = {"starts_with": ("", "*"), "ends_with": ("*", "")}.get(op, ("*", "*"))
        super().__init__(
            col,
            bindparam(
                None, around[0].replace("*", "%") + like + around[1].replace("*", "%"), String()
            ),
            bindparam(None, around[0] + glob + around[1], String()),
            type_=Boolean(),
        )


@compiles_as(TextMatch, "default", "postgresql")
def _like(element: TextMatch) -> ColumnElement[Any]:
    return element.arg(0).like(element.arg(1), escape=_ESCAPE)  # type: ignore[no-any-return]


@compiles_as(TextMatch, "sqlite")
def _glob(element: TextMatch) -> ColumnElement[Any]:
    return element.arg(0).op("GLOB", is_comparison=True)(element.arg(2))  # type: ignore[no-any-return]


@compiles_as(TextMatch, "mysql", "mariadb")
def _bytes(element: TextMatch) -> ColumnElement[Any]:
    return AsBytes(element.arg(0)).like(AsBytes(element.arg(1)), escape=_ESCAPE)
