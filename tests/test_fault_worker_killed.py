"""Fault test: a worker killed with SIGKILL in the middle of a service-task job.

Real processes: ``sdf worker`` runs the job, the operator (from the sample plugin, loaded
through its entry point) logs the call to a file and sleeps; the test kills the worker with
SIGKILL mid-call. A second worker takes the job over once the lease expires, calls the
operator again with the same idempotency key, and the instance advances exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from engine.schema import outbox
from tests.conftest import BPMN, make_engine, only_task

SDF = str(Path(sys.executable).parent / "sdf")


def _worker(url: str, output: Path) -> subprocess.Popen:
    env = {**os.environ, "SDF_DATABASE_URL": url, "SDF_JOB_LEASE_SECONDS": "2"}
    with output.open("ab") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([SDF, "worker"], env=env, stdout=sink, stderr=subprocess.STDOUT)


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_killed_worker_is_replaced_and_the_instance_advances_once(database_url, tmp_path):
    engine = make_engine(database_url)
    try:
        engine.add_user("pat", groups_=["project_manager"])
        engine.deploy([BPMN / "slow_call.bpmn"])
        log = tmp_path / "calls.log"
        instance = engine.start("slow_call", {"log": str(log), "seconds": 60})
        output = tmp_path / "workers.log"
        first = _worker(database_url, output)
        try:
            _wait(lambda: log.exists() and log.read_text().count("\n") == 1, 30, "the first call")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert first.returncode == -signal.SIGKILL
        assert engine.get_instance(instance["id"])["tasks"] == []  # nothing was recorded by the dead worker

        second = _worker(database_url, output)
        try:
            _wait(lambda: engine.get_instance(instance["id"])["tasks"], 60, "the second worker to finish the job")
        finally:
            second.terminate()
            second.wait(10)

        calls = log.read_text().splitlines()
        assert len(calls) == 2 and calls[0].split()[0] == calls[1].split()[0]  # same idempotency key
        assert [c.split()[-1] for c in calls] == ["1", "2"]
        after = engine.get_instance(instance["id"])
        assert only_task(after)["element_id"] == "after"
        completed = [e for e in engine.history(instance["id"]) if e["type"] == "service_call_completed"]
        assert len(completed) == 1
        with engine.db.read() as conn:
            row = conn.execute(sa.select(outbox.c.status, outbox.c.attempts)).one()
        assert tuple(row) == ("done", 2)
    finally:
        engine.close()
