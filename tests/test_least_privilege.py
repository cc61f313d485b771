"""The job runs as a role that can remove due data and append to the log, and nothing more.

An administrator creates the demo tables and runs ``retention audit init`` (the audit
tables and their append-only triggers); the job then runs the whole shipped
``policies.yaml`` as a role holding only the grants below. PostgreSQL and MariaDB; SQLite
has no roles. The tests suffix the role's name with the database's, so suites running in
parallel on one server do not share a role.

PostgreSQL, as the owner of the tables::

    CREATE ROLE retention_job LOGIN;
    GRANT USAGE ON SCHEMA public TO retention_job;
    GRANT SELECT ON accounts, tickets, feedback, feedback_contacts, access_log,
        marketing_consents, legal_holds TO retention_job;
    GRANT DELETE ON feedback, feedback_contacts, access_log, marketing_consents
        TO retention_job;
    GRANT UPDATE (username, phone, email, qq_number, wechat_id, anonymised_at)
        ON accounts TO retention_job;
    GRANT UPDATE (ip_address, user_agent, ip_anonymised_at) ON access_log TO retention_job;
    -- Each batch locks its rows with SELECT ... FOR UPDATE, which PostgreSQL allows only
    -- with UPDATE on at least one column of the table, also where the rule deletes:
    GRANT UPDATE (id) ON feedback, marketing_consents TO retention_job;
    GRANT SELECT, INSERT ON retention_audit, retention_audit_keys TO retention_job;
    GRANT SELECT, UPDATE ON retention_audit_head TO retention_job;  -- serialises appends
    GRANT SELECT, INSERT, UPDATE, DELETE ON retention_audit_leases TO retention_job;

MariaDB / MySQL (``retention_job`` may also need an ``@'localhost'`` twin when it
connects through the socket)::

    CREATE USER 'retention_job'@'%';
    GRANT SELECT ON app.accounts TO 'retention_job'@'%';   -- and likewise on tickets,
        -- feedback, feedback_contacts, access_log, marketing_consents, legal_holds
    GRANT DELETE ON app.feedback TO 'retention_job'@'%';   -- and likewise on
        -- feedback_contacts, access_log, marketing_consents
    GRANT UPDATE (username, phone, email, qq_number, wechat_id, anonymised_at)
        ON app.accounts TO 'retention_job'@'%';
    GRANT UPDATE (ip_address, user_agent, ip_anonymised_at) ON app.access_log
        TO 'retention_job'@'%';
    GRANT SELECT, INSERT ON app.retention_audit TO 'retention_job'@'%';
    GRANT SELECT, INSERT ON app.retention_audit_keys TO 'retention_job'@'%';
    GRANT SELECT, UPDATE ON app.retention_audit_head TO 'retention_job'@'%';
    GRANT SELECT, INSERT, UPDATE, DELETE ON app.retention_audit_leases TO 'retention_job'@'%';

The role can then neither rewrite nor remove audit records (a permission error, before
the append-only triggers are even reached) nor create tables.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import builders
import pytest
from builders import Invocation
from conftest import HASH_KEY, ROOT
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from retention.demo import create_demo
from retention.settings import Settings

READ = (
    "accounts",
    "tickets",
    "feedback",
    "feedback_contacts",
    "access_log",
    "marketing_consents",
    "legal_holds",
)
DELETE = ("feedback", "feedback_contacts", "access_log", "marketing_consents")
UPDATE = {
    "accounts": ("username", "phone", "email", "qq_number", "wechat_id", "anonymised_at"),
    "access_log": ("ip_address", "user_agent", "ip_anonymised_at"),
}
# PostgreSQL only: SELECT ... FOR UPDATE needs UPDATE on a column of each locked table.
LOCK_ONLY = ("feedback", "marketing_consents")
APPEND = ("retention_audit", "retention_audit_keys")
HEAD = "retention_audit_head"
# Rule leases are taken, renewed and given back; a run's own lease row is deleted at its end.
LEASES = "retention_audit_leases"


@dataclass(frozen=True)
class Role:
    name: str
    url: str


def grants(backend: str, role: str, database: str, *, lock_columns: bool) -> list[str]:
    """The statements of the module docstring, for ``role``."""
    if backend == "postgresql":
        to = f"TO {role}"
        statements = [
            f"GRANT USAGE ON SCHEMA public {to}",
            f"GRANT SELECT ON {', '.join(READ)} {to}",
            f"GRANT DELETE ON {', '.join(DELETE)} {to}",
        ]
        statements += [
            f"GRANT UPDATE ({', '.join(cols)}) ON {t} {to}" for t, cols in UPDATE.items()
        ]
        if lock_columns:
            statements.append(f"GRANT UPDATE (id) ON {', '.join(LOCK_ONLY)} {to}")
        statements += [
            f"GRANT SELECT, INSERT ON {', '.join(APPEND)} {to}",
            f"GRANT SELECT, UPDATE ON {HEAD} {to}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {LEASES} {to}",
        ]
        return statements
    to = f"TO '{role}'@'%'"
    statements = [f"GRANT SELECT ON `{database}`.`{t}` {to}" for t in READ]
    statements += [f"GRANT DELETE ON `{database}`.`{t}` {to}" for t in DELETE]
    statements += [
        f"GRANT UPDATE ({', '.join(cols)}) ON `{database}`.`{t}` {to}" for t, cols in UPDATE.items()
    ]
    statements += [f"GRANT SELECT, INSERT ON `{database}`.`{t}` {to}" for t in APPEND]
    statements.append(f"GRANT SELECT, UPDATE ON `{database}`.`{HEAD}` {to}")
    statements.append(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.`{LEASES}` {to}")
    return statements


def drop_role(engine: Engine, role: str) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
            if exists.first() is not None:
                conn.execute(text(f"DROP OWNED BY {role}"))
                conn.execute(text(f"DROP ROLE {role}"))
        else:
            conn.execute(text(f"DROP USER IF EXISTS '{role}'@'%'"))


def create_role(engine: Engine, url: str, *, lock_columns: bool = True) -> Role:
    backend = engine.dialect.name
    database = str(make_url(url).database)
    role = f"retention_job_{database}"[:32]
    drop_role(engine, role)
    with engine.begin() as conn:
        if backend == "postgresql":
            conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        else:
            conn.execute(text(f"CREATE USER '{role}'@'%'"))
        for statement in grants(backend, role, database, lock_columns=lock_columns):
            conn.execute(text(statement))
    as_role = make_url(url).set(username=role, password=None)
    return Role(role, as_role.render_as_string(hide_password=False))


@pytest.fixture
def admin(settings: Settings, engine: Engine) -> Engine:
    """The demo and the audit tables, created by the administrator (the test's URL)."""
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite has no roles or grants")
    shutil.copy(ROOT / "policies.yaml", settings.policy_file)
    create_demo(engine, now=datetime.now(UTC))
    url = settings.database_url.get_secret_value()
    result = invoke(["audit", "init"], url, settings.policy_file)
    assert result.exit_code == 0, result.output
    return engine


@pytest.fixture
def role(admin: Engine, settings: Settings) -> Iterator[Role]:
    made = create_role(admin, settings.database_url.get_secret_value())
    try:
        yield made
    finally:
        drop_role(admin, made.name)


def invoke(args: list[str], url: str, policy: Path) -> Invocation:
    return builders.invoke(
        [*args, "--database", url, "--policy", str(policy)],
        {"RETENTION_HASH_KEY": HASH_KEY, "RETENTION_LOG_FORMAT": "json"},
    )


def denied(engine: Engine, statement: str) -> DBAPIError:
    """Run ``statement`` as the role; return the error, which must be a permission error."""
    with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
        conn.execute(text(statement))
    orig = caught.value.orig
    if engine.dialect.name == "postgresql":
        assert getattr(orig, "sqlstate", None) == "42501", orig
        # The append-only trigger raises 42501 too: the grants must stop it first.
        assert "permission denied" in str(orig), orig
    else:
        # ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR
        assert orig is not None and orig.args[0] in (1142, 1143), orig
    return caught.value


def test_the_whole_policy_runs_as_a_role_with_only_the_documented_grants(
    settings: Settings, role: Role
) -> None:
    """Every rule deletes or anonymises, the run exits 0 and the chain verifies."""
    result = invoke(["run", "--output", "json"], role.url, settings.policy_file)

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {r["status"] for r in summary["rules"]} == {"done"}
    assert all((r.get("deleted") or r.get("anonymised")) for r in summary["rules"]), summary
    verified = invoke(["audit", "verify"], role.url, settings.policy_file)
    assert verified.exit_code == 0, verified.output
    assert summary["audit_head"] in verified.stdout


def test_the_role_cannot_rewrite_or_remove_audit_records_or_create_tables(
    settings: Settings, role: Role
) -> None:
    result = invoke(["run", "--output", "json"], role.url, settings.policy_file)
    assert result.exit_code == 0, result.output
    job = create_engine(role.url, poolclass=NullPool)
    try:
        denied(job, "UPDATE retention_audit SET row_count = 0 WHERE event = 'batch'")
        denied(job, "DELETE FROM retention_audit WHERE event = 'batch'")
        denied(job, "UPDATE retention_audit_keys SET key_digest = 'x'")
        denied(job, "DELETE FROM retention_audit_keys")
        denied(job, "TRUNCATE TABLE retention_audit")
        denied(job, "DELETE FROM retention_audit_head")
        denied(job, "UPDATE accounts SET created_at = closed_at")
        denied(job, "DELETE FROM accounts")
        denied(job, "CREATE TABLE retention_job_scratch (id INTEGER)")
    finally:
        job.dispose()
    verified = invoke(["audit", "verify"], role.url, settings.policy_file)
    assert verified.exit_code == 0, verified.output


@pytest.fixture
def delete_only_role(admin: Engine, settings: Settings) -> Iterator[Role]:
    made = create_role(admin, settings.database_url.get_secret_value(), lock_columns=False)
    try:
        yield made
    finally:
        drop_role(admin, made.name)


def test_without_a_lockable_column_postgresql_refuses_the_batch_lock_and_nothing_is_half_done(
    settings: Settings, delete_only_role: Role
) -> None:
    """Batches are locked with SELECT ... FOR UPDATE, which PostgreSQL allows only with UPDATE
    on a column of the table (docs/operations.md asks for ``GRANT UPDATE (key)``); MariaDB
    needs DELETE alone. Without that grant the rule fails cleanly (exit 1, the error's class
    and code recorded), before any row of it is touched; the other rules still run."""
    result = invoke(["run", "--output", "json"], delete_only_role.url, settings.policy_file)

    if make_url(delete_only_role.url).get_backend_name() != "postgresql":
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    failed = {r["rule"]: r for r in summary["rules"] if r["status"] == "failed"}
    assert "feedback-after-3-months" in failed
    assert all(r["error"] == "InsufficientPrivilege (42501)" for r in failed.values())
    assert all(r["deleted"] == 0 for r in failed.values())
    assert any(r["status"] == "done" for r in summary["rules"])
