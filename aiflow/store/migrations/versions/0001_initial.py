"""The first schema: namespaces, workflows, snapshots, executions, task executions, schedules, triggers.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "namespace",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("properties", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "workflow",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(200), sa.ForeignKey("namespace.name", ondelete="RESTRICT"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_enabled", sa.Boolean, nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("workflow_file", sa.String(500), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("namespace", "name", name="uq_workflow_namespace_name"),
    )
    op.create_table(
        "workflow_snapshot",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflow.id", ondelete="CASCADE"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("uri", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("workflow_file", sa.String(500), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("workflow_id", "version", name="uq_snapshot_workflow_version"),
    )
    op.create_table(
        "workflow_execution",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflow.id", ondelete="CASCADE"), nullable=False),
        sa.Column("snapshot_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_type", sa.String(20), nullable=False),
        sa.Column("begin_date", sa.DateTime(timezone=True)),
        sa.Column("end_date", sa.DateTime(timezone=True)),
        sa.Column("cause", sa.Text, nullable=False),
    )
    op.create_index("ix_execution_workflow", "workflow_execution", ["workflow_id", "status"])
    op.create_table(
        "task_execution",
        sa.Column("id", sa.String(300), primary_key=True),
        sa.Column("execution_id", sa.String(64), sa.ForeignKey("workflow_execution.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("begin_date", sa.DateTime(timezone=True)),
        sa.Column("end_date", sa.DateTime(timezone=True)),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.UniqueConstraint("execution_id", "task_name", "try_number", name="uq_task_try"),
    )
    op.create_table(
        "workflow_schedule",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflow.id", ondelete="CASCADE"), nullable=False),
        sa.Column("expression", sa.String(200), nullable=False),
        sa.Column("is_paused", sa.Boolean, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "workflow_trigger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.Integer, sa.ForeignKey("workflow.id", ondelete="CASCADE"), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("is_paused", sa.Boolean, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    # The namespace every workflow without one belongs to.
    namespace = sa.table("namespace", sa.column("name"), sa.column("properties"), sa.column("create_time"))
    op.bulk_insert(namespace, [{"name": "default", "properties": "{}", "create_time": datetime.now(timezone.utc)}])


def downgrade() -> None:
    for table in ("workflow_trigger", "workflow_schedule", "task_execution", "workflow_execution",
                  "workflow_snapshot", "workflow", "namespace"):
        op.drop_table(table)
