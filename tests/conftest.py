"""Shared fixtures: a fresh engine per test on SQLite and on PostgreSQL.

PostgreSQL (``SDF_TEST_POSTGRES_URL``, default the local server on 127.0.0.1:5432) is used
when reachable. Under CI (``CI=true``) it is required: an unreachable server fails the run
instead of skipping silently.
"""

from __future__ import annotations

import email
import email.message
import os
import shutil
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.errors import Conflict
from engine.runtime import build_engine
from engine.settings import load_settings

HERE = Path(__file__).parent
BPMN = HERE / "bpmn"
POSTGRES_SERVER = os.environ.get("SDF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TABLES = (
    "start_timers",
    "message_subscriptions",
    "outbox",
    "user_skills",
    "events",
    "incidents",
    "human_tasks",
    "instances",
    "definition_resources",
    "definitions",
    "memberships",
    "groups",
    "users",
)


def _postgres_reachable() -> str | None:
    engine = sa.create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return None
    except sa.exc.OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_database():
    """A scratch database for the whole session, migrated once; dropped at the end."""
    problem = _postgres_reachable()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI but unreachable at {POSTGRES_SERVER}: {problem}")
        pytest.skip(f"PostgreSQL not reachable ({problem})")
    name = f"sdf_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(POSTGRES_SERVER).set(database=name).render_as_string(hide_password=False)
    engine = build_engine(load_settings(environ={}, database_url=url))
    engine.migrate()
    engine.close()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file copied for each test (migrating every time would be slow)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = build_engine(load_settings(environ={}, database_url=f"sqlite:///{path}"))
    engine.migrate()
    engine.close()
    return path


def _fresh_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        # test reset only: replica mode skips the trigger that protects the audit log
        conn.exec_driver_sql("SET session_replication_role = replica")
        conn.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path, sqlite_template):
    """A database URL with an empty, migrated schema, once per backend."""
    if request.param == "sqlite":
        path = tmp_path / "sdf.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_database")
    _fresh_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template):
    """SQLite only: for tests whose subject does not depend on the backend."""
    path = tmp_path / "sdf.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def make_engine(url: str, **settings):
    return build_engine(load_settings(environ={}, database_url=url, **settings))


@pytest.fixture
def engine(database_url):
    """A fresh engine (own caches and pool) on an empty database, on each backend."""
    eng = make_engine(database_url)
    yield eng
    eng.close()


@pytest.fixture
def sqlite_engine(sqlite_url):
    eng = make_engine(sqlite_url)
    yield eng
    eng.close()


def add_team(engine) -> None:
    """The delivery roles used by the test processes, one person each (plus an outsider)."""
    for name, group in (
        ("pat", "project_manager"),
        ("quinn", "qa_reviewer"),
        ("casey", "client"),
        ("dana", "delivery_manager"),
        ("eli", "engineer"),
    ):
        engine.add_user(name, groups_=[group])
    engine.add_user("olga")  # in no group
    engine.add_user("root", is_admin=True)


@pytest.fixture
def team(engine):
    add_team(engine)
    return engine


class OffsetClock:
    """The real time plus whatever the test skipped ahead (for code that also reads real time,
    such as SpiffWorkflow's timers and deploy-time schedules)."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta) -> None:
        self.offset += timedelta(**delta)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler that keeps every envelope it receives."""

    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd naming
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch):
    """A real SMTP server on a loopback port; the email channel is pointed at it."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SDF_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("SDF_SMTP_PORT", str(port))
    monkeypatch.setenv("SDF_SMTP_FROM", "delivery@sdf.example")
    yield mailbox
    controller.stop()


def only_task(instance: dict) -> dict:
    assert len(instance["tasks"]) == 1, instance["tasks"]
    return instance["tasks"][0]


def open_tasks(instance: dict) -> dict:
    """The open tasks of an instance (as the API returns it), by BPMN element id."""
    return {t["element_id"]: t for t in instance["tasks"]}


def read_mail(envelope) -> tuple[email.message.Message, str]:
    """A received e-mail and its body as text (line ends normalised)."""
    mail = email.message_from_bytes(envelope.content)
    return mail, mail.get_payload(decode=True).decode().replace("\r\n", "\n")


def subscription_count(engine) -> int:
    """How many message subscriptions exist (instances waiting for a message)."""
    from engine.schema import message_subscriptions

    with engine.db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(message_subscriptions)).scalar()


def race(url: str, contenders: list[tuple], action) -> list:
    """Run ``action(engine, *contender)`` for each contender at the same moment, each on its own
    engine (own pool and caches) in its own thread; return ("ok", result), ("conflict", message)
    or ("error", repr) per contender."""
    engines = [make_engine(url) for _ in contenders]
    barrier = threading.Barrier(len(contenders))
    results: list = [None] * len(contenders)

    def run(i):
        barrier.wait()
        try:
            results[i] = ("ok", action(engines[i], *contenders[i]))
        except Conflict as exc:
            results[i] = ("conflict", exc.message)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = ("error", repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(contenders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for e in engines:
        e.close()
    return results
