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


class Statement:
    """One SQL text, rendered per dialect on first use."""

    def __init__(self, sql: str):
        self.sql = " ".join(sql.split())
        self._rendered: dict[str, str] = {}

    def text(self, dialect: str) -> str:
        found = self._rendered.get(dialect)
        if found is None:
            found = self.sql if dialect == "sqlite" else _PARAM.sub(r"%(\1)s", self.sql)
            self._rendered[dialect] = found
        return found


def _cursor(conn):
    return conn.connection.dbapi_connection.cursor()


def _dialect(conn) -> str:
    return conn.dialect.name


def db_time(conn, value: datetime | None):
    """An aware datetime as the column stores it (naive UTC; a string on SQLite)."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    naive = value.replace(tzinfo=None)
    # isoformat is implemented in C; strftime costs ~10x more and this runs for every timestamp written
    return naive.isoformat(" ", "microseconds") if _dialect(conn) == "sqlite" else naive


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
    """Run an INSERT ... RETURNING id (SQLite >= 3.35 and PostgreSQL both support it)."""
    return fetch(conn, statement, params)[0][0]
