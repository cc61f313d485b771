"""``retention erase``, ``retention audit reapply`` and ``audit find --subject``.

Parses the options, calls ``api_erase`` and renders the result; a subject is shown by
its position in the command (``subject 1``), never by its id. ``register`` adds the
commands to the groups.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from retention.cli.common import common_options
from retention.errors import UsageError
from retention.outcomes import ExitCode

if TYPE_CHECKING:
    from retention import api_erase
    from retention.audit.query import When
    from retention.erase import ErasureResult
    from retention.reapply import ReapplyResult
    from retention.settings import Settings


@contextmanager
def _signals() -> Iterator[Callable[[], bool]]:
    """SIGTERM and SIGINT ask the command to stop after the current batch."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield stop.is_set
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_WHY = {
    ExitCode.FAILED: "a rule failed (see the output and the log)",
    ExitCode.GUARD: "a subject is under an active legal hold: nothing of theirs was erased",
    ExitCode.TEMPFAIL: "a rule was held by another run or a signal stopped it: run it again",
}


def _exit(code: int) -> None:
    why = _WHY.get(ExitCode(code), "")
    if code:
        from retention.logs import get_logger

        get_logger().error("command failed", exit_code=int(code), error=why, error_type="Erase")
        raise click.exceptions.Exit(int(code))


def erase_data(result: ErasureResult) -> dict[str, Any]:
    return {
        "dry_run": result.dry_run,
        "now": result.now.isoformat(),
        "requests": [
            {
                "subject": q.subject,
                "request_id": q.request_id,
                "outcome": q.outcome,
                "held": q.held,
                "rows": q.rows,
                "tables": q.tables(),
                "rules": [
                    {
                        "rule": r.rule,
                        "table": r.table,
                        "action": r.action,
                        "status": r.status,
                        "rows": r.rows,
                        "dependents": r.dependents,
                        "kept_unless": r.kept_unless,
                        "error": r.error,
                    }
                    for r in q.rules
                ],
            }
            for q in result.requests
        ],
        "exit_code": int(result.exit_code),
    }


def erase_text(result: ErasureResult) -> str:
    verb = "would erase" if result.dry_run else "erased"
    lines = []
    for q in result.requests:
        if q.held:
            lines.append(f"subject {q.subject}: under an active legal hold: nothing erased")
            continue
        request = f" (request {q.request_id})" if q.request_id else ""
        dependent = sum(n for r in q.rules for n in r.dependents.values())
        lines.append(
            f"subject {q.subject}: {q.outcome}, {verb} {q.rows} rows and {dependent} "
            f"dependent rows{request}"
        )
        for r in q.rules:
            kept = f", {r.kept_unless} kept by unless" if r.kept_unless else ""
            lines.append(f"  {r.rule:<30} {r.table:<24} {r.rows:>7} rows  {r.status}{kept}")
            for table, n in r.dependents.items():
                lines.append(f"  {'':<30} {table:<24} {n:>7} dependent rows")
            if r.error:
                lines.append(f"  {'':<30} error: {r.error}")
    return "\n".join(lines)


def reapply_data(result: ReapplyResult) -> dict[str, Any]:
    return {
        "dry_run": result.dry_run,
        "run_id": result.run_id,
        "rules": [
            {
                "rule": r.rule,
                "table": r.table,
                "action": r.action,
                "status": r.status,
                "recorded": r.recorded,
                "rows": r.rows,
                "dependents": r.dependents,
                "kept_holds": r.kept_holds,
                "already_done": r.already_done,
                "error": r.error,
            }
            for r in result.rules
        ],
        "rows": sum(r.rows for r in result.rules),
        "exit_code": int(result.exit_code),
    }


def reapply_text(result: ReapplyResult) -> str:
    verb = "would reapply" if result.dry_run else "reapplied"
    total = sum(r.rows for r in result.rules)
    lines = [f"{verb}: {total} rows" + (f" (run {result.run_id})" if result.run_id else "")]
    for r in result.rules:
        lines.append(
            f"  {r.rule:<30} {r.table:<24} {r.rows:>7} rows  ({r.recorded} recorded as "
            f"removed, {r.kept_holds} kept by holds, {r.already_done} already done) {r.status}"
        )
        for table, n in r.dependents.items():
            lines.append(f"  {'':<30} {table:<24} {n:>7} dependent rows")
    return "\n".join(lines)


def subject_data(proof: api_erase.SubjectProof) -> dict[str, Any]:
    return {"erased": bool(proof.requests), "requests": [q.data() for q in proof.requests]}


def show_subject(
    settings: Settings, subject: str, fmt: str, since: When | None, until: When | None
) -> None:
    """``audit find --subject``: was this person's data erased, when, what."""
    from retention import api_erase

    proof = api_erase.find_subject(settings, subject, since=since, until=until)
    if fmt == "json":
        click.echo(json.dumps(subject_data(proof), indent=2, ensure_ascii=False))
        return
    if not proof.requests:
        click.echo("no erasure request for that subject in the log")
        return
    for q in proof.requests:
        click.echo(
            f"erasure request {q.request_id} at {q.data()['started_at']}: {q.outcome}, "
            f"{q.rows} rows and {q.dependent_rows} dependent rows "
            f"(records {', '.join(str(s) for s in q.records)})"
        )
        for rule, status in q.rules.items():
            click.echo(f"  rule {rule}: {status}")
        for table, n in q.tables.items():
            click.echo(f"  {table:<30} {n:>7} rows")


def register(cli: click.Group, audit: click.Group) -> None:
    """Add ``erase`` to ``cli`` and ``reapply`` to ``audit``."""

    @cli.command()
    @click.option("--subject", "subjects", multiple=True, metavar="ID", help="Repeatable.")
    @click.option(
        "--subjects-file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        metavar="FILE",
        help="One subject id per line; blank lines and # comments are ignored.",
    )
    @click.option("--dry-run", is_flag=True, help="Count per rule and table; write nothing.")
    @click.option(
        "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
    )
    @common_options
    def erase(
        settings: Settings,
        subjects: tuple[str, ...],
        subjects_file: Path | None,
        dry_run: bool,
        output: str,
    ) -> None:
        """Erase data subjects' rows now, whatever their age, through every enabled rule
        with a hold_subject (exit 3: a subject is under a legal hold; nothing of theirs
        was written)."""
        if bool(subjects) == (subjects_file is not None):
            raise UsageError("erase: give --subject ID (repeatable) or --subjects-file FILE")
        from retention import api_erase

        wanted = list(subjects) or api_erase.read_subjects(subjects_file)  # type: ignore[arg-type]
        with _signals() as stopping:
            result = api_erase.erase(settings, wanted, dry_run=dry_run, stop_requested=stopping)
        if output == "json":
            click.echo(json.dumps(erase_data(result), indent=2))
        else:
            click.echo(erase_text(result))
        _exit(result.exit_code)

    @audit.command("reapply")
    @click.option("--table", default=None, metavar="T", help="Only the rules of this table.")
    @click.option("--dry-run", is_flag=True, help="Count only; write nothing.")
    @click.option(
        "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
    )
    @common_options
    def audit_reapply(settings: Settings, table: str | None, dry_run: bool, output: str) -> None:
        """Remove again the rows the log records as removed (after a backup restore);
        needs audit: {record_keys: true}."""
        from retention import api_erase

        with _signals() as stopping:
            result = api_erase.reapply(
                settings, table=table, dry_run=dry_run, stop_requested=stopping
            )
        if output == "json":
            click.echo(json.dumps(reapply_data(result), indent=2))
        else:
            click.echo(reapply_text(result))
        _exit(result.exit_code)
