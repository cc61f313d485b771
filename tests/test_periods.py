"""Retention periods (SPEC section 2, "Periods") and the cutoff ("The clock and the cutoff").

``cutoff`` is a pure function of ``now``: the tests pass the instant under test, in UTC as
the api reads its clock, and need no frozen clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from retention.periods import Period, cutoff, parse_period

SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")


def utc(instant: datetime) -> datetime:
    """The instant as the api's clock gives it: ``datetime.now(UTC)`` form."""
    return instant.astimezone(UTC)


# --- parsing: accepted forms -------------------------------------------------------------

ACCEPTED: list[tuple[str, dict[str, int]]] = [
    # ISO 8601 durations
    ("P3M", {"months": 3}),
    ("P1Y6M", {"years": 1, "months": 6}),
    ("P30D", {"days": 30}),
    ("PT12H", {"hours": 12}),
    ("P1W", {"weeks": 1}),
    ("P2Y", {"years": 2}),
    ("PT30M", {"minutes": 30}),
    ("PT45S", {"seconds": 45}),
    ("PT1H30M", {"hours": 1, "minutes": 30}),
    ("P1DT12H", {"days": 1, "hours": 12}),
    (
        "P1Y2M3W4DT5H6M7S",
        {"years": 1, "months": 2, "weeks": 3, "days": 4, "hours": 5, "minutes": 6, "seconds": 7},
    ),
    ("P0D", {}),
    ("PT0S", {}),
    # <whole number> <unit>, singular and plural
    ("1 second", {"seconds": 1}),
    ("90 seconds", {"seconds": 90}),
    ("1 minute", {"minutes": 1}),
    ("15 minutes", {"minutes": 15}),
    ("1 hour", {"hours": 1}),
    ("36 hours", {"hours": 36}),
    ("1 day", {"days": 1}),
    ("30 days", {"days": 30}),
    ("0 days", {}),
    ("1 week", {"weeks": 1}),
    ("2 weeks", {"weeks": 2}),
    ("1 month", {"months": 1}),
    ("3 months", {"months": 3}),
    ("1 year", {"years": 1}),
    ("7 years", {"years": 7}),
]


@pytest.mark.parametrize(("text", "parts"), ACCEPTED, ids=[text for text, _ in ACCEPTED])
def test_an_accepted_period_parses_to_its_components(text: str, parts: dict[str, int]) -> None:
    assert parse_period(text) == Period(text=text, **parts)


def test_a_period_keeps_the_text_it_was_written_as() -> None:
    assert str(parse_period("3 months")) == "3 months"
    assert str(parse_period("P1Y6M")) == "P1Y6M"


def test_whitespace_around_a_period_is_ignored() -> None:
    assert parse_period("  P3M\n") == Period(text="P3M", months=3)
    assert parse_period(" 3 months ") == Period(text="3 months", months=3)


def test_the_unit_of_a_plain_period_is_case_insensitive() -> None:
    assert parse_period("3 Months").months == 3
    assert parse_period("2 DAYS").days == 2


def test_calendar_and_elapsed_parts_are_kept_apart() -> None:
    period = parse_period("P1Y2M3W4DT5H6M7S")

    calendar = period.calendar()
    assert (calendar.years, calendar.months, calendar.days) == (1, 2, 3 * 7 + 4)
    assert (calendar.hours, calendar.minutes, calendar.seconds) == (0, 0, 0)
    assert period.elapsed() == timedelta(hours=5, minutes=6, seconds=7)


def test_the_longest_period_allowed_is_a_thousand_years() -> None:
    assert parse_period("P1000Y").years == 1000
    assert parse_period("1000 years").years == 1000


# --- parsing: rejected forms -------------------------------------------------------------

REJECTED = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("P", id="P-alone"),
    pytest.param("PT", id="PT-alone"),
    pytest.param("P1DT", id="T-without-a-time-part"),
    pytest.param("P1H", id="hours-without-T"),
    pytest.param("PT1D", id="days-after-T"),
    pytest.param("P1M1Y", id="ISO-parts-out-of-order"),
    pytest.param("P1.5Y", id="ISO-fraction"),
    pytest.param("P3m", id="lowercase-ISO-designator"),
    pytest.param("p3m", id="lowercase-ISO"),
    pytest.param("3", id="number-without-unit"),
    pytest.param("months", id="unit-without-number"),
    pytest.param("3months", id="no-space-between-number-and-unit"),
    pytest.param("3 fortnights", id="unknown-unit"),
    pytest.param("3 mo", id="abbreviated-unit"),
    pytest.param("three months", id="number-in-words"),
    pytest.param("3.5 months", id="fractional-number"),
    pytest.param("-3 days", id="negative-plain"),
    pytest.param("P-3M", id="negative-ISO"),
    pytest.param("-P3M", id="negated-ISO"),
    pytest.param("+3 days", id="signed-number"),
    pytest.param("3 months ago", id="trailing-words"),
    pytest.param("P\u0663M", id="non-ASCII-digit"),
]


@pytest.mark.parametrize("text", REJECTED)
def test_a_malformed_period_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid period"):
        parse_period(text)


@pytest.mark.parametrize("text", REJECTED)
def test_the_error_for_a_malformed_period_shows_valid_forms(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_period(text)
    message = str(caught.value)
    assert "'P3M'" in message
    assert "'3 months'" in message


@pytest.mark.parametrize("text", ["-3 days", "P-3M"])
def test_the_error_for_a_negative_period_says_periods_are_never_negative(text: str) -> None:
    with pytest.raises(ValueError, match="never negative"):
        parse_period(text)


def test_the_error_for_an_unknown_unit_lists_the_units() -> None:
    with pytest.raises(ValueError, match="unknown unit 'fortnights'") as caught:
        parse_period("3 fortnights")
    assert "days, weeks, months or years" in str(caught.value)


@pytest.mark.parametrize(
    "value", [3, 3.0, None, True, ["P3M"], b"P3M"], ids=lambda v: type(v).__name__
)
def test_a_period_that_is_not_text_is_rejected_with_an_example(value: Any) -> None:
    with pytest.raises(ValueError, match="must be text such as 'P3M' or '3 months'"):
        parse_period(value)


@pytest.mark.parametrize(
    "text",
    [
        "P1000000Y",
        "P1001Y",
        "1001 years",
        "P12013M",
        "P52143W",
        "365243 days",
        "PT8760001H",
        "PT525600100M",
        "31536010000 seconds",
    ],
)
def test_a_period_longer_than_a_thousand_years_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="longer than 1000 years"):
        parse_period(text)


def test_a_number_with_thousands_of_digits_is_rejected() -> None:
    with pytest.raises(ValueError):
        parse_period("9" * 5000 + " days")


@pytest.mark.parametrize(
    "text",
    ["9" * 400 + " days", "P" + "9" * 400 + "D", "PT" + "9" * 400 + "S", "9" * 5000 + " years"],
    ids=["plain-400-digits", "iso-400-digits", "iso-time-400-digits", "plain-5000-digits"],
)
def test_a_period_with_hundreds_of_digits_is_longer_than_a_thousand_years(text: str) -> None:
    """Not an OverflowError, nor Python's message about long integers: the policy's rule."""
    with pytest.raises(ValueError, match="longer than 1000 years") as caught:
        parse_period(text)
    assert len(str(caught.value)) < 120


def test_leading_zeros_do_not_make_a_period_long() -> None:
    assert parse_period("0" * 30 + "3 months").months == 3


# --- the cutoff: calendar parts on the policy's wall clock -------------------------------


def test_three_months_before_31_may_is_28_february_on_the_shanghai_wall_clock() -> None:
    now = utc(datetime(2026, 5, 31, 1, 0, tzinfo=SHANGHAI))
    assert now == datetime(2026, 5, 30, 17, 0, tzinfo=UTC)

    result = cutoff(now, parse_period("P3M"), "Asia/Shanghai")

    assert result.astimezone(SHANGHAI) == datetime(2026, 2, 28, 1, 0, tzinfo=SHANGHAI)
    assert result == datetime(2026, 2, 27, 17, 0, tzinfo=UTC)


def test_three_months_before_31_may_of_a_leap_year_is_29_february() -> None:
    now = utc(datetime(2028, 5, 31, 1, 0, tzinfo=SHANGHAI))

    result = cutoff(now, parse_period("3 months"), "Asia/Shanghai")

    assert result.astimezone(SHANGHAI) == datetime(2028, 2, 29, 1, 0, tzinfo=SHANGHAI)
    assert result == datetime(2028, 2, 28, 17, 0, tzinfo=UTC)


def test_the_same_instant_computed_on_the_utc_wall_clock_gives_another_cutoff() -> None:
    """At 01:00 on 31 May in Shanghai it is still 30 May in UTC, so the months differ."""
    now = utc(datetime(2026, 5, 31, 1, 0, tzinfo=SHANGHAI))

    in_shanghai = cutoff(now, parse_period("P3M"), "Asia/Shanghai")
    in_utc = cutoff(now, parse_period("P3M"), "UTC")

    assert in_utc == datetime(2026, 2, 28, 17, 0, tzinfo=UTC)
    assert in_shanghai == datetime(2026, 2, 27, 17, 0, tzinfo=UTC)
    assert in_utc != in_shanghai


def test_one_year_before_a_leap_day_is_28_february() -> None:
    now = utc(datetime(2028, 2, 29, 12, 0, tzinfo=UTC))

    assert cutoff(now, parse_period("P1Y"), "UTC") == datetime(2027, 2, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("year", "last_of_february"), [(2026, 28), (2028, 29)], ids=["2026", "leap-2028"]
)
def test_one_month_before_31_march_is_the_last_day_of_february(
    year: int, last_of_february: int
) -> None:
    now = utc(datetime(year, 3, 31, 9, 15, tzinfo=UTC))

    assert cutoff(now, parse_period("P1M"), "UTC") == datetime(
        year, 2, last_of_february, 9, 15, tzinfo=UTC
    )


def test_weeks_are_seven_calendar_days() -> None:
    now = utc(datetime(2026, 3, 10, 8, 0, tzinfo=UTC))

    assert cutoff(now, parse_period("2 weeks"), "UTC") == datetime(2026, 2, 24, 8, 0, tzinfo=UTC)


# --- the cutoff across daylight-saving changes -------------------------------------------


def test_one_day_across_the_spring_forward_night_keeps_the_wall_time() -> None:
    """Berlin skips 02:00-03:00 on 29 March 2026: that calendar day is 23 hours long."""
    now = utc(datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN))

    result = cutoff(now, parse_period("P1D"), "Europe/Berlin")

    assert result.astimezone(BERLIN) == datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)
    assert now - result == timedelta(hours=23)


def test_24_hours_across_the_spring_forward_night_are_24_elapsed_hours() -> None:
    now = utc(datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN))

    result = cutoff(now, parse_period("PT24H"), "Europe/Berlin")

    assert now - result == timedelta(hours=24)
    assert result.astimezone(BERLIN) == datetime(2026, 3, 28, 11, 0, tzinfo=BERLIN)


def test_one_day_across_the_fall_back_night_keeps_the_wall_time() -> None:
    """Berlin repeats 02:00-03:00 on 25 October 2026: that calendar day is 25 hours long."""
    now = utc(datetime(2026, 10, 25, 12, 0, tzinfo=BERLIN))

    result = cutoff(now, parse_period("1 day"), "Europe/Berlin")

    assert result.astimezone(BERLIN) == datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN)
    assert now - result == timedelta(hours=25)


def test_24_hours_across_the_fall_back_night_are_24_elapsed_hours() -> None:
    now = utc(datetime(2026, 10, 25, 12, 0, tzinfo=BERLIN))

    result = cutoff(now, parse_period("24 hours"), "Europe/Berlin")

    assert now - result == timedelta(hours=24)
    assert result.astimezone(BERLIN) == datetime(2026, 10, 24, 13, 0, tzinfo=BERLIN)


def test_a_mixed_period_moves_the_wall_clock_by_days_then_real_time_by_hours() -> None:
    now = utc(datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN))

    result = cutoff(now, parse_period("P1DT1H"), "Europe/Berlin")

    assert result.astimezone(BERLIN) == datetime(2026, 3, 28, 11, 0, tzinfo=BERLIN)
    assert now - result == timedelta(hours=24)


def test_elapsed_hours_are_exact_inside_the_repeated_autumn_hour() -> None:
    """01:30 UTC is the second 02:30 in Berlin; one hour earlier is 00:30 UTC, not 23:30."""
    now = utc(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))

    assert cutoff(now, parse_period("PT1H"), "Europe/Berlin") == datetime(
        2026, 10, 25, 0, 30, tzinfo=UTC
    )


def test_a_wall_time_in_the_spring_forward_gap_takes_the_offset_before_the_gap() -> None:
    """02:30 on 29 March 2026 does not exist in Berlin; it is read as 02:30+01:00."""
    now = utc(datetime(2026, 3, 30, 2, 30, tzinfo=BERLIN))

    result = cutoff(now, parse_period("P1D"), "Europe/Berlin")

    assert result == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_a_wall_time_in_the_repeated_autumn_hour_is_its_first_occurrence() -> None:
    """02:30 on 25 October 2026 happens twice in Berlin; the earlier (summer time) one wins."""
    now = utc(datetime(2026, 10, 26, 2, 30, tzinfo=BERLIN))

    result = cutoff(now, parse_period("P1D"), "Europe/Berlin")

    assert result == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


# --- the cutoff: zero, type and validation -----------------------------------------------


@pytest.mark.parametrize("text", ["0 days", "P0D", "PT0S", "0 seconds", "0 months"])
@pytest.mark.parametrize("timezone", ["UTC", "Asia/Shanghai", "Europe/Berlin"])
def test_a_zero_period_makes_the_cutoff_now_itself(text: str, timezone: str) -> None:
    now = utc(datetime(2026, 6, 15, 10, 20, 30, 123456, tzinfo=UTC))

    assert cutoff(now, parse_period(text), timezone) == now


def test_a_zero_period_is_now_itself_even_in_the_repeated_autumn_hour() -> None:
    now = utc(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # the second 02:30 in Berlin

    assert cutoff(now, parse_period("0 days"), "Europe/Berlin") == now


@pytest.mark.parametrize("text", ["P3M", "PT12H", "P1DT1H", "0 days"])
@pytest.mark.parametrize("timezone", ["UTC", "Asia/Shanghai", "Europe/Berlin"])
def test_the_cutoff_is_an_aware_utc_datetime(text: str, timezone: str) -> None:
    now = utc(datetime(2026, 5, 31, 1, 0, tzinfo=SHANGHAI))

    result = cutoff(now, parse_period(text), timezone)

    assert result.tzinfo is UTC
    assert result.utcoffset() == timedelta(0)


def test_the_cutoff_is_utc_even_when_now_is_given_in_another_zone() -> None:
    now = utc(datetime(2026, 5, 31, 1, 0, tzinfo=SHANGHAI)).astimezone(SHANGHAI)

    result = cutoff(now, parse_period("PT1H"), "Asia/Shanghai")

    assert result.tzinfo is UTC
    assert result == datetime(2026, 5, 30, 16, 0, tzinfo=UTC)


def test_a_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cutoff(datetime(2026, 5, 31, 1, 0), parse_period("P3M"), "UTC")


@pytest.mark.parametrize(
    "text", ["P1000Y", "PT8760000H", "525600000 minutes", "31536000000 seconds"]
)
def test_the_longest_allowed_period_gives_a_cutoff_without_overflow(text: str) -> None:
    now = utc(datetime(2026, 5, 31, 1, 0, tzinfo=UTC))

    result = cutoff(now, parse_period(text), "Europe/Berlin")

    assert result.year in (1026, 1027)
