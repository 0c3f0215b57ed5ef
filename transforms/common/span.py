"""The run's day: a local calendar day in a time zone, and the UTC partitions it overlaps."""

import datetime as dt
import re
from typing import List, NamedTuple, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class DaySpan(NamedTuple):
    """[start, end) of one local day, as UTC datetimes and as microseconds since the epoch."""

    run_date: dt.date
    timezone: str
    start: dt.datetime
    end: dt.datetime

    @property
    def start_us(self) -> int:
        return _to_us(self.start)

    @property
    def end_us(self) -> int:
        return _to_us(self.end)

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600.0

    def utc_dates(self) -> List[dt.date]:
        """The UTC partition dates that overlap [start, end)."""
        first = self.start.date()
        last = (self.end - dt.timedelta(microseconds=1)).date()
        return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _to_us(value: dt.datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            f"--timezone={timezone!r} is not an IANA time zone name (e.g. Asia/Seoul, UTC)") from err


def parse_run_date(value: str, timezone: str, now: Optional[dt.datetime] = None) -> dt.date:
    """`YYYY-MM-DD`, or `auto` for yesterday in `timezone` (at `now`, default the current time)."""
    tz = zone(timezone)
    if value == "auto":
        now = now or dt.datetime.now(dt.timezone.utc)
        return now.astimezone(tz).date() - dt.timedelta(days=1)
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise ValueError(f"--run_date={value!r} must be YYYY-MM-DD or auto")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"--run_date={value!r} is not a calendar date: {err}") from err


def day_span(run_date: dt.date, timezone: str) -> DaySpan:
    """The local day `run_date` in `timezone`, from its 00:00 to the next day's 00:00
    (23 or 25 hours long on a daylight-saving change)."""
    tz = zone(timezone)
    start = dt.datetime.combine(run_date, dt.time(0), tzinfo=tz).astimezone(dt.timezone.utc)
    end = dt.datetime.combine(run_date + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(
        dt.timezone.utc)
    return DaySpan(run_date, timezone, start, end)


def resolve_span(run_date: str, timezone: str, now: Optional[dt.datetime] = None) -> DaySpan:
    return day_span(parse_run_date(run_date, timezone, now), timezone)


def split_boundary_us(end_us: int, eval_split: str, eval_hours: float) -> int:
    """The day's train/eval boundary in microseconds: end - eval_hours of elapsed time
    (--eval_split=time) or the end (user_hash: the split is by user, not by time)."""
    if eval_split == "time":
        return int(end_us - round(eval_hours * 3600 * 1_000_000))
    if eval_split == "user_hash":
        return int(end_us)
    raise ValueError(f"--eval_split={eval_split!r} must be time or user_hash")
