"""``DefaultBackend``: what most databases do alike; each backend class overrides the rest
(as alembic's dialect ``Impl`` classes extend ``DefaultImpl``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from sqlalchemy import URL, ColumnElement, Connection, Engine, bindparam, text, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import MetaData, Table

from retention.backends import errors
from retention.backends.errors import Conflict
from retention.backends.lag import Lag
from retention.backends.pads import hmac_params
from retention.backends.partitioning import E, RangePartition, WholeDrop, like, retarget
from retention.backends.sqlite_catalog import OddValues

APPEND_ONLY = "retention audit log is append-only"


class DefaultBackend:
    dialect: ClassVar[str]
    #: other SQLAlchemy dialect names served by the same class ("mariadb")
    aliases: ClassVar[tuple[str, ...]] = ()
    locks_rows: ClassVar[bool] = True
    one_statement_batches: ClassVar[bool] = False
    #: whether the database is a server (not a file, nor memory, of this process)
    is_server: ClassVar[bool] = True
    enforces_column_types: ClassVar[bool] = True
    driver_hint: ClassVar[str] = ""
    #: the statements that make one BEFORE {event} trigger {name} on {table} refuse its
    #: event with APPEND_ONLY's {message}; one trigger each for UPDATE and DELETE
    append_only_trigger: ClassVar[tuple[str, ...]] = ()

    def keys_in(self, cols: Sequence[Any], name: str) -> ColumnElement[bool]:
        if len(cols) == 1:
            return cols[0].in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]
        return tuple_(*cols).in_(bindparam(name, expanding=True))

    def uses_key_windows(self, key_cols: Sequence[Any]) -> bool:
        return False

    def engine_options(self, lock_timeout_ms: int) -> dict[str, Any]:
        return {}

    def engine_url(self, url: URL, *, read_only: bool) -> URL:
        return url

    def refuses_writes(self, conn: Connection) -> str | None:
        return None

    def interrupt(self, engine: Engine, conn: Connection) -> None:
        return None

    def interruptible(self, engine: Engine, stopping: Callable[[], bool]) -> Engine:
        return engine  # a lock wait ends by ``interrupt`` (control.Watchdog)

    def for_writing(self, conn: Connection) -> Connection:
        return conn

    def secret_params(self, hash_key: bytes) -> dict[str, Any]:
        return dict(hmac_params(hash_key))

    @contextmanager
    def ddl_lock(self, engine: Engine, conn: Connection, name: str) -> Iterator[None]:
        with conn.begin():
            yield

    def follow_explicit_keys(self, conn: Connection, table: str, column: str, top: int) -> None:
        """After rows were inserted with their keys given, make the next generated key
        follow ``top`` (where inserting explicit keys does not move the generator)."""

    def before_reflection(self, metadata: MetaData) -> None:
        """SQLAlchemy reads these databases' column names as they are."""

    def supplement_reflection(self, conn: Connection, tables: Iterable[Table]) -> None:
        """SQLAlchemy's reflection reads these databases' catalogs whole."""

    def row_estimate(self, conn: Connection, table: Table) -> int | None:
        return None  # SQLite keeps no row estimate it maintains by itself

    def odd_dates(
        self, conn: Connection, table: Table, names: Collection[str] | None = None
    ) -> dict[str, OddValues]:
        return {}  # the column's type is enforced

    def range_partitions(
        self, conn: Connection, table: Table, column: str, cut: Any
    ) -> list[RangePartition]:
        return []  # no partitions (SQLite)

    def partition_rows(self, statement: E, table: Table, partition: RangePartition) -> E:
        return retarget(statement, table, like(table, partition.name, partition.schema))

    def whole_drop(self, conn: Connection, table: Table, partition: RangePartition) -> WholeDrop:
        raise NotImplementedError(f"{self.dialect} has no partitions to drop")

    def is_retryable(self, exc: DBAPIError) -> bool:
        return False

    def conflict(self, exc: DBAPIError) -> Conflict | None:
        return Conflict.CONTENTION if self.is_retryable(exc) else None

    def is_already_exists(self, exc: DBAPIError) -> bool:
        return False

    def replication_lag(self, conn: Connection) -> list[Lag]:
        return []

    def replica_lag(self, conn: Connection) -> Lag:
        reason = "not a replica whose lag can be read here (MySQL/MariaDB replicas only)"
        return Lag("replica", None, reason=reason)

    def is_connect_failure(self, exc: DBAPIError) -> bool:
        return errors.unreachable(exc)

    def is_configuration_error(self, exc: DBAPIError) -> bool:
        return False

    def install_append_only(self, conn: Connection, table: str) -> None:
        q = self.quote(conn, table)
        for event in ("UPDATE", "DELETE"):
            name = self.quote(conn, f"{table}_no_{event.lower()}")
            for statement in self.append_only_trigger:
                sql = statement.format(name=name, event=event, table=q, message=APPEND_ONLY)
                conn.execute(text(sql))

    def remove_append_only(self, conn: Connection, table: str) -> None:
        for event in ("update", "delete"):
            name = self.quote(conn, f"{table}_no_{event}")
            conn.execute(text(f"DROP TRIGGER IF EXISTS {name}"))

    @staticmethod
    def quote(conn: Connection, name: str) -> str:
        return conn.dialect.identifier_preparer.quote(name)
