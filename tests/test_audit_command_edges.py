"""The auditors' commands at their edges: each bad input is one clear line and the
documented exit code (SPEC section 4), never a traceback; the calendar's last day is a
date like any other.

Checks that come before any database work are run against an unreachable server: had the
command touched it, it would exit 75, not 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import HASH_KEY, ROOT
from sqlalchemy import Engine
from test_audit_export_report import DemoLog, audit_cli, demo_log, log_records

from retention import api
from retention.cli import cli
from retention.settings import Settings

__all__ = ["demo_log"]  # the fixture, shared with the export and report tests

UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:9/none"


def offline(tmp_path: Path, *args: str) -> Result:
    """A command against a database that cannot be reached, with the shipped policy."""
    command = [*args, "--database", UNREACHABLE, "--policy", str(ROOT / "policies.yaml")]
    runner = CliRunner()
    return runner.invoke(cli, command, env={"RETENTION_HASH_KEY": HASH_KEY}, catch_exceptions=False)


def one_line(result: Result) -> str:
    """The one line a person reads; the failure's log record (SPEC section 4) aside."""
    lines = [
        line
        for line in result.output.strip().splitlines()
        if '"event": "command failed"' not in line
    ]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_show_until_the_calendars_last_day_shows_every_record(
    demo_log: DemoLog, settings: Settings, engine: Engine
) -> None:
    """``--until 9999-12-31`` takes in that whole day: no bound, not an overflow."""
    records = len(log_records(engine))

    result = audit_cli(settings, "show", "--until", "9999-12-31")
    widest = audit_cli(
        settings,
        "show",
        "--since",
        "0001-01-01T00:00:00+01:00",
        "--until",
        "9999-12-31T23:00:00-05:00",
    )

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == records + 1  # and the header
    assert widest.exit_code == 0, widest.output
    assert widest.stdout == result.stdout


def test_a_report_and_an_export_for_the_calendars_last_day(
    demo_log: DemoLog, settings: Settings
) -> None:
    report = audit_cli(settings, "report", "--format", "json", "--since", "9999-12-31")
    export = audit_cli(settings, "export", "--until", "9999-12-31")
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["records_in_period"] == 0
    assert export.exit_code == 0, export.output
    assert json.loads(export.stdout.splitlines()[-1])["hash"] == demo_log.head


@pytest.mark.parametrize("command", ["report", "export"])
def test_an_output_into_a_missing_directory_is_one_line_and_exit_2(
    command: str, tmp_path: Path
) -> None:
    target = tmp_path / "no-such-dir" / "out.file"
    result = offline(tmp_path, "audit", command, "--output", str(target))
    assert result.exit_code == 2
    line = one_line(result)
    assert line.startswith("retention: --output") and "does not exist" in line
    assert str(target.parent) in line
    assert not target.parent.exists()


@pytest.mark.parametrize(
    "command",
    [("show",), ("export",), ("report",), ("find", "--table", "feedback", "--key", "1")],
    ids=lambda c: c[0],
)
def test_an_inverted_period_is_one_line_and_exit_2(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    result = offline(tmp_path, "audit", *command, "--since", "2026-06-03", "--until", "2026-06-01")
    assert result.exit_code == 2
    assert one_line(result) == (
        "retention: --since 2026-06-03 is not before --until 2026-06-01: the period is empty"
    )


def test_a_period_of_one_day_is_not_inverted(demo_log: DemoLog, settings: Settings) -> None:
    result = audit_cli(settings, "show", "--since", "2026-06-01", "--until", "2026-06-01")
    assert result.exit_code == 0, result.output
    assert {line.split()[-1] for line in result.stdout.splitlines()[1:]} == {demo_log.first_run[:8]}


@pytest.mark.parametrize("command", [("audit", "report"), ("audit", "verify")], ids=" ".join)
def test_a_heads_file_line_that_is_not_a_hash_is_one_line_and_exit_2(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """The line is named by its number; its text is not repeated (it could be anything)."""
    heads = tmp_path / "heads.txt"
    heads.write_text(f"{'a' * 64}\nalice@example.com wrote this\n", encoding="utf-8")

    result = offline(tmp_path, *command, "--heads-file", str(heads))

    assert result.exit_code == 2
    line = one_line(result)
    assert line == f"retention: heads file {heads}, line 2: not a head (64 hexadecimal digits)"
    assert "alice" not in result.output


def test_heads_in_capitals_are_read_as_the_same_heads(tmp_path: Path) -> None:
    heads = tmp_path / "heads.txt"
    heads.write_text(f"\n{'AB' * 32}\n\n", encoding="utf-8")
    assert api.read_heads(str(heads)) == ["ab" * 32]


def test_the_demo_writes_no_hash_key_when_one_is_set(tmp_path: Path) -> None:
    env = tmp_path / "demo.env"
    settings = Settings(hash_key=HASH_KEY, _env_file=None)  # type: ignore[arg-type,call-arg]
    assert api.demo_hash_key(settings, env) is None
    assert not env.exists()
    unset = settings.model_copy(update={"hash_key": None})
    assert api.demo_hash_key(unset, env) == env
    assert env.read_text(encoding="utf-8").startswith("RETENTION_HASH_KEY=")
    assert oct(env.stat().st_mode & 0o777) == "0o600"
