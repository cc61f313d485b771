"""APScheduler wiring for ``retention serve``: one job per enabled rule, on its schedule.

The job store is in memory and rebuilt from the policy at start and on SIGHUP, never
shared: the rule leases in the database (``leases.py``) are what keep two workers, or a
worker and a cron ``run``, off the same rule, and each job names its slot (the minute it
was scheduled for), so replicas of ``serve`` run each scheduled run of a rule once. Jobs
coalesce, never overlap themselves, and a late job still runs (no misfire limit), because
a retention run that is late is still owed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.blocking import BlockingScheduler

from retention.logs import get_logger
from retention.policy.model import Policy
from retention.schedules import parse_cron

log = get_logger("retention.scheduler")

RunRule = Callable[[str, str, str], None]  # (rule name, job run id, slot)


def scheduled_rules(policy: Policy) -> list[tuple[str, str]]:
    """(rule name, cron expression) for every enabled rule that has a schedule."""
    out = []
    for rule in policy.rules:
        expression = rule.schedule or policy.defaults.schedule
        if rule.enabled and expression:
            out.append((rule.name, expression))
    return out


def make_scheduler(policy: Policy) -> BlockingScheduler:
    return BlockingScheduler(timezone=ZoneInfo(policy.defaults.timezone))


def install_jobs(scheduler: BlockingScheduler, policy: Policy, run_rule: RunRule) -> None:
    """Replace every job with one per scheduled rule of ``policy``."""
    scheduler.remove_all_jobs()
    timezone = policy.defaults.timezone
    for name, expression in scheduled_rules(policy):
        scheduler.add_job(
            _job,
            trigger=parse_cron(expression, timezone),
            args=(name, run_rule),
            id=name,
            name=name,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            replace_existing=True,
        )


def _job(rule: str, run_rule: RunRule) -> None:
    run_id = str(uuid.uuid4())
    # Cron fires on the minute: replicas whose clocks agree name the same slot.
    slot = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    # Bound inside the job: context variables do not follow the executor's threads.
    structlog.contextvars.bind_contextvars(rule=rule, run_id=run_id)
    try:
        run_rule(rule, run_id, slot)
    finally:
        structlog.contextvars.unbind_contextvars("rule", "run_id")


def next_runs(scheduler: BlockingScheduler, now: datetime) -> dict[str, datetime | None]:
    out: dict[str, datetime | None] = {}
    for job in scheduler.get_jobs():
        out[job.id] = job.trigger.get_next_fire_time(None, now)
    return out
