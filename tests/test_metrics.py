"""Metrics and the dead-man's-switch ping (``retention.metrics``).

``Metrics.observe`` folds a run's result into Prometheus series. A one-shot ``retention
run`` writes them to a node_exporter textfile or pushes them to a Pushgateway, and pings
``RETENTION_PING_URL`` at its start and with its exit code at its end; ``retention serve``
exposes ``/metrics``. The HTTP peers here are tiny servers on 127.0.0.1 started by the
tests. The export does not depend on the database, so the end-to-end tests run on SQLite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from builders import feedback_schema, write_policy
from conftest import HASH_KEY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    insert,
    select,
)

from retention.audit.records import audit_tables
from retention.executor import RuleResult
from retention.metrics import Metrics
from retention.runner import RunResult
from retention.settings import Settings

RETENTION = str(Path(sys.executable).with_name("retention"))

FEEDBACK_RULE = "feedback-after-3-months"
ACCESS_RULE = "access-log-ip-after-30-days"

META = feedback_schema()
FEEDBACK, CONTACTS = META.tables["feedback"], META.tables["feedback_contacts"]
ACCESS_LOG = Table(
    "access_log",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("logged_at", DateTime, nullable=False),
    Column("ip_address", String(45)),
    Column("anonymised_at", DateTime, nullable=True),
)
RECORDS = audit_tables("retention_audit")[1]

POLICY = """\
version: 1
defaults:
  guard: {{max_rows: {max_rows}, max_fraction: 1.0}}
rules:
  - name: feedback-after-3-months
    table: feedback
    clock: submitted_at
    after: P3M
    action: delete
    batch_size: 4
    cascade:
      - table: feedback_contacts
        on: {{feedback_id: id}}
  - name: access-log-ip-after-30-days
    table: access_log
    clock: logged_at
    after: 30 days
    action: anonymise
    mark: anonymised_at
    set: {{ip_address: truncate_ip}}
"""

# Of ten rows per table, seven are old enough; each feedback row has two contacts.
ROWS, DUE = 10, 7
CUTOFF = datetime(2026, 8, 1, tzinfo=UTC)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value: float | None = metrics.registry.get_sample_value(name, labels)
    return value


def rule_result(rule: str, status: str, *, rows: int = 0, **more: Any) -> RuleResult:
    table = "feedback" if rule == FEEDBACK_RULE else "access_log"
    action = "delete" if rule == FEEDBACK_RULE else "anonymise"
    return RuleResult(rule, table, action, CUTOFF, status, rows=rows, **more)


# --- Metrics.observe ------------------------------------------------------------------


def test_observe_counts_rows_per_rule_table_and_action() -> None:
    """Deleted and anonymised rows land in ``retention_rows_total`` under their labels."""
    metrics = Metrics()
    metrics.observe(
        RunResult(
            "run-1",
            [
                rule_result(FEEDBACK_RULE, "done", rows=7),
                rule_result(ACCESS_RULE, "partial", rows=3),
            ],
        ),
        1.5,
    )
    assert (
        sample(
            metrics, "retention_rows_total", rule=FEEDBACK_RULE, table="feedback", action="delete"
        )
        == 7
    )
    assert (
        sample(
            metrics,
            "retention_rows_total",
            rule=ACCESS_RULE,
            table="access_log",
            action="anonymise",
        )
        == 3
    )


def test_observe_counts_dependent_rows_per_rule_and_cascade_table() -> None:
    """Rows a cascade removed are counted under the dependent table's name."""
    metrics = Metrics()
    done = rule_result(FEEDBACK_RULE, "done", rows=7, dependents={"feedback_contacts": 14})
    metrics.observe(RunResult("run-1", [done]), 0.1)
    assert (
        sample(
            metrics, "retention_dependent_rows_total", rule=FEEDBACK_RULE, table="feedback_contacts"
        )
        == 14
    )


def test_a_done_or_partial_rule_sets_its_last_success_time_and_the_others_do_not() -> None:
    """``partial`` (stopped by --max-batches or --max-runtime) ran without error too."""
    metrics = Metrics()
    before = time.time()
    metrics.observe(
        RunResult(
            "run-1",
            [
                rule_result(FEEDBACK_RULE, "done"),
                rule_result(ACCESS_RULE, "partial"),
                rule_result("sessions", "guard_tripped"),
                rule_result("tokens", "failed"),
                rule_result("uploads", "skipped"),
            ],
        ),
        0.1,
    )
    after = time.time()
    name = "retention_last_success_timestamp_seconds"
    for rule in (FEEDBACK_RULE, ACCESS_RULE):
        value = sample(metrics, name, rule=rule)
        assert value is not None and before <= value <= after
    for rule in ("sessions", "tokens", "uploads"):
        assert sample(metrics, name, rule=rule) is None


def test_observe_counts_guard_trips_failures_and_skips_per_rule() -> None:
    """Each non-success outcome has its own counter, labelled with the rule alone."""
    metrics = Metrics()
    metrics.observe(
        RunResult(
            "run-1",
            [
                rule_result(FEEDBACK_RULE, "guard_tripped"),
                rule_result(ACCESS_RULE, "failed", rows=4),
            ],
        ),
        0.1,
    )
    metrics.observe(RunResult("run-2", [rule_result(ACCESS_RULE, "skipped")]), 0.1)
    assert sample(metrics, "retention_guard_trips_total", rule=FEEDBACK_RULE) == 1
    assert sample(metrics, "retention_guard_trips_total", rule=ACCESS_RULE) is None
    assert sample(metrics, "retention_rule_failures_total", rule=ACCESS_RULE) == 1
    assert sample(metrics, "retention_rule_skips_total", rule=ACCESS_RULE) == 1
    assert sample(metrics, "retention_rule_skips_total", rule=FEEDBACK_RULE) is None
    # The rows a failed rule committed before failing are still counted.
    assert (
        sample(
            metrics,
            "retention_rows_total",
            rule=ACCESS_RULE,
            table="access_log",
            action="anonymise",
        )
        == 4
    )


def test_counters_add_up_over_runs_and_the_duration_is_the_last_runs() -> None:
    """A worker observes many runs: counts accumulate, the duration gauge is replaced."""
    metrics = Metrics()
    metrics.observe(RunResult("run-1", [rule_result(FEEDBACK_RULE, "done", rows=5)]), 2.0)
    metrics.observe(RunResult("run-2", [rule_result(FEEDBACK_RULE, "done", rows=2)]), 0.5)
    assert (
        sample(
            metrics, "retention_rows_total", rule=FEEDBACK_RULE, table="feedback", action="delete"
        )
        == 7
    )
    assert sample(metrics, "retention_run_duration_seconds") == 0.5


# --- a one-shot run: textfile, Pushgateway, ping --------------------------------------


@dataclass
class Request:
    method: str
    path: str
    body: bytes
    at: datetime


@dataclass
class Sink:
    """A local HTTP server that answers 200 to everything and remembers what it got."""

    url: str
    requests: list[Request] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    found = Sink(f"http://127.0.0.1:{server.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        def record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            found.requests.append(Request(self.command, self.path, body, datetime.now(UTC)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_POST = do_PUT = record

        def log_message(self, *_args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()
    thread.join(5)


def refused_url() -> str:
    """A URL on a local port nothing listens on: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ping"


sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def database(settings: Settings, engine: Engine) -> Settings:
    """Feedback with contacts and an access log, seven rows in ten due; a valid policy."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    old, new = now - timedelta(days=400), now - timedelta(days=1)
    META.create_all(engine)
    with engine.begin() as conn:
        stamps = [old if i <= DUE else new for i in range(1, ROWS + 1)]
        conn.execute(
            insert(FEEDBACK), [{"id": i, "submitted_at": at} for i, at in enumerate(stamps, 1)]
        )
        conn.execute(
            insert(CONTACTS),
            [{"id": 2 * i + k, "feedback_id": i} for i in range(1, ROWS + 1) for k in (0, 1)],
        )
        conn.execute(
            insert(ACCESS_LOG),
            [
                {"id": i, "logged_at": at, "ip_address": f"203.0.113.{i}"}
                for i, at in enumerate(stamps, 1)
            ],
        )
    write_policy(settings.policy_file, metrics_policy(max_rows=1_000_000))
    return settings


def metrics_policy(*, max_rows: int) -> str:
    return POLICY.format(max_rows=max_rows)


@dataclass
class Outcome:
    code: int
    report: dict[str, Any]
    logs: list[dict[str, Any]]
    stderr: str


def retention_run(settings: Settings, **env: str) -> Outcome:
    """``retention run --output json`` in a child process, as cron starts it."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    child.update(RETENTION_HASH_KEY=HASH_KEY, RETENTION_LOG_FORMAT="json", **env)
    done = subprocess.run(
        [
            RETENTION,
            "run",
            "--database",
            settings.database_url.get_secret_value(),
            "--policy",
            str(settings.policy_file),
            "--output",
            "json",
        ],
        env=child,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    logs = []
    for line in done.stderr.splitlines():
        try:
            logs.append(json.loads(line))
        except ValueError:
            continue
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return Outcome(done.returncode, report, logs, done.stderr)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text format -> {(sample name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def rows_key(rule: str, table: str, action: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("retention_rows_total", (("action", action), ("rule", rule), ("table", table)))


@sqlite_only
def test_a_run_writes_its_rows_to_the_metrics_textfile(database: Settings, tmp_path: Path) -> None:
    """RETENTION_METRICS_FILE: node_exporter's textfile holds the rows of the run just made."""
    textfile = tmp_path / "retention.prom"
    outcome = retention_run(database, RETENTION_METRICS_FILE=str(textfile))
    assert outcome.code == 0, outcome.stderr
    done = {r["rule"]: r for r in outcome.report["rules"]}
    assert (done[FEEDBACK_RULE]["deleted"], done[ACCESS_RULE]["anonymised"]) == (DUE, DUE)

    text = textfile.read_text(encoding="utf-8")
    assert (
        f'retention_rows_total{{action="delete",rule="{FEEDBACK_RULE}",table="feedback"}} 7.0'
        in text.splitlines()
    )
    found = samples(text)
    assert found[rows_key(FEEDBACK_RULE, "feedback", "delete")] == DUE
    assert found[rows_key(ACCESS_RULE, "access_log", "anonymise")] == DUE
    dependents = (
        "retention_dependent_rows_total",
        (("rule", FEEDBACK_RULE), ("table", "feedback_contacts")),
    )
    assert found[dependents] == 2 * DUE
    assert not list(tmp_path.glob("retention.prom.*")), "a temporary file was left behind"


@sqlite_only
def test_a_run_pushes_its_metrics_to_the_pushgateway(database: Settings, sink: Sink) -> None:
    """RETENTION_PUSHGATEWAY_URL: one PUT to /metrics/job/retention with the run's rows."""
    outcome = retention_run(database, RETENTION_PUSHGATEWAY_URL=sink.url)
    assert outcome.code == 0, outcome.stderr
    [push] = sink.requests
    assert (push.method, push.path) in {
        ("PUT", "/metrics/job/retention"),
        ("POST", "/metrics/job/retention"),
    }
    found = samples(push.body.decode())
    assert found[rows_key(FEEDBACK_RULE, "feedback", "delete")] == DUE
    assert found[rows_key(ACCESS_RULE, "access_log", "anonymise")] == DUE


@sqlite_only
def test_a_run_pings_start_before_it_begins_and_its_exit_code_at_the_end(
    database: Settings, sink: Sink, engine: Engine
) -> None:
    """RETENTION_PING_URL: ``/start``, then ``/0``, each appended to the URL's own path."""
    outcome = retention_run(database, RETENTION_PING_URL=f"{sink.url}/ping/token-123")
    assert outcome.code == 0, outcome.stderr
    assert sink.paths() == ["/ping/token-123/start", "/ping/token-123/0"]
    with engine.connect() as conn:
        started = conn.scalar(select(RECORDS.c.at).where(RECORDS.c.event == "run_started"))
    assert started is not None
    assert sink.requests[0].at <= started.replace(tzinfo=UTC) <= sink.requests[1].at


@sqlite_only
def test_a_run_with_an_invalid_policy_pings_78(database: Settings, sink: Sink) -> None:
    """Nothing was done, and the ping says why: exit code 78."""
    write_policy(database.policy_file, "version: 1\nrules: []\n")
    outcome = retention_run(database, RETENTION_PING_URL=sink.url)
    assert outcome.code == 78, outcome.stderr
    assert sink.paths() == ["/start", "/78"]


@sqlite_only
def test_a_run_whose_guard_trips_pings_3(database: Settings, sink: Sink) -> None:
    """A guard that trips makes the run exit 3, and the end ping carries the 3."""
    write_policy(database.policy_file, metrics_policy(max_rows=2))
    outcome = retention_run(database, RETENTION_PING_URL=sink.url)
    assert outcome.code == 3, outcome.stderr
    assert sink.paths() == ["/start", "/3"]


@sqlite_only
def test_a_run_that_fails_unexpectedly_still_pings_its_exit_code(
    database: Settings, sink: Sink, tmp_path: Path
) -> None:
    """Whatever ends the run, the dead-man's switch hears how: ``/start``, then ``/<code>``."""
    (tmp_path / "test.db").write_bytes(b"this is not a SQLite database file" * 200)
    outcome = retention_run(database, RETENTION_PING_URL=sink.url)
    assert outcome.code not in (0, 78), outcome.stderr
    assert sink.paths() == ["/start", f"/{outcome.code}"]


@pytest.fixture
def garbler() -> Iterator[str]:
    """A local server that answers every connection with a line that is not HTTP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(b"NOT-HTTP at all\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/ping"
    stop.set()
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("failure", ["connection-refused", "non-numeric-port", "garbled-answer"])
@sqlite_only
def test_a_ping_that_fails_changes_neither_the_run_nor_its_exit_code(
    database: Settings, request: pytest.FixtureRequest, failure: str
) -> None:
    """The dead-man's switch is best effort: a warning each time, and the run as if unpinged."""
    ping_url = {
        "connection-refused": refused_url,
        "non-numeric-port": lambda: "http://127.0.0.1:port/ping",
        "garbled-answer": lambda: request.getfixturevalue("garbler"),
    }[failure]()
    outcome = retention_run(database, RETENTION_PING_URL=ping_url)
    assert outcome.code == 0, outcome.stderr
    assert [r["status"] for r in outcome.report["rules"]] == ["done", "done"]
    warnings = [line for line in outcome.logs if line.get("event") == "ping failed"]
    assert [w["level"] for w in warnings] == ["warning", "warning"]
    assert ping_url not in outcome.stderr  # the URL often carries a token: never logged


@sqlite_only
def test_a_metrics_textfile_that_cannot_be_written_changes_neither_exit_code_nor_ping(
    database: Settings, sink: Sink, tmp_path: Path
) -> None:
    """The run's work is done and recorded; a missing directory for the textfile is a warning."""
    outcome = retention_run(
        database,
        RETENTION_METRICS_FILE=str(tmp_path / "no-such-dir" / "retention.prom"),
        RETENTION_PING_URL=sink.url,
    )
    assert outcome.code == 0, outcome.stderr
    assert sink.paths() == ["/start", "/0"]
    assert [
        line["level"]
        for line in outcome.logs
        if line.get("event") == "metrics textfile not written"
    ] == ["warning"]


# --- the worker's /metrics endpoint ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@sqlite_only
def test_serve_exposes_metrics_over_http_on_the_metrics_port(
    database: Settings, tmp_path: Path
) -> None:
    """RETENTION_METRICS_PORT: ``GET /metrics`` answers while the worker runs."""
    port = free_port()
    child = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    child.update(
        RETENTION_HASH_KEY=HASH_KEY, RETENTION_LOG_FORMAT="json", RETENTION_METRICS_PORT=str(port)
    )
    err = tmp_path / "serve.log"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                RETENTION,
                "serve",
                "--database",
                database.database_url.get_secret_value(),
                "--policy",
                str(database.policy_file),
            ],
            env=child,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        text = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if '"worker started"' in err.read_text(encoding="utf-8"):
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.status == 200
                    text = response.read().decode()
                break
            time.sleep(0.05)
        assert text, err.read_text(encoding="utf-8")
        families = {family.name for family in text_string_to_metric_families(text)}
        assert {
            "retention_rows",
            "retention_dependent_rows",
            "retention_rule_failures",
            "retention_last_success_timestamp_seconds",
        } <= families
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, err.read_text(encoding="utf-8")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
