"""Database connections, transactions and migrations.

SQLite is the embedded default: WAL journal, ``synchronous=NORMAL`` (durable across a crash of
the process; the usual trade-off for WAL), a busy timeout, and ``BEGIN IMMEDIATE`` for write
transactions so two writers queue instead of failing half-way. PostgreSQL is the production
database; there, writers lock the instance row with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


_AFTER_COMMIT = "sdf_after_commit"


def after_commit(conn: sa.Connection, callback) -> None:
    """Run ``callback()`` once the write transaction on ``conn`` has committed (never on rollback)."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(callback)


class Database:
    """One SQLAlchemy engine plus the transaction helpers the engine uses."""

    def __init__(self, url: str, *, echo: bool = False, scope=nullcontext):
        self.url = url
        self.scope = scope  # entered around every write transaction (the engine sets its clock there)
        self.engine = sa.create_engine(url, echo=echo, **_engine_options(url))
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        if self.is_sqlite:
            _install_sqlite_hooks(self.engine)
        self._writers = threading.local()  # SQLite: each thread keeps its write connection
        self._kept: dict[threading.Thread, sa.Connection] = {}
        self._kept_lock = threading.Lock()

    @contextmanager
    def write(self):
        """A write transaction: commits on success, rolls back on any exception.

        Code inside may register callables with :func:`after_commit`; they run only after the
        commit succeeded (e.g. to put a workflow back into the in-process cache).
        """
        with self.scope():
            conn, kept = self._writer()
            try:
                try:
                    if kept:
                        with _sqlite_transaction(conn):
                            yield conn
                    else:
                        with conn.begin():
                            yield conn
                finally:
                    callbacks = conn.info.pop(_AFTER_COMMIT, [])
            finally:
                if kept:
                    self._writers.busy = False
                else:
                    conn.close()
        for callback in callbacks:  # reached only after a successful commit
            callback()

    def _writer(self) -> tuple[sa.Connection, bool]:
        """The connection for a write transaction, and whether it is kept for the next one.

        On SQLite a thread keeps its write connection open between transactions: taking one
        from the pool and handing it back (with its reset) costs more than a small transaction's
        own statements. A nested write in the same thread (it would wait for the outer one's lock)
        is not handed the busy connection.
        """
        local = self._writers
        if not self.is_sqlite or getattr(local, "busy", False):
            return self.engine.connect().execution_options(sdf_write=True), False
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = local.conn = self.engine.connect().execution_options(sdf_write=True)
            self._keep(conn)
        local.busy = True
        return conn, True

    def _keep(self, conn: sa.Connection) -> None:
        """Remember the current thread's kept connection; close those of threads that ended
        (a threaded web server starts a thread per request)."""
        with self._kept_lock:
            ended = [thread for thread in self._kept if not thread.is_alive()]
            closing = [self._kept.pop(thread) for thread in ended]
            self._kept[threading.current_thread()] = conn
        for old in closing:
            old.close()

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
        with self._kept_lock:
            kept, self._kept = list(self._kept.values()), {}
        for conn in kept:
            conn.close()
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
        dbapi_conn = conn.connection.dbapi_connection
        if dbapi_conn.in_transaction:  # opened by _sqlite_transaction; SQLAlchemy joins it
            return
        immediate = conn.get_execution_options().get("sdf_write")
        dbapi_conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def _sqlite_transaction(conn: sa.Connection):
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` straight on the driver, for a thread's kept SQLite
    write connection: SQLAlchemy's transaction bookkeeping costs more than a small transaction's
    own commit, and the hot path runs its statements on the driver cursor anyway. A Core
    statement executed inside makes SQLAlchemy begin its own transaction object, which joins
    this one (see ``_on_begin``); it is then ended through SQLAlchemy so both agree."""
    dbapi_conn = conn.connection.dbapi_connection
    dbapi_conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction():
            conn.rollback()
        elif dbapi_conn.in_transaction:
            dbapi_conn.rollback()
        raise
    if conn.in_transaction():
        conn.commit()
    else:
        dbapi_conn.commit()
