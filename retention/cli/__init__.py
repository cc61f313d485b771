"""The command line: parse, call one api function, render, map errors to exit codes.

No SQL and no YAML parsing here. This module alone calls ``sys.exit`` and maps errors to
SPEC section 4's exit codes (``RetentionGroup``); the auditors' commands are in
``audit.py``, the shared --policy/--database options in ``common.py``.

A command imports what it uses when it runs (``api`` and ``render`` included), and the
``audit`` group loads ``audit.py`` when one of its commands is asked for: ``--help``,
``schema`` and ``validate --offline`` start without SQLAlchemy, a driver, APScheduler or
prometheus_client (``tests/test_startup.py``).
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from retention import __version__
from retention.cli.common import LazyGroup, common_options
from retention.cli.coverage import register as _register_coverage
from retention.cli.erase import register as _register_erase
from retention.errors import (
    AuditTampered,
    ConfigError,
    DatabaseUnavailable,
    PolicyError,
    RetentionError,
    RuleFailed,
    UsageError,
)
from retention.outcomes import ExitCode

if TYPE_CHECKING:
    from retention.api_db import PlanReport
    from retention.settings import Settings

EXIT_FAILED = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE
EXIT_TAMPERED = ExitCode.TAMPERED
EXIT_TEMPFAIL = ExitCode.TEMPFAIL
EXIT_CONFIG = ExitCode.CONFIG


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code of an error (SPEC section 4)."""
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    if isinstance(exc, RuleFailed):
        return EXIT_FAILED
    if isinstance(exc, DatabaseUnavailable):
        return EXIT_TEMPFAIL
    if isinstance(exc, AuditTampered):
        return EXIT_TAMPERED
    return EXIT_FAILED


def _fail(exc: BaseException, as_json: bool) -> None:
    code = exit_code_for(exc)
    if isinstance(exc, PolicyError):
        message = "; ".join(str(problem) for problem in exc.problems) or str(exc)
        for problem in exc.problems:
            click.echo(str(problem), err=True)
    elif isinstance(exc, RetentionError):
        message = str(exc)
        click.echo(f"retention: {exc}", err=True)
    else:
        # An unexpected error: its text may quote row values (constraint messages do),
        # so only its class is shown.
        message = f"unexpected {type(exc).__name__}"
        click.echo(f"retention: {message}; see the logs", err=True)
    _report_failure(code, message, type(exc).__name__, as_json)
    sys.exit(code)


def _report_failure(code: int, message: str, error_type: str, as_json: bool) -> None:
    """The failure as one log line in the configured format and, for ``--output json``,
    as the one JSON document on stdout (SPEC section 4)."""
    from retention.logs import ensure_logging, get_logger

    ensure_logging()
    code = int(code)  # an ExitCode would print as its repr in console logs
    get_logger().error("command failed", exit_code=code, error=message, error_type=error_type)
    if as_json:
        click.echo(json.dumps({"exit_code": code, "error": message}))


def _asks_json(args: list[str]) -> bool:
    for i, arg in enumerate(args):
        if arg == "--":
            return False
        if arg == "--output=json" or (arg == "--output" and args[i + 1 : i + 2] == ["json"]):
            return True
    return False


# A group named without its command shows its help: a request for help, not a failure.
_HelpShown: type[Exception] = getattr(click.exceptions, "NoArgsIsHelpError", click.exceptions.Exit)


class RetentionGroup(click.Group):
    """The command group: every command's errors become exit codes here, and only here."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Read before click splits the words between the group and its command, so even
        # a usage error names its failure in JSON when JSON was asked for.
        ctx.meta["retention.json"] = _asks_json(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        from retention.logs import forget_logging

        as_json = bool(ctx.meta.get("retention.json"))
        forget_logging()
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, _HelpShown):
            raise
        except click.ClickException as exc:
            exc.show()
            _report_failure(exc.exit_code, exc.format_message(), type(exc).__name__, as_json)
            sys.exit(exc.exit_code)
        except Exception as exc:
            _fail(exc, as_json)


@click.group(cls=RetentionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="retention")
def cli() -> None:
    """Enforce data-retention rules from a YAML policy, with a tamper-evident audit log."""


def _timestamp(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value[:40]!r} is not an ISO 8601 time such as 2026-06-01T12:00:00Z"
        ) from None
    # A naive time means UTC, as --help says.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


now_option = click.option(
    "--now",
    metavar="TIMESTAMP",
    callback=_timestamp,
    default=None,
    help="Pin the clock reading the cutoffs are computed from: ISO 8601 with an offset or Z "
    "(2026-06-01T12:00:00Z); a time without an offset means UTC.",
)


@cli.command()
@click.option("--offline", is_flag=True, help="Check the file only, without the database.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@common_options
def validate(settings: Settings, offline: bool, output: str) -> None:
    """Check the policy file, and hold it against the database's schema."""
    from retention import api, render

    result = api.validate(settings, offline=offline)
    if output == "json":
        click.echo(json.dumps(render.validation_data(result), indent=2))
    else:
        click.echo(render.validation_text(result))


@cli.command()
def schema() -> None:
    """Print the policy file's JSON Schema (for editors)."""
    from retention import api

    click.echo(json.dumps(api.schema(), indent=2, sort_keys=True))


@cli.command()
@click.option("--force", is_flag=True, help="Proceed although the database holds other tables.")
@common_options
def demo(settings: Settings, force: bool) -> None:
    """Create a demo database with realistic data for the shipped policies.yaml."""
    from retention import api
    from retention.settings import DEFAULT_DATABASE_URL as DEMO_URL

    def hash_key_to_env() -> None:
        # Once the demo has decided to proceed: a refused demo leaves no .env behind.
        env = api.demo_hash_key(settings)
        if env is not None:
            click.echo(f"wrote a new RETENTION_HASH_KEY to {env}", err=True)

    # Only a database named on the command line, never one from the environment, may be a
    # server the demo replaces tables on.
    named = click.get_current_context().get_parameter_source("database")
    summary = api.demo(
        settings,
        force=force,
        database_given=named is ParameterSource.COMMANDLINE,
        before_changes=hash_key_to_env,
    )
    total = sum(summary.rows.values())
    # Without a URL the demo made its own file and named it in .env (api.demo).
    shown = settings.masked_url() if settings.database_url.get_secret_value() else DEMO_URL
    click.echo(f"demo database {shown}: {total} rows")
    for table, count in summary.rows.items():
        click.echo(f"  {table:<22} {count:>7}")


@cli.command()
@click.option("--rule", "rules", multiple=True, metavar="NAME", help="Only this rule (repeatable).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--show-sql", is_flag=True, help="Print the statements run would execute.")
@now_option
@common_options
def plan(
    settings: Settings, rules: tuple[str, ...], output: str, show_sql: bool, now: datetime | None
) -> None:
    """Dry run: what each rule would delete or anonymise now. Writes nothing."""
    from retention import api

    report = api.plan(settings, rules=rules, now=now)
    _emit_plan(report, output, show_sql)


def _emit_plan(report: PlanReport, output: str, show_sql: bool) -> None:
    from retention import render

    if output == "json":
        click.echo(json.dumps(render.plan_data(report, show_sql=show_sql), indent=2))
    else:
        click.echo(render.plan_text(report, show_sql=show_sql))


@cli.command()
@click.option("--rule", "rules", multiple=True, metavar="NAME", help="Only this rule (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show the plan instead; write nothing.")
@click.option(
    "--max-batches",
    type=click.IntRange(min=1),
    default=None,
    help="Stop each rule after N batches; a later run continues.",
)
@click.option(
    "--max-runtime",
    type=click.FloatRange(min=0, min_open=True),
    callback=lambda _ctx, _param, value: _finite(value),
    default=None,
    metavar="SECONDS",
    help="Stop starting batches after this long.",
)
@click.option(
    "--override-guard",
    "override",
    multiple=True,
    metavar="RULE",
    help="Lift RULE's guard for this run only (recorded in the audit log).",
)
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@now_option
@common_options
def run(
    settings: Settings,
    rules: tuple[str, ...],
    dry_run: bool,
    max_batches: int | None,
    max_runtime: float | None,
    override: tuple[str, ...],
    output: str,
    now: datetime | None,
) -> None:
    """Delete or anonymise every due row, in batches, with audit records."""
    from retention import api, render

    if now is not None and now > datetime.now(UTC):
        raise click.BadParameter(
            "a run cannot be pinned to a time later than the clock", param_hint="'--now'"
        )
    if dry_run:
        _emit_plan(api.plan(settings, rules=rules, now=now), output, False)
        return
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    progress = _progress() if output == "text" and sys.stderr.isatty() else None
    started = time.monotonic()
    api.announce_start(settings)
    result = None
    try:
        result = api.run(
            settings,
            rules=rules,
            max_batches=max_batches,
            max_runtime=max_runtime,
            override_guard=override,
            now=now,
            stop_requested=stop.is_set,
            on_batch=progress,
        )
    except BaseException as exc:
        # Every end is announced, an unexpected one too (as exit 1, what the CLI returns).
        api.announce_end(settings, exit_code_for(exc), None, time.monotonic() - started)
        raise
    finally:
        for sig, handler in previous.items():
            # A run that was told to stop stays deaf to a second signal while it exits.
            signal.signal(sig, signal.SIG_IGN if stop.is_set() else handler)
    code = result.exit_code
    api.announce_end(settings, code, result, time.monotonic() - started)
    if output == "json":
        click.echo(json.dumps(render.run_data(result), indent=2))
    else:
        click.echo(render.run_text(result))
    sys.exit(code)


def _finite(seconds: float | None) -> float | None:
    # FloatRange lets nan and inf through: neither is a time a run could stop at.
    if seconds is not None and not math.isfinite(seconds):
        raise click.BadParameter(f"{seconds} is not a finite number of seconds")
    return seconds


def _progress() -> Any:
    def on_batch(rule: str, done: int, due: int) -> None:
        width = 30
        filled = int(width * done / due) if due else width
        bar = "#" * min(filled, width) + "-" * max(width - filled, 0)
        click.echo(f"\r{rule[:30]:<30} [{bar}] {done}/{due}", err=True, nl=done >= due)

    return on_batch


@cli.command()
@common_options
def serve(settings: Settings) -> None:
    """Run the rules on their own cron schedules until SIGTERM (SIGHUP reloads)."""
    from retention import api

    api.serve(settings)


@cli.group(cls=LazyGroup, registers=("retention.cli.audit:register",))
def audit() -> None:
    """Read and verify the audit log."""


@audit.command("init")
@common_options
def audit_init(settings: Settings) -> None:
    """Create the audit tables and append-only guards (then runs need no DDL right)."""
    from retention import api

    table = api.audit_init(settings)
    click.echo(f"audit tables ready: {table}, {table}_head, {table}_keys, {table}_leases")


@audit.command("verify")
@click.option(
    "--expect-head",
    default=None,
    metavar="HASH",
    help="The head kept elsewhere; also catches a cut-off tail.",
)
@click.option(
    "--heads-file",
    default=None,
    metavar="FILE",
    help="Heads kept elsewhere, one per line; each must still be in the log.",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Accept a database with no audit log at all (else exit 4).",
)
@common_options
def audit_verify(
    settings: Settings, expect_head: str | None, heads_file: str | None, allow_empty: bool
) -> None:
    """Recompute the hash chain; exit 4 naming the first bad record."""
    from retention import api

    result = api.verify(
        settings, expect_head=expect_head, heads_file=heads_file, allow_empty=allow_empty
    )
    click.echo(f"audit log verified: {result.records} records, head {result.head}")
    if result.expected_at is not None:
        grown = result.records - result.expected_at
        click.echo(
            f"expected head found at record {result.expected_at}: the log grew by "
            f"{grown} record{'s' if grown != 1 else ''} since"
        )
    _note_other_keys(settings, result.key_fingerprints)


def _note_other_keys(settings: Settings, fingerprints: frozenset[str]) -> None:
    """Say when runs wrote under another hash key, so a lookup's "no record" is not trusted."""
    if settings.hash_key is None or not fingerprints:
        return
    from retention.audit.records import key_fingerprint

    ours = key_fingerprint(settings.hash_key.get_secret_value().encode())
    others = fingerprints - {ours}
    if others:
        click.echo(
            f"note: runs in this log were written under {len(others)} other hash "
            f"key{'s' if len(others) != 1 else ''} (a rotated or wrong RETENTION_HASH_KEY): "
            "digests made under them cannot be matched with the current key",
            err=True,
        )


def main() -> None:
    cli(prog_name="retention")


_register_coverage(cli)
_register_erase(cli, audit)
