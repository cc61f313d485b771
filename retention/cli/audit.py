"""``retention audit show | export | report | find``: read the audit log for people and tools.

Each command parses its options, calls one api function and renders its result; errors
rise to the command group in ``cli/__init__.py``, which maps them to exit codes.
``register`` adds the commands to the ``audit`` group of ``retention.cli``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from retention import api
from retention.audit.formats import FORMATS
from retention.audit.query import When, parse_when
from retention.audit.records import iso
from retention.audit.report_html import render_html
from retention.cli.common import common_options
from retention.cli.erase import show_subject
from retention.errors import UsageError
from retention.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

_VERBS = {"delete": "removed", "anonymise": "anonymised"}


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> When | None:
    if value is None:
        return None
    try:
        return parse_when(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date (2026-03-31) or an ISO 8601 date-time", ctx, param
        ) from None


def period_options(func: F) -> F:
    """``--since`` and ``--until``, on ``at`` (UTC); a date ``--until`` takes in that day."""
    until = click.option(
        "--until",
        callback=_when,
        default=None,
        metavar="DATE",
        help="Up to this date (the whole day) or before this date-time, UTC.",
    )
    since = click.option(
        "--since",
        callback=_when,
        default=None,
        metavar="DATE",
        help="From this date or date-time, UTC.",
    )
    return since(until(func))


def _to_stdout(output: Path | None) -> bool:
    return output is None or str(output) == "-"


def check_output(output: Path | None) -> None:
    """Refuse an --output that cannot be written before any work is done (exit 2)."""
    if _to_stdout(output):
        return
    assert output is not None
    parent = output.parent
    if not parent.is_dir():
        raise UsageError(f"--output {output}: directory {parent} does not exist")
    if output.is_dir():
        raise UsageError(f"--output {output}: is a directory")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--output {output}: directory {parent} is not writable")


@contextmanager
def output_stream(output: Path | None) -> Iterator[TextIO]:
    """stdout, or a file that appears under its name only once completely written."""
    if _to_stdout(output):
        with stdout_pipe():
            yield sys.stdout
        return
    assert output is not None
    partial = output.with_name(f".{output.name}.partial")
    try:
        try:
            fh = partial.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise UsageError(f"--output {output}: cannot write: {exc.strerror}") from None
        with fh:
            yield fh
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def stdout_pipe() -> Iterator[None]:
    """A reader that stops early (``| head``) ends the command quietly, as in other tools."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise click.exceptions.Exit(141) from None  # 128 + SIGPIPE, as a shell reports it


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


SHOW_COLUMNS = (
    ("SEQ", 7, ">"),
    ("AT (UTC)", 19, "<"),
    ("EVENT", 15, "<"),
    ("RULE", 30, "<"),
    ("TABLE", 22, "<"),
    ("ACTION", 9, "<"),
    ("ROWS", 8, ">"),
    ("DEPENDENTS", 26, "<"),
    ("RUN", 8, "<"),
)


def show_line(values: list[str]) -> str:
    cells = [
        f"{_fit(v, w):{align}{w}}" for v, (_, w, align) in zip(values, SHOW_COLUMNS, strict=True)
    ]
    return "  ".join(cells).rstrip()


def show_values(record: dict[str, Any]) -> list[str]:
    at: datetime = record["at"]
    dependents = record["dependents"] or {}
    return [
        str(record["seq"]),
        at.strftime("%Y-%m-%d %H:%M:%S"),
        record["event"],
        record["rule"] or "",
        record["table_name"] or "",
        record["action"] or "",
        "" if record["row_count"] is None else str(record["row_count"]),
        ",".join(f"{table}:{n}" for table, n in dependents.items()),
        record["run_id"][:8],
    ]


@click.command("show")
@period_options
@click.option("--rule", default=None, metavar="NAME", help="Only this rule's records.")
@click.option(
    "--run",
    "run_id",
    default=None,
    metavar="RUN_ID",
    help="Only this run's records (a run id or its first characters).",
)
@common_options
def audit_show(
    settings: Settings, since: When | None, until: When | None, rule: str | None, run_id: str | None
) -> None:
    """The audit records as a table, oldest first."""
    selected = api.audit_records(settings, since=since, until=until, rule=rule, run_id=run_id)
    with selected as records, stdout_pipe():
        click.echo(show_line([name for name, _, _ in SHOW_COLUMNS]))
        shown = 0
        for record in records:
            click.echo(show_line(show_values(record)))
            shown += 1
        if not shown:
            click.echo("(no records)")


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="Write to FILE instead of stdout.",
)
@period_options
@common_options
def audit_export(
    settings: Settings, fmt: str, output: Path | None, since: When | None, until: When | None
) -> None:
    """Every record with every field, as JSON Lines or CSV, streamed."""
    check_output(output)
    with output_stream(output) as out:
        count = api.export(
            settings, out, fmt="csv" if fmt == "csv" else "jsonl", since=since, until=until
        )
    click.echo(f"exported {count} audit records", err=True)


@click.command("report")
@click.option(
    "--format", "fmt", type=click.Choice(["html", "json"]), default="html", show_default=True
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="Write to FILE instead of stdout.",
)
@click.option(
    "--expect-head",
    default=None,
    metavar="HASH",
    help="The head kept elsewhere; also catches a cut-off tail.",
)
@click.option(
    "--heads-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Heads kept elsewhere, one per line; each must be in the log.",
)
@period_options
@common_options
def audit_report(
    settings: Settings,
    fmt: str,
    output: Path | None,
    expect_head: str | None,
    heads_file: Path | None,
    since: When | None,
    until: When | None,
) -> None:
    """A certificate of deletion for a period; exit 4 (after writing it) if the chain is broken."""
    check_output(output)
    built = api.certificate(
        settings,
        since=since,
        until=until,
        expect_head=expect_head,
        heads_file=None if heads_file is None else str(heads_file),
    )
    text = (
        json.dumps(built.data, indent=2, ensure_ascii=False) + "\n"
        if fmt == "json"
        else render_html(built.data)
    )
    with output_stream(output) as out:
        out.write(text)
    if built.error is not None:
        raise built.error


@click.command("find")
@click.option("--table", default=None, metavar="T", help="The table, as the policy names it.")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="K",
    help="The row's key; repeat for each column of a composite key.",
)
@click.option("--subject", default=None, metavar="ID", help="A data subject's erasure requests.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@period_options
@common_options
def audit_find(
    settings: Settings,
    table: str | None,
    keys: tuple[str, ...],
    subject: str | None,
    fmt: str,
    since: When | None,
    until: When | None,
) -> None:
    """Which record removed one key (--table, --key), or a subject's erasure requests
    (--subject): the answer to "prove you deleted my data"."""
    if subject is not None and table is None and not keys:
        show_subject(settings, subject, fmt, since, until)
        return
    if subject is not None or table is None or not keys:
        raise UsageError("audit find: give --table T with --key K, or --subject ID")
    proof = api.find_keys(settings, table=table, keys=keys, since=since, until=until)
    if fmt == "json":
        click.echo(json.dumps(find_data(proof, table), indent=2, ensure_ascii=False))
        return
    first, found = proof.first_keyed, proof.found
    if first is None and not proof.record_keys:
        click.echo(
            "record_keys is off: this log holds no per-key digests, so a single key "
            "cannot be looked up (set `audit: {record_keys: true}` in the policy to "
            "record them from the next run)"
        )
        return
    for rule, parent in proof.dependent_of:
        click.echo(
            f"note: '{table}' is a dependent table: rule {rule} removes its rows together "
            f"with their parent rows in '{parent}', and records the parent's keys only; "
            f"look up the parent's key (--table {parent} --key ...)",
            err=True,
        )
    if table not in proof.rule_tables and not proof.dependent_of:
        click.echo(
            f"note: no rule of {proof.policy_path} acts on table '{table}' "
            f"(rules act on: {', '.join(proof.rule_tables)})",
            err=True,
        )
    for record in found:
        verb = _VERBS.get(record["action"] or "", "removed")
        click.echo(
            f"{verb} at {iso(record['at'])} by rule {record['rule']} "
            f"(run {record['run_id']}, record {record['seq']})"
        )
    if found:
        return
    click.echo("no record of removing that key")
    if proof.written_under_other_key:
        # On stdout, with the answer: under another key, "no record" proves nothing.
        click.echo(
            f"note: {_runs(proof.written_under_other_key)} wrote their records under "
            "another hash key (see `audit verify`); their removals cannot be found "
            "with this key: ask again with the key of that time"
        )
    if first is None:
        click.echo("note: record_keys is on, but no key has been recorded yet", err=True)
    else:
        click.echo(
            f"note: keys are recorded from record {first['seq']} ({iso(first['at'])}); "
            "earlier removals cannot be looked up by key",
            err=True,
        )


def _runs(count: int) -> str:
    return "1 run" if count == 1 else f"{count} runs"


def find_data(proof: api.KeyProof, table: str) -> dict[str, Any]:
    """``audit find --format json``: the answer as one document, never the key."""
    first = proof.first_keyed
    return {
        "table": table,
        "found": [
            {
                "action": _VERBS.get(r["action"] or "", "removed"),
                "at": iso(r["at"]),
                "rule": r["rule"],
                "run_id": r["run_id"],
                "record": r["seq"],
            }
            for r in proof.found
        ],
        "record_keys": proof.record_keys,
        "keys_recorded_from": (
            None if first is None else {"record": first["seq"], "at": iso(first["at"])}
        ),
        "table_in_policy": table in proof.rule_tables,
        "dependent_of": [{"rule": rule, "parent": parent} for rule, parent in proof.dependent_of],
        "written_under_other_key": proof.written_under_other_key,
    }


def register(group: click.Group) -> None:
    """Add ``show``, ``export``, ``report`` and ``find`` to the ``audit`` group."""
    for command in (audit_show, audit_export, audit_report, audit_find):
        group.add_command(command)
