"""The in-process background worker: fires due timers and runs due jobs.

Used when no job queue is configured (the embedded default), so that one process is a
complete system, and by ``sdf worker``. It sleeps until the next due timer or job (two
indexed MIN queries), at most ``max_sleep`` seconds so work created by other processes is
picked up promptly, and is woken at once when this process commits new work.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from . import jobs, start_timers, timers

log = logging.getLogger(__name__)


class BackgroundWorker:
    def __init__(self, engine, *, max_sleep: float = 1.0, run_jobs: bool = True):
        """``run_jobs=False`` (queue mode): jobs run on queue workers; this loop fires timers and
        re-enqueues jobs whose hand-over was lost (see :func:`engine.jobs.sweep`)."""
        self.engine = engine
        self.max_sleep = max_sleep
        self.run_jobs = run_jobs
        self._swept: set = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.timers_fired = 0
        self.jobs_run = 0
        engine.add_work_listener(self.wake)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run_once(self) -> int:
        fired = timers.fire_due(self.engine) + start_timers.fire_due(self.engine)
        self.timers_fired += fired
        if not self.run_jobs:
            jobs.sweep(self.engine, self._swept)
            return fired
        ran = jobs.run_due(self.engine)
        self.jobs_run += ran
        return fired + ran

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # noqa: BLE001 - keep the worker alive; the error is logged
                log.exception("background pass failed")
                busy = 0
            if busy:
                continue
            self._wake.wait(self._sleep_time())
            self._wake.clear()

    def _sleep_time(self) -> float:
        due = [timers.next_due(self.engine), start_timers.next_due(self.engine)]
        if self.run_jobs:  # in queue mode the queue's workers run jobs; due jobs must not wake the sweeper
            due.append(jobs.next_job_due(self.engine))
        upcoming = [d for d in due if d is not None]
        if not upcoming:
            return self.max_sleep
        seconds = (min(upcoming) - self.engine.clock()) / timedelta(seconds=1)
        return min(max(seconds, 0.0), self.max_sleep)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="sdf-background", daemon=True)
        thread.start()
        return thread
