"""Counterexamples the differential tester found (tests/test_differential.py), each
shrunk to a readable case on every database (issue 9, "never the wrong row").

Each is a strict xfail naming its defect until the product is fixed; then the xfail
turns red, the marker goes, and the matching entry of ``KNOWN_DEFECTS`` in
test_differential.py goes with it.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import TS, create, guardless_policy, holds_registry
from pydantic import SecretStr
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    select,
    text,
)

from retention import api
from retention.errors import RetentionError
from retention.settings import Settings

NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)
OLD = datetime(2024, 1, 1, 8, 0, 0)  # naive UTC, past every cutoff below


def defect(request: pytest.FixtureRequest, reason: str, *, on: tuple[str, ...] = ()) -> None:
    """Mark this test a strict xfail for ``reason`` (on the backends ``on``; all if empty)."""
    backend = request.node.callspec.params["db_url"]
    if not on or backend in on:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"issue 9: {reason}"))


def write_policy(settings: Settings, body: str, *, with_holds: bool = False) -> None:
    head = HOLDS if with_holds else ""
    settings.policy_file.write_text(guardless_policy(body, head=head), encoding="utf-8")


def left(engine: Engine, table: Table, column: str) -> list[Any]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(table.c[column])).scalars(), key=lambda v: (v is None, v))


HOLDS = """\
holds:
  table: legal_holds
  subject_column: subject_id
  active: {released_at: {is_null: true}}
"""


def test_a_table_named_hold_is_not_confused_with_the_holds_registry(
    settings: Settings, db: Engine, request: pytest.FixtureRequest
) -> None:
    """The rule's table may be called ``hold``: user 2's row stays held, user 1's goes."""
    meta = MetaData()
    hold = Table(
        "hold",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("user_id", Integer, nullable=True),
        Column("created_at", TS, nullable=True),
    )
    # The registry also records who placed the hold, in a column of the same name.
    registry = holds_registry(meta, Column("user_id", Integer, nullable=True))
    create(
        db,
        meta,
        {
            registry: [{"id": 1, "subject_id": 2, "released_at": None, "user_id": 9}],
            hold: [
                {"id": 1, "user_id": 1, "created_at": OLD},
                {"id": 2, "user_id": 2, "created_at": OLD},
            ],
        },
    )
    write_policy(
        settings,
        """\
        rules:
          - name: hold
            table: hold
            clock: created_at
            after: P30D
            hold_subject: user_id
            action: delete
        """,
        with_holds=True,
    )
    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_holds) == (1, 1)
    assert api.run(settings, now=NOW).rules[0].rows == 1
    assert left(db, hold, "id") == [2]


def test_a_rule_table_named_rel1_keeps_the_rows_its_unless_keeps(
    settings: Settings, db: Engine, request: pytest.FixtureRequest
) -> None:
    """The rule's table may be called ``rel1``: its ``unless`` still reads the ticket of
    each of its rows, so feedback on an open ticket stays and the other goes."""
    meta = MetaData()
    tickets = Table(
        "tickets",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ticket_id", Integer, nullable=True),  # a follow-up's original ticket
        Column("status", String(20), nullable=True),
    )
    rel1 = Table(
        "rel1",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ticket_id", Integer, nullable=True),
        Column("submitted_at", TS, nullable=True),
    )
    create(
        db,
        meta,
        {
            tickets: [
                {"id": 10, "ticket_id": None, "status": "open"},
                {"id": 11, "ticket_id": None, "status": "closed"},
            ],
            rel1: [
                {"id": 1, "ticket_id": 10, "submitted_at": OLD},
                {"id": 2, "ticket_id": 11, "submitted_at": OLD},
            ],
        },
    )
    write_policy(
        settings,
        """\
        rules:
          - name: feedback
            table: rel1
            clock: submitted_at
            after: P30D
            unless: {related: {table: tickets, on: {id: ticket_id}, where: {status: open}}}
            action: delete
        """,
    )
    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_unless) == (1, 1)
    assert api.run(settings, now=NOW).rules[0].rows == 1
    assert left(db, rel1, "id") == [1]


def test_a_quoted_date_is_compared_as_a_date_with_a_timestamp_column(
    settings: Settings, db: Engine, request: pytest.FixtureRequest
) -> None:
    """SPEC 2: literals are checked against the column's type and compared in it, never
    as text. ``le: "2024-05-10"`` on a timestamp includes 2024-05-10 00:00:00 itself."""
    meta = MetaData()
    events = Table(
        "events",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seen_at", TS, nullable=True),
    )
    create(
        db,
        meta,
        {
            events: [
                {"id": 1, "seen_at": datetime(2024, 5, 10)},
                {"id": 2, "seen_at": datetime(2024, 5, 9, 12)},
                {"id": 3, "seen_at": datetime(2024, 5, 11)},
            ]
        },
    )
    write_policy(
        settings,
        """\
        rules:
          - name: events
            table: events
            clock: seen_at
            after: P1D
            where: {seen_at: {le: "2024-05-10"}}
            action: delete
        """,
    )
    assert api.plan(settings, now=NOW).rules[0].counts.due == 2
    assert api.run(settings, now=NOW).rules[0].rows == 2
    assert left(db, events, "id") == [3]


def test_a_sqlite_datetime_clock_holding_unix_numbers_is_refused_not_compared_as_text(
    settings: Settings, db: Engine, request: pytest.FixtureRequest
) -> None:
    """SPEC 2: on SQLite, a date/time clock whose values are not ISO 8601 text in UTC
    (here a Unix number from yesterday, and a ``T`` with an offset) is refused before
    anything is written. Compared as text, the recent number would sort before any date
    and be deleted."""
    if request.node.callspec.params["db_url"] != "sqlite":
        pytest.skip("only SQLite stores other values than its column's type")
    meta = MetaData()
    events = Table(
        "events",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("seen_at", TS, nullable=True),
    )
    meta.create_all(db)
    with db.begin() as conn:
        conn.execute(
            text("INSERT INTO events (id, seen_at) VALUES (1, :a), (2, :b), (3, :c)"),
            {"a": "2024-01-01 08:00:00.000000", "b": 1718400000, "c": "2024-06-14T23:00:00-05:00"},
        )
    write_policy(
        settings,
        """\
        rules:
          - name: events
            table: events
            clock: seen_at
            after: P30D
            action: delete
        """,
    )
    with pytest.raises(RetentionError):
        api.run(settings, now=NOW)
    assert left(db, events, "id") == [1, 2, 3]


def access_log(meta: MetaData) -> Table:
    return Table(
        "access_log",
        meta,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("ip", String(45), nullable=True),
        Column("token", String(100), nullable=True),
        Column("logged_at", TS, nullable=True),
        Column("anonymised_at", TS, nullable=True),
    )


ANONYMISE_IP = """\
    rules:
      - name: access-log
        table: access_log
        clock: logged_at
        after: P30D
        action: anonymise
        {mark}set: {{ip: truncate_ip}}
    """


def test_truncate_ip_leaves_an_empty_text_as_it_is(
    settings: Settings, db: Engine, request: pytest.FixtureRequest
) -> None:
    """SPEC 2: a value that is not an address, such as '', is left as it is by
    ``truncate_ip``; never turned into NULL."""
    meta = MetaData()
    log = access_log(meta)
    create(
        db,
        meta,
        {
            log: [
                {"id": 1, "ip": "", "logged_at": OLD},
                {"id": 2, "ip": "203.0.113.77", "logged_at": OLD},
                {"id": 3, "ip": "not an address", "logged_at": OLD},
            ]
        },
    )
    write_policy(settings, ANONYMISE_IP.format(mark="mark: anonymised_at\n        "))
    assert api.run(settings, now=NOW).rules[0].rows == 3
    assert left(db, log, "ip") == ["", "203.0.113.0", "not an address"]


def test_truncate_ip_is_recognised_without_a_mark(
    settings: Settings, db: Engine, request: pytest.FixtureRequest
) -> None:
    """SPEC 2, idempotency: ``truncate_ip`` is recognisable (a value equal to its own
    truncation), so a rule using it needs no ``mark``, and a second run reports 0."""
    meta = MetaData()
    log = access_log(meta)
    create(db, meta, {log: [{"id": 1, "ip": "203.0.113.77", "logged_at": OLD}]})
    write_policy(settings, ANONYMISE_IP.format(mark=""))
    assert api.run(settings, now=NOW).rules[0].rows == 1
    assert api.run(settings, now=NOW).rules[0].rows == 0
    assert left(db, log, "ip") == ["203.0.113.0"]


@pytest.mark.parametrize(
    "hash_key",
    ["k" * 65, "clé-0123456789abcdef-secret"],
    ids=["key-of-65-bytes", "non-ascii-key"],
)
def test_hash_is_the_hmac_of_the_text_whatever_the_key(
    settings: Settings, db: Engine, request: pytest.FixtureRequest, hash_key: str
) -> None:
    """SPEC 2: ``hash`` is the HMAC-SHA-256 of the UTF-8 text under the hash key, the same
    on every database "whatever bytes the key holds" (longer than a SHA-256 block, or
    not ASCII)."""
    keyed = settings.model_copy(update={"hash_key": SecretStr(hash_key)})
    meta = MetaData()
    log = access_log(meta)
    create(db, meta, {log: [{"id": 1, "token": "tok-ü", "logged_at": OLD}]})
    write_policy(
        keyed,
        """\
        rules:
          - name: access-log
            table: access_log
            clock: logged_at
            after: P30D
            action: anonymise
            set: {token: {hash: {prefix: "anon-"}}}
        """,
    )
    assert api.run(keyed, now=NOW).rules[0].rows == 1
    digest = hmac.new(hash_key.encode(), "tok-ü".encode(), hashlib.sha256).hexdigest()
    assert left(db, log, "token") == [f"anon-{digest}"]


def test_a_nullable_unique_key_leaves_its_null_rows_and_removes_the_others(
    settings: Settings, db: Engine, request: pytest.FixtureRequest
) -> None:
    """SPEC 2: ``key`` may name a unique column that allows NULL; NULL-keyed rows are
    never selected, the other due rows go."""
    meta = MetaData()
    sessions = Table(
        "sessions",
        meta,
        Column("code", String(20), nullable=True, unique=True),
        Column("seen_at", TS, nullable=True),
    )
    create(
        db,
        meta,
        {
            sessions: [
                {"code": "a", "seen_at": OLD},
                {"code": None, "seen_at": OLD},
                {"code": "b", "seen_at": datetime(2024, 6, 14)},
            ]
        },
    )
    write_policy(
        settings,
        """\
        rules:
          - name: sessions
            table: sessions
            key: [code]
            clock: seen_at
            after: P30D
            action: delete
        """,
    )
    assert api.plan(settings, now=NOW).rules[0].counts.due == 1
    assert api.run(settings, now=NOW).rules[0].rows == 1
    assert left(db, sessions, "code") == ["b", None]
