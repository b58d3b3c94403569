"""Pytest fixtures and helpers for testing sdf plugins (and anything else built on the engine).

Load it from your plugin's ``conftest.py`` (or from a test module)::

    pytest_plugins = ["engine.testing"]

Fixtures (function-scoped unless noted; all share one database per test):

``sdf_database_url``
    The URL of a fresh SQLite database in ``tmp_path`` with the current schema (migrated once
    per session into a template file that each test copies, so it costs a file copy).

``sdf_clock``
    A :class:`Clock`: the real UTC time plus an offset your test can move forward with
    ``advance(seconds)``. The engines of these fixtures use it, so job backoff and leases can
    be skipped without sleeping (see :func:`run_jobs`).

``sdf_engine``
    An :class:`engine.runtime.Engine` on that database with a fresh plugin manager: the
    built-in plugins plus every plugin installed through the ``sdf`` entry-point group, as in
    production, and nothing from ``SDF_*`` variables of the environment. Closed after the test::

        def test_my_operator_is_installed(sdf_engine):
            assert "my_operator" in sdf_engine.operators.names()

``sdf_plugins``
    A :class:`PluginHarness` for plugin *objects* that are not installed (a class in the test
    file, a module under development): ``register(plugin, ...)`` returns a fresh engine on the
    same database whose plugin manager also includes that plugin. Later calls add to the
    plugins registered earlier in the test; everything is unregistered and closed afterwards::

        class Recorder:
            def __init__(self):
                self.tasks = []

            @hookimpl
            def task_created(self, task):
                self.tasks.append(task["element_id"])

        def test_recorder_sees_new_tasks(sdf_plugins):
            recorder = Recorder()
            engine = sdf_plugins.register(recorder)
            deploy_bpmn(engine, MY_PROCESS)
            engine.start("my_process", {})
            assert recorder.tasks == ["review"]

    Registering an object that is also installed through an entry point (your plugin module
    itself) replaces the installed copy instead of failing with "registered twice".

Helpers (plain functions, import them from this module):

* :func:`run_jobs` performs the background jobs (service-task calls) that are due, as
  ``sdf worker --once`` does; with ``wait_for_retries=True`` it also moves :data:`sdf_clock`
  forward to each retry until no job is left pending.
* :func:`deploy_bpmn` deploys BPMN given as text (write the process next to the test).
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from . import jobs
from .plugins import ENTRY_POINT_GROUP, create_plugin_manager
from .runtime import Engine
from .schema import utcnow
from .settings import load_settings

__all__ = ["Clock", "PluginHarness", "deploy_bpmn", "make_engine", "run_jobs"]


class Clock:
    """The engine's clock for tests: real UTC time plus an offset that only moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` into the future (leases expire, backoff delays pass)."""
        self.offset += timedelta(seconds=seconds)

    def advance_to(self, moment: datetime) -> None:
        """Jump to ``moment`` unless it has passed already."""
        ahead = moment - self()
        if ahead > timedelta():
            self.offset += ahead


def make_engine(database_url: str, *, plugins: Iterable = (), disabled: Iterable[str] = (), clock=None, **settings):
    """An engine on ``database_url`` whose plugin manager holds the built-ins, the installed
    plugins (minus ``disabled`` names) and ``plugins``; ``settings`` override ``load_settings``."""
    plugins = list(plugins)
    if isinstance(disabled, str):  # "a,b" as in SDF_DISABLE_PLUGINS
        disabled = disabled.split(",")
    disabled = [name.strip() for name in (*disabled, *_installed_names_of(plugins)) if name.strip()]
    pm = create_plugin_manager(disabled=disabled, extra=plugins)
    config = load_settings(environ={}, database_url=database_url, disable_plugins=",".join(disabled), **settings)
    return Engine(config, plugins=pm, **({"clock": clock} if clock is not None else {}))


def _installed_names_of(plugins: list) -> list[str]:
    """Entry-point names whose object is one of ``plugins`` (so registering it replaces it)."""
    if not plugins:
        return []
    names = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:  # noqa: BLE001 - create_plugin_manager reports load failures itself
            continue
        if any(loaded is plugin for plugin in plugins):
            names.append(entry.name)
    return names


class PluginHarness:
    """Builds engines that include plugin objects for one test (the ``sdf_plugins`` fixture)."""

    def __init__(self, database_url: str, clock: Clock) -> None:
        self.database_url = database_url
        self.clock = clock
        self.plugins: list = []
        self.engines: list[Engine] = []

    @property
    def engine(self) -> Engine:
        """The engine returned by the last :meth:`register` call."""
        if not self.engines:
            raise RuntimeError("call sdf_plugins.register(plugin) first")
        return self.engines[-1]

    def register(self, *plugins, disabled: Iterable[str] = (), **settings) -> Engine:
        """A fresh engine whose manager includes ``plugins`` and every plugin registered before.

        ``disabled`` blocks plugins by name as ``SDF_DISABLE_PLUGINS`` does (``"plugins.http"``,
        an entry-point name...); ``settings`` override other settings (e.g. ``script_time_limit``).
        A mistake in a plugin (misspelled hook, duplicate operator) raises
        :class:`engine.errors.ConfigurationError` here, as it would at start-up.
        """
        candidates = [*self.plugins, *plugins]
        engine = make_engine(self.database_url, plugins=candidates, disabled=disabled, clock=self.clock, **settings)
        self.plugins = candidates
        self.engines.append(engine)
        return engine

    def close(self) -> None:
        for engine in self.engines:
            for plugin in self.plugins:
                if engine.plugins.is_registered(plugin):
                    engine.plugins.unregister(plugin)
            engine.close()
        self.engines.clear()
        self.plugins.clear()


def run_jobs(engine: Engine, *, wait_for_retries: bool = False, max_rounds: int = 100) -> int:
    """Perform the background jobs that are due (service-task calls); return how many ran.

    Jobs that become due because others ran are performed too. A failed call is retried later
    (backoff); pass ``wait_for_retries=True`` to move the engine's :class:`Clock` (the
    ``sdf_clock`` fixture) forward to each retry until no job is pending: retries run out into
    an incident, or the call succeeds.
    """
    performed = 0
    for _ in range(max_rounds):
        ran = jobs.run_due(engine)
        performed += ran
        if ran:
            continue
        due = jobs.next_job_due(engine) if wait_for_retries else None
        if due is None:
            return performed
        if not isinstance(engine.clock, Clock):
            raise TypeError("run_jobs(wait_for_retries=True) needs an engine built with engine.testing.Clock")
        engine.clock.advance_to(due)
    raise RuntimeError(f"jobs still due after {max_rounds} rounds; does an operator schedule work forever?")


def deploy_bpmn(engine: Engine, source: str, *, name: str = "process.bpmn", deployed_by: str | None = None):
    """Deploy a BPMN document given as text; returns the :class:`engine.definitions.DeployResult` list."""
    with tempfile.TemporaryDirectory(prefix="sdf-bpmn-") as folder:
        path = Path(folder) / name
        path.write_text(source, encoding="utf-8")
        return engine.deploy([path], deployed_by=deployed_by)


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sdf_database_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, made once per session and copied for each test."""
    path = tmp_path_factory.mktemp("sdf-template") / "template.db"
    engine = Engine(load_settings(environ={}, database_url=f"sqlite:///{path}"), plugins=create_plugin_manager())
    try:
        engine.migrate()
    finally:
        engine.close()
    return path


@pytest.fixture
def sdf_database_url(tmp_path, sdf_database_template) -> str:
    """A fresh, migrated SQLite database in ``tmp_path``."""
    path = tmp_path / "sdf.db"
    shutil.copy(sdf_database_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sdf_clock() -> Clock:
    """The clock of the fixtures' engines: ``sdf_clock.advance(seconds)`` skips time."""
    return Clock()


@pytest.fixture
def sdf_engine(sdf_database_url, sdf_clock):
    """A fresh engine with the built-in and installed plugins, closed after the test."""
    engine = make_engine(sdf_database_url, clock=sdf_clock)
    yield engine
    engine.close()


@pytest.fixture
def sdf_plugins(sdf_database_url, sdf_clock):
    """``sdf_plugins.register(plugin)`` -> a fresh engine that includes ``plugin`` (for this test only)."""
    harness = PluginHarness(sdf_database_url, sdf_clock)
    yield harness
    harness.close()
