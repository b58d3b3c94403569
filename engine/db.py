"""Database connections, transactions and migrations.

SQLite is the embedded default: WAL journal, ``synchronous=NORMAL`` (durable across a crash of
the process; the usual trade-off for WAL), a busy timeout, and ``BEGIN IMMEDIATE`` for write
transactions so two writers queue instead of failing half-way. PostgreSQL is the production
database; there, writers lock the instance row with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Database:
    """One SQLAlchemy engine plus the transaction helpers the engine uses."""

    def __init__(self, url: str, *, echo: bool = False, scope=nullcontext):
        self.url = url
        self.scope = scope  # entered around every write transaction (the engine sets its clock there)
        self.engine = sa.create_engine(url, echo=echo, **_engine_options(url))
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)

    @contextmanager
    def write(self):
        """A write transaction: commits on success, rolls back on any exception.

        Code inside may append callables to ``conn.info["sdf_after_commit"]``; they run only
        after the commit succeeded (e.g. to put a workflow back into the in-process cache).
        """
        with self.scope(), self.engine.connect() as conn:
            conn = conn.execution_options(sdf_write=True)
            try:
                with conn.begin():
                    yield conn
            finally:
                callbacks = conn.info.pop("sdf_after_commit", [])
        for callback in callbacks:  # reached only after a successful commit
            callback()

    @contextmanager
    def read(self):
        """A read-only transaction (a consistent snapshot on both backends)."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    def lock_clause(self, select: sa.Select, of=None) -> sa.Select:
        """Add a row lock where the backend has one (SQLite already holds the write lock)."""
        return select if self.is_sqlite else select.with_for_update(of=of)

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def schema_revision(self) -> str | None:
        """The applied migration, or None when the database has no schema yet."""
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        return ScriptDirectory.from_config(cfg).get_current_head()

    def dispose(self) -> None:
        self.engine.dispose()


def _engine_options(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


def _install_sqlite_hooks(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            "busy_timeout=30000",
            "wal_autocheckpoint=10000",
        ):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        immediate = conn.get_execution_options().get("sdf_write")
        conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
