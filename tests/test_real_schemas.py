"""Policies for schemas the application owns (issue 11 items 1, 2, 3 and 9; SPEC section 2,
"Real schemas"), on SQLite, PostgreSQL and MariaDB: ``cascade[].where`` for polymorphic
dependents, ``clock`` and ``hold_subject`` read through a relation, the rule order they
imply, and the validation lines for the mistakes made with them.

The helpdesk of ``builders.helpdesk_schema``: ticket 1 and task 1 share the id 1, so a
thread or form entry of task 1 is the wrong row for anything that ticket 1 decides.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import helpdesk_schema, invoke, write_policy
from sqlalchemy import Engine, MetaData, insert, select, text

from retention import api
from retention.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OLD = datetime(2025, 11, 1)  # naive UTC, 212 days before NOW: past a 90-day period
OLDER = datetime(2025, 10, 1)  # 243 days before NOW
RECENT = datetime(2026, 5, 27)  # 5 days before NOW
CONFIG_ERROR = 78


def _ms(at: datetime | None) -> int | None:
    return None if at is None else int(at.replace(tzinfo=UTC).timestamp() * 1000)


def _ticket(id_: int, user: int, closed: datetime | None) -> dict[str, Any]:
    status = "open" if closed is None else "closed"
    return {
        "id": id_,
        "user_id": user,
        "status": status,
        "closed_at": closed,
        "closed_ms": _ms(closed),
    }


ROWS: dict[str, list[dict[str, Any]]] = {
    "tickets": [
        _ticket(1, 7, OLD),  # closed long ago: its threads are due
        _ticket(2, 8, RECENT),  # closed lately: kept, with everything that is its
        _ticket(3, 9, None),  # open: never due
        _ticket(4, 10, OLDER),  # closed long ago, but user 10 is on hold
        _ticket(5, 8, OLD),  # closed long ago; user 8's hold was released
    ],
    "tasks": [{"id": 1, "closed_at": OLD}, {"id": 2, "closed_at": RECENT}],
    "threads": [
        {"id": 10, "object_type": "T", "object_id": 1, "created_at": OLD},
        {"id": 11, "object_type": "T", "object_id": 1, "created_at": RECENT},
        {"id": 12, "object_type": "A", "object_id": 1, "created_at": OLD},  # task 1's
        {"id": 13, "object_type": "T", "object_id": 2, "created_at": OLD},
        {"id": 14, "object_type": "T", "object_id": 3, "created_at": OLD},
        {"id": 15, "object_type": "T", "object_id": 4, "created_at": OLD},
        {"id": 16, "object_type": "T", "object_id": 99, "created_at": OLD},  # no ticket
        {"id": 17, "object_type": "A", "object_id": 2, "created_at": OLD},
        {"id": 18, "object_type": "T", "object_id": 5, "created_at": OLD},
    ],
    "entries": [
        {"id": 100, "thread_id": 10},
        {"id": 101, "thread_id": 11},
        {"id": 102, "thread_id": 12},
        {"id": 103, "thread_id": 13},
        {"id": 104, "thread_id": 15},
    ],
    "form_entries": [
        {"id": 200, "object_type": "T", "object_id": 1, "email": "a@example.org"},
        {"id": 201, "object_type": "A", "object_id": 1, "email": "b@example.org"},
        {"id": 202, "object_type": "T", "object_id": 2, "email": "c@example.org"},
        {"id": 203, "object_type": "T", "object_id": 1, "email": "d@example.org"},
    ],
    "legal_holds": [
        {"id": 1, "user_id": 10, "released_at": None},
        {"id": 2, "user_id": 8, "released_at": OLD},
    ],
}
HOLDS = {
    "table": "legal_holds",
    "subject_column": "user_id",
    "active": {"released_at": {"is_null": True}},
}
TICKET = {"table": "tickets", "on": {"id": "object_id"}}


@pytest.fixture
def helpdesk(engine: Engine) -> MetaData:
    meta = helpdesk_schema()
    meta.create_all(engine)
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            conn.execute(insert(table), ROWS[table.name])
    return meta


def write(settings: Settings, *rules: dict[str, Any], holds: bool = False) -> None:
    policy: dict[str, Any] = {"version": 1, "defaults": {"guard": {"max_fraction": 1}}}
    if holds:
        policy["holds"] = HOLDS
    write_policy(settings.policy_file, policy | {"rules": list(rules)})


def env(settings: Settings) -> dict[str, str]:
    return {
        "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
        "RETENTION_POLICY_FILE": str(settings.policy_file),
        "RETENTION_HASH_KEY": settings.require_hash_key().decode(),
        "RETENTION_LOG_FORMAT": "console",
    }


def ids(engine: Engine, meta: MetaData, name: str) -> list[int]:
    table = meta.tables[name]
    with engine.connect() as conn:
        return sorted(conn.execute(select(table.c.id)).scalars())


def rows(engine: Engine, meta: MetaData, name: str) -> dict[int, dict[str, Any]]:
    table = meta.tables[name]
    with engine.connect() as conn:
        return {r.id: dict(r._mapping) for r in conn.execute(select(table))}


def refused(settings: Settings) -> str:
    """validate's stderr, which must be a refusal (78) without a traceback."""
    result = invoke(["validate"], env(settings))
    assert result.exit_code == CONFIG_ERROR, result.output
    assert "Traceback" not in result.output
    return result.stderr


# --- item 1: cascade[].where ---------------------------------------------------------


def closed_tickets(form_action: str) -> dict[str, Any]:
    form: dict[str, Any] = {
        "table": "form_entries",
        "on": {"object_id": "id"},
        "where": {"object_type": "T"},
        "action": form_action,
    }
    if form_action == "anonymise":
        form["set"] = {"email": None}
    threads = {
        "table": "threads",
        "on": {"object_id": "id"},
        "where": {"object_type": "T"},
        "cascade": [{"table": "entries", "on": {"thread_id": "id"}}],
    }
    return {
        "name": "closed-tickets",
        "table": "tickets",
        "clock": "closed_at",
        "after": "P90D",
        "action": "delete",
        "cascade": [threads, form],
    }


@pytest.mark.parametrize("form_action", ["delete", "anonymise", "detach"])
def test_a_filtered_cascade_handles_only_the_matching_dependents(
    settings: Settings, engine: Engine, helpdesk: MetaData, form_action: str
) -> None:
    """Tickets 1, 4 and 5 go with their ticket threads (and those threads' entries) and
    their ticket form entries; task 1's thread and form entry, which share the id 1, and
    everything of the kept ticket 2 stay as they were."""
    write(settings, closed_tickets(form_action))
    expected = {"threads": 4, "entries": 3, "form_entries": 2}
    assert api.plan(settings, now=NOW).rules[0].counts.dependents == expected
    result = api.run(settings, now=NOW).rules[0]
    assert result.rows == 3
    assert result.dependents == expected

    assert ids(engine, helpdesk, "tickets") == [2, 3]
    assert ids(engine, helpdesk, "threads") == [12, 13, 14, 16, 17]
    assert ids(engine, helpdesk, "entries") == [102, 103]
    forms = rows(engine, helpdesk, "form_entries")
    assert forms[201] == ROWS["form_entries"][1]  # task 1's: untouched
    assert forms[202] == ROWS["form_entries"][2]  # kept ticket 2's: untouched
    if form_action == "delete":
        assert sorted(forms) == [201, 202]
    elif form_action == "anonymise":
        assert [forms[i]["email"] for i in (200, 203)] == [None, None]
        assert [forms[i]["object_id"] for i in (200, 203)] == [1, 1]
    else:
        assert [forms[i]["object_id"] for i in (200, 203)] == [None, None]
        assert [forms[i]["email"] for i in (200, 203)] == ["a@example.org", "d@example.org"]

    with engine.connect() as conn:
        recorded = conn.execute(
            text("SELECT dependents FROM retention_audit WHERE event = 'batch'")
        ).scalar_one()
    assert json.loads(recorded) == expected
    assert api.run(settings, now=NOW).rules[0].rows == 0  # a second run changes nothing


def test_a_filtered_cascade_under_a_foreign_key_that_restricts_is_refused(
    settings: Settings, engine: Engine
) -> None:
    """The notes the where leaves out would block deleting their ticket."""
    helpdesk_schema(notes="").create_all(engine)
    rule = {
        "name": "closed-tickets",
        "table": "tickets",
        "clock": "closed_at",
        "after": "P90D",
        "action": "delete",
        "cascade": [{"table": "ticket_notes", "where": {"kind": "public"}}],
    }
    write(settings, rule)
    stderr = refused(settings)
    assert (
        f"{settings.policy_file}:18:6: rule 'closed-tickets': cascade[0].where: foreign key "
        "ticket_notes(ticket_id) -> tickets would block the delete: the ticket_notes rows "
        "this where leaves out still refer to theirs; with where, that foreign key must be "
        "ON DELETE CASCADE or SET NULL"
    ) in stderr


@pytest.mark.parametrize("ondelete", ["CASCADE", "SET NULL"])
def test_a_filtered_cascade_under_a_foreign_key_that_cascades_is_accepted(
    settings: Settings, engine: Engine, ondelete: str
) -> None:
    helpdesk_schema(notes=ondelete).create_all(engine)
    rule = {
        "name": "closed-tickets",
        "table": "tickets",
        "clock": "closed_at",
        "after": "P90D",
        "action": "delete",
        "cascade": [{"table": "ticket_notes", "where": {"kind": "public"}}],
    }
    write(settings, rule)
    result = invoke(["validate"], env(settings))
    assert result.exit_code == 0, result.output


# --- item 2: clock through a relation -------------------------------------------------


def ticket_threads(**extra: Any) -> dict[str, Any]:
    rule = {
        "name": "ticket-threads",
        "table": "threads",
        "where": {"object_type": "T"},
        "clock": {"related": TICKET, "column": "closed_at"},
        "after": "P90D",
        "action": "delete",
        "cascade": [{"table": "entries", "on": {"thread_id": "id"}}],
    }
    return rule | extra


def test_a_thread_is_as_old_as_its_ticket(
    settings: Settings, engine: Engine, helpdesk: MetaData
) -> None:
    """Thread 11 is new but its ticket closed long ago: due. Task 1's thread 12 shares the
    ticket's id and stays; an open ticket's (NULL clock) and a ticketless thread are
    never due."""
    write(settings, ticket_threads())
    assert api.plan(settings, now=NOW).rules[0].counts.due == 4
    assert api.run(settings, now=NOW).rules[0].rows == 4
    assert ids(engine, helpdesk, "threads") == [12, 13, 14, 16, 17]
    assert ids(engine, helpdesk, "entries") == [102, 103]
    assert api.run(settings, now=NOW).rules[0].rows == 0


def test_clock_unit_applies_to_the_related_column(
    settings: Settings, engine: Engine, helpdesk: MetaData
) -> None:
    clock = {"related": TICKET, "column": "closed_ms"}
    write(settings, ticket_threads(clock=clock))
    assert "clock 'tickets.closed_ms' is an integer: add clock_unit" in refused(settings)
    write(settings, ticket_threads(clock=clock, clock_unit="milliseconds"))
    assert api.run(settings, now=NOW).rules[0].rows == 4
    assert ids(engine, helpdesk, "threads") == [12, 13, 14, 16, 17]


def test_a_clock_reached_through_two_relations(
    settings: Settings, engine: Engine, helpdesk: MetaData
) -> None:
    """An entry is as old as its thread's ticket; the thread relation's where keeps task
    threads out."""
    clock = {
        "related": {"table": "threads", "on": {"id": "thread_id"}, "where": {"object_type": "T"}},
        "column": {"related": TICKET, "column": "closed_at"},
    }
    rule = {"name": "entries", "table": "entries", "clock": clock, "after": "P90D"}
    write(settings, rule | {"action": "delete"})
    assert api.run(settings, now=NOW).rules[0].rows == 3
    assert ids(engine, helpdesk, "entries") == [102, 103]


@pytest.mark.parametrize(
    ("clock", "message"),
    [
        (
            {"related": TICKET, "column": "status"},
            "clock.column: clock 'tickets.status' is VARCHAR(10): it must be a date/time column",
        ),
        (
            {"related": TICKET, "column": "closed_on"},
            "clock.column: no column 'closed_on' in tickets (did you mean 'closed_ms'?)",
        ),
        (
            {"related": {"table": "tikets", "on": {"id": "object_id"}}, "column": "closed_at"},
            "clock.related.table: no table 'tikets' in the database (did you mean 'tickets'?)",
        ),
        (
            {"related": {"table": "tickets", "on": {"object_id": "id"}}, "column": "closed_at"},
            "clock.related.on: on is written the wrong way round: it reads {their column: "
            "our column} (tickets's first, then threads's): write on: {id: object_id}",
        ),
    ],
)
def test_a_related_clock_is_checked_against_the_schema(
    settings: Settings, helpdesk: MetaData, clock: dict[str, Any], message: str
) -> None:
    write(settings, ticket_threads(clock=clock))
    assert f"rule 'ticket-threads': {message}" in refused(settings)


def test_a_related_clock_must_reach_one_row(settings: Settings, helpdesk: MetaData) -> None:
    """A ticket would have as many ages as it has threads."""
    clock = {
        "related": {"table": "threads", "on": {"object_id": "id"}},
        "column": "created_at",
    }
    rule = {"name": "tickets", "table": "tickets", "clock": clock, "after": "P90D"}
    write(settings, rule | {"action": "anonymise", "set": {"closed_ms": None}})
    assert (
        "rule 'tickets': clock.related.on: the clock is read in threads(object_id), which is "
        "not unique"
    ) in refused(settings)


def test_the_storage_class_check_applies_to_a_related_clock(
    tmp_path: Any, settings: Settings
) -> None:
    """On SQLite a Unix number in a DATETIME column would compare as text: refused."""
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'odd.db'}"
    odd = create_engine(url)
    meta = helpdesk_schema()
    meta.create_all(odd)
    with odd.begin() as conn:
        conn.execute(insert(meta.tables["tickets"]), ROWS["tickets"])
        conn.execute(text("UPDATE tickets SET closed_at = 1700000000 WHERE id = 1"))
    odd.dispose()
    write(settings, ticket_threads())
    result = invoke(["validate"], env(settings) | {"RETENTION_DATABASE_URL": url})
    assert result.exit_code == CONFIG_ERROR, result.output
    assert "clock 'tickets.closed_at' holds" in result.stderr
    assert "which would compare as text" in result.stderr


def test_only_clock_columns_are_scanned_for_odd_values(tmp_path: Any, settings: Settings) -> None:
    """The scan for values that compare as text reads a whole column (SQLite): validate
    and every run scanned every date/time column of the policy's tables, a cost that
    followed the tables' size (4.4 s of a 5 s run on a 3M-row table with 1% due). Only
    the columns rules read as clocks are scanned; an odd value elsewhere stops nothing."""
    from sqlalchemy import Engine, create_engine, event

    url = f"sqlite:///{tmp_path / 'odd.db'}"
    odd = create_engine(url)
    meta = helpdesk_schema()
    meta.create_all(odd)
    with odd.begin() as conn:
        conn.execute(insert(meta.tables["tickets"]), ROWS["tickets"])
        conn.execute(insert(meta.tables["threads"]), ROWS["threads"])
        conn.execute(text("UPDATE threads SET created_at = 1700000000 WHERE id = 1"))
    odd.dispose()
    scanned: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "typeof(v)" in statement:
            scanned.append(statement)

    write(settings, ticket_threads())
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        result = invoke(["validate"], env(settings) | {"RETENTION_DATABASE_URL": url})
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert result.exit_code == 0, result.output
    assert scanned and all("closed_at" in s for s in scanned), scanned
    assert not any("created_at" in s for s in scanned)


# --- item 3: hold_subject through a relation ------------------------------------------


def test_a_hold_on_the_tickets_user_keeps_the_thread(
    settings: Settings, engine: Engine, helpdesk: MetaData
) -> None:
    """User 10's active hold keeps ticket 4's thread; user 8's released hold keeps
    nothing."""
    subject = {"related": TICKET, "column": "user_id"}
    write(settings, ticket_threads(hold_subject=subject), holds=True)
    counts = api.plan(settings, now=NOW).rules[0].counts
    assert (counts.due, counts.kept_holds) == (3, 1)
    api.run(settings, now=NOW)
    assert ids(engine, helpdesk, "threads") == [12, 13, 14, 15, 16, 17]
    assert ids(engine, helpdesk, "entries") == [102, 103, 104]


def test_a_row_without_a_related_row_is_not_held_by_that_path(
    settings: Settings, engine: Engine, helpdesk: MetaData
) -> None:
    """By their own age, every ticket thread but 11 is due; the ticketless thread 16 has no
    subject to hold it."""
    subject = {"related": TICKET, "column": "user_id"}
    rule = ticket_threads(clock="created_at", hold_subject=subject)
    write(settings, rule, holds=True)
    api.run(settings, now=NOW)
    assert ids(engine, helpdesk, "threads") == [11, 12, 15, 17]


# --- rule order -----------------------------------------------------------------------


@pytest.mark.parametrize("through", ["clock", "hold_subject"])
def test_a_rule_reading_a_table_through_its_clock_or_subject_runs_after_its_deleter(
    settings: Settings, helpdesk: MetaData, through: str
) -> None:
    reader = ticket_threads(hold_subject={"related": TICKET, "column": "user_id"})
    if through == "hold_subject":
        reader["clock"] = "created_at"
    deleter = {
        "name": "open-tickets",
        "table": "tickets",
        "clock": "closed_at",
        "after": "P1Y",
        "action": "delete",
    }
    write(settings, reader, deleter, holds=True)
    planned = api.plan(settings, now=NOW).rules
    assert [p.plan.name for p in planned] == ["open-tickets", "ticket-threads"]
    assert planned[1].plan.moved_after == (("open-tickets", "tickets"),)


def test_the_certificate_ages_a_held_row_by_its_related_clock(
    settings: Settings, helpdesk: MetaData
) -> None:
    """Thread 15 was created 212 days ago, but is as old as ticket 4, closed 243 days
    ago."""
    subject = {"related": TICKET, "column": "user_id"}
    write(settings, ticket_threads(hold_subject=subject), holds=True)
    api.run(settings, now=NOW)
    data = api.certificate(settings, now=NOW).data
    oldest = next(r for r in data["rules"] if r["rule"] == "ticket-threads")["oldest_kept_days"]
    assert oldest["holds_days"] == (NOW.replace(tzinfo=None) - OLDER).days == 243


def test_a_cycle_through_a_related_clock_and_subject_is_refused_offline(tmp_path: Any) -> None:
    """Threads' age is their ticket's and tickets are kept while their threads' user is
    held: each rule reads what the other deletes, so no order satisfies both."""
    threads = ticket_threads(cascade=[])
    tickets = {
        "name": "tickets",
        "table": "tickets",
        "clock": "closed_at",
        "after": "P1Y",
        "hold_subject": {
            "related": {"table": "threads", "on": {"object_id": "id"}},
            "column": "object_id",
        },
        "action": "delete",
    }
    path = tmp_path / "policies.yaml"
    write_policy(path, {"version": 1, "holds": HOLDS, "rules": [threads, tickets]})
    result = invoke(["validate", "--offline", "--policy", str(path)])
    assert result.exit_code == CONFIG_ERROR, result.output
    assert "rules 'ticket-threads', 'tickets' cannot be ordered" in result.stderr
    assert "'ticket-threads' reads tickets, which 'tickets' deletes from" in result.stderr
    assert "'tickets' reads threads, which 'ticket-threads' deletes from" in result.stderr
