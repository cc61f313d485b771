"""``retention coverage``: the personal-looking columns no rule deletes or anonymises.

Parses its options, calls ``api.coverage`` and renders the report; ``--fail-on-uncovered``
turns an uncovered column into exit 1 for CI. ``register`` adds the command to the group.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from retention.cli.common import common_options
from retention.outcomes import ExitCode

if TYPE_CHECKING:
    from retention.settings import Settings


def register(group: click.Group) -> None:
    """Add ``coverage`` to ``group``."""

    @group.command()
    @click.option(
        "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
    )
    @click.option(
        "--fail-on-uncovered",
        is_flag=True,
        help="Exit 1 when a column looks personal and no rule covers it (for CI).",
    )
    @common_options
    def coverage(settings: Settings, output: str, fail_on_uncovered: bool) -> None:
        """List columns that look personal and no rule deletes or anonymises.

        Columns are judged by name and by a sample of values (never printed); a column
        the policy lists under coverage.ignore is shown as reviewed.
        """
        from retention import api
        from retention.coverage.render import coverage_data, coverage_text
        from retention.logs import get_logger

        report = api.coverage(settings)
        failed = fail_on_uncovered and bool(report.uncovered)
        if output == "json":
            data = coverage_data(report)
            data["exit_code"] = int(ExitCode.FAILED) if failed else 0
            click.echo(json.dumps(data, indent=2))
        else:
            click.echo(coverage_text(report))
        if failed:
            code = int(ExitCode.FAILED)
            get_logger().error(
                "command failed",
                exit_code=code,
                error=f"{len(report.uncovered)} personal columns are not covered by any rule",
                error_type="UncoveredColumns",
            )
            raise click.exceptions.Exit(code)
