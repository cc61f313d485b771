"""YAML -> Policy, with ``file:line:col`` errors (SPEC section 2, stages one and two).

Stage one reads YAML 1.2 safely: the event stream is checked first, so anchors, aliases
and tags are refused before anything is built (a billion-laughs file costs nothing), then
ruamel.yaml composes the document with positions and refuses duplicate keys. Stage two
validates the plain data against the pydantic model and the cross-field checks. No input,
however broken, escapes as anything but ``PolicyError``.
"""

from __future__ import annotations

import difflib
import hashlib
import io
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, NodeEvent

from retention.errors import PolicyError, Problem
from retention.policy import semantics
from retention.policy.locator import Locator, Path
from retention.policy.model import STRATEGY_HELP, Policy

MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class LoadedPolicy:
    """A validated policy with what is needed to report on it and prove which it was."""

    policy: Policy
    path: str
    sha256: str
    locator: Locator


def load_policy(path: str | FsPath, *, max_bytes: int = MAX_BYTES) -> LoadedPolicy:
    """Read, parse and validate a policy file; raise ``PolicyError`` listing every problem."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise PolicyError([Problem(name, None, None, "policy file not found")]) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PolicyError([Problem(name, None, None, f"cannot read: {reason}")]) from None
    return load_policy_bytes(raw, name, max_bytes=max_bytes)


def load_policy_bytes(raw: bytes, name: str, *, max_bytes: int = MAX_BYTES) -> LoadedPolicy:
    if len(raw) > max_bytes:
        raise PolicyError(
            [Problem(name, None, None, f"file is larger than {max_bytes} bytes; refusing to read")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            [Problem(name, None, None, f"not UTF-8 text (byte {exc.start})")]
        ) from None
    data, locator = _read_yaml(text, name)
    policy = validate_data(data, locator)
    return LoadedPolicy(policy, name, hashlib.sha256(raw).hexdigest(), locator)


def validate_data(data: Any, locator: Locator) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError([locator.problem((), "the file must hold a mapping with 'version' and 'rules'")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_translate(exc, locator)) from None
    problems = semantics.check(policy, locator)
    if problems:
        raise PolicyError(problems)
    return policy


# --- stage one: YAML -----------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML(typ="rt")  # round-trip nodes keep line and column of every key and value
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml


def _read_yaml(text: str, name: str) -> tuple[Any, Locator]:
    yaml = _yaml()
    try:
        for event in yaml.parse(io.StringIO(text)):
            _check_event(event, name)
        documents = list(yaml.load_all(io.StringIO(text)))
    except PolicyError:
        raise
    except MarkedYAMLError as exc:
        raise PolicyError([_yaml_problem(exc, name)]) from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise PolicyError([Problem(name, None, None, f"invalid YAML: {type(exc).__name__}")]) from None
    if len(documents) != 1:
        raise PolicyError(
            [Problem(name, 1, 1, f"expected one YAML document, found {len(documents)}")]
        )
    keys: dict[Path, tuple[int, int]] = {}
    values: dict[Path, tuple[int, int]] = {}
    data = _plain(documents[0], (), keys, values)
    return data, Locator(name, data, keys, values)


def _check_event(event: Any, name: str) -> None:
    mark = getattr(event, "start_mark", None)
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    if isinstance(event, AliasEvent):
        raise PolicyError([Problem(name, line, col, "aliases (*name) are not allowed; write the value out")])
    if isinstance(event, NodeEvent) and event.anchor is not None:
        raise PolicyError([Problem(name, line, col, "anchors (&name) are not allowed; write the value out")])
    tag = getattr(event, "tag", None)
    if tag is not None and str(tag) not in ("", "!"):
        raise PolicyError(
            [Problem(name, line, col, f"tags such as {str(tag)[:60]} are not allowed")]
        )


def _yaml_problem(exc: MarkedYAMLError, name: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    if "duplicate key" in problem or "found duplicate key" in str(exc):
        key = _duplicate_key(str(exc))
        return Problem(name, line, col, f"duplicate key {key}".rstrip())
    if "\\t" in problem or "tab" in problem:
        return Problem(name, line, col, "tab character: indent with spaces")
    return Problem(name, line, col, f"invalid YAML: {problem}")


def _duplicate_key(text: str) -> str:
    marker = 'found duplicate key "'
    start = text.find(marker)
    if start < 0:
        return ""
    rest = text[start + len(marker) :]
    return "'" + rest[: rest.find('"')][:60] + "'"


def _plain(node: Any, path: Path, keys: dict[Path, tuple[int, int]], values: dict[Path, tuple[int, int]]) -> Any:
    """ruamel's nodes -> plain dict/list/str/int/float/bool/None, recording positions."""
    if isinstance(node, CommentedMap):
        values.setdefault(path, (node.lc.line + 1, node.lc.col + 1))
        out: dict[Any, Any] = {}
        for key in node:
            plain_key = _scalar(key)
            if not isinstance(plain_key, str):
                plain_key = str(plain_key)
            child = (*path, plain_key)
            kl, kc = node.lc.key(key)
            keys[child] = (kl + 1, kc + 1)
            vl, vc = node.lc.value(key)
            values[child] = (vl + 1, vc + 1)
            out[plain_key] = _plain(node[key], child, keys, values)
        return out
    if isinstance(node, CommentedSeq):
        values.setdefault(path, (node.lc.line + 1, node.lc.col + 1))
        items = []
        for i, item in enumerate(node):
            child = (*path, i)
            il, ic = node.lc.item(i)
            values[child] = (il + 1, ic + 1)
            items.append(_plain(item, child, keys, values))
        return items
    return _scalar(node)


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime | date):
        return value
    return str(value)


# --- stage two: the model ------------------------------------------------------------

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
    from retention.policy import model

    names: set[str] = set(model.TEST_OPERATORS) | set(model.RESERVED)
    for cls in (
        model.Policy, model.Defaults, model.AuditSettings, model.Holds, model.Rule,
        model.Cascade, model.Guard, model.Related, model.HashParams, model.MaskParams,
    ):  # fmt: skip
        for fname, finfo in cls.model_fields.items():
            names.add(finfo.alias or fname)
    return sorted(names)


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _translate(exc: ValidationError, locator: Locator) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[Path] = set()
    for error in exc.errors(include_url=False):
        path = locator.clean(error["loc"])
        if path in seen:
            continue  # one line per place: a union reports each of its arms
        seen.add(path)
        if "<name>" in error["loc"] and error["type"] == "literal_error":
            shown = _describe(error.get("input"))
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
        msg = f"unknown key '{str(last)[:40]}'{_hint(str(last), _known_keys())}"
        return locator.problem(path, msg, at_key=True)
    if kind == "missing":
        return locator.problem(path[:-1], f"missing required key '{last}'")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ")
        choices = [c.strip(" '") for c in expected.split(",")]
        msg = f"{_describe(value)} is not one of {expected}"
        if isinstance(value, str):
            msg += _hint(value, choices)
        return locator.problem(path, msg)
    if kind in _TYPE_NAMES:
        msg = f"expected {_TYPE_NAMES[kind]}, got {_describe(value)}"
        if kind == "bool_type" and isinstance(value, str) and value.lower() in (
            "yes", "no", "on", "off", "y", "n"
        ):  # fmt: skip
            msg += " (YAML 1.2 reads yes/no/on/off as text: write true or false)"
        return locator.problem(path, msg)
    if kind == "string_pattern_mismatch":
        return locator.problem(path, _pattern_message(value, str(ctx.get("pattern", ""))))
    if kind in ("too_short", "too_long") and isinstance(value, list | dict | str):
        what = "empty" if kind == "too_short" else "too long"
        return locator.problem(path, f"must not be {what}" if what == "empty" else f"is {what}")
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    message = message[:1].lower() + message[1:]
    return locator.problem(path, message)


def _pattern_message(value: Any, pattern: str) -> str:
    shown = _describe(value)
    if "a-z0-9]+(-" in pattern:
        return f"{shown} is not a valid rule name: use lowercase letters, digits and '-'"
    if "\\." in pattern:
        return f"{shown} is not a valid table name: letters, digits and _, optionally schema.table"
    return f"{shown} is not a valid column name: letters, digits and _ (no SQL is taken from the file)"
