"""The demo database for the shipped ``policies.yaml`` (``retention demo``): its tables, and
how they are created without destroying anything the demo did not make.

The rows come from ``retention.demo_data``. Every table the demo creates is listed in
``retention_demo_tables``; a later demo drops and recreates only listed tables. A table with
a demo table's name that is not listed belongs to someone else, and the demo refuses to
touch it, even with ``force``. Audit tables are never dropped: their records outlive any
demo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Inspector,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from retention.backends import backend_for
from retention.demo_data import DEFAULT_SEED, demo_rows
from retention.errors import DemoRefused

DEMO_TABLES: tuple[str, ...] = (
    "accounts",
    "tickets",
    "feedback",
    "feedback_contacts",
    "access_log",
    "marketing_consents",
    "legal_holds",
)
AUDIT_TABLES: tuple[str, ...] = (
    "retention_audit",
    "retention_audit_head",
    "retention_audit_keys",
    "retention_audit_leases",
)
MARK_TABLE = "retention_demo_tables"
CHUNK = 1000


@dataclass(frozen=True)
class DemoSummary:
    """What ``create_demo`` wrote: rows per demo table. Two summaries are equal when they
    wrote the same rows; ``replaced`` names the tables of an earlier demo it replaced."""

    rows: dict[str, int]
    replaced: tuple[str, ...] = field(default=(), compare=False)


# --- schema ---------------------------------------------------------------------------


def _timestamp() -> TypeEngine[datetime]:
    # Naive UTC; MySQL's DATETIME drops microseconds unless asked to keep them.
    return DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def demo_metadata() -> MetaData:
    """The demo schema, as a fresh ``MetaData`` on each call."""
    meta = MetaData()
    Table(
        "accounts",
        meta,
        Column("id", String(20), primary_key=True),
        Column("username", String(64), nullable=False, unique=True),
        Column("phone", String(32)),
        Column("email", String(255), unique=True),
        Column("qq_number", String(16)),
        Column("wechat_id", String(64)),
        Column("created_at", _timestamp(), nullable=False),
        Column("closed_at", _timestamp()),
        Column("anonymised_at", _timestamp()),
        Index("ix_accounts_closed_at", "closed_at"),
        mysql_charset="utf8mb4",
    )
    Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True),
        Column("account_id", String(20), ForeignKey("accounts.id"), nullable=False),
        Column("status", String(16), nullable=False),
        Column("opened_at", _timestamp(), nullable=False),
        Column("closed_at", _timestamp()),
        mysql_charset="utf8mb4",
    )
    Table(
        "feedback",
        meta,
        Column("id", Integer, primary_key=True),
        Column("account_id", String(20), ForeignKey("accounts.id")),
        Column("ticket_id", Integer, ForeignKey("tickets.id")),
        Column("channel", String(16), nullable=False),
        Column("body", Text, nullable=False),
        Column("submitted_at", _timestamp(), nullable=False),
        Index("ix_feedback_submitted_at", "submitted_at"),
        mysql_charset="utf8mb4",
    )
    Table(
        "feedback_contacts",
        meta,
        Column("id", Integer, primary_key=True),
        # No ON DELETE: the policy's cascade is what removes these rows.
        Column("feedback_id", Integer, ForeignKey("feedback.id"), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("value", String(255), nullable=False),
        Index("ix_feedback_contacts_feedback_id", "feedback_id"),
        mysql_charset="utf8mb4",
    )
    Table(
        "access_log",
        meta,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("account_id", String(20)),
        Column("ip_address", String(45)),
        Column("user_agent", String(512)),
        Column("path", String(255), nullable=False),
        Column("logged_at", _timestamp(), nullable=False),
        Column("ip_anonymised_at", _timestamp()),
        Index("ix_access_log_logged_at", "logged_at"),
        mysql_charset="utf8mb4",
    )
    Table(
        "marketing_consents",
        meta,
        Column("id", Integer, primary_key=True),
        Column("account_id", String(20), ForeignKey("accounts.id"), nullable=False),
        Column("channel", String(16), nullable=False),
        Column("contact", String(255), nullable=False),
        Column("given_at", _timestamp(), nullable=False),
        Column("withdrawn_at", _timestamp()),
        Index("ix_marketing_consents_withdrawn_at", "withdrawn_at"),
        mysql_charset="utf8mb4",
    )
    Table(
        "legal_holds",
        meta,
        Column("id", Integer, primary_key=True),
        Column("subject_id", String(20), nullable=False),
        Column("reason", String(200), nullable=False),
        Column("placed_at", _timestamp(), nullable=False),
        Column("released_at", _timestamp()),
        Index("ix_legal_holds_subject_id", "subject_id"),
        mysql_charset="utf8mb4",
    )
    return meta


# --- creating the database ------------------------------------------------------------


def create_demo(
    engine: Engine,
    *,
    now: datetime,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    audit_tables: Sequence[str] = AUDIT_TABLES,
    named: bool = True,
    before_changes: Callable[[], None] | None = None,
) -> DemoSummary:
    """Create the demo tables with fresh demo data as of ``now``.

    Replaces only tables an earlier demo created, and never an audit table. Raises
    ``DemoRefused``, having changed nothing, when a table with a demo table's name was not
    created by the demo (even with ``force``), when another table references one it would
    replace, when the database holds other tables (unless ``force``), or when the database
    is on a server and the caller did not name it (``named``). ``before_changes`` runs once
    the demo has decided to proceed, before its first change: ``api.demo`` writes ``.env``
    there, so a refused demo writes nothing anywhere; if it raises, nothing is changed.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if not named and backend_for(engine).is_server:
        raise DemoRefused(
            f"the configured database (RETENTION_DATABASE_URL) is a {engine.dialect.name} "
            "server: the demo replaces tables, so it works there only when the database is "
            "named with --database"
        )
    data = demo_rows(now=now, seed=seed)
    meta = demo_metadata()
    marks = _marks(MetaData())
    stamp = now.astimezone(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        replaced = _decide(conn, frozenset(audit_tables), force=force)
        if before_changes is not None:
            before_changes()
        _drop(conn, replaced)
        marks.create(conn, checkfirst=True)
        meta.create_all(conn)
        conn.execute(marks.delete().where(marks.c.table_name.in_(DEMO_TABLES)))
        conn.execute(marks.insert(), [{"table_name": n, "created_at": stamp} for n in DEMO_TABLES])
    # The rows in a transaction of their own: where DDL commits at once (MySQL), the marks
    # are committed with the tables they list, so a failure below leaves tables that a
    # second demo may replace, never unmarked ones it would have to refuse.
    with engine.begin() as conn:
        for name in DEMO_TABLES:
            table, rows = meta.tables[name], data[name]
            for start in range(0, len(rows), CHUNK):
                conn.execute(table.insert(), rows[start : start + CHUNK])
        backend = backend_for(conn)
        for name in DEMO_TABLES:
            if meta.tables[name].autoincrement_column is not None and data[name]:
                # Keys were given explicitly: later inserts must not reuse them.
                top = max(row["id"] for row in data[name])
                backend.follow_explicit_keys(conn, name, "id", top)
    return DemoSummary(rows={name: len(data[name]) for name in DEMO_TABLES}, replaced=replaced)


def _marks(meta: MetaData) -> Table:
    return Table(
        MARK_TABLE,
        meta,
        Column("table_name", String(64), primary_key=True),
        Column("created_at", _timestamp(), nullable=False),
        mysql_charset="utf8mb4",
    )


def _decide(conn: Connection, audit_tables: frozenset[str], *, force: bool) -> tuple[str, ...]:
    """The demo tables to replace; ``DemoRefused`` if the demo must not proceed."""
    inspector = inspect(conn)
    existing = set(inspector.get_table_names())
    marked = _marked(conn, inspector, existing)
    present = tuple(name for name in DEMO_TABLES if name in existing)
    # A listed table whose columns are not the demo's was replaced by someone since.
    foreign = [
        name for name in present if name not in marked or _columns(inspector, name) != _SHAPES[name]
    ]
    if foreign:
        tables, were, them = (
            ("table", "was", "it") if len(foreign) == 1 else ("tables", "were", "them")
        )
        raise DemoRefused(
            f"{tables} {', '.join(foreign)} {were} not created by the demo: refusing to "
            f"replace {them}, even with --force (drop {them} yourself, or use another database)"
        )
    would = f"; it would replace {', '.join(present)} (made by an earlier demo)" if present else ""
    others = sorted(existing - set(DEMO_TABLES) - audit_tables - {MARK_TABLE})
    if others and not force:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise DemoRefused(
            f"database holds other tables ({shown}): refusing to create the demo there; "
            f"use --force to create it beside them{would}"
        )
    for name in sorted(existing - set(DEMO_TABLES)):
        for fk in inspector.get_foreign_keys(name):
            if fk["referred_table"] in present and fk.get("referred_schema") is None:
                raise DemoRefused(
                    f"table {name} references {fk['referred_table']}: refusing to replace the "
                    f"demo tables, even with --force{would}"
                )
    return present


def _marked(conn: Connection, inspector: Inspector, existing: set[str]) -> set[str]:
    """The tables an earlier demo listed as its own."""
    if MARK_TABLE not in existing:
        return set()
    columns = {column["name"] for column in inspector.get_columns(MARK_TABLE)}
    if "table_name" not in columns:
        raise DemoRefused(
            f"table {MARK_TABLE} was not created by the demo: refusing to use this database"
        )
    marks = _marks(MetaData())
    return set(conn.execute(select(marks.c.table_name)).scalars())


_SHAPES = {
    table.name: {column.name for column in table.columns} for table in demo_metadata().sorted_tables
}


def _columns(inspector: Inspector, name: str) -> set[str]:
    return {column["name"] for column in inspector.get_columns(name)}


def _drop(conn: Connection, names: tuple[str, ...]) -> None:
    if names:
        reflected = MetaData()
        reflected.reflect(conn, only=list(names))
        reflected.drop_all(conn, tables=[reflected.tables[name] for name in names])
