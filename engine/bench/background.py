"""Benchmarks of background work: timer lateness and service-call throughput per worker count.

- timer lateness: ``waiting`` instances wait for timers far in the future, ``due`` more come
  due spread over one second; one :class:`~engine.background.BackgroundWorker` fires them.
  Lateness = commit time of the firing transition (the ``task_created`` event) minus the
  stored due time; p50 and p99 are reported (target: p99 under 1 s).
- service throughput: ``calls`` instances each wait on a service call to an operator that
  takes ``latency`` seconds (like a remote API); the jobs are drained by 1 and then by 2
  worker *processes* sharing the database. Reported: calls/s for each and the speed-up
  (target: at least 1.7x with 2 workers).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..background import BackgroundWorker
from ..runtime import build_engine
from ..schema import events, instances
from ..settings import load_settings
from . import HERE

TIMER = HERE / "timer_wait.bpmn"
SERVICE = HERE / "service_call.bpmn"


def _engine(url: str):
    engine = build_engine(load_settings(environ={}, database_url=url))
    engine.operators.register("bench_remote", _remote, provider="bench")
    return engine


def _remote(params, call):
    time.sleep(_remote.latency)
    return {"n": params["n"], "key": call.idempotency_key}


_remote.latency = 0.02


def _clone_waiting(engine, template_id: int, copies: int) -> None:
    """Fill the table with instances waiting far in the future (copies of a real one)."""
    columns = [c for c in instances.c if c.name != "id"]
    with engine.db.write() as conn:
        row = conn.execute(sa.select(*columns).where(instances.c.id == template_id)).first()
        values = dict(row._mapping)
        conn.execute(instances.insert(), [dict(values) for _ in range(copies)])


def timer_lateness(url: str, waiting: int = 10_000, due: int = 100) -> dict:
    engine = _engine(url)
    try:
        engine.migrate()
        engine.deploy([TIMER], deployed_by="bench")
        template = engine.start("bench_timer", {"wait": "P30D"})
        _clone_waiting(engine, template["id"], waiting - 1)
        lead = 2.0  # seconds until the first due timer: time to start them all
        started = [engine.start("bench_timer", {"wait": f"PT{lead + i / due:.3f}S"})["id"] for i in range(due)]
        with engine.db.read() as conn:
            due_at = dict(
                conn.execute(sa.select(instances.c.id, instances.c.wake_at).where(instances.c.id.in_(started))).all()
            )
        worker = BackgroundWorker(engine, max_sleep=1.0)
        thread = worker.start_thread()
        _wait_for(lambda: _fired(engine, started) >= due, timeout=lead + 30)
        worker.stop()
        thread.join(10)
        late = _lateness(engine, due_at)
    finally:
        engine.close()
    return {
        "waiting_timers": waiting,
        "due_timers": due,
        "fired": len(late),
        "p50_ms": round(_percentile(late, 50) * 1000, 1),
        "p99_ms": round(_percentile(late, 99) * 1000, 1),
        "max_ms": round(max(late) * 1000, 1) if late else None,
    }


def _fired(engine, ids) -> int:
    with engine.db.read() as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.instance_id.in_(ids), events.c.type == "task_created")
        ).scalar()


def _lateness(engine, due_at: dict[int, datetime]) -> list[float]:
    with engine.db.read() as conn:
        rows = conn.execute(
            sa.select(events.c.instance_id, events.c.at).where(
                events.c.instance_id.in_(list(due_at)), events.c.type == "task_created"
            )
        ).all()
    return sorted(max(0.0, (at - due_at[i]) / timedelta(seconds=1)) for i, at in rows)


def _percentile(values: list[float], pct: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.1)


def _drain(url: str, stop_at: float) -> None:
    """One worker process: run jobs until none are left (or the deadline)."""
    engine = _engine(url)
    worker = BackgroundWorker(engine, max_sleep=0.05)
    try:
        while time.monotonic() < stop_at:
            if worker.run_once() == 0 and _open_jobs(engine) == 0:
                break
    finally:
        engine.close()


def _open_jobs(engine) -> int:
    from ..schema import outbox

    with engine.db.read() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status.in_(("pending", "running")))
        ).scalar()


def service_throughput(url: str, calls: int = 200, latency: float = 0.02) -> dict:
    engine = _engine(url)
    engine.migrate()
    engine.deploy([SERVICE], deployed_by="bench")
    engine.close()
    rates = {}
    for workers in (1, 2):
        engine = _engine(url)
        for n in range(calls):
            engine.start("bench_service", {"n": n})
        engine.close()
        _remote.latency = latency
        began = time.perf_counter()
        context = multiprocessing.get_context("fork")
        procs = [context.Process(target=_drain, args=(url, time.monotonic() + 120)) for _ in range(workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        rates[workers] = calls / (time.perf_counter() - began)
    return {
        "calls": calls,
        "operator_latency_ms": latency * 1000,
        "one_worker_per_s": round(rates[1], 1),
        "two_workers_per_s": round(rates[2], 1),
        "speedup": round(rates[2] / rates[1], 2),
    }
