"""Tier 1: the run's day, its UTC bounds and the UTC partitions it overlaps."""

import calendar
import datetime as dt

import pytest

from transforms.common import span

pytestmark = pytest.mark.functions

UTC = dt.timezone.utc


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def epoch_us(value: dt.datetime) -> int:
    """Microseconds since the epoch, computed independently of span._to_us."""
    return calendar.timegm(value.utctimetuple()) * 1_000_000 + value.microsecond


# ---------------------------------------------------------------- parse_run_date

def test_parse_run_date_explicit_date():
    assert span.parse_run_date("2026-11-26", "Asia/Seoul") == dt.date(2026, 11, 26)
    assert span.parse_run_date("2024-02-29", "UTC") == dt.date(2024, 2, 29)


@pytest.mark.parametrize("now, timezone, expected", [
    # 23:59:59 on 11-26 in Seoul: yesterday is 11-25.
    (utc(2026, 11, 26, 14, 59, 59), "Asia/Seoul", dt.date(2026, 11, 25)),
    # 00:00:00 on 11-27 in Seoul: yesterday is 11-26, although UTC is still on 11-26.
    (utc(2026, 11, 26, 15, 0, 0), "Asia/Seoul", dt.date(2026, 11, 26)),
    (utc(2026, 11, 26, 15, 0, 0), "UTC", dt.date(2026, 11, 25)),
    (utc(2026, 11, 26, 0, 0, 0), "UTC", dt.date(2026, 11, 25)),
    # 2026-01-01 03:00Z is still 2025-12-31 in New York: yesterday is 12-30.
    (utc(2026, 1, 1, 3, 0, 0), "America/New_York", dt.date(2025, 12, 30)),
    # `now` given in another zone: only the instant matters.
    (dt.datetime(2026, 11, 27, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=9))), "UTC",
     dt.date(2026, 11, 25)),
])
def test_parse_run_date_auto_is_yesterday_in_the_zone(now, timezone, expected):
    assert span.parse_run_date("auto", timezone, now=now) == expected


def test_parse_run_date_auto_without_now_is_yesterday_today():
    before = dt.datetime.now(UTC)
    got = span.parse_run_date("auto", "Asia/Seoul")
    after = dt.datetime.now(UTC)
    seoul = span.zone("Asia/Seoul")
    candidates = {before.astimezone(seoul).date() - dt.timedelta(days=1),
                  after.astimezone(seoul).date() - dt.timedelta(days=1)}
    assert got in candidates


@pytest.mark.parametrize("value", [
    "", "26-11-2026", "2026/11/26", "20261126", "2026-11-26T00:00", "2026-11-26 ",
    " 2026-11-26", "2026-11-26\n", "2026-1-26", "Auto", "yesterday", "2026-02-30",
    "2026-13-01", "2026-00-10", "0000-01-01", "２０２６-１１-２６", None,
])
def test_parse_run_date_rejects_malformed_dates_naming_the_option(value):
    with pytest.raises(ValueError, match="--run_date="):
        span.parse_run_date(value, "Asia/Seoul")


def test_resolve_span_is_parse_then_day_span():
    assert span.resolve_span("2026-11-26", "Asia/Seoul") == span.day_span(
        dt.date(2026, 11, 26), "Asia/Seoul")
    assert span.resolve_span("auto", "Asia/Seoul", now=utc(2026, 11, 27, 3)) == span.day_span(
        dt.date(2026, 11, 26), "Asia/Seoul")


# ---------------------------------------------------------------- day_span

def test_day_span_seoul():
    s = span.day_span(dt.date(2026, 11, 26), "Asia/Seoul")
    assert s.run_date == dt.date(2026, 11, 26)
    assert s.timezone == "Asia/Seoul"
    assert s.start == utc(2026, 11, 25, 15, 0, 0)
    assert s.end == utc(2026, 11, 26, 15, 0, 0)
    assert s.start.tzinfo is UTC and s.end.tzinfo is UTC
    assert s.hours == 24.0
    assert s.start_us == epoch_us(utc(2026, 11, 25, 15)) == 1_795_618_800_000_000
    assert s.end_us == epoch_us(utc(2026, 11, 26, 15)) == 1_795_705_200_000_000
    assert s.end_us - s.start_us == 86_400_000_000


def test_day_span_utc():
    s = span.day_span(dt.date(2026, 11, 26), "UTC")
    assert (s.start, s.end) == (utc(2026, 11, 26), utc(2026, 11, 27))
    assert s.hours == 24.0


def test_day_span_spring_forward_is_23_hours():
    s = span.day_span(dt.date(2026, 3, 8), "America/New_York")
    assert s.start == utc(2026, 3, 8, 5)    # 00:00 EST (UTC-5)
    assert s.end == utc(2026, 3, 9, 4)      # 00:00 EDT (UTC-4)
    assert s.hours == 23.0
    assert s.end_us - s.start_us == 23 * 3_600_000_000


def test_day_span_fall_back_is_25_hours():
    s = span.day_span(dt.date(2026, 11, 1), "America/New_York")
    assert s.start == utc(2026, 11, 1, 4)   # 00:00 EDT
    assert s.end == utc(2026, 11, 2, 5)     # 00:00 EST
    assert s.hours == 25.0
    assert s.end_us - s.start_us == 25 * 3_600_000_000


def test_day_spans_of_consecutive_days_tile_time():
    for timezone in ("Asia/Seoul", "America/New_York", "UTC", "Australia/Lord_Howe"):
        day = dt.date(2026, 3, 1)
        previous = span.day_span(day, timezone)
        for _ in range(300):
            day += dt.timedelta(days=1)
            current = span.day_span(day, timezone)
            assert current.start == previous.end, (timezone, day)
            assert current.hours in (23.0, 23.5, 24.0, 24.5, 25.0), (timezone, day)
            previous = current


def test_start_us_and_end_us_keep_microseconds_and_pre_epoch_instants():
    s = span.DaySpan(dt.date(1969, 12, 31), "UTC", utc(1969, 12, 31, 23, 59, 59, 999999),
                     utc(2026, 11, 26, 3, 4, 5, 123456))
    assert s.start_us == -1
    assert s.end_us == epoch_us(utc(2026, 11, 26, 3, 4, 5, 123456)) == 1_795_662_245_123_456


# ---------------------------------------------------------------- utc_dates

@pytest.mark.parametrize("run_date, timezone, expected", [
    (dt.date(2026, 11, 26), "Asia/Seoul", [dt.date(2026, 11, 25), dt.date(2026, 11, 26)]),
    (dt.date(2026, 11, 26), "UTC", [dt.date(2026, 11, 26)]),
    (dt.date(2026, 3, 8), "America/New_York", [dt.date(2026, 3, 8), dt.date(2026, 3, 9)]),
    (dt.date(2026, 11, 1), "America/New_York", [dt.date(2026, 11, 1), dt.date(2026, 11, 2)]),
    (dt.date(2026, 11, 26), "Pacific/Kiritimati", [dt.date(2026, 11, 25), dt.date(2026, 11, 26)]),
    (dt.date(2026, 11, 26), "Etc/GMT+12", [dt.date(2026, 11, 26), dt.date(2026, 11, 27)]),
    (dt.date(2026, 12, 31), "Asia/Seoul", [dt.date(2026, 12, 30), dt.date(2026, 12, 31)]),
    (dt.date(2027, 1, 1), "America/New_York", [dt.date(2027, 1, 1), dt.date(2027, 1, 2)]),
])
def test_utc_dates_are_the_partitions_overlapping_the_span(run_date, timezone, expected):
    assert span.day_span(run_date, timezone).utc_dates() == expected


def test_utc_dates_end_is_exclusive():
    s = span.DaySpan(dt.date(2026, 11, 26), "UTC", utc(2026, 11, 26, 23), utc(2026, 11, 28))
    assert s.utc_dates() == [dt.date(2026, 11, 26), dt.date(2026, 11, 27)]
    s = span.DaySpan(dt.date(2026, 11, 26), "UTC", utc(2026, 11, 26, 23),
                     utc(2026, 11, 28, 0, 0, 0, 1))
    assert s.utc_dates() == [dt.date(2026, 11, 26), dt.date(2026, 11, 27), dt.date(2026, 11, 28)]


# ---------------------------------------------------------------- bad time zones

@pytest.mark.parametrize("timezone", [
    "", "Nowhere/City", "Asia/Seoul ", "KST+9", "America", "../etc/passwd", "/etc/localtime",
    "Asia/../Asia/Seoul",
])
def test_bad_timezone_raises_naming_the_option(timezone):
    with pytest.raises(ValueError, match="--timezone="):
        span.zone(timezone)
    with pytest.raises(ValueError, match="--timezone="):
        span.day_span(dt.date(2026, 11, 26), timezone)
    with pytest.raises(ValueError, match="--timezone="):
        span.parse_run_date("2026-11-26", timezone)
    with pytest.raises(ValueError, match="--timezone="):
        span.parse_run_date("auto", timezone, now=utc(2026, 11, 26))
