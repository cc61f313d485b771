"""Retention periods: ``P3M`` / ``3 months`` -> a calendar period, and the cutoff rule.

A period has calendar parts (years, months, weeks, days), subtracted on the wall clock of
the policy's timezone, and elapsed parts (hours, minutes, seconds), subtracted as real
time. ``timedelta`` cannot express a month, so the calendar parts use dateutil's
``relativedelta``: three months before 31 May is the last day of February.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

_ISO = re.compile(
    r"P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?",
    re.ASCII,  # "whole number" means ASCII digits, not any Unicode Nd character
)
_PLAIN = re.compile(r"(?P<n>\d+)\s+(?P<unit>[a-z]+)", re.ASCII)
_UNITS = {
    "second": "seconds",
    "seconds": "seconds",
    "minute": "minutes",
    "minutes": "minutes",
    "hour": "hours",
    "hours": "hours",
    "day": "days",
    "days": "days",
    "week": "weeks",
    "weeks": "weeks",
    "month": "months",
    "months": "months",
    "year": "years",
    "years": "years",
}
# Far beyond any retention period; keeps datetime arithmetic from overflowing.
_MAX_YEARS = 1000
# More digits than the longest allowed period has in its smallest unit (31536000000
# seconds), so a longer number is refused before int() meets thousands of digits.
_MAX_DIGITS = 15


@dataclass(frozen=True)
class Period:
    """A non-negative calendar period, as written in the policy."""

    text: str
    years: int = 0
    months: int = 0
    weeks: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def calendar(self) -> relativedelta:
        return relativedelta(years=self.years, months=self.months, weeks=self.weeks, days=self.days)

    def elapsed(self) -> timedelta:
        return timedelta(hours=self.hours, minutes=self.minutes, seconds=self.seconds)

    def __str__(self) -> str:
        return self.text


def parse_period(text: str) -> Period:
    """Parse ``P3M``, ``P1Y6M``, ``PT12H`` or ``3 months``; raise ``ValueError`` otherwise."""
    if not isinstance(text, str):
        raise ValueError(
            f"a period must be text such as 'P3M' or '3 months', not {type(text).__name__}"
        )
    s = text.strip()
    m = _ISO.fullmatch(s)
    if m:
        parts = {k: _number(v, s) for k, v in m.groupdict().items() if v is not None}
        return _checked(Period(text=s, **parts))
    m = _PLAIN.fullmatch(s.lower())
    if m and m["unit"] in _UNITS:
        return _checked(Period(text=s, **{_UNITS[m["unit"]]: _number(m["n"], s)}))
    hint = ""
    if s.startswith("-") or "-" in s:
        hint = " (periods are never negative)"
    elif m:
        hint = (
            f" (unknown unit '{m['unit']}'; "
            "use seconds, minutes, hours, days, weeks, months or years)"
        )
    raise ValueError(
        f"invalid period {text!r}: use ISO 8601 such as 'P3M', 'P30D', 'PT12H' "
        f"or '<number> <unit>' such as '3 months'{hint}"
    )


def _too_long(text: str) -> ValueError:
    shown = text if len(text) <= 40 else text[:37] + "..."
    return ValueError(f"period {shown!r} is longer than {_MAX_YEARS} years")


def _number(digits: str, text: str) -> int:
    if len(digits.lstrip("0")) > _MAX_DIGITS:
        raise _too_long(text)
    return int(digits)


def _checked(p: Period) -> Period:
    # Exact fractions: float division of a long number would raise OverflowError.
    approx_years = (
        p.years
        + Fraction(p.months, 12)
        + Fraction(p.weeks * 7 + p.days, 365)
        + Fraction(p.hours * 3600 + p.minutes * 60 + p.seconds, 3600 * 8760)
    )
    if approx_years > _MAX_YEARS:
        raise _too_long(p.text)
    return p


def cutoff(now: datetime, period: Period, timezone: str) -> datetime:
    """The instant before which a row is due, as an aware UTC datetime.

    Calendar parts move the wall clock of ``timezone``; elapsed parts move real time.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(timezone)
    if not period.calendar():
        # Elapsed time only: a round trip through the wall clock would drop the fold of
        # a time in the repeated autumn hour and move the cutoff by an hour.
        return now.astimezone(UTC) - period.elapsed()
    wall = now.astimezone(zone).replace(tzinfo=None)
    moved = wall - period.calendar()
    # Re-attach the zone: zoneinfo resolves a wall time that falls in a DST gap or
    # overlap with fold=0 (the earlier offset), which is deterministic and documented.
    local = moved.replace(tzinfo=zone)
    return local.astimezone(UTC) - period.elapsed()
