"""``retention coverage`` (issue 14 item 2): personal-looking columns no rule covers.

The detectors are pure functions, tested here first (names in English and pinyin, values,
the resident ID checksum); then the command on SQLite, PostgreSQL and MariaDB: the demo's
schema is fully covered by the shipped policies.yaml, a new personal column is caught
(and never printed), a reviewed column is reported with its reason, and the audit and
lease tables are never reported.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from builders import invoke
from conftest import HASH_KEY, ROOT
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert, text

from retention.coverage.detectors import (
    cn_id_check_char,
    detect,
    is_cn_mobile,
    is_cn_resident_id,
    is_e164,
    is_email,
    is_ip,
    name_categories,
    row_context,
)
from retention.demo import create_demo

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SHIPPED = (ROOT / "policies.yaml").read_text(encoding="utf-8")

# --- detectors: by name ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "column", "kind", "expected"),
    [
        ("users", "email", "text", ("email",)),
        ("users", "userEmail", "text", ("email",)),
        ("users", "youxiang", "text", ("email",)),
        ("users", "mobile_no", "text", ("phone",)),
        ("users", "shouji", "text", ("phone",)),
        ("users", "lianxi_dianhua", "text", ("phone", "contact")),
        ("users", "phone", "number", ("phone",)),
        ("log", "client_ip", "text", ("ip",)),
        ("users", "qq", "number", ("qq",)),
        ("users", "weixin", "text", ("wechat",)),
        ("users", "home_address", "text", ("address",)),
        ("users", "dizhi", "text", ("address",)),
        ("users", "xingming", "text", ("name",)),
        ("users", "first_name", "text", ("name",)),
        ("users", "date_of_birth", "date", ("birth_date",)),
        ("users", "shengri", "date", ("birth_date",)),
        ("users", "shenfenzheng_hao", "text", ("id_number",)),
        ("users", "id_card", "text", ("id_number",)),
        # A bare "name" is a person's only in a table of people.
        ("customers", "name", "text", ("name",)),
        ("file_info", "name", "text", ()),
        # "address" beside ip or mac is no postal address.
        ("log", "ip_address", "text", ("ip",)),
        ("devices", "mac_address", "text", ()),
        # A date/time column named after an address holds none; ids are not phones.
        ("users", "email_verified_at", "date", ()),
        ("users", "email_opt_in", "other", ()),
        ("users", "id", "number", ()),
        ("users", "hotel", "text", ()),
    ],
)
def test_names_suggest_their_categories(
    table: str, column: str, kind: str, expected: tuple[str, ...]
) -> None:
    assert name_categories(table, column, kind) == expected


# --- detectors: by value ----------------------------------------------------------------


def test_email_addresses_match_whole_values_only() -> None:
    assert is_email("li.wei+support@example.com")
    assert not is_email("write to li.wei@example.com today")
    assert not is_email("li.wei@localhost")


def test_mainland_mobile_numbers_with_or_without_the_country_code() -> None:
    assert is_cn_mobile("13812345678") and is_cn_mobile("+86 138 1234 5678")
    assert is_cn_mobile("0086-139-0000-1234")
    assert not is_cn_mobile("12812345678")  # 12x is no mobile prefix
    assert not is_cn_mobile("198.51.100.123")  # an address, not a number with dots


def test_e164_numbers_need_the_plus_and_eight_to_fifteen_digits() -> None:
    assert is_e164("+44 20 7946 0958") and is_e164("+1 (202) 555-0143")
    assert not is_e164("20 7946 0958") and not is_e164("+0123456789")


def test_ip_addresses_of_both_versions_and_nothing_else() -> None:
    assert is_ip("203.0.113.7") and is_ip("2001:db8::1")
    assert not is_ip("203.0.113") and not is_ip("") and not is_ip("localhost")


def test_the_resident_id_checksum_is_iso_7064_mod_11_2() -> None:
    assert cn_id_check_char("11010519491231002") == "X"
    assert is_cn_resident_id("11010519491231002X")
    assert is_cn_resident_id("11010519491231002x")
    assert not is_cn_resident_id("110105194912310021")  # wrong check character
    # A correct checksum over an impossible birth date (1949-02-30) is still refused.
    body = "11010519490230002"
    assert not is_cn_resident_id(body + cn_id_check_char(body))
    assert not is_cn_resident_id("1101051949123100")  # too short


def test_qq_numbers_and_wechat_ids_need_context() -> None:
    assert detect("123456789") == ()
    assert detect("123456789", {"qq"}) == ("qq_number",)
    assert detect("zhang_wei88") == ()
    assert detect("zhang_wei88", {"wechat"}) == ("wechat_id",)
    assert detect("wxid_k3j9x0a2b8c1") == ("wechat_id",)  # generated IDs need none
    assert detect("0123456", {"qq"}) == ()  # a QQ number never starts with 0


def test_a_label_in_the_row_is_context_for_its_neighbours_but_not_for_itself() -> None:
    context = row_context(["wechat", "zhang_wei88", 7])
    assert context == {"wechat"}
    assert detect("zhang_wei88", context) == ("wechat_id",)
    assert detect("wechat", context) == ()
    assert row_context(["a long note that mentions qq", "Shanghai"]) == set()


def test_numbers_are_read_as_phones_but_never_as_addresses() -> None:
    assert detect(13812345678) == ("cn_mobile",)
    assert detect(3232235777) == ()  # an integer is not read as an IPv4 address
    assert detect(True) == () and detect(None) == ()


# --- the command, on every database ---------------------------------------------------


@pytest.fixture
def demo_db(db_url: str, tmp_path: Path) -> dict[str, str]:
    """The demo database and the shipped policy (audit table renamed, see below)."""
    engine = create_engine(db_url)
    try:
        create_demo(engine, now=NOW)
    finally:
        engine.dispose()
    policy = tmp_path / "policies.yaml"
    policy.write_text(SHIPPED, encoding="utf-8")
    return {
        "RETENTION_DATABASE_URL": db_url,
        "RETENTION_POLICY_FILE": str(policy),
        "RETENTION_HASH_KEY": HASH_KEY,
        "RETENTION_LOG_FORMAT": "json",
    }


def coverage(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = invoke(["coverage", "--output", "json", *args], env)
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def sql(url: str, *statements: str, rows: list[dict[str, Any]] | None = None) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement), rows or {})
    finally:
        engine.dispose()


def test_the_demo_schema_is_fully_covered_by_the_shipped_policy(
    demo_db: dict[str, str],
) -> None:
    code, report = coverage(demo_db, "--fail-on-uncovered")
    assert code == 0, report
    assert report["uncovered"] == 0 and report["uncovered_columns"] == []
    found = {f["table"] + "." + f["column"]: f for f in report["findings"]}
    # What a privacy team would name, each covered by the rule that removes it.
    assert {
        "accounts.phone",
        "accounts.email",
        "accounts.qq_number",
        "accounts.wechat_id",
        "accounts.username",
        "access_log.ip_address",
        "feedback_contacts.value",
        "marketing_consents.contact",
    } <= set(found)
    assert found["accounts.qq_number"]["covered_by"] == [
        "closed-accounts-after-30-days (anonymise)"
    ]
    assert found["feedback_contacts.value"]["covered_by"] == [
        "feedback-after-3-months (cascade delete)"
    ]
    # Found by value alone: the column is called "value"; a kind column says what it holds.
    assert found["feedback_contacts.value"]["by_name"] == []
    assert set(found["feedback_contacts.value"]["by_values"]) >= {"email", "qq_number"}


def test_a_new_personal_column_is_caught_and_its_values_never_printed(
    demo_db: dict[str, str],
) -> None:
    url = demo_db["RETENTION_DATABASE_URL"]
    numbers = [f"+86 139 0012 {i:04d}" for i in range(1, 41)]
    sql(url, "ALTER TABLE tickets ADD COLUMN contact_mobile VARCHAR(32)")
    sql(
        url,
        "UPDATE tickets SET contact_mobile = :m WHERE id = :id",
        rows=[{"m": m, "id": i} for i, m in enumerate(numbers, start=1)],
    )

    result = invoke(["coverage", "--output", "json", "--fail-on-uncovered"], demo_db)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["uncovered_columns"] == ["tickets.contact_mobile"]
    assert report["exit_code"] == 1
    (finding,) = [f for f in report["findings"] if f["status"] == "uncovered"]
    assert finding["by_name"] == ["phone", "contact"]
    assert finding["by_values"] == {"cn_mobile": 40}
    shown = invoke(["coverage"], demo_db)
    assert shown.exit_code == 0  # without --fail-on-uncovered it only reports
    assert "UNCOVERED  tickets.contact_mobile" in shown.stdout
    for output in (result.output, shown.output):
        assert not any(m in output or m.replace(" ", "") in output for m in numbers)
        assert "139 0012" not in output


def test_a_column_whose_name_holds_quotes_and_backticks_is_read_and_covered(
    demo_db: dict[str, str], tmp_path: Path
) -> None:
    """A backtick doubled inside a MariaDB quoted name is an escape; SQLAlchemy's
    reflection kept it doubled, and coverage failed (exit 1, unknown column). The same
    hostile name is read on every database, and a rule that deletes from its table covers
    it (a policy names columns by letters, digits and _ only, so it cannot ``set`` it)."""
    name = 'e`mail "work"'
    url = demo_db["RETENTION_DATABASE_URL"]
    engine = create_engine(url)
    table = Table(
        "odd_names", MetaData(), Column("id", Integer, primary_key=True), Column(name, String(80))
    )
    try:
        with engine.begin() as conn:
            table.create(conn)
            rows = [{"id": i, name: f"person{i}@example.org"} for i in range(1, 11)]
            conn.execute(insert(table), rows)
    finally:
        engine.dispose()

    code, report = coverage(demo_db)
    assert code == 0, report
    assert report["uncovered_columns"] == [f"odd_names.{name}"]
    (finding,) = [f for f in report["findings"] if f["table"] == "odd_names"]
    assert finding["by_values"] == {"email": 10}

    policy = tmp_path / "covered.yaml"
    rule = """
  - name: odd-names
    table: odd_names
    clock: id
    clock_unit: seconds
    after: P1D
    action: delete
"""
    policy.write_text(SHIPPED + rule, encoding="utf-8")
    code, report = coverage({**demo_db, "RETENTION_POLICY_FILE": str(policy)})
    assert code == 0, report
    (finding,) = [f for f in report["findings"] if f["table"] == "odd_names"]
    assert (finding["status"], finding["covered_by"]) == ("covered", ["odd-names (delete)"])


def test_a_column_found_by_its_values_alone_is_caught(demo_db: dict[str, str]) -> None:
    """A neutral name (``ref``), resident ID numbers whose checksums hold; 18-digit
    numbers whose checksums fail (order numbers) are not mistaken for them."""
    url = demo_db["RETENTION_DATABASE_URL"]
    # region 310104, born 1985-MM-DD, sequence number: 17 digits, then the check character
    bodies = [f"3101041985{m:02d}{m + 9:02d}{100 + m:03d}" for m in range(1, 13)]
    ids = [b + cn_id_check_char(b) for b in bodies]
    wrong = [b + ("0" if cn_id_check_char(b) != "0" else "1") for b in bodies]
    sql(
        url,
        "ALTER TABLE tickets ADD COLUMN ref VARCHAR(32)",
        "ALTER TABLE tickets ADD COLUMN order_ref VARCHAR(32)",
    )
    sql(
        url,
        "UPDATE tickets SET ref = :r, order_ref = :o WHERE id = :id",
        rows=[
            {"r": r, "o": o, "id": i}
            for i, (r, o) in enumerate(zip(ids, wrong, strict=True), start=1)
        ],
    )
    code, report = coverage(demo_db, "--fail-on-uncovered")
    assert code == 1
    assert report["uncovered_columns"] == ["tickets.ref"]
    (finding,) = [f for f in report["findings"] if f["column"] == "ref"]
    assert finding["by_values"] == {"cn_resident_id": 12} and finding["by_name"] == []


def test_a_reviewed_column_is_reported_with_its_reason(demo_db: dict[str, str]) -> None:
    url = demo_db["RETENTION_DATABASE_URL"]
    sql(url, "ALTER TABLE tickets ADD COLUMN agent_email VARCHAR(64)")
    sql(url, "UPDATE tickets SET agent_email = 'support-desk@example.com'")
    policy = Path(demo_db["RETENTION_POLICY_FILE"])
    policy.write_text(
        SHIPPED
        + "\ncoverage:\n  ignore:\n"
        + "    - {column: tickets.agent_email, reason: 'the shared desk address, not a person'}\n"
        + "    - {column: tickets.gone_column, reason: dropped last year}\n",
        encoding="utf-8",
    )
    assert invoke(["validate"], demo_db).exit_code == 0
    code, report = coverage(demo_db, "--fail-on-uncovered")
    assert code == 0, report
    (finding,) = [f for f in report["findings"] if f["column"] == "agent_email"]
    assert finding["status"] == "ignored"
    assert finding["reason"] == "the shared desk address, not a person"
    assert report["stale_ignores"] == ["tickets.gone_column"]
    shown = invoke(["coverage"], demo_db).stdout
    assert "reviewed: the shared desk address, not a person" in shown
    assert "coverage.ignore names tickets.gone_column, which is not in the database" in shown


def test_an_ignore_without_a_reason_is_refused_offline(demo_db: dict[str, str]) -> None:
    policy = Path(demo_db["RETENTION_POLICY_FILE"])
    policy.write_text(
        SHIPPED + "\ncoverage:\n  ignore:\n    - {column: tickets.agent_email}\n",
        encoding="utf-8",
    )
    result = invoke(["validate", "--offline"], demo_db)
    assert result.exit_code == 78, result.output
    assert "coverage.ignore[0]" in result.stderr and "reason" in result.stderr
    assert "Traceback" not in result.output


def test_the_audit_and_lease_tables_are_never_reported(demo_db: dict[str, str]) -> None:
    """With the audit log named after customers, its lease table's ``name`` column would
    look like a person's name; the tool's own tables are left out all the same."""
    assert name_categories("customer_audit_leases", "name") == ("name",)
    policy = Path(demo_db["RETENTION_POLICY_FILE"])
    policy.write_text(
        SHIPPED.replace("audit: {table: retention_audit,", "audit: {table: customer_audit,"),
        encoding="utf-8",
    )
    initialised = invoke(["audit", "init"], demo_db)
    assert initialised.exit_code == 0, initialised.output
    code, report = coverage(demo_db)
    assert code == 0
    assert not [f for f in report["findings"] if f["table"].startswith("customer_audit")]
    assert report["tables"] == 8  # the demo's seven and its marks, not the four audit tables


def test_a_parked_rule_covers_nothing(demo_db: dict[str, str]) -> None:
    """Only enabled rules cover: parking the accounts rule uncovers what it anonymises."""
    policy = Path(demo_db["RETENTION_POLICY_FILE"])
    name = "  - name: closed-accounts-after-30-days\n"
    assert name in SHIPPED
    policy.write_text(SHIPPED.replace(name, name + "    enabled: false\n"), encoding="utf-8")
    code, report = coverage(demo_db, "--fail-on-uncovered")
    assert code == 1
    assert report["uncovered_columns"] == [
        "accounts.username",
        "accounts.phone",
        "accounts.email",
        "accounts.qq_number",
        "accounts.wechat_id",
    ]


def test_addresses_in_the_databases_own_address_type_are_found(demo_db: dict[str, str]) -> None:
    """PostgreSQL's inet and MariaDB's INET6 come back as address objects or text; SQLite
    keeps text. A neutral name (``origin``) is caught by its values alone."""
    url = demo_db["RETENTION_DATABASE_URL"]
    engine = create_engine(url)
    kind = {"postgresql": "INET", "mysql": "INET6"}.get(engine.dialect.name, "VARCHAR(45)")
    engine.dispose()
    sql(url, f"ALTER TABLE tickets ADD COLUMN origin {kind}")
    v4 = "::ffff:203.0.113" if kind == "INET6" else "203.0.113"  # INET6 maps IPv4
    addresses = [f"{v4}.{i}" if i % 2 else f"2001:db8::{i:x}" for i in range(1, 31)]
    sql(
        url,
        "UPDATE tickets SET origin = :a WHERE id = :id",
        rows=[{"a": a, "id": i} for i, a in enumerate(addresses, start=1)],
    )
    result = invoke(["coverage", "--output", "json"], demo_db)
    assert result.exit_code == 0, result.output
    (finding,) = [f for f in json.loads(result.stdout)["findings"] if f["column"] == "origin"]
    assert finding["status"] == "uncovered"
    assert finding["by_values"] == {"ip_address": 30} and finding["by_name"] == []
    assert "203.0.113" not in result.output and "2001:db8" not in result.output
