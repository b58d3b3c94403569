"""Jobs: perform what the outbox holds, with leases, retries, backoff and incidents.

A job is identified by its outbox id (jobs are top-level functions taking ids, so any
runner can execute them: the in-process :class:`engine.background.BackgroundWorker`, or a
queue worker). Running a job:

1. **lease** it with a guarded UPDATE (pending and due, or running with an expired lease: a
   worker that died mid-job); a job someone else holds is skipped;
2. **call** the operator outside any transaction, passing the call's idempotency key;
3. **record** the outcome in one transition of the instance: complete the service task with
   the result (or route a :class:`BusinessError` to the error boundary event) and mark the
   job done, guarded by the lease, so a late duplicate rolls back instead of advancing the
   instance twice. A technical failure schedules the next attempt (exponential backoff) or,
   when attempts run out, puts the task in error with an incident naming operator and error.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta
from uuid import UUID

import sqlalchemy as sa
from SpiffWorkflow.bpmn import BpmnEvent
from SpiffWorkflow.spiff.specs.event_definitions import ErrorEventDefinition
from SpiffWorkflow.util.task import TaskState

from . import instances, jsonutil
from .audit import ENGINE_ACTOR
from .db import after_commit
from .errors import Conflict, InvalidState
from .operators import BusinessError, CompletedWithError, ServiceCall
from .outbox import JobStatus
from .runner import Failure
from .schema import outbox
from .servicetasks import AsyncServiceTask

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def due_jobs(engine, now: datetime | None = None, limit: int = 100) -> list[int]:
    now = now or engine.clock()
    query = sa.select(outbox.c.id).where(_runnable(now)).order_by(outbox.c.next_attempt_at).limit(limit)
    with engine.db.read() as conn:
        return list(conn.execute(query).scalars())


def next_job_due(engine):
    with engine.db.read() as conn:
        return conn.execute(
            sa.select(sa.func.min(outbox.c.next_attempt_at)).where(outbox.c.status == JobStatus.PENDING.value)
        ).scalar()


def _runnable(now: datetime):
    pending = sa.and_(outbox.c.status == JobStatus.PENDING.value, outbox.c.next_attempt_at <= now)
    abandoned = sa.and_(outbox.c.status == JobStatus.RUNNING.value, outbox.c.locked_until < now)
    return sa.or_(pending, abandoned)


def run_due(engine, limit: int = 100) -> int:
    """Run every job that is due now (by the engine's clock); return how many were performed."""
    return sum(1 for job_id in due_jobs(engine, None, limit) if run_job(engine, job_id))


def run_job(engine, job_id: int) -> bool:
    """Perform one job; False when another worker holds it or it is not due."""
    job = _lease(engine, job_id)
    if job is None:
        return False
    try:
        result = _call(engine, job)
    except CompletedWithError as soft:
        _record(engine, job, lambda tr, task, done=soft.result: _complete_task(tr, task, done), error=soft.error)
    except BusinessError as business:
        _record(engine, job, lambda tr, task, error=business: _route_business_error(tr, task, job, error))
    except Exception as exc:  # noqa: BLE001 - any operator failure is retried or becomes an incident
        _failed(engine, job, exc)
    else:
        _record(engine, job, lambda tr, task: _complete_task(tr, task, result))
    return True


def _lease(engine, job_id: int):
    now = engine.clock()
    with engine.db.write() as conn:
        leased = conn.execute(
            outbox.update()
            .where(outbox.c.id == job_id, _runnable(now))
            .values(
                status=JobStatus.RUNNING.value,
                attempts=outbox.c.attempts + 1,
                locked_until=now + timedelta(seconds=engine.settings.job_lease_seconds),
                updated_at=now,
            )
        ).rowcount
        if leased != 1:
            return None
        return conn.execute(sa.select(outbox).where(outbox.c.id == job_id)).first()


def _call(engine, job):
    operator = engine.operators.get(job.operator)
    params = jsonutil.loads(job.payload)["params"]
    call = ServiceCall(
        job.operator,
        job.instance_id,
        job.element_id,
        job.attempts,
        job.idempotency_key,
        job.max_attempts,
        channels=engine.channels,
    )
    return operator.func(params, call)


def _record(engine, job, outcome, error: str | None = None) -> None:
    """Apply the outcome to the instance and mark the job done, in one transaction."""

    def apply(tr):
        _finish_job(tr.conn, job, JobStatus.DONE, error, tr.now)
        task = _waiting_task(tr.workflow, job)
        if task is None:  # the task went away (timer, termination): nothing to complete
            return
        outcome(tr, task)
        tr.run_engine()

    try:
        instances.change(engine, job.instance_id, ENGINE_ACTOR, apply)
    except (Conflict, InvalidState) as exc:
        log.info("job %s result not recorded: %s", job.id, exc.message)


def _waiting_task(workflow, job):
    try:
        task = workflow.get_task_from_id(UUID(job.spiff_task_id))
    except Exception:  # noqa: BLE001 - pruned or removed: the task is gone
        return None
    if task.state != TaskState.STARTED or not isinstance(task.task_spec, AsyncServiceTask):
        return None
    return task


def _complete_task(tr, task, result) -> None:
    task.data[task.task_spec.result_variable] = result
    task.complete()
    tr.record(
        "service_call_completed",
        element_id=task.task_spec.bpmn_id,
        actor=ENGINE_ACTOR,
        data={"operator": task.task_spec.operation_name},
    )


def _route_business_error(tr, task, job, exc: BusinessError) -> None:
    event = BpmnEvent(ErrorEventDefinition(exc.code, code=exc.code), payload=exc.payload)
    caught = tr.workflow.event_manager.catch(event)
    tr.workflow.get_events()  # an uncaught error must not linger in the instance's queue
    tr.record(
        "service_business_error",
        element_id=task.task_spec.bpmn_id,
        actor=ENGINE_ACTOR,
        data={"operator": job.operator, "code": exc.code, "message": str(exc)},
    )
    if not caught:
        _task_failed(
            tr,
            task,
            f"operator {job.operator!r} ({_provider(tr.engine, job.operator)}) reported {exc.code!r} ({exc}); "
            "no error boundary "
            "event on the task catches that code",
        )


def _failed(engine, job, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"
    if job.attempts < job.max_attempts:
        delay = job.backoff_seconds * (2 ** (job.attempts - 1))
        with engine.db.write() as conn:
            after_commit(conn, lambda: engine.jobs_created([job.id], delay))
            now = engine.clock()
            conn.execute(
                outbox.update()
                .where(
                    outbox.c.id == job.id, outbox.c.status == JobStatus.RUNNING.value, outbox.c.attempts == job.attempts
                )
                .values(
                    status=JobStatus.PENDING.value,
                    next_attempt_at=now + timedelta(seconds=delay),
                    last_error=error,
                    updated_at=now,
                    locked_until=None,
                )
            )
        return

    def apply(tr):
        _finish_job(tr.conn, job, JobStatus.DEAD, error, tr.now)
        task = _waiting_task(tr.workflow, job)
        if task is not None:
            _task_failed(
                tr,
                task,
                f"operator {job.operator!r} ({_provider(engine, job.operator)}) failed after "
                f"{job.attempts} attempt(s): {error}",
            )

    try:
        instances.change(engine, job.instance_id, ENGINE_ACTOR, apply)
    except (Conflict, InvalidState) as exc:
        log.info("failure of job %s not recorded: %s", job.id, exc.message)


def _provider(engine, operator: str) -> str:
    """The plugin that provides an operator, for incident messages."""
    try:
        return f"plugin {engine.operators.get(operator).provider}"
    except Exception:  # noqa: BLE001 - the operator is gone (plugin disabled since)
        return "no plugin provides it now"


def _task_failed(tr, task, message: str) -> None:
    task._set_state(TaskState.ERROR)
    tr.failure = Failure(kind="service_error", message=message, task=task, element_id=task.task_spec.bpmn_id)


def _finish_job(conn, job, status: JobStatus, error: str | None, now: datetime) -> None:
    """Close the job if this worker still holds its lease (the last error of a retried call is kept)."""
    values = {"status": status.value, "updated_at": now, "locked_until": None}
    if error is not None:
        values["last_error"] = error
    done = conn.execute(
        outbox.update()
        .where(outbox.c.id == job.id, outbox.c.status == JobStatus.RUNNING.value, outbox.c.attempts == job.attempts)
        .values(**values)
    ).rowcount
    if done != 1:
        raise Conflict(f"job {job.id} was finished by another worker")


def sweep(engine, seen: set, grace: float = 5.0) -> int:
    """Queue mode: enqueue jobs that should have run ``grace`` seconds ago but did not.

    Covers a queue outage at commit time and workers that died holding a lease. ``seen``
    remembers (job id, attempts) already re-enqueued by this sweeper, so a busy queue is not
    flooded with duplicates (a duplicate is harmless anyway: the lease lets one run).
    """
    late = due_jobs(engine, engine.clock() - timedelta(seconds=grace))
    if not late:
        return 0
    with engine.db.read() as conn:
        attempts = dict(conn.execute(sa.select(outbox.c.id, outbox.c.attempts).where(outbox.c.id.in_(late))).all())
    fresh = [j for j in late if (j, attempts.get(j)) not in seen]
    engine.jobs_created(fresh)
    seen.update((j, attempts.get(j)) for j in fresh)
    return len(fresh)
