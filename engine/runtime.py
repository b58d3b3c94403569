"""The engine object: one per process, built by :func:`build_engine`, passed to every adapter.

It owns the database, the serializer, the definition and workflow caches, the sandboxed
script engine and the clock, and offers the operations the CLI and the web app call. The
operations themselves live in small modules by concept (``definitions``, ``instances``,
``inbox``, ``users``); this class only wires them together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from . import inbox, instances, lint, parsing, timeclock, users
from .db import Database
from .definitions import DefinitionStore, DeployResult
from .errors import ConfigurationError, NotFound
from .instances import list_incidents
from .operators import OperatorRegistry
from .plugins import create_plugin_manager, deliver, listening
from .plugins import install as install_plugins
from .schema import utcnow
from .scripting import create_script_engine
from .serializer import StateSerializer
from .settings import Settings, load_settings
from .transitions import WorkflowCache

log = logging.getLogger(__name__)


class Engine:
    """The Service Delivery Framework engine (no Flask, no Redis)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow, plugins=None):
        self.settings = settings
        self.clock = clock
        timeclock.install()
        # SpiffWorkflow's timers and scripts' now() follow self.clock inside every write transaction
        self.db = Database(settings.database_url, scope=lambda: timeclock.using(self.clock))
        self.serializer = StateSerializer()
        self.definitions = DefinitionStore(self.db, self.serializer)
        self.workflows = WorkflowCache()
        self.script_engine = create_script_engine(time_limit=settings.script_time_limit)
        self.operators = OperatorRegistry()
        self.channels = OperatorRegistry()
        self._work_listeners: list = []
        self.plugins = plugins or create_plugin_manager(disabled=settings.disable_plugins.split(","))
        install_plugins(self, self.plugins)
        self._listening = listening(self.plugins)
        self.job_queue = self.plugins.hook.job_queue(settings=settings)

    # -- plugins --------------------------------------------------------------------------
    def emits(self, hook_name: str) -> bool:
        """True when some plugin listens to this lifecycle hook (else events are not even built)."""
        return hook_name in self._listening

    def emit(self, hook_name: str, **kwargs) -> None:
        if hook_name in self._listening:
            deliver(self, hook_name, **kwargs)

    def record_plugin_failure(self, plugin_name: str, hook_name: str, exc: Exception, kwargs: dict) -> None:
        from . import audit
        from .audit import AuditEvent

        subject = next((v for v in kwargs.values() if isinstance(v, dict)), {})
        instance_id = subject.get("instance_id", subject.get("id") if hook_name.startswith("instance") else None)
        event = AuditEvent(
            "plugin_failed",
            self.clock(),
            instance_id=instance_id,
            actor=plugin_name,
            data={"hook": hook_name, "error": f"{type(exc).__name__}: {exc}"},
        )
        with self.db.write() as conn:
            audit.write(conn, [event])

    # -- background work ------------------------------------------------------------------
    def add_work_listener(self, callback) -> None:
        """``callback()`` runs after a commit that created background work (jobs, earlier timers)."""
        self._work_listeners.append(callback)

    def notify_work(self) -> None:
        for callback in list(self._work_listeners):
            callback()

    def jobs_created(self, job_ids: list[int], delay: float = 0.0) -> None:
        """Hand committed outbox jobs to the queue; a queue outage is logged, never raised.

        Jobs not handed over stay pending in the database; the worker's sweeper enqueues them
        once the queue is back, so nothing is lost.
        """
        if self.job_queue is not None:
            for job_id in job_ids:
                try:
                    self.job_queue.enqueue(job_id, delay)
                except Exception as exc:  # noqa: BLE001 - the change is committed; the sweeper catches up
                    log.warning("job %s not queued (%s); it stays pending until the sweeper retries", job_id, exc)
        self.notify_work()

    # -- set-up ---------------------------------------------------------------------------
    def migrate(self) -> None:
        self.db.upgrade()

    def close(self) -> None:
        self.db.dispose()

    def require_schema(self) -> None:
        """Fail with a clear hint when the database was never set up or is behind the code."""
        database = self.db.engine.url.database
        if self.db.is_sqlite and database not in (None, "", ":memory:") and not Path(database).exists():
            raise ConfigurationError(f"there is no database at {database}; run `sdf init` (or `sdf migrate`) first")
        found = self.db.schema_revision()
        if found is None:
            raise ConfigurationError(
                f"the database {self.database_label} has no tables yet; run `sdf init` (or `sdf migrate`) first"
            )
        head = self.db.head_revision()
        if found != head:
            raise ConfigurationError(
                f"the database {self.database_label} is at schema {found}, this version needs {head}; run `sdf migrate`"
            )

    @property
    def database_label(self) -> str:
        return self.db.engine.url.render_as_string(hide_password=True)

    # -- definitions ----------------------------------------------------------------------
    def validate(self, paths: Iterable[str | Path]) -> list[parsing.CompiledProcess]:
        return self.definitions.compile(parsing.collect_files(paths), operators=self.operators.names())

    def warnings(self, paths: Iterable[str | Path]) -> list:
        """What would deploy and run but probably surprise its users (see :mod:`engine.lint`)."""
        return lint.warnings(parsing.collect_files(paths))

    def deploy(
        self, paths: Iterable[str | Path], deployed_by: str | None = None, *, by_user: bool = False
    ) -> list[DeployResult]:
        """Deploy files; ``deployed_by`` is a label (a tool name) unless ``by_user`` says it names a user."""
        if by_user and deployed_by is not None:
            with self.db.read() as conn:
                self.require_user(conn, deployed_by)
        return self.definitions.deploy(
            parsing.collect_files(paths), deployed_by, operators=self.operators.names(), now=self.clock()
        )

    def list_definitions(self) -> list[dict]:
        with self.db.read() as conn:
            return self.definitions.list(conn)

    # -- instances ------------------------------------------------------------------------
    def start(
        self, process_id: str, data: dict | None = None, *, business_key: str | None = None, actor: str | None = None
    ) -> dict:
        return instances.start(self, process_id, data, business_key=business_key, actor=actor)

    def get_instance(self, instance_id: int) -> dict:
        return instances.get(self, instance_id)

    def list_instances(self, **filters) -> list[dict]:
        return instances.list_summaries(self, **filters)

    def suspend(self, instance_id: int, actor: str | None = None) -> dict:
        return instances.suspend(self, instance_id, actor)

    def resume(self, instance_id: int, actor: str | None = None) -> dict:
        return instances.resume(self, instance_id, actor)

    def terminate(self, instance_id: int, actor: str | None = None, reason: str | None = None) -> dict:
        return instances.terminate(self, instance_id, actor, reason)

    def history(self, instance_id: int) -> list[dict]:
        from . import audit

        self.get_instance(instance_id)
        with self.db.read() as conn:
            return audit.history(conn, instance_id)

    # -- incidents ------------------------------------------------------------------------
    def list_incidents(self, *, instance_id: int | None = None, status: str | None = "open") -> list[dict]:
        with self.db.read() as conn:
            return list_incidents(conn, instance_id=instance_id, status=status)

    def retry_incident(self, incident_id: int, actor: str | None = None, data: dict | None = None) -> dict:
        return instances.retry_incident(self, incident_id, actor, data)

    # -- inbox ----------------------------------------------------------------------------
    def list_tasks(self, **filters) -> list[dict]:
        return inbox.list_tasks(self, **filters)

    def get_task(self, task_id: int) -> dict:
        return inbox.get_task(self, task_id)

    def task_details(self, task_id: int) -> dict:
        return inbox.task_details(self, task_id)

    def claim(self, task_id: int, user: str) -> dict:
        return inbox.claim(self, task_id, user)

    def unclaim(self, task_id: int, user: str) -> dict:
        return inbox.unclaim(self, task_id, user)

    def assign(self, task_id: int, assignee: str, user: str) -> dict:
        return inbox.assign(self, task_id, assignee, user)

    def complete(self, task_id: int, user: str, data: dict | None = None) -> dict:
        return inbox.complete(self, task_id, user, data)

    def inbox_rows(self, conn, where) -> list[dict]:
        return inbox.rows(conn, where)

    # -- users ----------------------------------------------------------------------------
    def add_user(self, name: str, **kwargs) -> users.User:
        """Add a user; keyword arguments: groups_, password, display_name, email, is_admin, skills."""
        with self.db.write() as conn:
            return users.add_user(conn, name, **kwargs)

    def list_users(self) -> list[users.User]:
        with self.db.read() as conn:
            return users.list_users(conn)

    def require_user(self, conn, name: str) -> users.User:
        user = users.find_user(conn, name)
        if user is None:
            raise NotFound(f"unknown user {name!r}; add it with `sdf users add {name}`", user=name)
        return user

    # -- messages -------------------------------------------------------------------------
    def correlate_message(
        self, name: str, payload: dict | None = None, correlation: dict | None = None, actor: str | None = None
    ) -> list[dict]:
        """Deliver message ``name`` to the instance(s) waiting for it, or start one (see ``messages``)."""
        from . import messages

        return messages.correlate(self, name, payload, correlation, actor)


def build_engine(settings: Settings | None = None, **kwargs) -> Engine:
    """Build an engine from settings (default: the ``SDF_*`` environment)."""
    return Engine(settings or load_settings(), **kwargs)
