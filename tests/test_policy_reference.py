"""docs/policy-reference.md documents every key of the policy model, and every field
carries a description, so the JSON Schema gives editors hover help (issue 11 item 10)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from retention.policy import conditions, fields, model, strategies
from retention.policy.model import Policy, json_schema

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "policy-reference.md"


def _named(name: str) -> object:
    """The class of that name in the policy model's modules, if any."""
    for module in (model, conditions, strategies, fields):
        if hasattr(module, name):
            return getattr(module, name)
    return None


def _models(cls: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    """``cls`` and every model its fields reach, through unions, lists and mappings."""
    if cls in seen:
        return
    seen.add(cls)
    yield cls
    for info in cls.model_fields.values():
        for name in re.findall(r"\w+", str(info.annotation)):
            found = _named(name)
            if isinstance(found, type) and issubclass(found, BaseModel):
                yield from _models(found, seen)


# Conditions are a recursive alias the annotation walk does not read: named here.
MODELS = list(_models(Policy, set()))
MODELS += [
    m for m in (conditions.ConditionMap, conditions.Related, conditions.Tests) if m not in MODELS
]


def _keys() -> set[tuple[str, str]]:
    return {
        (cls.__name__, info.alias or name)
        for cls in MODELS
        for name, info in cls.model_fields.items()
    }


def test_the_walk_reaches_the_models_of_the_file() -> None:
    names = {cls.__name__ for cls in MODELS}
    assert {"Rule", "Cascade", "Defaults", "Guard", "HashParams", "Tests", "Related"} <= names


def test_every_key_of_the_model_is_in_the_reference() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    missing = sorted(f"{cls}.{key}" for cls, key in _keys() if f"`{key}`" not in text)
    assert not missing, f"not documented in {REFERENCE.name}: {missing}"


def test_every_test_operator_and_strategy_is_in_the_reference() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    names = [*fields.TEST_OPERATORS, "redact", "truncate_ip", "truncate_date", "mask", "hash"]
    assert [n for n in names if f"`{n}" not in text and f"{{{n}:" not in text] == []


def test_every_field_carries_a_description() -> None:
    bare = sorted(
        f"{cls.__name__}.{name}"
        for cls in MODELS
        for name, info in cls.model_fields.items()
        if not info.description
    )
    assert not bare, f"fields without a description: {bare}"


def test_the_schema_file_carries_the_descriptions() -> None:
    committed = json.loads((ROOT / "policy.schema.json").read_text(encoding="utf-8"))
    assert committed == json_schema()
    rule = committed["$defs"]["Rule"]["properties"]
    assert "description" in rule["enabled"] and "description" in rule["sleep"]


def test_the_readme_and_guides_link_the_reference() -> None:
    for doc in ("README.md", "docs/operations.md"):
        assert "policy-reference.md" in (ROOT / doc).read_text(encoding="utf-8"), doc
