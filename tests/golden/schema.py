"""The tables every golden case's policy names: the feedback schema and what surrounds it.

A case needing other tables puts its own ``schema.py`` (with ``build(meta)``) in its
directory; this one is used otherwise.
"""

from __future__ import annotations

from builders import feedback_schema
from sqlalchemy import Column, Date, DateTime, ForeignKey, Integer, MetaData, String, Table


def build(meta: MetaData) -> None:
    feedback_schema(
        meta,
        feedback=["account_id", "ticket_id", "email", "body200"],
        contacts=["email", "phone"],
        holds=True,
    )
    Table(
        "contact_notes",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("contact_id", Integer, ForeignKey("feedback_contacts.id"), nullable=False),
        Column("note", String(200)),
    )
    Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("account_id", Integer, nullable=True),
        Column("status", String(20), nullable=False),
        Column("subject", String(200)),
    )
    Table(
        "accounts",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("username", String(100), nullable=False),
        Column("email", String(100)),
        Column("phone", String(40)),
        Column("note", String(200)),
        Column("status", String(20), nullable=False),
        Column("last_ip", String(45)),
        Column("birth_date", Date),
        Column("closed_at", DateTime),
        Column("anonymised_at", DateTime),
    )
    Table(
        "access_log",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("account_id", Integer),
        Column("logged_at", DateTime, nullable=False),
        Column("ip_address", String(45)),
        Column("user_agent", String(200)),
        Column("ip_anonymised_at", DateTime),
    )
    Table(
        "sessions",
        meta,
        Column("token", String(64), primary_key=True),
        Column("created_at", DateTime, nullable=False),
    )
    Table(
        "order_lines",
        meta,
        Column("order_id", Integer, primary_key=True, autoincrement=False),
        Column("line_no", Integer, primary_key=True, autoincrement=False),
        Column("created_epoch", Integer, nullable=False),
        Column("address", String(200)),
    )
