"""Appends records to the hash chain, inside the caller's transaction.

Appends are serialised by locking the one-row head table (``SELECT ... FOR UPDATE``; on
SQLite the write transaction itself is exclusive), so concurrent runs make one chain.
The head is locked last in a batch's transaction, after the batch's own rows, so the wait
is short and no lock cycle can form.

A record outside a batch (``run_started``, ``rule_finished``, ``run_finished``...) is
appended in a transaction of its own by ``append_committed``, retried on deadlocks,
serialisation and certification failures (two Galera nodes appending at once conflict
on the head row) and on a connection lost mid-commit; before each retry it looks whether
the record did commit, so each is written exactly once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from retention import __version__
from retention.audit.query import audit_keys_table, removed_key_digest
from retention.audit.records import (
    ZERO_HASH,
    audit_tables,
    record_hash,
    to_json_text,
    truncate_to_micros,
)
from retention.backends import backend_for, describe_error
from retention.leases import lease_table
from retention.logs import get_logger

log = get_logger("retention.audit")

#: attempts at a record outside a batch, and at creating the tables, before giving up
ATTEMPTS = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AuditWriter:
    """Writes one run's records; ``run_id`` ties them together."""

    table_name: str
    policy_sha256: str
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    clock: Callable[[], datetime] = utc_now
    version: str = __version__
    record_keys: bool = False
    #: the run was told to stop: a record the database refuses now is not retried (the
    #: run ends at once; the next run records it as interrupted)
    stopping: Callable[[], bool] = lambda: False
    records: Table = field(init=False)
    head: Table = field(init=False)
    keys: Table = field(init=False)
    last_hash: str | None = field(default=None, init=False)
    last_seq: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        metadata, self.records, self.head = audit_tables(self.table_name)
        self.keys = audit_keys_table(metadata, self.table_name)

    def append_keys(
        self, conn: Connection, hash_key: bytes, table_name: str, keys: Sequence[tuple[Any, ...]]
    ) -> None:
        """Per-key proof: one keyed digest per removed key, tied to the last batch record."""
        if not self.record_keys or not keys or self.last_seq is None:
            return
        rows = [
            {"seq": self.last_seq, "key_digest": removed_key_digest(hash_key, table_name, key)}
            for key in keys
        ]
        conn.execute(insert(self.keys), rows)

    def ensure_tables(self, engine: Engine) -> None:
        """Create the audit tables if absent; safe when several runs start at once."""
        ensure_audit_tables(engine, self.table_name, stopping=self.stopping)

    def append_committed(
        self,
        target: Engine | Connection,
        event: str,
        *,
        fence: Callable[[Connection], None] | None = None,
        ended_by: Sequence[str] = (),
        **fields: Any,
    ) -> str:
        """Append one record in a transaction of its own on ``target``; returns its hash.

        Retried on the errors the backend calls retryable and on a connection lost
        mid-commit; each attempt first looks for a record of this run (and rule) whose
        event is ``event`` or one of ``ended_by``, and returns that one's hash instead of
        writing a second. ``fence`` runs first in the same transaction (a lease check).
        """
        backend = backend_for(target)
        events = (event, *ended_by)
        for attempt in range(ATTEMPTS):
            try:
                with _transaction(target) as conn:
                    if fence is not None:
                        fence(conn)
                    found = self._written(conn, events, fields.get("run_id"), fields.get("rule"))
                    if found is not None:
                        return found
                    return self.append(conn, event, **fields)
            except DBAPIError as exc:
                ambiguous = exc.connection_invalidated
                last = attempt == ATTEMPTS - 1 or self.stopping()
                if last or not (ambiguous or backend.is_retryable(exc)):
                    raise
                log.warning("audit record retried", record=event, error=describe_error(exc))
                time.sleep(min(0.05 * 2**attempt, 2.0))
        raise AssertionError("unreachable")

    def _written(
        self, conn: Connection, events: Sequence[str], run_id: str | None, rule: str | None
    ) -> str | None:
        r = self.records
        rule_is = r.c.rule.is_(None) if rule is None else r.c.rule == rule
        query = select(r.c.hash).where(
            r.c.run_id == (run_id or self.run_id), r.c.event.in_(events), rule_is
        )
        found = conn.execute(query.limit(1)).scalar()
        return None if found is None else str(found)

    def append(
        self,
        conn: Connection,
        event: str,
        *,
        rule: str | None = None,
        table_name: str | None = None,
        action: str | None = None,
        cutoff: datetime | None = None,
        row_count: int | None = None,
        dependents: dict[str, int] | None = None,
        key_digest: str | None = None,
        details: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Append one record in ``conn``'s open transaction; returns its hash.

        ``run_id`` defaults to this run's; it names another run only when recording that
        a run died without recording its end.
        """
        tip = conn.execute(
            select(self.head.c.seq, self.head.c.hash).where(self.head.c.id == 1).with_for_update()
        ).one()
        record: dict[str, Any] = {
            "seq": int(tip.seq) + 1,
            "run_id": run_id or self.run_id,
            "at": truncate_to_micros(self.clock()),
            "event": event,
            "rule": rule,
            "table_name": table_name,
            "action": action,
            "cutoff": truncate_to_micros(cutoff) if cutoff is not None else None,
            "row_count": row_count,
            "dependents": to_json_text(dependents),
            "key_digest": key_digest,
            "policy_sha256": self.policy_sha256,
            "version": self.version,
            "details": to_json_text(details),
            "prev_hash": tip.hash,
        }
        record["hash"] = record_hash(tip.hash, record)
        conn.execute(insert(self.records).values(record))
        conn.execute(
            update(self.head)
            .where(self.head.c.id == 1)
            .values(seq=record["seq"], hash=record["hash"])
        )
        self.last_hash = record["hash"]
        self.last_seq = record["seq"]
        return str(record["hash"])


def ensure_audit_tables(
    engine: Engine, table_name: str, *, stopping: Callable[[], bool] = lambda: False
) -> None:
    """Create (or complete) the audit and lease tables and the append-only guards.

    Takes a lock around the creation, so several runs starting at once on an empty
    database create them once. Galera's named locks are local to a node while its DDL
    replicates in total order, so there a second node's CREATE can find the table made
    meanwhile: the creation is looked at again and completed. When the tables exist,
    nothing is created, so a role without DDL rights can run (``retention audit init``
    creates them up front). Once ``stopping()`` (a run told to stop), nothing is retried.
    """
    backend = backend_for(engine)
    for attempt in range(ATTEMPTS):
        try:
            _ensure_audit_tables(engine, table_name)
            return
        except DBAPIError as exc:
            raced = isinstance(exc, IntegrityError) or backend.is_already_exists(exc)
            last = attempt == ATTEMPTS - 1 or stopping()
            if last or not (raced or backend.is_retryable(exc)):
                raise
            log.info("audit tables created meanwhile; looking again", error=describe_error(exc))
            time.sleep(0.1 * (attempt + 1))


def _ensure_audit_tables(engine: Engine, table_name: str) -> None:
    metadata, records, head = audit_tables(table_name)
    keys = audit_keys_table(metadata, table_name)
    leases = lease_table(metadata, table_name)
    backend = backend_for(engine)
    with engine.connect() as conn, backend.ddl_lock(engine, conn, table_name):
        inspector = inspect(conn)
        for table in (records, head, keys, leases):
            if inspector.has_table(table.name):
                continue
            metadata.create_all(conn, tables=[table], checkfirst=True)
            # Right after its table: a creation cut short by a racing node never leaves
            # a table made here without its guard.
            if table in (records, keys):
                backend.install_append_only(conn, table.name)
        if conn.execute(select(head.c.id).where(head.c.id == 1)).first() is None:
            conn.execute(insert(head).values(id=1, seq=0, hash=ZERO_HASH))


@contextmanager
def _transaction(target: Engine | Connection) -> Iterator[Connection]:
    if isinstance(target, Engine):
        with target.begin() as conn:
            yield conn
    else:
        with target.begin():
            yield target
