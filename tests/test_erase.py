"""``retention erase`` (issue 14 item 1; SPEC sections 4 and 6), on SQLite, PostgreSQL and
MariaDB: one data subject's rows removed now through every enabled rule whose
``hold_subject`` reaches them, with cascades, ``where`` and ``unless`` (or not, with
``erase: {ignore_unless: true}``); a held subject refused before any write (exit 3);
idempotent; a dry run that writes nothing; the audit log that never holds the subject id;
``audit find --subject`` and the certificate's erasure requests.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from builders import cli_on, helpdesk_schema, lease_held, subjects_schema, write_policy
from sqlalchemy import Engine, MetaData, func, insert, select, text

from retention.settings import Settings

OLD = datetime(2025, 1, 1)
RECENT = datetime(2099, 1, 1)  # in the future: never due by age, erased all the same
ALICE = "user-alice-7f3a9c"  # a subject id that no other value in the database contains
BOB = "user-bob-2b81d0"
HELD = "user-carol-93e7aa"

ROWS: dict[str, list[dict[str, Any]]] = {
    "tickets": [{"id": 1, "status": "open"}, {"id": 2, "status": "closed"}],
    "feedback": [
        {"id": 1, "submitted_at": RECENT, "user_ref": ALICE, "ticket_id": None, "email": "a@x.org"},
        {"id": 2, "submitted_at": OLD, "user_ref": ALICE, "ticket_id": 2, "email": "a@x.org"},
        {"id": 3, "submitted_at": RECENT, "user_ref": ALICE, "ticket_id": 1, "email": "a@x.org"},
        {"id": 4, "submitted_at": OLD, "user_ref": BOB, "ticket_id": None, "email": "b@x.org"},
        {"id": 5, "submitted_at": OLD, "user_ref": HELD, "ticket_id": None, "email": "c@x.org"},
    ],
    "feedback_contacts": [
        {"id": 10, "feedback_id": 1, "phone": "13800000001"},
        {"id": 11, "feedback_id": 2, "phone": "13800000002"},
        {"id": 12, "feedback_id": 3, "phone": "13800000003"},
        {"id": 13, "feedback_id": 4, "phone": "13800000004"},
        {"id": 14, "feedback_id": 5, "phone": "13800000005"},
    ],
    "access_log": [
        {"id": 20, "logged_at": RECENT, "user_ref": ALICE, "ip": "203.0.113.7"},
        {"id": 21, "logged_at": OLD, "user_ref": BOB, "ip": "203.0.113.8"},
        {"id": 22, "logged_at": RECENT, "user_ref": HELD, "ip": "203.0.113.9"},
    ],
    "legal_holds": [
        {"id": 1, "subject_ref": HELD, "released_at": None},
        {"id": 2, "subject_ref": BOB, "released_at": OLD},  # released: no longer holds
    ],
}


def policy(*, ignore_unless: bool = False, **audit: Any) -> dict[str, Any]:
    feedback: dict[str, Any] = {
        "name": "feedback-after-3-months",
        "table": "feedback",
        "clock": "submitted_at",
        "after": "P3M",
        "hold_subject": "user_ref",
        "unless": {
            "related": {
                "table": "tickets",
                "on": {"id": "ticket_id"},
                "where": {"status": "open"},
            }
        },
        "action": "delete",
        "cascade": [{"table": "feedback_contacts", "on": {"feedback_id": "id"}}],
    }
    if ignore_unless:
        feedback["erase"] = {"ignore_unless": True}
    return {
        "version": 1,
        "defaults": {"guard": {"max_fraction": 1}},
        "audit": {"table": "retention_audit", **audit},
        "holds": {
            "table": "legal_holds",
            "subject_column": "subject_ref",
            "active": {"released_at": {"is_null": True}},
        },
        "rules": [
            feedback,
            {
                "name": "access-log-ip",
                "table": "access_log",
                "clock": "logged_at",
                "after": "P30D",
                "hold_subject": "user_ref",
                "action": "anonymise",
                "set": {"ip": None},
            },
        ],
    }


@pytest.fixture
def subjects(engine: Engine, settings: Settings) -> MetaData:
    meta = subjects_schema()
    meta.create_all(engine)
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            conn.execute(insert(table), ROWS[table.name])
    write_policy(settings.policy_file, policy())
    return meta


def ids(engine: Engine, meta: MetaData, name: str) -> list[int]:
    table = meta.tables[name]
    with engine.connect() as conn:
        return sorted(conn.execute(select(table.c.id)).scalars())


def ips(engine: Engine, meta: MetaData) -> dict[int, str | None]:
    log = meta.tables["access_log"]
    with engine.connect() as conn:
        return {i: ip for i, ip in conn.execute(select(log.c.id, log.c.ip))}


def records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM retention_audit ORDER BY seq"))
        return [dict(row._mapping) for row in rows]


def erase(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli_on(settings, "erase", *args, "--output", "json")
    assert result.exit_code in (0, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def test_erasing_a_subject_removes_their_rows_and_dependents_whatever_their_age(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    """Alice's feedback 1 (new) and 2 (old) go with their contacts; feedback 3 stays, kept
    by `unless` (its ticket is open); her access log row is anonymised; nobody else's row
    changes."""
    code, out = erase(settings, "--subject", ALICE)
    assert code == 0
    assert ids(engine, subjects, "feedback") == [3, 4, 5]
    assert ids(engine, subjects, "feedback_contacts") == [12, 13, 14]
    assert ips(engine, subjects) == {20: None, 21: "203.0.113.8", 22: "203.0.113.9"}
    request = out["requests"][0]
    assert (request["outcome"], request["rows"]) == ("done", 3)
    assert request["tables"] == {"feedback": 2, "feedback_contacts": 2, "access_log": 1}
    assert request["rules"][0]["kept_unless"] == 1
    events = [r["event"] for r in records(engine)]
    assert events[0] == "erasure_started" and events[-1] == "erasure_finished"
    assert events.count("batch") == 2 and events.count("rule_finished") == 2


def test_ignore_unless_erases_the_rows_unless_would_keep(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    write_policy(settings.policy_file, policy(ignore_unless=True))
    code, out = erase(settings, "--subject", ALICE)
    assert code == 0
    assert ids(engine, subjects, "feedback") == [4, 5]
    assert ids(engine, subjects, "feedback_contacts") == [13, 14]
    assert out["requests"][0]["rules"][0]["kept_unless"] == 0


def test_a_subject_under_a_legal_hold_is_refused_before_any_write(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    """Exit 3; every row stays; the refusal is recorded, without a batch."""
    code, out = erase(settings, "--subject", HELD)
    assert code == 3
    assert out["requests"][0]["held"] is True
    assert ids(engine, subjects, "feedback") == [1, 2, 3, 4, 5]
    assert ips(engine, subjects)[22] == "203.0.113.9"
    found = records(engine)
    assert [r["event"] for r in found] == ["erasure_started", "erasure_finished"]
    assert json.loads(found[-1]["details"])["outcome"] == "held"


def test_a_released_hold_does_not_stop_the_erasure(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    code, _ = erase(settings, "--subject", BOB)
    assert code == 0
    assert ids(engine, subjects, "feedback") == [1, 2, 3, 5]


def test_repeating_a_request_removes_nothing_more_and_the_chain_verifies(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    assert erase(settings, "--subject", ALICE)[1]["requests"][0]["rows"] == 3
    code, out = erase(settings, "--subject", ALICE)
    assert code == 0
    assert out["requests"][0]["rows"] == 0
    assert ids(engine, subjects, "feedback") == [3, 4, 5]
    assert cli_on(settings, "audit", "verify").exit_code == 0


def test_a_dry_run_counts_per_rule_and_table_and_writes_nothing(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    code, out = erase(settings, "--subject", ALICE, "--dry-run")
    assert code == 0
    rules = {r["rule"]: r for r in out["requests"][0]["rules"]}
    assert rules["feedback-after-3-months"]["rows"] == 2
    assert rules["feedback-after-3-months"]["dependents"] == {"feedback_contacts": 2}
    assert rules["access-log-ip"]["rows"] == 1
    assert ids(engine, subjects, "feedback") == [1, 2, 3, 4, 5]
    with engine.connect() as conn:
        assert "retention_audit" not in set(engine.dialect.get_table_names(conn))


def test_the_audit_log_and_the_output_never_hold_the_subject_id(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    for subject in (ALICE, HELD):
        shown = cli_on(settings, "erase", "--subject", subject)
        assert subject not in shown.stdout and subject not in shown.stderr
    dumped = json.dumps(records(engine), default=str)
    assert ALICE not in dumped and HELD not in dumped
    export = cli_on(settings, "audit", "export", "--format", "jsonl")
    assert export.exit_code == 0 and ALICE not in export.stdout


def test_audit_find_subject_says_when_and_what_was_erased(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    erase(settings, "--subject", ALICE)
    found = cli_on(settings, "audit", "find", "--subject", ALICE, "--format", "json")
    assert found.exit_code == 0, found.output
    data = json.loads(found.stdout)
    assert data["erased"] is True
    (request,) = data["requests"]
    assert request["outcome"] == "done"
    assert {t["table"]: t["rows"] for t in request["tables"]} == {
        "feedback": 2,
        "feedback_contacts": 2,
        "access_log": 1,
    }
    assert set(request["rules"]) == {"feedback-after-3-months", "access-log-ip"}
    other = cli_on(settings, "audit", "find", "--subject", BOB, "--format", "json")
    assert json.loads(other.stdout) == {"erased": False, "requests": []}


def test_the_certificate_lists_erasure_requests_without_the_subject(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    erase(settings, "--subject", ALICE)
    erase(settings, "--subject", HELD)
    report = cli_on(settings, "audit", "report", "--format", "json")
    assert report.exit_code == 0
    data = json.loads(report.stdout)
    outcomes = [q["outcome"] for q in data["erasure_requests"]]
    assert outcomes == ["done", "held"]
    assert data["erasure_requests"][0]["rows"] == 3
    assert data["erasure_requests"][0]["dependent_rows"] == 2
    html = cli_on(settings, "audit", "report", "--format", "html").stdout
    assert "Erasure requests" in html
    for shown in (report.stdout, html):
        assert ALICE not in shown and HELD not in shown and "subject_digest" not in shown


def test_a_subjects_file_skips_blank_lines_and_comments(
    settings: Settings, engine: Engine, subjects: MetaData, tmp_path: Path
) -> None:
    listed = tmp_path / "subjects.txt"
    listed.write_text(f"# requests of this week\n\n{ALICE}\n  {BOB}  \n", encoding="utf-8")
    code, out = erase(settings, "--subjects-file", str(listed))
    assert code == 0
    assert [q["subject"] for q in out["requests"]] == [1, 2]
    assert ids(engine, subjects, "feedback") == [3, 5]


def test_a_bad_subjects_file_is_one_line_and_exit_2(
    settings: Settings, subjects: MetaData, tmp_path: Path
) -> None:
    listed = tmp_path / "subjects.txt"
    listed.write_bytes(b"# ok\n\xff\xfe\n")
    result = cli_on(settings, "erase", "--subjects-file", str(listed))
    assert result.exit_code == 2
    assert f"{listed}:2: --subjects-file: not UTF-8 text" in result.stderr
    assert "Traceback" not in result.output
    missing = cli_on(settings, "erase", "--subjects-file", str(tmp_path / "none.txt"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


def test_erase_without_a_subject_is_a_usage_error(settings: Settings, subjects: MetaData) -> None:
    assert cli_on(settings, "erase").exit_code == 2


# --- through a relation ---------------------------------------------------------------

TICKET = {"table": "tickets", "on": {"id": "object_id"}}


def test_a_subject_reached_through_a_relation_is_erased_with_cascades(
    settings: Settings, engine: Engine
) -> None:
    """Threads name their user through their ticket: user 7's ticket 1 has threads 10
    and 11 (with entry 100, 101); task 1's thread 12 shares the id but is no ticket's."""
    meta = helpdesk_schema()
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(meta.tables["tickets"]),
            [
                {"id": 1, "user_id": 7, "status": "open", "closed_at": None},
                {"id": 2, "user_id": 8, "status": "open", "closed_at": None},
            ],
        )
        conn.execute(
            insert(meta.tables["threads"]),
            [
                {"id": 10, "object_type": "T", "object_id": 1, "created_at": OLD},
                {"id": 11, "object_type": "T", "object_id": 1, "created_at": RECENT},
                {"id": 12, "object_type": "A", "object_id": 1, "created_at": OLD},
                {"id": 13, "object_type": "T", "object_id": 2, "created_at": OLD},
            ],
        )
        conn.execute(
            insert(meta.tables["entries"]),
            [{"id": 100 + i, "thread_id": t} for i, t in enumerate((10, 11, 12, 13))],
        )
    rule = {
        "name": "ticket-threads",
        "table": "threads",
        "where": {"object_type": "T"},
        "clock": {"related": TICKET, "column": "closed_at"},
        "after": "P90D",
        "hold_subject": {"related": TICKET, "column": "user_id"},
        "action": "delete",
        "cascade": [{"table": "entries", "on": {"thread_id": "id"}}],
    }
    write_policy(
        settings.policy_file,
        {
            "version": 1,
            "defaults": {"guard": {"max_fraction": 1}},
            "holds": {"table": "legal_holds", "subject_column": "user_id"},
            "rules": [rule],
        },
    )
    code, out = erase(settings, "--subject", "7")
    assert code == 0
    assert out["requests"][0]["tables"] == {"threads": 2, "entries": 2}
    with engine.connect() as conn:
        threads = meta.tables["threads"]
        assert sorted(conn.execute(select(threads.c.id)).scalars()) == [12, 13]
        assert conn.execute(select(func.count()).select_from(meta.tables["entries"])).scalar() == 2
    assert erase(settings, "--subject", "7")[1]["requests"][0]["rows"] == 0
    # An id that the subject column cannot hold reaches no row, and is no error.
    assert erase(settings, "--subject", "not-a-number")[0] == 0


def test_a_rule_another_run_holds_is_skipped_and_the_request_is_retried_later(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    """Erase takes each rule's lease as a run does: a rule leased elsewhere is recorded as
    skipped, its rows stay, and the request ends incomplete with exit 75."""
    with lease_held(engine, rule="feedback-after-3-months"):
        result = cli_on(settings, "erase", "--subject", ALICE, "--output", "json")
    assert result.exit_code == 75
    request = json.loads(result.stdout)["requests"][0]
    assert request["outcome"] == "incomplete"
    assert ids(engine, subjects, "feedback") == [1, 2, 3, 4, 5]
    assert ips(engine, subjects)[20] is None  # the other rule ran
    assert "rule_skipped" in [r["event"] for r in records(engine)]
    assert erase(settings, "--subject", ALICE)[1]["requests"][0]["rows"] == 2


def test_audit_find_takes_a_subject_or_a_key_not_both(
    settings: Settings, subjects: MetaData
) -> None:
    both = cli_on(settings, "audit", "find", "--subject", ALICE, "--table", "feedback")
    assert both.exit_code == 2 and "give --table T with --key K, or --subject ID" in both.stderr
    assert cli_on(settings, "audit", "find").exit_code == 2


def test_a_guard_does_not_stop_a_request(
    settings: Settings, engine: Engine, subjects: MetaData
) -> None:
    """Alice owns 3 of the 5 feedback rows: past the default max_fraction of 0.5, which
    would stop a run; a request names the rows it wants."""
    strict = policy(ignore_unless=True)
    del strict["defaults"]
    write_policy(settings.policy_file, strict)
    code, out = erase(settings, "--subject", ALICE)
    assert code == 0 and out["requests"][0]["rules"][0]["rows"] == 3
    assert ids(engine, subjects, "feedback") == [4, 5]


class Killed(BaseException):
    """The process dying between an erasure's last batch and its end record."""


def test_an_erasure_killed_before_its_end_is_recorded_interrupted_by_the_next_run(
    settings: Settings, engine: Engine, subjects: MetaData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its batches committed, its end record never written: the next run finds it (its
    lease gone) and records ``run_interrupted`` for it; ``audit find --subject`` then says
    "interrupted" instead of "no end record", and the chain verifies."""
    from retention import api_erase
    from retention.audit.writer import AuditWriter
    from retention.outcomes import Event

    real = AuditWriter.append_committed

    def dies_at_the_end(self: AuditWriter, bind: Any, event: Event, **fields: Any) -> Any:
        if event is Event.ERASURE_FINISHED:
            raise Killed
        return real(self, bind, event, **fields)

    monkeypatch.setattr(AuditWriter, "append_committed", dies_at_the_end)
    with pytest.raises(Killed):
        api_erase.erase(settings, [ALICE])
    monkeypatch.setattr(AuditWriter, "append_committed", real)
    assert ids(engine, subjects, "feedback") == [3, 4, 5]  # its batches did commit

    before = cli_on(settings, "audit", "find", "--subject", ALICE, "--format", "json")
    assert json.loads(before.stdout)["requests"][0]["outcome"] == "no end record"
    assert cli_on(settings, "run").exit_code == 0
    interrupted = [r for r in records(engine) if r["event"] == "run_interrupted"]
    (record,) = interrupted
    assert "erasure request ended without recording its end" in str(record["details"])
    after = cli_on(settings, "audit", "find", "--subject", ALICE, "--format", "json")
    (request,) = json.loads(after.stdout)["requests"]
    assert request["outcome"] == "interrupted"
    assert request["tables"] and request["finished_at"] is None
    assert cli_on(settings, "run").exit_code == 0  # found once, not again
    assert len([r for r in records(engine) if r["event"] == "run_interrupted"]) == 1
    assert cli_on(settings, "audit", "verify").exit_code == 0
