"""Exit codes that mean what they say, on every database (SPEC section 4).

A rule's failure, whatever it is, is that rule's ``rule_failed`` and the run goes on; a
missing driver, refused credentials, a database that does not exist, a missing URL and an
unusable head file are configuration errors (78) found before any row is touched; a
read-only server is 75 before any write; a policy that does not fit the database wins
over an unknown ``--rule``; read-only commands never create a SQLite file.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import builders
import pytest
from builders import Invocation, dated_table, write_policy
from conftest import HASH_KEY
from sqlalchemy import (
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import Pool

from retention import api
from retention.audit.records import audit_tables
from retention.backends import backend_for
from retention.db import make_engine
from retention.errors import PolicyError, SettingsError, UsageError
from retention.executor import Executor
from retention.settings import Settings

META = MetaData()
ORDERS = dated_table(META, "orders", "placed_at")
VISITS = dated_table(META, "visits", "seen_at")
RECORDS = audit_tables("retention_audit")[1]
POLICY = """\
version: 1
defaults:
  guard: {max_rows: 1000000, max_fraction: 1.0}
rules:
  - name: orders-after-1-year
    table: orders
    clock: placed_at
    after: P1Y
    action: delete
  - name: visits-after-30-days
    table: visits
    clock: seen_at
    after: 30 days
    action: delete
"""
SECRET = "s3cret-pw-0042"


def build(engine: Engine, settings: Settings) -> None:
    """Ten long-expired rows in each table, and the policy."""
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=800)
    META.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(ORDERS), [{"id": i, "placed_at": old} for i in range(10)])
        conn.execute(insert(VISITS), [{"id": i, "seen_at": old} for i in range(10)])
    write_policy(settings.policy_file, POLICY)


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(table.c.id)).all())


def events(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(RECORDS).order_by(RECORDS.c.seq))
        return [dict(row._mapping) for row in rows]


def cli(settings: Settings, *args: str, url: str | None = None) -> Invocation:
    env = {
        "RETENTION_HASH_KEY": HASH_KEY,
        "RETENTION_POLICY_FILE": str(settings.policy_file),
        "RETENTION_DATABASE_URL": url or settings.database_url.get_secret_value(),
        "RETENTION_LOG_FORMAT": "json",
    }
    return builders.invoke(args, env, catch_exceptions=True)


def assert_clean_failure(outcome: Invocation, code: int) -> None:
    """The documented code, one line of reason, never a traceback or 'unexpected'."""
    assert outcome.exit_code == code, outcome.output
    assert isinstance(outcome.exception, SystemExit), outcome.exception
    assert "Traceback" not in outcome.output
    assert "unexpected" not in outcome.output
    assert outcome.stdout == ""


def on_a_server(settings: Settings) -> str:
    url = settings.database_url.get_secret_value()
    if make_url(url).get_backend_name() == "sqlite":
        pytest.skip("SQLite has no server, credentials or named databases")
    return url


# --- a rule's failure -------------------------------------------------------------------


def test_any_error_inside_a_rule_is_its_rule_failed_and_the_run_goes_on(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only database errors: a bug in one rule fails that rule, recorded by class
    without its message, the next rule runs and the run ends with run_finished (exit 1)."""
    build(engine, settings)
    original = Executor._one_batch

    def broken(self: Executor, conn: Any, plan: Any, *args: Any, **kwargs: Any) -> Any:
        if plan.name == "orders-after-1-year":
            raise ZeroDivisionError("alice@example.com")
        return original(self, conn, plan, *args, **kwargs)

    monkeypatch.setattr(Executor, "_one_batch", broken)
    result = api.run(settings)

    assert [(r.rule, r.status) for r in result.rules] == [
        ("orders-after-1-year", "failed"),
        ("visits-after-30-days", "done"),
    ]
    assert result.exit_code == 1
    assert count(engine, ORDERS) == 10 and count(engine, VISITS) == 0
    log = events(engine)
    [failed] = [r for r in log if r["event"] == "rule_failed"]
    assert json.loads(failed["details"])["error"] == "ZeroDivisionError"
    assert log[-1]["event"] == "run_finished"
    assert "alice" not in json.dumps(log, default=str)
    api.verify(settings)


def test_a_rule_whose_lease_cannot_be_taken_fails_alone(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error while taking the rule's lease is the rule's failure, not the run's end."""
    build(engine, settings)
    from retention.leases import Lease, Leases

    real_take = Leases.take

    def take(self: Leases, name: str, **kwargs: Any) -> Lease:
        if name == "rule:orders-after-1-year":
            raise OSError("the lease table cannot be written")
        return real_take(self, name, **kwargs)

    monkeypatch.setattr(Leases, "take", take)
    result = api.run(settings)
    assert [r.status for r in result.rules] == ["failed", "done"]
    assert events(engine)[-1]["event"] == "run_finished"


# --- drivers and URLs -------------------------------------------------------------------


def test_a_url_whose_driver_is_not_installed_is_78_naming_the_extra(
    settings: Settings, tmp_path: Path
) -> None:
    write_policy(settings.policy_file, POLICY)
    outcome = cli(settings, "plan", url="mysql://root@127.0.0.1:3306/x")
    assert_clean_failure(outcome, 78)
    assert "retention[mysql]" in outcome.stderr


def test_a_missing_postgres_extra_is_78_naming_the_extra(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_policy(settings.policy_file, POLICY)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    outcome = cli(settings, "validate", url="postgresql+psycopg://u@127.0.0.1:1/x")
    assert_clean_failure(outcome, 78)
    assert "retention[postgres]" in outcome.stderr


def test_postgres_scheme_is_accepted_as_postgresql() -> None:
    settings = Settings(database_url="postgres://u@127.0.0.1:1/x", _env_file=None)  # type: ignore[arg-type,call-arg]
    engine = make_engine(settings)
    try:
        assert engine.dialect.name == "postgresql"
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


def test_postgres_scheme_reaches_the_server(settings: Settings, engine: Engine) -> None:
    url = make_url(on_a_server(settings))
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL spelling")
    build(engine, settings)
    short = url.set(drivername="postgres").render_as_string(hide_password=False)
    outcome = cli(settings, "validate", url=short)
    assert outcome.exit_code == 0, outcome.output


# --- refused connections ------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["refused credentials", "no such database"])
def test_refused_credentials_and_a_missing_database_are_78_on_every_server(
    settings: Settings, fault: str
) -> None:
    url = make_url(on_a_server(settings))
    if fault == "refused credentials":
        url = url.set(username="retention_no_such_user", password=SECRET)
    else:
        url = url.set(database=f"{url.database}_missing")
    write_policy(settings.policy_file, POLICY)
    for command in (["plan"], ["run"], ["audit", "verify"]):
        outcome = cli(settings, *command, url=url.render_as_string(hide_password=False))
        assert_clean_failure(outcome, 78)
        assert SECRET not in outcome.output
        assert "refused the connection" in outcome.stderr


# --- a read-only server -------------------------------------------------------------------


@pytest.fixture
def read_only_database(settings: Settings, engine: Engine) -> Iterator[None]:
    """PostgreSQL: the test database with default_transaction_read_only (as a standby
    answers); MariaDB: every new session made read-only (SET SESSION TRANSACTION READ
    ONLY, as a proxy or init_connect would), since the shared server's global read_only
    must stay off; SQLite has no read-only server."""
    url = make_url(on_a_server(settings))
    if engine.dialect.name == "postgresql":
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        name = engine.dialect.identifier_preparer.quote(str(url.database))
        try:
            with admin.connect() as conn:
                conn.execute(text(f"ALTER DATABASE {name} SET default_transaction_read_only = on"))
            engine.dispose()  # sessions opened from now on are read-only
            yield
        finally:
            with admin.connect() as conn:
                conn.execute(text("SET default_transaction_read_only = off"))
                conn.execute(text(f"ALTER DATABASE {name} RESET default_transaction_read_only"))
            admin.dispose()
            engine.dispose()
    else:

        def read_only_session(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.close()

        engine.dispose()
        event.listen(Pool, "connect", read_only_session)
        try:
            yield
        finally:
            event.remove(Pool, "connect", read_only_session)
            engine.dispose()


@pytest.mark.parametrize("command", [["run"], ["audit", "init"]], ids=" ".join)
def test_a_read_only_server_is_75_with_the_reason_before_any_write(
    settings: Settings, engine: Engine, request: pytest.FixtureRequest, command: list[str]
) -> None:
    on_a_server(settings)
    build(engine, settings)
    request.getfixturevalue("read_only_database")
    outcome = cli(settings, *command)
    assert_clean_failure(outcome, 75)
    assert "read-only" in outcome.stderr
    assert "unreachable" not in outcome.stderr
    assert count(engine, ORDERS) == 10
    assert "retention_audit" not in inspect(engine).get_table_names()


def test_a_writable_server_says_so(settings: Settings, engine: Engine) -> None:
    on_a_server(settings)
    backend = backend_for(engine)
    with engine.connect() as conn:
        assert backend.refuses_writes(conn) is None


# --- precedence ---------------------------------------------------------------------------


def test_an_unknown_rule_against_a_database_the_policy_does_not_fit_is_78(
    settings: Settings,
) -> None:
    """78 before 2 (SPEC section 4): the schema problem, naming the database, wins."""
    write_policy(settings.policy_file, POLICY)  # no such tables in the empty database
    outcome = cli(settings, "plan", "--rule", "no-such-rule")
    assert_clean_failure(outcome, 78)
    assert f"(in {settings.masked_url()})" in outcome.stderr


def test_an_unknown_rule_against_an_unreachable_database_is_2(settings: Settings) -> None:
    write_policy(settings.policy_file, POLICY)
    outcome = cli(
        settings, "plan", "--rule", "no-such-rule", url="postgresql+psycopg://u@127.0.0.1:1/x"
    )
    assert_clean_failure(outcome, 2)


def test_every_schema_error_names_the_database_with_its_password_masked(
    settings: Settings,
) -> None:
    write_policy(settings.policy_file, POLICY)
    with pytest.raises(PolicyError) as caught:
        api.validate(settings)
    assert caught.value.problems
    for problem in caught.value.problems:
        assert str(problem).endswith(f"(in {settings.masked_url()})")


# --- the head file ------------------------------------------------------------------------


def test_an_unusable_head_file_is_78_before_any_row_is_touched(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    build(engine, settings)
    unusable = tmp_path / "no-such-directory" / "heads.txt"
    outcome = builders.invoke(
        ["run"],
        {
            "RETENTION_HASH_KEY": HASH_KEY,
            "RETENTION_POLICY_FILE": str(settings.policy_file),
            "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
            "RETENTION_AUDIT_HEAD_FILE": str(unusable),
        },
        catch_exceptions=True,
    )
    assert_clean_failure(outcome, 78)
    assert "RETENTION_AUDIT_HEAD_FILE" in outcome.stderr
    assert count(engine, ORDERS) == count(engine, VISITS) == 10
    assert "retention_audit" not in inspect(engine).get_table_names()


def test_the_head_file_gets_the_head_of_a_run(settings: Settings, engine: Engine) -> None:
    build(engine, settings)
    heads = settings.policy_file.parent / "heads.txt"
    result = api.run(settings.model_copy(update={"audit_head_file": heads}))
    assert heads.read_text().split() == [result.head]


# --- a missing URL, read-only commands ----------------------------------------------------


@pytest.mark.parametrize("command", [["plan"], ["validate"], ["run"], ["audit", "verify"]])
def test_a_missing_database_url_is_78_naming_what_is_missing(
    tmp_path: Path, command: list[str]
) -> None:
    policy = write_policy(tmp_path / "policies.yaml", POLICY)
    outcome = builders.invoke(
        [*command, "--policy", str(policy)], {"RETENTION_HASH_KEY": HASH_KEY}, catch_exceptions=True
    )
    assert_clean_failure(outcome, 78)
    assert "RETENTION_DATABASE_URL is not set" in outcome.stderr
    assert list(tmp_path.iterdir()) == [policy]  # no file made up instead


def test_validate_offline_needs_no_database_url(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policies.yaml", POLICY)
    outcome = builders.invoke(["validate", "--offline", "--policy", str(policy)])
    assert outcome.exit_code == 0, outcome.output


def test_the_api_refuses_a_missing_url() -> None:
    with pytest.raises(SettingsError, match="RETENTION_DATABASE_URL"):
        make_engine(Settings(_env_file=None))  # type: ignore[call-arg]


READ_ONLY_COMMANDS = [
    ["plan"],
    ["validate"],
    ["audit", "verify"],
    ["audit", "show"],
    ["audit", "export", "--format", "jsonl"],
    ["audit", "report", "--format", "json"],
    ["audit", "find", "--table", "orders", "--key", "1"],
]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_read_only_command_on_a_mistyped_sqlite_path_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    policy = write_policy(tmp_path / "policies.yaml", POLICY)
    typo = tmp_path / "retention-dmeo.db"
    outcome = builders.invoke(
        [*command, "--policy", str(policy), "--database", f"sqlite:///{typo}"],
        {"RETENTION_HASH_KEY": HASH_KEY},
        catch_exceptions=True,
    )
    assert "Traceback" not in outcome.output and "unexpected" not in outcome.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policies.yaml"]


def test_a_read_only_command_cannot_write_to_a_sqlite_file(
    settings: Settings, engine: Engine
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the file itself is opened read-only on SQLite only")
    build(engine, settings)
    reader = make_engine(settings, read_only=True)
    try:
        with reader.connect() as conn, pytest.raises(DBAPIError):
            conn.execute(text("DELETE FROM orders"))
    finally:
        reader.dispose()
    assert count(engine, ORDERS) == 10


# --- --max-runtime ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0"])
def test_a_max_runtime_that_is_not_a_positive_finite_number_is_a_usage_error(
    settings: Settings, value: str
) -> None:
    write_policy(settings.policy_file, POLICY)
    outcome = cli(settings, "run", f"--max-runtime={value}")
    assert outcome.exit_code == 2, outcome.output
    assert "--max-runtime" in outcome.output


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_the_api_refuses_a_max_runtime_it_cannot_stop_at(settings: Settings, value: float) -> None:
    write_policy(settings.policy_file, POLICY)
    with pytest.raises(UsageError, match="--max-runtime"):
        api.run(settings, max_runtime=value)


def test_the_demo_without_a_url_names_its_file_in_dot_env_for_the_commands_after_it(
    tmp_path: Path,
) -> None:
    made = builders.invoke(["demo"], {"RETENTION_HASH_KEY": HASH_KEY})
    assert made.exit_code == 0, made.output
    assert "RETENTION_DATABASE_URL=sqlite:///retention-demo.db" in (tmp_path / ".env").read_text()
    shipped = Path(__file__).resolve().parent.parent / "policies.yaml"
    checked = builders.invoke(["validate", "--policy", str(shipped)])
    assert checked.exit_code == 0, checked.output
    assert "retention-demo.db" in checked.stdout
