"""Asynchronous service tasks through the outbox: results, retries, incidents, business errors.

The operator here is a real function registered on the engine (plugins register theirs the
same way); the "outside system" is a dict the test controls.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from engine import jobs, timers
from engine.errors import DefinitionInvalid
from engine.operators import BusinessError
from engine.schema import outbox
from tests.conftest import BPMN, only_task

SLOW = {"patience": "P2D"}  # the boundary timer "too slow" stays out of the way (the clock skips hours)


class FakeCrm:
    """Counts calls; fails the first ``failures`` calls; knows some clients."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.calls = []

    def __call__(self, params, call):
        self.calls.append((params, call.idempotency_key, call.attempt))
        if len(self.calls) <= self.failures:
            raise ConnectionError("CRM unreachable")
        if params["client"] == "ghost":
            raise BusinessError("NOT_FOUND", "no such client", {"client": params["client"]})
        return {"name": params["client"].upper(), "tier": params["tier"]}


class Clock:
    """A controllable clock for the engine (job leases, backoff, timer selection)."""

    def __init__(self):
        from engine.schema import utcnow

        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)


@pytest.fixture
def crm(team):
    team.clock = Clock()
    fake = FakeCrm()
    team.operators.register("crm_lookup", fake, provider="tests")
    team.deploy([BPMN / "crm_lookup.bpmn"])
    return team, fake


def job_rows(engine, instance_id):
    with engine.db.read() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.instance_id == instance_id)).all()


def test_unknown_operator_is_refused_at_deploy(engine):
    with pytest.raises(DefinitionInvalid) as info:
        engine.deploy([BPMN / "crm_lookup.bpmn"])
    assert "crm_lookup.bpmn:11: lookup: unknown operator 'crm_lookup'" in str(info.value)


def test_call_is_made_by_a_job_and_its_result_continues_the_instance(crm):
    engine, fake = crm
    instance = engine.start("crm_lookup", {"client": "acme", "vip": True, **SLOW})
    assert instance["status"] == "waiting" and instance["tasks"] == []
    assert fake.calls == []  # nothing is called inside the start transaction
    [row] = job_rows(engine, instance["id"])
    assert (row.status, row.operator, row.attempts) == ("pending", "crm_lookup", 0)
    assert jobs.run_due(engine) == 1
    after = engine.get_instance(instance["id"])
    assert after["data"]["crm"] == {"name": "ACME", "tier": "gold"}
    assert only_task(after)["element_id"] == "review"
    assert job_rows(engine, instance["id"])[0].status == "done"
    assert jobs.run_due(engine) == 0 and len(fake.calls) == 1


def test_transient_failures_are_retried_with_the_same_idempotency_key(crm):
    engine, fake = crm
    fake.failures = 2
    instance = engine.start("crm_lookup", {"client": "acme", "vip": False, **SLOW})
    job = job_rows(engine, instance["id"])[0]
    for _ in range(3):
        jobs.run_due(engine)
        engine.clock.advance(3600)
    assert [c[2] for c in fake.calls] == [1, 2, 3]
    assert {c[1] for c in fake.calls} == {job.idempotency_key}
    after = engine.get_instance(instance["id"])
    assert only_task(after)["element_id"] == "review"
    row = job_rows(engine, instance["id"])[0]
    assert (row.status, row.attempts, row.last_error) == ("done", 3, "ConnectionError: CRM unreachable")


def test_backoff_waits_before_the_next_attempt(crm):
    engine, fake = crm
    fake.failures = 1
    instance = engine.start("crm_lookup", {"client": "acme", "vip": False, **SLOW})
    jobs.run_due(engine)
    assert jobs.run_due(engine) == 0  # the retry is not due yet (default backoff 2 s)
    row = job_rows(engine, instance["id"])[0]
    assert row.status == "pending" and row.next_attempt_at > engine.clock()


def test_exhausted_retries_raise_an_incident_that_can_be_retried(crm):
    engine, fake = crm
    fake.failures = 10**6
    instance = engine.start("crm_lookup", {"client": "acme", "vip": False, **SLOW})
    for _ in range(4):  # 1 call + 3 retries (the default)
        jobs.run_due(engine)
        engine.clock.advance(3600)
    after = engine.get_instance(instance["id"])
    assert after["status"] == "error"
    [incident] = after["incidents"]
    assert incident["element_id"] == "lookup" and incident["kind"] == "service_error"
    assert (
        "'crm_lookup' (plugin tests) failed after 4 attempt(s): ConnectionError: CRM unreachable" in incident["message"]
    )
    assert job_rows(engine, instance["id"])[0].status == "dead"
    fake.failures = 0  # the CRM is back
    engine.retry_incident(incident["id"], "dana")
    jobs.run_due(engine)
    done = engine.get_instance(instance["id"])
    assert done["status"] == "running" and only_task(done)["element_id"] == "review"
    keys = [r.idempotency_key for r in job_rows(engine, instance["id"])]
    assert len(keys) == 2 and keys[0] != keys[1]  # the retried call is a new call


def test_business_error_is_caught_by_the_error_boundary_event(crm):
    engine, fake = crm
    instance = engine.start("crm_lookup", {"client": "ghost", "vip": False, **SLOW})
    jobs.run_due(engine)
    after = engine.get_instance(instance["id"])
    assert only_task(after)["element_id"] == "fix_client"
    assert after["status"] == "running"
    assert job_rows(engine, instance["id"])[0].status == "done"
    assert "service_business_error" in [e["type"] for e in engine.history(instance["id"])]


def test_interrupting_timer_cancels_a_call_not_yet_made(crm):
    engine, fake = crm
    instance = engine.start("crm_lookup", {"client": "acme", "vip": False, "patience": "PT30M"})
    assert job_rows(engine, instance["id"])[0].status == "pending"
    engine.clock.advance(1801)
    timers.fire_due(engine)
    after = engine.get_instance(instance["id"])
    assert only_task(after)["element_id"] == "fix_client"
    assert job_rows(engine, instance["id"])[0].status == "cancelled"
    engine.clock.advance(3600)
    assert jobs.run_due(engine) == 0
    assert fake.calls == []


def test_worker_that_died_mid_job_is_replaced_and_the_instance_advances_once(crm):
    engine, fake = crm
    instance = engine.start("crm_lookup", {"client": "acme", "vip": False, **SLOW})
    [row] = job_rows(engine, instance["id"])
    leased = jobs._lease(engine, row.id)  # a worker leases the job, calls out, then dies
    assert leased is not None
    assert jobs.run_due(engine) == 0  # the lease still holds
    engine.clock.advance(engine.settings.job_lease_seconds + 1)
    assert jobs.run_due(engine) == 1
    after = engine.get_instance(instance["id"])
    assert only_task(after)["element_id"] == "review"
    created = [e for e in engine.history(instance["id"]) if e["type"] == "service_call_completed"]
    assert len(created) == 1
