"""One run per rule at a time: leases with fencing tokens (SPEC section 5).

A lease is a row of ``<audit table>_leases`` in the target database: its ``name``
(``rule:<rule>``, or ``run:<run id>`` for a run's own liveness), the ``owner`` run, a
fencing ``token`` bumped at every acquisition, and ``expires_at`` (UTC). The same SQL on
SQLite, PostgreSQL, MySQL/MariaDB and Galera:

- **taken** in a short committed transaction: an UPDATE of a row that expired (or was
  released), else an INSERT of a new one. Two runs racing for it are ordered by the
  database (a row lock, SQLite's write lock, Galera's certification); the loser's retry
  reads the winner's row and skips the rule, naming the holder;
- **renewed** every ``renew_seconds`` by a heartbeat thread on connections of its own, so
  a rule's ``sleep`` or a lag wait never lets it lapse;
- **checked** inside every batch's transaction (``Leases.check``): the batch extends the
  row only while it still names this run and token and has not expired, else the batch
  rolls back with ``LeaseLost``. A run that lost its lease (a pause longer than the lease,
  a dropped connection, another run that took over after the expiry) cannot commit
  another batch, whatever its session believes;
- **released** at the rule's end (expired at once; the row stays, so tokens keep rising),
  or deleted for a run's liveness lease.

A run is judged dead only when its ``run:`` lease expired (``runner.record_dead_runs``).
Expiry compares clocks of the machines running retention: they must agree (NTP) to well
within the lease length. A scheduled run (``serve``) names its ``slot``: a rule's lease
is not taken again for a slot another replica already ran.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    MetaData,
    Row,
    String,
    Table,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from retention.backends import backend_for, describe_error
from retention.backends.types import timestamp
from retention.errors import LeaseLost, LockNotAcquired
from retention.logs import get_logger

log = get_logger("retention.leases")

#: attempts at taking, renewing or releasing a lease that meets a deadlock, a
#: serialisation or certification failure, or a racing INSERT of the same row
ATTEMPTS = 8


def lease_table(metadata: MetaData, audit_table: str) -> Table:
    """``<audit table>_leases``: created with the audit tables (``audit init``)."""
    return Table(
        f"{audit_table}_leases",
        metadata,
        Column("name", String(100), primary_key=True),
        Column("owner", String(36), nullable=False),
        Column("token", BigInteger, nullable=False),
        Column("expires_at", timestamp(), nullable=False),
        # The scheduled time a `serve` replica last took the rule for, if any.
        Column("slot", String(40)),
    )


def rule_lease(rule: str) -> str:
    return f"rule:{rule}"


def run_lease(run_id: str) -> str:
    return f"run:{run_id}"


@dataclass(frozen=True)
class LeaseTerms:
    """How long a lease lasts unrenewed, and how often the heartbeat renews it."""

    seconds: float = 300.0
    renew_seconds: float = 100.0


@dataclass
class Lease:
    """A lease this run holds: its row's name and the fencing token it took it with."""

    name: str
    owner: str
    token: int
    lost: bool = False


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Leases:
    """One run's leases on one database."""

    engine: Engine
    audit_table: str
    owner: str
    terms: LeaseTerms = field(default_factory=LeaseTerms)
    clock: Callable[[], datetime] = utc_now
    #: the run was told to stop: a statement the database refuses now is not retried
    stopping: Callable[[], bool] = lambda: False
    table: Table = field(init=False)
    _held: dict[str, Lease] = field(default_factory=dict, init=False)
    _guard: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.table = lease_table(MetaData(), self.audit_table)

    # --- taking and giving back ----------------------------------------------------------

    @contextmanager
    def holding(
        self, name: str, *, slot: str | None = None, forget: bool = False
    ) -> Iterator[Lease]:
        """Hold lease ``name`` for the duration, renewed by the heartbeat; released after
        (``forget`` deletes the row). ``LockNotAcquired`` when another run holds it."""
        lease = self.take(name, slot=slot)
        with self._guard:
            self._held[name] = lease
        try:
            yield lease
        finally:
            with self._guard:
                self._held.pop(name, None)
            self.release(lease, forget=forget)

    def take(self, name: str, *, slot: str | None = None) -> Lease:
        for attempt in range(ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    return self._take(conn, name, slot)
            except IntegrityError:
                # Another run inserted the row first: the next attempt reads it.
                continue
            except DBAPIError as exc:
                self._retry_or_raise(exc, attempt, "take")
        raise LockNotAcquired(_bare(name), reason="the lease could not be taken (contention)")

    def _take(self, conn: Connection, name: str, slot: str | None) -> Lease:
        t, now = self.table, self._now()
        free = and_(t.c.name == name, or_(t.c.expires_at <= now, t.c.owner == self.owner))
        values: dict[str, Any] = {
            "owner": self.owner,
            "token": t.c.token + 1,
            "expires_at": now + self._length,
        }
        if slot is not None:
            free = and_(free, or_(t.c.slot.is_(None), t.c.slot != slot))
            values["slot"] = slot
        if conn.execute(update(t).where(free).values(values)).rowcount == 1:
            token = conn.execute(select(t.c.token).where(t.c.name == name)).scalar_one()
            return Lease(name, self.owner, int(token))
        row = conn.execute(select(t).where(t.c.name == name)).first()
        if row is None:
            conn.execute(
                insert(t).values(
                    name=name, owner=self.owner, token=1, expires_at=now + self._length, slot=slot
                )
            )
            return Lease(name, self.owner, 1)
        raise _not_taken(name, row, slot, now)

    def release(self, lease: Lease, *, forget: bool = False) -> None:
        """Give the lease back: expired now (or its row deleted). A failure is only
        logged: an unreleased lease expires on its own."""
        t = self.table
        mine = and_(t.c.name == lease.name, t.c.owner == lease.owner, t.c.token == lease.token)
        statement: Any = (
            delete(t).where(mine)
            if forget
            else update(t).where(mine).values(expires_at=self._now())
        )
        for attempt in range(ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    conn.execute(statement)
                return
            except DBAPIError as exc:
                try:
                    self._retry_or_raise(exc, attempt, "release")
                except DBAPIError:
                    log.warning(
                        "could not release a lease", lease=lease.name, error=describe_error(exc)
                    )
                    return

    # --- keeping it --------------------------------------------------------------------

    def check(self, conn: Connection, lease: Lease) -> None:
        """In the caller's (batch's) transaction: extend the lease while it still names
        this run and token and has not expired; ``LeaseLost`` otherwise, and the caller's
        transaction must roll back."""
        if not self._extend(conn, lease):
            lease.lost = True
            raise LeaseLost(lease.name, self._why_lost(conn, lease))

    def renew(self, lease: Lease) -> bool:
        """Extend the lease in a transaction of its own; False (and logged) once it is
        lost. A database error is logged and left to the next beat, but a pooled
        connection the server closed while idle (``idle_session_timeout``, a proxy) is
        replaced at once: beats far apart would otherwise always find theirs closed."""
        for attempt in range(2):
            try:
                with self.engine.begin() as conn:
                    if self._extend(conn, lease):
                        return True
                    lease.lost = True
                    reason = self._why_lost(conn, lease)
                break
            except DBAPIError as exc:
                if exc.connection_invalidated and attempt == 0:
                    continue
                log.warning("could not renew a lease", lease=lease.name, error=describe_error(exc))
                return not lease.lost
        with self._guard:
            given_back = self._held.get(lease.name) is not lease
        if not given_back:  # a beat racing the lease's release is no loss
            log.error("lease lost", lease=lease.name, reason=reason)
        return False

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Renew every held lease each ``renew_seconds``, from a thread, for the duration."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.terms.renew_seconds):
                with self._guard:
                    held = [lease for lease in self._held.values() if not lease.lost]
                for lease in held:
                    self.renew(lease)

        thread = threading.Thread(target=beat, name="retention-leases", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def _extend(self, conn: Connection, lease: Lease) -> bool:
        t, now = self.table, self._now()
        still_mine = and_(
            t.c.name == lease.name,
            t.c.owner == lease.owner,
            t.c.token == lease.token,
            t.c.expires_at > now,
        )
        extended = update(t).where(still_mine).values(expires_at=now + self._length)
        return bool(conn.execute(extended).rowcount == 1)

    def _why_lost(self, conn: Connection, lease: Lease) -> str:
        row = conn.execute(select(self.table).where(self.table.c.name == lease.name)).first()
        if row is None:
            return "its row is gone"
        if row.owner != lease.owner or int(row.token) != lease.token:
            return f"taken over by run {row.owner} (token {int(row.token)})"
        return f"expired at {_iso(row.expires_at)} (no renewal in {self.terms.seconds:g} s)"

    # --- reading -----------------------------------------------------------------------

    def holder(self, name: str) -> tuple[str, datetime] | None:
        """Who holds lease ``name`` now and until when, or None when it is free."""
        with self.engine.connect() as conn:
            row = conn.execute(select(self.table).where(self.table.c.name == name)).first()
        if row is None or row.expires_at <= self._now():
            return None
        return str(row.owner), row.expires_at

    @property
    def _length(self) -> timedelta:
        return timedelta(seconds=self.terms.seconds)

    def _now(self) -> datetime:
        # Stored without a zone, as UTC, the same on every database.
        return self.clock().astimezone(UTC).replace(tzinfo=None)

    def _retry_or_raise(self, exc: DBAPIError, attempt: int, what: str) -> None:
        retryable = backend_for(self.engine).is_retryable(exc) or exc.connection_invalidated
        if not retryable or attempt == ATTEMPTS - 1 or self.stopping():
            raise exc
        log.info("lease statement retried", action=what, error=describe_error(exc))
        time.sleep(min(0.02 * 2**attempt, 1.0))


def _bare(name: str) -> str:
    return name.split(":", 1)[1] if ":" in name else name


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_taken(name: str, row: Row[Any], slot: str | None, now: datetime) -> LockNotAcquired:
    if row.expires_at > now:
        return LockNotAcquired(
            _bare(name),
            holder=str(row.owner),
            expires_at=row.expires_at.replace(tzinfo=UTC),
            reason=f"lease held by run {row.owner} until {_iso(row.expires_at)}",
        )
    return LockNotAcquired(
        _bare(name),
        holder=str(row.owner),
        expires_at=row.expires_at.replace(tzinfo=UTC),
        reason=f"the scheduled run of {slot} was already done by run {row.owner}",
    )
