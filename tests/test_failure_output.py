"""Failures visible to machines (SPEC section 4): every failure that ends a command is one
log line in the configured format (``event: command failed``, ``level: error``,
``exit_code``) and, with ``--output json``, one JSON document ``{"exit_code": N, "error":
"..."}`` on stdout. No console-format line ever appears among JSON logs, nor on stdout.

The commands run as processes, so stdout and stderr are the operator's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import HASH_KEY, ROOT


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env.update({"RETENTION_HASH_KEY": HASH_KEY, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)})
    env.update({f"RETENTION_{k.upper()}": v for k, v in settings.items()})
    return env


def _cli(tmp_path: Path, args: list[str], **settings: str) -> subprocess.CompletedProcess[str]:
    policy = tmp_path / "policies.yaml"
    if not policy.exists():
        policy.write_text((ROOT / "policies.yaml").read_text())
    return subprocess.run(
        [sys.executable, "-m", "retention", *args],
        cwd=tmp_path,
        env=_env(tmp_path, **settings),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _json_lines(stream: str) -> list[dict[str, Any]]:
    """Every non-empty line must be a JSON object (a console line fails here)."""
    lines = [line for line in stream.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"a line that is not JSON: {line!r}")
        assert isinstance(value, dict), line
        parsed.append(value)
    return parsed


def _the_failure(logs: list[dict[str, Any]], code: int) -> dict[str, Any]:
    failed = [entry for entry in logs if entry.get("event") == "command failed"]
    assert len(failed) == 1, logs
    assert failed[0]["level"] == "error"
    assert failed[0]["exit_code"] == code
    return failed[0]


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


# (arguments after the command name, settings, exit code); the policy is the shipped one.
CASES = {
    "bad setting": (["plan"], {"lock_timeout_ms": "soon"}, 78),
    "bad log format": (["plan"], {"log_format": "xml"}, 78),
    "missing policy": (["plan", "--policy", "absent.yaml"], {}, 78),
    # Against a server that cannot be reached: 2 goes before 75, and no schema check
    # (78 when the policy does not fit) can come first.
    "unknown rule": (
        ["plan", "--rule", "no-such-rule", "--database", "postgresql+psycopg://u@127.0.0.1:9/db"],
        {},
        2,
    ),
    "unknown option": (["plan", "--no-such-option"], {}, 2),
    "unreachable": (["plan", "--database", "postgresql+psycopg://u@127.0.0.1:9/db"], {}, 75),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_failure_is_one_json_log_line_and_one_json_document(tmp_path: Path, case: str) -> None:
    args, settings, code = CASES[case]
    settings = {"log_format": "json", **settings}
    if "--database" not in args:
        args = [*args, "--database", _sqlite(tmp_path)]

    done = _cli(tmp_path, [*args, "--output", "json"], **settings)

    assert done.returncode == code, done.stderr
    document = json.loads(done.stdout)  # exactly one document: json.loads refuses more
    assert set(document) == {"exit_code", "error"}
    assert document["exit_code"] == code
    assert document["error"]
    assert "[debug" not in done.stdout + done.stderr
    logs = [line for line in done.stderr.splitlines() if line.startswith("{")]
    failure = _the_failure(_json_lines("\n".join(logs)), code)
    assert failure["error"] == document["error"]


@pytest.mark.parametrize("case", ["bad setting", "unknown rule", "unreachable"])
def test_json_logs_hold_no_console_line(tmp_path: Path, case: str) -> None:
    """With JSON logs and text output, stderr's log lines are all JSON; stdout is empty."""
    args, settings, code = CASES[case]
    if "--database" not in args:
        args = [*args, "--database", _sqlite(tmp_path)]

    done = _cli(tmp_path, args, log_format="json", **settings)

    assert done.returncode == code
    assert done.stdout == ""
    human = [line for line in done.stderr.splitlines() if line.startswith("retention:")]
    assert len(human) == 1  # the one clear line for people
    rest = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("retention:"))
    _the_failure(_json_lines(rest), code)


def test_a_bad_setting_logs_in_console_format_when_that_is_configured(tmp_path: Path) -> None:
    done = _cli(
        tmp_path,
        ["plan", "--database", _sqlite(tmp_path)],
        log_format="console",
        lock_timeout_ms="soon",
    )

    assert done.returncode == 78
    assert done.stdout == ""
    assert "command failed" in done.stderr
    assert "exit_code=78" in done.stderr
    assert not [line for line in done.stderr.splitlines() if line.startswith("{")]


def test_a_tampered_log_is_exit_4_in_json_too(tmp_path: Path) -> None:
    """verify has no --output; its failure is still one JSON log line."""
    database = _sqlite(tmp_path)
    done = _cli(tmp_path, ["audit", "verify", "--database", database], log_format="json")

    assert done.returncode == 4
    logs = [line for line in done.stderr.splitlines() if line.startswith("{")]
    assert "no audit log" in _the_failure(_json_lines("\n".join(logs)), 4)["error"]


def test_a_group_without_its_command_shows_help_and_logs_no_failure(tmp_path: Path) -> None:
    done = _cli(tmp_path, ["audit"], log_format="json")

    assert "verify" in done.stdout + done.stderr
    assert "command failed" not in done.stdout + done.stderr
