"""The audit log: an append-only table of what happened, who did it and with which data.

It is the decision log of a delivery organisation (who approved what, when, with which
comment) and the history of every instance. Rows are only ever inserted (the migration adds
triggers that refuse UPDATE and DELETE). Events are collected during a transition and written
in one batch, in the same transaction as the state change they describe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from . import fastsql, jsonutil
from .schema import events

ENGINE_ACTOR = "engine"  # the actor of what the engine does by itself (timers, steps, starts on a schedule)


class EventType:
    INSTANCE_STARTED = "instance_started"
    INSTANCE_COMPLETED = "instance_completed"
    INSTANCE_SUSPENDED = "instance_suspended"
    INSTANCE_RESUMED = "instance_resumed"
    INSTANCE_TERMINATED = "instance_terminated"
    TASK_CREATED = "task_created"
    TASK_CLAIMED = "task_claimed"
    TASK_UNCLAIMED = "task_unclaimed"
    TASK_ASSIGNED = "task_assigned"
    TASK_COMPLETED = "task_completed"
    TASK_CANCELLED = "task_cancelled"
    ACTIVITY_COMPLETED = "activity_completed"
    GATEWAY_DECISION = "gateway_decision"
    INCIDENT_RAISED = "incident_raised"
    INCIDENT_RESOLVED = "incident_resolved"
    DEFINITION_DEPLOYED = "definition_deployed"


@dataclass(slots=True)
class AuditEvent:
    type: str
    at: datetime
    instance_id: int | None = None
    task_id: int | None = None
    element_id: str | None = None
    actor: str | None = None
    data: dict = field(default_factory=dict)


INSERT_EVENT = fastsql.Statement("""
    INSERT INTO events (type, at, instance_id, task_id, element_id, actor, data)
    VALUES (:type, :at, :instance_id, :task_id, :element_id, :actor, :data)""")


def write(conn, batch: list[AuditEvent]) -> None:
    """Append events (one executemany on the driver: this runs in every transition)."""
    if batch:
        at = fastsql.db_time
        dumps = jsonutil.dumps
        rows = [
            {
                "type": e.type,
                "at": at(conn, e.at),
                "instance_id": e.instance_id,
                "task_id": e.task_id,
                "element_id": e.element_id,
                "actor": e.actor,
                "data": dumps(e.data) if e.data else None,
            }
            for e in batch
        ]
        fastsql.executemany(conn, INSERT_EVENT, rows)


def history(conn, instance_id: int) -> list[dict]:
    rows = conn.execute(sa.select(events).where(events.c.instance_id == instance_id).order_by(events.c.id))
    return [_as_dict(row) for row in rows]


def _as_dict(row) -> dict:
    return {
        "id": row.id,
        "type": row.type,
        "at": row.at.isoformat(),
        "instance_id": row.instance_id,
        "task_id": row.task_id,
        "element_id": row.element_id,
        "actor": row.actor,
        "data": jsonutil.loads(row.data, {}),
    }
