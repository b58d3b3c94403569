"""Database tables, as SQLAlchemy Core metadata (the migrations in ``migrations/`` create them).

Core rather than the ORM: the hot path (complete a task) is a handful of statements and the
engine writes only what changed, so there is no identity map to keep in sync.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

from .status import ACTIVE_TASK_SQL

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite has no time zones)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200)),
    sa.Column("email", sa.String(320)),
    sa.Column("password_hash", sa.String(200)),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)

definitions = sa.Table(
    "definitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("process_id", sa.String(255), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255)),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("source_file", sa.String(500)),
    sa.Column("deployed_at", UTCDateTime, nullable=False),
    sa.Column("deployed_by", sa.String(100)),
    sa.UniqueConstraint("process_id", "version"),
)

definition_resources = sa.Table(
    "definition_resources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "definition_id", sa.Integer, sa.ForeignKey("definitions.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.UniqueConstraint("definition_id", "kind", "name"),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("definition_id", sa.Integer, sa.ForeignKey("definitions.id"), nullable=False, index=True),
    sa.Column("process_id", sa.String(255), nullable=False, index=True),
    sa.Column("business_key", sa.String(255), index=True),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("lock_version", sa.Integer, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("started_by", sa.String(100)),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("wake_at", UTCDateTime, index=True),
)


def _open_task_index(name: str, column: str) -> sa.Index:
    """An inbox index over open and claimed tasks only (a partial index on both backends)."""
    active = sa.text(ACTIVE_TASK_SQL)
    return sa.Index(f"ix_human_tasks_open_{name}", column, "priority", sqlite_where=active, postgresql_where=active)


human_tasks = sa.Table(
    "human_tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("instance_id", sa.Integer, sa.ForeignKey("instances.id"), nullable=False),
    sa.Column("spiff_task_id", sa.String(36), nullable=False),
    sa.Column("element_id", sa.String(255), nullable=False),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("candidate_group", sa.String(100)),
    sa.Column("assignee", sa.String(100)),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("due_at", UTCDateTime),
    sa.Column("follow_up_at", UTCDateTime),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("form", sa.String(500)),
    sa.Column("instructions", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("claimed_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("completed_by", sa.String(100)),
    # one index serves "tasks of an instance" and "the row of this SpiffWorkflow task"
    sa.UniqueConstraint("instance_id", "spiff_task_id"),
    # The inbox indexes hold open and claimed tasks only: a completed task leaves them, so they
    # stay as small as the open work (a page or two on most teams) however long the history,
    # and completing a task rewrites one small index page instead of two scattered ones.
    *(_open_task_index(name, column) for name, column in (("group", "candidate_group"), ("assignee", "assignee"))),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("instance_id", sa.Integer, index=True),
    sa.Column("task_id", sa.Integer),
    sa.Column("type", sa.String(50), nullable=False),
    sa.Column("element_id", sa.String(255)),
    sa.Column("actor", sa.String(100)),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("data", sa.Text),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("instance_id", sa.Integer, sa.ForeignKey("instances.id"), nullable=False, index=True),
    sa.Column("spiff_task_id", sa.String(36)),
    sa.Column("element_id", sa.String(255)),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("line", sa.Integer),
    sa.Column("details", sa.Text),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("resolved_by", sa.String(100)),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(30), nullable=False),
    sa.Column("instance_id", sa.Integer, sa.ForeignKey("instances.id")),
    sa.Column("spiff_task_id", sa.String(36)),
    sa.Column("element_id", sa.String(255)),
    sa.Column("operator", sa.String(255)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("idempotency_key", sa.String(100), nullable=False, unique=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("backoff_seconds", sa.Float, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("locked_until", UTCDateTime),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_outbox_status_next", "status", "next_attempt_at"),
)

user_skills = sa.Table(
    "user_skills",
    metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("skill", sa.String(100), primary_key=True),
    sa.Column("level", sa.Integer, nullable=False),
)

message_subscriptions = sa.Table(
    "message_subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("instance_id", sa.Integer, sa.ForeignKey("instances.id"), nullable=False),
    sa.Column("message_name", sa.String(255), nullable=False, index=True),
    sa.Column("correlation", sa.Text, nullable=False),  # JSON object: correlation property -> value
    sa.Column("created_at", UTCDateTime, nullable=False),
    # one row per (instance, waiting message name); also the index for "rows of this instance"
    sa.UniqueConstraint("instance_id", "message_name"),
)

start_timers = sa.Table(
    "start_timers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("process_id", sa.String(255), nullable=False, unique=True),
    sa.Column("definition_id", sa.Integer, sa.ForeignKey("definitions.id"), nullable=False),
    sa.Column("element_id", sa.String(255), nullable=False),  # the timer start event
    sa.Column("expression", sa.Text, nullable=False),  # e.g. timeCycle "R/PT1H", as evaluated
    sa.Column("next_due", UTCDateTime, nullable=False, index=True),
    sa.Column("remaining", sa.Integer),  # occurrences left; NULL = unbounded
    sa.Column("interval_seconds", sa.Float),  # NULL: fires once
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
