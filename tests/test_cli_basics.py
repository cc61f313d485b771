"""The command line's contract: schema, validate, demo, settings and logs (SPEC 3 and 4)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from builders import invoke
from conftest import HASH_KEY, ROOT
from ruamel.yaml import YAML

from retention.settings import Settings, load_settings, mask_url

POLICY = ROOT / "policies.yaml"


def _yaml(path: Path) -> object:
    yaml = YAML(typ="safe")
    return yaml.load(path.read_text())


def test_the_schema_command_prints_a_schema_the_shipped_policy_satisfies() -> None:
    result = invoke(["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    jsonschema.validate(_yaml(POLICY), schema)


def test_the_committed_schema_file_is_what_the_model_derives() -> None:
    """policy.schema.json is generated, never edited: regenerate with `retention schema`."""
    result = invoke(["schema"])
    assert json.loads((ROOT / "policy.schema.json").read_text()) == json.loads(result.output)


def test_the_shipped_policy_names_its_schema_on_the_first_line() -> None:
    first = POLICY.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./policy.schema.json"


def test_the_schema_rejects_an_unknown_rule_key() -> None:
    schema = json.loads(invoke(["schema"]).output)
    bad = {
        "version": 1,
        "rules": [
            {
                "name": "x",
                "table": "t",
                "clock": "c",
                "after": "P1D",
                "action": "delete",
                "colour": "red",
            }
        ],
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_demo_then_validate_accepts_the_shipped_policy(db_url: str) -> None:
    env = {"RETENTION_HASH_KEY": HASH_KEY}
    made = invoke(["demo", "--database", db_url], env)
    assert made.exit_code == 0, made.output
    checked = invoke(["validate", "--database", db_url, "--policy", str(POLICY)])
    assert checked.exit_code == 0, checked.output
    assert "5 rules valid" in checked.output


def test_demo_writes_a_generated_hash_key_to_dot_env_when_none_is_set(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    result = invoke(["demo", "--database", url])
    assert result.exit_code == 0, result.output
    env = (tmp_path / ".env").read_text()
    assert env.startswith("RETENTION_HASH_KEY=")
    key = env.strip().split("=", 1)[1]
    assert len(key) >= 32
    assert key not in result.output
    assert oct((tmp_path / ".env").stat().st_mode & 0o777) == "0o600"


def test_the_database_password_is_masked_in_every_message() -> None:
    url = "postgresql+psycopg://app:s3cret-pw@127.0.0.1:1/nowhere"
    assert "s3cret-pw" not in mask_url(url)
    settings = load_settings(database_url=url)
    assert "s3cret-pw" not in settings.masked_url()
    assert "s3cret-pw" not in repr(settings)
    result = invoke(["validate", "--database", url, "--policy", str(POLICY)])
    assert result.exit_code == 75
    assert "s3cret-pw" not in result.output
    assert "Traceback" not in result.output


def test_the_hash_key_never_appears_in_the_settings_repr() -> None:
    settings = Settings(hash_key=HASH_KEY, _env_file=None)  # type: ignore[arg-type,call-arg]
    assert HASH_KEY not in repr(settings)
    assert HASH_KEY not in str(settings.model_dump())


def test_a_short_hash_key_is_a_configuration_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    result = invoke(
        ["run", "--database", url, "--policy", str(POLICY)], {"RETENTION_HASH_KEY": "short"}
    )
    assert result.exit_code == 78
    assert "too short" in result.output


def test_an_invalid_log_format_setting_exits_78() -> None:
    result = invoke(
        ["validate", "--offline", "--policy", str(POLICY)], {"RETENTION_LOG_FORMAT": "xml"}
    )
    assert result.exit_code == 78
    assert "RETENTION_LOG_FORMAT" in result.output


def test_an_unknown_option_is_a_usage_error() -> None:
    assert invoke(["plan", "--colour"]).exit_code == 2


def test_logs_are_json_lines_on_stderr_when_it_is_not_a_terminal(tmp_path: Path) -> None:
    """Machine output on stdout stays one JSON document; logs are JSON lines on stderr."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    env = {**os.environ, "RETENTION_HASH_KEY": HASH_KEY}
    exe = [sys.executable, "-m", "retention"]
    subprocess.run([*exe, "demo", "--database", url], check=True, env=env, capture_output=True)
    done = subprocess.run(
        [*exe, "run", "--database", url, "--policy", str(POLICY), "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["exit_code"] == 0
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert any(line["event"] == "run finished" for line in lines)
    assert HASH_KEY not in done.stderr
    assert HASH_KEY not in done.stdout
