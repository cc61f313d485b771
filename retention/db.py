"""Engines: one per command, with row values kept out of every log and error.

``hide_parameters=True`` keeps bound values out of SQLAlchemy's exception text and logs.
What a session needs on each database (bounded lock waits, UTC, SQLite's functions) is set
up by its backend (``retention.backends``), and so is what a URL means: the driver it
defaults to, and how a command that only reads opens the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, OperationalError

from retention.backends import backend_for, describe_error
from retention.errors import DatabaseBusy, DatabaseReadOnly, DatabaseUnavailable, SettingsError
from retention.settings import Settings, mask_url

_SHOWN_URL = "retention_shown_url"


def make_engine(
    settings: Settings, *, hash_key: bytes | None = None, read_only: bool = False
) -> Engine:
    """An engine for the configured database; nothing is connected yet.

    ``read_only``: the command only reads (plan, validate, verify, the audit reports), so
    the database is opened in a way that cannot create it (a mistyped SQLite path).
    A URL whose driver is not installed is a ``SettingsError`` naming what to install.
    """
    url = make_url(settings.require_database_url())
    backend = backend_for(url.get_backend_name())
    url = backend.engine_url(url, read_only=read_only)
    kwargs: dict[str, Any] = {"hide_parameters": True, "future": True}
    kwargs.update(backend.engine_options(settings.lock_timeout_ms))
    # Errors name the database as configured, not as rewritten for the driver.
    options: dict[str, Any] = {_SHOWN_URL: settings.masked_url()}
    if read_only:
        options["retention_readonly"] = True
    kwargs["execution_options"] = options
    try:
        engine = create_engine(url, **kwargs)
    except (ImportError, NoSuchModuleError):
        raise SettingsError(
            f"RETENTION_DATABASE_URL: the driver for {url.drivername}:// is not installed: "
            + (backend.driver_hint or "see the operations guide")
        ) from None
    backend.install_session_setup(engine, settings.lock_timeout_ms, hash_key)
    return engine


def shown_url(engine: Engine) -> str:
    """The engine's database as errors and reports name it: masked, as configured."""
    shown = engine.get_execution_options().get(_SHOWN_URL)
    return str(shown) if shown else mask_url(str(engine.url))


@contextmanager
def reachable(engine: Engine) -> Iterator[None]:
    """Turn "cannot connect" into ``DatabaseUnavailable`` (exit 75), and refused
    credentials or a database that does not exist into ``SettingsError`` (exit 78), with
    the URL masked and the driver's message left out."""
    try:
        yield
    except DBAPIError as exc:
        backend = backend_for(engine)
        if backend.is_configuration_error(exc):
            raise SettingsError(
                f"database {shown_url(engine)} refused the connection: the "
                f"credentials were refused or the database does not exist ({describe_error(exc)})"
            ) from None
        if isinstance(exc, OperationalError) and backend.is_connect_failure(exc):
            raise DatabaseUnavailable(shown_url(engine), type(exc.orig).__name__) from None
        raise


def require_writable(engine: Engine) -> None:
    """``DatabaseReadOnly`` (exit 75) when the database cannot take writes now (a hot
    standby, a read-only server): found before the first write, with the reason."""
    backend = backend_for(engine)
    with engine.connect() as conn:
        reason = backend.refuses_writes(conn)
        conn.rollback()
    if reason is not None:
        raise DatabaseReadOnly(shown_url(engine), reason)


@contextmanager
def lock_waits(engine: Engine, why_stopped: Callable[[], str | None]) -> Iterator[None]:
    """Turn a wait for a lock another connection holds, ended by a stop request (a signal,
    ``--max-runtime``) or by ``RETENTION_LOCK_TIMEOUT_MS``, into ``DatabaseBusy`` (exit 75:
    nothing could run now; whatever was committed is in the audit log)."""
    try:
        yield
    except DBAPIError as exc:
        if not backend_for(engine).is_retryable(exc):
            raise
        why = why_stopped() or "RETENTION_LOCK_TIMEOUT_MS ran out"
        raise DatabaseBusy(
            shown_url(engine), f"{why} while waiting for a lock another connection holds"
        ) from None
