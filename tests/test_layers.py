"""What differs per database lives in ``retention/backends/`` and nowhere else.

Every module of the package outside ``retention/backends/`` is read with ``ast``; a
comparison that names a database ("sqlite", "postgresql", "mysql", "mariadb"), reads
``.dialect.name`` or ``get_backend_name()``, or tests a value called ``dialect`` or
``backend`` for equality is a place where a backend method belongs instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "retention"
DATABASES = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})
NAMES = frozenset({"dialect", "backend", "dialect_name", "backend_name"})
EQUALITY = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)

# Comparisons excused from the rule, as (module, source line). None is: every difference
# between databases is a member of the backend.
KNOWN: frozenset[tuple[str, str]] = frozenset()


def _names_a_database(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.lower() in DATABASES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_database(e) for e in node.elts)
    return False


def _reads_the_dialect(node: ast.expr) -> bool:
    if isinstance(node, ast.Attribute) and node.attr == "name":
        inner = node.value
        return isinstance(inner, ast.Attribute) and inner.attr == "dialect"
    if isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        return name == "get_backend_name"
    return False


def _is_called_dialect(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in NAMES
    return isinstance(node, ast.Attribute) and node.attr in NAMES


def dialect_comparisons(source: str) -> list[tuple[int, str]]:
    """The line number and text of each comparison of a database's name in ``source``."""
    found: list[tuple[int, str]] = []
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            hit = any(_names_a_database(s) or _reads_the_dialect(s) for s in sides)
            if not hit and any(isinstance(op, EQUALITY) for op in node.ops):
                hit = any(_is_called_dialect(s) for s in sides)
            line = node.lineno
        elif isinstance(node, ast.match_case):
            pattern = node.pattern
            hit = isinstance(pattern, ast.MatchValue) and _names_a_database(pattern.value)
            line = pattern.lineno
        else:
            continue
        if hit:
            found.append((line, lines[line - 1].strip()))
    return found


def _modules() -> list[Path]:
    backends = PACKAGE / "backends"
    return sorted(p for p in PACKAGE.rglob("*.py") if backends not in p.parents)


def test_no_module_outside_backends_compares_a_database_name() -> None:
    found = {
        (str(path.relative_to(PACKAGE)), text, line)
        for path in _modules()
        for line, text in dialect_comparisons(path.read_text(encoding="utf-8"))
    }
    unexpected = sorted(
        f"retention/{module}:{line}: {text}"
        for module, text, line in found
        if (module, text) not in KNOWN
    )
    assert not unexpected, "a backend method belongs here instead:\n" + "\n".join(unexpected)


def test_the_backends_package_is_not_scanned_and_everything_else_is() -> None:
    scanned = {str(p.relative_to(PACKAGE)) for p in _modules()}
    assert "api.py" in scanned
    assert "audit/writer.py" in scanned
    assert not any(name.startswith("backends/") for name in scanned)


@pytest.mark.parametrize(
    "source",
    [
        'if engine.dialect.name == "postgresql":\n    pass',
        'ok = conn.dialect.name != "sqlite"',
        'ok = "mysql" == kind',
        'ok = backend in ("postgresql", "mysql")',
        "ok = url.get_backend_name() == name",
        "ok = self.dialect == other",
        "ok = dialect != wanted",
        "ok = backend == kind",
        'ok = x.dialect.name in {"MariaDB"}',
        'match kind:\n    case "sqlite":\n        pass',
    ],
)
def test_each_form_of_database_comparison_is_found(source: str) -> None:
    assert dialect_comparisons(source) != []


@pytest.mark.parametrize(
    "source",
    [
        'label = f"a {engine.dialect.name} server"',
        "ok = backend is None",
        'ok = name == "retention_audit"',
        "ok = backend_for(engine).locks_rows",
        'variant = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")',
    ],
)
def test_naming_a_database_without_comparing_is_not_found(source: str) -> None:
    assert dialect_comparisons(source) == []
