"""Append-only guards on the audit tables, where the database allows them.

A trigger on each audit table rejects UPDATE and DELETE (and TRUNCATE on PostgreSQL), so
the job's own role, or a careless script, cannot rewrite history. An owner can still drop
the trigger; the hash chain, verified against a head kept elsewhere, catches what the
owner does next. The head table is not guarded: it only serialises appends. The triggers
themselves are each backend's (``Backend.install_append_only``).
"""

from __future__ import annotations

from sqlalchemy import Connection

from retention.backends import backend_for


def install(conn: Connection, table: str) -> None:
    """Create the guard triggers on ``table`` (idempotent)."""
    backend_for(conn).install_append_only(conn, table)


def remove(conn: Connection, table: str) -> None:
    """Drop the guard triggers, as an owner could (used by tamper tests and migrations)."""
    backend_for(conn).remove_append_only(conn, table)
