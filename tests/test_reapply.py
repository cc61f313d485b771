"""``retention audit reapply`` (issue 14 item 3; SPEC sections 4 and 6), on SQLite,
PostgreSQL and MariaDB: after a simulated backup restore (the removed rows inserted
again), the rows whose keys the log records as removed are removed or anonymised again
through their rule, with its cascades, recorded as ``reapplied``; the rows never removed
stay; a second reapply finds nothing; ``--dry-run`` counts only; without
``record_keys`` a clear error, exit 78.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import cli_on, subjects_schema, write_policy
from sqlalchemy import Engine, MetaData, insert, select, text, update

from retention import api
from retention.reapply import PAGE
from retention.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2025, 1, 1)
RECENT = datetime(2026, 5, 30)
HELD = "user-held"


def _feedback(id_: int, at: datetime, user: str = "user-a") -> dict[str, Any]:
    return {"id": id_, "submitted_at": at, "user_ref": user, "ticket_id": None, "email": "e@x"}


# Feedback 1-3 and 7 are due; 4-6 are recent; 7's user is on hold. Contacts follow.
FEEDBACK = [
    _feedback(1, OLD),
    _feedback(2, OLD),
    _feedback(3, OLD),
    _feedback(4, RECENT),
    _feedback(5, RECENT),
    _feedback(6, RECENT),
    _feedback(7, OLD, HELD),
]
CONTACTS = [{"id": 10 + f["id"], "feedback_id": f["id"], "phone": "1380000"} for f in FEEDBACK]
ACCESS = [
    {"id": 20, "logged_at": OLD, "user_ref": "user-a", "ip": "203.0.113.7"},
    {"id": 21, "logged_at": RECENT, "user_ref": "user-a", "ip": "203.0.113.8"},
]


def policy(record_keys: bool = True) -> dict[str, Any]:
    return {
        "version": 1,
        "defaults": {"guard": {"max_fraction": 1}},
        "audit": {"record_keys": record_keys},
        "holds": {"table": "legal_holds", "subject_column": "subject_ref"},
        "rules": [
            {
                "name": "feedback-after-3-months",
                "table": "feedback",
                "clock": "submitted_at",
                "after": "P3M",
                "hold_subject": "user_ref",
                "action": "delete",
                "cascade": [{"table": "feedback_contacts", "on": {"feedback_id": "id"}}],
            },
            {
                "name": "access-log-ip",
                "table": "access_log",
                "clock": "logged_at",
                "after": "P30D",
                "action": "anonymise",
                "set": {"ip": None},
            },
        ],
    }


@pytest.fixture
def restored(engine: Engine, settings: Settings) -> MetaData:
    """A run removed feedback 1-3 (with contacts 11-13) and anonymised access row 20; then
    a backup from before the run was restored: those rows are back as they were. Feedback
    8, a new row with a key never removed, came after."""
    meta = subjects_schema()
    meta.create_all(engine)
    tables = meta.tables
    with engine.begin() as conn:
        conn.execute(insert(tables["feedback"]), FEEDBACK)
        conn.execute(insert(tables["feedback_contacts"]), CONTACTS)
        conn.execute(insert(tables["access_log"]), ACCESS)
        conn.execute(insert(tables["legal_holds"]), [{"id": 1, "subject_ref": HELD}])
    write_policy(settings.policy_file, policy())
    result = api.run(settings, now=NOW)
    assert [r.rows for r in result.rules] == [3, 1]
    with engine.begin() as conn:
        conn.execute(insert(tables["feedback"]), [*FEEDBACK[:3], _feedback(8, OLD, HELD)])
        conn.execute(insert(tables["feedback_contacts"]), CONTACTS[:3])
        conn.execute(update(tables["access_log"]).where(tables["access_log"].c.id == 20), ACCESS[0])
    return meta


def ids(engine: Engine, meta: MetaData, name: str) -> list[int]:
    table = meta.tables[name]
    with engine.connect() as conn:
        return sorted(conn.execute(select(table.c.id)).scalars())


def reapply(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli_on(settings, "audit", "reapply", *args, "--output", "json")
    assert result.exit_code == 0, result.output
    return result.exit_code, json.loads(result.stdout)


def test_reapply_after_a_restore_leaves_exactly_the_rows_never_removed(
    settings: Settings, engine: Engine, restored: MetaData
) -> None:
    _, out = reapply(settings)
    rules = {r["rule"]: r for r in out["rules"]}
    feedback = rules["feedback-after-3-months"]
    assert (feedback["recorded"], feedback["rows"]) == (3, 3)
    assert feedback["dependents"] == {"feedback_contacts": 3}
    assert (rules["access-log-ip"]["recorded"], rules["access-log-ip"]["rows"]) == (1, 1)
    # 4-6 were never due, 7 and 8 were never removed (held; new): all stay.
    assert ids(engine, restored, "feedback") == [4, 5, 6, 7, 8]
    assert ids(engine, restored, "feedback_contacts") == [14, 15, 16, 17]
    log = restored.tables["access_log"]
    with engine.connect() as conn:
        assert dict(conn.execute(select(log.c.id, log.c.ip)).all()) == {
            20: None,
            21: ACCESS[1]["ip"],
        }
        events = conn.execute(
            text("SELECT event, rule, row_count FROM retention_audit ORDER BY seq")
        ).all()
    reapplied = [(e.rule, e.row_count) for e in events if e.event == "reapplied"]
    assert reapplied == [("feedback-after-3-months", 3), ("access-log-ip", 1)]
    assert cli_on(settings, "audit", "verify").exit_code == 0


def test_a_second_reapply_finds_nothing(
    settings: Settings, engine: Engine, restored: MetaData
) -> None:
    reapply(settings)
    _, again = reapply(settings)
    assert again["rows"] == 0
    # The anonymised row is still recorded, and found already done.
    access = next(r for r in again["rules"] if r["rule"] == "access-log-ip")
    assert (access["recorded"], access["already_done"]) == (1, 1)


def test_a_dry_run_counts_and_writes_nothing(
    settings: Settings, engine: Engine, restored: MetaData
) -> None:
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM retention_audit")).scalar()
    _, out = reapply(settings, "--dry-run")
    assert out["dry_run"] is True and out["rows"] == 4
    assert ids(engine, restored, "feedback") == [1, 2, 3, 4, 5, 6, 7, 8]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM retention_audit")).scalar() == before


def test_table_limits_reapply_to_its_rules(
    settings: Settings, engine: Engine, restored: MetaData
) -> None:
    _, out = reapply(settings, "--table", "access_log")
    assert [r["rule"] for r in out["rules"]] == ["access-log-ip"]
    assert ids(engine, restored, "feedback") == [1, 2, 3, 4, 5, 6, 7, 8]
    unknown = cli_on(settings, "audit", "reapply", "--table", "nope")
    assert unknown.exit_code == 2 and "no enabled rule acts on table 'nope'" in unknown.stderr


def test_a_row_held_since_its_removal_is_kept(
    settings: Settings, engine: Engine, restored: MetaData
) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE feedback SET user_ref = :h WHERE id = 2"), {"h": HELD})
    _, out = reapply(settings, "--table", "feedback")
    assert out["rules"][0]["kept_holds"] == 1
    assert ids(engine, restored, "feedback") == [2, 4, 5, 6, 7, 8]


def test_reapply_walks_the_table_in_pages(
    settings: Settings, engine: Engine, restored: MetaData
) -> None:
    """More live rows than a page: the recorded ones beyond the first page are found."""
    rows = [_feedback(1000 + i, RECENT) for i in range(PAGE + 5)]
    with engine.begin() as conn:
        conn.execute(insert(restored.tables["feedback"]), rows)
        conn.execute(text("DELETE FROM feedback_contacts WHERE feedback_id = 1"))
        conn.execute(text("DELETE FROM feedback WHERE id = 1"))
        conn.execute(insert(restored.tables["feedback"]), [_feedback(5000, OLD)])
    api.run(settings, now=NOW)  # removes 2, 3 and 5000, recording their keys
    with engine.begin() as conn:
        conn.execute(insert(restored.tables["feedback"]), [_feedback(5000, OLD)])
    _, out = reapply(settings, "--table", "feedback")
    assert out["rules"][0]["rows"] == 1
    assert 5000 not in ids(engine, restored, "feedback")


def test_without_record_keys_reapply_says_what_to_set(
    settings: Settings, engine: Engine, restored: MetaData
) -> None:
    write_policy(settings.policy_file, policy(record_keys=False))
    result = cli_on(settings, "audit", "reapply")
    assert result.exit_code == 78
    assert "set `audit: {record_keys: true}`" in result.stderr
    assert "Traceback" not in result.output
