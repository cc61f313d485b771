"""Policy features of issue 11 (SPEC section 2), on SQLite, PostgreSQL and MariaDB:
time tests on Unix-time columns, literal case-sensitive text tests, ``--now``, and
parked (disabled) rules.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from builders import invoke, write_policy
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
)

from retention import api
from retention.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2020, 1, 1)  # naive UTC: every row is past the rule's own cutoff
CONFIG_ERROR = 78
USAGE_ERROR = 2


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


ROWS: list[dict[str, Any]] = [
    {"id": 1, "accessed_ms": _ms(NOW - timedelta(days=10)), "name": "Report_2024.pdf"},
    {"id": 2, "accessed_ms": _ms(NOW - timedelta(days=100)), "name": "report%final.txt"},
    {"id": 3, "accessed_ms": None, "name": "REPORT.PDF"},
    {"id": 4, "accessed_ms": _ms(NOW - timedelta(days=90)), "name": "a_b.pdf"},
    {"id": 5, "accessed_ms": _ms(NOW - timedelta(days=90)) - 1, "name": "x*y?[z].pdf"},
]


@pytest.fixture
def media(settings: Settings) -> Any:
    engine = create_engine(settings.database_url.get_secret_value())
    meta = MetaData()
    table = Table(
        "media",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", DateTime, nullable=False),
        Column("accessed_ms", BigInteger),
        Column("name", String(40)),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{**row, "created_at": OLD} for row in ROWS])
    yield engine, table
    engine.dispose()


def policy(settings: Settings, where: Any, **extra: Any) -> None:
    rule = {"name": "media", "table": "media", "clock": "created_at", "after": "P1D"}
    rule |= {"action": "delete", "where": where} | extra
    write_policy(
        settings.policy_file,
        {"version": 1, "defaults": {"guard": {"max_fraction": 1}}, "rules": [rule]},
    )


def env(settings: Settings) -> dict[str, str]:
    return {
        "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
        "RETENTION_POLICY_FILE": str(settings.policy_file),
        "RETENTION_HASH_KEY": settings.require_hash_key().decode(),
        "RETENTION_LOG_FORMAT": "console",
    }


def due(settings: Settings, where: Any) -> int:
    policy(settings, where)
    return api.plan(settings, now=NOW).rules[0].counts.due


def left(media: Any) -> list[int]:
    engine, table = media
    with engine.connect() as conn:
        return sorted(conn.execute(select(table.c.id)).scalars())


# --- item 4: time tests on Unix-time columns ------------------------------------------


def test_older_than_on_milliseconds_keeps_the_boundary_and_null(
    settings: Settings, media: Any
) -> None:
    policy(settings, {"accessed_ms": {"older_than": "P90D", "unit": "milliseconds"}})
    assert api.run(settings, now=NOW).rules[0].rows == 2
    # Exactly 90 days old is not older than 90 days; a NULL is never due.
    assert left(media) == [1, 3, 4]


def test_newer_than_on_milliseconds_keeps_media_accessed_recently(
    settings: Settings, media: Any
) -> None:
    policy(settings, {"not": {"accessed_ms": {"newer_than": "P90D", "unit": "milliseconds"}}})
    api.run(settings, now=NOW)
    assert left(media) == [1, 4]


def test_unix_time_needs_unit_and_unit_needs_an_integer(settings: Settings, media: Any) -> None:
    policy(settings, {"accessed_ms": {"older_than": "P90D"}})
    result = invoke(["validate"], env(settings))
    assert result.exit_code == CONFIG_ERROR, result.output
    assert "'accessed_ms' is an integer: add unit: seconds" in result.output
    policy(settings, {"created_at": {"older_than": "P90D", "unit": "seconds"}})
    result = invoke(["validate"], env(settings))
    assert result.exit_code == CONFIG_ERROR, result.output
    assert "unit needs an integer column of Unix time; 'created_at'" in result.output


def test_unit_without_a_time_test_is_refused_offline(settings: Settings) -> None:
    policy(settings, {"accessed_ms": {"eq": 5, "unit": "seconds"}})
    result = invoke(["validate", "--offline"], env(settings))
    assert result.exit_code == CONFIG_ERROR, result.output
    assert "unit is only valid beside older_than or newer_than" in result.output
    assert "Traceback" not in result.output


# --- item 6: text tests ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ({"starts_with": "report"}, 1),  # not 'Report_2024.pdf' nor 'REPORT.PDF'
        ({"ends_with": ".pdf"}, 3),  # not 'REPORT.PDF'
        ({"contains": "%"}, 1),  # a literal percent sign, not a wildcard
        ({"contains": "_"}, 2),  # a literal underscore
        ({"starts_with": "a_b"}, 1),
        ({"contains": "*y?[z]"}, 1),  # GLOB's wildcards are literal too
        ({"contains": "PDF"}, 1),
    ],
)
def test_text_tests_are_literal_and_case_sensitive(
    settings: Settings, media: Any, test: dict[str, str], expected: int
) -> None:
    assert due(settings, {"name": test}) == expected


def test_text_tests_delete_only_what_they_match(settings: Settings, media: Any) -> None:
    policy(settings, {"name": {"ends_with": ".pdf", "contains": "_"}})
    api.run(settings, now=NOW)
    assert left(media) == [2, 3, 5]


def test_text_tests_need_a_text_column(settings: Settings, media: Any) -> None:
    policy(settings, {"accessed_ms": {"starts_with": "1"}})
    result = invoke(["validate"], env(settings))
    assert result.exit_code == CONFIG_ERROR, result.output
    assert "starts_with needs a text column; 'accessed_ms'" in result.output


# --- item 7: --now --------------------------------------------------------------------


def test_plan_and_run_report_the_pinned_reading(settings: Settings, media: Any) -> None:
    policy(settings, {"accessed_ms": {"older_than": "P90D", "unit": "milliseconds"}})
    planned = invoke(
        ["plan", "--output", "json", "--now", "2026-06-01T14:00:00+02:00"], env(settings)
    )
    assert planned.exit_code == 0, planned.output
    data = json.loads(planned.stdout)
    assert data["now"] == "2026-06-01T12:00:00Z"
    assert data["rules"][0]["due"] == 2
    ran = invoke(["run", "--output", "json", "--now", "2026-06-01 12:00"], env(settings))
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["now"] == "2026-06-01T12:00:00Z"  # naive means UTC
    assert left(media) == [1, 3, 4]
    engine, _ = media
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(
            "SELECT details FROM retention_audit WHERE event = 'run_started'"
        ).scalar_one()
    details = json.loads(raw)
    assert details["now_pinned"] is True
    assert details["now"].startswith("2026-06-01T12:00:00")


def test_run_refuses_a_time_later_than_the_clock(settings: Settings, media: Any) -> None:
    policy(settings, {"name": {"contains": "_"}})
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    result = invoke(["run", "--now", later], env(settings))
    assert result.exit_code == USAGE_ERROR, result.output
    assert "--now" in result.stderr and "later than the clock" in result.stderr
    assert "Traceback" not in result.output
    assert left(media) == [1, 2, 3, 4, 5]


def test_a_malformed_now_is_a_usage_error(settings: Settings, media: Any) -> None:
    policy(settings, {"name": {"contains": "_"}})
    result = invoke(["plan", "--now", "yesterday"], env(settings))
    assert result.exit_code == USAGE_ERROR, result.output
    assert "is not an ISO 8601 time" in result.stderr


# --- item 8: parked rules -------------------------------------------------------------


def test_a_disabled_rule_is_checked_offline_only(settings: Settings, media: Any) -> None:
    parked = {"name": "later", "table": "not_yet_created", "clock": "at", "after": "P1D"}
    rule = {"name": "media", "table": "media", "clock": "created_at", "after": "P1D"}
    write_policy(
        settings.policy_file,
        {
            "version": 1,
            "rules": [
                rule | {"action": "delete"},
                parked | {"action": "delete", "enabled": False},
            ],
        },
    )
    text = invoke(["validate"], env(settings))
    assert text.exit_code == 0, text.output
    assert "rule 'later' is disabled: checked offline only" in text.stdout
    as_json = invoke(["validate", "--output", "json"], env(settings))
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["parked"] == ["later"]
    # The model still checks it (stage 1-2).
    write_policy(
        settings.policy_file,
        {
            "version": 1,
            "rules": [
                rule | {"action": "delete"},
                parked | {"action": "erase", "enabled": False},
            ],
        },
    )
    assert invoke(["validate"], env(settings)).exit_code == CONFIG_ERROR
