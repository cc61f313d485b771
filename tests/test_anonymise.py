"""Anonymisation strategies, idempotency and untouched data, on every database (SPEC 2)."""

from __future__ import annotations

import hashlib
import hmac
import textwrap
from datetime import UTC, date, datetime
from typing import Any

import pytest
from builders import write_policy
from conftest import HASH_KEY
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    select,
    text,
)

from retention import api
from retention.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2026, 1, 10, 8, 0)  # naive UTC: due under "30 days"
FRESH = datetime(2026, 5, 30, 8, 0)  # not yet due


def make_people(engine: Engine, *columns: Column[Any]) -> Table:
    """A table ``people`` with an id, a clock, an optional mark and the given columns."""
    meta = MetaData()
    people = Table(
        "people",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("created_at", DateTime, nullable=False),
        Column("anonymised_at", DateTime, nullable=True),
        *columns,
    )
    with engine.begin() as conn:
        meta.create_all(conn)
    return people


def insert(engine: Engine, table: Table, rows: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)


def people_policy(rule: str) -> str:
    """A policy holding one anonymise rule on ``people``; ``rule`` is its YAML body.

    The guard admits a whole table: these tables are small and mostly due."""
    body = textwrap.indent(textwrap.dedent(rule).strip(), "    ")
    return (
        "version: 1\n"
        "rules:\n"
        "  - name: anonymise-people\n"
        "    table: people\n"
        "    clock: created_at\n"
        "    after: 30 days\n"
        "    action: anonymise\n"
        "    guard: {max_fraction: 1}\n"
        f"{body}\n"
    )


def column(engine: Engine, table: Table, name: str) -> dict[int, Any]:
    """Each row's value of one column, by id."""
    with engine.connect() as conn:
        rows = conn.execute(select(table.c.id, table.c[name]).order_by(table.c.id))
        return {row[0]: row[1] for row in rows}


def raw_rows(engine: Engine, table_name: str) -> list[tuple[Any, ...]]:
    """Every row as the driver returns it, in key order, for byte-for-byte comparison."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table_name} ORDER BY id"))]


def pseudonym(value: str, *, prefix: str = "", suffix: str = "", length: int = 64) -> str:
    digest = hmac.new(HASH_KEY.encode(), value.encode("utf-8"), hashlib.sha256).hexdigest()
    return prefix + digest[:length] + suffix


def run_once(settings: Settings) -> int:
    """Run the policy at NOW; the rows the one rule changed."""
    result = api.run(settings, now=NOW)
    (rule,) = result.rules
    assert rule.status == "done", rule.error
    return rule.rows


# --- every strategy, checked against the stored result -------------------------------


def test_null_strategy_stores_null(settings: Settings, engine: Engine) -> None:
    people = make_people(engine, Column("email", String(100)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "email": "a@example.com"},
            {"id": 2, "created_at": FRESH, "email": "b@example.com"},
        ],
    )
    write_policy(settings.policy_file, people_policy("set: {email: null}"))

    assert run_once(settings) == 1
    assert column(engine, people, "email") == {1: None, 2: "b@example.com"}


def test_redact_strategy_stores_the_redacted_marker(settings: Settings, engine: Engine) -> None:
    people = make_people(engine, Column("note", String(100)))
    insert(engine, people, [{"id": 1, "created_at": OLD, "note": "call me at 5pm"}])
    write_policy(settings.policy_file, people_policy("set: {note: redact}"))

    assert run_once(settings) == 1
    assert column(engine, people, "note") == {1: "[redacted]"}


def test_value_strategy_stores_the_fixed_value(settings: Settings, engine: Engine) -> None:
    people = make_people(engine, Column("city", String(100)))
    insert(engine, people, [{"id": 1, "created_at": OLD, "city": "Shenzhen"}])
    write_policy(settings.policy_file, people_policy("set: {city: {value: unknown-city}}"))

    assert run_once(settings) == 1
    assert column(engine, people, "city") == {1: "unknown-city"}


def test_hash_strategy_stores_the_keyed_hmac_with_prefix_suffix_and_length(
    settings: Settings, engine: Engine
) -> None:
    """Including a non-ASCII value, hashed over its UTF-8 bytes on every database."""
    people = make_people(engine, Column("name", String(100)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "name": "alice"},
            {"id": 2, "created_at": OLD, "name": "张伟"},
            {"id": 3, "created_at": OLD, "name": "Zoë O'Brien"},
        ],
    )
    write_policy(
        settings.policy_file,
        people_policy("set: {name: {hash: {prefix: anon-, suffix: -x, length: 16}}}"),
    )

    assert run_once(settings) == 3
    assert column(engine, people, "name") == {
        1: pseudonym("alice", prefix="anon-", suffix="-x", length=16),
        2: pseudonym("张伟", prefix="anon-", suffix="-x", length=16),
        3: pseudonym("Zoë O'Brien", prefix="anon-", suffix="-x", length=16),
    }


def test_hash_strategy_without_parameters_stores_the_full_lowercase_hex_digest(
    settings: Settings, engine: Engine
) -> None:
    people = make_people(engine, Column("token", String(100)))
    insert(engine, people, [{"id": 1, "created_at": OLD, "token": "tok-123"}])
    write_policy(
        settings.policy_file, people_policy("mark: anonymised_at\nset: {token: {hash: {}}}")
    )

    assert run_once(settings) == 1
    assert column(engine, people, "token") == {1: pseudonym("tok-123")}


def test_hash_strategy_gives_the_same_pseudonym_to_the_same_input(
    settings: Settings, engine: Engine
) -> None:
    people = make_people(engine, Column("email", String(100)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "email": "same@example.com"},
            {"id": 2, "created_at": OLD, "email": "other@example.com"},
            {"id": 3, "created_at": OLD, "email": "same@example.com"},
        ],
    )
    write_policy(settings.policy_file, people_policy("set: {email: {hash: {prefix: 'p-'}}}"))

    run_once(settings)
    emails = column(engine, people, "email")
    assert emails[1] == emails[3] == pseudonym("same@example.com", prefix="p-")
    assert emails[2] != emails[1]


def test_hash_strategy_leaves_null_as_null(settings: Settings, engine: Engine) -> None:
    people = make_people(engine, Column("email", String(100)))
    insert(engine, people, [{"id": 1, "created_at": OLD, "email": None}])
    write_policy(
        settings.policy_file,
        people_policy("mark: anonymised_at\nset: {email: {hash: {prefix: 'p-'}}}"),
    )

    run_once(settings)
    assert column(engine, people, "email") == {1: None}


def test_mask_strategy_keeps_the_last_characters(settings: Settings, engine: Engine) -> None:
    """Characters, not bytes, are counted; a value shorter than keep_last is stored as it
    was; NULL stays NULL."""
    people = make_people(engine, Column("phone", String(40)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "phone": "13800138000"},
            {"id": 2, "created_at": OLD, "phone": "123"},
            {"id": 3, "created_at": OLD, "phone": "1234"},
            {"id": 4, "created_at": OLD, "phone": None},
            {"id": 5, "created_at": OLD, "phone": "微信号码wx_ab12"},
        ],
    )
    write_policy(
        settings.policy_file,
        people_policy("mark: anonymised_at\nset: {phone: {mask: {keep_last: 4, char: '*'}}}"),
    )

    assert run_once(settings) == 5
    assert column(engine, people, "phone") == {
        1: "*******8000",
        2: "123",
        3: "1234",
        4: None,
        5: "*******ab12",  # 11 characters, 19 bytes in UTF-8
    }


def test_mask_strategy_with_keep_last_zero_hides_every_character(
    settings: Settings, engine: Engine
) -> None:
    people = make_people(engine, Column("qq", String(40)))
    insert(engine, people, [{"id": 1, "created_at": OLD, "qq": "10001"}])
    write_policy(
        settings.policy_file,
        people_policy("mark: anonymised_at\nset: {qq: {mask: {keep_last: 0, char: '#'}}}"),
    )

    run_once(settings)
    assert column(engine, people, "qq") == {1: "#####"}


def test_truncate_ip_keeps_the_ipv4_slash_24_and_the_ipv6_slash_48(
    settings: Settings, engine: Engine
) -> None:
    """Text that is not an address is left as it is (SPEC 2, as of issue 9)."""
    people = make_people(engine, Column("ip", String(64)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "ip": "203.0.113.77"},
            {"id": 2, "created_at": OLD, "ip": "2001:db8:abcd:12:1:2:3:4"},
            {"id": 3, "created_at": OLD, "ip": "not an address"},
            {"id": 4, "created_at": OLD, "ip": None},
        ],
    )
    write_policy(settings.policy_file, people_policy("mark: anonymised_at\nset: {ip: truncate_ip}"))

    assert run_once(settings) == 4
    assert column(engine, people, "ip") == {
        1: "203.0.113.0",
        2: "2001:db8:abcd::",
        3: "not an address",
        4: None,
    }


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("2001:DB8:ABCD:1::1", "2001:db8:abcd::"),
        ("::ffff:192.0.2.1", "::"),
        ("::1", "::"),
        ("10.0.0.255", "10.0.0.0"),
        ("255.255.255.255", "255.255.255.0"),
    ],
)
def test_truncate_ip_handles_every_textual_address_form(
    settings: Settings, engine: Engine, address: str, network: str
) -> None:
    people = make_people(engine, Column("ip", String(64)))
    insert(engine, people, [{"id": 1, "created_at": OLD, "ip": address}])
    write_policy(settings.policy_file, people_policy("mark: anonymised_at\nset: {ip: truncate_ip}"))

    run_once(settings)
    assert column(engine, people, "ip") == {1: network}


@pytest.mark.parametrize(
    "garbage", ["999.1.2.3", "01.2.3.4", "1.2.3", "cafe:beef", "::1::2", "1:2:3:4:5:6:7:8:9"]
)
def test_truncate_ip_leaves_address_like_garbage_as_it_is(
    settings: Settings, engine: Engine, garbage: str
) -> None:
    """Text that merely looks like an address is not an address: it is left as it is
    (SPEC 2, as of issue 9), and does not fail the batch."""
    people = make_people(engine, Column("ip", String(64)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "ip": garbage},
            {"id": 2, "created_at": OLD, "ip": "198.51.100.9"},
        ],
    )
    write_policy(settings.policy_file, people_policy("mark: anonymised_at\nset: {ip: truncate_ip}"))

    assert run_once(settings) == 2
    assert column(engine, people, "ip") == {1: garbage, 2: "198.51.100.0"}


def test_truncate_date_truncates_timestamps_to_the_month_and_the_year(
    settings: Settings, engine: Engine
) -> None:
    people = make_people(engine, Column("seen_at", DateTime), Column("joined_at", DateTime))
    insert(
        engine,
        people,
        [
            {
                "id": 1,
                "created_at": OLD,
                "seen_at": datetime(2026, 3, 17, 10, 11, 12),
                "joined_at": datetime(2024, 8, 9, 23, 59, 59),
            }
        ],
    )
    write_policy(
        settings.policy_file,
        people_policy("""
        mark: anonymised_at
        set: {seen_at: {truncate_date: month}, joined_at: {truncate_date: year}}
        """),
    )

    run_once(settings)
    assert column(engine, people, "seen_at") == {1: datetime(2026, 3, 1, 0, 0, 0)}
    assert column(engine, people, "joined_at") == {1: datetime(2024, 1, 1, 0, 0, 0)}


def test_truncate_date_truncates_dates_to_the_month_and_the_year(
    settings: Settings, engine: Engine
) -> None:
    people = make_people(engine, Column("visit_day", Date), Column("birthday", Date))
    insert(
        engine,
        people,
        [
            {
                "id": 1,
                "created_at": OLD,
                "visit_day": date(2026, 3, 17),
                "birthday": date(1990, 7, 23),
            },
            {"id": 2, "created_at": OLD, "visit_day": None, "birthday": date(2000, 1, 1)},
        ],
    )
    write_policy(
        settings.policy_file,
        people_policy("""
        mark: anonymised_at
        set: {visit_day: {truncate_date: month}, birthday: {truncate_date: year}}
        """),
    )

    run_once(settings)
    assert column(engine, people, "visit_day") == {1: date(2026, 3, 1), 2: None}
    assert column(engine, people, "birthday") == {1: date(1990, 1, 1), 2: date(2000, 1, 1)}


# --- idempotency ------------------------------------------------------------------------


def test_mark_is_set_to_the_runs_clock_as_naive_utc(settings: Settings, engine: Engine) -> None:
    people = make_people(engine, Column("ip", String(64)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "ip": "203.0.113.77"},
            {"id": 2, "created_at": FRESH, "ip": "203.0.113.78"},
        ],
    )
    write_policy(settings.policy_file, people_policy("mark: anonymised_at\nset: {ip: truncate_ip}"))

    run_once(settings)
    assert column(engine, people, "anonymised_at") == {
        1: NOW.replace(tzinfo=None),
        2: None,
    }


def test_rows_with_a_mark_are_skipped_by_the_next_run(settings: Settings, engine: Engine) -> None:
    """The second run reports 0 rows and leaves the first run's result and mark alone."""
    people = make_people(engine, Column("phone", String(40)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "phone": "13800138000"},
            {"id": 2, "created_at": OLD, "phone": "13900139000"},
        ],
    )
    write_policy(
        settings.policy_file,
        people_policy("mark: anonymised_at\nset: {phone: {mask: {keep_last: 4}}}"),
    )
    assert run_once(settings) == 2
    after_first = raw_rows(engine, "people")

    later = api.run(settings, now=NOW.replace(day=20))
    assert later.rules[0].rows == 0
    assert api.plan(settings, now=NOW.replace(day=20)).rules[0].counts.due == 0
    assert raw_rows(engine, "people") == after_first


def test_a_row_marked_before_the_first_run_is_not_due(settings: Settings, engine: Engine) -> None:
    people = make_people(engine, Column("ip", String(64)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "ip": "203.0.113.77", "anonymised_at": OLD},
            {"id": 2, "created_at": OLD, "ip": "203.0.113.78", "anonymised_at": None},
        ],
    )
    write_policy(settings.policy_file, people_policy("mark: anonymised_at\nset: {ip: truncate_ip}"))

    assert api.plan(settings, now=NOW).rules[0].counts.due == 1
    assert run_once(settings) == 1
    assert column(engine, people, "ip") == {1: "203.0.113.77", 2: "203.0.113.0"}


RECOGNISABLE = """
set:
  email: null
  note: redact
  city: {value: unknown-city}
  name: {hash: {prefix: anon-}}
"""


def recognisable_people(engine: Engine) -> Table:
    return make_people(
        engine,
        Column("email", String(100)),
        Column("note", String(100)),
        Column("city", String(100)),
        Column("name", String(100)),
    )


def test_without_mark_a_second_run_finds_nothing_due(settings: Settings, engine: Engine) -> None:
    people = recognisable_people(engine)
    insert(
        engine,
        people,
        [
            {
                "id": i,
                "created_at": OLD,
                "email": f"u{i}@example.com",
                "note": "hi",
                "city": "Wuhan",
                "name": f"user {i}",
            }
            for i in (1, 2, 3)
        ],
    )
    write_policy(settings.policy_file, people_policy(RECOGNISABLE))
    assert run_once(settings) == 3
    after_first = raw_rows(engine, "people")

    assert api.plan(settings, now=NOW).rules[0].counts.due == 0
    assert run_once(settings) == 0
    assert raw_rows(engine, "people") == after_first


def test_without_mark_rows_already_holding_every_result_are_not_due(
    settings: Settings, engine: Engine
) -> None:
    """A row is due while any one set column still holds something else."""
    people = recognisable_people(engine)
    done = {"email": None, "note": "[redacted]", "city": "unknown-city", "name": "anon-0123"}
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, **done},
            {"id": 2, "created_at": OLD, **done, "name": None},  # NULL is hash's own result
            {"id": 3, "created_at": OLD, **done, "email": "left@example.com"},
            {"id": 4, "created_at": OLD, **done, "note": "still here"},
            {"id": 5, "created_at": OLD, **done, "city": None},
            {"id": 6, "created_at": OLD, **done, "name": "not-a-pseudonym"},
        ],
    )
    write_policy(settings.policy_file, people_policy(RECOGNISABLE))
    before = raw_rows(engine, "people")

    assert api.plan(settings, now=NOW).rules[0].counts.due == 4
    assert run_once(settings) == 4
    after = raw_rows(engine, "people")
    assert after[:2] == before[:2]
    assert column(engine, people, "email")[3] is None
    assert column(engine, people, "note")[4] == "[redacted]"
    assert column(engine, people, "city")[5] == "unknown-city"
    assert column(engine, people, "name")[6] == pseudonym("not-a-pseudonym", prefix="anon-")


def test_a_hash_prefix_with_like_wildcards_is_matched_literally(
    settings: Settings, engine: Engine
) -> None:
    """'%' and '_' in a prefix are not LIKE wildcards: 'a_Xb' is not a finished 'a_%' result."""
    people = make_people(engine, Column("name", String(100)))
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, "name": "a_%done"},
            {"id": 2, "created_at": OLD, "name": "aXYpending"},
        ],
    )
    write_policy(settings.policy_file, people_policy("set: {name: {hash: {prefix: 'a_%'}}}"))

    assert api.plan(settings, now=NOW).rules[0].counts.due == 1
    assert run_once(settings) == 1
    assert column(engine, people, "name") == {
        1: "a_%done",
        2: pseudonym("aXYpending", prefix="a_%"),
    }


def test_a_result_is_recognised_only_exactly_not_ignoring_case(
    settings: Settings, engine: Engine
) -> None:
    """'ANON-Smith' does not start with 'anon-': SQLite's LIKE and MariaDB's default
    collation ignore case, but a name in capitals must not escape the hash."""
    people = recognisable_people(engine)
    done = {"email": None, "note": "[redacted]", "city": "unknown-city", "name": "anon-0123"}
    insert(
        engine,
        people,
        [
            {"id": 1, "created_at": OLD, **done, "name": "ANON-Smith"},
            {"id": 2, "created_at": OLD, **done, "note": "[REDACTED]"},
            {"id": 3, "created_at": OLD, **done, "city": "Unknown-City"},
            {"id": 4, "created_at": OLD, **done},
        ],
    )
    write_policy(settings.policy_file, people_policy(RECOGNISABLE))

    assert api.plan(settings, now=NOW).rules[0].counts.due == 3
    assert run_once(settings) == 3
    assert column(engine, people, "name")[1] == pseudonym("ANON-Smith", prefix="anon-")
    assert column(engine, people, "note")[2] == "[redacted]"
    assert column(engine, people, "city")[3] == "unknown-city"


# --- only the set columns of due rows change --------------------------------------------


def test_only_the_set_columns_of_due_rows_change(settings: Settings, engine: Engine) -> None:
    people = make_people(
        engine,
        Column("email", String(100)),
        Column("phone", String(40)),
        Column("nickname", String(100)),
        Column("visit_day", Date),
    )
    rows = [
        {
            "id": i,
            "created_at": OLD if i % 2 else FRESH,
            "email": f"u{i}@example.com",
            "phone": f"1380013800{i}",
            "nickname": f"张{i}",
            "visit_day": date(2026, 1, i),
        }
        for i in range(1, 7)
    ]
    insert(engine, people, rows)
    write_policy(
        settings.policy_file,
        people_policy("""
        mark: anonymised_at
        set: {email: null, phone: {mask: {keep_last: 4}}}
        """),
    )
    before = raw_rows(engine, "people")

    assert run_once(settings) == 3
    after = raw_rows(engine, "people")
    names = list(raw_columns(engine, "people"))
    changed = {"email", "phone", "anonymised_at"}
    for old, new in zip(before, after, strict=True):
        row_id = old[names.index("id")]
        if row_id % 2 == 0:  # not due
            assert new == old
            continue
        for name, was, now in zip(names, old, new, strict=True):
            if name in changed:
                assert now != was, name
            else:
                assert now == was, name


def raw_columns(engine: Engine, table_name: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text(f"SELECT * FROM {table_name} WHERE 1 = 0")).keys())
