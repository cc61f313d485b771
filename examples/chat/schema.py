"""The chat server's tables, in the style of a Go chat server on PostgreSQL.

Every time is a BIGINT of Unix milliseconds (``create_at``, ``update_at``); ids are
26-character text. ``login_events`` has no primary key: its only unique column,
``event_id``, allows NULL, because rows imported from an older server carry none. The
schema is the application's; the policy adapts to it (``clock_unit``, ``key``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

ID = 26  # the application's ids: 26 characters of base32


def metadata() -> MetaData:
    """The four tables the policy reads; nothing is created until ``create_all``."""
    meta = MetaData()
    Table(
        "users",
        meta,
        Column("id", String(ID), primary_key=True),
        Column("username", String(64), nullable=False, unique=True),
        Column("email", String(128), nullable=False),
        Column("create_at", BigInteger, nullable=False),
    )
    Table(
        "posts",
        meta,
        Column("id", String(ID), primary_key=True),
        Column("user_id", String(ID), nullable=False),
        Column("channel_id", String(ID), nullable=False),
        Column("message", Text, nullable=False),
        Column("hashtags", String(1000), nullable=True),
        Column("is_pinned", Boolean, nullable=False),
        Column("create_at", BigInteger, nullable=False),
        Column("update_at", BigInteger, nullable=False),
        Index("idx_posts_create_at", "create_at"),
    )
    Table(
        "file_info",
        meta,
        Column("id", String(ID), primary_key=True),
        Column("creator_id", String(ID), nullable=False),
        Column("post_id", String(ID), nullable=True),
        Column("name", String(256), nullable=False),
        Column("size", BigInteger, nullable=False),
        Column("create_at", BigInteger, nullable=False),
        Column("last_access_at", BigInteger, nullable=True),
    )
    Table(
        "login_events",
        meta,
        Column("event_id", String(ID), nullable=True, unique=True),
        Column("user_id", String(ID), nullable=False),
        Column("ip_address", String(45), nullable=False),
        Column("user_agent", String(256), nullable=True),
        Column("create_at", BigInteger, nullable=False),
    )
    return meta
