"""What the differential tester's soaks found (tests/test_differential.py, issue 9), each
shrunk to an ordinary test on SQLite, PostgreSQL and MariaDB.

Each test names the example's shape and who was wrong: where the product was, it holds
the fix; where the oracle misread SPEC section 2, it pins the product's reading, which
the oracle now shares.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from builders import TS, create, guardless_policy, holds_registry, invoke
from builders import write_policy as write_file
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select

from retention import api
from retention.settings import Settings

NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)
OLD = datetime(2024, 1, 1, 8, 0, 0)  # naive UTC, past every cutoff below
HOLDS = """\
holds:
  table: legal_holds
  subject_column: subject_id
  active: {released_at: {is_null: true}}
"""


def write_policy(settings: Settings, body: str, *, with_holds: bool = False) -> None:
    write_file(settings.policy_file, guardless_policy(body, head=HOLDS if with_holds else ""))


def left(engine: Engine, table: Table, column: str) -> list[Any]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(table.c[column])).scalars(), key=lambda v: (v is None, v))


# --- soak 1: a row whose key is NULL and that `unless` keeps --------------------------


def test_a_row_with_a_null_key_that_unless_or_a_hold_keeps_is_counted_kept_not_unaddressable(
    settings: Settings, db: Engine
) -> None:
    """Found as product (due 0, kept_unless 1) against oracle (0, 0): a nullable unique key,
    one NULL-key row past the cutoff, matched by ``unless: {id: {ne: ""}}``. The oracle
    dropped NULL-key rows before ``unless``; SPEC counts the rows a rule keeps, and a row
    that `unless` or a hold keeps would stay whatever its key. `unaddressable` counts only
    the rows the rule would remove if their key named them."""
    meta = MetaData()
    sessions = Table(
        "sessions",
        meta,
        Column("code", String(20), unique=True, nullable=True),
        Column("seen_at", TS, nullable=False),
        Column("status", String(20), nullable=True),
        Column("user_id", Integer, nullable=True),
    )
    registry = holds_registry(meta)
    create(
        db,
        meta,
        {
            registry: [{"id": 1, "subject_id": 7, "released_at": None}],
            sessions: [
                {"code": None, "seen_at": OLD, "status": "open", "user_id": None},
                {"code": None, "seen_at": OLD, "status": None, "user_id": 7},
                {"code": None, "seen_at": OLD, "status": None, "user_id": None},
                {"code": "a", "seen_at": OLD, "status": "open", "user_id": None},
                {"code": "b", "seen_at": OLD, "status": "closed", "user_id": None},
            ],
        },
    )
    write_policy(
        settings,
        """\
        rules:
          - name: sessions
            table: sessions
            key: [code]
            clock: seen_at
            after: P30D
            unless: {status: open}
            hold_subject: user_id
            action: delete
        """,
        with_holds=True,
    )

    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_unless, counts.kept_holds, counts.unaddressable) == (
        1,
        2,
        1,
        1,
    )
    assert api.run(settings, now=NOW).rules[0].rows == 1
    assert left(db, sessions, "code") == ["a", None, None, None]


# --- soak 2: truncate_date without a mark -----------------------------------------------


def test_truncate_date_is_recognised_without_a_mark(settings: Settings, db: Engine) -> None:
    """Found as a validation refusal ("the result of truncate_date cannot be recognised")
    of an anonymise rule setting ``{truncate_date: month}`` without ``mark``. SPEC
    "Idempotency" recognises truncate_date's result (a value equal to its own
    truncation), so the product was wrong: the rule validates, rows already on the first
    of their month at midnight (and NULL) are not counted, the others are truncated, and
    a second run changes nothing."""
    meta = MetaData()
    visits = Table(
        "visits",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seen_at", TS, nullable=False),
        Column("joined_at", TS, nullable=True),
    )
    create(
        db,
        meta,
        {
            visits: [
                {"id": 1, "seen_at": OLD, "joined_at": datetime(2023, 3, 17, 13, 5, 7, 250_000)},
                {"id": 2, "seen_at": OLD, "joined_at": datetime(2023, 3, 1)},
                {"id": 3, "seen_at": OLD, "joined_at": None},
                {"id": 4, "seen_at": OLD, "joined_at": datetime(2023, 12, 31, 23, 59, 59)},
            ]
        },
    )
    write_policy(
        settings,
        """\
        rules:
          - name: visits
            table: visits
            clock: seen_at
            after: P30D
            action: anonymise
            set: {joined_at: {truncate_date: month}}
        """,
    )

    assert api.validate(settings).checked_against is not None
    assert api.plan(settings, now=NOW).rules[0].counts.due == 2
    first = api.run(settings, now=NOW).rules[0]
    assert (first.status, first.rows) == ("done", 2), first.error
    with db.connect() as conn:
        found = dict(conn.execute(select(visits.c.id, visits.c.joined_at)).all())
    assert found == {
        1: datetime(2023, 3, 1),
        2: datetime(2023, 3, 1),
        3: None,
        4: datetime(2023, 12, 1),
    }
    second = api.run(settings, now=NOW).rules[0]
    assert (second.status, second.rows) == ("done", 0)


# --- issue 9, item 8: a rule-order cycle is refused without a database too -------------

CYCLE = """\
rules:
  - name: tickets
    table: tickets
    clock: closed_at
    after: P30D
    unless: {related: {table: feedback, on: {ticket_id: id}}}
    action: delete
  - name: feedback
    table: feedback
    clock: submitted_at
    after: P30D
    unless: {related: {table: tickets, on: {id: ticket_id}}}
    action: delete
"""


@pytest.mark.parametrize("output", ["text", "json"])
def test_validate_offline_refuses_rules_that_read_what_each_other_deletes(
    tmp_path: Path, output: str
) -> None:
    """SPEC "Rule order": a cycle is a validation error naming the rules, and it is one
    without a database: ``validate --offline`` exits 78 with one ``file:line:col`` line
    at the first rule's read, naming both rules and what each reads."""
    path = write_file(tmp_path / "policies.yaml", guardless_policy(CYCLE))

    result = invoke(["validate", "--offline", "--policy", str(path), "--output", output])

    assert result.exit_code == 78, result.output
    problems = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    assert len(problems) == 1, result.stderr
    # line 8 is the tickets rule's `unless`; its related table starts at column 31
    where = f"{path}:8:31: rule 'tickets': unless.related.table: "
    assert problems[0].startswith(where + "rules 'tickets', 'feedback' cannot be ordered")
    assert "'tickets' reads feedback, which 'feedback' deletes from" in problems[0]
    assert "'feedback' reads tickets, which 'tickets' deletes from" in problems[0]
    if output == "json":
        document = json.loads(result.stdout)
        assert document["exit_code"] == 78
        assert "cannot be ordered" in document["error"]


def test_validate_offline_accepts_rules_whose_reads_only_go_one_way(tmp_path: Path) -> None:
    """Only a cycle is refused: ``tickets`` reading what ``feedback`` deletes merely runs
    after it, and ``validate --offline`` passes."""
    one_way = CYCLE.replace("    unless: {related: {table: tickets, on: {id: ticket_id}}}\n", "")
    path = write_file(tmp_path / "policies.yaml", guardless_policy(one_way))

    result = invoke(["validate", "--offline", "--policy", str(path)])

    assert result.exit_code == 0, result.output
