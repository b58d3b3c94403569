"""Who gets a new human task, and how urgent it is: the ``choose_assignee`` and
``score_task_priority`` hooks, applied when a task opens (in the same transaction).

A task asks for automatic assignment with ``assignment="auto"`` or ``requiredSkills`` in its
BPMN properties. The candidates are the members of its candidate group with their skills and
their current workload (open and claimed tasks); the first plugin that names one of them
wins. A name that is not a candidate is ignored (the task stays open for the group), so a
plugin can never hand work to someone outside the lane.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from .audit import ENGINE_ACTOR, EventType
from .schema import groups, human_tasks, memberships, user_skills, users
from .status import task_is_active

log = logging.getLogger(__name__)


def prepare(tr, task, info):
    """Apply the scoring and assignment hooks to a task about to be inserted (``info`` is the
    transition's own, fresh from :func:`engine.humantasks.describe`, and is updated in place)."""
    hook = tr.engine.plugins.hook
    scored = hook.score_task_priority(task=_task_view(info), data=dict(task.data))
    if scored is not None:
        info.priority = max(0, min(100, int(scored)))
    if info.auto_assign and info.candidate_group:
        info.assignee = _choose(tr, info)
    return info


def _task_view(info) -> dict:
    return {
        "element_id": info.element_id,
        "title": info.title,
        "candidate_group": info.candidate_group,
        "priority": info.priority,
        "due_at": info.due_at.isoformat() if info.due_at else None,
        "required_skills": list(info.required_skills),
    }


def _choose(tr, info) -> str | None:
    members = candidates(tr.conn, info.candidate_group)
    if not members:
        return None
    chosen = tr.engine.plugins.hook.choose_assignee(task=_task_view(info), candidates=members)
    if chosen is not None and chosen not in {m["name"] for m in members}:
        log.warning("choose_assignee returned %r, not a member of %s; task left open", chosen, info.candidate_group)
        return None
    return chosen


def candidates(conn, group: str) -> list[dict]:
    """Members of ``group``: name, skills {skill: level} and open_tasks (current workload)."""
    rows = conn.execute(
        sa.select(users.c.id, users.c.name)
        .join(memberships, memberships.c.user_id == users.c.id)
        .join(groups, groups.c.id == memberships.c.group_id)
        .where(groups.c.name == group, users.c.active.is_(True))
        .order_by(users.c.name)
    ).all()
    if not rows:
        return []
    skills: dict[int, dict[str, int]] = {r.id: {} for r in rows}
    for row in conn.execute(sa.select(user_skills).where(user_skills.c.user_id.in_(list(skills)))):
        skills[row.user_id][row.skill] = row.level
    load = dict(
        conn.execute(
            sa.select(human_tasks.c.assignee, sa.func.count())
            .where(human_tasks.c.assignee.in_([r.name for r in rows]), task_is_active(human_tasks.c.status))
            .group_by(human_tasks.c.assignee)
        ).all()
    )
    return [{"name": r.name, "skills": skills[r.id], "open_tasks": load.get(r.name, 0)} for r in rows]


def record(tr, assigned: list[tuple[int, object]]) -> None:
    for task_id, info in assigned:
        tr.record(
            EventType.TASK_ASSIGNED,
            task_id=task_id,
            element_id=info.element_id,
            actor=ENGINE_ACTOR,
            data={"assignee": info.assignee, "previous": None, "by": "choose_assignee"},
        )


def set_skills(conn, user_id: int, skills: dict[str, int]) -> None:
    """Replace a user's skills ({name: level 1-5})."""
    conn.execute(user_skills.delete().where(user_skills.c.user_id == user_id))
    if skills:
        conn.execute(user_skills.insert(), [{"user_id": user_id, "skill": k, "level": v} for k, v in skills.items()])
