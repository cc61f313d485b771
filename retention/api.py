"""The Python API: validate, plan, run, verify, demo. The CLI is a thin shell over these.

Each function takes a frozen ``Settings`` and explicit arguments (``now`` included), and
returns data or raises an error from ``retention.errors``.

The commands that need no database are here; the others live in ``api_db.py`` (the
database's) and ``api_audit.py`` (the auditors'), and are named here too: each of those
modules is imported the first time one of its names is used, so that ``schema``,
``validate --offline`` and ``--help`` start without SQLAlchemy or a driver (PEP 562).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retention import __version__
from retention.ping import ping
from retention.policy.loader import LoadedPolicy, load_policy
from retention.policy.model import Policy, json_schema
from retention.settings import Settings

if TYPE_CHECKING:
    from retention.api_audit import (
        Certificate,
        KeyProof,
        audit_records,
        certificate,
        coverage,
        export,
        find_keys,
        oldest_kept,
    )
    from retention.api_db import (
        PlannedRule,
        PlanReport,
        audit_init,
        demo,
        demo_database_url,
        demo_hash_key,
        plan,
        read_heads,
        reflect_checked,
        run,
        serve,
        verify,
    )
    from retention.runner import RunResult

# Where each name of the API that needs a database is defined.
_LAZY = {
    **dict.fromkeys(
        (
            "Certificate",
            "KeyProof",
            "audit_records",
            "certificate",
            "coverage",
            "export",
            "find_keys",
            "oldest_kept",
        ),
        "retention.api_audit",
    ),
    **dict.fromkeys(
        (
            "PlanReport",
            "PlannedRule",
            "audit_init",
            "demo",
            "demo_database_url",
            "demo_hash_key",
            "plan",
            "read_heads",
            "read_only",
            "reflect_checked",
            "run",
            "serve",
            "verify",
        ),
        "retention.api_db",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Validation:
    loaded: LoadedPolicy
    checked_against: str | None  # the masked URL, or None when offline
    parked: tuple[str, ...] = ()  # disabled rules, not checked against the database


def load(settings: Settings) -> LoadedPolicy:
    return load_policy(settings.policy_file)


def parked_rules(policy: Policy, named: Sequence[str] = ()) -> frozenset[str]:
    """Disabled rules not named with --rule: checked offline only (SPEC 2)."""
    return frozenset(r.name for r in policy.rules if not r.enabled and r.name not in named)


def validate(settings: Settings, *, offline: bool = False) -> Validation:
    """Check the policy file (and, unless offline, hold it against the database)."""
    loaded = load(settings)
    if offline:
        return Validation(loaded, None)
    from retention.api_db import check_database  # noqa: PLC0415  (see the docstring)

    check_database(settings, loaded)
    parked = tuple(r.name for r in loaded.policy.rules if not r.enabled)
    return Validation(loaded, settings.masked_url(), parked)


def schema() -> dict[str, Any]:
    """The policy file's JSON Schema."""
    return json_schema()


def announce_start(settings: Settings) -> None:
    """Ping the dead-man's switch at the start of a one-shot run."""
    ping(_secret(settings.ping_url), "start")


def announce_end(
    settings: Settings, exit_code: int, result: RunResult | None, seconds: float
) -> None:
    """Export a one-shot run's metrics (textfile / Pushgateway) and ping with its exit code."""
    if result is not None and (settings.metrics_file or settings.pushgateway_url):
        # prometheus_client is loaded only for a run that exports metrics.
        from retention.metrics import Metrics  # noqa: PLC0415

        metrics = Metrics()
        metrics.observe(result, seconds)
        metrics.export(
            str(settings.metrics_file) if settings.metrics_file else None, settings.pushgateway_url
        )
    ping(_secret(settings.ping_url), str(exit_code))


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


__all__ = [
    "Certificate",
    "KeyProof",
    "PlanReport",
    "PlannedRule",
    "Validation",
    "__version__",
    "announce_end",
    "announce_start",
    "audit_init",
    "audit_records",
    "certificate",
    "coverage",
    "demo",
    "demo_database_url",
    "demo_hash_key",
    "export",
    "find_keys",
    "load",
    "oldest_kept",
    "plan",
    "read_heads",
    "reflect_checked",
    "run",
    "schema",
    "serve",
    "validate",
    "verify",
]
