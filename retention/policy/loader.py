"""YAML -> Policy, with ``file:line:col`` errors (SPEC section 2, stages one and two).

Stage one reads YAML 1.2 safely: the event stream is checked first, so anchors, aliases
and tags are refused before anything is built (a billion-laughs file costs nothing), then
ruamel.yaml composes the document with positions and refuses duplicate keys. Stage two
validates the plain data against the pydantic model and the cross-field checks. No input,
however broken, escapes as anything but ``PolicyError``.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.util import create_timestamp, timestamp_regexp

from retention.errors import PolicyError, Problem
from retention.policy import semantics
from retention.policy.locator import Locator, Path
from retention.policy.messages import describe, translate
from retention.policy.model import Policy

MAX_BYTES = 1024 * 1024
# Far deeper than any real policy; keeps every recursive walk (ruamel's composer, the
# model, the checks) well inside Python's recursion limit.
MAX_DEPTH = 64
# Python refuses to read an int past 4300 digits, with no position; shorter numbers reach
# the model, which names the rule and key they are too large for.
MAX_NUMBER_CHARS = 4000
_MUST_HOLD = "a mapping with 'version' and 'rules'"


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
        # Point at the bad byte: the text before it is valid, so lines and columns count.
        before = raw[: exc.start].decode("utf-8")
        line, col = _line_col(before, len(before))
        byte = raw[exc.start]
        message = f"not UTF-8 text (byte 0x{byte:02x}): save the file as UTF-8"
        raise _at(name, line, col, message) from None
    data, locator = _read_yaml(text, name)
    policy = validate_data(data, locator)
    return LoadedPolicy(policy, name, hashlib.sha256(raw).hexdigest(), locator)


def validate_data(data: Any, locator: Locator) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError([locator.problem((), f"the file must hold {_MUST_HOLD}")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(translate(exc, locator)) from None
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
    starts: list[tuple[int, int]] = []
    try:
        depth = 0
        for event in yaml.parse(io.StringIO(text)):
            _check_event(event, name, yaml)
            if isinstance(event, DocumentStartEvent):
                starts.append(_mark(event))
                if event.version not in (None, (1, 2)):
                    # %YAML 1.1 would make yes/no/on/off booleans again (SPEC section 2).
                    shown = ".".join(str(v) for v in event.version)
                    directive = re.search(r"^%YAML", text, re.MULTILINE)
                    line, col = _line_col(text, directive.start() if directive else 0)
                    message = f"%YAML {shown} directive: policy files are YAML 1.2; remove it"
                    raise _at(name, line, col, message)
            elif isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line, col = _mark(event)
                    raise _at(name, line, col, f"nested more than {MAX_DEPTH} levels deep")
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
        documents = list(yaml.load_all(io.StringIO(text)))
    except PolicyError:
        raise
    except MarkedYAMLError as exc:
        raise PolicyError([_yaml_problem(exc, name)]) from None
    except ReaderError as exc:
        line, col = _line_col(text, exc.position)
        what = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise _at(
            name, line, col, f"invalid YAML: control character {what} is not allowed"
        ) from None
    except (YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise PolicyError(
            [Problem(name, None, None, f"invalid YAML: {type(exc).__name__}")]
        ) from None
    if not documents:
        raise _at(name, 1, 1, f"the file is empty (or only comments): it must hold {_MUST_HOLD}")
    if len(documents) > 1:
        line, col = starts[1] if len(starts) > 1 else (1, 1)
        message = f"a second YAML document: the file must hold one, found {len(documents)}"
        raise _at(name, line, col, message)
    keys: dict[Path, tuple[int, int]] = {}
    values: dict[Path, tuple[int, int]] = {}
    data = _plain(documents[0], (), keys, values, name)
    return data, Locator(name, data, keys, values)


def _at(name: str, line: int | None, col: int | None, message: str) -> PolicyError:
    return PolicyError([Problem(name, line, col, message)])


def _mark(event: Any) -> tuple[int, int]:
    mark = event.start_mark
    return mark.line + 1, mark.column + 1


def _line_col(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``."""
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _check_event(event: Any, name: str, yaml: YAML) -> None:
    mark = getattr(event, "start_mark", None)
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    if isinstance(event, ScalarEvent) and event.style is None and event.implicit[0]:
        _check_timestamp(event, name, yaml)
        _check_number(event, name, yaml)
    if isinstance(event, AliasEvent):
        raise PolicyError(
            [Problem(name, line, col, "aliases (*name) are not allowed; write the value out")]
        )
    if isinstance(event, NodeEvent) and event.anchor is not None:
        raise PolicyError(
            [Problem(name, line, col, "anchors (&name) are not allowed; write the value out")]
        )
    tag = getattr(event, "tag", None)
    if tag is not None and str(tag) not in ("", "!"):
        raise PolicyError(
            [Problem(name, line, col, f"tags such as {str(tag)[:60]} are not allowed")]
        )


def _check_timestamp(event: Any, name: str, yaml: YAML) -> None:
    """A plain scalar that YAML reads as a date must be a real one (not 2024-02-30).

    Checked here because the constructor's ValueError carries no position.
    """
    tag = yaml.resolver.resolve(ScalarNode, event.value, event.implicit)
    if str(tag) != "tag:yaml.org,2002:timestamp":
        return
    match = timestamp_regexp.match(event.value)
    try:
        if match is None:
            raise ValueError(event.value)
        create_timestamp(**match.groupdict())
    except ValueError:
        line, col = _mark(event)
        message = f"{event.value[:40]!r} is not a valid date or time (quote it if it is text)"
        raise _at(name, line, col, message) from None


def _check_number(event: Any, name: str, yaml: YAML) -> None:
    """A plain scalar that YAML reads as a number must be of a readable length."""
    if len(event.value) <= MAX_NUMBER_CHARS:
        return
    tag = str(yaml.resolver.resolve(ScalarNode, event.value, event.implicit))
    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float"):
        line, col = _mark(event)
        message = f"a number {len(event.value)} characters long is too large for any setting"
        raise _at(name, line, col, message)


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
    if problem.startswith("mapping values are not allowed"):
        problem += (
            " (is this line indented further than the key above it,"
            " or does a value hold ': ' and need quotes?)"
        )
    # ruamel's own words name a parser state; say instead where the thing began.
    context = exc.context or ""
    opened = exc.context_mark
    at = f"{opened.line + 1}:{opened.column + 1}" if opened is not None else "?"
    if context in ("while parsing a flow mapping", "while parsing a flow sequence"):
        bracket, closer = ("{", "}") if "mapping" in context else ("[", "]")
        problem += f" (in the '{bracket}' opened at {at}: is a ',' or '{closer}' missing?)"
    elif "<stream end>" in problem:
        problem += " (the file ends here: is a closing bracket or quote missing?)"
    elif "quoted scalar" in context and "end of stream" in problem:
        problem = f"the quoted text opened at {at} is never closed"
    elif problem.startswith("expected <block end>, but found"):
        found = problem.rsplit("found", 1)[1].strip()
        thing = {"'?'": "a key", "'-'": "a list item '-'"}.get(found, found)
        problem = (
            f"{thing} is indented to fit no block above it"
            f" (the enclosing block starts at {at}): check its indentation"
        )
    return Problem(name, line, col, f"invalid YAML: {problem}")


def _duplicate_key(text: str) -> str:
    marker = 'found duplicate key "'
    start = text.find(marker)
    if start < 0:
        return ""
    rest = text[start + len(marker) :]
    return "'" + rest[: rest.find('"')][:60] + "'"


def _plain(
    node: Any,
    path: Path,
    keys: dict[Path, tuple[int, int]],
    values: dict[Path, tuple[int, int]],
    name: str,
) -> Any:
    """ruamel's nodes -> plain dict/list/str/int/float/bool/None, recording positions."""
    if isinstance(node, CommentedMap):
        values.setdefault(path, (node.lc.line + 1, node.lc.col + 1))
        out: dict[Any, Any] = {}
        for key in node:
            plain_key = _scalar(key)
            kl, kc = node.lc.key(key)
            if not isinstance(plain_key, str):
                # str() would turn null into 'None' and true into 'True': refuse instead.
                raise _at(name, kl + 1, kc + 1, f"key {describe(plain_key)} is not text: quote it")
            child = (*path, plain_key)
            keys[child] = (kl + 1, kc + 1)
            vl, vc = node.lc.value(key)
            values[child] = (vl + 1, vc + 1)
            out[plain_key] = _plain(node[key], child, keys, values, name)
        return out
    if isinstance(node, CommentedSeq):
        values.setdefault(path, (node.lc.line + 1, node.lc.col + 1))
        items = []
        for i, item in enumerate(node):
            child = (*path, i)
            il, ic = node.lc.item(i)
            values[child] = (il + 1, ic + 1)
            items.append(_plain(item, child, keys, values, name))
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
