"""Reading the audit log: show, export, report and find, over a real log of the demo.

The log comes from the shipped ``policies.yaml`` run twice over the demo database, two
days apart (day 1 and day 3: day 2 has no run), on every backend.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import shutil
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import HASH_KEY, ROOT
from sqlalchemy import Engine, MetaData, insert, select, text

from retention import api
from retention.audit import guard
from retention.audit.export import write_export
from retention.audit.query import (
    audit_keys_table,
    iter_records,
    key_proof,
    removed_key_digest,
    utc_bounds,
)
from retention.audit.records import FIELDS, ZERO_HASH, audit_tables
from retention.audit.report import (
    RuleInfo,
    Verification,
    build_report,
    report_data,
)
from retention.audit.report_html import render_html
from retention.audit.writer import ensure_audit_tables
from retention.cli import cli
from retention.demo import create_demo, demo_metadata
from retention.settings import Settings

DAY1 = datetime(2026, 6, 1, 2, 30, tzinfo=UTC)
DAY3 = DAY1 + timedelta(days=2)
AUDIT = "retention_audit"
RULES = (
    "feedback-after-3-months",
    "access-log-after-1-year",
    "access-log-ip-after-30-days",
    "closed-accounts-after-30-days",
    "withdrawn-marketing-consent",
)


@dataclass(frozen=True)
class DemoLog:
    """The demo after two runs: the heads, and every email and phone number it held."""

    personal: frozenset[str]
    head: str
    first_run: str
    second_run: str


def personal_values(engine: Engine) -> frozenset[str]:
    demo = demo_metadata().tables
    values: set[str] = set()
    with engine.connect() as conn:
        accounts = demo["accounts"]
        for email, phone in conn.execute(select(accounts.c.email, accounts.c.phone)):
            values.update(v for v in (email, phone) if v)
        contacts = demo["feedback_contacts"]
        kinds = contacts.c.kind.in_(["email", "mobile"])
        values.update(conn.execute(select(contacts.c.value).where(kinds)).scalars())
        values.update(conn.execute(select(demo["marketing_consents"].c.contact)).scalars())
    return frozenset(values)


@pytest.fixture
def demo_log(settings: Settings, engine: Engine) -> DemoLog:
    shutil.copy(ROOT / "policies.yaml", settings.policy_file)
    create_demo(engine, now=DAY1)
    personal = personal_values(engine)
    first = api.run(settings, now=DAY1, clock=lambda: DAY1)
    second = api.run(settings, now=DAY3, clock=lambda: DAY3)
    assert second.head is not None
    return DemoLog(personal, second.head, first.run_id, second.run_id)


def audit_cli(settings: Settings, *args: str) -> Result:
    url = settings.database_url.get_secret_value()
    command = ["audit", *args, "--database", url, "--policy", str(settings.policy_file)]
    return CliRunner().invoke(cli, command, catch_exceptions=False)


def log_records(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(iter_records(conn, AUDIT))


def assert_no_personal_value(text_: str, log: DemoLog) -> None:
    leaked = sorted(v for v in log.personal if v in text_)
    assert not leaked, f"personal values in the output: {leaked[:3]}"


def independent_verify(lines: list[str]) -> bool:
    """SPEC section 6 alone: sha256(prev_hash + canonical JSON of every other field)."""
    prev = "0" * 64
    for line in lines:
        record = json.loads(line)
        if record["prev_hash"] != prev:
            return False
        body = {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if hashlib.sha256((prev + canonical).encode("utf-8")).hexdigest() != record["hash"]:
            return False
        prev = record["hash"]
    return True


# --- query -------------------------------------------------------------------------------


def test_records_come_in_seq_order_with_datetimes_and_parsed_json(
    demo_log: DemoLog, engine: Engine
) -> None:
    log = log_records(engine)
    assert [r["seq"] for r in log] == list(range(1, len(log) + 1))
    assert list(log[0]) == list(FIELDS)
    assert log[0]["at"] == DAY1 and log[-1]["at"] == DAY3
    batch = next(r for r in log if r["event"] == "batch" and r["rule"] == RULES[0])
    assert isinstance(batch["cutoff"], datetime) and batch["cutoff"].tzinfo is not None
    assert set(batch["dependents"]) == {"feedback_contacts"}
    finished = next(r for r in log if r["event"] == "rule_finished")
    assert isinstance(finished["details"]["due"], int)
    # a run counts due rows for its guard only, not the kept ones: none recorded
    assert "kept_holds" not in finished["details"]


def test_filters_select_by_time_rule_and_run(demo_log: DemoLog, engine: Engine) -> None:
    """A date ``until`` takes in its whole day; a run id prefix selects that run."""
    with engine.connect() as conn:
        day1 = list(iter_records(conn, AUDIT, until=DAY1.date()))
        day3 = list(iter_records(conn, AUDIT, since=DAY1.date() + timedelta(days=1)))
        rule = list(iter_records(conn, AUDIT, rule=RULES[1]))
        run = list(iter_records(conn, AUDIT, run_id=demo_log.second_run[:8]))
        none = list(iter_records(conn, AUDIT, since=DAY1 + timedelta(hours=1), until=DAY3))
    assert day1 and {r["run_id"] for r in day1} == {demo_log.first_run}
    assert day3 and {r["run_id"] for r in day3} == {demo_log.second_run}
    assert rule and {r["rule"] for r in rule} == {RULES[1]}
    assert [r["seq"] for r in run] == [r["seq"] for r in day3]
    assert none == []


def test_utc_bounds_read_dates_as_whole_days_and_convert_offsets() -> None:
    lower, upper = utc_bounds(datetime.fromisoformat("2026-03-01T08:00:00+08:00"), DAY1.date())
    assert lower == datetime(2026, 3, 1, 0, 0)
    assert upper == datetime(2026, 6, 2, 0, 0)


def test_an_absent_log_has_no_records(settings: Settings, engine: Engine) -> None:
    with engine.connect() as conn:
        assert list(iter_records(conn, AUDIT)) == []


# --- show --------------------------------------------------------------------------------


def test_show_prints_one_line_per_record_under_a_header(
    demo_log: DemoLog, settings: Settings, engine: Engine
) -> None:
    result = audit_cli(settings, "show", "--rule", RULES[0], "--run", demo_log.first_run[:8])

    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:3] == ["SEQ", "AT", "(UTC)"]
    expected = [
        r
        for r in log_records(engine)
        if r["rule"] == RULES[0] and r["run_id"] == demo_log.first_run
    ]
    assert len(lines) == len(expected)
    assert lines[0].split()[0] == str(expected[0]["seq"])
    assert "feedback_contacts:" in lines[0]
    assert demo_log.first_run[:8] in lines[0] and demo_log.first_run not in lines[0]
    assert_no_personal_value(result.output, demo_log)


def test_show_rejects_a_date_it_cannot_read(settings: Settings) -> None:
    result = audit_cli(settings, "show", "--since", "2026-13-01")
    assert result.exit_code == 2
    assert "--since" in result.output


# --- export ------------------------------------------------------------------------------


def test_a_jsonl_export_of_the_whole_log_verifies_without_this_tool(
    demo_log: DemoLog, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "audit.jsonl"
    result = audit_cli(settings, "export", "--format", "jsonl", "--output", str(out))

    assert result.exit_code == 0, result.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == api.verify(settings).records
    assert list(json.loads(lines[0])) == list(FIELDS)
    assert json.loads(lines[-1])["hash"] == demo_log.head
    assert independent_verify(lines)
    assert_no_personal_value(out.read_text(encoding="utf-8"), demo_log)


def test_the_independent_verifier_rejects_an_edited_line(
    demo_log: DemoLog, settings: Settings
) -> None:
    lines = audit_cli(settings, "export").stdout.splitlines()
    n = next(i for i, line in enumerate(lines) if json.loads(line)["event"] == "batch")
    edited = json.loads(lines[n])
    edited["row_count"] -= 1
    assert independent_verify(lines)
    assert not independent_verify([*lines[:n], json.dumps(edited), *lines[n + 1 :]])


def test_export_keeps_numbers_as_numbers_and_times_in_utc_with_micros(
    demo_log: DemoLog, settings: Settings
) -> None:
    records = [json.loads(line) for line in audit_cli(settings, "export").stdout.splitlines()]
    batch = next(r for r in records if r["event"] == "batch")
    assert isinstance(batch["seq"], int) and isinstance(batch["row_count"], int)
    assert batch["at"] == "2026-06-01T02:30:00.000000Z"
    assert batch["cutoff"].endswith("Z") and len(batch["cutoff"]) == 27
    assert isinstance(batch["dependents"], dict)


def test_a_csv_export_holds_the_same_records_as_the_jsonl_export(
    demo_log: DemoLog, settings: Settings
) -> None:
    """Same columns in SPEC order; JSON fields as compact text; NULL as an empty field."""
    jsonl = [json.loads(line) for line in audit_cli(settings, "export").stdout.splitlines()]
    result = audit_cli(settings, "export", "--format", "csv")

    assert result.exit_code == 0, result.output
    header, *rows = list(csv.reader(io.StringIO(result.stdout)))
    assert tuple(header) == FIELDS
    assert len(rows) == len(jsonl)
    for row, record in zip(rows, jsonl, strict=True):
        for name, cell in zip(FIELDS, row, strict=True):
            value = record[name]
            if value is None:
                assert cell == ""
            elif name in ("dependents", "details"):
                assert json.loads(cell) == value and ": " not in cell
            else:
                assert cell == str(value)
    assert_no_personal_value(result.stdout, demo_log)


def test_export_with_a_period_holds_only_that_period(demo_log: DemoLog, settings: Settings) -> None:
    result = audit_cli(settings, "export", "--since", "2026-06-02")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and {r["run_id"] for r in records} == {demo_log.second_run}


@pytest.mark.slow
def test_export_streams_in_flat_memory(tmp_path: Path) -> None:
    """200,000 records (no valid chain needed) export with a few MB of peak memory."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'big.db'}",  # type: ignore[arg-type]
        _env_file=None,
    )  # type: ignore[call-arg]
    from retention.db import make_engine

    engine = make_engine(settings)
    ensure_audit_tables(engine, AUDIT)
    _, records, _ = audit_tables(AUDIT)
    row = {
        "run_id": "4f1c2e8a-0000-4000-8000-000000000000",
        "at": DAY1.replace(tzinfo=None),
        "event": "batch",
        "rule": RULES[0],
        "table_name": "feedback",
        "action": "delete",
        "cutoff": DAY1.replace(tzinfo=None),
        "row_count": 1000,
        "dependents": '{"feedback_contacts":1393}',
        "key_digest": "ab" * 32,
        "policy_sha256": "cd" * 32,
        "version": "0.1.0",
        "details": None,
        "prev_hash": ZERO_HASH,
    }
    with engine.begin() as conn:
        for start in range(0, 200_000, 20_000):
            chunk = [
                {**row, "seq": i, "hash": f"{i:064x}"} for i in range(start + 1, start + 20_001)
            ]
            conn.execute(insert(records), chunk)
    out = tmp_path / "big.jsonl"
    with engine.connect() as conn, out.open("w", encoding="utf-8") as fh:
        tracemalloc.start()
        try:
            count = write_export(iter_records(conn, AUDIT), "jsonl", fh)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    engine.dispose()
    assert count == 200_000
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


# --- report ------------------------------------------------------------------------------


def test_the_json_report_accounts_for_every_rule_with_its_rows_and_holds(
    demo_log: DemoLog, settings: Settings, engine: Engine
) -> None:
    result = audit_cli(settings, "report", "--format", "json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verification"]["ok"] is True
    assert report["verification"]["head"] == demo_log.head
    assert [r["rule"] for r in report["rules"]] == list(RULES)
    log = log_records(engine)
    loaded = api.load(settings)
    for rule, policy_rule in zip(report["rules"], loaded.policy.rules, strict=True):
        assert rule["basis"] == policy_rule.basis
        assert rule["retention_period"] == str(policy_rule.after)
        batches = [r for r in log if r["event"] == "batch" and r["rule"] == rule["rule"]]
        assert rule["rows"][0]["rows"] == sum(b["row_count"] for b in batches)
        finished = [r for r in log if r["event"] == "rule_finished" and r["rule"] == rule["rule"]]
        # The last run did not count the rows holds kept: null, never a 0.
        assert "kept_holds" not in finished[-1]["details"]
        assert rule["kept_by_holds_at_last_run"] is None
        assert rule["runs"][-1]["kept_counted"] is False
        assert len(rule["cutoffs"]) == 2
        assert rule["days_with_a_run"] == ["2026-06-01", "2026-06-03"]
    feedback = report["rules"][0]["rows"]
    contacts = sum(
        (r["dependents"] or {}).get("feedback_contacts", 0) for r in log if r["event"] == "batch"
    )
    assert feedback[1] == {
        "table": "feedback_contacts",
        "dependent": True,
        "action": "deleted",
        "rows": contacts,
    }
    assert contacts > 0
    assert report["policies_in_force"] == [
        {
            "sha256": loaded.sha256,
            "first_seen": "2026-06-01T02:30:00.000000Z",
            "last_seen": "2026-06-03T02:30:00.000000Z",
            "runs": 2,
            "current": True,
        }
    ]
    assert [r["outcome"] for r in report["runs"]] == ["finished", "finished"]
    assert report["what_this_log_does_not_prove"]
    assert_no_personal_value(result.stdout, demo_log)


def test_the_html_report_is_one_self_contained_page(
    demo_log: DemoLog, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    result = audit_cli(settings, "report", "--output", str(out))

    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page and "@page" in page and "A4" in page
    for rule in api.load(settings).policy.rules:
        assert rule.basis is not None
        assert html.escape(rule.basis) in page
    assert demo_log.head in page
    assert "What this log does not prove" in page
    for external in ('src="http', "src='http", 'href="http', "href='http", "<script", "@import"):
        assert external not in page
    assert_no_personal_value(page, demo_log)


def test_the_chart_leaves_a_gap_on_a_day_without_a_run(
    demo_log: DemoLog, settings: Settings
) -> None:
    page = audit_cli(settings, "report").stdout
    assert "<title>2026-06-01: " in page
    assert "<title>2026-06-03: " in page
    assert "<title>2026-06-02: " not in page


def test_a_report_for_a_period_counts_only_that_period(
    demo_log: DemoLog, settings: Settings
) -> None:
    """The chain is still verified over the whole log."""
    result = audit_cli(settings, "report", "--format", "json", "--since", "2026-06-03")
    report = json.loads(result.stdout)
    assert [r["run_id"] for r in report["runs"]] == [demo_log.second_run]
    assert report["verification"]["records"] == api.verify(settings).records
    assert all(r["days_with_a_run"] in ([], ["2026-06-03"]) for r in report["rules"])


def test_a_broken_chain_is_reported_prominently_and_exits_4(
    demo_log: DemoLog, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        guard.remove(conn, AUDIT)  # as the table's owner could
        conn.execute(text("UPDATE retention_audit SET row_count = row_count + 1 WHERE seq = 3"))
    out = tmp_path / "report.html"

    result = audit_cli(settings, "report", "--output", str(out))

    assert result.exit_code == 4
    assert "record 3" in result.output
    page = out.read_text(encoding="utf-8")
    assert "FAILED VERIFICATION" in page and "record 3" in page
    data = json.loads(audit_cli(settings, "report", "--format", "json").stdout)
    assert data["verification"]["ok"] is False
    assert data["verification"]["broken_at_record"] == 3


def test_a_report_with_the_wrong_expected_head_exits_4(
    demo_log: DemoLog, settings: Settings
) -> None:
    result = audit_cli(settings, "report", "--format", "json", "--expect-head", "f" * 64)
    assert result.exit_code == 4
    assert json.loads(result.stdout)["verification"]["ok"] is False


def test_a_report_checks_the_heads_kept_outside_the_database(
    demo_log: DemoLog, settings: Settings, tmp_path: Path
) -> None:
    kept = tmp_path / "heads.txt"
    kept.write_text(f"{demo_log.head}\n", encoding="utf-8")
    assert audit_cli(settings, "report", "--heads-file", str(kept)).exit_code == 0
    kept.write_text(f"{demo_log.head}\n{'e' * 64}\n", encoding="utf-8")
    result = audit_cli(settings, "report", "--format", "json", "--heads-file", str(kept))
    assert result.exit_code == 4
    assert "not in the log" in json.loads(result.stdout)["verification"]["reason"]


def at(day: int, hour: int = 2) -> datetime:
    return datetime(2026, 6, day, hour, 30, tzinfo=UTC)


def synthetic(seq: int, event: str, when: datetime, **fields: Any) -> dict[str, Any]:
    record = dict.fromkeys(FIELDS)
    record.update(
        seq=seq,
        run_id=f"run-{when.day}",
        at=when,
        event=event,
        policy_sha256="ab" * 32,
        version="0.1.0",
        **fields,
    )
    return record


def test_guard_trips_and_failures_are_listed_per_rule() -> None:
    rule = {"rule": "r", "table_name": "t", "action": "delete", "cutoff": at(1)}
    records = [
        synthetic(
            1,
            "guard_tripped",
            at(1),
            **rule,
            row_count=0,
            details={"due": 90, "total": 100, "verdict": "max_fraction 0.5"},
        ),
        synthetic(2, "batch", at(2), **rule, row_count=7, dependents={"c": 3}),
        synthetic(
            3,
            "rule_failed",
            at(2),
            **rule,
            row_count=7,
            details={"error": "OperationalError (40001)", "batches": 1},
        ),
    ]
    info = RuleInfo("r", "t", "delete", "P3M", "Basis <quoted> & kept", None, {"c": "detach"})
    report = build_report(
        records,
        policy_path="p.yaml",
        policy_sha256="ab" * 32,
        rules=[info],
        verification=Verification(True, 3, "ef" * 32),
        database="sqlite://",
        audit_table=AUDIT,
        generated_at=at(4),
    )
    data = report_data(report)
    (r,) = data["rules"]
    assert [e["seq"] for e in r["guard_trips"]] == [1]
    assert [e["seq"] for e in r["failures"]] == [3]
    assert [run["outcome"] for run in r["runs"]] == ["guard tripped", "failed"]
    assert r["rows"] == [
        {"table": "t", "dependent": False, "action": "deleted", "rows": 7},
        {"table": "c", "dependent": True, "action": "detached", "rows": 3},
    ]
    page = render_html(data)
    assert "Basis &lt;quoted&gt; &amp; kept" in page
    assert "OperationalError (40001)" in page and "max_fraction 0.5" in page
    assert "guard trip or failure" in page


# --- find --------------------------------------------------------------------------------


@pytest.fixture
def keyed(demo_log: DemoLog, engine: Engine) -> Iterator[dict[str, Any]]:
    """A side table as the executor writes it with record_keys, holding one key's digest."""
    batch = next(r for r in log_records(engine) if r["event"] == "batch" and r["rule"] == RULES[0])
    keys = audit_keys_table(MetaData(), AUDIT)
    with engine.begin() as conn:
        keys.create(conn, checkfirst=True)
        digest = removed_key_digest(HASH_KEY.encode(), "feedback", [987654])
        conn.execute(insert(keys).values(seq=batch["seq"], key_digest=digest))
    yield batch


def test_find_names_the_record_that_removed_a_key(
    keyed: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_HASH_KEY", HASH_KEY)
    result = audit_cli(settings, "find", "--table", "feedback", "--key", "987654")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"removed at 2026-06-01T02:30:00.000000Z by rule {RULES[0]} "
        f"(run {keyed['run_id']}, record {keyed['seq']})"
    )
    assert "987654" not in result.output


def test_find_says_so_when_no_record_removed_the_key(
    keyed: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_HASH_KEY", HASH_KEY)
    result = audit_cli(settings, "find", "--table", "feedback", "--key", "987655")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no record of removing that key"
    assert "987655" not in result.output


def test_find_says_record_keys_is_off_when_no_key_was_ever_recorded(
    demo_log: DemoLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_HASH_KEY", HASH_KEY)
    result = audit_cli(settings, "find", "--table", "feedback", "--key", "1")
    assert result.exit_code == 0, result.output
    assert "record_keys is off" in result.stdout


def test_find_needs_the_hash_key(keyed: dict[str, Any], settings: Settings) -> None:
    result = audit_cli(settings, "find", "--table", "feedback", "--key", "987654")
    assert result.exit_code == 78
    assert "RETENTION_HASH_KEY" in result.output


def test_key_proof_matches_the_table_and_every_key_column(
    keyed: dict[str, Any], engine: Engine
) -> None:
    key = HASH_KEY.encode()
    with engine.connect() as conn:
        assert [r["seq"] for r in key_proof(conn, AUDIT, key, "feedback", ["987654"])] == [
            keyed["seq"]
        ]
        assert key_proof(conn, AUDIT, key, "feedback_contacts", ["987654"]) == []
        assert key_proof(conn, AUDIT, key, "feedback", ["987654", "1"]) == []
        assert key_proof(conn, AUDIT, b"another-key-0123456789", "feedback", ["987654"]) == []
        assert key_proof(conn, AUDIT, key, "feedback", ["987654"], until=DAY1 - timedelta(1)) == []


def test_find_locates_keys_the_executor_recorded(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: with ``record_keys: true`` the executor writes one digest per removed key."""
    policy = (ROOT / "policies.yaml").read_text(encoding="utf-8")
    settings.policy_file.write_text(
        policy.replace("record_keys: false", "record_keys: true"), encoding="utf-8"
    )
    create_demo(engine, now=DAY1)
    feedback = demo_metadata().tables["feedback"]
    with engine.connect() as conn:
        before = set(conn.execute(select(feedback.c.id)).scalars())
    api.run(settings, now=DAY1, clock=lambda: DAY1)
    with engine.connect() as conn:
        after = set(conn.execute(select(feedback.c.id)).scalars())
    monkeypatch.setenv("RETENTION_HASH_KEY", HASH_KEY)
    removed, kept = min(before - after), min(after)
    found = audit_cli(settings, "find", "--table", "feedback", "--key", str(removed))
    assert found.stdout.startswith("removed at 2026-06-01T02:30:00.000000Z by rule " + RULES[0])
    missing = audit_cli(settings, "find", "--table", "feedback", "--key", str(kept))
    assert missing.stdout.strip() == "no record of removing that key"


def test_find_on_a_dependent_table_points_to_the_parent_key(
    keyed: dict[str, Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """feedback_contacts is reached only through the feedback rule's cascade: find said
    no rule acts on it; it says whose dependent it is and which key to look up."""
    monkeypatch.setenv("RETENTION_HASH_KEY", HASH_KEY)
    result = audit_cli(settings, "find", "--table", "feedback_contacts", "--key", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no record of removing that key"
    assert "no rule of" not in result.stderr
    assert (
        f"'feedback_contacts' is a dependent table: rule {RULES[0]} removes its rows "
        "together with their parent rows in 'feedback'"
    ) in result.stderr
    assert "--table feedback --key" in result.stderr
    data = audit_cli(
        settings, "find", "--table", "feedback_contacts", "--key", "5", "--format", "json"
    )
    document = json.loads(data.stdout)
    assert document["dependent_of"] == [{"rule": RULES[0], "parent": "feedback"}]
    assert document["table_in_policy"] is False
