"""Process instances: start, inspect, suspend, resume, terminate, retry after an incident."""

from __future__ import annotations

import sqlalchemy as sa
from SpiffWorkflow.bpmn.specs.event_definitions.simple import NoneEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from . import startevents, transitions
from .audit import ENGINE_ACTOR, EventType
from .errors import Forbidden, InvalidInput, InvalidState, NotFound
from .jsonutil import loads
from .runner import describe_failure
from .schema import human_tasks, incidents, instances
from .status import IncidentStatus, InstanceStatus, task_is_active
from .transitions import Transition


def start(
    engine, process_id: str, data: dict | None = None, *, business_key: str | None = None, actor: str | None = None
) -> dict:
    """Start the newest version of ``process_id``; return the new instance (as ``get`` does)."""
    if data is not None and not isinstance(data, dict):
        raise InvalidInput("start data must be a JSON object")
    with engine.db.write() as conn:
        if actor is not None:
            engine.require_user(conn, actor)
        definition = engine.definitions.latest(conn, process_id)
        workflow = BpmnWorkflow(definition.spec, definition.subprocess_specs, script_engine=engine.script_engine)
        _prepare_hand_start(definition, workflow)
        start_task = workflow.get_next_task(state=TaskState.READY)
        start_task.data.update(data or {})
        tr = Transition(engine, conn, transitions.new_row(business_key), definition, workflow, actor, engine.clock())
        tr.record(
            EventType.INSTANCE_STARTED,
            data={
                "process_id": process_id,
                "version": definition.version,
                "business_key": business_key,
                "data": data or {},
            },
        )
        tr.run_engine()
        return transitions.save_new_instance(tr)


def _require_manager(engine, user, row, action: str) -> None:
    """Suspend, resume, terminate and retry are for administrators, the person who started the
    instance, and members of the ``SDF_INSTANCE_MANAGERS`` groups (a reviewer must not stop a
    colleague's run). Without an actor (the operator at the machine) no check applies."""
    managers = {g.strip() for g in engine.settings.instance_managers.split(",") if g.strip()}
    if user.is_admin or user.name == row.started_by or user.groups & managers:
        return
    allowed = ", ".join(sorted(managers)) or "no group"
    raise Forbidden(
        f"{user.name} may not {action} instance {row.id}: only an administrator, whoever started it "
        f"({row.started_by or 'nobody'}) or a member of {allowed} may",
        instance_id=row.id,
    )


def _prepare_hand_start(definition, workflow) -> None:
    """A start by hand needs a plain start event. A process that only starts on a schedule runs
    now (its timer start event counts as fired: "run the weekly report now"); one that only
    starts by a message is refused, naming the message (else the instance would sit waiting and
    take the next such message, which should start an instance of its own)."""
    from . import messages, start_timers  # both import transitions, which this module imports too

    starts = startevents.start_events(definition.spec)
    if not starts or any(type(s.event_definition) is NoneEventDefinition for s in starts):
        return
    timers = [s for s in starts if isinstance(s.event_definition, TimerEventDefinition)]
    if timers:
        start_timers.pass_start_timer(workflow, timers[0].bpmn_id)
        return
    names = sorted({part.name for s in starts for part in messages.message_parts(s.event_definition)})
    if names:
        raise InvalidInput(
            f"process {definition.process_id!r} starts by message ({', '.join(names)}), not by hand: "
            f"send the message instead (sdf message {names[0]} --data JSON)"
        )


def change(
    engine,
    instance_id: int,
    actor: str | None,
    apply,
    *,
    allow=None,
    conn=None,
    user=None,
    manage=None,
    locked: transitions.InstanceHead | None = None,
) -> dict:
    """Run ``apply(transition)`` on a locked instance, advance, save; return the instance after it.

    With ``conn`` the caller's write transaction is used (it must already hold the lock).
    ``user``: the actor's :class:`engine.users.User` when the caller already looked it up in this
    transaction. ``manage`` names a control action (suspend, terminate...) that only an
    instance manager may take. ``locked``: the instance row's head as the caller already read it
    under the lock in this transaction (saves reading it again).
    """
    if conn is None:
        with engine.db.write() as own:
            return change(engine, instance_id, actor, apply, allow=allow, conn=own, user=user, manage=manage)
    if user is None and actor is not None and actor != ENGINE_ACTOR:
        user = engine.require_user(conn, actor)  # the audit log must name a real person
    row = locked if locked is not None else transitions.lock_instance(engine, conn, instance_id)
    if allow is not None and row.status not in allow:
        raise InvalidState(f"instance {instance_id} is {row.status}", instance_id=instance_id, status=row.status)
    if manage is not None and user is not None:
        _require_manager(engine, user, row, manage)
    tr = transitions.open_transition(engine, conn, row, actor)
    try:
        apply(tr)
        version = transitions.save(tr)
        after = transitions.result(tr, version)
    except BaseException:
        engine.workflows.drop(instance_id)
        raise
    tr.after_commit(lambda: engine.workflows.put(instance_id, version, tr.workflow))
    return after


ACTIVE = (InstanceStatus.RUNNING.value, InstanceStatus.WAITING.value, InstanceStatus.ERROR.value)


def suspend(engine, instance_id: int, actor: str | None = None) -> dict:
    def apply(tr):
        tr.status_override = InstanceStatus.SUSPENDED
        tr.record(EventType.INSTANCE_SUSPENDED)

    return change(engine, instance_id, actor, apply, allow=ACTIVE, manage="suspend")


def resume(engine, instance_id: int, actor: str | None = None) -> dict:
    def apply(tr):
        tr.record(EventType.INSTANCE_RESUMED)
        tr.run_engine()  # timers that came due while suspended fire now

    return change(engine, instance_id, actor, apply, allow=(InstanceStatus.SUSPENDED.value,), manage="resume")


def terminate(engine, instance_id: int, actor: str | None = None, reason: str | None = None) -> dict:
    def apply(tr):
        tr.workflow.cancel()
        tr.status_override = InstanceStatus.TERMINATED
        tr.record(EventType.INSTANCE_TERMINATED, data={"reason": reason} if reason else None)
        _resolve_open_incidents(tr, "instance terminated")

    return change(
        engine, instance_id, actor, apply, allow=ACTIVE + (InstanceStatus.SUSPENDED.value,), manage="terminate"
    )


def retry_incident(engine, incident_id: int, actor: str | None = None, data: dict | None = None) -> dict:
    """Set the failed task READY again (optionally with corrected data) and advance."""
    with engine.db.read() as conn:
        incident = conn.execute(sa.select(incidents).where(incidents.c.id == incident_id)).first()
    if incident is None:
        raise NotFound(f"unknown incident {incident_id}", incident_id=incident_id)
    if incident.status != IncidentStatus.OPEN.value:
        raise InvalidState(f"incident {incident_id} is already {incident.status}", incident_id=incident_id)

    phase = (incident.details or "").split("\n", 1)[0].removeprefix("phase: ")

    def apply(tr):
        failed = [t for t in transitions.all_tasks(tr.workflow) if t.state == TaskState.ERROR]
        _resolve_open_incidents(tr, "retried")
        for task in failed:
            if data and (incident.spiff_task_id is None or str(task.id) == incident.spiff_task_id):
                task.data.update(data)
                if isinstance(task.task_spec, CatchingEvent) and task.parent is not None:
                    task.parent.data.update(data)  # an event takes its data from its parent again
            try:
                _rerun(task, phase if str(task.id) == incident.spiff_task_id else "")
            except Exception as exc:  # noqa: BLE001 - failing again is a new incident
                tr.failure = describe_failure(tr.workflow, exc)
                return
        tr.run_engine()

    return change(engine, incident.instance_id, actor, apply, allow=(InstanceStatus.ERROR.value,), manage="retry")


def _rerun(task, phase: str) -> None:
    """Put a failed task back where it failed.

    A catching event whose definition failed (a timer value that is not a date or duration)
    is evaluated again and waits, or fires if it is already due; a failed pre-script runs
    again before the task opens; a failed post-script (the person's input was already
    accepted) completes the task again with its data; anything else is made READY and runs in
    the engine's next step.
    """
    spec = task.task_spec
    if isinstance(spec, CatchingEvent):  # its definition (a timer's value) failed: evaluate it again
        task._set_state(TaskState.FUTURE)
        spec._update(task)
    elif phase == "pre-script" and getattr(spec, "prescript", None):
        spec.execute_script(task, spec.prescript)
        task._set_state(TaskState.READY)
    elif phase == "post-script":
        task._set_state(TaskState.READY)
        task.run()
    else:
        task._set_state(TaskState.READY)


def _resolve_open_incidents(tr: Transition, how: str) -> None:
    rows = (
        tr.conn.execute(
            sa.select(incidents.c.id).where(
                incidents.c.instance_id == tr.instance_id, incidents.c.status == IncidentStatus.OPEN.value
            )
        )
        .scalars()
        .all()
    )
    if not rows:
        return
    tr.conn.execute(
        incidents.update()
        .where(incidents.c.id.in_(rows))
        .values(status=IncidentStatus.RESOLVED.value, resolved_at=tr.now, resolved_by=tr.actor)
    )
    for incident_id in rows:
        tr.record(EventType.INCIDENT_RESOLVED, data={"incident_id": incident_id, "how": how})


# -- reading ---------------------------------------------------------------------------------
def get(engine, instance_id: int) -> dict:
    with engine.db.read() as conn:
        row = conn.execute(sa.select(instances).where(instances.c.id == instance_id)).first()
        if row is None:
            raise NotFound(f"unknown instance {instance_id}", instance_id=instance_id)
        definition = engine.definitions.get(conn, row.definition_id)
        tasks = engine.inbox_rows(
            conn, sa.and_(human_tasks.c.instance_id == instance_id, task_is_active(human_tasks.c.status))
        )
        open_incidents = list_incidents(conn, instance_id=instance_id, status=IncidentStatus.OPEN.value)
    return instance_dict(row, definition.version, tasks, open_incidents)


def instance_dict(row, version: int, tasks: list[dict], open_incidents: list[dict]) -> dict:
    return {
        "id": row.id,
        "process_id": row.process_id,
        "version": version,
        "status": row.status,
        "business_key": row.business_key,
        "data": loads(row.data, {}),
        "tasks": tasks,
        "incidents": open_incidents,
        "started_by": row.started_by,
        "started_at": row.started_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "ended_at": row.ended_at.isoformat() if row.ended_at else None,
    }


def list_summaries(
    engine,
    *,
    status: str | None = None,
    process_id: str | None = None,
    business_key: str | None = None,
    limit: int = 100,
) -> list[dict]:
    from .schema import definitions

    query = (
        sa.select(
            instances.c.id,
            instances.c.process_id,
            definitions.c.version,
            instances.c.status,
            instances.c.business_key,
            instances.c.started_at,
            instances.c.updated_at,
        )
        .join(definitions, definitions.c.id == instances.c.definition_id)
        .order_by(instances.c.id.desc())
        .limit(limit)
    )
    for column, value in (
        (instances.c.status, status),
        (instances.c.process_id, process_id),
        (instances.c.business_key, business_key),
    ):
        if value is not None:
            query = query.where(column == value)
    with engine.db.read() as conn:
        return [
            {
                "id": r.id,
                "process_id": r.process_id,
                "version": r.version,
                "status": r.status,
                "business_key": r.business_key,
                "started_at": r.started_at.isoformat(),
                "updated_at": r.updated_at.isoformat(),
            }
            for r in conn.execute(query)
        ]


def list_incidents(conn, *, instance_id: int | None = None, status: str | None = None) -> list[dict]:
    query = sa.select(incidents).order_by(incidents.c.id)
    if instance_id is not None:
        query = query.where(incidents.c.instance_id == instance_id)
    if status is not None:
        query = query.where(incidents.c.status == status)
    return [
        {
            "id": r.id,
            "instance_id": r.instance_id,
            "element_id": r.element_id,
            "kind": r.kind,
            "message": r.message,
            "line": r.line,
            "details": r.details,
            "status": r.status,
            "created_at": r.created_at.isoformat(),
            "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
        }
        for r in conn.execute(query)
    ]
