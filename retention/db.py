"""Engines: one per command, with row values kept out of every log and error.

``hide_parameters=True`` keeps bound values out of SQLAlchemy's exception text and logs.
What a session needs on each database (bounded lock waits, UTC, SQLite's functions) is set
up by its backend (``retention.backends``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from retention.backends import backend_for
from retention.errors import DatabaseUnavailable
from retention.settings import Settings, mask_url


def make_engine(settings: Settings, *, hash_key: bytes | None = None) -> Engine:
    """An engine for the configured database; nothing is connected yet."""
    url = make_url(settings.database_url.get_secret_value())
    backend = backend_for(url.get_backend_name())
    kwargs: dict[str, Any] = {"hide_parameters": True, "future": True}
    kwargs.update(backend.engine_options(settings.lock_timeout_ms))
    engine = create_engine(url, **kwargs)
    backend.install_session_setup(engine, settings.lock_timeout_ms, hash_key)
    return engine


@contextmanager
def reachable(engine: Engine) -> Iterator[None]:
    """Turn "cannot connect" into ``DatabaseUnavailable`` (exit 75) with a masked URL."""
    try:
        yield
    except OperationalError as exc:
        if backend_for(engine).is_connect_failure(exc):
            raise DatabaseUnavailable(mask_url(str(engine.url)), type(exc.orig).__name__) from None
        raise
