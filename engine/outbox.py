"""The transactional outbox: every side effect is written in the transaction that causes it.

A transition that leaves a service task STARTED inserts an outbox row (operator, evaluated
parameters, an idempotency key, its retry policy) before it commits; if the transaction
rolls back, the call was never requested. Jobs (:mod:`engine.jobs`) pick rows up after the
commit, so a crash or a queue outage between "decided" and "done" loses and duplicates
nothing: the row waits until some worker leases it. Calls whose task went away (cancelled by
an interrupting timer, instance terminated) are marked ``cancelled`` in the same transaction.
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa

from . import jsonutil
from .schema import outbox
from .servicetasks import REQUEST_KEY

SERVICE_CALL = "service_call"


class JobStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    RUNNING = "running"  # leased by a worker until locked_until
    DONE = "done"
    DEAD = "dead"  # retries exhausted: an incident was raised
    CANCELLED = "cancelled"  # the task that asked for it no longer waits


def record_calls(tr, before: dict, after: dict) -> list[int]:
    """Outbox rows for service tasks that started in this transition; cancel the ones that left."""
    created = [_insert_call(tr, task) for sid, task in after.items() if sid not in before]
    gone = [sid for sid in before if sid not in after]
    if gone:
        tr.conn.execute(
            outbox.update()
            .where(
                outbox.c.instance_id == tr.instance_id,
                outbox.c.spiff_task_id.in_(gone),
                outbox.c.status.in_((JobStatus.PENDING.value, JobStatus.RUNNING.value)),
            )
            .values(status=JobStatus.CANCELLED.value, updated_at=tr.now)
        )
    return created


def _insert_call(tr, task) -> int:
    spec = task.task_spec
    request = task.internal_data[REQUEST_KEY]
    row = {
        "kind": SERVICE_CALL,
        "instance_id": tr.instance_id,
        "spiff_task_id": str(task.id),
        "element_id": spec.bpmn_id,
        "operator": request["operator"],
        "payload": jsonutil.dumps({"params": request["params"]}),
        "idempotency_key": request["key"],
        "status": JobStatus.PENDING.value,
        "attempts": 0,
        "max_attempts": spec.max_attempts,
        "backoff_seconds": spec.backoff_seconds,
        "next_attempt_at": tr.now,
        "created_at": tr.now,
        "updated_at": tr.now,
    }
    return tr.conn.execute(outbox.insert().values(**row)).inserted_primary_key[0]


def list_jobs(conn, *, status: str | None = None, instance_id: int | None = None) -> list[dict]:
    query = sa.select(outbox).order_by(outbox.c.id)
    if status is not None:
        query = query.where(outbox.c.status == status)
    if instance_id is not None:
        query = query.where(outbox.c.instance_id == instance_id)
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "instance_id": r.instance_id,
            "element_id": r.element_id,
            "operator": r.operator,
            "status": r.status,
            "attempts": r.attempts,
            "max_attempts": r.max_attempts,
            "next_attempt_at": r.next_attempt_at.isoformat(),
            "last_error": r.last_error,
            "idempotency_key": r.idempotency_key,
        }
        for r in conn.execute(query)
    ]
