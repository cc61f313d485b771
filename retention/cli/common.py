"""What every command shares: --policy and --database, and the settings built from them.

Errors are not handled here: they rise to the command group in ``cli/__init__.py``, the one
place that turns them into SPEC section 4's exit codes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from retention.logs import configure_logging
from retention.settings import load_settings

F = TypeVar("F", bound=Callable[..., Any])


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
        settings = load_settings(database_url=database, policy_file=policy)
        configure_logging(settings.log_format, settings.log_level)
        return func(settings, **kwargs)

    return wrapper  # type: ignore[return-value]
