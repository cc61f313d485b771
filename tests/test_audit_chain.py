"""The hash-chained audit log (SPEC section 6): what a run records, and what tampering shows."""

from __future__ import annotations

import hashlib
import hmac
import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from builders import Invocation, feedback_schema, invoke, write_policy
from conftest import HASH_KEY
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError

from retention import api
from retention.audit import guard
from retention.audit.records import encode_keys, key_digest
from retention.audit.writer import ensure_audit_tables
from retention.errors import AuditTampered
from retention.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2026, 1, 10, 8, 0)
FRESH = datetime(2026, 5, 30, 8, 0)
ZERO = "0" * 64
RULE = "feedback-after-3-months"


def make_feedback(engine: Engine, due_ids: list[int], fresh_ids: list[int]) -> None:
    """``feedback`` rows (due and fresh) with one dependent contact each."""
    meta = feedback_schema(feedback=["email"])
    feedback, contacts = meta.tables["feedback"], meta.tables["feedback_contacts"]
    rows = [{"id": i, "submitted_at": OLD, "email": f"u{i}@example.com"} for i in due_ids]
    rows += [{"id": i, "submitted_at": FRESH, "email": f"u{i}@example.com"} for i in fresh_ids]
    with engine.begin() as conn:
        meta.create_all(conn)
        conn.execute(feedback.insert(), rows)
        conn.execute(
            contacts.insert(), [{"id": 1000 + r["id"], "feedback_id": r["id"]} for r in rows]
        )


def chain_policy(*, batch_size: int, extra: str = "") -> str:
    return f"""\
version: 1
rules:
  - name: {RULE}
    table: feedback
    clock: submitted_at
    after: P3M
    action: delete
    batch_size: {batch_size}
    guard: {{max_fraction: 1}}
    cascade:
      - table: feedback_contacts
        on: {{feedback_id: id}}
{extra}"""


EMAIL_RULE = """\
  - name: fresh-emails-hashed
    table: feedback
    clock: submitted_at
    after: 1 day
    action: anonymise
    guard: {max_fraction: 1}
    set: {email: {hash: {prefix: anon-}}}
"""
GUARDED_RULE = """\
  - name: everything-guarded
    table: feedback_contacts
    clock: id
    clock_unit: seconds
    after: 0 days
    action: delete
    guard: {max_rows: 1}
"""


def records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM retention_audit ORDER BY seq")).mappings()
        return [dict(row) for row in rows]


def verify_cli(settings: Settings, *args: str) -> Invocation:
    url = settings.database_url.get_secret_value()
    return invoke(
        ["audit", "verify", *args, "--database", url, "--policy", str(settings.policy_file)]
    )


# --- what a run records -------------------------------------------------------------------


def test_verify_returns_the_head_that_run_returned(settings: Settings, engine: Engine) -> None:
    make_feedback(engine, [1, 2, 3], [4])
    write_policy(settings.policy_file, chain_policy(batch_size=2))

    head = api.run(settings, now=NOW).head

    assert head is not None
    assert api.verify(settings).head == head
    assert api.verify(settings, expect_head=head).head == head
    result = verify_cli(settings, "--expect-head", head)
    assert result.exit_code == 0, result.output
    assert head in result.stdout


def test_the_log_holds_one_record_per_event_of_the_run(settings: Settings, engine: Engine) -> None:
    """run_started, a batch per batch, rule_finished per rule, run_finished; one run_id."""
    make_feedback(engine, [1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11])
    write_policy(settings.policy_file, chain_policy(batch_size=2, extra=EMAIL_RULE))

    result = api.run(settings, now=NOW)

    log = records(engine)
    assert [(r["event"], r["rule"], r["row_count"]) for r in log] == [
        ("run_started", None, None),
        ("batch", RULE, 2),
        ("batch", RULE, 2),
        ("batch", RULE, 1),
        ("rule_finished", RULE, 5),
        ("batch", "fresh-emails-hashed", 6),
        ("rule_finished", "fresh-emails-hashed", 6),
        ("run_finished", None, None),
    ]
    assert [r["seq"] for r in log] == list(range(1, 9))
    assert {r["run_id"] for r in log} == {result.run_id}
    assert api.verify(settings).records == len(log)
    batches = [r for r in log if r["event"] == "batch" and r["rule"] == RULE]
    assert [json.loads(r["dependents"]) for r in batches] == [
        {"feedback_contacts": 2},
        {"feedback_contacts": 2},
        {"feedback_contacts": 1},
    ]


def test_a_batch_key_digest_is_the_hmac_over_the_removed_keys_sorted(
    settings: Settings, engine: Engine
) -> None:
    """Computed over the keys, never holding them: no removed key or value is in the log."""
    make_feedback(engine, [8, 3, 5], [1, 2, 4, 6, 7])
    write_policy(settings.policy_file, chain_policy(batch_size=100))

    api.run(settings, now=NOW)

    (batch,) = [r for r in records(engine) if r["event"] == "batch"]
    assert batch["row_count"] == 3
    assert encode_keys([(8,), (3,), (5,)]) == b"[[3],[5],[8]]"
    expected = hmac.new(HASH_KEY.encode(), b"[[3],[5],[8]]", hashlib.sha256).hexdigest()
    assert batch["key_digest"] == expected
    assert key_digest(HASH_KEY.encode(), [(5,), (8,), (3,)]) == expected
    dump = json.dumps(records(engine), default=str)
    assert "u3@example.com" not in dump


# --- tampering --------------------------------------------------------------------------


def seven_records(settings: Settings, engine: Engine) -> str:
    """A run of four one-row batches: records 1 to 7. Returns the head."""
    make_feedback(engine, [1, 2, 3, 4], [5, 6, 7, 8, 9])
    write_policy(settings.policy_file, chain_policy(batch_size=1))
    head = api.run(settings, now=NOW).head
    assert head is not None
    assert len(records(engine)) == 7
    return head


def alter_row_count(conn: Connection) -> None:
    conn.execute(text("UPDATE retention_audit SET row_count = row_count + 1 WHERE seq = 3"))


def delete_from_the_middle(conn: Connection) -> None:
    conn.execute(text("DELETE FROM retention_audit WHERE seq = 4"))


def swap_two_records(conn: Connection) -> None:
    """Records 3 and 4 exchange everything but their seq: the log is reordered."""
    audit = Table("retention_audit", MetaData(), autoload_with=conn)
    third, fourth = (
        dict(conn.execute(select(audit).where(audit.c.seq == n)).one()._mapping) for n in (3, 4)
    )
    conn.execute(audit.delete().where(audit.c.seq.in_([3, 4])))
    conn.execute(audit.insert(), [{**fourth, "seq": 3}, {**third, "seq": 4}])


def forge_a_record_at_the_end(conn: Connection) -> None:
    """A copy of the last record, appended as record 8 with a made-up hash."""
    audit = Table("retention_audit", MetaData(), autoload_with=conn)
    last = dict(conn.execute(select(audit).where(audit.c.seq == 7)).one()._mapping)
    forged = {**last, "seq": 8, "prev_hash": last["hash"], "row_count": 0}
    forged["hash"] = hashlib.sha256(b"forged").hexdigest()
    conn.execute(audit.insert(), [forged])


@pytest.mark.parametrize(
    ("tamper", "seq"),
    [
        (alter_row_count, 3),
        (delete_from_the_middle, 4),
        (swap_two_records, 3),
        (forge_a_record_at_the_end, 8),
    ],
    ids=["altered", "deleted", "reordered", "inserted"],
)
def test_tampering_is_detected_at_the_first_bad_record(
    settings: Settings, engine: Engine, tamper: Callable[[Connection], None], seq: int
) -> None:
    seven_records(settings, engine)
    assert api.verify(settings).records == 7
    with engine.begin() as conn:
        guard.remove(conn, "retention_audit")  # as the table's owner could
        tamper(conn)

    with pytest.raises(AuditTampered) as caught:
        api.verify(settings)

    assert caught.value.seq == seq
    result = verify_cli(settings)
    assert result.exit_code == 4, result.output
    assert f"record {seq}" in result.stderr


def test_verify_stopped_by_a_bad_record_leaves_no_stream_half_read(
    settings: Settings, engine: Engine
) -> None:
    """A log longer than one streamed fetch (1000 rows), bad at record 8: verify stops
    there and closes the stream, so no driver warns about the unread rest (MariaDB's said
    "Previous unbuffered result was left incomplete" on the connection's next statement)."""
    seven_records(settings, engine)
    with engine.begin() as conn:
        guard.remove(conn, "retention_audit")  # as the table's owner could
        audit = Table("retention_audit", MetaData(), autoload_with=conn)
        last = dict(conn.execute(select(audit).where(audit.c.seq == 7)).one()._mapping)
        forged = [{**last, "seq": n, "hash": f"{n:064x}"} for n in range(8, 1208)]
        conn.execute(audit.insert(), forged)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = verify_cli(settings)
    assert result.exit_code == 4, result.output
    assert "record 8" in result.stderr
    assert [str(w.message) for w in caught if "unbuffered" in str(w.message)] == []


def rewind_head(conn: Connection) -> None:
    """Point the head table at the last record left, as an owner cutting the tail could."""
    last = conn.execute(text("SELECT MAX(seq) FROM retention_audit")).scalar_one()
    tip = conn.execute(text("SELECT hash FROM retention_audit WHERE seq = :s"), {"s": last})
    conn.execute(
        text("UPDATE retention_audit_head SET seq = :s, hash = :h WHERE id = 1"),
        {"s": last, "h": tip.scalar_one()},
    )


def test_a_cut_tail_is_detected_only_against_the_expected_head(
    settings: Settings, engine: Engine
) -> None:
    """With the head table rewound too; an intact head table catches it alone
    (test_verify_tamper.py)."""
    head = seven_records(settings, engine)
    with engine.begin() as conn:
        guard.remove(conn, "retention_audit")
        conn.execute(text("DELETE FROM retention_audit WHERE seq >= 6"))
        rewind_head(conn)

    assert api.verify(settings).records == 5
    assert verify_cli(settings).exit_code == 0
    with pytest.raises(AuditTampered) as caught:
        api.verify(settings, expect_head=head)
    assert head in caught.value.reason
    result = verify_cli(settings, "--expect-head", head)
    assert result.exit_code == 4, result.output


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE retention_audit SET row_count = 0 WHERE seq = 3",
        "DELETE FROM retention_audit WHERE seq = 7",
    ],
    ids=["update", "delete"],
)
def test_the_append_only_guard_rejects_rewriting_the_log(
    settings: Settings, engine: Engine, statement: str
) -> None:
    head = seven_records(settings, engine)
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(text(statement))
    assert api.verify(settings, expect_head=head).records == 7


# --- an auditor's own verifier, from SPEC section 6 alone -------------------------------


def stamp(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite keeps timestamps as text
        value = datetime.fromisoformat(value)
    return str(value.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def independent_head(engine: Engine) -> str:
    """Recompute every hash with plain SQL and the standard library; return the head."""
    prev = ZERO
    for row in records(engine):
        body = {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}
        body["at"], body["cutoff"] = stamp(body["at"]), stamp(body["cutoff"])
        for name in ("dependents", "details"):
            body[name] = json.loads(body[name]) if body[name] is not None else None
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256((prev + canonical).encode("utf-8")).hexdigest()
        assert (row["prev_hash"], row["hash"]) == (prev, digest), row["seq"]
        prev = digest
    return prev


def test_an_independent_verifier_agrees_with_every_hash(settings: Settings, engine: Engine) -> None:
    """Over batches with dependents, a tripped guard, an anonymise rule and two runs."""
    make_feedback(engine, [1, 2, 3], [4, 5])
    write_policy(settings.policy_file, chain_policy(batch_size=2, extra=EMAIL_RULE + GUARDED_RULE))
    api.run(settings, now=NOW)
    head = api.run(settings, now=NOW.replace(day=2)).head

    log = records(engine)
    assert {"batch", "guard_tripped", "rule_finished"} <= {r["event"] for r in log}
    assert independent_head(engine) == head == api.verify(settings).head


def test_an_absent_log_verifies_with_the_zero_head(settings: Settings, engine: Engine) -> None:
    """Only when asked to (--allow-empty); without it, test_verify_tamper.py: exit 4."""
    make_feedback(engine, [1], [])
    write_policy(settings.policy_file, chain_policy(batch_size=1))

    verified = api.verify(settings, allow_empty=True)
    assert verified == api.verify(settings, expect_head=ZERO, allow_empty=True)
    assert (verified.records, verified.head) == (0, ZERO)
    result = verify_cli(settings, "--allow-empty")
    assert result.exit_code == 0, result.output
    assert ZERO in result.stdout


def test_an_empty_log_verifies_with_the_zero_head(settings: Settings, engine: Engine) -> None:
    write_policy(settings.policy_file, chain_policy(batch_size=1))
    ensure_audit_tables(engine, "retention_audit")

    verified = api.verify(settings, expect_head=ZERO)

    assert (verified.records, verified.head) == (0, ZERO)
    assert independent_head(engine) == ZERO
    assert verify_cli(settings, "--expect-head", ZERO).exit_code == 0


def test_run_appends_its_head_to_the_head_file_and_a_kept_head_catches_a_cut_tail(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """Heads kept outside the database (RETENTION_AUDIT_HEAD_FILE) prove a cut tail."""
    heads = tmp_path / "heads.txt"
    kept = settings.model_copy(update={"audit_head_file": heads})
    make_feedback(engine, [1, 2, 3], [4, 5])
    write_policy(settings.policy_file, chain_policy(batch_size=1))
    first = api.run(kept, now=NOW).head
    second = api.run(kept, now=NOW).head
    assert heads.read_text().split() == [first, second]
    assert api.verify(settings, heads_file=str(heads)).head == second

    with engine.begin() as conn:
        guard.remove(conn, "retention_audit")
        last_of_first_run = conn.execute(
            text("SELECT seq FROM retention_audit WHERE hash = :h"), {"h": first}
        ).scalar_one()
        conn.execute(text("DELETE FROM retention_audit WHERE seq > :s"), {"s": last_of_first_run})
        rewind_head(conn)

    assert api.verify(settings).head == first  # alone, the shorter log looks whole
    with pytest.raises(AuditTampered) as caught:
        api.verify(settings, heads_file=str(heads))
    assert second in caught.value.reason
    result = verify_cli(settings, "--heads-file", str(heads))
    assert result.exit_code == 4, result.output
