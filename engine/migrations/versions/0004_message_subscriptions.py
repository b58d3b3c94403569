"""Message subscriptions: which instance waits for which message, with its correlation values.

One row per (instance, message name), written by the transition that made the instance wait
(see ``engine.messages``), so routing a message is an indexed lookup by name.

Revision ID: 0004
Revises: 0003
(Numbered 0002 as planned, but 0003 and 0004 were merged first: it follows them so the
history stays one line and databases already at 0004 still get this table.)
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("message_name", sa.String(length=255), nullable=False),
        sa.Column("correlation", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_message_subscriptions_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_subscriptions")),
        sa.UniqueConstraint(
            "instance_id", "message_name", name=op.f("uq_message_subscriptions_instance_id_message_name")
        ),
    )
    op.create_index(
        op.f("ix_message_subscriptions_message_name"), "message_subscriptions", ["message_name"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_message_subscriptions_message_name"), table_name="message_subscriptions")
    op.drop_table("message_subscriptions")
