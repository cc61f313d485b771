"""Never the wrong row (issue 9, items 4 to 6): what SQLite really stores and what its
reflection misses, and the strategies whose SQL differs per database (``hash`` and
``truncate_ip``), on SQLite, PostgreSQL and MariaDB (SPEC section 2).

Each test checks the values left row by row, not only the counts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import TS, rules_policy
from builders import cli_on as cli
from pydantic import SecretStr
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    text,
)

from retention import api
from retention.settings import Settings

NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)
OLD = datetime(2024, 1, 1, 8, 0, 0)  # naive UTC, past every cutoff below
RECENT = datetime(2024, 6, 14, 8, 0, 0)


@pytest.fixture
def sqlite_only(db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("only SQLite keeps values of another type than its column's")


def policy(settings: Settings, rules: str) -> None:
    settings.policy_file.write_text(rules_policy(rules), encoding="utf-8")


def ddl(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


# --- SQLite: what a date/time column really holds -----------------------------------

EVENTS_RULE = """\
- name: events
  table: events
  clock: seen_at
  after: P30D
  action: delete
"""


@pytest.mark.parametrize(
    "odd",
    [1718400000, 1718400000.5, "2024-06-14T23:00:00-05:00", "2024-06-14 23:00:00+00:00"],
    ids=["unix-integer", "unix-real", "t-and-offset", "offset"],
)
def test_a_sqlite_clock_holding_values_that_compare_as_text_is_refused_before_any_write(
    settings: Settings, db: Engine, sqlite_only: None, odd: Any
) -> None:
    """SPEC 2: the rule does not run (78 at validation with the database, so `validate`
    says it too); the message names the clock and what is stored, never a value."""
    ddl(db, "CREATE TABLE events (id INTEGER PRIMARY KEY, seen_at DATETIME)")
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO events VALUES (1, '2024-01-01 08:00:00.000000'), (2, :odd)"),
            {"odd": odd},
        )
    policy(settings, EVENTS_RULE)

    for command in (["validate"], ["run"]):
        out = cli(settings, *command)
        assert out.exit_code == 78, out.output
        assert "clock 'seen_at' holds 1 values stored as" in out.output
        assert "compare as text" in out.output
        assert str(odd) not in out.output
    assert rows(db, "SELECT id FROM events ORDER BY id") == [(1,), (2,)]
    assert rows(db, "SELECT name FROM sqlite_master WHERE name LIKE 'retention%'") == []


def test_a_sqlite_clock_of_iso_utc_text_in_every_form_sqlite_and_sqlalchemy_write_runs(
    settings: Settings, db: Engine, sqlite_only: None
) -> None:
    """Dates, minutes, seconds (CURRENT_TIMESTAMP's form) and microseconds all compare in
    time order: nothing is refused, the old rows go and the recent one stays."""
    ddl(db, "CREATE TABLE events (id INTEGER PRIMARY KEY, seen_at DATETIME)")
    ddl(
        db,
        "INSERT INTO events VALUES (1, '2024-01-01'), (2, '2024-01-01 08:00'), "
        "(3, '2024-01-01 08:00:00'), (4, '2024-01-01 08:00:00.123456'), "
        "(5, '2024-06-14 08:00:00'), (6, NULL)",
    )
    policy(settings, EVENTS_RULE)

    assert api.run(settings, now=NOW).rules[0].rows == 4
    assert rows(db, "SELECT id FROM events ORDER BY id") == [(5,), (6,)]


def test_a_datetime_key_written_by_sqlite_itself_is_bound_back_as_stored(
    settings: Settings, db: Engine, sqlite_only: None
) -> None:
    """A key column filled by CURRENT_TIMESTAMP holds '2024-01-01 08:00:00'; bound back
    as '... .000000' it would match nothing and fail the batch."""
    ddl(
        db,
        "CREATE TABLE visits (seen_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, "
        "who INTEGER NOT NULL, PRIMARY KEY (seen_at, who))",
        "INSERT INTO visits VALUES ('2024-01-01 08:00:00', 1), ('2024-01-01 08:00:00', 2), "
        "('2024-01-02 09:30:00', 1)",
        "INSERT INTO visits (who) VALUES (3)",  # today's, by SQLite's own clock
    )
    policy(settings, EVENTS_RULE.replace("events", "visits"))

    result = api.run(settings, now=datetime.now(UTC)).rules[0]
    assert (result.status.value, result.rows) == ("done", 3), result.error
    assert [who for (who,) in rows(db, "SELECT who FROM visits")] == [3]


def test_an_inline_unique_after_a_parameterised_type_refuses_a_fixed_value(
    settings: Settings, db: Engine, sqlite_only: None
) -> None:
    """SQLAlchemy's SQLite reflection does not see ``VARCHAR(64) NOT NULL UNIQUE``;
    ``PRAGMA index_list`` does, so a fixed value (a collision) is refused."""
    ddl(
        db,
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, login VARCHAR(64) NOT NULL UNIQUE, "
        "created_at DATETIME, anonymised_at DATETIME)",
        "INSERT INTO accounts VALUES (1, 'ann', '2024-01-01 08:00:00', NULL), "
        "(2, 'bob', '2024-01-01 08:00:00', NULL)",
    )
    policy(
        settings,
        """\
        - name: accounts
          table: accounts
          clock: created_at
          after: P30D
          action: anonymise
          set: {login: {value: gone}}
        """,
    )

    out = cli(settings, "validate")
    assert out.exit_code == 78, out.output
    assert "value on 'login', which is UNIQUE, would collide" in out.output
    assert cli(settings, "run").exit_code == 78
    assert rows(db, "SELECT login FROM accounts ORDER BY id") == [("ann",), ("bob",)]


def test_an_inline_on_delete_cascade_foreign_key_is_accepted_and_followed(
    settings: Settings, db: Engine, sqlite_only: None
) -> None:
    """``user_id INTEGER REFERENCES users(id) ON DELETE CASCADE`` is read from
    ``PRAGMA foreign_key_list``: the rule needs no cascade of its own, and the
    database removes the sessions of the users removed, only theirs."""
    ddl(
        db,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, created_at DATETIME)",
        "CREATE TABLE sessions (id INTEGER PRIMARY KEY, "
        "user_id INTEGER REFERENCES users(id) ON DELETE CASCADE)",
        "INSERT INTO users VALUES (1, '2024-01-01 08:00:00'), (2, '2024-06-14 08:00:00')",
        "INSERT INTO sessions VALUES (10, 1), (11, 1), (20, 2)",
    )
    policy(settings, EVENTS_RULE.replace("events", "users").replace("seen_at", "created_at"))

    assert cli(settings, "validate").exit_code == 0
    assert api.run(settings, now=NOW).rules[0].rows == 1
    assert rows(db, "SELECT id FROM users") == [(2,)]
    assert rows(db, "SELECT id FROM sessions") == [(20,)]


def test_null_keys_of_a_sqlite_primary_key_without_not_null_are_reported_not_selected(
    settings: Settings, db: Engine, sqlite_only: None
) -> None:
    """SQLite lets a PRIMARY KEY that is not the rowid hold NULL: those rows are never
    selected (a NULL key names no row), and `plan` counts them as unaddressable."""
    ddl(
        db,
        "CREATE TABLE sessions (code VARCHAR(20) PRIMARY KEY, seen_at DATETIME)",
        "INSERT INTO sessions VALUES ('a', '2024-01-01 08:00:00'), "
        "(NULL, '2024-01-01 08:00:00'), (NULL, '2024-01-02 08:00:00'), "
        "('b', '2100-01-01 08:00:00'), (NULL, '2100-01-01 08:00:00')",
    )
    policy(settings, EVENTS_RULE.replace("events", "sessions"))

    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.unaddressable) == (1, 2)
    out = cli(settings, "plan", "--output", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["rules"][0]["unaddressable"] == 2
    assert "unaddressable  2" in cli(settings, "plan").stdout
    result = api.run(settings, now=NOW).rules[0]
    assert (result.status.value, result.rows) == ("done", 1), result.error
    left = rows(db, "SELECT code FROM sessions ORDER BY code IS NULL, code")
    assert left == [("b",), (None,), (None,), (None,)]


# --- hash: the HMAC of the UTF-8 text, whatever the key and the character set --------


def latin1_log(meta: MetaData, *, ip_default: bool = False) -> Table:
    """An access log whose text columns are latin1 on MariaDB (a PHP helpdesk's)."""
    ip = (
        Column("ip", String(45), nullable=False, server_default="")
        if ip_default
        else Column("ip", String(45), nullable=True)
    )
    return Table(
        "access_log",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        ip,
        Column("token", String(200), nullable=True),
        Column("logged_at", TS, nullable=True),
        mysql_charset="latin1",
    )


@pytest.mark.parametrize(
    "hash_key",
    [
        "9f" * 64,  # what `openssl rand -hex 64` prints: 128 bytes, past a SHA-256 block
        "k" * 64,  # exactly one block
        "clé-secrète-ünïcode",
    ],
    ids=["hex-64-bytes", "one-block", "non-ascii"],
)
def test_hash_gives_the_same_pseudonym_on_every_database_whatever_the_key_and_charset(
    settings: Settings, db: Engine, hash_key: str
) -> None:
    """SPEC 2: the HMAC-SHA-256 of the value's UTF-8 bytes under the key's UTF-8 bytes;
    the expectation is computed here, so all three databases give the same text."""
    keyed = settings.model_copy(update={"hash_key": SecretStr(hash_key)})
    meta = MetaData()
    log = latin1_log(meta)
    meta.create_all(db)
    values = {1: "Zoë Müller", 2: "plain-ascii", 3: None, 4: ""}
    with db.begin() as conn:
        conn.execute(
            insert(log), [{"id": i, "token": v, "logged_at": OLD} for i, v in values.items()]
        )
    policy(
        keyed,
        """\
        - name: access-log
          table: access_log
          clock: logged_at
          after: P30D
          action: anonymise
          set: {token: {hash: {prefix: "anon-"}}}
        """,
    )

    assert api.run(keyed, now=NOW).rules[0].rows == 3  # NULL is already a finished result
    key = hash_key.encode()
    expected = {
        i: None if v is None else "anon-" + hmac.new(key, v.encode(), hashlib.sha256).hexdigest()
        for i, v in values.items()
    }
    with db.connect() as conn:
        assert dict(conn.execute(select(log.c.id, log.c.token)).all()) == expected
    assert api.run(keyed, now=NOW).rules[0].rows == 0


# --- truncate_ip: addresses only; everything else stays as it is --------------------


def test_truncate_ip_on_a_not_null_default_empty_column_needs_no_mark_and_keeps_the_rest(
    settings: Settings, db: Engine
) -> None:
    """SPEC 2: '' and other values that are not addresses stay as they are (no NULL on a
    NOT NULL DEFAULT '' column, no IntegrityError 1048); the result is recognised without
    ``mark``, so the rows already in their final form are not due and a second run reports
    0. On MariaDB the column is latin1 (no collation mix, 1270)."""
    meta = MetaData()
    log = latin1_log(meta, ip_default=True)
    meta.create_all(db)
    before = {
        1: "",
        2: "203.0.113.77",
        3: "2001:db8:abcd:12:1:2:3:4",
        4: "unknown",
        5: "1.2.3.4\n",  # not exactly an address: '$' must not match before the newline
        6: "198.51.100.0",  # already truncated
        7: "999.1.2.3",
    }
    with db.begin() as conn:
        conn.execute(insert(log), [{"id": i, "ip": v, "logged_at": OLD} for i, v in before.items()])
        conn.execute(insert(log), [{"id": 8, "logged_at": OLD}])  # the column's default
    policy(
        settings,
        """\
        - name: access-log
          table: access_log
          clock: logged_at
          after: P30D
          action: anonymise
          set: {ip: truncate_ip}
        """,
    )

    plan = api.plan(settings, now=NOW).rules[0]
    assert plan.counts.due == 2
    assert api.run(settings, now=NOW).rules[0].rows == 2
    assert api.run(settings, now=NOW).rules[0].rows == 0
    after = {**before, 2: "203.0.113.0", 3: "2001:db8:abcd::", 8: ""}
    with db.connect() as conn:
        assert dict(conn.execute(select(log.c.id, log.c.ip)).all()) == after


ADDRESS_TABLES = {
    "postgresql": (
        "CREATE TABLE access_log (id INTEGER PRIMARY KEY, ip INET, net CIDR, logged_at TIMESTAMP)",
        {
            1: ("203.0.113.77", "203.0.113.0/25"),
            2: ("2001:db8:abcd:12::1", "2001:db8:abcd:12::/64"),
            3: ("10.1.2.3/8", "10.0.0.0/8"),
        },
        {
            1: ("203.0.113.0", "203.0.113.0/24"),
            2: ("2001:db8:abcd::", "2001:db8:abcd::/48"),
            3: ("10.1.2.0/8", "10.0.0.0/8"),
        },
    ),
    "mysql": (
        "CREATE TABLE access_log (id INTEGER PRIMARY KEY, ip INET6, net INET4, "
        "logged_at DATETIME(6))",
        {
            1: ("2001:db8:abcd:12::1", "203.0.113.77"),
            2: ("2001:db8:1:2:3:4:5:6", "198.51.100.200"),
            3: (None, None),
        },
        {
            1: ("2001:db8:abcd::", "203.0.113.0"),
            2: ("2001:db8:1::", "198.51.100.0"),
            3: (None, None),
        },
    ),
}


def test_truncate_ip_accepts_the_address_column_types_of_postgresql_and_mariadb(
    settings: Settings, db: Engine, db_url: str
) -> None:
    """SPEC 2: PostgreSQL ``inet``/``cidr`` and MariaDB ``INET4``/``INET6`` columns take
    ``truncate_ip`` as text columns do; without ``mark``, a second run reports 0."""
    backend = db.dialect.name
    if backend not in ADDRESS_TABLES:
        pytest.skip("SQLite has no address column types")
    create_sql, before, after = ADDRESS_TABLES[backend]
    ddl(db, create_sql)
    with db.begin() as conn:
        for i, (ip, net) in before.items():
            conn.execute(
                text("INSERT INTO access_log VALUES (:i, :ip, :net, :at)"),
                {"i": i, "ip": ip, "net": net, "at": OLD},
            )
    policy(
        settings,
        """\
        - name: access-log
          table: access_log
          clock: logged_at
          after: P30D
          action: anonymise
          set: {ip: truncate_ip, net: truncate_ip}
        """,
    )

    assert cli(settings, "validate").exit_code == 0
    assert api.run(settings, now=NOW).rules[0].rows == 2 + (backend == "postgresql")
    assert api.run(settings, now=NOW).rules[0].rows == 0
    cast = "CAST({} AS TEXT)" if backend == "postgresql" else "CAST({} AS CHAR)"
    sql = f"SELECT id, {cast.format('ip')}, {cast.format('net')} FROM access_log"
    left = {i: (ip, net) for i, ip, net in rows(db, sql)}
    if backend == "postgresql":  # CAST(inet AS TEXT) always shows the netmask
        after = {
            1: ("203.0.113.0/32", "203.0.113.0/24"),
            2: ("2001:db8:abcd::/128", "2001:db8:abcd::/48"),
            3: ("10.1.2.0/8", "10.0.0.0/8"),
        }
    assert left == after


@pytest.mark.parametrize(
    ("value", "odd"),
    [
        ("2026-01-01", False),
        ("2026-01-01 10:00", False),
        ("2026-01-01 10:00:00", False),
        ("2026-01-01 10:00:00.5", False),
        ("2026-01-01 10:00:00.123456", False),
        (None, False),
        ("2026-01-01 10:00:00.", True),
        ("2026-01-01 10:00:00.12a", True),
        ("2026-1-1", True),
        ("2026-01-01T10:00:00", True),
        ("2026-01-01 10:00:00+00:00", True),
        ("2026-01-01 10:00:0", True),
        ("2026-01-01 10:00:00 ", True),
        ("", True),
        ("abc", True),
        (1700000000, True),
        (1.5, True),
        (b"2026-01-01", True),
    ],
)
def test_the_odd_value_test_takes_iso_utc_text_and_nothing_else(value: Any, odd: bool) -> None:
    """The predicate the clock scan evaluates on every value (its cheap tests reordered
    first for speed): the same verdicts, value by value, as the ISO 8601 forms say."""
    import sqlite3

    from retention.backends.sqlite_catalog import _odd

    with closing(sqlite3.connect(":memory:")) as conn:
        (found,) = conn.execute(f"SELECT {_odd()} FROM (SELECT ? AS v)", (value,)).fetchone()
    assert bool(found) is odd
