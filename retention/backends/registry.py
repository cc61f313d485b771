"""One backend instance per SQLAlchemy dialect name, registered by its class."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection, Engine

from retention.errors import SettingsError

if TYPE_CHECKING:
    from retention.backends.base import Backend

# Bound to the Protocol, so registering a class checks (statically) that it implements it.
_B = TypeVar("_B", bound="Backend")
_BACKENDS: dict[str, Backend] = {}
# Other spellings of a URL's scheme (``postgres://``), accepted but never advertised.
_SPELLINGS: dict[str, Backend] = {}


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
    try:
        return _BACKENDS.get(name) or _SPELLINGS[name]
    except KeyError:
        known = ", ".join(sorted(_BACKENDS))
        message = f"unsupported database {name!r}: retention works with {known}"
        raise SettingsError(message) from None
