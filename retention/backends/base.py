"""The one seam between retention and a database engine (STYLE: "backends/").

Everything that differs between SQLite, PostgreSQL and MySQL/MariaDB is a method or
attribute of a ``Backend``; no module outside ``retention/backends/`` compares a dialect
name. One class per database (``sqlite.py``, ``postgresql.py``, ``mysql.py``) registers
itself by the SQLAlchemy dialect name it serves, as alembic's ``DefaultImpl`` subclasses do
with ``__dialect__``; ``backend_for`` picks the class for an engine or connection.

Anonymisation strategies are not methods here: they are SQLAlchemy constructs compiled
per dialect with ``@compiles`` (``retention/backends/strategies.py``); each backend module
registers the SQL of its own dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

from sqlalchemy import URL, ColumnElement, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import MetaData, Table

from retention.backends.errors import Conflict
from retention.backends.lag import Lag
from retention.backends.partitioning import E, RangePartition, WholeDrop
from retention.backends.sqlite_catalog import OddValues


class Backend(Protocol):
    """What differs per database. Instances are stateless and cheap."""

    #: the SQLAlchemy dialect name this backend serves ("sqlite", "postgresql", "mysql")
    dialect: ClassVar[str]

    # --- planning ---------------------------------------------------------------------
    #: whether a batch's selection locks its rows (``SELECT ... FOR UPDATE``)
    locks_rows: ClassVar[bool]
    #: whether a whole batch (selection, dependents, the rows) can run as one statement
    #: through data-modifying common table expressions (``planner/one_statement.py``)
    one_statement_batches: ClassVar[bool]

    def keys_in(self, cols: Sequence[Any], name: str) -> ColumnElement[bool]:
        """``cols IN :name`` for a list bound at run time, in the fastest form the
        database has (one array parameter, one JSON parameter, inline integers...)."""
        ...

    def uses_key_windows(self, key_cols: Sequence[Any]) -> bool:
        """Whether batches look for the next keys in a bounded window of the key."""
        ...

    # --- connecting -------------------------------------------------------------------
    #: what to install (and which URL form to use) when the URL's driver is missing
    driver_hint: ClassVar[str]

    def engine_url(self, url: URL, *, read_only: bool) -> URL:
        """The URL an engine opens: the driver this package installs where the URL names
        none, and for a command that only reads, a database opened without the power to
        create or change it."""
        ...

    def refuses_writes(self, conn: Connection) -> str | None:
        """Why the database cannot take writes now (a hot standby, a read-only server),
        or None; asked before a run's first write (exit 75)."""
        ...

    def interrupt(self, engine: Engine, conn: Connection) -> None:
        """Cancel the statement ``conn`` is running (a lock wait), from another thread;
        nothing when it runs none."""
        ...

    def interruptible(self, engine: Engine, stopping: Callable[[], bool]) -> Engine:
        """The engine a run writes through: its waits for locks end once ``stopping()``
        says so, where ``interrupt`` cannot end them (SQLite's busy wait)."""
        ...

    # --- sessions and transactions ----------------------------------------------------
    def engine_options(self, lock_timeout_ms: int) -> dict[str, Any]:
        """Keyword arguments for ``create_engine`` (pool, connect args)."""
        ...

    def install_session_setup(
        self, engine: Engine, lock_timeout_ms: int, hash_key: bytes | None
    ) -> None:
        """Session set-up on every new connection: time zone, bounded lock waits,
        registered functions, how transactions begin."""
        ...

    def for_writing(self, conn: Connection) -> Connection:
        """The connection a run writes batches through (isolation level)."""
        ...

    def read_only(self, engine: Engine) -> AbstractContextManager[Connection]:
        """A connection in a transaction that cannot write, where the database can say so."""
        ...

    def secret_params(self, hash_key: bytes) -> dict[str, Any]:
        """The HMAC pads as bound parameters of an anonymising statement (empty where
        a registered function holds the key)."""
        ...

    # --- locks ------------------------------------------------------------------------
    def ddl_lock(self, engine: Engine, conn: Connection, name: str) -> AbstractContextManager[None]:
        """Serialise DDL (creating the audit tables) across runs starting at once: holds
        the lock around a transaction it begins on ``conn`` and commits on leaving.

        The lock and the transaction go together because PostgreSQL's lock lives in the
        transaction and MySQL's must outlive its commit."""
        ...

    # --- replicas (max_lag) ---------------------------------------------------------------
    def replication_lag(self, conn: Connection) -> list[Lag]:
        """The lag of the replicas this server feeds, read on it (PostgreSQL's
        ``pg_stat_replication``, Galera's flow control); empty when it sees none."""
        ...

    def replica_lag(self, conn: Connection) -> Lag:
        """The lag of the replica ``conn`` is connected to (``RETENTION_REPLICA_URLS``)."""
        ...

    # --- reflection -------------------------------------------------------------------
    def before_reflection(self, metadata: MetaData) -> None:
        """Correct, as each column is reflected into ``metadata``, what SQLAlchemy's
        reflection reads wrongly on this database (a quoted name's escapes)."""
        ...

    def supplement_reflection(self, conn: Connection, tables: Iterable[Table]) -> None:
        """Add to the reflected ``tables`` what SQLAlchemy's reflection missed (unique
        constraints, ON DELETE actions), read from what the database enforces."""
        ...

    def odd_dates(
        self, conn: Connection, table: Table, names: Collection[str] | None = None
    ) -> dict[str, OddValues]:
        """The date/time columns of ``table`` (of those ``names``, when given) holding
        values that do not compare in time order (only where columns keep any value)."""
        ...

    def row_estimate(self, conn: Connection, table: Table) -> int | None:
        """The catalog's estimate of ``table``'s rows (statistics, never counted), or None
        where there is none. Only ever a hint for choosing how to count: it may be far
        off either way (counting.py)."""
        ...

    # --- partitions (retention/partitions.py) ------------------------------------------
    def range_partitions(
        self, conn: Connection, table: Table, column: str, cut: Any
    ) -> list[RangePartition]:
        """The partitions of ``table`` (none when it is not partitioned), each refused
        when it can never go whole: not a RANGE on ``column``, DEFAULT or MAXVALUE, or an
        upper bound above ``cut`` (compared as the column compares it)."""
        ...

    def partition_rows(self, statement: E, table: Table, partition: RangePartition) -> E:
        """``statement`` reading only ``partition``'s rows where it read ``table``'s."""
        ...

    def whole_drop(self, conn: Connection, table: Table, partition: RangePartition) -> WholeDrop:
        """The statements that take ``partition`` off ``table`` whole."""
        ...

    # --- reading back -----------------------------------------------------------------
    #: whether a column holds only values of its declared type (SQLite keeps any value,
    #: so a timestamp column can hold text that does not parse as one)
    enforces_column_types: ClassVar[bool]

    # --- the demo -------------------------------------------------------------------
    #: whether the database is on a server (not a file, nor the memory, of this process)
    is_server: ClassVar[bool]

    def follow_explicit_keys(self, conn: Connection, table: str, column: str, top: int) -> None:
        """After rows were inserted with their keys given, make the next generated key
        follow ``top`` (PostgreSQL's sequences do not move on explicit keys)."""
        ...

    # --- the audit table's append-only guard -------------------------------------------
    def install_append_only(self, conn: Connection, table: str) -> None: ...

    def remove_append_only(self, conn: Connection, table: str) -> None: ...

    # --- errors -----------------------------------------------------------------------
    def is_retryable(self, exc: DBAPIError) -> bool:
        """Deadlock, serialisation failure, lock wait timed out: worth a retry."""
        ...

    def conflict(self, exc: DBAPIError) -> Conflict | None:
        """What kind of conflict failed a batch (a retry, a smaller batch), or None when
        the error is not one a retry can get past."""
        ...

    def is_already_exists(self, exc: DBAPIError) -> bool:
        """Creating a table, trigger or row that another run (another Galera node) created
        first: the creation is looked at again, not failed."""
        ...

    def is_connect_failure(self, exc: DBAPIError) -> bool:
        """The server cannot be reached (exit 75)."""
        ...

    def is_configuration_error(self, exc: DBAPIError) -> bool:
        """Credentials refused, a database that does not exist (exit 78)."""
        ...
