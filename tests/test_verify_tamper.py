"""No false green from `audit verify` or the certificate (SPEC section 6).

Tampering an owner could do after dropping the append-only trigger: a cut tail with the
head table left as it was, a dropped log, records whose fields do not parse or are not in
their canonical form. Each is exit 4 naming the record, and the certificate is still
written, stating the break. Also: an older head still in the chain means the log grew, and
runs record a fingerprint of the hash key so a lookup under another key is not "no record".
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from builders import Invocation, invoke, write_policy
from conftest import HASH_KEY
from sqlalchemy import Engine, text
from test_audit_chain import chain_policy, make_feedback, records, seven_records, verify_cli

from retention import api
from retention.audit import guard
from retention.audit.records import key_fingerprint, record_hash
from retention.audit.verify import key_fingerprints, verify_records
from retention.errors import AuditTampered
from retention.settings import Settings

ZERO = "0" * 64


def tamper(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as conn:
        guard.remove(conn, "retention_audit")  # as the table's owner could
        conn.execute(text(statement), params)


def details_of(engine: Engine, seq: int) -> str:
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT details FROM retention_audit WHERE seq = :s"), {"s": seq}
        ).scalar_one()
    return str(value)


def report_json(settings: Settings, out: Path, *args: str) -> Invocation:
    url = settings.database_url.get_secret_value()
    return invoke(
        [
            "audit",
            "report",
            "--format",
            "json",
            "--output",
            str(out),
            *args,
            "--database",
            url,
            "--policy",
            str(settings.policy_file),
        ]
    )


def assert_broken_at(settings: Settings, tmp_path: Path, seq: int, words: str) -> None:
    """verify and the certificate both: exit 4, the record named, the certificate written."""
    assert_verify_breaks_at(settings, seq, words)
    assert_certificate_breaks_at(settings, tmp_path, seq)


def assert_verify_breaks_at(settings: Settings, seq: int, words: str) -> None:
    with pytest.raises(AuditTampered) as caught:
        api.verify(settings)
    assert caught.value.seq == seq
    assert words in caught.value.reason
    result = verify_cli(settings)
    assert result.exit_code == 4, result.output
    assert f"record {seq}" in result.stderr
    assert "unexpected" not in result.stderr


def assert_certificate_breaks_at(settings: Settings, tmp_path: Path, seq: int) -> None:
    out = tmp_path / "certificate.json"
    report = report_json(settings, out)
    assert report.exit_code == 4, report.output
    assert "unexpected" not in report.stderr
    verification = json.loads(out.read_text())["verification"]
    assert verification["ok"] is False
    assert verification["broken_at_record"] == seq


# --- the head table ---------------------------------------------------------------------


def test_a_cut_tail_is_caught_by_the_head_table_alone(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seven_records(settings, engine)
    tamper(engine, "DELETE FROM retention_audit WHERE seq >= 6")

    assert_broken_at(settings, tmp_path, 6, "head table says record 7")


def test_a_rewritten_head_table_hash_is_caught(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seven_records(settings, engine)
    with engine.begin() as conn:
        forged = {"h": "f" * 64}
        conn.execute(text("UPDATE retention_audit_head SET hash = :h WHERE id = 1"), forged)

    assert_broken_at(settings, tmp_path, 7, "head table")


def test_a_chain_longer_than_the_head_read_before_it_verifies() -> None:
    """A run appending between reading the head and the records makes the chain longer."""
    rows, prev = [], ZERO
    for seq in (1, 2):
        row: dict[str, Any] = {
            "seq": seq,
            "run_id": "r",
            "at": "2026-01-01 00:00:00.000000",
            "event": "batch",
            "policy_sha256": "p",
            "version": "1",
            "prev_hash": prev,
        }
        row["hash"] = prev = record_hash(prev, {**row, "at": datetime(2026, 1, 1)})
        rows.append(row)
    verified = verify_records(rows, stored_head=(1, rows[0]["hash"]))
    assert (verified.records, verified.head) == (2, rows[1]["hash"])
    with pytest.raises(AuditTampered):
        verify_records(rows, stored_head=(3, "a" * 64))


# --- no log at all ----------------------------------------------------------------------


def test_a_database_without_an_audit_log_is_exit_4_unless_allowed(
    settings: Settings, engine: Engine
) -> None:
    make_feedback(engine, [1], [])
    write_policy(settings.policy_file, chain_policy(batch_size=1))

    with pytest.raises(AuditTampered) as caught:
        api.verify(settings)
    assert "no audit log" in caught.value.reason
    result = verify_cli(settings)
    assert result.exit_code == 4, result.output
    assert "no audit log" in result.stderr
    assert "0 records" not in result.stdout
    allowed = verify_cli(settings, "--allow-empty")
    assert allowed.exit_code == 0, allowed.output
    assert ZERO in allowed.stdout


def test_a_dropped_log_is_not_an_empty_one(settings: Settings, engine: Engine) -> None:
    seven_records(settings, engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE retention_audit_keys"))
        conn.execute(text("DROP TABLE retention_audit"))
        conn.execute(text("DROP TABLE retention_audit_head"))

    assert verify_cli(settings).exit_code == 4


# --- records that do not parse, or are not canonical ------------------------------------


def test_details_that_are_not_json_are_tampering(settings: Settings, engine: Engine) -> None:
    seven_records(settings, engine)
    tamper(engine, "UPDATE retention_audit SET details = 'not json {' WHERE seq = 1")

    assert_verify_breaks_at(settings, 1, "details is not JSON")


def test_the_certificate_states_details_that_are_not_json(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seven_records(settings, engine)
    tamper(engine, "UPDATE retention_audit SET details = 'not json {' WHERE seq = 1")

    assert_certificate_breaks_at(settings, tmp_path, 1)


def test_a_duplicate_key_in_details_is_tampering(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """``{"dialect":"other","dialect":...}`` parses to the original object, so its hash
    still matches; SQL readers that keep the first value see "other"."""
    seven_records(settings, engine)
    original = details_of(engine, 1)
    forged = '{"dialect":"other",' + original[1:]
    assert json.loads(forged) == json.loads(original)
    tamper(engine, "UPDATE retention_audit SET details = :d WHERE seq = 1", d=forged)

    assert_broken_at(settings, tmp_path, 1, "canonical form")


def test_reformatted_dependents_are_tampering(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seven_records(settings, engine)
    tamper(
        engine,
        "UPDATE retention_audit SET dependents = :d WHERE seq = 2",
        d='{"feedback_contacts": 1}',
    )

    assert_broken_at(settings, tmp_path, 2, "canonical form")


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ("UPDATE retention_audit SET at = 'yesterday' WHERE seq = 3", "at is not a timestamp"),
        ("UPDATE retention_audit SET row_count = 'one' WHERE seq = 3", "row_count is str"),
        ("UPDATE retention_audit SET cutoff = 12 WHERE seq = 3", "cutoff is not a"),
    ],
    ids=["at", "row_count", "cutoff"],
)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_fields_of_the_wrong_type_are_tampering(
    settings: Settings, engine: Engine, statement: str, words: str
) -> None:
    """SQLite keeps any value in any column; the servers refuse these updates themselves."""
    seven_records(settings, engine)
    tamper(engine, statement)

    assert_verify_breaks_at(settings, 3, words)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_certificate_states_a_timestamp_that_is_not_one(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seven_records(settings, engine)
    tamper(engine, "UPDATE retention_audit SET at = 'yesterday' WHERE seq = 3")

    assert_certificate_breaks_at(settings, tmp_path, 3)


# --- an older head ----------------------------------------------------------------------


def test_an_older_head_still_in_the_chain_means_the_log_grew(
    settings: Settings, engine: Engine
) -> None:
    make_feedback(engine, [1, 2, 3], [4])
    write_policy(settings.policy_file, chain_policy(batch_size=1))
    first = api.run(settings).head
    assert first is not None
    at = len(records(engine))
    api.run(settings)
    total = len(records(engine))
    assert total > at

    verified = api.verify(settings, expect_head=first)
    assert (verified.records, verified.expected_at) == (total, at)
    result = verify_cli(settings, "--expect-head", first)
    assert result.exit_code == 0, result.output
    assert f"found at record {at}" in result.stdout
    assert "grew" in result.stdout
    assert api.verify(settings, expect_head=verified.head).expected_at is None


# --- the hash key's fingerprint ---------------------------------------------------------


def test_run_started_records_a_fingerprint_of_the_key_never_the_key(
    settings: Settings, engine: Engine
) -> None:
    seven_records(settings, engine)
    started = [r for r in records(engine) if r["event"] == "run_started"]
    assert started
    for record in started:
        details = json.loads(record["details"])
        assert details["key_fingerprint"] == key_fingerprint(HASH_KEY.encode())
        assert HASH_KEY not in record["details"]
    assert key_fingerprint(b"another-key-0123456789") != key_fingerprint(HASH_KEY.encode())
    assert api.verify(settings).key_fingerprints == {key_fingerprint(HASH_KEY.encode())}


def test_verify_under_another_key_says_the_records_were_written_under_another(
    settings: Settings, engine: Engine
) -> None:
    seven_records(settings, engine)
    url = settings.database_url.get_secret_value()
    args = ["audit", "verify", "--database", url, "--policy", str(settings.policy_file)]

    same = invoke(args, env={"RETENTION_HASH_KEY": HASH_KEY})
    other = invoke(args, env={"RETENTION_HASH_KEY": "a-rotated-key-0123456789"})

    assert same.exit_code == other.exit_code == 0
    assert "another hash key" not in same.stderr and "other hash key" not in same.stderr
    assert "1 other hash key" in other.stderr
    assert "a-rotated-key" not in other.output


def test_key_fingerprints_count_the_runs_under_each_key(settings: Settings, engine: Engine) -> None:
    """What `audit find` needs to say the records were written under another key."""
    seven_records(settings, engine)
    with engine.connect() as conn:
        found = key_fingerprints(conn, "retention_audit")
    assert found == {key_fingerprint(HASH_KEY.encode()): 1}
    assert key_fingerprint(b"a-rotated-key-0123456789") not in found
