"""No removed value and no raw key reaches the audit log, its exports, the logs or the summary.

SPEC sections 3 and 6: the log "never holds a removed value or a raw key"; ``details`` is
"never a removed value"; errors and logs never quote a row. The demo database gets
distinctive marker values in every personal column of rows that are due (and an account
whose key itself is a marker); the shipped policy runs with ``record_keys: true`` while a
trigger makes one batch of the feedback rule fail midway with an error message that
quotes a marker. Then no marker may appear in any audit table, in ``audit export`` (JSON
Lines and CSV), ``audit report --format json``, ``audit find``, ``plan --show-sql``, the
JSON logs on stderr or the ``--output json`` summary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import HASH_KEY, ROOT
from sqlalchemy import Connection, Engine, MetaData, text
from sqlalchemy.exc import DBAPIError

from retention import api
from retention.cli import cli
from retention.demo import create_demo
from retention.settings import Settings

NOW = datetime.now(UTC).replace(microsecond=0)
T = NOW.replace(tzinfo=None)

# The markers. "canary" never occurs in a digest (not hex), a rule or a table name.
ACCOUNT_ID = "canary-9-7f3a"  # a key: only its keyed digest may be stored
PHONE = "+86 139 9999 7777"
FAILING_CONTACT_ID = 900010  # its value is PHONE; deleting it raises an error quoting PHONE
IPS = ("198.51.100.213", "203.0.113.213", "2001:db8:7f3a:beef::77")  # truncate_ip keeps /24
MARKERS = ("canary", PHONE, "13999997777", "139 9999 7777", *IPS)

POLICY_AUDIT = "audit: {table: retention_audit, record_keys: false}"
RULE = "feedback-after-3-months"


@dataclass(frozen=True)
class Planted:
    """The feedback rows that are due and hold markers, and the one whose batch fails."""

    removed_feedback: tuple[int, ...]
    failing_feedback: int


def plant(conn: Connection) -> Planted:
    """Markers in every personal column of the demo, in rows the policy makes due."""
    meta = MetaData()
    meta.reflect(
        conn, only=["accounts", "feedback", "feedback_contacts", "access_log", "marketing_consents"]
    )
    tables = meta.tables
    old = T - timedelta(days=400)
    conn.execute(
        tables["accounts"]
        .insert()
        .values(
            id=ACCOUNT_ID,
            username="canary-1-7f3a",
            phone=PHONE,
            email="canary-2-7f3a@example.com",
            qq_number="canary-3-7f3a",
            wechat_id="canary-4-7f3a",
            created_at=old,
            closed_at=T - timedelta(days=60),
        )
    )
    # Anonymous feedback without a ticket, long due: no `unless` and no hold keeps it.
    early = (
        conn.execute(
            text(
                "SELECT id FROM feedback WHERE ticket_id IS NULL AND account_id IS NULL "
                "AND submitted_at < :due ORDER BY id"
            ),
            {"due": T - timedelta(days=120)},
        )
        .scalars()
        .all()[:2]
    )
    assert len(early) == 2
    for n, feedback_id in enumerate(early):
        body = f"canary-5{n}-7f3a: my X12 phone overheats"
        contact = f"canary-6{n}-7f3a@example.org"
        conn.execute(
            text("UPDATE feedback SET body = :b WHERE id = :i"), {"b": body, "i": feedback_id}
        )
        conn.execute(
            text("UPDATE feedback_contacts SET value = :v WHERE feedback_id = :i"),
            {"v": contact, "i": feedback_id},
        )
    # Beyond the demo's ids, so its batch comes after batches that succeed.
    failing = 90001
    conn.execute(
        tables["feedback"]
        .insert()
        .values(
            id=failing,
            account_id=None,
            ticket_id=None,
            channel="app",
            body="canary-12-7f3a: call me back",
            submitted_at=old,
        )
    )
    conn.execute(
        tables["feedback_contacts"].insert(),
        [
            {"id": FAILING_CONTACT_ID, "feedback_id": failing, "kind": "mobile", "value": PHONE},
            {
                "id": FAILING_CONTACT_ID + 1,
                "feedback_id": failing,
                "kind": "wechat",
                "value": "canary-7-7f3a",
            },
        ],
    )
    conn.execute(
        tables["access_log"].insert(),
        [
            {
                "id": 900001,
                "account_id": ACCOUNT_ID,
                "ip_address": IPS[0],
                "path": "/help",
                "user_agent": "canary-10-7f3a Mozilla/5.0",
                "logged_at": T - timedelta(days=45),
            },
            {
                "id": 900002,
                "account_id": None,
                "ip_address": IPS[1],
                "path": "/help",
                "user_agent": "canary-11-7f3a Mozilla/5.0",
                "logged_at": T - timedelta(days=45),
            },
            {
                "id": 900003,
                "account_id": None,
                "ip_address": IPS[2],
                "path": "/help",
                "user_agent": "canary-13-7f3a Mozilla/5.0",
                "logged_at": T - timedelta(days=500),
            },
        ],
    )
    conn.execute(
        tables["marketing_consents"]
        .insert()
        .values(
            id=90001,
            account_id=ACCOUNT_ID,
            channel="email",
            contact="canary-8-7f3a@example.net",
            given_at=old,
            withdrawn_at=T - timedelta(days=2),
        )
    )
    return Planted(tuple(early), failing)


def install_failing_trigger(conn: Connection) -> None:
    """Deleting the one contact raises an error whose message quotes its value."""
    backend = conn.dialect.name
    if backend == "postgresql":
        conn.execute(
            text(
                "CREATE FUNCTION refuse_contact() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF OLD.id = {FAILING_CONTACT_ID} THEN "
                "RAISE EXCEPTION 'refusing to delete contact %', OLD.value; END IF; "
                "RETURN OLD; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_contact BEFORE DELETE ON feedback_contacts "
                "FOR EACH ROW EXECUTE FUNCTION refuse_contact()"
            )
        )
    elif backend == "mysql":
        conn.execute(
            text(
                "CREATE TRIGGER refuse_contact BEFORE DELETE ON feedback_contacts FOR EACH ROW "
                "BEGIN DECLARE msg VARCHAR(255); "
                f"IF OLD.id = {FAILING_CONTACT_ID} THEN "
                "SET msg = CONCAT('refusing to delete contact ', OLD.value); "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg; END IF; END"
            )
        )
    else:
        conn.execute(
            text(
                "CREATE TRIGGER refuse_contact BEFORE DELETE ON feedback_contacts FOR EACH ROW "
                f"WHEN OLD.id = {FAILING_CONTACT_ID} "
                f"BEGIN SELECT RAISE(ABORT, 'refusing to delete contact {PHONE}'); END"
            )
        )


def leaks(where: str, content: str) -> list[str]:
    lowered = content.lower()
    return [f"{where}: {m!r}" for m in MARKERS if m.lower() in lowered]


def audit_dump(engine: Engine) -> str:
    """Every column of every row of the audit tables, as text."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in ("retention_audit", "retention_audit_head", "retention_audit_keys"):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            assert rows, f"{table} is empty"
            parts.extend(repr(tuple(row)) for row in rows)
    return "\n".join(parts)


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
        "RETENTION_POLICY_FILE": str(settings.policy_file),
        "RETENTION_HASH_KEY": HASH_KEY,
        "RETENTION_LOG_FORMAT": "json",
        "RETENTION_LOG_LEVEL": "debug",
    }


def in_process(settings: Settings, *args: str) -> tuple[int, str]:
    """A command through click in this process: its exit code, and stdout with stderr."""
    result = CliRunner().invoke(cli, list(args), env=cli_env(settings), catch_exceptions=False)
    return result.exit_code, result.stdout + "\n" + result.stderr


@pytest.fixture
def planted(settings: Settings, engine: Engine) -> Planted:
    policy = (ROOT / "policies.yaml").read_text(encoding="utf-8")
    assert POLICY_AUDIT in policy
    settings.policy_file.write_text(
        policy.replace(POLICY_AUDIT, "audit: {table: retention_audit, record_keys: true}"),
        encoding="utf-8",
    )
    create_demo(engine, now=NOW)
    with engine.begin() as conn:
        rows = plant(conn)
        install_failing_trigger(conn)
    return rows


def test_no_personal_value_reaches_the_log_its_exports_or_the_output(
    settings: Settings, engine: Engine, planted: Planted, tmp_path: Path
) -> None:
    env = {**os.environ, **cli_env(settings)}
    done = subprocess.run(
        [sys.executable, "-m", "retention", "run", "--output", "json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # The run did what it had to, so the markers really went through it.
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    statuses = {r["rule"]: r["status"] for r in summary["rules"]}
    assert statuses.pop(RULE) == "failed"
    assert set(statuses.values()) == {"done"}, statuses
    with engine.connect() as conn:
        feedback = set(conn.execute(text("SELECT id FROM feedback")).scalars())
        account = conn.execute(
            text("SELECT username, phone, email FROM accounts WHERE id = :i"), {"i": ACCOUNT_ID}
        ).one()
        consents = conn.execute(text("SELECT count(*) FROM marketing_consents WHERE id = 90001"))
        assert consents.scalar_one() == 0
        visits: dict[int, str] = dict(
            conn.execute(
                text("SELECT id, ip_address FROM access_log WHERE id IN (900001, 900002, 900003)")
            ).all()
        )
    assert visits == {900001: "198.51.100.0", 900002: "203.0.113.0"}
    assert feedback.isdisjoint(planted.removed_feedback)
    assert planted.failing_feedback in feedback
    assert account.username.startswith("anon-") and account.phone is None and account.email is None
    assert api.verify(settings).head == summary["audit_head"]
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert {"rule": RULE, "event": "rule failed"}.items() <= next(
        e for e in logged if e.get("event") == "rule failed"
    ).items()

    # The failure is recorded as a class and a code, nothing of the message.
    with engine.connect() as conn:
        (failed,) = conn.execute(
            text("SELECT row_count, details FROM retention_audit WHERE event = 'rule_failed'")
        ).all()
        batches = conn.execute(
            text(
                "SELECT count(*), sum(row_count) FROM retention_audit WHERE event = 'batch' "
                "AND rule = :r"
            ),
            {"r": RULE},
        ).one()
    details = json.loads(failed.details)
    assert set(details) == {"error", "batches"}
    assert re.fullmatch(r"[A-Za-z_]\w*( \(\w+\))?", details["error"]), details["error"]
    assert details["batches"] == batches[0] >= 1, "the failing batch was not midway"
    assert failed.row_count == batches[1]

    outputs = {
        "audit tables": audit_dump(engine),
        "stdout of run --output json": done.stdout,
        "stderr (JSON logs) of run": done.stderr,
    }
    for what, args in {
        "audit export --format jsonl": ("audit", "export", "--format", "jsonl"),
        "audit export --format csv": ("audit", "export", "--format", "csv"),
        "audit report --format json": ("audit", "report", "--format", "json"),
        "audit find": ("audit", "find", "--table", "accounts", "--key", ACCOUNT_ID),
        "plan --show-sql --output json": ("plan", "--show-sql", "--output", "json"),
    }.items():
        code, output = in_process(settings, *args)
        assert code == 0, f"{what}: exit {code}\n{output}"
        outputs[what] = (
            output.replace(ACCOUNT_ID, "<the key asked for>") if what == "audit find" else output
        )
    assert "anonymised at" in outputs["audit find"], outputs["audit find"]
    assert json.loads(outputs["audit export --format jsonl"].splitlines()[0])["seq"] == 1

    found = [leak for what, content in outputs.items() for leak in leaks(what, content)]
    assert found == []


def test_the_failing_row_would_leak_through_the_database_error_message(
    engine: Engine, planted: Planted
) -> None:
    """The trap is real: the database's own error text quotes the marker."""
    with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
        conn.execute(text(f"DELETE FROM feedback_contacts WHERE id = {FAILING_CONTACT_ID}"))
    assert PHONE in str(caught.value.orig)


def test_every_personal_column_of_the_demo_holds_a_marker(engine: Engine, planted: Planted) -> None:
    columns = {
        "accounts": ("username", "phone", "email", "qq_number", "wechat_id"),
        "feedback": ("body",),
        "feedback_contacts": ("value",),
        "access_log": ("ip_address", "user_agent"),
        "marketing_consents": ("contact",),
    }
    with engine.connect() as conn:
        for table, names in columns.items():
            for name in names:
                values = conn.execute(text(f"SELECT {name} FROM {table}")).scalars()
                assert any(v is not None and leaks(table, v) for v in values), f"{table}.{name}"
