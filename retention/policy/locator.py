"""Where things are in a policy file: a data path -> file:line:col, rule and field.

Every check (the YAML stage, the model, the cross-field checks, the schema check) reports
problems through a ``Locator``, so every message has the same one-line form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from retention.errors import Problem

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Locator:
    """Positions of keys and values, recorded while the YAML was read (1-based)."""

    file: str
    data: Any
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def clean(self, loc: Sequence[Any]) -> Path:
        """Follow ``loc`` through the data, dropping pydantic's union tags."""
        path: list[str | int] = []
        node = self.data
        for part in loc:
            if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            ):
                path.append(part)
                node = node[part]
            elif isinstance(part, str) and part.startswith("<"):
                continue  # a discriminator tag, not a place in the file
            elif isinstance(node, dict) and isinstance(part, str):
                path.append(part)  # a missing or unknown key: still name it
                node = None
            else:
                continue
        return tuple(path)

    def position(self, path: Path, *, at_key: bool = False) -> tuple[int | None, int | None]:
        if at_key and path in self.keys:
            return self.keys[path]
        probe = path
        while True:
            if probe in self.values:
                return self.values[probe]
            if probe in self.keys:
                return self.keys[probe]
            if not probe:
                return (None, None)
            probe = probe[:-1]

    def rule_name(self, path: Path) -> str | None:
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            rules = self.data.get("rules") if isinstance(self.data, dict) else None
            if isinstance(rules, list) and path[1] < len(rules):
                rule = rules[path[1]]
                if isinstance(rule, dict) and isinstance(rule.get("name"), str):
                    return str(rule["name"])[:63]
            return f"#{path[1] + 1}"
        return None

    def problem(self, path: Path, message: str, *, at_key: bool = False) -> Problem:
        line, column = self.position(path, at_key=at_key)
        rule = self.rule_name(path)
        rest = path[2:] if rule is not None else path
        return Problem(
            file=self.file,
            line=line,
            column=column,
            message=message,
            rule=rule,
            field=dotted(rest) or None,
        )


def dotted(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out
