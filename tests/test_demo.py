"""The demo database: reproducible, and never destroying what it did not make (the rules
it gives work to are in test_demo_rules.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import HASH_KEY
from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    func,
    inspect,
    select,
)

from retention.audit.writer import ensure_audit_tables
from retention.cli import cli
from retention.demo import DEMO_TABLES, MARK_TABLE, DemoSummary, create_demo, demo_metadata
from retention.errors import DemoRefused

NOW = datetime(2026, 11, 25, 2, 30, tzinfo=UTC)
DEMO = demo_metadata()


def checksum(engine: Engine) -> str:
    """A digest of every row of every demo table, in key order."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for name in DEMO_TABLES:
            table = DEMO.tables[name]
            for row in conn.execute(select(table).order_by(*table.primary_key.columns)):
                digest.update(repr((name, *row)).encode())
    return digest.hexdigest()


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(DEMO.tables[name])).scalar_one()
            for name in DEMO_TABLES
        }


def add_orders(engine: Engine) -> Table:
    meta = MetaData()
    orders = Table(
        "orders", meta, Column("id", Integer, primary_key=True), Column("item", String(20))
    )
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(orders.insert(), [{"id": 1, "item": "kettle"}])
    return orders


def add_audit_log(engine: Engine, name: str, *, records: int) -> Table:
    meta = MetaData()
    audit = Table(name, meta, Column("seq", Integer, primary_key=True))
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(audit.insert(), [{"seq": n} for n in range(1, records + 1)])
    return audit


def audit_seqs(engine: Engine, audit: Table) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(audit.c.seq).order_by(audit.c.seq)).scalars())


def test_same_seed_gives_identical_rows(engine: Engine) -> None:
    """Two demos with the same seed and clock hold the same rows; another seed does not."""
    create_demo(engine, now=NOW)
    first = checksum(engine)
    create_demo(engine, now=NOW)
    assert checksum(engine) == first
    create_demo(engine, now=NOW, seed=7)
    assert checksum(engine) != first


def test_summary_counts_the_rows_written(engine: Engine) -> None:
    """DemoSummary reports, per demo table, the rows that are in the database."""
    summary = create_demo(engine, now=NOW)
    assert isinstance(summary, DemoSummary)
    assert list(summary.rows) == list(DEMO_TABLES)
    assert summary.rows == counts(engine)
    assert summary.rows["accounts"] == 600
    assert summary.rows["feedback"] == 3000
    assert 3000 <= summary.rows["feedback_contacts"] <= 6000
    assert summary.rows["access_log"] == 8000
    assert 550 <= summary.rows["marketing_consents"] <= 850
    assert summary.rows["legal_holds"] == 20


def test_refuses_a_database_holding_other_tables(engine: Engine) -> None:
    """Without force, a database with a foreign table is refused and left untouched."""
    orders = add_orders(engine)
    with pytest.raises(DemoRefused, match=r"other tables \(orders\).*--force"):
        create_demo(engine, now=NOW)
    assert inspect(engine).get_table_names() == ["orders"]
    with engine.connect() as conn:
        assert conn.execute(select(orders.c.item)).scalars().all() == ["kettle"]


def test_a_demo_database_a_run_used_is_recreated_without_force(engine: Engine) -> None:
    """The audit tables a run creates (with the lease table) are the tool's, not 'other'."""
    create_demo(engine, now=NOW)
    ensure_audit_tables(engine, "retention_audit")
    again = create_demo(engine, now=NOW)
    assert again.replaced == DEMO_TABLES
    assert "retention_audit_leases" in inspect(engine).get_table_names()


def test_force_creates_the_demo_beside_other_tables(engine: Engine) -> None:
    """With force, the demo is created and the foreign table keeps its rows."""
    orders = add_orders(engine)
    summary = create_demo(engine, now=NOW, force=True)
    assert set(inspect(engine).get_table_names()) == {"orders", MARK_TABLE, *DEMO_TABLES}
    assert summary.rows == counts(engine)
    with engine.connect() as conn:
        assert conn.execute(select(orders.c.item)).scalars().all() == ["kettle"]


def test_rerunning_recreates_the_demo_and_keeps_the_audit_log(engine: Engine) -> None:
    """A second run over a used demo database restores the demo rows; the audit log keeps
    every record (issue 10: a plain demo once dropped a 35-record log)."""
    summary = create_demo(engine, now=NOW)
    pristine = checksum(engine)
    audit = add_audit_log(engine, "retention_audit", records=35)
    feedback, contacts = DEMO.tables["feedback"], DEMO.tables["feedback_contacts"]
    with engine.begin() as conn:
        conn.execute(contacts.delete())
        conn.execute(feedback.delete().where(feedback.c.id > 10))
    assert checksum(engine) != pristine

    again = create_demo(engine, now=NOW)
    assert again == summary
    assert again.replaced == DEMO_TABLES
    assert checksum(engine) == pristine
    assert set(inspect(engine).get_table_names()) == {*DEMO_TABLES, MARK_TABLE, audit.name}
    assert audit_seqs(engine, audit) == list(range(1, 36))


def test_rows_inserted_after_the_demo_get_new_keys(engine: Engine) -> None:
    """The demo gives its keys explicitly; the next generated key follows them everywhere."""
    summary = create_demo(engine, now=NOW)
    holds = DEMO.tables["legal_holds"]
    with engine.begin() as conn:
        row = {"subject_id": "1", "reason": "test", "placed_at": NOW.replace(tzinfo=None)}
        conn.execute(holds.insert().values(row))
        key = conn.execute(select(func.max(holds.c.id))).scalar_one()
    assert key == summary.rows["legal_holds"] + 1


# --- the demo never destroys what it did not make --------------------------------------


def test_a_user_table_with_a_demo_name_is_refused_by_name_even_with_force(engine: Engine) -> None:
    """The user's own accounts table is not replaced (issue 10: demo --force did that)."""
    meta = MetaData()
    accounts = Table("accounts", meta, Column("login", String(20), primary_key=True))
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(accounts.insert(), [{"login": "ops"}])
    for force in (False, True):
        with pytest.raises(
            DemoRefused, match=r"table accounts was not created by the demo.*--force"
        ):
            create_demo(engine, now=NOW, force=force)
    assert inspect(engine).get_table_names() == ["accounts"]
    with engine.connect() as conn:
        assert conn.execute(select(accounts.c.login)).scalars().all() == ["ops"]


def test_demo_tables_without_the_mark_are_refused_listing_them(engine: Engine) -> None:
    """Tables of every demo name, not listed as the demo's own, are someone else's."""
    with engine.begin() as conn:
        DEMO.create_all(conn)
    with pytest.raises(DemoRefused) as caught:
        create_demo(engine, now=NOW, force=True)
    assert f"tables {', '.join(DEMO_TABLES)} were not created by the demo" in str(caught.value)
    assert MARK_TABLE not in inspect(engine).get_table_names()


def test_a_listed_table_since_replaced_by_another_is_refused(engine: Engine) -> None:
    """legal_holds is the demo's by the list, but someone recreated it with other columns."""
    create_demo(engine, now=NOW)
    meta = MetaData()
    holds = Table("legal_holds", meta, Column("case_no", String(20), primary_key=True))
    with engine.begin() as conn:
        conn.execute(DEMO.tables["legal_holds"].delete())
        DEMO.tables["legal_holds"].drop(conn)
        holds.create(conn)
        conn.execute(holds.insert(), [{"case_no": "C-1"}])
    with pytest.raises(DemoRefused, match="table legal_holds was not created by the demo"):
        create_demo(engine, now=NOW, force=True)
    with engine.connect() as conn:
        assert conn.execute(select(holds.c.case_no)).scalars().all() == ["C-1"]


def test_a_refusal_lists_the_tables_it_would_replace(engine: Engine) -> None:
    create_demo(engine, now=NOW)
    before = checksum(engine)
    add_orders(engine)
    with pytest.raises(DemoRefused) as caught:
        create_demo(engine, now=NOW, seed=7)
    message = str(caught.value)
    assert "other tables (orders)" in message
    assert f"it would replace {', '.join(DEMO_TABLES)} (made by an earlier demo)" in message
    assert checksum(engine) == before


def test_a_table_referencing_a_demo_table_is_refused_even_with_force(engine: Engine) -> None:
    create_demo(engine, now=NOW)
    meta = MetaData()
    Table("accounts", meta, Column("id", String(20), primary_key=True))
    Table(
        "orders",
        meta,
        Column("id", Integer, primary_key=True),
        Column("account_id", String(20), ForeignKey("accounts.id")),
    )
    with engine.begin() as conn:
        meta.tables["orders"].create(conn)
    with pytest.raises(DemoRefused, match=r"table orders references accounts.*would replace"):
        create_demo(engine, now=NOW, force=True)
    assert set(inspect(engine).get_table_names()) == {"orders", MARK_TABLE, *DEMO_TABLES}


@pytest.mark.parametrize("name", ["retention_audit", "compliance_log"])
def test_audit_tables_are_never_dropped_even_with_force(engine: Engine, name: str) -> None:
    """The shipped audit table and a renamed one (a table of its own to the demo) both keep
    their records when the demo is created and recreated over them."""
    audit = add_audit_log(engine, name, records=35)
    create_demo(engine, now=NOW, force=True)
    create_demo(engine, now=NOW, force=True)
    assert audit_seqs(engine, audit) == list(range(1, 36))


def test_before_changes_runs_once_when_the_demo_proceeds_and_never_when_refused(
    engine: Engine,
) -> None:
    calls: list[str] = []
    create_demo(engine, now=NOW, before_changes=lambda: calls.append("first"))
    assert calls == ["first"]
    add_orders(engine)
    with pytest.raises(DemoRefused):
        create_demo(engine, now=NOW, before_changes=lambda: calls.append("refused"))
    assert calls == ["first"]


def test_a_failing_before_changes_leaves_the_database_as_it_was(engine: Engine) -> None:
    """Writing .env fails (a read-only directory): the demo stops before its first change."""
    create_demo(engine, now=NOW)
    with engine.begin() as conn:
        conn.execute(DEMO.tables["feedback_contacts"].delete())
    used = checksum(engine)

    def cannot_write() -> None:
        raise PermissionError(".env")

    with pytest.raises(PermissionError):
        create_demo(engine, now=NOW, before_changes=cannot_write)
    assert checksum(engine) == used


def test_a_server_database_must_be_named(engine: Engine) -> None:
    """Unnamed (from RETENTION_DATABASE_URL), only a SQLite file takes the demo."""
    if engine.dialect.name == "sqlite":
        assert create_demo(engine, now=NOW, named=False).rows["accounts"] == 600
        return
    with pytest.raises(DemoRefused, match=rf"is a {engine.dialect.name} server.*--database"):
        create_demo(engine, now=NOW, named=False)
    assert tables(engine) == []


def test_the_command_takes_a_server_database_only_from_the_command_line(db_url: str) -> None:
    runner = CliRunner()
    env = {"RETENTION_HASH_KEY": HASH_KEY, "RETENTION_DATABASE_URL": db_url}
    from_env = runner.invoke(cli, ["demo"], env=env)
    if db_url.startswith("sqlite"):
        assert from_env.exit_code == 0, from_env.output
        return
    assert from_env.exit_code == 78, from_env.output
    said = [line for line in from_env.stderr.splitlines() if line.startswith("retention:")]
    assert len(said) == 1 and "--database" in said[0], from_env.stderr
    assert "Traceback" not in from_env.output
    named = runner.invoke(cli, ["demo", "--database", db_url], env=env)
    assert named.exit_code == 0, named.output


def test_a_refused_command_writes_no_env_file(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """.env gets a generated hash key only once the demo has decided to proceed."""
    add_orders(engine)
    refused = CliRunner().invoke(cli, ["demo", "--database", db_url])
    assert refused.exit_code == 78, refused.output
    assert "other tables (orders)" in refused.stderr
    assert not (tmp_path / ".env").exists()
    made = CliRunner().invoke(cli, ["demo", "--database", db_url, "--force"])
    assert made.exit_code == 0, made.output
    assert (tmp_path / ".env").read_text().startswith("RETENTION_HASH_KEY=")


def tables(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())
