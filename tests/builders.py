"""Builders shared by every test file: policies, the feedback schema, CLI invocations.

A test states what it needs ("feedback with an email column, contacts without a foreign
key") and the builder makes it, so a schema is never rebuilt per file and a change to the
test tables happens in one place.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from click.testing import CliRunner
from conftest import HASH_KEY, ROOT
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from retention.audit.writer import ensure_audit_tables
from retention.cli import cli
from retention.leases import Lease, Leases, rule_lease, run_lease
from retention.settings import Settings

RETENTION = str(ROOT / ".venv" / "bin" / "retention")

# --- policies --------------------------------------------------------------------------


def write_policy(path: Path, policy: str | Mapping[str, Any]) -> Path:
    """Write a policy file: YAML text as given, or a mapping (written as JSON, which is YAML).

    Returns the path, so a test can hand it straight to ``--policy``.
    """
    text = policy if isinstance(policy, str) else json.dumps(policy, indent=1)
    path.write_text(text, encoding="utf-8")
    return path


def guardless_policy(body: str, *, head: str = "") -> str:
    """A policy whose guard never trips (``max_fraction: 1``), for tests about which rows
    go: ``head`` (a ``holds:`` registry, say) and then ``body``, the ``rules:``."""
    return "version: 1\ndefaults: {guard: {max_fraction: 1}}\n" + head + textwrap.dedent(body)


def rules_policy(rules: str) -> str:
    """``guardless_policy`` of ``rules``, a list of rules written without its ``rules:``."""
    return guardless_policy("rules:\n" + textwrap.indent(textwrap.dedent(rules), "  "))


# --- tables and rows -------------------------------------------------------------------

#: a timestamp column that keeps microseconds on MariaDB too
TS = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def dated_table(meta: MetaData, name: str, clock: str) -> Table:
    """``name`` (id, ``clock``): the least a rule needs, a key and a NOT NULL clock."""
    return Table(
        name,
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column(clock, DateTime, nullable=False),
    )


def holds_registry(meta: MetaData, *extra: Column[Any], name: str = "legal_holds") -> Table:
    """A legal-hold registry: (id, subject_id, released_at), both nullable, and ``extra``."""
    return Table(
        name,
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("subject_id", Integer, nullable=True),
        Column("released_at", TS, nullable=True),
        *extra,
    )


def create(engine: Engine, meta: MetaData, rows: Mapping[Table, Sequence[dict[str, Any]]]) -> None:
    """Create ``meta``'s tables and insert ``rows`` (per table; an empty list inserts none)."""
    meta.create_all(engine)
    with engine.begin() as conn:
        for table, values in rows.items():
            if values:
                conn.execute(insert(table), list(values))


def ids(engine: Engine, table: Table) -> list[int]:
    """The ``id`` of every row left, sorted."""
    with engine.connect() as conn:
        return sorted(conn.execute(select(table.c.id)).scalars())


# --- the feedback schema ---------------------------------------------------------------

# The extra columns the tests give their tables, by name; each test picks the ones its
# assertions read, so the canaries and column types stay those the test was written for.
COLUMNS: dict[str, Any] = {
    "user_id": lambda: Column("user_id", Integer, nullable=False),
    "account_id": lambda: Column("account_id", Integer),
    "ticket_id": lambda: Column("ticket_id", Integer),
    "email": lambda: Column("email", String(100)),
    "phone": lambda: Column("phone", String(40)),
    "channel": lambda: Column("channel", String(40), nullable=False),
    "body": lambda: Column("body", String(100)),
    "body200": lambda: Column("body", String(200)),
}


def _extra(names: Sequence[str | Column[Any]]) -> list[Column[Any]]:
    return [COLUMNS[name]() if isinstance(name, str) else name for name in names]


def feedback_schema(
    meta: MetaData | None = None,
    *,
    feedback: Sequence[str | Column[Any]] = (),
    contacts: Sequence[str | Column[Any]] | None = (),
    key_type: type[TypeEngine[int]] = Integer,
    foreign_key: bool = True,
    tickets: bool = False,
    holds: bool = False,
) -> MetaData:
    """``feedback`` (id, submitted_at, extra columns) and the tables around it.

    ``feedback_contacts`` (id, feedback_id) follows unless ``contacts`` is None; with
    ``foreign_key=False`` only the batch's transaction keeps children and parents together
    (an index on feedback_id stands in for the constraint's). ``tickets`` (id, status) and
    ``legal_holds`` (id, subject_id, released_at) are added on request. Nothing is created:
    call ``create_all`` on the result.
    """
    meta = meta if meta is not None else MetaData()
    Table(
        "feedback",
        meta,
        Column("id", key_type, primary_key=True, autoincrement=False),
        Column("submitted_at", DateTime, nullable=False),
        *_extra(feedback),
    )
    if contacts is not None:
        link: list[Any] = [ForeignKey("feedback.id")] if foreign_key else []
        index = [] if foreign_key else [Index("ix_feedback_contacts_feedback_id", "feedback_id")]
        Table(
            "feedback_contacts",
            meta,
            Column("id", key_type, primary_key=True, autoincrement=False),
            Column("feedback_id", key_type, *link, nullable=False),
            *_extra(contacts),
            *index,
        )
    if tickets:
        Table(
            "tickets",
            meta,
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("status", String(20), nullable=False),
        )
    if holds:
        Table(
            "legal_holds",
            meta,
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("subject_id", Integer, nullable=False),
            Column("released_at", DateTime, nullable=True),
        )
    return meta


# --- a helpdesk's schema (issue 11: real applications' schemas) -----------------------


def helpdesk_schema(meta: MetaData | None = None, *, notes: str | None = None) -> MetaData:
    """A helpdesk that owns its schema: ``threads`` and ``form_entries`` belong to a ticket
    or a task by ``object_type`` ('T' or 'A') and ``object_id``, with no foreign key;
    ``entries`` belong to a thread by a foreign key; tickets close at ``closed_at`` (and
    ``closed_ms``, Unix milliseconds); ``legal_holds`` name users.

    With ``notes``, ``ticket_notes`` (id, ticket_id, kind) refers to tickets by a foreign
    key whose ON DELETE is ``notes`` ('' for none). Nothing is created.
    """
    meta = meta if meta is not None else MetaData()
    Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=False),
        Column("status", String(10), nullable=False),
        Column("closed_at", DateTime),
        Column("closed_ms", BigInteger),
    )
    Table(
        "tasks",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("closed_at", DateTime),
    )
    Table(
        "threads",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("object_type", String(1), nullable=False),
        Column("object_id", Integer, nullable=False),
        Column("created_at", DateTime, nullable=False),
        Index("ix_threads_object", "object_id", "object_type"),
    )
    Table(
        "entries",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("thread_id", Integer, ForeignKey("threads.id"), nullable=False),
    )
    Table(
        "form_entries",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("object_type", String(1), nullable=False),
        Column("object_id", Integer),
        Column("email", String(100)),
        Index("ix_form_entries_object", "object_id", "object_type"),
    )
    Table(
        "legal_holds",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=False),
        Column("released_at", DateTime),
    )
    if notes is not None:
        Table(
            "ticket_notes",
            meta,
            Column("id", Integer, primary_key=True, autoincrement=False),
            Column("ticket_id", Integer, ForeignKey("tickets.id", ondelete=notes or None)),
            Column("kind", String(10), nullable=False),
        )
    return meta


# --- data subjects (issue 14: erasure requests, reapplying removals) ------------------


def subjects_schema(meta: MetaData | None = None) -> MetaData:
    """Users' data named by a text reference ``user_ref``: ``feedback`` (id, submitted_at,
    user_ref, ticket_id, email) with ``feedback_contacts`` (id, feedback_id by a foreign
    key, phone), ``tickets`` (id, status), ``access_log`` (id, logged_at, user_ref, ip) and
    ``legal_holds`` (id, subject_ref, released_at). Nothing is created."""
    meta = meta if meta is not None else MetaData()
    Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("status", String(20), nullable=False),
    )
    Table(
        "feedback",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("submitted_at", DateTime, nullable=False),
        Column("user_ref", String(40), nullable=False),
        Column("ticket_id", Integer),
        Column("email", String(100)),
    )
    Table(
        "feedback_contacts",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("feedback_id", Integer, ForeignKey("feedback.id"), nullable=False),
        Column("phone", String(40)),
    )
    Table(
        "access_log",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("logged_at", DateTime, nullable=False),
        Column("user_ref", String(40), nullable=False),
        Column("ip", String(45)),
    )
    Table(
        "legal_holds",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("subject_ref", String(40), nullable=False),
        Column("released_at", DateTime),
    )
    return meta


# --- leases ----------------------------------------------------------------------------


@contextmanager
def lease_held(
    engine: Engine,
    *,
    rule: str | None = None,
    run: str | None = None,
    owner: str = "00000000-0000-4000-8000-000000000000",
    audit_table: str = "retention_audit",
) -> Iterator[Lease]:
    """Another run's live lease on ``rule`` (or a run's liveness lease), for the duration."""
    ensure_audit_tables(engine, audit_table)
    name = rule_lease(rule) if rule is not None else run_lease(run or owner)
    with Leases(engine, audit_table, owner).holding(name) as lease:
        yield lease


# --- invoking the command line ----------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """What a command left: its exit code, its two streams apart and together."""

    exit_code: int
    stdout: str
    stderr: str
    output: str
    exception: BaseException | None


def invoke(
    args: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    catch_exceptions: bool = False,
) -> Invocation:
    """The CLI in-process; the logging it configures is put back afterwards.

    An exception other than the CLI's own exit propagates unless ``catch_exceptions``:
    a bug shows as its traceback, not as exit code 1.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    saved = structlog.get_config()
    try:
        result = CliRunner().invoke(
            cli, list(args), env=dict(env or {}), catch_exceptions=catch_exceptions
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**saved)
    return Invocation(
        result.exit_code, result.stdout, result.stderr, result.output, result.exception
    )


def cli_on(settings: Settings, *args: str) -> Invocation:
    """``retention ARGS`` in-process on ``settings``' database and policy, with the hash key."""
    url = settings.database_url.get_secret_value()
    env = {"RETENTION_HASH_KEY": HASH_KEY}
    return invoke([*args, "--database", url, "--policy", str(settings.policy_file)], env)


# --- the command line in a process of its own -------------------------------------------


def child_env(**variables: str) -> dict[str, str]:
    """The environment of a ``retention`` process a test starts: this one's without any
    ``RETENTION_`` variable, with the hash key and ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env.update(RETENTION_HASH_KEY=HASH_KEY, **variables)
    return env


def command(settings: Settings, *args: str) -> list[str]:
    """``retention ARGS --database URL --policy FILE`` for ``settings``."""
    url = settings.database_url.get_secret_value()
    return [RETENTION, *args, "--database", url, "--policy", str(settings.policy_file)]


@contextmanager
def started(
    args: Sequence[str], env: Mapping[str, str], cwd: Path
) -> Iterator[subprocess.Popen[str]]:
    """A ``retention`` process (text pipes), killed if the test leaves it running."""
    proc = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
