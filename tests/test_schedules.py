"""Schedules: five-field cron with crontab's meaning, in the policy's timezone.

Weekday numbers follow Python's ``date.weekday()``: Monday = 0 ... Sunday = 6.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from retention.schedules import check_timezone, next_fire_time, parse_cron

MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY = range(7)
WEEKDAYS = {MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY}
EVERY_DAY = set(range(7))

# A Thursday, so that a week of fire times crosses a weekend.
THURSDAY_1_JAN_2026 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


def fire_times(expression: str, timezone: str, start: datetime, count: int) -> list[datetime]:
    """The first ``count`` fire times at or after ``start``, on the policy's wall clock."""
    zone = ZoneInfo(timezone)
    times: list[datetime] = []
    now = start
    for _ in range(count):
        fire = next_fire_time(expression, timezone, now)
        assert fire is not None
        times.append(fire.astimezone(zone))
        now = fire + timedelta(minutes=1)
    return times


def weekdays_fired(expression: str, timezone: str = "UTC") -> set[int]:
    """The weekdays on which a daily-at-most schedule fires over three weeks."""
    times = fire_times(expression, timezone, THURSDAY_1_JAN_2026, 21)
    assert times[-1] - times[0] >= timedelta(days=14), "expected at most one fire a day"
    return {t.weekday() for t in times}


# --- day of week means what crontab means ------------------------------------------------


def test_weekday_1_fires_on_a_monday_at_the_given_wall_time() -> None:
    fire = next_fire_time("30 2 * * 1", "Europe/Berlin", THURSDAY_1_JAN_2026)

    assert fire is not None
    local = fire.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.weekday() == MONDAY
    assert (local.hour, local.minute) == (2, 30)
    assert local.date() == datetime(2026, 1, 5).date()


def test_the_weekday_is_that_of_the_policy_timezone_not_of_utc() -> None:
    """02:30 on Monday in Shanghai is 18:30 on Sunday in UTC; the schedule means Monday."""
    fire = next_fire_time("30 2 * * 1", "Asia/Shanghai", THURSDAY_1_JAN_2026)

    assert fire is not None
    assert fire.astimezone(ZoneInfo("Asia/Shanghai")).weekday() == MONDAY
    assert fire == datetime(2026, 1, 4, 18, 30, tzinfo=UTC)
    assert fire.astimezone(UTC).weekday() == SUNDAY


@pytest.mark.parametrize("expression", ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "0 0 * * 7-7"])
def test_weekday_0_and_7_both_mean_sunday(expression: str) -> None:
    assert weekdays_fired(expression) == {SUNDAY}


def test_weekdays_1_to_5_skip_the_weekend() -> None:
    assert weekdays_fired("0 0 * * 1-5") == WEEKDAYS


def test_weekdays_1_to_5_fire_on_the_monday_after_a_friday() -> None:
    friday, monday = fire_times("0 0 * * 1-5", "UTC", datetime(2026, 1, 2, 0, 0, tzinfo=UTC), 2)

    assert friday == datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    assert monday == datetime(2026, 1, 5, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("expression", ["0 0 * * mon-fri", "0 0 * * MON-FRI", "0 0 * * Mon-Fri"])
def test_weekday_names_mean_the_same_as_numbers(expression: str) -> None:
    assert weekdays_fired(expression) == WEEKDAYS


def test_a_step_over_all_weekdays_counts_from_sunday_as_crontab_does() -> None:
    assert weekdays_fired("0 0 * * */2") == {SUNDAY, TUESDAY, THURSDAY, SATURDAY}


def test_a_step_over_a_weekday_range_counts_from_its_start() -> None:
    assert weekdays_fired("0 0 * * 1-5/2") == {MONDAY, WEDNESDAY, FRIDAY}


def test_a_range_ending_in_7_reaches_sunday() -> None:
    assert weekdays_fired("0 0 * * 5-7") == {FRIDAY, SATURDAY, SUNDAY}


def test_the_range_0_to_7_is_every_day() -> None:
    assert weekdays_fired("0 0 * * 0-7") == EVERY_DAY


def test_a_list_of_weekdays_mixes_numbers_and_names() -> None:
    assert weekdays_fired("0 0 * * 1,wed,5") == {MONDAY, WEDNESDAY, FRIDAY}


def test_an_unrestricted_weekday_fires_every_day() -> None:
    assert weekdays_fired("0 0 * * *") == EVERY_DAY


# --- time, timezone and the other fields -------------------------------------------------


def test_the_wall_time_is_that_of_the_policy_timezone() -> None:
    """02:30 in Shanghai (UTC+8) is 18:30 UTC on the previous day."""
    fire = next_fire_time("30 2 * * *", "Asia/Shanghai", THURSDAY_1_JAN_2026)

    assert fire == datetime(2026, 1, 1, 18, 30, tzinfo=UTC)
    assert fire is not None
    assert fire.astimezone(ZoneInfo("Asia/Shanghai")) == datetime(
        2026, 1, 2, 2, 30, tzinfo=ZoneInfo("Asia/Shanghai")
    )


def test_a_schedule_fires_at_the_same_wall_time_across_a_dst_change() -> None:
    times = fire_times("30 4 * * *", "Europe/Berlin", datetime(2026, 3, 28, 0, 0, tzinfo=UTC), 2)

    assert [(t.day, t.hour, t.minute) for t in times] == [(28, 4, 30), (29, 4, 30)]
    assert times[1].astimezone(UTC) - times[0].astimezone(UTC) == timedelta(hours=23)


def test_the_next_fire_time_may_be_now_itself() -> None:
    now = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)

    assert next_fire_time("30 2 * * *", "UTC", now) == now


def test_the_next_fire_time_after_todays_run_is_tomorrow() -> None:
    now = datetime(2026, 1, 1, 2, 31, tzinfo=UTC)

    assert next_fire_time("30 2 * * *", "UTC", now) == datetime(2026, 1, 2, 2, 30, tzinfo=UTC)


def test_a_schedule_fires_on_the_minute() -> None:
    fire = next_fire_time("*/15 * * * *", "UTC", datetime(2026, 1, 1, 0, 1, 7, tzinfo=UTC))

    assert fire == datetime(2026, 1, 1, 0, 15, 0, tzinfo=UTC)


def test_a_day_of_month_schedule_fires_on_that_day() -> None:
    fire = next_fire_time("0 3 15 * *", "UTC", THURSDAY_1_JAN_2026)

    assert fire == datetime(2026, 1, 15, 3, 0, tzinfo=UTC)


def test_month_names_are_accepted() -> None:
    fire = next_fire_time("0 0 1 jul *", "UTC", THURSDAY_1_JAN_2026)

    assert fire == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)


def test_parse_cron_gives_a_trigger_in_the_policy_timezone() -> None:
    trigger = parse_cron("30 2 * * 1", "Asia/Shanghai")

    assert trigger.timezone == ZoneInfo("Asia/Shanghai")


# --- rejected expressions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("", id="empty"),
        pytest.param("* * * *", id="four-fields"),
        pytest.param("0 * * * * *", id="six-fields"),
        pytest.param("@daily", id="macro"),
    ],
)
def test_an_expression_without_five_fields_is_rejected_with_an_example(expression: str) -> None:
    with pytest.raises(ValueError, match="expected 5 fields") as caught:
        parse_cron(expression, "UTC")
    assert "'30 2 * * *'" in str(caught.value)


@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("61 * * * *", id="minute-61"),
        pytest.param("60 * * * *", id="minute-60"),
        pytest.param("0 24 * * *", id="hour-24"),
        pytest.param("* * 32 * *", id="day-32"),
        pytest.param("* * 0 * *", id="day-0"),
        pytest.param("* * * 13 *", id="month-13"),
        pytest.param("* * * * 8", id="weekday-8"),
        pytest.param("* * * * -1", id="weekday-negative"),
        pytest.param("* * * * mon-", id="weekday-open-range"),
        pytest.param("* * * * 5-1", id="weekday-backward-range"),
        pytest.param("* * * * */0", id="weekday-step-0"),
        pytest.param("* * * * 1,", id="weekday-empty-item"),
        pytest.param("* * * * monday", id="weekday-long-name"),
        pytest.param("*/0 * * * *", id="minute-step-0"),
        pytest.param("x * * * *", id="garbage"),
    ],
)
def test_an_invalid_field_is_rejected(expression: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression"):
        parse_cron(expression, "UTC")


@pytest.mark.parametrize("expression", ["0 0 1 * 1", "0 0 */2 * mon", "0 0 1-7 * 0"])
def test_restricting_both_day_of_month_and_day_of_week_is_rejected(expression: str) -> None:
    with pytest.raises(ValueError, match="restricts both day of month and day of week"):
        parse_cron(expression, "UTC")


def test_next_fire_time_rejects_an_invalid_expression() -> None:
    with pytest.raises(ValueError, match="invalid cron expression"):
        next_fire_time("61 * * * *", "UTC", THURSDAY_1_JAN_2026)


@pytest.mark.parametrize("value", [None, 30, ["30", "2", "*", "*", "*"]], ids=repr)
def test_a_schedule_that_is_not_text_is_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match="5-field cron expression"):
        parse_cron(value, "UTC")


# --- timezones ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Europe/Berlin", "Asia/Shanghai", "UTC", "America/New_York"])
def test_an_iana_timezone_is_accepted_unchanged(name: str) -> None:
    assert check_timezone(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Mars/Olympus", id="unknown-zone"),
        pytest.param("utc ", id="trailing-space"),
        pytest.param(" Europe/Berlin", id="leading-space"),
        pytest.param("", id="empty"),
        pytest.param("Europe", id="a-directory-of-zones"),
        pytest.param("../etc/passwd", id="path-traversal"),
        pytest.param("/usr/share/zoneinfo/UTC", id="absolute-path"),
        pytest.param("+08:00", id="offset"),
    ],
)
def test_a_name_that_is_not_an_iana_timezone_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="timezone") as caught:
        check_timezone(name)
    assert "IANA name such as" in str(caught.value)


@pytest.mark.parametrize("value", [None, 8, b"UTC"], ids=repr)
def test_a_timezone_that_is_not_text_is_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match="invalid timezone"):
        check_timezone(value)
