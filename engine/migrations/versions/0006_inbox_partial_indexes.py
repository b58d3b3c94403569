"""The inbox indexes cover open and claimed tasks only (partial indexes).

Completed and cancelled tasks made up almost all of the two status indexes, and completing a
task moved its entry between scattered pages of both. Partial indexes stay as small as the open
work, and the inbox queries (which ask for open or claimed tasks) use them.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('open', 'claimed')"  # as engine.status.ACTIVE_TASK_SQL at this revision


def upgrade() -> None:
    op.drop_index("ix_human_tasks_status_group", table_name="human_tasks")
    op.drop_index("ix_human_tasks_status_assignee", table_name="human_tasks")
    indexes = (("ix_human_tasks_open_group", "candidate_group"), ("ix_human_tasks_open_assignee", "assignee"))
    for name, column in indexes:
        op.create_index(
            name,
            "human_tasks",
            [column, "priority"],
            sqlite_where=sa.text(ACTIVE),
            postgresql_where=sa.text(ACTIVE),
        )


def downgrade() -> None:
    op.drop_index("ix_human_tasks_open_group", table_name="human_tasks")
    op.drop_index("ix_human_tasks_open_assignee", table_name="human_tasks")
    op.create_index("ix_human_tasks_status_group", "human_tasks", ["status", "candidate_group", "priority"])
    op.create_index("ix_human_tasks_status_assignee", "human_tasks", ["status", "assignee", "priority"])
