"""max_lag: batches wait while a replica lags, and the rule stops partial past the bound
(SPEC section 5; throttle.py), on every database.

The lag is scripted where the backend reads it (``replication_lag``), so the waits are
exact; the readings themselves are tested for real on each server (no replicas there),
and on the PostgreSQL standby rig in test_cluster_throttle.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from builders import feedback_schema, invoke, write_policy
from conftest import HASH_KEY
from sqlalchemy import Engine, create_engine, func, insert, select

from retention import api, throttle
from retention.backends import backend_for
from retention.backends.lag import Lag
from retention.metrics import Metrics
from retention.outcomes import Status
from retention.settings import Settings

ROWS, DUE = 60, 48


def policy(max_lag: float) -> str:
    return f"""\
version: 1
defaults:
  batch_size: 10
  max_lag: {max_lag}
  guard: {{max_rows: 1000000, max_fraction: 1.0}}
rules:
  - name: feedback-after-30-days
    table: feedback
    clock: submitted_at
    after: 30 days
    action: delete
"""


def build(engine: Engine, settings: Settings, max_lag: float) -> None:
    meta = feedback_schema(contacts=None)
    meta.create_all(engine)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    with engine.begin() as conn:
        conn.execute(
            insert(meta.tables["feedback"]),
            [
                {"id": i, "submitted_at": now - timedelta(days=90 if i % 5 else 1)}
                for i in range(1, ROWS + 1)
            ],
        )
    write_policy(settings.policy_file, policy(max_lag))


def rows_left(engine: Engine) -> int:
    with engine.connect() as conn:
        table = feedback_schema(contacts=None).tables["feedback"]
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture(autouse=True)
def _quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "LAG_POLL", 0.05)


@pytest.fixture
def scripted_lag(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The lag the primary reports, one entry per reading (the last one repeats);
    each reading appends how many rows were left then to ``readings``."""
    script: list[Any] = []
    readings: list[int] = []
    backend = type(backend_for(engine))

    def replication_lag(self: Any, conn: Any) -> list[Lag]:
        readings.append(rows_left(engine))
        seconds = script[min(len(readings), len(script)) - 1]
        return [Lag("standby test", seconds, 4096 if seconds else 0)]

    monkeypatch.setattr(backend, "replication_lag", replication_lag)
    yield [script, readings]


def test_batches_wait_while_a_replica_lags_and_go_on_when_it_caught_up(
    engine: Engine, settings: Settings, scripted_lag: list[Any]
) -> None:
    script, readings = scripted_lag
    script.extend([5.0, 5.0, 5.0, 0.0])
    build(engine, settings, max_lag=1)
    (rule,) = api.run(settings).rules
    assert rule.status == Status.DONE
    assert rule.rows == DUE and rows_left(engine) == ROWS - DUE
    # Nothing was deleted while the replica lagged: the first three readings saw every row.
    assert readings[:4] == [ROWS] * 4
    assert len(readings) == rule.batches + 3  # then one reading before each batch
    assert rule.replica_lag is not None
    assert rule.replica_lag["largest_seen"] == 5.0
    assert rule.replica_lag["waited_seconds"] > 0
    assert "stopped" not in rule.replica_lag


def test_a_replica_lagging_past_the_bound_stops_the_rule_partial_with_the_reason(
    engine: Engine, settings: Settings, scripted_lag: list[Any]
) -> None:
    script, _ = scripted_lag
    script.append(7.5)
    build(engine, settings, max_lag=0.1)  # waits at most 10 x 0.1 s
    result = api.run(settings)
    (rule,) = result.rules
    assert (rule.status, rule.stopped_by, rule.rows) == (Status.PARTIAL, "replica_lag", 0)
    assert int(result.exit_code) == 0
    assert rows_left(engine) == ROWS
    assert rule.replica_lag is not None
    reason = rule.replica_lag["stopped"]
    assert "above max_lag 0.1s" in reason and "standby test: 7.5s behind" in reason
    assert 1.0 <= rule.replica_lag["waited_seconds"] < 3.0


def test_the_audit_record_and_json_summary_carry_the_lag_and_the_reason(
    engine: Engine, settings: Settings, scripted_lag: list[Any]
) -> None:
    script, _ = scripted_lag
    script.append(7.5)
    build(engine, settings, max_lag=0.1)
    env = {
        "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
        "RETENTION_HASH_KEY": HASH_KEY,
        "RETENTION_LOG_FORMAT": "json",
    }
    done = invoke(["run", "--policy", str(settings.policy_file), "--output", "json"], env)
    assert done.exit_code == 0, done.output
    (rule,) = json.loads(done.stdout)["rules"]
    assert rule["status"] == "partial" and rule["stopped_by"] == "replica_lag"
    assert rule["replica_lag"]["largest_seen"] == 7.5
    assert "replicas lag: batches paused" in done.stderr
    exported = invoke(["audit", "export", "--format", "jsonl"], env).stdout.splitlines()
    (finished,) = [r for r in map(json.loads, exported) if r["event"] == "rule_finished"]
    details = finished["details"]
    details = json.loads(details) if isinstance(details, str) else details
    assert details["stopped_by"] == "replica_lag" and details["complete"] is False
    assert details["replica_lag"]["stopped"].startswith("replica lag above max_lag 0.1s")


def test_a_rule_without_max_lag_never_reads_the_lag(
    engine: Engine, settings: Settings, scripted_lag: list[Any]
) -> None:
    script, readings = scripted_lag
    script.append(99.0)
    build(engine, settings, max_lag=1)
    write_policy(
        settings.policy_file, settings.policy_file.read_text().replace("  max_lag: 1\n", "")
    )
    (rule,) = api.run(settings).rules
    assert rule.status == Status.DONE and readings == [] and rule.replica_lag is None


def test_an_unreachable_replica_pauses_then_stops_the_rule_without_showing_its_password(
    engine: Engine, settings: Settings
) -> None:
    build(engine, settings, max_lag=0.1)
    env = {
        "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
        "RETENTION_HASH_KEY": HASH_KEY,
        "RETENTION_LOG_FORMAT": "json",
        # port 1: nothing listens there, the connection is refused at once
        "RETENTION_REPLICA_URLS": "mysql+pymysql://watcher:s3cret-pw@127.0.0.1:1/app",
    }
    done = invoke(["run", "--policy", str(settings.policy_file), "--output", "json"], env)
    assert done.exit_code == 0, done.output
    (rule,) = json.loads(done.stdout)["rules"]
    assert (rule["status"], rule["stopped_by"], rule["deleted"]) == ("partial", "replica_lag", 0)
    assert (
        "mysql+pymysql://watcher:***@127.0.0.1:1/app: cannot be read"
        in (rule["replica_lag"]["stopped"])
    )
    assert "s3cret-pw" not in done.output
    assert "s3cret-pw" not in invoke(["audit", "export", "--format", "jsonl"], env).output


def test_a_replica_url_that_does_not_parse_is_a_configuration_error(
    settings: Settings, engine: Engine
) -> None:
    build(engine, settings, max_lag=1)
    env = {
        "RETENTION_DATABASE_URL": settings.database_url.get_secret_value(),
        "RETENTION_HASH_KEY": HASH_KEY,
        "RETENTION_REPLICA_URLS": "mysql+pymysql://r1/app, not a url",
    }
    done = invoke(["run", "--policy", str(settings.policy_file)], env)
    assert done.exit_code == 78
    assert "RETENTION_REPLICA_URLS: URL 2 is not a database URL" in done.output
    assert rows_left(engine) == ROWS


def test_the_primary_reads_no_lag_where_it_feeds_no_replica(engine: Engine) -> None:
    """The real reading on each test server (PostgreSQL's pg_stat_replication, MariaDB's
    Galera status): no replicas there, so nothing holds a batch back."""
    with engine.connect() as conn:
        assert backend_for(engine).replication_lag(conn) == []


def test_a_mariadb_server_that_is_no_replica_is_named_as_such() -> None:
    url = os.environ.get("RETENTION_TEST_MYSQL_URL")
    if not url:
        pytest.skip("RETENTION_TEST_MYSQL_URL is not set")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            lag = backend_for(engine).replica_lag(conn)
    finally:
        engine.dispose()
    assert lag.seconds is None and lag.over(10)
    assert lag.reason == "not a replica (SHOW REPLICA STATUS is empty)"


def test_the_gauge_holds_the_largest_lag_a_run_saw() -> None:
    from retention.executor import RuleResult
    from retention.runner import RunResult

    rule = RuleResult("r", "t", "delete", datetime.now(UTC), Status.DONE)
    rule.replica_lag = {"max_lag": 1, "largest_seen": 2.5, "waited_seconds": 3.0}
    metrics = Metrics()
    metrics.observe(RunResult("run", [rule]), 1.0)
    assert metrics.registry.get_sample_value("retention_replica_lag_seconds") == 2.5


def test_a_signal_ends_the_wait_for_replicas_within_a_tick(
    engine: Engine, settings: Settings, scripted_lag: list[Any]
) -> None:
    """The wait is a pause like ``sleep``: SIGTERM (here, its flag) ends it at once, long
    before the bound (10 x 30 s), and the rule is recorded as interrupted."""
    script, readings = scripted_lag
    script.append(99.0)
    build(engine, settings, max_lag=30)
    waits_began: list[float] = []

    def stop_requested() -> bool:
        # The flag goes up 0.2 s into the wait, whatever the run took to get there:
        # a wall clock from before the run raced the set-up on a loaded machine.
        if readings and not waits_began:
            waits_began.append(time.monotonic())
        return bool(waits_began) and time.monotonic() - waits_began[0] >= 0.2

    result = api.run(settings, stop_requested=stop_requested)
    (rule,) = result.rules
    assert waits_began and time.monotonic() - waits_began[0] < 5
    assert (rule.status, rule.stopped_by, rule.rows) == (Status.INTERRUPTED, "signal", 0)
    assert result.interrupted and int(result.exit_code) == 75
    assert rows_left(engine) == ROWS
