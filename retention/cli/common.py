"""What every command shares: --policy and --database, and the settings built from them;
and ``LazyGroup``, a group that imports its commands' modules when one is asked for.

Errors are not handled here: they rise to the command group in ``cli/__init__.py``, the one
place that turns them into SPEC section 4's exit codes.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

import click

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
        # Imported when a command runs, not when --help lists it.
        from retention.logs import configure_logging
        from retention.settings import load_settings

        settings = load_settings(database_url=database, policy_file=policy)
        configure_logging(settings.log_format, settings.log_level)
        return func(settings, **kwargs)

    return wrapper  # type: ignore[return-value]


class LazyGroup(click.Group):
    """A group some of whose commands ``register(group)`` functions of other modules add
    (``"module:function"``), called the first time a command not yet added is asked for:
    the commands that need none of those modules do not import them."""

    def __init__(self, *args: Any, registers: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.registers = registers

    def _register(self) -> None:
        registers, self.registers = self.registers, ()
        for target in registers:
            module, function = target.split(":")
            getattr(importlib.import_module(module), function)(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._register()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._register()
        return super().get_command(ctx, cmd_name)
