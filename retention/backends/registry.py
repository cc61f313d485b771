"""One backend instance per SQLAlchemy dialect name, registered by its class.

A backend's module is imported the first time its database is asked for, so a process
loads the SQL of the one database it talks to, not of all three (start-up time).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, TypeVar

from retention.errors import SettingsError

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from retention.backends.base import Backend

# Bound to the Protocol, so registering a class checks (statically) that it implements it.
_B = TypeVar("_B", bound="Backend")
_BACKENDS: dict[str, Backend] = {}
# Other spellings of a URL's scheme (``postgres://``), accepted but never advertised.
_SPELLINGS: dict[str, Backend] = {}
# The module whose import registers the backend of each dialect name (its class's
# ``dialect`` and ``aliases``), and the spellings of a URL's scheme it also accepts.
MODULES: dict[str, str] = {
    "mariadb": "retention.backends.mysql",
    "mysql": "retention.backends.mysql",
    "postgresql": "retention.backends.postgresql",
    "sqlite": "retention.backends.sqlite",
}
SPELLINGS: dict[str, str] = {"postgres": "postgresql"}


def register(cls: type[_B]) -> type[_B]:
    """Class decorator: ``cls`` serves its ``dialect``, its ``aliases`` and the URL
    ``spellings`` its ``engine_url`` rewrites."""
    instance = cls()
    for name in (cls.dialect, *getattr(cls, "aliases", ())):
        _BACKENDS[name] = instance
    for name in getattr(cls, "spellings", ()):
        _SPELLINGS[name] = instance
    return cls


def backend_for(target: Engine | Connection | str) -> Backend:
    """The backend of an engine, a connection, or a dialect name."""
    name = target if isinstance(target, str) else target.dialect.name
    module = MODULES.get(SPELLINGS.get(name, name))
    if module is not None:
        importlib.import_module(module)  # registers its class, once
    try:
        return _BACKENDS.get(name) or _SPELLINGS[name]
    except KeyError:
        known = ", ".join(MODULES)
        message = f"unsupported database {name!r}: retention works with {known}"
        raise SettingsError(message) from None
