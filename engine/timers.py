"""Timers: fire every due timer within about a second, without scanning instances.

Each instance row carries ``wake_at``, the earliest due time of its waiting timers (computed
when the instance is saved, indexed). Firing selects the rows whose ``wake_at`` has passed,
and advances each through a normal transition: the instance row is locked, SpiffWorkflow's
``refresh_timers()`` marks due timers READY and the engine runs them (see
:func:`engine.runner.advance`, which refreshes timers before each engine pass, working around
``do_engine_steps`` refreshing only at its end). Two schedulers firing the same instance at
once serialise on the row lock; the second finds nothing due and changes nothing, so a timer
never fires twice. Nothing lives outside the database: a restart loses nothing.

:class:`engine.background.BackgroundWorker` runs :func:`fire_due` in a loop, sleeping until
the next due time (:func:`next_due`, one indexed ``MIN(wake_at)`` query).
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa

from . import instances
from .audit import ENGINE_ACTOR
from .errors import SdfError
from .schema import instances as instances_table
from .status import InstanceStatus

log = logging.getLogger(__name__)
FIREABLE = (InstanceStatus.RUNNING.value, InstanceStatus.WAITING.value)


def _due_query(now: datetime, limit: int):
    return (
        sa.select(instances_table.c.id)
        .where(instances_table.c.wake_at <= now, instances_table.c.status.in_(FIREABLE))
        .order_by(instances_table.c.wake_at)
        .limit(limit)
    )


def due_instances(engine, now: datetime | None = None, limit: int = 500) -> list[int]:
    with engine.db.read() as conn:
        return list(conn.execute(_due_query(now or engine.clock(), limit)).scalars())


def fire_instance(engine, instance_id: int) -> dict:
    """Advance one instance whose timer came due (a no-op if another worker already did)."""
    return instances.change(engine, instance_id, ENGINE_ACTOR, lambda tr: tr.run_engine(), allow=FIREABLE)


def fire_due(engine, now: datetime | None = None, limit: int = 500) -> int:
    """Fire every timer due at ``now``; return how many instances were advanced."""
    fired = 0
    for instance_id in due_instances(engine, now, limit):
        try:
            fire_instance(engine, instance_id)
            fired += 1
        except SdfError as exc:  # changed status meanwhile (suspended, terminated...): skip it
            log.info("timer of instance %s not fired: %s", instance_id, exc.message)
    return fired


def next_due(engine) -> datetime | None:
    with engine.db.read() as conn:
        return conn.execute(
            sa.select(sa.func.min(instances_table.c.wake_at)).where(instances_table.c.status.in_(FIREABLE))
        ).scalar()


def waiting_timers(engine, limit: int = 100) -> list[dict]:
    query = (
        sa.select(instances_table.c.id, instances_table.c.process_id, instances_table.c.wake_at)
        .where(instances_table.c.wake_at.is_not(None), instances_table.c.status.in_(FIREABLE))
        .order_by(instances_table.c.wake_at)
        .limit(limit)
    )
    with engine.db.read() as conn:
        return [
            {"instance_id": r.id, "process_id": r.process_id, "due_at": r.wake_at.isoformat()}
            for r in conn.execute(query)
        ]
