"""Stage two's errors: pydantic's validation errors -> one ``file:line:col`` line each.

Each message names what was expected and, where a near word exists, suggests it.
"""

from __future__ import annotations

import difflib
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from retention.errors import Problem
from retention.policy import conditions, fields, model, strategies
from retention.policy.locator import Locator, Path
from retention.policy.strategies import STRATEGY_HELP

_TYPE_NAMES = {
    "string_type": "text",
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


# Each mapping of the file that refuses unknown keys, as a person names it.
_PLACES: dict[type[Any], str] = {
    model.Policy: "the top level",
    model.Defaults: "defaults",
    model.AuditSettings: "audit",
    model.Holds: "holds",
    model.Rule: "a rule",
    model.Cascade: "a cascade",
    model.Guard: "guard",
    model.RelatedColumn: "a value read through a relation",
    conditions.Related: "related",
    conditions.Tests: "a column's tests",
    strategies.HashParams: "hash",
    strategies.MaskParams: "mask",
}

# Keys people reach for where the language has no such feature, and what it has instead.
_INSTEAD = {
    ("a rule", "holds"): "the registry is a top-level key; a rule names its subject with "
    "hold_subject",
    ("a cascade", "unless"): "dependents go with the rows they depend on; choose which with where",
    ("a cascade", "clock"): "dependents go with the rows they depend on; give the table "
    "a rule of its own for an age of its own",
    ("a cascade", "after"): "dependents go with the rows they depend on; give the table "
    "a rule of its own for an age of its own",
    ("holds", "where"): "choose the registry's active rows with active",
    ("a value read through a relation", "where"): "a condition on the related row goes "
    "inside it: related: {table, on, where}",
    ("related", "column"): "a condition's related row is only tested; read a value "
    "through it with {related: {table, on}, column} as clock or hold_subject",
}


def _owners() -> dict[str, list[str]]:
    """Each key of the language, and the places it is a key of."""
    out: dict[str, list[str]] = {}
    for cls, place in _PLACES.items():
        for fname, finfo in cls.model_fields.items():
            out.setdefault(finfo.alias or fname, []).append(place)
    for name in fields.RESERVED:
        out.setdefault(name, []).append("a condition")
    return out


def _known_keys() -> list[str]:
    return sorted(_owners())


def _place(path: Path) -> str:
    """The place (as ``_PLACES`` names it) of the mapping at ``path``."""
    if not path:
        return "the top level"
    if len(path) == 1:
        return str(path[0])
    if len(path) == 2 and path[0] == "rules":
        return "a rule"
    if path[-2] == "cascade" and isinstance(path[-1], int):
        return "a cascade"
    if path[-1] in ("related", "guard", "hash", "mask"):
        return str(path[-1])
    if path[-1] in ("clock", "hold_subject") or (
        path[-1] == "column" and {"clock", "hold_subject"} & set(path)
    ):
        return "a value read through a relation"
    return "a column's tests"


def _misplaced(key: str, path: Path) -> str:
    """Why a key of the language is refused here: a feature this place does not have
    (said so, with what it has instead), or a slip of indentation that moved a key of an
    enclosing mapping into this one."""
    parent = path[:-1]
    place = _place(parent)
    owners = _owners()[key]
    if (place, key) in _INSTEAD:
        return f": {place} has no '{key}' ({_INSTEAD[place, key]})"
    # Indenting a key too far moves it into the mapping above it, never into a list item.
    for k in range(len(parent) - 1, -1, -1):
        if isinstance(parent[k], int):
            break
        enclosing = _place(parent[:k])
        if enclosing != "a column's tests" and enclosing in owners:
            return f" ('{key}' belongs to {enclosing}: check the indentation)"
    return f": {place} has no '{key}' (it is a key of {', '.join(owners)})"


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def translate(exc: ValidationError, locator: Locator) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[Path] = set()
    for error in exc.errors(include_url=False):
        path = locator.clean(error["loc"])
        if path in seen:
            continue  # one line per place: a union reports each of its arms
        seen.add(path)
        if "<name>" in error["loc"] and error["type"] == "literal_error":
            shown = describe(error.get("input"))
            problems.append(
                locator.problem(path, f"unknown anonymisation strategy {shown}: {STRATEGY_HELP}")
            )
            continue
        problems.append(_one(error, path, locator))
    return sorted(problems, key=lambda p: (p.line or 0, p.column or 0))


def _one(error: Any, path: Path, locator: Locator) -> Problem:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    last = path[-1] if path else ""
    if kind == "extra_forbidden":
        known = _known_keys()
        # A real key in the wrong place: suggesting the same word would not help.
        hint = _misplaced(str(last), path) if last in known else _hint(str(last), known)
        msg = f"unknown key '{str(last)[:40]}'{hint}"
        return locator.problem(path, msg, at_key=True)
    if kind == "missing":
        return locator.problem(path[:-1], f"missing required key '{last}'")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        choices = [c.strip(" '") for c in expected.split(",")]
        msg = f"{describe(value)} is not one of {expected}"
        if len(choices) == 1:
            msg = f"must be {expected}, not {describe(value)}"
        if isinstance(value, str) and len(choices) > 1:
            msg += _hint(value, choices)
        return locator.problem(path, msg)
    if kind in _TYPE_NAMES:
        msg = f"expected {_TYPE_NAMES[kind]}, got {describe(value)}"
        if (
            kind == "bool_type"
            and isinstance(value, str)
            and value.lower() in ("yes", "no", "on", "off", "y", "n")
        ):
            msg += " (YAML 1.2 reads yes/no/on/off as text: write true or false)"
        return locator.problem(path, msg)
    if kind == "string_pattern_mismatch":
        message = _pattern_message(value, str(ctx.get("pattern", "")))
        if last == "table":  # audit.table: a bare table name, no schema
            message = message.replace("column name", "table name")
        return locator.problem(path, message)
    if kind in ("too_short", "too_long") and isinstance(value, list | dict | str):
        what = "empty" if kind == "too_short" else "too long"
        return locator.problem(path, f"must not be {what}" if what == "empty" else f"is {what}")
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    message = message[:1].lower() + message[1:]
    return locator.problem(path, message)


def _pattern_message(value: Any, pattern: str) -> str:
    shown = describe(value)
    if "a-z0-9]+(-" in pattern:
        return f"{shown} is not a valid rule name: use lowercase letters, digits and '-'"
    if "\\." in pattern:
        return f"{shown} is not a valid table name: letters, digits and _, optionally schema.table"
    return (
        f"{shown} is not a valid column name: letters, digits and _ (no SQL is taken from the file)"
    )
