"""Reasons: why an execution failed when no try says it (its workflow could not be loaded), and why the
scheduler paused a trigger or schedule it cannot evaluate. Indexes for the lists the CLI and the web
server show: a workflow's executions, newest first, all or by status (an execution's tries are found
through the unique (execution, task, try) index already).

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
    op.create_index("ix_execution_workflow_begin", "workflow_execution", ["workflow_id", "begin_date"])
    op.create_index("ix_execution_workflow_status", "workflow_execution", ["workflow_id", "status", "begin_date"])


def downgrade() -> None:
    op.drop_index("ix_execution_workflow_status", "workflow_execution")
    op.drop_index("ix_execution_workflow_begin", "workflow_execution")
    with op.batch_alter_table("workflow_schedule") as batch:
        batch.drop_column("pause_reason")
    with op.batch_alter_table("workflow_trigger") as batch:
        batch.drop_column("pause_reason")
    with op.batch_alter_table("workflow_execution") as batch:
        batch.drop_column("message")
