"""The human-task inbox: an indexed table of open user and manual tasks.

Reviewers list, claim, unclaim, assign and complete tasks here. Only members of the task's
candidate group (the BPMN lane), its assignee, or an admin may act on it. Claiming is a
single guarded UPDATE, so two people claiming at once get one winner and one conflict;
completing goes through the instance's transition (row lock plus version check), so two
completions of the same task at once give exactly one success and one conflict.
"""

from __future__ import annotations

from uuid import UUID

import sqlalchemy as sa
from SpiffWorkflow.util.task import TaskState

from . import fastsql, forms, instances, jsonutil, transitions
from .audit import AuditEvent, EventType, write
from .errors import Conflict, Forbidden, InvalidInput, InvalidState, NotFound
from .runner import describe_failure
from .schema import human_tasks
from .schema import instances as instances_table
from .status import ACTIVE_TASK_STATUSES, InstanceStatus, TaskStatus, task_is_active

TASK_COLUMNS = (
    human_tasks,
    instances_table.c.process_id,
    instances_table.c.business_key,
    instances_table.c.status.label("instance_status"),
)


def task_dict(row) -> dict:
    return {
        "id": row.id,
        "instance_id": row.instance_id,
        "element_id": row.element_id,
        "title": row.title,
        "candidate_group": row.candidate_group,
        "assignee": row.assignee,
        "status": row.status,
        "priority": row.priority,
        "due_at": row.due_at.isoformat() if row.due_at else None,
        "follow_up_at": row.follow_up_at.isoformat() if row.follow_up_at else None,
        "form": row.form,
        "instructions": row.instructions,
        "process_id": row.process_id,
        "business_key": row.business_key,
        "instance_status": row.instance_status,  # a task of a suspended instance cannot be worked on
        "created_at": row.created_at.isoformat(),
        "claimed_at": row.claimed_at.isoformat() if row.claimed_at else None,
        "completed_at": row.completed_at.isoformat() if row.completed_at else None,
        "completed_by": row.completed_by,
    }


def rows(conn, where) -> list[dict]:
    query = (
        sa.select(*TASK_COLUMNS)
        .join(instances_table, instances_table.c.id == human_tasks.c.instance_id)
        .where(where)
        .order_by(human_tasks.c.priority.desc(), human_tasks.c.due_at.is_(None), human_tasks.c.due_at, human_tasks.c.id)
    )
    return [task_dict(r) for r in conn.execute(query)]


def visible_to(user):
    """Tasks a user may work on: their candidate groups, assigned to them, or without a group."""
    if user.is_admin:
        return sa.true()
    return sa.or_(
        human_tasks.c.assignee == user.name,
        human_tasks.c.candidate_group.is_(None),
        human_tasks.c.candidate_group.in_(sorted(user.groups)),
    )


def list_tasks(
    engine,
    *,
    user: str | None = None,
    status: str | None = None,
    candidate_group: str | None = None,
    assignee: str | None = None,
    instance_id: int | None = None,
) -> list[dict]:
    # the open work is asked for in the words of the inbox's partial indexes, so they are used
    conditions = [human_tasks.c.status == status if status else task_is_active(human_tasks.c.status)]
    for column, value in (
        (human_tasks.c.candidate_group, candidate_group),
        (human_tasks.c.assignee, assignee),
        (human_tasks.c.instance_id, instance_id),
    ):
        if value is not None:
            conditions.append(column == value)
    with engine.db.read() as conn:
        if user is not None:
            conditions.append(visible_to(engine.require_user(conn, user)))
        return rows(conn, sa.and_(*conditions))


def task_details(engine, task_id: int) -> dict:
    """A task with what a reviewer needs to act on it: its form schema and the instance's data."""
    with engine.db.read() as conn:
        found = rows(conn, human_tasks.c.id == task_id)
        if not found:
            raise NotFound(f"unknown task {task_id}", task_id=task_id)
        task = found[0]
        instance = conn.execute(
            sa.select(instances_table.c.definition_id, instances_table.c.data, instances_table.c.status).where(
                instances_table.c.id == task["instance_id"]
            )
        ).first()
        definition = engine.definitions.get(conn, instance.definition_id)
    task["form_schema"] = definition.forms.get(task["form"]) if task["form"] else None
    task["instance"] = {
        "id": task["instance_id"],
        "process_id": task["process_id"],
        "status": instance.status,
        "business_key": task["business_key"],
        "data": jsonutil.loads(instance.data, {}),
    }
    return task


def get_task(engine, task_id: int) -> dict:
    with engine.db.read() as conn:
        found = rows(conn, human_tasks.c.id == task_id)
    if not found:
        raise NotFound(f"unknown task {task_id}", task_id=task_id)
    return found[0]


def _load_active(conn, task_id: int):
    return _active(conn.execute(LOAD_TASK, {"task_id": task_id}).first(), task_id)


def _active(row, task_id: int):
    if row is None:
        raise NotFound(f"unknown task {task_id}", task_id=task_id)
    if row.status not in ACTIVE_TASK_STATUSES:
        by = f" by {row.completed_by}" if row.completed_by else ""
        raise Conflict(f"task {task_id} is already {row.status}{by}", task_id=task_id, status=row.status)
    if row.instance_status == InstanceStatus.SUSPENDED.value:
        raise InvalidState(f"instance {row.instance_id} is suspended; resume it first", task_id=task_id)
    return row


def _require_member(user, row, verb: str) -> None:
    if not user.can_work_on(row.candidate_group, row.assignee):
        raise Forbidden(
            f"{user.name} may not {verb} task {row.id}: not a member of '{row.candidate_group}'",
            task_id=row.id,
            user=user.name,
        )


def claim(engine, task_id: int, user: str) -> dict:
    with engine.db.write() as conn:
        actor = engine.require_user(conn, user)
        row = _load_active(conn, task_id)
        _require_member(actor, row, "claim")
        if row.assignee == actor.name:
            return task_dict(row)
        if row.assignee is not None:
            raise Conflict(
                f"task {task_id} is already claimed by {row.assignee}", task_id=task_id, assignee=row.assignee
            )
        _set_assignee(conn, engine, row, actor.name, actor.name, EventType.TASK_CLAIMED, expect_unassigned=True)
    return get_task(engine, task_id)


def unclaim(engine, task_id: int, user: str) -> dict:
    with engine.db.write() as conn:
        actor = engine.require_user(conn, user)
        row = _load_active(conn, task_id)
        if row.assignee is None:
            raise Conflict(f"task {task_id} is not claimed", task_id=task_id)
        if row.assignee != actor.name and not actor.is_admin:
            raise Forbidden(f"task {task_id} is claimed by {row.assignee}; only they or an admin may unclaim it")
        _set_assignee(conn, engine, row, None, actor.name, EventType.TASK_UNCLAIMED)
    return get_task(engine, task_id)


def assign(engine, task_id: int, assignee: str, user: str) -> dict:
    with engine.db.write() as conn:
        actor = engine.require_user(conn, user)
        target = engine.require_user(conn, assignee)
        row = _load_active(conn, task_id)
        _require_member(actor, row, "assign")
        if row.assignee not in (None, actor.name) and not actor.is_admin:
            raise Conflict(
                f"task {task_id} is claimed by {row.assignee}; only they or an admin may hand it on",
                task_id=task_id,
                assignee=row.assignee,
            )
        if not target.can_work_on(row.candidate_group, None):
            raise InvalidInput(
                f"{assignee} is not a member of '{row.candidate_group}' and cannot work on task {task_id}"
            )
        _set_assignee(conn, engine, row, target.name, actor.name, EventType.TASK_ASSIGNED)
    return get_task(engine, task_id)


def _set_assignee(conn, engine, row, assignee, actor, event_type, expect_unassigned=False) -> None:
    query = human_tasks.update().where(human_tasks.c.id == row.id, task_is_active(human_tasks.c.status))
    if expect_unassigned:
        query = query.where(human_tasks.c.assignee.is_(None))
    status = TaskStatus.CLAIMED if assignee else TaskStatus.OPEN
    now = engine.clock()
    result = conn.execute(query.values(assignee=assignee, status=status.value, claimed_at=now if assignee else None))
    if result.rowcount != 1:
        raise Conflict(f"task {row.id} changed at the same time; reload it", task_id=row.id)
    write(
        conn,
        [
            AuditEvent(
                event_type,
                now,
                row.instance_id,
                row.id,
                row.element_id,
                actor,
                {"assignee": assignee, "previous": row.assignee},
            )
        ],
    )


LOAD_TASK = (
    sa.select(*TASK_COLUMNS)
    .join(instances_table, instances_table.c.id == human_tasks.c.instance_id)
    .where(human_tasks.c.id == sa.bindparam("task_id"))
)
# the task and, in the same statement, the head of its instance row (locked on PostgreSQL):
# the transition needs no second look-up of the instance
_LOCK_TASK_SQL = """
    SELECT t.id, t.instance_id, t.spiff_task_id, t.element_id, t.candidate_group, t.assignee, t.status,
           t.form, t.completed_by, i.status AS instance_status, i.definition_id, i.process_id, i.business_key,
           i.lock_version, i.wake_at, i.started_by
    FROM human_tasks t JOIN instances i ON i.id = t.instance_id WHERE t.id = :task_id"""
LOCK_TASK = {
    "sqlite": fastsql.Statement(_LOCK_TASK_SQL),
    "postgresql": fastsql.Statement(_LOCK_TASK_SQL + " FOR UPDATE OF i"),
}


def complete(engine, task_id: int, user: str, data: dict | None = None) -> dict:
    """Complete a task with the submitted data; return the instance afterwards.

    One write transaction: read the task under the instance lock, check the user and the
    form, run the engine, write everything. A second completion of the same task waits for
    the lock, then finds the task completed and gets a Conflict.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InvalidInput("task data must be a JSON object")
    with engine.db.write() as conn:
        actor = engine.require_user(conn, user)
        row = _active(fastsql.fetch_one(conn, LOCK_TASK[conn.dialect.name], {"task_id": task_id}), task_id)
        _require_member(actor, row, "complete")
        if row.assignee is not None and row.assignee != actor.name and not actor.is_admin:
            raise Conflict(f"task {task_id} is claimed by {row.assignee}", task_id=task_id, assignee=row.assignee)

        def apply(tr):
            if row.form:
                forms.check(tr.definition.form_validator(row.form), data, row.form)
            task = tr.workflow.get_task_from_id(UUID(row.spiff_task_id))
            if task.state != TaskState.READY:
                raise Conflict(f"task {task_id} is no longer waiting for input", task_id=task_id)
            _merge_submission(task, data)
            tr.completed_task = (task_id, actor.name, data)
            tr.completed_spiff_id = row.spiff_task_id
            tr.record(EventType.TASK_COMPLETED, task_id=task_id, element_id=row.element_id, data={"data": data})
            try:
                task.run()
            except Exception as exc:  # noqa: BLE001 - a failing post-script becomes an incident
                tr.failure = describe_failure(tr.workflow, exc)
            tr.run_engine()

        locked = transitions.InstanceHead(
            row.instance_id,
            row.definition_id,
            row.process_id,
            row.business_key,
            row.instance_status,
            row.lock_version,
            row.wake_at,
            row.started_by,
        )
        after = instances.change(engine, row.instance_id, actor.name, apply, conn=conn, user=actor, locked=locked)
    if engine.emits("task_completed"):
        engine.emit("task_completed", task=get_task(engine, task_id), data=data, actor=actor.name)
    return after


def _merge_submission(task, data: dict) -> None:
    variable = (getattr(task.task_spec, "extensions", None) or {}).get("variableName")
    if variable:
        task.data[variable] = data
    else:
        task.data.update(data)
