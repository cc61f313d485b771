"""Golden SQL: each case's policy compiles to exactly the statements in its golden files.

``tests/golden/<case>/policy.yaml`` is held against the tables of ``tests/golden/schema.py``
(or the case's own ``schema.py``) on a real database of each kind, and the statements
``retention plan --show-sql`` prints for it are compared with
``tests/golden/<case>/<database>.sql``: every step in order, its label as a comment above
it. Between them the cases cover every statement kind: counts, first / next / window batch
selections, delete, anonymise with each strategy, cascades of each action, nested cascades,
holds and related conditions.

A change to the SQL shows as a diff of these files. To accept it, regenerate them and
review the diff::

    pytest tests/test_golden_sql.py --update-golden

(with ``RETENTION_TEST_POSTGRES_URL`` and ``RETENTION_TEST_MYSQL_URL`` set, so all three
databases' files are rewritten).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from builders import write_policy
from sqlalchemy import Engine, MetaData

from retention import api
from retention.render import plan_data
from retention.settings import Settings

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "policy.yaml").is_file())
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def schema_builder(case: Path) -> Callable[[MetaData], None]:
    """The case's own ``schema.py`` when it has one, the shared one otherwise."""
    source = case / "schema.py" if (case / "schema.py").is_file() else GOLDEN / "schema.py"
    spec = importlib.util.spec_from_file_location(f"golden_schema_{case.name}", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast(Callable[[MetaData], None], module.build)


def golden_text(data: dict[str, Any]) -> str:
    """The plan's statements as an SQL file: a comment naming the rule, then each step."""
    lines = []
    for rule in data["rules"]:
        lines.append(f"-- rule {rule['rule']}")
        for step in rule["sql"]:
            lines.append(f"-- {step['step']}")
            lines.append(f"{step['sql']};")
        lines.append("")
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES)
def test_a_policy_compiles_to_its_golden_sql(
    case: str, settings: Settings, engine: Engine, request: pytest.FixtureRequest
) -> None:
    directory = GOLDEN / case
    meta = MetaData()
    schema_builder(directory)(meta)
    meta.create_all(engine)
    policy = (directory / "policy.yaml").read_text(encoding="utf-8")
    write_policy(settings.policy_file, policy)

    printed = golden_text(plan_data(api.plan(settings, now=NOW), show_sql=True))

    expected = directory / f"{engine.dialect.name}.sql"
    if request.config.getoption("--update-golden"):
        expected.write_text(printed, encoding="utf-8")
    assert expected.is_file(), f"no {expected.name} for {case}: run with --update-golden"
    assert printed == expected.read_text(encoding="utf-8")
