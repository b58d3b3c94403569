"""Timer start events: processes that start themselves on a schedule.

A deployed process whose top-level start event carries a timer gets one ``start_timers`` row
(per process id, always pointing at the newest version): when it is due, the next due time,
how many occurrences remain and the interval. The row is written by the deploy that stores a
new version (:func:`schedule`, called from ``DefinitionStore._store`` in the deploy's
transaction) and removed when the newest version no longer starts on a timer.

What the timer values mean (they are Python expressions, so literals are quoted):

- ``timeCycle "R/PT1H"``: every hour, the first one hour after the deploy; ``"R3/PT10M"``
  three times; ``"R/2030-01-01T09:00:00+00:00/P7D"`` weekly from that instant on (when the
  start lies in the past at deploy, the first occurrence still in the future). Calendar
  durations (months, years) become a fixed interval measured from the first occurrence.
- ``timeDate "2030-01-01T09:00:00+00:00"``: once, at that instant (a date already past at
  deploy fires at the next tick). Without an offset the server's zone applies, as in
  SpiffWorkflow.
- ``timeDuration "PT1H"``: once, that long after the deploy.

The schedule must be known when the process is deployed, so only literal values are accepted;
anything else (a variable, a call) is refused by the deploy with ``file:line: element-id``.
Redeploying a version whose timer value did not change keeps the running schedule (a form
change does not shift an hourly job); a changed value starts the schedule afresh.

Firing (:func:`fire_due`, run by :class:`engine.background.BackgroundWorker`): for each due row,
one write transaction locks the row (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN
IMMEDIATE`` on SQLite), checks it is still due, starts one instance of the row's definition
and moves the row on, so the new instance and the schedule commit together and two workers
firing at once start exactly one instance per occurrence (the second one re-reads the moved
row and finds nothing due). Occurrences missed while nothing ran are not made up: one instance
starts for all of them and the next due time is the first one in the future; a bounded cycle
counts the skipped occurrences as used.
"""

from __future__ import annotations

import ast
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from lxml import etree
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    CycleTimerEventDefinition,
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from . import startevents, transitions
from .audit import ENGINE_ACTOR, EventType
from .errors import DefinitionInvalid
from .schema import start_timers
from .validation import Problem

log = logging.getLogger(__name__)
_KINDS = {
    CycleTimerEventDefinition: "timeCycle",
    TimeDateEventDefinition: "timeDate",
    DurationTimerEventDefinition: "timeDuration",
}


@dataclass(frozen=True)
class Plan:
    """A schedule: the first due time, occurrences (None = unbounded), interval (None = once)."""

    first_due: datetime
    remaining: int | None
    interval: timedelta | None


# -- deploy ------------------------------------------------------------------------------------
def schedule(conn, process, definition_id: int, now: datetime) -> dict | None:
    """Keep the start schedule of ``process`` (a newly stored version) up to date.

    ``process`` is the :class:`engine.parsing.CompiledProcess` just stored as definition
    ``definition_id``. Returns the schedule row as a dict, or None when the process does not
    start on a timer (any earlier schedule is removed). Raises DefinitionInvalid for a timer
    value that cannot be scheduled at deploy.
    """
    found = _timer_start_event(process)
    if found is None:
        conn.execute(start_timers.delete().where(start_timers.c.process_id == process.process_id))
        return None
    element_id, kind, value = found
    expression = f"{kind} {value}"
    existing = conn.execute(
        sa.select(start_timers.c.id, start_timers.c.expression).where(start_timers.c.process_id == process.process_id)
    ).first()
    if existing is not None and existing.expression == expression:  # same schedule: keep its next due time
        conn.execute(
            start_timers.update()
            .where(start_timers.c.id == existing.id)
            .values(definition_id=definition_id, element_id=element_id, updated_at=now)
        )
        return _row(conn, process.process_id)
    plan = _plan(kind, value, now)
    if plan is None:  # a bounded cycle whose every occurrence lies in the past
        conn.execute(start_timers.delete().where(start_timers.c.process_id == process.process_id))
        return None
    values = {
        "definition_id": definition_id,
        "element_id": element_id,
        "expression": expression,
        "next_due": plan.first_due,
        "remaining": plan.remaining,
        "interval_seconds": plan.interval.total_seconds() if plan.interval is not None else None,
        "updated_at": now,
    }
    if existing is None:
        conn.execute(start_timers.insert().values(process_id=process.process_id, created_at=now, **values))
    else:
        conn.execute(start_timers.update().where(start_timers.c.id == existing.id).values(**values))
    return _row(conn, process.process_id)


def _timer_start_event(process) -> tuple[str, str, str] | None:
    """(element id, timer kind, literal value) of the process's timer start event, or None."""
    timed = [
        (start, _KINDS[type(start.event_definition)])
        for start in startevents.start_events(process.spec)
        if isinstance(start.event_definition, TimerEventDefinition) and type(start.event_definition) in _KINDS
    ]
    if not timed:
        return None
    if len(timed) > 1:
        start, kind = timed[1]
        raise _refuse(process, start.bpmn_id, kind, "a process can start on one timer only; merge the schedules")
    start, kind = timed[0]
    source = (start.event_definition.expression or "").strip()
    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, str):
        raise _refuse(
            process,
            start.bpmn_id,
            kind,
            f"the {kind} of a timer start event must be a quoted ISO 8601 literal such as "
            f'"R/PT1H" (it is scheduled at deploy, before any data exists); got {source}',
        )
    try:
        _plan(kind, value.strip(), datetime.now().astimezone())
    except ValueError as exc:
        raise _refuse(process, start.bpmn_id, kind, str(exc)) from None
    return start.bpmn_id, kind, value.strip()


def _plan(kind: str, value: str, now: datetime) -> Plan | None:
    """The schedule a timer value gives at ``now``; ValueError when the value is not usable."""
    try:
        if kind == "timeDate":
            due = TimerEventDefinition.parse_time_or_duration(value)
            if not isinstance(due, datetime):
                raise ValueError
            return Plan(due, 1, None)
        if kind == "timeDuration":
            if not value.upper().startswith("P"):
                raise ValueError
            delay = TimerEventDefinition.get_timedelta_from_start(TimerEventDefinition.parse_iso_duration(value), now)
            return Plan(now + delay, 1, None)
        first, remaining, interval = _parse_cycle(value, now)
    except ValueError as exc:
        if exc.args:
            raise
        raise ValueError(f"{kind} value {value!r} is not {_EXAMPLES[kind]}") from None
    except Exception:  # noqa: BLE001 - SpiffWorkflow's parsers raise plain Exception
        raise ValueError(f"{kind} value {value!r} is not {_EXAMPLES[kind]}") from None
    if first < now:  # a start in the past: begin with the first occurrence not yet past
        skipped = math.ceil((now - first) / interval)
        first += skipped * interval
        if remaining is not None:
            remaining -= skipped
            if remaining <= 0:
                return None
    return Plan(first, remaining, interval)


_EXAMPLES = {
    "timeCycle": 'an ISO 8601 repeating interval such as "R/PT1H", "R3/PT10M" or "R/2030-01-01T09:00:00+00:00/P7D"',
    "timeDate": 'an ISO 8601 date and time such as "2030-01-01T09:00:00+00:00"',
    "timeDuration": 'an ISO 8601 duration such as "PT1H"',
}


def _parse_cycle(value: str, now: datetime) -> tuple[datetime, int | None, timedelta]:
    """Like ``TimerEventDefinition.parse_iso_recurring_interval``, but relative to ``now``.

    (SpiffWorkflow's own parser takes the wall clock for "R/PT1H"; the engine's clock decides.)
    """
    parts = value.upper().replace("--", "/").split("/")
    if len(parts) not in (2, 3) or not parts[0].startswith("R"):
        raise ValueError
    count = parts[0][1:]
    cycles = int(count) if count else None
    if cycles is not None and cycles <= 0:
        raise ValueError(f"timeCycle value {value!r} repeats {cycles} times: it would never start the process")
    first = TimerEventDefinition.parse_time_or_duration(parts[1])
    second = TimerEventDefinition.parse_time_or_duration(parts[2]) if len(parts) == 3 else None
    if isinstance(first, datetime) and isinstance(second, dict):
        interval = TimerEventDefinition.get_timedelta_from_start(second, first)
        start = first
    elif isinstance(first, dict) and isinstance(second, datetime):
        interval = TimerEventDefinition.get_timedelta_from_end(first, second)
        start = second - interval
    elif isinstance(first, dict) and second is None:
        interval = TimerEventDefinition.get_timedelta_from_start(first, now)
        start = now + interval
    else:
        raise ValueError
    if interval <= timedelta(0):
        raise ValueError(f"timeCycle value {value!r} has no interval: give it a positive duration")
    return start, cycles, interval


def _refuse(process, element_id: str, kind: str, message: str) -> DefinitionInvalid:
    file_name = getattr(process.spec, "file", None) or process.source_file
    return DefinitionInvalid([Problem(file_name, _line_of(process, file_name, element_id, kind), element_id, message)])


def _line_of(process, file_name: str, element_id: str, kind: str) -> int | None:
    content = (process.sources or {}).get(file_name)
    if not content:
        return None
    try:
        root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    for element in root.xpath("//*[@id=$id]", id=element_id):
        for timer in element.iter(f"{{*}}{kind}"):
            return timer.sourceline
        return element.sourceline
    return None


# -- firing ------------------------------------------------------------------------------------
def fire_due(engine, now: datetime | None = None, limit: int = 100) -> int:
    """Start one instance for every schedule due at ``now``; return how many were started."""
    now = now or engine.clock()
    with engine.db.read() as conn:
        due = list(
            conn.execute(
                sa.select(start_timers.c.process_id)
                .where(start_timers.c.next_due <= now)
                .order_by(start_timers.c.next_due)
                .limit(limit)
            ).scalars()
        )
    started = 0
    for process_id in due:
        try:
            started += fire(engine, process_id, now)
        except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
            log.exception("timer start of %s failed", process_id)
    return started


def fire(engine, process_id: str, now: datetime | None = None) -> int:
    """Start ``process_id`` if its schedule is (still) due; move the schedule on. Returns 0 or 1."""
    now = now or engine.clock()
    with engine.db.write() as conn:
        row = conn.execute(
            engine.db.lock_clause(sa.select(start_timers).where(start_timers.c.process_id == process_id))
        ).first()
        if row is None or row.next_due > now:  # another worker fired it first, or it was removed
            return 0
        definition = engine.definitions.get(conn, row.definition_id)
        instance_id = start_instance(engine, conn, definition, row.element_id, row.next_due, now)
        _move_on(conn, row, now)
    log.info("timer started %s instance %s (due %s)", process_id, instance_id, row.next_due.isoformat())
    return 1


def _move_on(conn, row, now: datetime) -> None:
    """Next due time: the first occurrence after ``now`` (missed ones are skipped, not replayed)."""
    where = start_timers.c.id == row.id
    if row.interval_seconds is None:
        conn.execute(start_timers.delete().where(where))
        return
    interval = timedelta(seconds=row.interval_seconds)
    passed = math.floor((now - row.next_due) / interval) + 1  # occurrences due at or before now
    next_due = row.next_due + passed * interval
    while next_due <= now:  # float rounding
        next_due += interval
        passed += 1
    remaining = None if row.remaining is None else row.remaining - passed
    if remaining is not None and remaining <= 0:
        conn.execute(start_timers.delete().where(where))
    else:
        conn.execute(start_timers.update().where(where).values(next_due=next_due, remaining=remaining, updated_at=now))


def start_instance(engine, conn, definition, element_id: str, due: datetime, now: datetime) -> int:
    """Create an instance of ``definition`` that runs from its timer start event at once.

    In the caller's write transaction (so it commits with the schedule update). Left alone,
    SpiffWorkflow would make the timer start event WAIT: it evaluates the timer against the
    wall clock (not the engine's) and, for a cycle, it predicts no path after the start
    event at all, adding one path per occurrence while the start event keeps waiting, i.e. a
    cycle would run the body again and again inside ONE instance. So the start event is marked
    as fired before the first engine step (see :func:`pass_start_timer`): it becomes READY as
    soon as the root task completes, runs like a none start event, and the instance goes on
    to its first wait state in this same transition.
    """
    workflow = BpmnWorkflow(definition.spec, definition.subprocess_specs, script_engine=engine.script_engine)
    if len(startevents.start_events(definition.spec)) > 1:  # e.g. a plain start event too, for a start by hand
        startevents.open_only(workflow, lambda spec: spec.bpmn_id == element_id)
    pass_start_timer(workflow, element_id)
    tr = transitions.Transition(engine, conn, transitions.new_row(None), definition, workflow, ENGINE_ACTOR, now)
    tr.record(
        EventType.INSTANCE_STARTED,
        element_id=element_id,
        data={
            "process_id": definition.process_id,
            "version": definition.version,
            "business_key": None,
            "trigger": "timer",
            "due_at": due.isoformat(),
            "data": {},
        },
    )
    tr.run_engine()
    return transitions.save_new_instance(tr)["id"]


def pass_start_timer(workflow, element_id: str) -> None:
    """Make the timer start event ``element_id`` count as fired, before the workflow first runs.

    ``CatchingEvent._update_hook`` returns at once when ``event_fired`` is set, so the event
    never waits nor registers with the event manager; ``_run_hook`` resets the flag. A cycle
    start event has no child path yet (``_predict_hook`` skips cycles; SpiffWorkflow adds one
    per occurrence), so the path after it is added here, as its ``update_task`` would.
    """
    for task in workflow.get_tasks():
        if task.task_spec.bpmn_id != element_id or task.workflow is not workflow:
            continue
        if not task.children:
            for output in task.task_spec.outputs:
                child = task._add_child(output, TaskState.FUTURE)
                child.task_spec._predict(child, mask=TaskState.NOT_FINISHED_MASK)
        task._set_internal_data(event_fired=True)


# -- reading -----------------------------------------------------------------------------------
def next_due(engine) -> datetime | None:
    """The earliest due time of any start schedule (one indexed MIN query)."""
    with engine.db.read() as conn:
        return conn.execute(sa.select(sa.func.min(start_timers.c.next_due))).scalar()


def list_schedules(engine) -> list[dict]:
    with engine.db.read() as conn:
        rows = conn.execute(sa.select(start_timers).order_by(start_timers.c.next_due)).all()
    return [_as_dict(r) for r in rows]


def _row(conn, process_id: str) -> dict | None:
    row = conn.execute(sa.select(start_timers).where(start_timers.c.process_id == process_id)).first()
    return None if row is None else _as_dict(row)


def _as_dict(row) -> dict:
    return {
        "process_id": row.process_id,
        "definition_id": row.definition_id,
        "element_id": row.element_id,
        "expression": row.expression,
        "next_due": row.next_due.isoformat(),
        "remaining": row.remaining,
        "interval_seconds": row.interval_seconds,
    }
