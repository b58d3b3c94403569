"""Built-in job queue on Redis with rq, used when ``SDF_REDIS_URL`` is set.

The engine hands each committed outbox job to rq by id; an rq worker (``sdf worker``) runs
:func:`perform`, a top-level function taking the id, which builds an engine from the
``SDF_*`` environment once per worker process and runs :func:`engine.jobs.run_job`. The job
itself never raises for an operator failure: retries, backoff and incidents live in the
outbox (the database is the source of truth), and a retry is handed back to rq with
``enqueue_in`` (run by rq's scheduler). Redis holds no state that matters: after a flush or an
outage, the worker's sweeper re-enqueues whatever the database says is due.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from engine.hookspecs import hookimpl

log = logging.getLogger(__name__)
_engine = None


@hookimpl(trylast=True)
def job_queue(settings):
    if not settings.redis_url:
        return None
    return RqJobQueue(settings.redis_url, settings.queue_name)


class RqJobQueue:
    name = "rq"

    def __init__(self, url: str, queue_name: str = "sdf"):
        self.url = url
        self.queue_name = queue_name
        self._queue = None

    def queue(self):
        if self._queue is None:
            from redis import Redis
            from rq import Queue

            connection = Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
            self._queue = Queue(self.queue_name, connection=connection)
        return self._queue

    def enqueue(self, job_id: int, delay: float = 0.0) -> None:
        if delay > 0:
            self.queue().enqueue_in(timedelta(seconds=delay), perform, job_id)
        else:
            self.queue().enqueue(perform, job_id)

    def run_worker(self, engine, burst: bool = False) -> None:
        """Run an rq worker in the foreground (with rq's scheduler for delayed retries).

        A ``SimpleWorker`` runs jobs in this process: a forking worker would share the
        engine's open database connections with its children. A worker that dies mid-job
        loses nothing: the job's lease expires and the sweeper hands it to another worker.
        """
        from rq import SimpleWorker

        global _engine
        _engine = engine  # the jobs this process runs use the worker's engine
        queue = self.queue()
        SimpleWorker([queue], connection=queue.connection).work(burst=burst, with_scheduler=True)


def perform(job_id: int) -> bool:
    """The rq job: run outbox job ``job_id`` (a no-op when another worker already holds it)."""
    from engine import jobs
    from engine.runtime import build_engine

    global _engine
    if _engine is None:
        _engine = build_engine()
    return jobs.run_job(_engine, job_id)
