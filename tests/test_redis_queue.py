"""Jobs on Redis with rq (the ``job_queue`` hook answered by plugins.rq_queue).

Needs the Redis server on 127.0.0.1:6379 (``SDF_TEST_REDIS_URL``); required under CI. Each
test uses its own queue name so runs never see each other's jobs.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from engine import jobs
from engine.schema import outbox
from tests.conftest import BPMN, IN_CI, add_team, make_engine, only_task
from tests.test_service_tasks import FakeCrm

REDIS_URL = os.environ.get("SDF_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_queue_name():
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisDown

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except RedisDown as exc:
        if IN_CI:
            pytest.fail(f"Redis is required under CI but unreachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis not reachable ({exc})")
    name = f"sdf-test-{uuid.uuid4().hex[:8]}"
    yield name
    for key in client.scan_iter(f"*{name}*"):
        client.delete(key)
    client.close()


def queue_engine(database_url, redis_url, queue_name):
    engine = make_engine(database_url, redis_url=redis_url, queue_name=queue_name)
    engine.operators.register("crm_lookup", FakeCrm(), provider="tests")
    return engine


def job_statuses(engine):
    with engine.db.read() as conn:
        return [r.status for r in conn.execute(sa.select(outbox.c.status).order_by(outbox.c.id))]


def test_service_call_runs_on_an_rq_worker(database_url, redis_queue_name):
    engine = queue_engine(database_url, REDIS_URL, redis_queue_name)
    try:
        assert engine.job_queue is not None and engine.job_queue.name == "rq"  # answered by job_queue
        add_team(engine)
        engine.deploy([BPMN / "crm_lookup.bpmn"])
        instance = engine.start("crm_lookup", {"client": "acme", "vip": True, "patience": "PT1H"})
        assert engine.job_queue.queue().count == 1  # handed to Redis after the commit
        engine.job_queue.run_worker(engine, burst=True)
        after = engine.get_instance(instance["id"])
        assert after["data"]["crm"] == {"name": "ACME", "tier": "gold"}
        assert only_task(after)["element_id"] == "review"
        assert job_statuses(engine) == ["done"]
    finally:
        engine.close()


def test_redis_outage_loses_nothing(database_url, redis_queue_name):
    """Completions go on while Redis is down; the outbox drains once it is back."""
    down = queue_engine(database_url, UNREACHABLE, redis_queue_name)
    try:
        add_team(down)
        down.deploy([BPMN / "crm_lookup.bpmn"])
        started = [down.start("crm_lookup", {"client": f"c{n}", "vip": False, "patience": "PT1H"}) for n in range(3)]
        assert all(i["status"] == "waiting" for i in started)  # the starts committed anyway
        assert job_statuses(down) == ["pending"] * 3
    finally:
        down.close()
    back = queue_engine(database_url, REDIS_URL, redis_queue_name)
    try:
        swept: set = set()
        assert jobs.sweep(back, swept, grace=0) == 3  # the worker's sweeper hands them over
        assert jobs.sweep(back, swept, grace=0) == 0  # and does not flood the queue with repeats
        back.job_queue.run_worker(back, burst=True)
        assert job_statuses(back) == ["done"] * 3
        for instance in started:
            assert only_task(back.get_instance(instance["id"]))["element_id"] == "review"
            completed = [e for e in back.history(instance["id"]) if e["type"] == "service_call_completed"]
            assert len(completed) == 1  # duplicates in the queue did not advance anything twice
    finally:
        back.close()


def test_queue_mode_sweeper_does_not_spin_on_pending_jobs(database_url, redis_queue_name):
    """A due job waiting for an rq worker must not make the timer/sweeper loop busy-wait."""
    from engine.background import BackgroundWorker

    engine = queue_engine(database_url, REDIS_URL, redis_queue_name)
    try:
        add_team(engine)
        engine.deploy([BPMN / "crm_lookup.bpmn"])
        engine.start("crm_lookup", {"client": "acme", "vip": False, "patience": "PT1H"})
        assert job_statuses(engine) == ["pending"]
        sweeper = BackgroundWorker(engine, max_sleep=0.5, run_jobs=False)
        assert sweeper._sleep_time() > 0.4  # sleeps until the next timer (1 h away), capped at max_sleep
    finally:
        engine.close()
