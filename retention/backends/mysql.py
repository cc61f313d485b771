"""MySQL and MariaDB: row locks under READ COMMITTED, ``GET_LOCK``, byte-wise comparison.

A session's waits for row locks and for table locks (DDL) are bounded, and its clock is
UTC. Batches write under READ COMMITTED, so locking reads take no gap locks on the rows
they skip. ``GET_LOCK`` names are server-wide and at most 64 characters, so a name is a
hash of the database and the rule. Default collations ignore case, accents and trailing
spaces: text is compared as bytes where a result must match exactly.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    event,
    func,
    literal,
    text,
)
from sqlalchemy.dialects.mysql import base as mysql_base
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.types import Date, DateTime

from retention.backends import errors, mysql_partitions, strategies
from retention.backends.addresses import IPV4, IPV6
from retention.backends.defaults import DefaultBackend
from retention.backends.errors import Conflict
from retention.backends.lag import Lag
from retention.backends.mysql_partitions import OnePartition
from retention.backends.partitioning import E, RangePartition, WholeDrop, retarget
from retention.backends.registry import register
from retention.backends.types import INET4, INET6

# Lock wait timed out (after which only the statement was rolled back; the whole batch
# is rolled back by the caller), deadlock: worth a retry.
RETRYABLE = frozenset({1205, 1213})
# Galera refuses a write set over wsrep_max_ws_rows (1180) or wsrep_max_ws_size (1105, the
# generic "unknown error", so its fixed text is read too): a smaller batch gets past it.
WRITE_SET_ROWS = 1180
WRITE_SET_SIZE = (1105, "maximum writeset size exceeded")
SYNTAX_ERROR = 1064  # SHOW REPLICA STATUS on a server older than MariaDB 10.5 / MySQL 8.0.22
GALERA_STATUS_QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN "
    "('wsrep_flow_control_active', 'wsrep_local_recv_queue')"
)
# A table, trigger or index that another node created first (Galera replicates DDL in
# total order, so CREATE on three nodes at once fails on two), a duplicate head row, a
# table skipped by the catalog while another node's DDL changes it (1684).
ALREADY_EXISTS = frozenset({1050, 1061, 1062, 1359, 1684})
# Access denied (to the server, to the database), unknown database.
CONFIGURATION = frozenset({1044, 1045, 1049})
_DIALECTS = ("mysql", "mariadb")
# Reflected as themselves, not as NullType, so truncate_ip can accept them.
mysql_base.ischema_names.setdefault("inet4", INET4)
mysql_base.ischema_names.setdefault("inet6", INET6)
# Any of them 1: writes would be refused, by the server (a replica, a server in
# maintenance) or in this session (a proxy or an init_connect that makes sessions
# SET SESSION TRANSACTION READ ONLY).
READ_ONLY_QUERY = "SELECT @@global.read_only, @@global.innodb_read_only, @@session.tx_read_only"


def lock_name(database: str, scope: str, name: str) -> str:
    """A GET_LOCK name: server-wide, so it includes the database; at most 64 characters."""
    digest = hashlib.sha256(f"{database}:{scope}:{name}".encode()).hexdigest()
    return f"retention:{digest[:48]}"


def galera(cursor: Any) -> bool:
    """Whether the session's server is a Galera node with replication on (``wsrep_on``)."""
    cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
    row = cursor.fetchone()
    return row is not None and str(row[1]).upper() == "ON"


@register
class MySQLBackend(DefaultBackend):
    dialect = "mysql"
    aliases = ("mariadb",)
    driver_hint = "install retention[mysql] (PyMySQL) and use mysql+pymysql://"
    append_only_trigger = (
        "DROP TRIGGER IF EXISTS {name}",
        "CREATE TRIGGER {name} BEFORE {event} ON {table} FOR EACH ROW "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'",
    )

    def refuses_writes(self, conn: Connection) -> str | None:
        read_only, innodb_read_only, session = conn.execute(text(READ_ONLY_QUERY)).one()
        if read_only or innodb_read_only:
            name = "read_only" if read_only else "innodb_read_only"
            return f"the server is read-only ({name}: a replica?); run against the primary"
        if session:
            return "the session is read-only (tx_read_only: set by a proxy or init_connect?)"
        return None

    def interrupt(self, engine: Engine, conn: Connection) -> None:
        # KILL QUERY ends the statement, not the session (error 1317 on it); an idle
        # session is not affected.
        thread = int(conn.connection.dbapi_connection.thread_id())  # type: ignore[union-attr]
        with engine.connect() as other:
            other.exec_driver_sql(f"KILL QUERY {thread}")

    def keys_in(self, cols: Sequence[Any], name: str) -> ColumnElement[bool]:
        if len(cols) == 1 and isinstance(cols[0].type, Integer):
            # PyMySQL interpolates parameters client-side, so the server receives the
            # integers inline either way; rendering them once as literals skips one bind
            # name per key in SQLAlchemy and one escape per key in PyMySQL.
            inline: Any = bindparam(name, expanding=True, literal_execute=True)
            return cols[0].in_(inline)  # type: ignore[no-any-return]
        return super().keys_in(cols, name)

    def uses_key_windows(self, key_cols: Sequence[Any]) -> bool:
        # A bounded range of one integer key lets MariaDB evaluate `[NOT] EXISTS` per row
        # by primary key instead of materialising the related table for every batch.
        return len(key_cols) == 1 and isinstance(key_cols[0].type, Integer)

    def row_estimate(self, conn: Connection, table: Table) -> int | None:
        # InnoDB's TABLE_ROWS is sampled: off by a factor of 2 or more is usual.
        found = conn.execute(
            text(
                "SELECT TABLE_ROWS FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :name"
            ),
            {"schema": table.schema, "name": table.name},
        ).scalar()
        return int(found) if found is not None else None

    def engine_options(self, lock_timeout_ms: int) -> dict[str, Any]:
        return {"pool_pre_ping": True}

    def before_reflection(self, metadata: MetaData) -> None:
        # SQLAlchemy reads column names from SHOW CREATE TABLE without undoing the
        # doubled backtick that escapes one inside a quoted name: `e``mail` came back as
        # e``mail, and every statement naming it failed (1054 unknown column).
        @event.listens_for(metadata, "column_reflect")
        def _unescape(_inspector: Any, _table: Table, column: dict[str, Any]) -> None:
            column["name"] = column["name"].replace("``", "`")

    def install_session_setup(
        self, engine: Engine, lock_timeout_ms: int, hash_key: bytes | None
    ) -> None:
        seconds = max(1, math.ceil(lock_timeout_ms / 1000))

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {seconds}")
            # Table locks (LOCK TABLES, DDL) wait on lock_wait_timeout, a year by default.
            cur.execute(f"SET SESSION lock_wait_timeout = {seconds}")
            cur.execute("SET SESSION time_zone = '+00:00'")
            if galera(cur):
                # Causal reads: each read waits until this node has applied every write the
                # cluster committed before it, so plan, validate, verify and the lease
                # checks see every committed batch, on whichever node they run.
                cur.execute("SET SESSION wsrep_sync_wait = 1")
            cur.close()

    def for_writing(self, conn: Connection) -> Connection:
        return conn.execution_options(isolation_level="READ COMMITTED")

    @contextmanager
    def read_only(self, engine: Engine) -> Iterator[Connection]:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
            conn.commit()
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.exec_driver_sql("SET SESSION TRANSACTION READ WRITE")
                conn.commit()

    @contextmanager
    def ddl_lock(self, engine: Engine, conn: Connection, name: str) -> Iterator[None]:
        # DDL commits at once here, so the lock is a named one, held until the tables
        # and the head row are committed.
        key = lock_name(str(engine.url.database), "audit-ddl", name)
        conn.execute(text("SELECT GET_LOCK(:n, 60)"), {"n": key})
        conn.commit()
        try:
            with conn.begin():
                yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": key})
            conn.commit()

    def range_partitions(
        self, conn: Connection, table: Table, column: str, cut: Any
    ) -> list[RangePartition]:
        return mysql_partitions.range_partitions(conn, table, column, cut)

    def partition_rows(self, statement: E, table: Table, partition: RangePartition) -> E:
        return retarget(statement, table, OnePartition(table, partition.name))

    def whole_drop(self, conn: Connection, table: Table, partition: RangePartition) -> WholeDrop:
        return mysql_partitions.whole_drop(conn, table, partition)

    def is_retryable(self, exc: DBAPIError) -> bool:
        return errors.error_number(exc.orig) in RETRYABLE

    def conflict(self, exc: DBAPIError) -> Conflict | None:
        number = errors.error_number(exc.orig)
        if number == WRITE_SET_ROWS:
            return Conflict.WRITE_SET
        if number == WRITE_SET_SIZE[0]:
            args: tuple[Any, ...] = getattr(exc.orig, "args", ())
            message = str(args[1]).lower() if len(args) > 1 else ""
            return Conflict.WRITE_SET if WRITE_SET_SIZE[1] in message else None
        return Conflict.CONTENTION if number in RETRYABLE else None

    def replication_lag(self, conn: Connection) -> list[Lag]:
        # A Galera node sees its cluster: flow control pauses every node's writes while
        # one node's receive queue is too long, so a batch then waits for it.
        rows = conn.execute(text(GALERA_STATUS_QUERY)).all()
        status: dict[str, str] = {str(name): str(value) for name, value in rows}
        if status.get("wsrep_flow_control_active", "false").lower() not in ("true", "on"):
            return []
        queue = status.get("wsrep_local_recv_queue", "?")
        reason = f"flow control active (this node's receive queue: {queue})"
        return [Lag("galera cluster", None, reason=reason)]

    def replica_lag(self, conn: Connection) -> Lag:
        try:
            rows = conn.execute(text("SHOW REPLICA STATUS")).mappings().all()
        except DBAPIError as exc:
            if errors.error_number(exc.orig) != SYNTAX_ERROR:
                raise
            rows = conn.execute(text("SHOW SLAVE STATUS")).mappings().all()  # before 10.5
        if not rows:
            return Lag("replica", None, reason="not a replica (SHOW REPLICA STATUS is empty)")
        behind = [r.get("Seconds_Behind_Master", r.get("Seconds_Behind_Source")) for r in rows]
        if any(b is None for b in behind):
            return Lag("replica", None, reason="replication is stopped (no Seconds_Behind)")
        return Lag("replica", float(max(int(b) for b in behind)))

    def is_already_exists(self, exc: DBAPIError) -> bool:
        return errors.error_number(exc.orig) in ALREADY_EXISTS

    def is_configuration_error(self, exc: DBAPIError) -> bool:
        return errors.error_number(exc.orig) in CONFIGURATION


@compiles(strategies.AsBytes, *_DIALECTS)
def _as_bytes(element: strategies.AsBytes, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS BINARY)"


@strategies.compiles_as(strategies.Concat, *_DIALECTS)
def _concat(element: strategies.Concat) -> ColumnElement[Any]:
    return func.concat(*element.clauses.clauses)


class _Utf8(ColumnElement[Any]):
    """``CONVERT(expr USING utf8mb4)``: text in one character set, whatever the column's."""

    inherit_cache = True

    def __init__(self, expr: ColumnElement[Any]) -> None:
        self.expr = expr
        self.type = String()


@compiles(_Utf8, *_DIALECTS)
def _utf8(element: _Utf8, compiler: Any, **kw: Any) -> str:
    return f"CONVERT({compiler.process(element.expr, **kw)} USING utf8mb4)"


def _utf8_bytes(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    """The UTF-8 bytes of text, as a binary string."""
    return strategies.AsBytes(_Utf8(expr))


@strategies.compiles_as(strategies.HmacHex, *_DIALECTS)
def _hmac_hex(element: strategies.HmacHex) -> ColumnElement[Any]:
    inner = bindparam("hmac_inner", type_=LargeBinary())
    outer = bindparam("hmac_outer", type_=LargeBinary())
    # The pads are arbitrary bytes: joined to text, CONCAT would read them in the text's
    # character set (error 1300 for any byte that is not valid there). Joined to the
    # text's UTF-8 bytes, everything stays binary, and a latin1 column hashes as UTF-8.
    # SHA2 returns hex; UNHEX gives the inner digest's bytes.
    step = func.unhex(func.sha2(func.concat(inner, _utf8_bytes(element.arg(0))), 256))
    return func.lower(func.sha2(func.concat(outer, step), 256))


@strategies.compiles_as(strategies.Mask, *_DIALECTS)
def _mask(element: strategies.Mask) -> ColumnElement[Any]:
    col, char, keep = element.arg(0), element.arg(1), element.keep
    hidden = func.greatest(func.char_length(col) - keep, 0)
    tail = func.right(col, keep) if keep else literal("")
    return func.concat(func.repeat(char, hidden), tail)


# MariaDB's PCRE '$' also matches before a final newline; '\z' is the end of the text
# only, as '$' is on PostgreSQL and in Python's fullmatch.
_IPV4, _IPV6 = (pattern[:-1] + r"\z" for pattern in (IPV4, IPV6))


@strategies.compiles_as(strategies.TruncateIp, *_DIALECTS)
def _truncate_ip(element: strategies.TruncateIp) -> ColumnElement[Any]:
    # One character set throughout (a latin1 column beside utf8mb4 literals and
    # INET6_NTOA's result is error 1270); the value goes back in the column's own.
    col = _Utf8(element.arg(0))
    v4 = func.concat(func.substring_index(col, ".", 3), ".0")
    raw = func.inet6_aton(col)
    v6 = func.inet6_ntoa(func.concat(func.substring(raw, 1, 6), func.unhex("00000000000000000000")))
    return case(
        (col.regexp_match(_IPV4), v4),
        (and_(col.regexp_match(_IPV6), raw.is_not(None)), v6),
        else_=col,
    )


@strategies.compiles_as(strategies.TruncateDate, *_DIALECTS)
def _truncate_date(element: strategies.TruncateDate) -> ColumnElement[Any]:
    col = element.arg(0)
    is_date_only = isinstance(col.type, Date) and not isinstance(col.type, DateTime)
    month = "%m" if element.unit == "month" else "01"
    fmt = f"%Y-{month}-01" + ("" if is_date_only else " 00:00:00")
    return func.date_format(col, fmt)
