"""The built-in business-day calendar (plugins.calendar) and its BPMN script functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from engine import timeclock
from engine.plugins import create_plugin_manager
from plugins.calendar import add_business_days, business_days_from_now, is_business_day
from tests import processes
from tests.conftest import only_task

# 2030-01-03 is a Thursday
THU = datetime(2030, 1, 3, 10, 30, tzinfo=UTC)
FRI = datetime(2030, 1, 4, 16, 45, tzinfo=UTC)
SAT = datetime(2030, 1, 5, 10, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_holidays(monkeypatch):
    monkeypatch.delenv("SDF_HOLIDAYS", raising=False)


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (THU, 0, THU),
        (THU, 1, datetime(2030, 1, 4, 10, 30, tzinfo=UTC)),  # Friday
        (THU, 2, datetime(2030, 1, 7, 10, 30, tzinfo=UTC)),  # the weekend is skipped: Monday
        (THU, 5, datetime(2030, 1, 10, 10, 30, tzinfo=UTC)),  # a week later
        (THU, 10, datetime(2030, 1, 17, 10, 30, tzinfo=UTC)),
        (FRI, 1, datetime(2030, 1, 7, 16, 45, tzinfo=UTC)),  # Friday + 1 is Monday, same time
    ],
)
def test_weekends_are_skipped_and_the_time_of_day_is_kept(start, days, expected):
    assert add_business_days(start, days) == expected


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        (SAT, 0, datetime(2030, 1, 7, 10, 30, tzinfo=UTC)),  # counts from Monday
        (SAT, 1, datetime(2030, 1, 8, 10, 30, tzinfo=UTC)),  # Tuesday
        (SAT + timedelta(days=1), 1, datetime(2030, 1, 8, 10, 30, tzinfo=UTC)),  # Sunday too
    ],
)
def test_a_weekend_start_counts_from_the_next_business_day(start, days, expected):
    assert add_business_days(start, days) == expected


def test_holidays_come_from_sdf_holidays_read_on_every_call(monkeypatch):
    monkeypatch.setenv("SDF_HOLIDAYS", "2030-01-04, 2030-01-07")  # Friday and Monday
    assert add_business_days(THU, 1) == datetime(2030, 1, 8, 10, 30, tzinfo=UTC)
    assert add_business_days(FRI, 0) == datetime(2030, 1, 8, 16, 45, tzinfo=UTC)  # a holiday start moves on
    assert not is_business_day(date(2030, 1, 7)) and is_business_day(date(2030, 1, 8))
    monkeypatch.setenv("SDF_HOLIDAYS", "")
    assert add_business_days(THU, 1) == datetime(2030, 1, 4, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", ["2030-13-01", "25.12.2030", "2030-01-04,,2030-01-07", "Christmas"])
def test_a_malformed_holiday_list_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("SDF_HOLIDAYS", value)
    with pytest.raises(ValueError, match="SDF_HOLIDAYS=.* is malformed"):
        add_business_days(THU, 1)


@pytest.mark.parametrize("days", [-1, 1.5, True, "2", None])
def test_days_must_be_a_whole_number_of_zero_or_more(days):
    with pytest.raises(ValueError, match="days must be a whole number"):
        add_business_days(THU, days)


def test_starts_may_be_iso_strings_naive_means_utc_and_other_zones_count_their_own_days():
    assert add_business_days("2030-01-04T16:45:00+00:00", 1) == datetime(2030, 1, 7, 16, 45, tzinfo=UTC)
    assert add_business_days(datetime(2030, 1, 4, 16, 45), 1) == datetime(2030, 1, 7, 16, 45, tzinfo=UTC)
    tokyo = timezone(timedelta(hours=9))
    saturday_in_tokyo = datetime(2030, 1, 5, 8, 0, tzinfo=tokyo)  # still Friday in UTC
    assert add_business_days(saturday_in_tokyo, 0) == datetime(2030, 1, 7, 8, 0, tzinfo=tokyo)
    with pytest.raises(ValueError, match="start must be"):
        add_business_days("next Friday", 1)


def test_business_days_from_now_follows_the_engine_clock():
    with timeclock.using(lambda: FRI):
        due = business_days_from_now(1)
    assert due == "2030-01-07T16:45:00+00:00"  # an ISO 8601 string, as a timeDate timer wants
    assert datetime.fromisoformat(due) == add_business_days(FRI, 1)


def test_scripts_can_call_the_functions(sqlite_engine):
    environment = sqlite_engine.script_engine.environment
    with timeclock.using(lambda: THU):
        assert environment.evaluate("business_days_from_now(2)", {}) == "2030-01-07T10:30:00+00:00"
        assert (
            environment.evaluate("add_business_days(start, n).date().isoformat()", {"start": SAT, "n": 1})
            == "2030-01-08"
        )
        assert environment.evaluate("is_business_day(now())", {}) is True


def test_the_plugin_is_built_in_and_can_be_disabled():
    names = {name for name, plugin in create_plugin_manager(entry_points=False).list_name_plugin() if plugin}
    assert "plugins.calendar" in names
    disabled = create_plugin_manager(entry_points=False, disabled=["plugins.calendar"])
    assert disabled.get_plugin("plugins.calendar") is None


def test_a_malformed_setting_stops_the_script_with_an_incident_naming_it(team, tmp_path, monkeypatch):
    pid = "due_in_business_days"
    team.deploy(
        [processes.write(tmp_path, f"{pid}.bpmn", processes.script_then_task(pid, "due = add_business_days(now(), 3)"))]
    )
    instance = team.start(pid, {})
    monkeypatch.setenv("SDF_HOLIDAYS", "2030-12-25,2030-13-01")
    after = team.complete(only_task(instance)["id"], "pat", {})
    assert after["status"] == "error"
    [incident] = after["incidents"]
    assert incident["element_id"] == "work"
    assert "SDF_HOLIDAYS='2030-12-25,2030-13-01' is malformed: '2030-13-01' is not a date" in incident["message"]
    monkeypatch.setenv("SDF_HOLIDAYS", "2030-12-25")
    fixed = team.retry_incident(incident["id"], "dana")
    assert fixed["status"] == "running" and only_task(fixed)["element_id"] == "check"
