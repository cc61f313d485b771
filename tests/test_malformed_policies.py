"""Every malformed policy is refused with exit 78 and one actionable ``file:line:col`` line.

The corpus lives in ``tests/policies/``: each file's first line is ``# expect: <text>``,
the part of the stderr line after the file's path, and a second line ``# offline`` marks
a case that needs no database. The rest are held against the demo schema on SQLite, and on
PostgreSQL and MariaDB when ``RETENTION_TEST_POSTGRES_URL`` / ``RETENTION_TEST_MYSQL_URL``
are set; those cases also prove that validating never changes the database.

A few cases are generated here rather than committed: a 2 MB file, a billion-laughs file,
a zero-byte file, a file nested thousands of levels deep and a 5000-digit number.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from builders import invoke
from conftest import BACKENDS, HASH_KEY, wipe
from sqlalchemy import Engine, MetaData, create_engine, func, select

from retention.demo import demo_metadata

CORPUS = Path(__file__).parent / "policies"
EXIT_CONFIG = 78


@dataclass(frozen=True)
class Case:
    """One malformed policy: its bytes, what stderr must say, and whether it needs a database."""

    name: str
    content: Callable[[], bytes]
    expect: str
    offline: bool


def _from_file(path: Path) -> Case:
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    header = lines[0].decode("ascii")
    assert header.startswith("# expect: :"), f"{path.name}: first line must be '# expect: :...'"
    offline = len(lines) > 1 and lines[1].rstrip(b"\r") == b"# offline"
    return Case(path.name, lambda: raw, header.removeprefix("# expect: "), offline)


def _too_large() -> bytes:
    line = b"# " + b"x" * 97 + b"\n"
    return b"version: 1\nrules: []\n" + line * (2 * 1024 * 1024 // len(line))


def _billion_laughs() -> bytes:
    rows = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    for i, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[i]
        rows.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return ("\n".join(rows) + "\nversion: 1\n").encode()


def _five_thousand_digits() -> bytes:
    rule = b"  - {name: r, table: feedback, clock: submitted_at, after: P3M, action: delete,"
    return b"version: 1\nrules:\n" + rule + b" batch_size: " + b"9" * 5000 + b"}\n"


def _deeply_nested() -> bytes:
    depth = 20_000
    return b"version: 1\nrules: " + b"[" * depth + b"]" * depth + b"\n"


GENERATED = [
    Case("generated_2mb.yaml", _too_large, ": file is larger than 1048576 bytes", True),
    # Rejected at the first anchor, from the event stream: nothing is ever expanded.
    Case("generated_billion_laughs.yaml", _billion_laughs, ":1:4: anchors (&name)", True),
    Case("generated_zero_bytes.yaml", lambda: b"", ":1:1: the file is empty", True),
    Case("generated_deeply_nested.yaml", _deeply_nested, ":2:71: nested more than 64", True),
    # Longer than Python reads as an int: refused from the event stream, with its position.
    Case(
        "generated_5000_digit_number.yaml",
        _five_thousand_digits,
        ":3:93: a number 5000 characters long is too large for any setting",
        True,
    ),
]


def _cases() -> list[Case]:
    return [_from_file(p) for p in sorted(CORPUS.glob("*.yaml"))] + GENERATED


def _params() -> list[object]:
    params: list[object] = []
    for case in _cases():
        if case.offline:
            params.append(pytest.param(case, None, id=case.name))
        else:
            params.extend(
                pytest.param(case, backend, id=f"{case.name}@{backend}") for backend in BACKENDS
            )
    return params


# --- the demo schema, once per backend --------------------------------------------------

T0 = datetime(2024, 1, 15, 9, 30)

SEED_ROWS: dict[str, list[dict[str, object]]] = {
    "accounts": [
        {
            "id": "u1",
            "username": "alice",
            "phone": "13800138000",
            "email": "a@example.com",
            "qq_number": "10001",
            "wechat_id": "alice_wx",
            "created_at": T0,
        },
    ],
    "tickets": [{"id": 1, "account_id": "u1", "status": "open", "opened_at": T0}],
    "feedback": [
        {
            "id": 1,
            "account_id": "u1",
            "ticket_id": 1,
            "channel": "app",
            "body": "The screen flickers.",
            "submitted_at": T0,
        },
    ],
    "feedback_contacts": [{"id": 1, "feedback_id": 1, "kind": "email", "value": "a@example.com"}],
    "access_log": [
        {
            "id": 1,
            "account_id": "u1",
            "ip_address": "203.0.113.77",
            "user_agent": "Mozilla/5.0",
            "path": "/login",
            "logged_at": T0,
        },
    ],
    "marketing_consents": [
        {"id": 1, "account_id": "u1", "channel": "sms", "contact": "13800138000", "given_at": T0},
    ],
    "legal_holds": [{"id": 1, "subject_id": "u1", "reason": "dispute", "placed_at": T0}],
}


def _create_demo_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        metadata = demo_metadata()
        with engine.begin() as conn:
            metadata.create_all(conn)
            for table in metadata.sorted_tables:
                rows = SEED_ROWS.get(table.name)
                if rows:
                    conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def fingerprint(engine: Engine) -> tuple[list[tuple[str, int]], str]:
    """Sorted table names with row counts, and a digest of every row: equal means untouched."""
    with engine.connect() as conn:
        metadata = MetaData()
        metadata.reflect(conn)
        digest = hashlib.sha256()
        counts = []
        for name in sorted(metadata.tables):
            table = metadata.tables[name]
            count = conn.execute(select(func.count()).select_from(table)).scalar_one()
            counts.append((name, int(count)))
            order = list(table.primary_key.columns) or list(table.columns)
            for row in conn.execute(select(table).order_by(*order)):
                digest.update(repr((name, tuple(row))).encode())
        return counts, digest.hexdigest()


@dataclass(frozen=True)
class DemoDatabase:
    url: str
    engine: Engine  # the test's own connection, for fingerprints


@pytest.fixture(scope="module")
def demo_database(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[str], DemoDatabase]]:
    """The demo schema with a row per table, built once per backend and module."""
    built: dict[str, DemoDatabase] = {}

    def database_for(backend: str) -> DemoDatabase:
        if backend not in built:
            if backend == "sqlite":
                url = f"sqlite:///{tmp_path_factory.mktemp('corpus') / 'demo.db'}"
            else:
                variable = BACKENDS[backend]
                assert variable is not None
                url = os.environ.get(variable, "")
                if not url:
                    pytest.skip(f"{variable} is not set")
                wipe(url)  # an unreachable server that is configured FAILS here
            _create_demo_schema(url)
            built[backend] = DemoDatabase(url, create_engine(url))
        return built[backend]

    yield database_for
    for backend, database in built.items():
        database.engine.dispose()
        if backend != "sqlite":
            wipe(database.url)


# --- the test --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(("case", "backend"), _params())
def test_malformed_policy_is_refused_with_one_actionable_line_per_problem(
    case: Case,
    backend: str | None,
    command: str,
    tmp_path: Path,
    demo_database: Callable[[str], str],
) -> None:
    """Exit 78, the expected ``file:line:col`` line, no traceback, nothing written anywhere:
    by ``validate`` and by ``run``, which validates the same way before its first write."""
    if case.name.startswith("generated_"):
        policy = tmp_path / case.name
        policy.write_bytes(case.content())
    else:
        policy = CORPUS / case.name
    if backend is None:
        never = tmp_path / "never-created.db"
        url = f"sqlite:///{never}"
        offline = ["--offline"] if command == "validate" else []
        args = [command, *offline, "--policy", str(policy), "--database", url]
    else:
        database = demo_database(backend)
        args = [command, "--policy", str(policy), "--database", database.url]
        before = fingerprint(database.engine)

    result = invoke(args, {"RETENTION_HASH_KEY": HASH_KEY}, catch_exceptions=True)

    stderr = result.stderr
    assert result.exit_code == EXIT_CONFIG, (
        f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    )
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert f"{policy}{case.expect}" in stderr, stderr
    # Besides the problems, one machine-readable log line says the command failed (SPEC
    # section 4); every other line is a problem of this file.
    lines = stderr.splitlines()
    failed = [line for line in lines if line.startswith("{")]
    assert len(failed) == 1, stderr
    logged = json.loads(failed[0])
    assert (logged["event"], logged["level"], logged["exit_code"]) == (
        "command failed",
        "error",
        EXIT_CONFIG,
    )
    problems = [line for line in lines if not line.startswith("{")]
    assert problems
    for line in problems:
        assert line.startswith(f"{policy}:"), line
    if backend is None:
        assert not never.exists(), "--offline must not open the database"
    else:
        assert fingerprint(database.engine) == before, "validate changed the database"


def test_the_corpus_covers_at_least_45_files_each_with_an_expectation() -> None:
    files = sorted(CORPUS.glob("*.yaml"))
    assert len(files) >= 45
    for path in files:
        _from_file(path)  # asserts the header
