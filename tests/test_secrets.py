"""Secrets never printed (SPEC section 3): a password anywhere in the database URL (its
user part and query parameters such as ``?password=``, ``passwd``, ``sslpassword``), the
hash key and a ping URL's token appear in no output, log, error or report.

Every secret is planted where a user can put it, then every command an operator runs is
run as a separate process with JSON logs, and each stdout, stderr and written file is
scanned, with the audit tables' contents.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HASH_KEY, ROOT
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from retention.settings import mask_url

SECRETS = {
    "query_password": "Sq1-query-password",
    "query_sslpassword": "Sq2-ssl-password",
    "query_passwd": "Sq3-passwd",
    "user_password": "Sq4-user-password",
    "ping_token": "Sq5-ping-token",
    "hash_key": HASH_KEY,
}


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app:Sq4-user-password@db/app?password=Sq1-query-password",
        "postgresql+psycopg://db/app?sslpassword=Sq2-ssl-password&sslmode=require",
        "mysql+pymysql://app@db/app?passwd=Sq3-passwd&charset=utf8mb4",
        "postgresql://db/app?PASSWORD=Sq1-query-password&password=Sq3-passwd",
        "mssql+pyodbc:///?odbc_connect=DRIVER%3Dx%3BPWD%3DSq2-ssl-password",
        "postgresql://db/app?options=x&dsn=host%3Ddb+password%3DSq1-query-password",
    ],
)
def test_mask_url_hides_every_credential_bearing_part(url: str) -> None:
    masked = mask_url(url)
    assert not [s for s in SECRETS.values() if s in masked], masked
    assert "***" in masked
    assert make_url(masked).host == make_url(url).host  # still says which database


def test_mask_url_keeps_the_parameters_that_are_not_secret() -> None:
    masked = mask_url("postgresql+psycopg://db/app?sslmode=require&password=x&connect_timeout=5")
    assert "sslmode=require" in masked
    assert "connect_timeout=5" in masked
    assert "password=***" in masked


def _with_secrets(url: str) -> str:
    """The test database's URL with secrets in query parameters the driver accepts."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # pysqlite ignores unknown parameters (with a warning naming them, never a value).
        return url + f"?password={SECRETS['query_password']}"
    return url + f"?password={SECRETS['query_password']}&sslpassword={SECRETS['query_sslpassword']}"


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retention", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env.update(
        {
            "RETENTION_LOG_FORMAT": "json",
            "RETENTION_HASH_KEY": HASH_KEY,
            "RETENTION_PING_URL": f"http://127.0.0.1:9/ping/{SECRETS['ping_token']}",
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def _leaks(text_: str) -> list[str]:
    return [name for name, secret in SECRETS.items() if secret in text_]


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_no_output_log_report_or_record_holds_a_secret(db_url: str, tmp_path: Path) -> None:
    url = _with_secrets(db_url)
    policy = tmp_path / "policies.yaml"
    policy.write_text((ROOT / "policies.yaml").read_text())
    env = _env(tmp_path)
    common = ["--database", url, "--policy", str(policy)]
    commands = [
        ["demo", "--force", *common],
        ["validate", *common],
        ["plan", "--show-sql", *common],
        ["plan", "--output", "json", *common],
        ["run", "--output", "json", *common],
        ["run", *common],
        ["audit", "verify", *common],
        ["audit", "show", *common],
        ["audit", "export", "--format", "jsonl", "--output", str(tmp_path / "a.jsonl"), *common],
        ["audit", "report", "--format", "json", "--output", str(tmp_path / "r.json"), *common],
        ["audit", "report", "--format", "html", "--output", str(tmp_path / "r.html"), *common],
    ]
    leaks: list[tuple[str, str, list[str]]] = []
    for args in commands:
        done = _cli(args, tmp_path, env)
        assert done.returncode in (0, 1, 3), (args[:2], done.stderr[-2000:])
        for stream, content in (("stdout", done.stdout), ("stderr", done.stderr)):
            if _leaks(content):
                leaks.append((" ".join(args[:2]), stream, _leaks(content)))
    for written in [*tmp_path.glob("r.*"), tmp_path / "a.jsonl", *tmp_path.glob(".env")]:
        if written.name != ".env" and _leaks(written.read_text()):
            leaks.append((written.name, "file", _leaks(written.read_text())))
    report = json.loads((tmp_path / "r.json").read_text())
    assert "***" in report["database"]
    engine: Engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            for table in ("retention_audit", "retention_audit_keys"):
                rows = conn.execute(text(f"SELECT * FROM {table}")).all()
                if _leaks(repr(rows)):
                    leaks.append((table, "table", _leaks(repr(rows))))
    finally:
        engine.dispose()
    assert leaks == []


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app:Sq4-user-password@127.0.0.1:9/app"
        "?password=Sq1-query-password&sslpassword=Sq2-ssl-password&connect_timeout=2",
        "mysql+pymysql://app:Sq4-user-password@127.0.0.1:9/app?passwd=Sq3-passwd&connect_timeout=2",
    ],
    ids=["postgresql", "mysql"],
)
@pytest.mark.parametrize("output", [[], ["--output", "json"]], ids=["text", "json"])
def test_the_unreachable_error_masks_every_credential(
    url: str, output: list[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policies.yaml"
    policy.write_text((ROOT / "policies.yaml").read_text())
    env = _env(tmp_path)
    for command in (["validate"], ["plan", *output], ["run", *output], ["audit", "verify"]):
        done = _cli([*command, "--database", url, "--policy", str(policy)], tmp_path, env)
        assert done.returncode in (75, 78), (command, done.stderr[-2000:])
        assert "127.0.0.1" in done.stderr  # the error still says where
        assert _leaks(done.stdout + done.stderr) == [], command
