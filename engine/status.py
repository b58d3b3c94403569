"""The states of instances, human tasks and incidents (BPM vocabulary, stored as strings)."""

from enum import StrEnum


class InstanceStatus(StrEnum):
    RUNNING = "running"  # open human tasks or automatic work in progress
    WAITING = "waiting"  # only waiting for an event: timer, message, external job
    SUSPENDED = "suspended"  # stopped by a person; nothing advances until resumed
    ERROR = "error"  # an incident stopped it; retry after a fix
    COMPLETED = "completed"  # reached an end
    TERMINATED = "terminated"  # ended by a person before reaching an end

    @property
    def is_final(self) -> bool:
        return self in (InstanceStatus.COMPLETED, InstanceStatus.TERMINATED)


class TaskStatus(StrEnum):
    OPEN = "open"  # waiting for a member of the candidate group to claim it
    CLAIMED = "claimed"  # has an assignee
    COMPLETED = "completed"
    CANCELLED = "cancelled"  # withdrawn by the process (boundary event, termination...)

    @property
    def is_active(self) -> bool:
        return self in (TaskStatus.OPEN, TaskStatus.CLAIMED)


ACTIVE_TASK_STATUSES = (TaskStatus.OPEN.value, TaskStatus.CLAIMED.value)


ACTIVE_TASK_SQL = "status IN ('open', 'claimed')"  # the WHERE of the inbox's partial indexes


def task_is_active(column):
    """SQL condition "the task is open or claimed", written with literal values exactly as the
    partial indexes of the inbox are (``ACTIVE_TASK_SQL``): SQLite and PostgreSQL use a partial
    index only for a query whose condition contains the index's own."""
    from sqlalchemy import literal_column

    return column.in_([literal_column(f"'{status}'") for status in ACTIVE_TASK_STATUSES])


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
