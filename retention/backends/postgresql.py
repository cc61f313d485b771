"""PostgreSQL: row locks, one array parameter for a list of keys, advisory locks.

A session's waits for row locks are bounded (``lock_timeout``) and its clock is UTC. The
hash strategy computes HMAC-SHA-256 from the built-in ``sha256`` with the pads bound
(``pads.py``); ``truncate_ip`` goes through ``inet``, whose cast fails the whole UPDATE on
a malformed address, so only exact address forms reach it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    LargeBinary,
    Table,
    any_,
    bindparam,
    case,
    cast,
    event,
    func,
    literal,
    select,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, CIDR, INET
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import Date, DateTime, Text

from retention.backends import errors, strategies
from retention.backends.addresses import IPV4, IPV6
from retention.backends.defaults import APPEND_ONLY, DefaultBackend
from retention.backends.lag import Lag
from retention.backends.partitioning import RangePartition, WholeDrop
from retention.backends.registry import register

# Deadlock, serialisation failure, lock wait timed out: worth a retry.
RETRYABLE = frozenset({"40P01", "40001", "55P03"})
# duplicate_table, duplicate_object, unique_violation (a racing CREATE, the head row).
ALREADY_EXISTS = frozenset({"42P07", "42710", "23505"})
# Each standby's (or logical subscriber's) replay lag and the bytes it has yet to replay;
# replay_lag is measured when the standby reports, which a paused or stuck standby does
# only every wal_receiver_status_interval: the time since its last report is added.
REPLICATION_LAG_QUERY = (
    "SELECT application_name, "
    "EXTRACT(EPOCH FROM replay_lag + GREATEST(now() - reply_time, interval '0')), "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication"
)
# pg_stat_replication hides the positions from a role without pg_read_all_stats.
REPLAY_UNKNOWN = "replay position not visible (grant pg_monitor to the run's role)"
# The partitions of a table (none when it is not partitioned), with their bounds and
# whether the table is RANGE-partitioned on :column alone.
PARTITIONS_QUERY = (
    "SELECT c.relname, n.nspname, c.relkind, pg_get_expr(c.relpartbound, c.oid), "
    "pg_get_partkeydef(i.inhparent) = 'RANGE (' || quote_ident(:column) || ')' "
    "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class t ON t.oid = i.inhparent "
    "WHERE i.inhparent = CAST(:parent AS regclass) AND t.relkind = 'p' ORDER BY c.relname"
)
# The upper bound of a partition of one column: FOR VALUES FROM (...) TO ('2025-02-01...')
_UPPER = re.compile(r"\bTO \((.*)\)$")
# A dependent row another transaction added to a batch's row while the batch waited for
# its lock: one statement per batch reads the snapshot taken before that wait, misses the
# row, and the foreign key refuses the delete. The batch rolls back; a retry sees the row.
FOREIGN_KEY_VIOLATION = "23503"
# Password refused, no such role, no such database.
CONFIGURATION = frozenset({"28P01", "28000", "3D000"})
# The same refusals while connecting, where psycopg has no SQLSTATE, only libpq's text.
_REFUSED_AT_CONNECT = (
    "password authentication failed",
    "no pg_hba.conf entry",
    'fatal:  role "',
    'fatal:  database "',
)


def lock_id(scope: str, name: str) -> int:
    """A stable signed 64-bit id for PostgreSQL's advisory lock functions."""
    digest = hashlib.sha256(f"retention:{scope}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@register
class PostgreSQLBackend(DefaultBackend):
    dialect = "postgresql"
    # ``postgres://`` is what Heroku, Render and libpq-style tools hand out.
    spellings = ("postgres",)
    driver_hint = "install retention[postgres] (psycopg 3) and use postgresql+psycopg://"
    # Data-modifying WITH: one round trip per batch, all of it in one snapshot.
    one_statement_batches = True

    def engine_url(self, url: URL, *, read_only: bool) -> URL:
        if url.drivername in {"postgres", "postgresql"}:
            # The driver the [postgres] extra installs, not SQLAlchemy's psycopg2 default.
            return url.set(drivername="postgresql+psycopg")
        return url

    def refuses_writes(self, conn: Connection) -> str | None:
        standby, read_only = conn.execute(
            text("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
        ).one()
        if standby:
            return "the server is a hot standby (in recovery); run against the primary"
        if read_only == "on":
            return "the database is read-only (default_transaction_read_only)"
        return None

    def interrupt(self, engine: Engine, conn: Connection) -> None:
        # A cancel request on a connection of its own; the server ignores it when idle.
        conn.connection.dbapi_connection.cancel()  # type: ignore[union-attr]

    def keys_in(self, cols: Sequence[Any], name: str) -> ColumnElement[bool]:
        if len(cols) == 1:
            # One array parameter instead of one parameter per key.
            return cols[0] == any_(bindparam(name, type_=ARRAY(cols[0].type)))  # type: ignore[no-any-return]
        return super().keys_in(cols, name)

    def row_estimate(self, conn: Connection, table: Table) -> int | None:
        # reltuples is -1 (PostgreSQL 14+) or 0 until the table is first analysed.
        name = conn.dialect.identifier_preparer.format_table(table)
        found = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": name}
        ).scalar()
        return int(found) if found is not None and found > 0 else None

    def install_session_setup(
        self, engine: Engine, lock_timeout_ms: int, hash_key: bytes | None
    ) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
            cur.execute("SET TIME ZONE 'UTC'")
            cur.close()
            dbapi_connection.commit()

    @contextmanager
    def read_only(self, engine: Engine) -> Iterator[Connection]:
        with engine.connect() as raw:
            conn = raw.execution_options(postgresql_readonly=True)
            with conn.begin():
                yield conn

    @contextmanager
    def ddl_lock(self, engine: Engine, conn: Connection, name: str) -> Iterator[None]:
        with conn.begin():
            key = lock_id("audit-ddl", name)
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            yield

    def follow_explicit_keys(self, conn: Connection, table: str, column: str, top: int) -> None:
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence(:table, :column), :top)"),
            {"table": table, "column": column, "top": top},
        )

    def install_append_only(self, conn: Connection, table: str) -> None:
        q = self.quote(conn, table)
        trigger = self.quote(conn, f"{table}_append_only")
        conn.execute(
            text(
                "CREATE OR REPLACE FUNCTION retention_append_only() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                f"RAISE EXCEPTION '{APPEND_ONLY}' USING ERRCODE = 'insufficient_privilege'; "
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
        truncate = self.quote(conn, f"{table}_no_truncate")
        conn.execute(text(f"DROP TRIGGER IF EXISTS {truncate} ON {q}"))
        conn.execute(
            text(
                f"CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {q} "
                "FOR EACH STATEMENT EXECUTE FUNCTION retention_append_only()"
            )
        )

    def remove_append_only(self, conn: Connection, table: str) -> None:
        q = self.quote(conn, table)
        for suffix in ("append_only", "no_truncate"):
            trigger = self.quote(conn, f"{table}_{suffix}")
            conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger} ON {q}"))

    def is_retryable(self, exc: DBAPIError) -> bool:
        return errors.sqlstate(exc.orig) in RETRYABLE

    def range_partitions(
        self, conn: Connection, table: Table, column: str, cut: Any
    ) -> list[RangePartition]:
        parent = conn.dialect.identifier_preparer.format_table(table)
        found = []
        params = {"parent": parent, "column": column}
        for name, schema, kind, bound, on_clock in conn.execute(text(PARTITIONS_QUERY), params):
            refused = None
            upper = _UPPER.search(bound)
            if not on_clock:
                refused = f"the table is not RANGE-partitioned on {column} alone"
            elif kind != "r":
                refused = "it is partitioned itself"
            elif upper is None:
                refused = "it is the DEFAULT partition"
            elif upper.group(1) == "MAXVALUE":
                refused = "its upper bound is MAXVALUE"
            elif not _before(conn, table.c[column], upper.group(1), cut):
                refused = "it reaches past the cutoff"
            found.append(RangePartition(name, schema, refused))
        return found

    def whole_drop(self, conn: Connection, table: Table, partition: RangePartition) -> WholeDrop:
        # DDL is transactional here: the partition is detached (which takes the parent's
        # lock), checked, read and dropped in the audit record's own transaction.
        q = conn.dialect.identifier_preparer
        part = f"{q.quote_schema(partition.schema or 'public')}.{q.quote(partition.name)}"
        return WholeDrop(
            rows_in=partition.name,
            take=(f"ALTER TABLE {q.format_table(table)} DETACH PARTITION {part}",),
            remove=(f"DROP TABLE {part}",),
        )

    def conflict(self, exc: DBAPIError) -> errors.Conflict | None:
        if errors.sqlstate(exc.orig) == FOREIGN_KEY_VIOLATION:
            return errors.Conflict.CONTENTION
        return super().conflict(exc)

    def replication_lag(self, conn: Connection) -> list[Lag]:
        # A standby that replayed every byte is not behind, whatever replay_lag still
        # shows (it is cleared only at the standby's next status message).
        found = []
        for name, seconds, behind in conn.execute(text(REPLICATION_LAG_QUERY)):
            source = f"standby {name or '(unnamed)'}"
            if behind is None:
                found.append(Lag(source, None, reason=REPLAY_UNKNOWN))
            elif behind <= 0:
                found.append(Lag(source, 0.0, 0))
            elif seconds is None:
                found.append(Lag(source, None, int(behind), "replay lag not measured yet"))
            else:
                found.append(Lag(source, float(seconds), int(behind)))
        return found

    def is_already_exists(self, exc: DBAPIError) -> bool:
        return errors.sqlstate(exc.orig) in ALREADY_EXISTS

    def is_configuration_error(self, exc: DBAPIError) -> bool:
        if errors.sqlstate(exc.orig) in CONFIGURATION:
            return True
        text = str(exc.orig).lower()
        return any(marker in text for marker in _REFUSED_AT_CONNECT)


def _before(conn: Connection, clock: Any, upper: str, cut: Any) -> bool:
    """Whether an upper bound as ``pg_get_expr`` prints it ('2025-02-01 00:00:00+00', 42)
    is at or before the cutoff, compared in the clock's own type."""
    literal_text = upper[1:-1].replace("''", "'") if upper.startswith("'") else upper
    bound = cast(bindparam("upper", literal_text, type_=Text()), clock.type)
    return bool(conn.execute(select(bound <= bindparam("cut", cut, type_=clock.type))).scalar())


@strategies.compiles_as(strategies.HmacHex, "postgresql")
def _hmac_hex(element: strategies.HmacHex) -> ColumnElement[Any]:
    inner = bindparam("hmac_inner", type_=LargeBinary())
    outer = bindparam("hmac_outer", type_=LargeBinary())
    message = func.convert_to(element.arg(0), literal("UTF8"))
    step = func.sha256(type_coerce(inner, LargeBinary()).op("||")(message))
    return func.encode(func.sha256(type_coerce(outer, LargeBinary()).op("||")(step)), "hex")


@strategies.compiles_as(strategies.Mask, "postgresql")
def _mask(element: strategies.Mask) -> ColumnElement[Any]:
    col, char, keep = element.arg(0), element.arg(1), element.keep
    hidden = func.greatest(func.char_length(col) - keep, 0)
    tail = func.right(col, keep) if keep else literal("")
    return func.repeat(char, hidden).op("||")(tail)


@strategies.compiles_as(strategies.TruncateIp, "postgresql")
def _truncate_ip(element: strategies.TruncateIp) -> ColumnElement[Any]:
    col = element.arg(0)
    if isinstance(col.type, INET | CIDR):
        return _truncate_address_column(col)
    inet = cast(col, INET())

    def net(bits: int) -> Any:
        return func.host(func.network(func.set_masklen(inet, bits)))

    return case(
        (col.regexp_match(IPV4), net(24)),
        (col.regexp_match(IPV6), net(48)),
        else_=col,
    )


def _truncate_address_column(col: Any) -> ColumnElement[Any]:
    """An inet value keeps its netmask length with the host bits past /24 (/48) zeroed; a
    cidr network narrower than /24 (/48) becomes that /24 (/48), a wider one stays."""
    bits = case((func.family(col) == 4, 24), else_=48)
    if isinstance(col.type, CIDR):
        return case((func.masklen(col) > bits, func.set_masklen(col, bits)), else_=col)
    network = cast(func.network(func.set_masklen(col, bits)), INET())
    return func.set_masklen(network, func.masklen(col), type_=col.type)


@strategies.compiles_as(strategies.TruncateDate, "postgresql")
def _truncate_date(element: strategies.TruncateDate) -> ColumnElement[Any]:
    col = element.arg(0)
    truncated = func.date_trunc(element.unit, col)
    if isinstance(col.type, Date) and not isinstance(col.type, DateTime):
        return cast(truncated, col.type)
    return truncated
