"""Reasons: why an execution failed when no try says it (its workflow could not be loaded), and why the
scheduler paused a trigger or schedule it cannot evaluate.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflow_execution", sa.Column("message", sa.Text, nullable=False, server_default=""))
    op.add_column("workflow_trigger", sa.Column("pause_reason", sa.Text, nullable=False, server_default=""))
    op.add_column("workflow_schedule", sa.Column("pause_reason", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("workflow_schedule") as batch:
        batch.drop_column("pause_reason")
    with op.batch_alter_table("workflow_trigger") as batch:
        batch.drop_column("pause_reason")
    with op.batch_alter_table("workflow_execution") as batch:
        batch.drop_column("message")
