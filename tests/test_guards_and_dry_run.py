"""Guards, dry runs that write nothing, and the exit codes of SPEC section 4."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import builders
import pytest
from builders import Invocation, feedback_schema, write_policy
from conftest import HASH_KEY
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    inspect,
    select,
    text,
)

from retention import api
from retention.settings import Settings

# The CLI reads the real clock, so due rows are long past and fresh rows far ahead.
OLD = datetime(2000, 1, 1, 12, 0)
FRESH = datetime(2100, 1, 1, 12, 0)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RULE = "feedback-after-3-months"


def make_feedback(engine: Engine, *, due: int = 6, fresh: int = 4) -> Table:
    """``feedback`` with ``due`` old and ``fresh`` new rows, and one contact per row."""
    meta = feedback_schema(feedback=["channel", "body200"], contacts=["phone"])
    feedback, contacts = meta.tables["feedback"], meta.tables["feedback_contacts"]
    with engine.begin() as conn:
        meta.create_all(conn)
    add_feedback(engine, feedback, range(1, due + 1), OLD)
    add_feedback(engine, feedback, range(due + 1, due + fresh + 1), FRESH)
    with engine.begin() as conn:
        conn.execute(
            contacts.insert(),
            [
                {"id": 100 + i, "feedback_id": i, "phone": f"1380013800{i}"}
                for i in range(1, due + fresh + 1)
            ],
        )
    return feedback


def add_feedback(engine: Engine, feedback: Table, ids: Any, when: datetime) -> None:
    rows = [
        {"id": i, "submitted_at": when, "channel": "app", "body": f"my kettle {i}"} for i in ids
    ]
    with engine.begin() as conn:
        conn.execute(feedback.insert(), rows)


def guard_policy(*, guard: str, extra: str = "") -> str:
    return f"""\
version: 1
rules:
  - name: {RULE}
    table: feedback
    clock: submitted_at
    after: P3M
    action: delete
    guard: {guard}
    cascade:
      - table: feedback_contacts
        on: {{feedback_id: id}}
{extra}"""


def checksum(url: str) -> dict[str, str]:
    """A digest of every table's full contents, in a fixed row order, by table name."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for name in sorted(inspect(conn).get_table_names()):
                meta = MetaData()
                table = Table(name, meta, autoload_with=conn)
                digest = hashlib.sha256()
                for row in conn.execute(select(table).order_by(*table.columns)):
                    digest.update(repr(tuple(row)).encode())
                out[name] = digest.hexdigest()
            return out
    finally:
        engine.dispose()


def count(engine: Engine, table_name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(text(table_name))).scalar_one())


def audit_records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT seq, event, rule, row_count, details FROM retention_audit ORDER BY seq")
        )
        return [
            {**row._mapping, "details": json.loads(row.details) if row.details else None}
            for row in rows
        ]


def invoke(settings: Settings, *args: str, hash_key: str | None = HASH_KEY) -> Invocation:
    """The CLI against the test database and policy, with the hash key in the environment."""
    env = {"RETENTION_HASH_KEY": hash_key} if hash_key is not None else {}
    url = settings.database_url.get_secret_value()
    return builders.invoke([*args, "--database", url, "--policy", str(settings.policy_file)], env)


# --- guards ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("guard", "verdict", "counted"),
    [
        # a run counts due rows only up to one past max_rows, and says so
        ("{max_rows: 5, max_fraction: 1}", "max_rows", {"due_at_least": 6}),
        ("{max_fraction: 0.5}", "max_fraction", {"due": 6, "total": 10}),
    ],
)
def test_a_tripped_guard_writes_nothing_and_records_why(
    settings: Settings, engine: Engine, guard: str, verdict: str, counted: dict[str, int]
) -> None:
    """6 of 10 rows due trips max_rows 5, and trips max_fraction 0.5."""
    make_feedback(engine)
    write_policy(settings.policy_file, guard_policy(guard=guard))
    url = settings.database_url.get_secret_value()
    before = checksum(url)

    result = api.run(settings, now=NOW)

    (rule,) = result.rules
    assert (rule.status, rule.rows, rule.guard_overridden) == ("guard_tripped", 0, False)
    assert rule.guard.startswith(verdict)
    after = checksum(url)
    for table in ("feedback", "feedback_contacts"):
        assert after[table] == before[table]
    tripped = [r for r in audit_records(engine) if r["event"] == "guard_tripped"]
    assert len(tripped) == 1
    assert (tripped[0]["rule"], tripped[0]["row_count"]) == (RULE, 0)
    assert {k: v for k, v in tripped[0]["details"].items() if k != "verdict"} == counted
    assert not [r for r in audit_records(engine) if r["event"] == "batch"]


def test_a_tripped_guard_exits_3(settings: Settings, engine: Engine) -> None:
    make_feedback(engine)
    write_policy(settings.policy_file, guard_policy(guard="{max_rows: 5}"))

    result = invoke(settings, "run")

    assert result.exit_code == 3, result.output
    assert count(engine, "feedback") == 10


def test_override_guard_lifts_the_guard_for_one_run_and_the_audit_log_says_so(
    settings: Settings, engine: Engine
) -> None:
    feedback = make_feedback(engine, due=3, fresh=7)
    write_policy(settings.policy_file, guard_policy(guard="{max_rows: 2}"))

    overridden = invoke(settings, "run", "--override-guard", RULE)

    assert overridden.exit_code == 0, overridden.output
    assert count(engine, "feedback") == 7
    assert count(engine, "feedback_contacts") == 7
    records = audit_records(engine)
    started = [r for r in records if r["event"] == "run_started"]
    finished = [r for r in records if r["event"] == "rule_finished"]
    assert started[0]["details"]["overridden_guards"] == [RULE]
    assert finished[0]["details"]["guard_overridden"].startswith("max_rows")
    assert finished[0]["row_count"] == 3

    add_feedback(engine, feedback, range(11, 14), OLD)
    again = invoke(settings, "run")
    assert again.exit_code == 3, again.output
    assert count(engine, "feedback") == 10


def test_plan_shows_a_guard_that_would_trip_and_exits_0(settings: Settings, engine: Engine) -> None:
    make_feedback(engine)
    write_policy(settings.policy_file, guard_policy(guard="{max_rows: 5}"))

    result = invoke(settings, "plan", "--output", "json")

    assert result.exit_code == 0, result.output
    (rule,) = json.loads(result.stdout)["rules"]
    assert rule["guard_would_trip"] is True
    assert rule["guard"].startswith("max_rows")
    assert api.plan(settings, now=NOW).rules[0].guard.startswith("max_rows")


# --- plan and dry run write nothing ----------------------------------------------------


ANONYMISE_RULE = """\
  - name: contacts-masked
    table: feedback_contacts
    clock: id
    clock_unit: seconds
    after: 0 days
    action: anonymise
    guard: {max_fraction: 1}
    set: {phone: {value: '0'}}
"""


@pytest.mark.parametrize(
    "command",
    [
        ["plan"],
        ["plan", "--output", "json", "--show-sql"],
        ["plan", "--show-sql"],
        ["run", "--dry-run"],
        ["run", "--dry-run", "--output", "json"],
    ],
    ids=" ".join,
)
def test_plan_and_dry_run_leave_every_table_byte_identical(
    settings: Settings, engine: Engine, command: list[str]
) -> None:
    """No audit table is created either."""
    make_feedback(engine)
    write_policy(
        settings.policy_file, guard_policy(guard="{max_fraction: 1}", extra=ANONYMISE_RULE)
    )
    url = settings.database_url.get_secret_value()
    before = checksum(url)

    result = invoke(settings, *command)

    assert result.exit_code == 0, result.output
    assert checksum(url) == before
    assert sorted(before) == ["feedback", "feedback_contacts"]


def test_plan_and_dry_run_leave_an_existing_audit_log_byte_identical(
    settings: Settings, engine: Engine
) -> None:
    feedback = make_feedback(engine)
    write_policy(
        settings.policy_file, guard_policy(guard="{max_fraction: 1}", extra=ANONYMISE_RULE)
    )
    assert invoke(settings, "run").exit_code == 0
    add_feedback(engine, feedback, range(20, 23), OLD)
    url = settings.database_url.get_secret_value()
    before = checksum(url)

    for command in (["plan", "--show-sql"], ["run", "--dry-run"]):
        result = invoke(settings, *command)
        assert result.exit_code == 0, result.output

    assert checksum(url) == before
    assert "retention_audit" in before


def test_plan_output_json_is_exactly_one_json_document_with_the_counts(
    settings: Settings, engine: Engine
) -> None:
    make_feedback(engine)
    write_policy(settings.policy_file, guard_policy(guard="{max_fraction: 1}"))

    result = invoke(settings, "plan", "--output", "json", "--show-sql")

    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)  # fails on a second document or a log line
    (rule,) = document["rules"]
    assert rule["rule"] == RULE
    assert (rule["rows_in_table"], rule["due"]) == (10, 6)
    assert rule["dependents"] == {"feedback_contacts": 6}
    assert rule["guard_would_trip"] is False


CANARIES = ("canary-7731", "canary-where-5519", "canary-value-4242", "canary-prefix-", "77310")


def test_show_sql_has_placeholders_and_never_a_key_a_value_or_the_secret(
    settings: Settings, engine: Engine
) -> None:
    """Planted values in due rows, in conditions and in strategies never reach the output."""
    meta = MetaData()
    tickets = Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("owner", String(120), nullable=False),
        Column("opened_at", DateTime, nullable=False),
    )
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(
            tickets.insert(),
            [{"id": 77310 + i, "owner": "canary-7731", "opened_at": OLD} for i in range(3)],
        )
    write_policy(
        settings.policy_file,
        """\
version: 1
rules:
  - name: tickets-gone
    table: tickets
    clock: opened_at
    after: P3M
    action: delete
    guard: {max_fraction: 1}
    where: {owner: {in: [canary-where-5519, canary-7731]}}
    unless: {id: 77310}
  - name: tickets-pseudonymised
    table: tickets
    clock: opened_at
    after: P1Y
    action: anonymise
    guard: {max_fraction: 1}
    where: {owner: {ne: canary-where-5519}}
    set: {owner: {value: canary-value-4242}}
  - name: tickets-hashed
    table: tickets
    clock: opened_at
    after: 1 day
    action: anonymise
    guard: {max_fraction: 1}
    set: {owner: {hash: {prefix: canary-prefix-, suffix: canary-7731}}}
""",
    )

    for output in ("text", "json"):
        result = invoke(settings, "plan", "--show-sql", "--output", output)
        assert result.exit_code == 0, result.stderr
        shown = result.stdout + result.stderr
        assert "DELETE FROM tickets" in shown
        assert "UPDATE tickets" in shown
        placeholder = "?" if engine.dialect.name == "sqlite" else "%("
        assert placeholder in result.stdout
        for secret in (*CANARIES, HASH_KEY):
            assert secret not in shown, secret


# --- exit codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "--rule", "no-such-rule"],
        ["run", "--rule", "no-such-rule"],
        ["run", "--dry-run", "--rule", "no-such-rule"],
        ["run", "--override-guard", "no-such-rule"],
    ],
    ids=" ".join,
)
def test_an_unknown_rule_name_exits_2_and_writes_nothing(
    settings: Settings, engine: Engine, command: list[str]
) -> None:
    make_feedback(engine)
    write_policy(settings.policy_file, guard_policy(guard="{max_fraction: 1}"))
    url = settings.database_url.get_secret_value()
    before = checksum(url)

    result = invoke(settings, *command)

    assert result.exit_code == 2, result.output
    assert "no-such-rule" in result.stderr
    assert checksum(url) == before


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        ("    where: {no_such_column: 1}\n", "no_such_column"),  # the schema stage
        ("    batch_size: 0\n", "batch_size"),  # the model stage
        ("    guard: {max_rows: 1}\n", "guard"),  # a duplicate key: the YAML stage
    ],
    ids=["schema", "model", "yaml"],
)
def test_an_invalid_policy_exits_78_and_writes_nothing(
    settings: Settings, engine: Engine, broken: str, complaint: str
) -> None:
    make_feedback(engine)
    write_policy(settings.policy_file, guard_policy(guard="{max_fraction: 1}"))
    with settings.policy_file.open("a", encoding="utf-8") as fh:
        fh.write(broken)
    url = settings.database_url.get_secret_value()
    before = checksum(url)

    for command in (["run"], ["plan"]):
        result = invoke(settings, *command)
        assert result.exit_code == 78, result.output
        assert complaint in result.stderr

    assert checksum(url) == before


def test_run_without_a_hash_key_exits_78_and_writes_nothing(
    settings: Settings, engine: Engine
) -> None:
    make_feedback(engine)
    write_policy(settings.policy_file, guard_policy(guard="{max_fraction: 1}"))
    url = settings.database_url.get_secret_value()
    before = checksum(url)

    result = invoke(settings, "run", hash_key=None)

    assert result.exit_code == 78, result.output
    assert "RETENTION_HASH_KEY" in result.stderr
    assert checksum(url) == before


UNREACHABLE = {
    "sqlite": "sqlite:////nonexistent-directory/retention/x.db",
    "postgresql": "postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/x",
    "mysql": "mysql+pymysql://root:s3cret-pw@127.0.0.1:1/x",
}


@pytest.mark.parametrize("command", [["plan"], ["run"], ["audit", "verify"]], ids=" ".join)
def test_an_unreachable_database_exits_75_without_a_traceback(
    settings: Settings, engine: Engine, command: list[str]
) -> None:
    """The URL's password is not shown either."""
    write_policy(settings.policy_file, guard_policy(guard="{max_fraction: 1}"))
    url = UNREACHABLE[engine.dialect.name]
    result = builders.invoke(
        [*command, "--database", url, "--policy", str(settings.policy_file)],
        {"RETENTION_HASH_KEY": HASH_KEY},
        catch_exceptions=True,
    )

    assert result.exit_code == 75, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert "s3cret-pw" not in result.output
    assert result.stdout == ""
