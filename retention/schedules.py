"""Five-field cron expressions with crontab's meaning, evaluated by APScheduler.

APScheduler 3.x numbers weekdays from Monday = 0, while crontab uses Sunday = 0 (and 7).
So that ``30 2 * * 1`` means Monday, as every operator expects, the day-of-week field is
expanded here to explicit day names before APScheduler sees it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = ("minute", "hour", "day", "month", "day_of_week")


def check_timezone(name: str) -> str:
    """Return ``name`` if it is an IANA timezone; raise ``ValueError`` otherwise."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"invalid timezone {name!r}: use an IANA name such as 'Europe/Berlin'")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # 'Europe' is a directory
        raise ValueError(
            f"unknown timezone {name!r}: use an IANA name such as 'Asia/Shanghai' or 'UTC'"
        ) from exc
    return name


def _day_number(token: str) -> int:
    t = token.lower()
    if t in _DAY_NAMES:
        return _DAY_NAMES.index(t)
    if t.isdigit() and 0 <= int(t) <= 7:
        return int(t) % 7
    raise ValueError(f"invalid day of week {token!r} (use 0-7 or sun-sat)")


def _expand_weekdays(field: str) -> str:
    """crontab day-of-week field -> comma-separated APScheduler day names."""
    days: set[int] = set()
    for item in field.split(","):
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"invalid step {step_text!r} in day of week")
            step = int(step_text)
        if body == "*":
            lo, hi = 0, 6
        elif "-" in body:
            a, _, b = body.partition("-")
            lo, hi = _day_number(a), _day_number(b)
            if b.strip() == "7":
                hi = 7
            if a.strip() == "7":
                lo = 7  # so that 7-7 is Sunday alone, not 0-7
            if hi < lo:
                raise ValueError(f"invalid range {body!r} in day of week")
        else:
            lo = hi = _day_number(body)
            if step_text:
                hi = 6
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def parse_cron(expression: str, timezone: str) -> CronTrigger:
    """A CronTrigger for a 5-field crontab expression; ``ValueError`` with a hint if bad.

    APScheduler is imported here, by a policy that has a schedule, not by every command
    that reads the policy model (``schema``, ``--help``)."""
    from apscheduler.triggers.cron import CronTrigger  # noqa: PLC0415

    if not isinstance(expression, str):
        raise ValueError("a schedule must be a 5-field cron expression in quotes")
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            "(minute hour day month weekday), e.g. '30 2 * * *'"
        )
    values = dict(zip(_FIELDS, fields, strict=True))
    if values["day"] != "*" and values["day_of_week"] != "*":
        # crontab runs when EITHER field matches; APScheduler needs both. Rather than
        # silently change the meaning, refuse.
        raise ValueError(
            f"cron expression {expression!r} restricts both day of month and day of week; "
            "crontab would run on either, which is ambiguous here: restrict only one"
        )
    try:
        if values["day_of_week"] != "*":
            values["day_of_week"] = _expand_weekdays(values["day_of_week"])
        return CronTrigger(timezone=ZoneInfo(timezone), **values)
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from exc


def next_fire_time(expression: str, timezone: str, now: datetime) -> datetime | None:
    """The first time at or after ``now`` that the schedule fires."""
    trigger = parse_cron(expression, timezone)
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    return fire
