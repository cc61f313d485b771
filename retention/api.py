"""The Python API: validate, plan, run, verify, demo. The CLI is a thin shell over these.

Each function takes a frozen ``Settings`` and explicit arguments (``now`` included), and
returns data or raises an error from ``retention.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from retention import __version__
from retention.catalog import Catalog, reflect
from retention.db import make_engine, reachable
from retention.errors import PolicyError
from retention.policy.loader import LoadedPolicy, load_policy
from retention.policy.model import json_schema
from retention.schema_check import check_schema, policy_tables
from retention.settings import Settings


@dataclass(frozen=True)
class Validation:
    loaded: LoadedPolicy
    checked_against: str | None  # the masked URL, or None when offline


def load(settings: Settings) -> LoadedPolicy:
    return load_policy(settings.policy_file)


def reflect_checked(engine: Engine, loaded: LoadedPolicy) -> Catalog:
    """Reflect the schema and hold the policy against it; ``PolicyError`` if it misfits."""
    with reachable(engine), engine.connect() as conn:
        catalog = reflect(conn, policy_tables(loaded.policy))
        conn.rollback()
    problems = check_schema(loaded.policy, catalog, loaded.locator)
    if problems:
        raise PolicyError(problems)
    return catalog


def validate(settings: Settings, *, offline: bool = False) -> Validation:
    """Check the policy file (and, unless offline, hold it against the database)."""
    loaded = load(settings)
    if offline:
        return Validation(loaded, None)
    engine = make_engine(settings)
    try:
        reflect_checked(engine, loaded)
    finally:
        engine.dispose()
    return Validation(loaded, settings.masked_url())


def schema() -> dict[str, Any]:
    """The policy file's JSON Schema."""
    return json_schema()


def demo(settings: Settings, *, force: bool = False, now: datetime | None = None) -> Any:
    """Create the demo database for the shipped policies.yaml."""
    from retention.demo import create_demo

    engine = make_engine(settings)
    try:
        with reachable(engine):
            return create_demo(engine, now=now or datetime.now(UTC), force=force)
    finally:
        engine.dispose()


__all__ = ["Validation", "__version__", "demo", "load", "reflect_checked", "schema", "validate"]
