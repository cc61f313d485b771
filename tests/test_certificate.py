"""The certificate tells the whole story: what anonymised columns became, which kept heads
were checked, how old the rows are that rules keep on purpose, and when no rule ran.

Over the demo's log (two runs, day 1 and day 3; see ``test_audit_export_report``), on
every backend.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, exists, func, not_, select
from test_audit_export_report import DAY3, DemoLog, audit_cli, demo_log, log_records

from retention import api
from retention.audit.report_html import render_html
from retention.demo import demo_metadata
from retention.settings import Settings

__all__ = ["demo_log"]  # the fixture, shared with the export and report tests

FEEDBACK = "feedback-after-3-months"
ACCOUNTS = "closed-accounts-after-30-days"


def rule(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in data["rules"] if r["rule"] == name)


def test_each_anonymised_column_says_what_it_became_and_a_hash_is_a_pseudonym(
    demo_log: DemoLog, settings: Settings
) -> None:
    data = api.certificate(settings, now=DAY3).data
    columns = {c["column"]: c for c in rule(data, ACCOUNTS)["columns"]}

    assert list(columns) == ["username", "phone", "email", "qq_number", "wechat_id"]
    assert columns["username"]["strategy"] == "hash"
    assert columns["username"]["pseudonym"] is True
    assert "linkable" in columns["username"]["becomes"]
    assert "RETENTION_HASH_KEY" in columns["username"]["becomes"]
    assert columns["phone"] == {
        "table": "accounts",
        "column": "phone",
        "strategy": "null",
        "becomes": "emptied (NULL)",
        "pseudonym": False,
    }
    ip = rule(data, "access-log-ip-after-30-days")["columns"][0]
    assert (ip["column"], ip["pseudonym"]) == ("ip_address", False)
    assert "network" in ip["becomes"]
    assert rule(data, FEEDBACK)["columns"] == []
    assert "PSEUDONYM: keyed HMAC-SHA-256" in render_html(data)


def test_without_kept_heads_the_certificate_says_none_was_checked(
    demo_log: DemoLog, settings: Settings
) -> None:
    data = api.certificate(settings, now=DAY3).data
    assert data["kept_heads"]["checked"] is False
    assert "No head kept outside the database was checked" in render_html(data)


def test_the_certificate_names_the_heads_file_and_how_many_heads_it_found(
    demo_log: DemoLog, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    first_run_head = [r for r in log_records(engine) if r["run_id"] == demo_log.first_run][-1]
    heads = tmp_path / "heads.txt"
    heads.write_text(f"{first_run_head['hash']}\n{demo_log.head}\n{demo_log.head}\n", "utf-8")

    good = api.certificate(settings, heads_file=str(heads), expect_head=demo_log.head, now=DAY3)
    heads.write_text(f"{demo_log.head}\n{'e' * 64}\n", encoding="utf-8")
    bad = api.certificate(settings, heads_file=str(heads), now=DAY3)

    assert good.error is None
    assert good.data["kept_heads"] == {
        "file": str(heads),
        "heads": 2,
        "found": 2,
        "expected_head": demo_log.head,
        "expected_head_matches": True,
        "expected_head_in_log": True,
        "checked": True,
    }
    assert "2 distinct heads, all found in the log" in render_html(good.data)
    assert bad.error is not None
    assert (bad.data["kept_heads"]["heads"], bad.data["kept_heads"]["found"]) == (2, 1)
    assert "1 NOT in the log" in render_html(bad.data)


def test_a_period_in_which_no_rule_ran_is_a_banner(demo_log: DemoLog, settings: Settings) -> None:
    quiet = audit_cli(settings, "report", "--format", "json", "--since", "2026-06-04")
    busy = audit_cli(settings, "report", "--format", "json")

    assert quiet.exit_code == 0 and busy.exit_code == 0, quiet.output + busy.output
    assert json.loads(quiet.stdout)["no_rule_ran"] is True
    assert json.loads(busy.stdout)["no_rule_ran"] is False
    page = audit_cli(settings, "report", "--since", "2026-06-04").stdout
    assert "NO RULE RAN IN THIS PERIOD" in page
    assert "NO RULE RAN" not in audit_cli(settings, "report").stdout


def oldest_feedback_kept(engine: Engine, cutoff: datetime) -> tuple[datetime, datetime]:
    """The oracle, in plain SQL on the demo's tables: the oldest feedback past the cutoff
    kept by its open ticket (``unless``), and kept by a hold but not by ``unless``."""
    t = demo_metadata().tables
    feedback, tickets, holds = t["feedback"], t["tickets"], t["legal_holds"]
    open_ticket = exists().where(
        tickets.c.id == feedback.c.ticket_id, tickets.c.status.in_(["open", "pending"])
    )
    held = exists().where(
        holds.c.subject_id == feedback.c.account_id, holds.c.released_at.is_(None)
    )
    past = feedback.c.submitted_at < cutoff.replace(tzinfo=None)
    with engine.connect() as conn:
        by_unless = conn.execute(select(func.min(feedback.c.submitted_at)).where(past, open_ticket))
        unless_first = by_unless.scalar_one()
        by_hold = select(func.min(feedback.c.submitted_at)).where(
            and_(past, not_(open_ticket), held)
        )
        hold_first = conn.execute(by_hold).scalar_one()
    assert unless_first is not None and hold_first is not None, "the demo keeps feedback both ways"
    return unless_first, hold_first


def test_the_oldest_rows_kept_by_unless_and_by_holds_are_given_in_days(
    demo_log: DemoLog, settings: Settings, engine: Engine
) -> None:
    finished = [
        r for r in log_records(engine) if r["event"] == "rule_finished" and r["rule"] == FEEDBACK
    ]
    unless_first, hold_first = oldest_feedback_kept(engine, finished[-1]["cutoff"])
    naive_now = DAY3.replace(tzinfo=None)

    oldest = rule(api.certificate(settings, now=DAY3).data, FEEDBACK)["oldest_kept_days"]

    assert oldest == {
        "unless_days": (naive_now - unless_first) // timedelta(days=1),
        "holds_days": (naive_now - hold_first) // timedelta(days=1),
        "note": None,
    }
    assert (
        rule(api.certificate(settings, now=DAY3).data, "access-log-after-1-year")[
            "oldest_kept_days"
        ]["unless_days"]
        is None
    )  # the rule has no `unless`


def test_a_hold_that_never_ends_shows_as_an_age_that_keeps_growing(
    demo_log: DemoLog, settings: Settings
) -> None:
    now = rule(api.certificate(settings, now=DAY3).data, FEEDBACK)["oldest_kept_days"]
    later = rule(api.certificate(settings, now=DAY3 + timedelta(days=400)).data, FEEDBACK)
    assert later["oldest_kept_days"]["holds_days"] == now["holds_days"] + 400


def test_an_older_expected_head_still_in_the_log_says_the_log_grew(
    demo_log: DemoLog, settings: Settings, engine: Engine
) -> None:
    first_run_head = [r for r in log_records(engine) if r["run_id"] == demo_log.first_run][-1]

    built = api.certificate(settings, expect_head=first_run_head["hash"], now=DAY3)

    assert built.error is None  # SPEC section 6: an older head still in the chain is exit 0
    kept = built.data["kept_heads"]
    assert (kept["expected_head_matches"], kept["expected_head_in_log"]) == (False, True)
    assert "the log grew since it was kept" in render_html(built.data)


def test_when_the_policy_no_longer_fits_the_database_the_ages_are_not_read(
    demo_log: DemoLog, settings: Settings, engine: Engine
) -> None:
    """The certificate is still made from the log; the ages say why they are missing."""
    with engine.begin() as conn:
        demo_metadata().tables["marketing_consents"].drop(conn)

    built = api.certificate(settings, now=DAY3)

    assert built.error is None
    for one in built.data["rules"]:
        assert one["oldest_kept_days"]["note"].startswith("the policy does not fit")
    assert rule(built.data, FEEDBACK)["rows"][0]["rows"] > 0
    assert "not read" in render_html(built.data)
