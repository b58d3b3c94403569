"""A few fixed hot-path statements run straight on the DB-API cursor.

Completing a task must cost little more than SpiffWorkflow's own work (the benchmark target
is a third of raw in-memory speed, with every change committed). SQLAlchemy Core spends
~20-70 us per statement on parameter processing, type decorators and result set-up; the
driver needs ~2 us. The statements here are written once with ``:name`` parameters and
rendered for the dialect (``%(name)s`` for psycopg); they run on the same connection and
inside the same transaction as the surrounding SQLAlchemy code. Everything else in the
engine uses Core.
"""

from __future__ import annotations

import re
from collections import namedtuple
from datetime import UTC, datetime

_PARAM = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")
_RETURNING_ID = re.compile(r"\s+RETURNING\s+id\s*$", re.IGNORECASE)


class Statement:
    """One SQL text, rendered per dialect on first use."""

    def __init__(self, sql: str):
        self.sql = " ".join(sql.split())
        self._rendered: dict[str, str] = {}

    def text(self, dialect: str) -> str:
        found = self._rendered.get(dialect)
        if found is None:
            if dialect == "sqlite":
                found = self.sql
            elif dialect == "sqlite-rowid":  # the INSERT without its RETURNING id
                found = _RETURNING_ID.sub("", self.sql)
            else:
                found = _PARAM.sub(r"%(\1)s", self.sql)
            self._rendered[dialect] = found
        return found


def _cursor(conn):
    return conn.connection.dbapi_connection.cursor()


def _dialect(conn) -> str:
    return conn.dialect.name


_last_time: tuple = (None, None, None)  # (value, dialect, stored form) of the latest call


def db_time(conn, value: datetime | None):
    """An aware datetime as the column stores it (naive UTC; a string on SQLite).

    One transition writes its timestamp a dozen times (instance, tasks, every audit event);
    the latest conversion is remembered, keyed by the very same object.
    """
    global _last_time
    if value is None:
        return None
    dialect = _dialect(conn)
    last = _last_time
    if last[0] is value and last[1] == dialect:
        return last[2]
    naive = (value if value.tzinfo is UTC else value.astimezone(UTC)).replace(tzinfo=None)
    # isoformat is implemented in C; strftime costs ~10x more
    stored = naive.isoformat(" ", "microseconds") if dialect == "sqlite" else naive
    _last_time = (value, dialect, stored)  # holds ``value``: its id cannot be reused meanwhile
    return stored


def execute(conn, statement: Statement, params: dict) -> int:
    """Run a statement; return the affected row count."""
    cur = _cursor(conn)
    try:
        cur.execute(statement.text(_dialect(conn)), params)
        return cur.rowcount
    finally:
        cur.close()


def executemany(conn, statement: Statement, rows: list[dict]) -> None:
    cur = _cursor(conn)
    try:
        cur.executemany(statement.text(_dialect(conn)), rows)
    finally:
        cur.close()


_row_types: dict[tuple, type] = {}


def fetch(conn, statement: Statement, params: dict) -> list:
    """Run a query; return rows with attribute access by column name."""
    cur = _cursor(conn)
    try:
        cur.execute(statement.text(_dialect(conn)), params)
        names = tuple(d[0] for d in cur.description)
        row_type = _row_types.get(names)
        if row_type is None:
            row_type = _row_types[names] = namedtuple("Row", names)
        return [row_type(*r) for r in cur.fetchall()]
    finally:
        cur.close()


def fetch_one(conn, statement: Statement, params: dict):
    rows = fetch(conn, statement, params)
    return rows[0] if rows else None


def insert_returning_id(conn, statement: Statement, params: dict) -> int:
    """Run an ``INSERT ... RETURNING id``. On SQLite the row id comes from the cursor instead
    (same value, without the result-row machinery: this runs for every new task)."""
    if _dialect(conn) != "sqlite":
        return fetch(conn, statement, params)[0][0]
    cur = _cursor(conn)
    try:
        cur.execute(statement.text("sqlite-rowid"), params)
        return cur.lastrowid
    finally:
        cur.close()
