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


def _known_keys() -> list[str]:
    names: set[str] = set(fields.TEST_OPERATORS) | set(fields.RESERVED)
    for cls in (
        model.Policy,
        model.Defaults,
        model.AuditSettings,
        model.Holds,
        model.Rule,
        model.Cascade,
        model.Guard,
        conditions.Related,
        conditions.Tests,
        strategies.HashParams,
        strategies.MaskParams,
    ):
        for fname, finfo in cls.model_fields.items():
            names.add(finfo.alias or fname)
    return sorted(names)


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
        if last in known:
            # A real key in the wrong place: suggesting the same word would not help.
            hint = f" ('{last}' belongs elsewhere: check the indentation)"
        else:
            hint = _hint(str(last), known)
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
