"""The helpdesk's tables, in the style of a PHP ticket system on MariaDB.

A thread belongs to a ticket or to a task: ``(object_id, object_type)`` with ``T`` for a
ticket and ``A`` for a task, so ticket 7 and task 7 both have a thread with object_id 7.
Attachments are polymorphic the same way: ``object_type`` ``H`` for a thread entry, ``F``
for a knowledge-base article (FAQ). Like the application it imitates, the schema has no
foreign key on a polymorphic link; the one real foreign key (an entry's thread) has no ON
DELETE action. Times are DATETIME in UTC. The policy adapts to all of this.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    CHAR,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

TICKET, TASK = "T", "A"  # threads.object_type
ENTRY, FAQ = "H", "F"  # attachments.object_type


def metadata() -> MetaData:
    """The helpdesk's tables; nothing is created until ``create_all``."""
    meta = MetaData()
    options: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
    Table(
        "users",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(128), nullable=False),
        Column("email", String(255), nullable=False),
        Column("created", DateTime, nullable=False),
        **options,
    )
    Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("number", String(20), nullable=False, unique=True),
        Column("user_id", Integer, nullable=False),
        Column("status", String(16), nullable=False),  # open | closed
        Column("subject", String(255), nullable=False),
        Column("created", DateTime, nullable=False),
        Column("closed", DateTime, nullable=True),  # kept when a ticket is reopened
        **options,
    )
    Table(
        "tasks",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("number", String(20), nullable=False, unique=True),
        Column("title", String(255), nullable=False),
        Column("created", DateTime, nullable=False),
        Column("closed", DateTime, nullable=True),
        **options,
    )
    Table(
        "threads",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("object_id", Integer, nullable=False),
        Column("object_type", CHAR(1), nullable=False),
        Column("created", DateTime, nullable=False),
        UniqueConstraint("object_id", "object_type", name="uq_threads_object"),
        **options,
    )
    Table(
        "thread_entries",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("thread_id", Integer, ForeignKey("threads.id"), nullable=False),
        Column("user_id", Integer, nullable=True),  # NULL for an agent's reply
        Column("poster", String(128), nullable=False),
        Column("body", Text, nullable=False),
        Column("created", DateTime, nullable=False),
        Index("ix_thread_entries_thread_id", "thread_id"),
        **options,
    )
    Table(
        "attachments",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("object_id", Integer, nullable=False),
        Column("object_type", CHAR(1), nullable=False),
        Column("name", String(255), nullable=False),
        Column("size", Integer, nullable=False),
        Index("ix_attachments_object", "object_id", "object_type"),
        **options,
    )
    Table(
        "legal_holds",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=False),
        Column("reason", String(255), nullable=False),
        Column("placed", DateTime, nullable=False),
        Column("released", DateTime, nullable=True),
        **options,
    )
    return meta
