"""The worker mode, ``retention serve`` (SPEC sections 1, 4 and 5).

Unit tests hold ``scheduler.py`` to its promises: which rules get a job, how the jobs
behave, crontab's weekday meaning, reloads that replace jobs, and the log context a job
binds. Integration tests start ``retention serve`` as a real process: it runs the rules
when their schedule fires, beside a cron ``run`` of the same rule without the two ever
working on it at once; it reloads on SIGHUP and stops cleanly on SIGTERM.

Waiting for a cron schedule to fire costs up to a minute, so every process that needs a
fire is started by one module fixture (``one_minute``) and they all share one minute.
"""

from __future__ import annotations

import json
import os
import re
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
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import structlog
from apscheduler.triggers.cron import CronTrigger
from builders import write_policy
from conftest import BACKENDS, HASH_KEY, wipe
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    insert,
    select,
)

from retention import api
from retention.audit.records import audit_tables
from retention.policy.loader import load_policy
from retention.policy.model import Policy
from retention.scheduler import install_jobs, make_scheduler, next_runs, scheduled_rules
from retention.settings import Settings

RETENTION = str(Path(sys.executable).with_name("retention"))

META = MetaData()
EVENTS = Table(
    "events",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime, nullable=False),
)
SESSIONS = Table(
    "sessions",
    META,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("created_at", DateTime, nullable=False),
)
RECORDS = audit_tables("retention_audit")[1]

EVENTS_RULE = "events-after-30-days"
SESSIONS_RULE = "sessions-after-7-days"

POLICY = """\
version: 1
defaults:
  timezone: {timezone}
  guard: {{max_rows: 1000000, max_fraction: 1.0}}
rules:
  - name: events-after-30-days
    table: events
    clock: created_at
    after: 30 days
    action: delete
    batch_size: {batch_size}
    sleep: {sleep}
    schedule: "{schedule}"
  - name: sessions-after-7-days
    table: sessions
    clock: created_at
    after: P7D
    action: delete
    batch_size: 10
    schedule: "{schedule}"
"""


def serve_policy(
    *,
    schedule: str = "* * * * *",
    batch_size: int = 5,
    sleep: float = 0,
    timezone: str = "UTC",
) -> str:
    return POLICY.format(schedule=schedule, batch_size=batch_size, sleep=sleep, timezone=timezone)


def is_due(row_id: int) -> bool:
    """Three rows in four are due; the others are interleaved, so batches walk past them."""
    return row_id % 4 != 0


def build(engine: Engine, events: int, sessions: int = 40) -> None:
    """``events`` and ``sessions`` rows, three in four of them old enough to be due."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    old, new = now - timedelta(days=400), now - timedelta(hours=1)
    META.create_all(engine)
    with engine.begin() as conn:
        for table, rows in ((EVENTS, events), (SESSIONS, sessions)):
            if not rows:
                continue
            conn.execute(
                insert(table),
                [{"id": i, "created_at": old if is_due(i) else new} for i in range(1, rows + 1)],
            )


def due_count(rows: int) -> int:
    return sum(1 for i in range(1, rows + 1) if is_due(i))


def audit_log(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        if not engine.dialect.has_table(conn, RECORDS.name):
            return []
        return [dict(r._mapping) for r in conn.execute(select(RECORDS).order_by(RECORDS.c.seq))]


def runs_of_batches(log: list[dict[str, Any]], rule: str) -> list[str]:
    """The run ids of ``rule``'s batch records in seq order, consecutive repeats merged."""
    merged: list[str] = []
    for record in log:
        is_batch = record["event"] == "batch" and record["rule"] == rule
        if is_batch and (not merged or merged[-1] != record["run_id"]):
            merged.append(record["run_id"])
    return merged


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: none of the developer's RETENTION_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")}
    env.update(RETENTION_HASH_KEY=HASH_KEY, RETENTION_LOG_FORMAT="json", **extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Logs:
    """The JSON log lines a child process wrote to its stderr file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8") if self.path.exists() else ""

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def named(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]

    def wait_for(
        self, event: str, *, count: int = 1, timeout: float = 20, proc: Any = None
    ) -> dict[str, Any]:
        """The ``count``-th line whose event is ``event``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.named(event)
            if len(found) >= count:
                return found[count - 1]
            if proc is not None and proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no {count}x {event!r} in the log within {timeout}s:\n{self.text()}")


@dataclass
class Serve:
    """A ``retention serve`` process with its stderr in a file."""

    proc: subprocess.Popen[bytes]
    logs: Logs
    database: str
    policy: Path
    env: dict[str, str]

    @classmethod
    def start(cls, database: str, policy: Path, workdir: Path, **env: str) -> Serve:
        err = workdir / f"serve-{time.monotonic_ns()}.log"
        with err.open("wb") as stderr:
            proc = subprocess.Popen(
                [RETENTION, "serve", "--database", database, "--policy", str(policy)],
                cwd=workdir,
                env=child_env(**env),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        return cls(proc, Logs(err), database, policy, env)

    def scrape(self) -> str:
        """The text of the worker's /metrics endpoint."""
        url = f"http://127.0.0.1:{self.env['RETENTION_METRICS_PORT']}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text: str = response.read().decode()
            return text

    def stop(self, timeout: float = 10) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    """Serve processes a test starts; any still running at its end are killed."""
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.kill()


# --- scheduler.py: which rules get a job, and how the jobs behave ---------------------

UNIT_POLICY = """\
version: 1
defaults:
  timezone: Asia/Shanghai
  {default_schedule}
rules:
  - name: own-schedule
    table: events
    clock: created_at
    after: 30 days
    action: delete
    schedule: "30 2 * * 1"
  - name: default-schedule
    table: events
    clock: created_at
    after: 30 days
    action: delete
  - name: disabled
    table: sessions
    clock: created_at
    after: 7 days
    action: delete
    schedule: "0 * * * *"
    enabled: false
"""

A_WEDNESDAY_NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def unit_policy(tmp_path: Path, *, default_schedule: str | None = "15 4 * * *") -> Policy:
    line = f'schedule: "{default_schedule}"' if default_schedule else ""
    path = write_policy(tmp_path / "unit.yaml", UNIT_POLICY.format(default_schedule=line))
    return load_policy(path).policy


def never(_rule: str, _run_id: str) -> None:
    raise AssertionError("the job should not have run")


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[Any]:
    """The worker's scheduler, started paused in a thread as ``serve`` starts it."""
    sched = make_scheduler(unit_policy(tmp_path))
    thread = threading.Thread(target=sched.start, kwargs={"paused": True}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not sched.running and time.monotonic() < deadline:
        time.sleep(0.01)
    yield sched
    if sched.running:
        sched.shutdown(wait=True)
    thread.join(5)


def test_a_rule_runs_on_its_own_schedule_or_else_on_the_default_one(tmp_path: Path) -> None:
    """A rule's own ``schedule`` wins; a rule without one takes ``defaults.schedule``."""
    policy = unit_policy(tmp_path)
    assert ("own-schedule", "30 2 * * 1") in scheduled_rules(policy)
    assert ("default-schedule", "15 4 * * *") in scheduled_rules(policy)


def test_disabled_rules_and_rules_without_any_schedule_get_no_job(tmp_path: Path) -> None:
    """``enabled: false`` and no schedule anywhere both mean: not scheduled."""
    assert [name for name, _ in scheduled_rules(unit_policy(tmp_path))] == [
        "own-schedule",
        "default-schedule",
    ]
    assert scheduled_rules(unit_policy(tmp_path, default_schedule=None)) == [
        ("own-schedule", "30 2 * * 1")
    ]


def test_each_scheduled_rule_gets_one_coalescing_job_that_never_overlaps_itself(
    scheduler: Any, tmp_path: Path
) -> None:
    """coalesce, max_instances=1 and no misfire limit: a late run is still owed, once."""
    install_jobs(scheduler, unit_policy(tmp_path), never)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"own-schedule", "default-schedule"}
    for job in jobs.values():
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
        assert isinstance(job.trigger, CronTrigger)


def test_jobs_fire_on_the_wall_clock_of_the_policy_timezone(scheduler: Any, tmp_path: Path) -> None:
    """``15 4 * * *`` in Asia/Shanghai fires at 04:15 Beijing time, 20:15 UTC."""
    install_jobs(scheduler, unit_policy(tmp_path), never)
    job = scheduler.get_job("default-schedule")
    assert job.trigger.timezone == ZoneInfo("Asia/Shanghai")
    fire = next_runs(scheduler, A_WEDNESDAY_NOON)["default-schedule"]
    assert fire == datetime(2026, 11, 26, 4, 15, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert fire.astimezone(UTC) == datetime(2026, 11, 25, 20, 15, tzinfo=UTC)


def test_weekday_1_means_monday_as_in_crontab(scheduler: Any, tmp_path: Path) -> None:
    """``30 2 * * 1`` next fires on a Monday (APScheduler alone would read 1 as Tuesday)."""
    install_jobs(scheduler, unit_policy(tmp_path), never)
    fire = next_runs(scheduler, A_WEDNESDAY_NOON)["own-schedule"]
    assert fire is not None
    assert fire.weekday() == 0
    assert fire == datetime(2026, 11, 30, 2, 30, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_installing_the_jobs_again_replaces_them_rather_than_adding_more(
    scheduler: Any, tmp_path: Path
) -> None:
    """A reload leaves exactly the new policy's jobs, on the new schedules."""
    install_jobs(scheduler, unit_policy(tmp_path), never)
    install_jobs(scheduler, unit_policy(tmp_path), never)
    assert sorted(job.id for job in scheduler.get_jobs()) == ["default-schedule", "own-schedule"]

    install_jobs(scheduler, unit_policy(tmp_path, default_schedule=None), never)
    [job] = scheduler.get_jobs()
    assert job.id == "own-schedule"
    assert next_runs(scheduler, A_WEDNESDAY_NOON) == {
        "own-schedule": datetime(2026, 11, 30, 2, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    }


def test_a_job_binds_its_rule_and_run_id_in_the_log_context_while_it_runs(
    scheduler: Any, tmp_path: Path
) -> None:
    """Log lines written during a scheduled run name the rule, from the executor's thread;
    the job names its slot, the minute it fired for (replicas run each slot once)."""
    seen: list[tuple[str, str, dict[str, Any]]] = []
    slots: list[str] = []
    ran = threading.Event()

    def run_rule(rule: str, run_id: str, slot: str) -> None:
        seen.append((rule, run_id, structlog.contextvars.get_contextvars()))
        slots.append(slot)
        ran.set()

    install_jobs(scheduler, unit_policy(tmp_path), run_rule)
    scheduler.remove_job("default-schedule")  # only the job made due below may run
    scheduler.modify_job("own-schedule", next_run_time=datetime.now(UTC))
    scheduler.resume()
    assert ran.wait(10), "the job did not run"
    [(rule, run_id, context)] = seen
    assert rule == "own-schedule"
    assert context == {"rule": "own-schedule", "run_id": run_id}
    [slot] = slots
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", slot), slot


def test_a_job_unbinds_its_log_context_when_it_ends_even_by_an_error(
    scheduler: Any, tmp_path: Path
) -> None:
    """The next job on the same thread does not inherit the previous job's rule."""
    structlog.contextvars.clear_contextvars()

    def failing(_rule: str, _run_id: str, _slot: str) -> None:
        raise RuntimeError("boom")

    install_jobs(scheduler, unit_policy(tmp_path), failing)
    job = scheduler.get_job("own-schedule")
    with pytest.raises(RuntimeError):
        job.func(*job.args, **job.kwargs)
    assert structlog.contextvars.get_contextvars() == {}


# --- two runs of one rule at once ---------------------------------------------------


def test_two_concurrent_runs_of_one_rule_never_process_its_batches_at_the_same_time(
    settings: Settings, engine: Engine
) -> None:
    """One run does the work and the other is skipped, or they run one after the other."""
    rows = 240
    build(engine, rows)
    write_policy(settings.policy_file, serve_policy(batch_size=5, sleep=0.05))
    start = threading.Barrier(2)
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            results.append(api.run(settings, rules=[EVENTS_RULE]))
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    statuses = sorted(result.rules[0].status for result in results)
    assert statuses in (["done", "done"], ["done", "skipped"])

    log = audit_log(engine)
    merged = runs_of_batches(log, EVENTS_RULE)
    assert len(merged) == len(set(merged)), "the two runs' batches interleave"
    assert sum(r["row_count"] for r in log if r["event"] == "batch") == due_count(rows)
    skipped = {r["run_id"] for r in log if r["event"] == "rule_skipped"}
    assert skipped == {r.run_id for r in results if r.rules[0].status == "skipped"}
    api.verify(settings)


# --- SIGHUP reload and SIGTERM --------------------------------------------------------


@pytest.fixture
def served_db(tmp_path: Path) -> tuple[str, Path]:
    """A small SQLite database and a valid policy whose schedule fires only at 03:00."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = create_engine(url)
    build(engine, 20, 20)
    engine.dispose()
    return url, write_policy(tmp_path / "policies.yaml", serve_policy(schedule="0 3 * * *"))


INVALID_POLICIES = {
    "broken-yaml": "version: 1\nrules: [\n",
    "unknown-table": POLICY.format(
        schedule="0 3 * * *", batch_size=5, sleep=0, timezone="UTC"
    ).replace("table: sessions", "table: no_such_table"),
}


@pytest.mark.parametrize("invalid", list(INVALID_POLICIES))
def test_a_sighup_with_an_invalid_policy_keeps_the_previous_one_and_the_worker_running(
    served_db: tuple[str, Path], tmp_path: Path, serves: list[Serve], invalid: str
) -> None:
    """The error is logged with the file and the reason; the worker keeps running."""
    url, policy = served_db
    serve = Serve.start(url, policy, tmp_path)
    serves.append(serve)
    serve.logs.wait_for("worker started", proc=serve.proc)

    write_policy(policy, INVALID_POLICIES[invalid])
    serve.proc.send_signal(signal.SIGHUP)
    failed = serve.logs.wait_for(
        "policy reload failed; keeping the previous policy", proc=serve.proc
    )
    assert failed["level"] == "error"
    assert "policies.yaml" in failed["reason"]
    time.sleep(0.3)
    assert serve.proc.poll() is None, serve.logs.text()
    assert not serve.logs.named("policy reloaded")
    assert serve.stop()[0] == 0, serve.logs.text()


def test_a_sighup_with_a_valid_policy_reschedules_the_rules(
    served_db: tuple[str, Path], tmp_path: Path, serves: list[Serve]
) -> None:
    """After a failed reload, a fixed file is taken: the log shows the new next runs."""
    url, policy = served_db
    serve = Serve.start(url, policy, tmp_path)
    serves.append(serve)
    started = serve.logs.wait_for("worker started", proc=serve.proc)
    assert datetime.fromisoformat(started["next_runs"][EVENTS_RULE]).time().hour == 3

    write_policy(policy, INVALID_POLICIES["broken-yaml"])
    serve.proc.send_signal(signal.SIGHUP)
    serve.logs.wait_for("policy reload failed; keeping the previous policy", proc=serve.proc)

    write_policy(policy, serve_policy(schedule="45 4 * * 1", timezone="Europe/Berlin"))
    serve.proc.send_signal(signal.SIGHUP)
    reloaded = serve.logs.wait_for("policy reloaded", proc=serve.proc)
    assert set(reloaded["next_runs"]) == {EVENTS_RULE, SESSIONS_RULE}
    for text in reloaded["next_runs"].values():
        fire = datetime.fromisoformat(text).astimezone(ZoneInfo("Europe/Berlin"))
        assert (fire.weekday(), fire.hour, fire.minute) == (0, 4, 45)
    assert len(reloaded["policy_sha256"]) == 64

    code, seconds = serve.stop()
    assert code == 0, serve.logs.text()
    assert seconds < 5
    serve.logs.wait_for("worker stopped")


# --- one minute of a real worker --------------------------------------------------------

EVENT_ROWS = 500  # 75 batches of 5 with 0.08 s pauses: a rule that lasts about seven seconds
SESSION_ROWS = 40
AVAILABLE = [b for b, variable in BACKENDS.items() if variable is None or os.environ.get(variable)]


NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass
class Minute:
    """One backend's worker in the minute its schedule fired, beside a cron ``run``."""

    backend: str
    fire: datetime = NEVER  # the next run the worker logged at its start
    database: str = ""
    policy: Path = Path("policies.yaml")
    serve: Serve | None = None
    engine: Engine | None = None
    cron: subprocess.Popen[bytes] | None = None
    cron_out: Path = Path("cron.json")
    error: BaseException | None = None
    # What happened:
    started: dict[str, Any] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    metrics: str = ""
    cron_code: int | None = None
    cron_report: dict[str, Any] = field(default_factory=dict)
    stop_code: int | None = None
    stop_seconds: float = 0.0

    @property
    def serve_logs(self) -> Logs:
        assert self.serve is not None
        return self.serve.logs

    def start(self, workdir: Path) -> None:
        """Build the database and start the worker; an unreachable server is kept as error."""
        try:
            self.database = _url(self.backend, workdir)
            if self.backend != "sqlite":
                wipe(self.database)  # fails, not skips, when the server is unreachable
            self.engine = create_engine(self.database)
            build(self.engine, EVENT_ROWS, SESSION_ROWS)
            self.policy = write_policy(
                workdir / "policies.yaml", serve_policy(batch_size=5, sleep=0.08)
            )
            port = str(free_port())
            self.serve = Serve.start(
                self.database, self.policy, workdir, RETENTION_METRICS_PORT=port
            )
        except Exception as exc:
            self.error = exc

    def wait_started(self) -> None:
        if self.serve is not None:
            self.started = self.serve.logs.wait_for("worker started", proc=self.serve.proc)
            self.fire = datetime.fromisoformat(self.started["next_runs"][EVENTS_RULE])

    def start_cron(self) -> None:
        """A cron ``run`` of the events rule, as a scheduler outside the worker starts it."""
        if self.serve is None:
            return
        self.cron_out = self.serve.logs.path.with_suffix(".cron.json")
        with self.cron_out.open("wb") as out, self.cron_out.with_suffix(".err").open("wb") as err:
            self.cron = subprocess.Popen(
                [
                    RETENTION,
                    "run",
                    "--database",
                    self.database,
                    "--policy",
                    str(self.policy),
                    "--rule",
                    EVENTS_RULE,
                    "--output",
                    "json",
                ],
                cwd=self.policy.parent,
                env=child_env(),
                stdout=out,
                stderr=err,
            )

    def finish(self) -> None:
        """Wait for both scheduled runs and the cron run, scrape /metrics, then SIGTERM."""
        if self.serve is None or self.cron is None or self.engine is None:
            return
        self.cron_code = self.cron.wait(60)
        if text := self.cron_out.read_text(encoding="utf-8"):
            self.cron_report = json.loads(text)
        # Both rules' scheduled runs have ended once both results are logged.
        self.serve.logs.wait_for("scheduled run result", count=2, timeout=40, proc=self.serve.proc)
        self.metrics = self.serve.scrape()
        self.stop_code, self.stop_seconds = self.serve.stop()
        self.log = audit_log(self.engine)

    def close(self) -> None:
        if self.serve is not None:
            self.serve.kill()
        if self.cron is not None and self.cron.poll() is None:
            self.cron.kill()
            self.cron.wait()
        if self.engine is not None:
            self.engine.dispose()


@dataclass
class DoubleTerm:
    """A SQLite worker sent SIGTERM twice in a row while a scheduled run is under way."""

    serve: Serve | None = None
    engine: Engine | None = None
    code: int | None = None
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def logs(self) -> Logs:
        assert self.serve is not None
        return self.serve.logs

    def start(self, workdir: Path) -> None:
        url = f"sqlite:///{workdir / 'double.db'}"
        self.engine = create_engine(url)
        build(self.engine, 60, 0)
        # 1.5 s between batches; the second signal comes 0.2 s after the first, while the
        # worker is stopping or already exiting: either way it changes nothing.
        policy = write_policy(workdir / "policies.yaml", serve_policy(batch_size=5, sleep=1.5))
        self.serve = Serve.start(url, policy, workdir)

    def wait_started(self) -> None:
        assert self.serve is not None
        self.serve.logs.wait_for("worker started", proc=self.serve.proc)

    def terminate_twice(self) -> None:
        """Once the run is between batches, SIGTERM and, 0.2 s later, SIGTERM again."""
        assert self.serve is not None
        self.serve.logs.wait_for("run started", timeout=75, proc=self.serve.proc)
        time.sleep(0.5)
        self.serve.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        self.serve.proc.send_signal(signal.SIGTERM)

    def finish(self) -> None:
        assert self.serve is not None and self.engine is not None
        try:
            self.code = self.serve.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.code = None
        self.log = audit_log(self.engine)

    def close(self) -> None:
        if self.serve is not None:
            self.serve.kill()
        if self.engine is not None:
            self.engine.dispose()


def _url(backend: str, workdir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'minute.db'}"
    variable = BACKENDS[backend]
    assert variable is not None
    return os.environ[variable]


def _wait_until(moment: datetime) -> None:
    delay = (moment - datetime.now(UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def _wait_for_room(room: float = 3) -> None:
    """Wait past the next minute boundary unless it is ``room`` seconds away or more.

    So that every worker, started meanwhile, logs the same next run.
    """
    now = datetime.now(UTC)
    boundary = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if (boundary - now).total_seconds() < room:
        _wait_until(boundary + timedelta(seconds=0.2))


@pytest.fixture(scope="module")
def one_minute(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Minute], DoubleTerm]]:
    """A worker per backend, and the double-SIGTERM worker, all firing in one minute.

    The cron run of ``events-after-30-days`` is started two seconds before the worker's
    logged next run (a process takes one to four seconds to get going), so it and the
    worker's job for the same rule meet: each would last about seven seconds.
    """
    _wait_for_room()
    minutes = [Minute(backend) for backend in AVAILABLE]
    double = DoubleTerm()
    try:
        for minute in minutes:
            minute.start(tmp_path_factory.mktemp(f"minute-{minute.backend}"))
        double.start(tmp_path_factory.mktemp("double-term"))
        for minute in minutes:
            minute.wait_started()
        double.wait_started()
        for minute in sorted((m for m in minutes if m.serve), key=lambda m: m.fire):
            _wait_until(minute.fire - timedelta(seconds=2))
            minute.start_cron()
        double.terminate_twice()
        for minute in minutes:
            minute.finish()
        double.finish()
        yield {minute.backend: minute for minute in minutes}, double
    finally:
        for minute in minutes:
            minute.close()
        double.close()


@pytest.fixture
def minute(request: pytest.FixtureRequest, backend: str) -> Minute:
    """The backend's worker minute; skipped when its URL is unset, failed when unreachable."""
    variable = BACKENDS[backend]
    if backend not in AVAILABLE:
        pytest.skip(f"{variable} is not set")
    minutes, _ = request.getfixturevalue("one_minute")
    result: Minute = minutes[backend]
    if result.error is not None:
        raise result.error
    return result


every_backend = pytest.mark.parametrize("backend", list(BACKENDS))


def scheduled_results(minute: Minute) -> dict[str, dict[str, Any]]:
    """The worker's "scheduled run result" log lines, by rule."""
    out = {}
    for line in minute.serve_logs.named("scheduled run result"):
        [rule] = line["statuses"]
        out[rule] = line
    return out


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text format -> {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@every_backend
def test_serve_logs_each_rules_next_run_when_it_starts(minute: Minute) -> None:
    """The "worker started" line names every scheduled rule and when it runs next."""
    assert minute.started["rules"] == 2
    logged_at = datetime.fromisoformat(minute.started["timestamp"])
    next_minute = logged_at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    assert {
        rule: datetime.fromisoformat(text) for rule, text in minute.started["next_runs"].items()
    } == {EVENTS_RULE: next_minute, SESSIONS_RULE: next_minute}


@every_backend
def test_serve_runs_a_rule_when_its_schedule_fires(minute: Minute) -> None:
    """``* * * * *``: the rule runs at the next minute and removes every due row."""
    result = scheduled_results(minute)[SESSIONS_RULE]
    assert (result["statuses"], result["exit_code"]) == ({SESSIONS_RULE: "done"}, 0)
    run = [r for r in minute.log if r["run_id"] == result["run_id"]]
    assert run[0]["event"] == "run_started"
    assert run[-1]["event"] == "run_finished"
    assert minute.fire <= as_utc(run[0]["at"]) < minute.fire + timedelta(seconds=30)
    batches = [r for r in run if r["event"] == "batch"]
    assert sum(r["row_count"] for r in batches) == due_count(SESSION_ROWS)


@every_backend
def test_a_scheduled_job_and_a_cron_run_of_one_rule_never_work_on_it_at_once(
    minute: Minute,
) -> None:
    """The cron run and the worker meet on one rule: one does it all, the other skips."""
    job = scheduled_results(minute)[EVENTS_RULE]
    cron = minute.cron_report
    assert cron, "the cron run printed no report"
    [cron_rule] = cron["rules"]
    statuses = {job["run_id"]: job["statuses"][EVENTS_RULE], cron["run_id"]: cron_rule["status"]}
    assert sorted(statuses.values()) == ["done", "skipped"], statuses
    assert minute.cron_code == (75 if cron_rule["status"] == "skipped" else 0)

    worker = next(run_id for run_id, status in statuses.items() if status == "done")
    assert runs_of_batches(minute.log, EVENTS_RULE) == [worker]
    skipped = [r["run_id"] for r in minute.log if r["event"] == "rule_skipped"]
    assert skipped == [run_id for run_id, status in statuses.items() if status == "skipped"]
    removed = [r for r in minute.log if r["event"] == "batch" and r["rule"] == EVENTS_RULE]
    assert sum(r["row_count"] for r in removed) == due_count(EVENT_ROWS)

    settings = Settings(
        database_url=minute.database,  # type: ignore[arg-type]
        policy_file=minute.policy,
        _env_file=None,  # type: ignore[call-arg]
    )
    assert api.verify(settings).records == len(minute.log)


@every_backend
def test_sigterm_stops_the_worker_within_seconds_with_exit_0(minute: Minute) -> None:
    """SIGTERM between runs: exit 0 at once, and "worker stopped" is the last word."""
    assert minute.stop_code == 0
    assert minute.stop_seconds < 5
    assert minute.serve_logs.named("worker stopped")


@every_backend
def test_the_workers_metrics_endpoint_counts_the_rows_of_its_scheduled_runs(
    minute: Minute,
) -> None:
    """``/metrics`` carries each rule's rows as a counter with rule, table and action."""
    samples = metric_samples(minute.metrics)
    key = (
        "retention_rows_total",
        (("action", "delete"), ("rule", SESSIONS_RULE), ("table", "sessions")),
    )
    assert samples[key] == due_count(SESSION_ROWS)
    assert ("retention_last_success_timestamp_seconds", (("rule", SESSIONS_RULE),)) in samples


def test_a_second_sigterm_while_stopping_still_lets_the_run_record_its_interruption(
    one_minute: tuple[dict[str, Minute], DoubleTerm],
) -> None:
    """Two SIGTERMs in a row (a double Ctrl-C): the batch finishes, the end is recorded."""
    _, double = one_minute
    started = {r["run_id"] for r in double.log if r["event"] == "run_started"}
    ended = {r["run_id"] for r in double.log if r["event"] in ("run_finished", "run_interrupted")}
    assert started, double.logs.text()
    assert started == ended, double.logs.text()
    assert double.code == 0, double.logs.text()
    assert double.logs.named("worker stopped")


def test_a_scheduled_job_hands_its_run_id_to_the_run_so_logs_and_audit_records_share_it() -> None:
    """The id bound into the job's logs is the run id the audit records carry."""
    from retention.worker import Worker

    seen: dict[str, object] = {}

    def fake_run(settings: object, **kwargs: object) -> object:
        seen.update(kwargs)
        raise RuntimeError("stop here")  # the worker logs the class and carries on

    worker = Worker.__new__(Worker)
    worker.settings = None  # type: ignore[assignment]
    worker.run = fake_run  # type: ignore[assignment]
    worker.loaded = None  # type: ignore[assignment]
    worker.stop = threading.Event()
    from retention.metrics import Metrics

    worker.metrics = Metrics()
    worker.run_rule("own-schedule", "4f1d-run")
    assert seen["run_id"] == "4f1d-run"
    assert seen["rules"] == ["own-schedule"]
