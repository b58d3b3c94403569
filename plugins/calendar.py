"""Built-in business-day calendar: script functions for reminders and escalations.

Service-level promises are counted in business days ("we remind the client after two business
days"), which an ISO 8601 duration cannot express. This plugin gives BPMN scripts, conditions
and timer expressions three functions:

* ``business_days_from_now(days)``: the moment ``days`` business days from now, as an ISO 8601
  string, ready for a timer: ``<bpmn:timeDate>business_days_from_now(2)</bpmn:timeDate>``;
* ``add_business_days(start, days)``: the same from any ``start`` (a datetime or an ISO 8601
  string), as a datetime;
* ``is_business_day(day)``: whether a date (or a datetime's date) is a business day.

Business days are Monday to Friday, except the holidays listed in ``SDF_HOLIDAYS``
(comma-separated ISO dates, e.g. ``2025-12-25,2025-12-26``), read on every call like the
scoring settings; a malformed value raises ``ValueError`` naming the variable (an incident
in a script). The time of day is kept, and a start on a weekend or holiday counts from the
next business day at the same time: Saturday 10:00 plus one business day is Tuesday 10:00.
Days are those of the start's time zone; ``now`` is the engine clock, in UTC.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from engine import timeclock
from engine.hookspecs import hookimpl

HOLIDAYS_VAR = "SDF_HOLIDAYS"
WEEKEND = (5, 6)  # Saturday, Sunday (date.weekday())
ONE_DAY = timedelta(days=1)


@hookimpl(trylast=True)
def register_script_functions(register):
    register("business_days_from_now", business_days_from_now)
    register("add_business_days", add_business_days)
    register("is_business_day", is_business_day)


def business_days_from_now(days: int) -> str:
    """``days`` business days after the engine's current time, as an ISO 8601 string (UTC)."""
    return add_business_days(timeclock.now(), days).isoformat()


def add_business_days(start: datetime | str, days: int) -> datetime:
    """``start`` moved forward by ``days`` business days, at the same time of day.

    A ``start`` on a weekend or holiday first moves to the next business day; a naive
    ``start`` (or ISO string without offset) is taken as UTC.
    """
    moment = _moment(start)
    remaining = _day_count(days)
    holidays = holiday_dates()
    while not _is_business(moment.date(), holidays):
        moment += ONE_DAY
    while remaining:
        moment += ONE_DAY
        if _is_business(moment.date(), holidays):
            remaining -= 1
    return moment


def is_business_day(day: date | datetime | str) -> bool:
    """Whether ``day`` is a weekday that is not a holiday in ``SDF_HOLIDAYS``."""
    if isinstance(day, str):
        day = _moment(day)
    if isinstance(day, datetime):
        day = day.date()
    if not isinstance(day, date):
        raise ValueError(f"is_business_day needs a date, a datetime or an ISO 8601 string, got {day!r}")
    return _is_business(day, holiday_dates())


def holiday_dates() -> frozenset[date]:
    """The holidays from ``SDF_HOLIDAYS`` (none when unset or empty)."""
    return _parse_holidays(os.environ.get(HOLIDAYS_VAR, "").strip())


def _is_business(day: date, holidays: frozenset[date]) -> bool:
    return day.weekday() not in WEEKEND and day not in holidays


def _moment(start) -> datetime:
    moment = _parsed(datetime.fromisoformat, start) if isinstance(start, str) else start
    if not isinstance(moment, datetime):
        raise ValueError(f"start must be a datetime or an ISO 8601 date and time, got {start!r}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _day_count(days) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"days must be a whole number of business days, 0 or more, got {days!r}")
    return days


@lru_cache(maxsize=16)
def _parse_holidays(raw: str) -> frozenset[date]:
    if not raw:
        return frozenset()
    holidays = set()
    for entry in (part.strip() for part in raw.split(",")):
        day = _parsed(date.fromisoformat, entry)
        if day is None:
            raise ValueError(
                f"{HOLIDAYS_VAR}={raw!r} is malformed: {entry!r} is not a date "
                "(expected comma-separated ISO dates, e.g. '2025-12-25,2025-12-26')"
            )
        holidays.add(day)
    return frozenset(holidays)


def _parsed(parse, text: str):
    """``parse(text)``, or None when it is no valid value. The caller raises its own error outside
    the ``except`` block: the engine reports the innermost exception of a chain as the incident."""
    try:
        return parse(text)
    except ValueError:
        return None
