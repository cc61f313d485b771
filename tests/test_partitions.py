"""A RANGE partition wholly before the cutoff, every row of it due, goes whole (detached
and dropped on PostgreSQL, exchanged out on MariaDB) with the evidence its rows' batches
would have recorded; anything in it that must stay sends it to the row batches.

The table: events partitioned by month on its clock. At NOW (2025-03-15) with ``after:
P30D`` the cutoff is 2025-02-13: events_2024 and events_2025_01 lie wholly before it,
events_2025_02 straddles it, events_rest is the DEFAULT (MAXVALUE) partition.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import write_policy
from conftest import HASH_KEY
from sqlalchemy import Engine, inspect, text

from retention import api, partitions
from retention.audit.query import removed_key_digest
from retention.settings import Settings

NOW = datetime(2025, 3, 15, tzinfo=UTC)
BOUNDS = {
    "events_2024": "2025-01-01",
    "events_2025_01": "2025-02-01",
    "events_2025_02": "2025-03-01",
}
#: id -> (clock, user); 1-3 in events_2024, 4-6 in 2025_01, 7-9 in 2025_02, 10 after
ROWS = {
    1: ("2024-11-03", 1),
    2: ("2024-12-01", 2),
    3: ("2024-12-31 23:59:59", 3),
    4: ("2025-01-01", 4),
    5: ("2025-01-10", 5),
    6: ("2025-01-31 12:00:00", 6),
    7: ("2025-02-02", 7),
    8: ("2025-02-12", 8),
    9: ("2025-02-20", 9),
    10: ("2025-04-01", 10),
}


def _dialect(engine: Engine) -> str:
    return engine.dialect.name


def _servers_only(engine: Engine) -> None:
    if _dialect(engine) == "sqlite":
        pytest.skip("SQLite has no partitions")


def create_events(engine: Engine, *, nullable_clock: bool = False) -> None:
    """events(id, created_at, user_id, kind) partitioned by RANGE on created_at, with
    the ROWS; a nullable clock (MariaDB) drops the primary key, which must hold it."""
    clock = "created_at datetime NULL" if nullable_clock else "created_at {ts} NOT NULL"
    key = "KEY (id)" if nullable_clock else "PRIMARY KEY (id, created_at)"
    columns = f"id integer NOT NULL, {clock}, user_id integer, kind varchar(20), {key}"
    with engine.begin() as conn:
        if _dialect(engine) == "postgresql":
            conn.execute(
                text(
                    f"CREATE TABLE events ({columns.format(ts='timestamp')}) "
                    "PARTITION BY RANGE (created_at)"
                )
            )
            low = "MINVALUE"
            for name, upper in BOUNDS.items():
                conn.execute(
                    text(
                        f"CREATE TABLE {name} PARTITION OF events "
                        f"FOR VALUES FROM ({low}) TO ('{upper}')"
                    )
                )
                low = f"'{upper}'"
            conn.execute(text("CREATE TABLE events_rest PARTITION OF events DEFAULT"))
        elif _dialect(engine) == "mysql":
            parts = [f"PARTITION {n} VALUES LESS THAN ('{u}')" for n, u in BOUNDS.items()]
            parts.append("PARTITION events_rest VALUES LESS THAN (MAXVALUE)")
            conn.execute(
                text(
                    f"CREATE TABLE events ({columns.format(ts='datetime')}) "
                    f"PARTITION BY RANGE COLUMNS (created_at) ({', '.join(parts)})"
                )
            )
        else:
            conn.execute(text(f"CREATE TABLE events ({columns.format(ts='timestamp')})"))
        for id_, (at, user) in ROWS.items():
            conn.execute(
                text("INSERT INTO events VALUES (:id, :at, :user, 'click')"),
                {"id": id_, "at": datetime.fromisoformat(at), "user": user},
            )
        conn.execute(
            text(
                "CREATE TABLE legal_holds (id integer PRIMARY KEY, user_id integer, "
                "released_at timestamp NULL)"
            )
        )
        conn.execute(
            text(
                "CREATE TABLE event_notes (id integer PRIMARY KEY, event_id integer, "
                "event_at timestamp NULL)"
            )
        )


def policy(settings: Settings, **rule: Any) -> None:
    write_policy(
        settings.policy_file,
        {
            "version": 1,
            "defaults": {"guard": {"max_fraction": 1}},
            "audit": {"record_keys": True},
            "holds": {
                "table": "legal_holds",
                "subject_column": "user_id",
                "active": {"released_at": {"is_null": True}},
            },
            "rules": [
                {
                    "name": "old-events",
                    "table": "events",
                    "clock": "created_at",
                    "after": "P30D",
                    "action": "delete",
                }
                | rule
            ],
        },
    )


def left(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT id FROM events")).scalars())


def batches(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT seq, row_count, key_digest, details FROM retention_audit "
                "WHERE event = 'batch' ORDER BY seq"
            )
        )
        return [
            {**r._mapping, "details": json.loads(r.details) if r.details else {}} for r in found
        ]


def whole(engine: Engine) -> dict[str, dict[str, Any]]:
    """The batch records of partitions that went whole, by partition."""
    return {b["details"]["partition"]: b for b in batches(engine) if "partition" in b["details"]}


def digest_of(ids: list[int], *, by_id: bool = False) -> str:
    """The key digest over (id, created_at) keys (or id alone), computed here from its
    definition: HMAC-SHA-256 over the sorted keys as compact JSON, timestamps in ISO form."""
    keys: list[list[Any]] = sorted(
        [i] if by_id else [i, datetime.fromisoformat(ROWS[i][0]).isoformat()] for i in ids
    )
    message = json.dumps(keys, separators=(",", ":")).encode()
    return hmac.new(HASH_KEY.encode(), message, hashlib.sha256).hexdigest()


def proofs(engine: Engine, seq: int) -> set[str]:
    with engine.connect() as conn:
        query = text("SELECT key_digest FROM retention_audit_keys WHERE seq = :s")
        return set(conn.execute(query, {"s": seq}).scalars())


def partition_rows(engine: Engine, name: str) -> int | None:
    """Rows in a partition, None when it is gone (PostgreSQL drops it)."""
    with engine.connect() as conn:
        if _dialect(engine) == "postgresql":
            if not inspect(conn).has_table(name):
                return None
            return int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
        return int(
            conn.execute(text(f"SELECT count(*) FROM events PARTITION ({name})")).scalar_one()
        )


@pytest.mark.parametrize("by_id", [False, True], ids=["primary-key", "integer-key"])
def test_partitions_wholly_due_go_whole_with_the_evidence_of_their_rows(
    settings: Settings, engine: Engine, by_id: bool
) -> None:
    _servers_only(engine)
    create_events(engine)
    policy(settings, **({"key": ["id"]} if by_id else {}))
    result = api.run(settings, now=NOW)
    assert result.rules[0].rows == 8
    assert left(engine) == [9, 10]
    went = whole(engine)
    assert sorted(went) == ["events_2024", "events_2025_01"]
    for name, ids in (("events_2024", [1, 2, 3]), ("events_2025_01", [4, 5, 6])):
        assert went[name]["row_count"] == 3
        assert went[name]["key_digest"] == digest_of(ids, by_id=by_id)
        keys = {i: [i] if by_id else [i, datetime.fromisoformat(ROWS[i][0])] for i in ids}
        expected = {removed_key_digest(HASH_KEY.encode(), "events", keys[i]) for i in ids}
        assert proofs(engine, went[name]["seq"]) == expected
        assert not partition_rows(engine, name)  # dropped, or left empty
    # The straddling partition's due rows went by a batch of rows.
    by_rows = [b for b in batches(engine) if "partition" not in b["details"]]
    assert [b["row_count"] for b in by_rows] == [2]
    assert by_rows[0]["key_digest"] == digest_of([7, 8], by_id=by_id)
    assert partition_rows(engine, "events_2025_02") == 1
    api.verify(settings)
    again = api.run(settings, now=NOW)
    assert again.rules[0].rows == 0
    api.verify(settings)


def test_the_plan_says_which_partitions_go_whole_and_why_the_others_do_not(
    settings: Settings, engine: Engine
) -> None:
    create_events(engine)
    policy(settings)
    report = api.plan(settings, now=NOW)
    verdicts = {v.partition: v for v in report.rules[0].partitions}
    if _dialect(engine) == "sqlite":
        assert verdicts == {}
        return
    assert {n: (v.whole, v.rows) for n, v in verdicts.items() if v.whole} == {
        "events_2024": (True, 3),
        "events_2025_01": (True, 3),
    }
    assert verdicts["events_2025_02"].reason == "it reaches past the cutoff"
    rest = verdicts["events_rest"].reason
    assert rest in {"it is the DEFAULT partition", "its upper bound is MAXVALUE"}
    from retention.render import plan_data, plan_text

    shown = plan_text(report, show_sql=True)
    assert "partition      events_2024 goes whole: 3 rows" in shown
    assert "partition      events_2025_02 by rows: it reaches past the cutoff" in shown
    ddl = "DETACH PARTITION" if _dialect(engine) == "postgresql" else "EXCHANGE PARTITION"
    assert ddl in shown
    data = plan_data(report, show_sql=False)["rules"][0]["partitions"]
    assert {"partition": "events_2024", "rows": 3, "whole": True} in data
    assert left(engine) == list(range(1, 11))  # plan writes nothing


KEEPERS = {
    "unless": ({"unless": {"kind": "keep"}}, "1 rows kept by unless"),
    "where": ({"where": {"kind": "click"}}, "1 rows not matched by where, or with a NULL clock"),
    "hold": ({"hold_subject": "user_id"}, "1 rows kept by holds"),
    "dependent": (
        {"cascade": [{"table": "event_notes", "on": {"event_id": "id", "event_at": "created_at"}}]},
        "1 rows in event_notes depend on its rows",
    ),
}


@pytest.mark.parametrize("keeper", list(KEEPERS))
def test_one_row_that_must_stay_sends_its_partition_to_the_row_batches(
    settings: Settings, engine: Engine, keeper: str
) -> None:
    """Row 5 (in events_2025_01) is kept by unless / not matched by where / held, or has a
    dependent: its partition is refused and its other rows go by batches."""
    _servers_only(engine)
    create_events(engine)
    rule, reason = KEEPERS[keeper]
    with engine.begin() as conn:
        if keeper in {"unless", "where"}:
            conn.execute(text("UPDATE events SET kind = 'keep' WHERE id = 5"))
        elif keeper == "hold":
            conn.execute(text("INSERT INTO legal_holds VALUES (1, 5, NULL)"))
        else:
            conn.execute(text("INSERT INTO event_notes VALUES (1, 5, '2025-01-10')"))
    policy(settings, **rule)
    verdicts = {v.partition: v for v in api.plan(settings, now=NOW).rules[0].partitions}
    assert verdicts["events_2025_01"].reason == reason
    assert verdicts["events_2024"].whole
    api.run(settings, now=NOW)
    assert sorted(whole(engine)) == ["events_2024"]
    expected = [9, 10] if keeper == "dependent" else [5, 9, 10]
    assert left(engine) == expected
    assert partition_rows(engine, "events_2025_01") == (0 if keeper == "dependent" else 1)
    api.verify(settings)


def test_an_anonymise_rule_or_max_batches_never_drops_more_than_it_may(
    settings: Settings, engine: Engine
) -> None:
    """Anonymising keeps the rows: no partition goes; ``--max-batches 1`` takes one."""
    _servers_only(engine)
    create_events(engine)
    policy(settings, action="anonymise", set={"kind": None})
    assert api.plan(settings, now=NOW).rules[0].partitions == ()
    policy(settings)
    result = api.run(settings, now=NOW, max_batches=1)
    assert result.rules[0].status == "partial"
    assert sorted(whole(engine)) == ["events_2024"]
    assert left(engine) == [4, 5, 6, 7, 8, 9, 10]


def test_a_null_clock_in_the_first_partition_keeps_it_from_going_whole(
    settings: Settings, engine: Engine
) -> None:
    """MariaDB puts a NULL clock in the first partition: never due, so it stays."""
    if _dialect(engine) != "mysql":
        pytest.skip("only MariaDB keeps NULL in a RANGE partition")
    create_events(engine, nullable_clock=True)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO events VALUES (11, NULL, 11, 'click')"))
    policy(settings, key=["id"])
    verdicts = {v.partition: v for v in api.plan(settings, now=NOW).rules[0].partitions}
    assert not verdicts["events_2024"].whole
    assert verdicts["events_2025_01"].whole
    api.run(settings, now=NOW)
    assert left(engine) == [9, 10, 11]
    assert sorted(whole(engine)) == ["events_2025_01"]


def test_sqlite_has_no_partitions_and_deletes_by_rows(settings: Settings, engine: Engine) -> None:
    if _dialect(engine) != "sqlite":
        pytest.skip("the rows path on a table without partitions")
    create_events(engine)
    policy(settings, key=["id"])  # the timestamps were written as SQLite's driver writes them
    assert api.run(settings, now=NOW).rules[0].rows == 8
    assert left(engine) == [9, 10]
    assert whole(engine) == {}


class Crash(Exception):
    pass


def _staging(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [n for n in inspect(conn).get_table_names() if "__staged_" in n]


def test_a_crash_after_the_exchange_is_recorded_by_the_next_run(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows exchanged out but not yet recorded are checked and recorded at the next
    rule's start: recorded once, never lost."""
    if _dialect(engine) != "mysql":
        pytest.skip("staging tables are MariaDB's")
    create_events(engine)
    policy(settings)

    def crash(*_: Any, **__: Any) -> None:
        raise Crash

    with monkeypatch.context() as patched:
        patched.setattr(partitions, "_settle", crash)
        assert api.run(settings, now=NOW).rules[0].error is not None
    assert len(_staging(engine)) == 1
    assert left(engine) == [4, 5, 6, 7, 8, 9, 10]  # events_2024's rows are staged
    assert whole(engine) == {}
    (rule,) = api.run(settings, now=NOW).rules
    assert rule.counts is not None and rule.counts.due == rule.rows == 8  # staged rows too
    assert _staging(engine) == []
    assert left(engine) == [9, 10]
    went = whole(engine)
    assert sorted(went) == ["events_2024", "events_2025_01"]
    assert went["events_2024"]["key_digest"] == digest_of([1, 2, 3])
    api.verify(settings)


def test_a_crash_after_the_record_only_drops_the_staging_table_next_time(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if _dialect(engine) != "mysql":
        pytest.skip("staging tables are MariaDB's")
    create_events(engine)
    policy(settings)
    with monkeypatch.context() as patched:
        patched.setattr(partitions, "_finish", lambda *_: (_ for _ in ()).throw(Crash()))
        api.run(settings, now=NOW)
    assert len(_staging(engine)) == 1
    assert sorted(whole(engine)) == ["events_2024"]
    api.run(settings, now=NOW)
    assert _staging(engine) == []
    assert sorted(whole(engine)) == ["events_2024", "events_2025_01"]  # recorded once each
    assert left(engine) == [9, 10]
    api.verify(settings)


def test_staged_rows_that_must_stay_go_back_into_the_table(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row held after the partition was staged: the check in the record's transaction
    finds it, and the rows go back where they were."""
    if _dialect(engine) != "mysql":
        pytest.skip("staging tables are MariaDB's")
    create_events(engine)
    policy(settings, hold_subject="user_id")
    stage = partitions._autocommitted

    def held_meanwhile(conn: Any, statements: Any) -> None:
        stage(conn, statements)
        with engine.begin() as other:
            other.execute(text("INSERT IGNORE INTO legal_holds VALUES (1, 2, NULL)"))

    monkeypatch.setattr(partitions, "_autocommitted", held_meanwhile)
    api.run(settings, now=NOW)
    assert _staging(engine) == []
    assert sorted(whole(engine)) == ["events_2025_01"]
    assert left(engine) == [2, 9, 10]
    assert partition_rows(engine, "events_2024") == 1
    api.verify(settings)


def test_a_foreign_key_still_referencing_a_row_sends_the_partition_to_the_row_batches(
    settings: Settings, engine: Engine
) -> None:
    """PostgreSQL refuses to detach a partition whose rows another table references (no
    cascade of the rule names it): rolled back, and the rows go by batches, the foreign
    key's ON DELETE CASCADE taking the reference with its row."""
    if _dialect(engine) != "postgresql":
        pytest.skip("MariaDB's partitioned tables have no foreign keys")
    create_events(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE event_refs (id integer PRIMARY KEY, event_id integer, "
                "event_at timestamp, FOREIGN KEY (event_id, event_at) "
                "REFERENCES events (id, created_at) ON DELETE CASCADE)"
            )
        )
        conn.execute(text("INSERT INTO event_refs VALUES (1, 5, '2025-01-10')"))
    policy(settings)
    api.run(settings, now=NOW)
    assert sorted(whole(engine)) == ["events_2024"]
    assert left(engine) == [9, 10]
    assert partition_rows(engine, "events_2025_01") == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM event_refs")).scalar_one() == 0
    api.verify(settings)


def test_a_partition_read_in_place_of_its_table_leaves_a_relation_to_the_table_whole() -> None:
    """Conditions are read on the partition as on the table; a related row of the same
    table (an alias of it) is still looked for in the whole table."""
    from sqlalchemy import Column, Integer, MetaData, Table, exists, select
    from sqlalchemy.dialects import postgresql

    from retention.backends.partitioning import like, retarget

    events = Table("events", MetaData(), Column("id", Integer), Column("user_id", Integer))
    other = events.alias("rel0")
    newer = exists(select(1).select_from(other).where(other.c.user_id == events.c.user_id))
    statement = select(events.c.id).where(newer)
    sql = str(
        retarget(statement, events, like(events, "events_p1")).compile(dialect=postgresql.dialect())
    )
    assert "FROM events_p1 AS events" in sql
    assert "FROM events AS rel0" in sql
    assert "rel0.user_id = events.user_id" in sql
