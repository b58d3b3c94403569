"""Timer start events: one schedule row per process whose newest version starts on a timer.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "start_timers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("process_id", sa.String(length=255), nullable=False),
        sa.Column("definition_id", sa.Integer(), nullable=False),
        sa.Column("element_id", sa.String(length=255), nullable=False),
        sa.Column("expression", sa.Text(), nullable=False),
        sa.Column("next_due", sa.DateTime(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("interval_seconds", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["definition_id"], ["definitions.id"], name=op.f("fk_start_timers_definition_id_definitions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_start_timers")),
        sa.UniqueConstraint("process_id", name=op.f("uq_start_timers_process_id")),
    )
    op.create_index(op.f("ix_start_timers_next_due"), "start_timers", ["next_due"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_start_timers_next_due"), table_name="start_timers")
    op.drop_table("start_timers")
