"""Append-only guards on the audit tables, where the database allows them.

A trigger on each audit table rejects UPDATE and DELETE (and TRUNCATE on PostgreSQL), so
the job's own role, or a careless script, cannot rewrite history. An owner can still drop
the trigger; the hash chain, verified against a head kept elsewhere, catches what the
owner does next. The head table is not guarded: it only serialises appends.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

_MESSAGE = "retention audit log is append-only"


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def install(conn: Connection, table: str) -> None:
    """Create the guard triggers on ``table`` (idempotent)."""
    q = _quote(conn, table)
    trigger = _quote(conn, f"{table}_append_only")
    backend = conn.dialect.name
    if backend == "postgresql":
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION retention_append_only() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                f"RAISE EXCEPTION '{_MESSAGE}' USING ERRCODE = 'insufficient_privilege'; "
                "END $$"
            )
        )
        conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger} ON {q}"))
        conn.execute(
            text(
                f"CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {q} "
                "FOR EACH ROW EXECUTE FUNCTION retention_append_only()"
            )
        )
        truncate = _quote(conn, f"{table}_no_truncate")
        conn.execute(text(f"DROP TRIGGER IF EXISTS {truncate} ON {q}"))
        conn.execute(
            text(
                f"CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {q} "
                "FOR EACH STATEMENT EXECUTE FUNCTION retention_append_only()"
            )
        )
    elif backend == "mysql":
        for event in ("UPDATE", "DELETE"):
            name = _quote(conn, f"{table}_no_{event.lower()}")
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
            conn.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE {event} ON {q} FOR EACH ROW "
                    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{_MESSAGE}'"
                )
            )
    elif backend == "sqlite":
        for event in ("UPDATE", "DELETE"):
            name = _quote(conn, f"{table}_no_{event.lower()}")
            conn.execute(
                text(
                    f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {event} ON {q} "
                    f"BEGIN SELECT RAISE(ABORT, '{_MESSAGE}'); END"
                )
            )


def remove(conn: Connection, table: str) -> None:
    """Drop the guard triggers, as an owner could (used by tamper tests and migrations)."""
    q = _quote(conn, table)
    backend = conn.dialect.name
    if backend == "postgresql":
        for suffix in ("append_only", "no_truncate"):
            conn.execute(text(f"DROP TRIGGER IF EXISTS {_quote(conn, f'{table}_{suffix}')} ON {q}"))
    else:
        for event in ("update", "delete"):
            conn.execute(text(f"DROP TRIGGER IF EXISTS {_quote(conn, f'{table}_no_{event}')}"))
