"""What every command shares: --policy/--database, settings, and errors -> exit codes.

The exit codes are SPEC section 4's; this is the one place exceptions become them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from retention.errors import (
    AuditTampered,
    ConfigError,
    DatabaseUnavailable,
    GuardTripped,
    PolicyError,
    RetentionError,
    RuleFailed,
    UsageError,
)
from retention.logs import configure_logging, get_logger
from retention.settings import load_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_GUARD = 3
EXIT_TAMPERED = 4
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78

F = TypeVar("F", bound=Callable[..., Any])


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an error (SPEC section 4)."""
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, RuleFailed):
        return EXIT_FAILED
    if isinstance(exc, GuardTripped):
        return EXIT_GUARD
    if isinstance(exc, DatabaseUnavailable):
        return EXIT_TEMPFAIL
    if isinstance(exc, AuditTampered):
        return EXIT_TAMPERED
    return EXIT_FAILED


def _fail(exc: BaseException) -> None:
    if isinstance(exc, PolicyError):
        for problem in exc.problems:
            click.echo(str(problem), err=True)
    elif isinstance(exc, RetentionError):
        click.echo(f"retention: {exc}", err=True)
    else:
        # An unexpected error: its text may quote row values (constraint messages do),
        # so only its class is shown.
        click.echo(f"retention: unexpected {type(exc).__name__}; see the logs", err=True)
    sys.exit(exit_code_for(exc))


def common_options(func: F) -> F:
    """--policy and --database on every command; settings built here, once."""

    @click.option(
        "--policy",
        "policy",
        type=click.Path(dir_okay=False),
        default=None,
        help="Policy file (default: $RETENTION_POLICY_FILE or policies.yaml).",
    )
    @click.option(
        "--database",
        "database",
        default=None,
        metavar="URL",
        help="Database URL (default: $RETENTION_DATABASE_URL or a SQLite file).",
    )
    @functools.wraps(func)
    def wrapper(policy: str | None, database: str | None, **kwargs: Any) -> Any:
        try:
            settings = load_settings(database_url=database, policy_file=policy)
            configure_logging(settings.log_format, settings.log_level)
            return func(settings, **kwargs)
        except (RetentionError, Exception) as exc:
            if isinstance(exc, click.exceptions.Exit | click.ClickException):
                raise
            get_logger().debug("command failed", error=type(exc).__name__)
            _fail(exc)

    return wrapper  # type: ignore[return-value]
