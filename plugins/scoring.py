"""Built-in scoring rules: risk, ITIL priority, inbox task priority and client satisfaction.

Every delivery organisation tunes these rules, so they live behind one-answer hooks
(:mod:`engine.hookspecs`) instead of inside BPMN. A process calls ``score_risk(probability,
impact)``, ``score_priority(impact, urgency)`` or ``score_satisfaction(answers)`` from a script
or condition; the function asks the plugin manager, and the first plugin with an answer decides.
These built-ins are ``trylast``, so an installed plugin replaces a rule without touching a
single process, and two settings cover the common adjustments without any plugin:

* ``SDF_RISK_BANDS`` (default ``low:1-4,medium:5-9,high:10-16,critical:17-25``): the band of
  each risk score. The ranges must cover 1-25 without gaps or overlaps.
* ``SDF_PRIORITY_TARGET_HOURS`` (default ``P1:4,P2:8,P3:24,P4:72``): target resolution hours
  for each of the four priorities.

Both are read on every call (a test or an operator can change them at run time) and parsed
once per distinct value. A malformed value raises ``ValueError`` naming the variable.

The rules:

* risk: score = probability x impact on a 5x5 matrix (each an int 1-5), banded as above.
* priority: the ITIL impact x urgency matrix below (``high``/``medium``/``low``, any case).
* task priority (inbox order, 0-100): the BPMN ``priority`` property plus bonuses for the
  client tier, a due date within 24 hours (or already past) and an incident priority of
  P1/P2 in the process data, clamped to 0-100.
* satisfaction: CSAT = % of responses scoring 4-5; NPS = % promoters (9-10) minus
  % detractors (0-6); both rounded to one decimal and banded by :data:`SATISFACTION_BANDS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType

from engine import timeclock
from engine.hookspecs import hookimpl
from engine.humantasks import DEFAULT_PRIORITY

# -- risk ----------------------------------------------------------------------------------------
RISK_BANDS_VAR = "SDF_RISK_BANDS"
DEFAULT_RISK_BANDS = "low:1-4,medium:5-9,high:10-16,critical:17-25"
RISK_SCALE = (1, 5)  # probability and impact, inclusive
RISK_SCORES = (RISK_SCALE[0] * RISK_SCALE[0], RISK_SCALE[1] * RISK_SCALE[1])  # 1..25

# -- priority ------------------------------------------------------------------------------------
TARGET_HOURS_VAR = "SDF_PRIORITY_TARGET_HOURS"
DEFAULT_TARGET_HOURS = "P1:4,P2:8,P3:24,P4:72"
LEVELS = ("high", "medium", "low")
PRIORITIES = ("P1", "P2", "P3", "P4")
# (impact, urgency) -> priority
PRIORITY_MATRIX = {
    ("high", "high"): "P1",
    ("high", "medium"): "P2",
    ("high", "low"): "P3",
    ("medium", "high"): "P2",
    ("medium", "medium"): "P3",
    ("medium", "low"): "P4",
    ("low", "high"): "P3",
    ("low", "medium"): "P4",
    ("low", "low"): "P4",
}

# -- task priority (inbox order) -----------------------------------------------------------------
TASK_PRIORITY_RANGE = (0, 100)
TIER_BONUS = {"platinum": 20, "gold": 10}  # data["client_tier"]
INCIDENT_PRIORITY_BONUS = {"P1": 10, "P2": 5}  # data["priority"]
DUE_SOON = timedelta(hours=24)
DUE_SOON_BONUS = 15
OVERDUE_BONUS = 25

# -- satisfaction --------------------------------------------------------------------------------
CSAT_SCALE = (1, 5)
CSAT_SATISFIED = 4  # a response of 4 or 5 counts as satisfied
NPS_SCALE = (0, 10)
NPS_PROMOTER = 9  # 9-10
NPS_DETRACTOR = 6  # 0-6
# Worst band first: (band, NPS below, CSAT below); the first one breached by a present measure wins.
SATISFACTION_BANDS = (("critical", 0, 50), ("at_risk", 30, 75))
SATISFIED_BAND = "healthy"


# -- hooks ---------------------------------------------------------------------------------------
@hookimpl(trylast=True)
def score_risk(probability, impact):
    score = _scale_value("probability", probability) * _scale_value("impact", impact)
    return {"score": score, "band": risk_band(score)}


@hookimpl(trylast=True)
def score_priority(impact, urgency):
    priority = PRIORITY_MATRIX[(_level("impact", impact), _level("urgency", urgency))]
    return {"priority": priority, "target_hours": target_hours()[priority]}


@hookimpl(trylast=True)
def score_task_priority(task, data):
    return task_priority(task, data, timeclock.now())  # the engine's clock: tests and simulations move it


@hookimpl(trylast=True)
def score_satisfaction(answers):
    if not isinstance(answers, Mapping):
        raise ValueError(f"score_satisfaction needs a dict with 'csat' and/or 'nps', got {type(answers).__name__}")
    csat_responses = _responses(answers, "csat", CSAT_SCALE)
    nps_responses = _responses(answers, "nps", NPS_SCALE)
    if not csat_responses and not nps_responses:
        raise ValueError("score_satisfaction needs at least one 'csat' (1-5) or 'nps' (0-10) response")
    csat = _csat(csat_responses) if csat_responses else None
    nps = _nps(nps_responses) if nps_responses else None
    return {"csat": csat, "nps": nps, "band": satisfaction_band(csat, nps)}


@hookimpl(trylast=True)
def register_script_functions(register, hook):
    for name, func in script_functions(hook).items():
        register(name, func)


def script_functions(hook) -> dict:
    """The BPMN-callable functions; each asks the hook, so the first plugin with an answer decides."""

    def risk(probability, impact):
        return hook.score_risk(probability=probability, impact=impact)

    def priority(impact, urgency):
        return hook.score_priority(impact=impact, urgency=urgency)

    def satisfaction(answers):
        return hook.score_satisfaction(answers=answers)

    return {"score_risk": risk, "score_priority": priority, "score_satisfaction": satisfaction}


# -- risk ----------------------------------------------------------------------------------------
def risk_band(score: int) -> str:
    """The configured band holding ``score`` (1-25)."""
    return next(name for name, low, high in risk_bands() if low <= score <= high)


def risk_bands() -> tuple[tuple[str, int, int], ...]:
    """(name, low, high) per band, lowest first, from ``SDF_RISK_BANDS``."""
    return _parse_risk_bands(_setting(RISK_BANDS_VAR, DEFAULT_RISK_BANDS))


def _scale_value(name: str, value) -> int:
    low, high = RISK_SCALE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


@lru_cache(maxsize=16)
def _parse_risk_bands(raw: str) -> tuple[tuple[str, int, int], ...]:
    bands = sorted((_band(raw, name, value) for name, value in _entries(RISK_BANDS_VAR, raw)), key=lambda b: b[1])
    names = [name for name, _, _ in bands]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise _malformed(RISK_BANDS_VAR, raw, f"band {twice[0]!r} is given twice")
    expected = RISK_SCORES[0]
    for name, low, high in bands:
        if low != expected:
            gap = f"leaves {_span(expected, low - 1)} without a band"
            problem = "overlaps the previous band" if low < expected else gap
            raise _malformed(RISK_BANDS_VAR, raw, f"band {name!r} ({low}-{high}) {problem}")
        expected = high + 1
    if expected - 1 != RISK_SCORES[1]:
        raise _malformed(RISK_BANDS_VAR, raw, f"{_span(expected, RISK_SCORES[1])} has no band")
    return tuple(bands)


def _span(low: int, high: int) -> str:
    return f"score {low}" if low == high else f"scores {low}-{high}"


def _band(raw: str, name: str, value: str) -> tuple[str, int, int]:
    low_text, dash, high_text = value.partition("-")
    low, high = _whole(low_text), _whole(high_text)
    if not dash or low is None or high is None:
        raise _malformed(RISK_BANDS_VAR, raw, f"band {name!r} needs a range like 1-4, got {value!r}")
    if not RISK_SCORES[0] <= low <= high <= RISK_SCORES[1]:
        raise _malformed(RISK_BANDS_VAR, raw, f"band {name!r} range {value!r} is not within 1-25 (low first)")
    return name, low, high


# -- priority ------------------------------------------------------------------------------------
def target_hours() -> Mapping[str, int]:
    """Target resolution hours per priority, from ``SDF_PRIORITY_TARGET_HOURS``."""
    return _parse_target_hours(_setting(TARGET_HOURS_VAR, DEFAULT_TARGET_HOURS))


def _level(name: str, value) -> str:
    level = value.strip().lower() if isinstance(value, str) else None
    if level not in LEVELS:
        raise ValueError(f"{name} must be one of {', '.join(LEVELS)} (any case), got {value!r}")
    return level


@lru_cache(maxsize=16)
def _parse_target_hours(raw: str) -> Mapping[str, int]:
    hours: dict[str, int] = {}
    for name, value in _entries(TARGET_HOURS_VAR, raw):
        priority, number = name.upper(), _whole(value)
        if priority not in PRIORITIES:
            raise _malformed(TARGET_HOURS_VAR, raw, f"unknown priority {name!r} (use {', '.join(PRIORITIES)})")
        if priority in hours:
            raise _malformed(TARGET_HOURS_VAR, raw, f"{priority} is given twice")
        if number is None or number <= 0:
            raise _malformed(TARGET_HOURS_VAR, raw, f"{priority} needs a positive whole number of hours, got {value!r}")
        hours[priority] = number
    missing = [p for p in PRIORITIES if p not in hours]
    if missing:
        raise _malformed(TARGET_HOURS_VAR, raw, f"no hours for {', '.join(missing)}")
    return MappingProxyType(hours)


# -- task priority -------------------------------------------------------------------------------
def task_priority(task: Mapping, data: Mapping | None, now: datetime) -> int:
    """The inbox priority of a task at ``now``: BPMN priority plus bonuses, clamped to 0-100."""
    data = data or {}
    base = task.get("priority")
    score = (
        (DEFAULT_PRIORITY if base is None else int(base))
        + _tier_bonus(data.get("client_tier"))
        + _due_bonus(task.get("due_at"), now)
        + _incident_bonus(data.get("priority"))
    )
    low, high = TASK_PRIORITY_RANGE
    return max(low, min(high, score))


def _tier_bonus(tier) -> int:
    return TIER_BONUS.get(tier.strip().lower(), 0) if isinstance(tier, str) else 0


def _incident_bonus(priority) -> int:
    if isinstance(priority, Mapping):  # the whole result of score_priority stored as `priority`
        priority = priority.get("priority")
    return INCIDENT_PRIORITY_BONUS.get(priority.strip().upper(), 0) if isinstance(priority, str) else 0


def _due_bonus(due_at, now: datetime) -> int:
    due = _aware(datetime.fromisoformat(due_at) if isinstance(due_at, str) else due_at)
    if due is None:
        return 0
    if due <= now:
        return OVERDUE_BONUS
    return DUE_SOON_BONUS if due - now <= DUE_SOON else 0


def _aware(moment: datetime | None) -> datetime | None:
    """Naive datetimes are UTC (the engine stores UTC)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


# -- satisfaction --------------------------------------------------------------------------------
def satisfaction_band(csat: float | None, nps: float | None) -> str:
    for band, nps_below, csat_below in SATISFACTION_BANDS:
        if (nps is not None and nps < nps_below) or (csat is not None and csat < csat_below):
            return band
    return SATISFIED_BAND


def _csat(responses: list[int]) -> float:
    return _percent(sum(1 for r in responses if r >= CSAT_SATISFIED), len(responses))


def _nps(responses: list[int]) -> float:
    promoters = sum(1 for r in responses if r >= NPS_PROMOTER)
    detractors = sum(1 for r in responses if r <= NPS_DETRACTOR)
    return _percent(promoters - detractors, len(responses))


def _percent(count: int, total: int) -> float:
    return round(100 * count / total, 1) or 0.0  # `or` turns -0.0 into 0.0


def _responses(answers: Mapping, key: str, scale: tuple[int, int]) -> list[int]:
    """The responses under ``key`` as a list (one int or a list of ints; absent means none)."""
    value = answers.get(key)
    if value is None:
        return []
    responses = list(value) if isinstance(value, list | tuple) else [value]
    low, high = scale
    for response in responses:
        if isinstance(response, bool) or not isinstance(response, int) or not low <= response <= high:
            raise ValueError(f"{key} responses must be whole numbers from {low} to {high}, got {response!r}")
    return responses


# -- settings ------------------------------------------------------------------------------------
def _setting(variable: str, default: str) -> str:
    return os.environ.get(variable, "").strip() or default


def _entries(variable: str, raw: str) -> list[tuple[str, str]]:
    """``name:value`` pairs of a comma-separated setting, stripped."""
    entries = []
    for entry in raw.split(","):
        name, colon, value = (part.strip() for part in entry.partition(":"))
        if not colon or not name or not value:
            raise _malformed(variable, raw, f"entry {entry.strip()!r} is not name:value")
        entries.append((name, value))
    return entries


def _whole(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _malformed(variable: str, raw: str, problem: str) -> ValueError:
    example = {RISK_BANDS_VAR: DEFAULT_RISK_BANDS, TARGET_HOURS_VAR: DEFAULT_TARGET_HOURS}[variable]
    return ValueError(f"{variable}={raw!r} is malformed: {problem} (expected e.g. {example!r})")
